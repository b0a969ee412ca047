-- graphs/llama.lua: the Llama architecture (float or Q8_0 weights): pre-norm
-- attention with RoPE (GGUF's llama layout: q/k permuted for the normal,
-- interleaved rotation) and GQA, then a SiLU-gated FFN. Tied or separate
-- output head. Returns the logits tensor [n_vocab, g.n_out].
return function(g, m)
  local hp = m.hparams
  local eps = hp.eps
  local rope = { n_rot = hp.n_rot, base = hp.rope_freq_base, scale = hp.rope_freq_scale,
                 neox = hp.rope_neox }
  local kq_scale = 1.0 / math.sqrt(hp.head_dim)

  local x = g:embed(m:w "token_embd.weight", g.tokens)
  for i = 0, hp.n_layer - 1 do
    local L = m:layer(i)
    local h = g:rms_norm(x, L.attn_norm, eps)
    local q, k, v = g:linear(h, L.attn_q), g:linear(h, L.attn_k), g:linear(h, L.attn_v)
    local a = g:attention(g:rope(q, hp.n_head, rope), g:rope(k, hp.n_head_kv, rope), v, i, kq_scale)
    x = g:add(x, g:linear(a, L.attn_output))

    h = g:rms_norm(x, L.ffn_norm, eps)
    local f = g:mul(g:silu(g:linear(h, L.ffn_gate)), g:linear(h, L.ffn_up))
    x = g:add(x, g:linear(f, L.ffn_down))
  end
  if g.n_out < g.n_tokens then x = g:get_rows(x, g.out_ids) end
  x = g:rms_norm(x, m:w "output_norm.weight", eps)
  return g:matmul(x, m:w "output.weight" or m:w "token_embd.weight")
end
