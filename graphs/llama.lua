-- graphs/llama.lua: the Llama architecture (float or Q8_0 weights): pre-norm
-- attention with RoPE (GGUF's llama layout: q/k permuted for the normal,
-- interleaved rotation) and GQA, then a SiLU-gated FFN. Tied or separate
-- output head. Returns the logits tensor [n_vocab, g.n_out].
--
-- Shapes are written innermost first, as ggml and GGUF write them: x
-- [n_embd, n_tokens] is n_tokens rows of n_embd floats. n_tokens is
-- g.n_tokens (the batch), head_dim = n_embd / n_head, n_embd_kv =
-- head_dim * n_head_kv, n_ff the FFN width. A weight [n_in, n_out] maps a
-- row of n_in to a row of n_out.
return function(g, m)
  local hp = m.hparams
  local eps = hp.eps
  local rope = { n_rot = hp.n_rot, base = hp.rope_freq_base, scale = hp.rope_freq_scale,
                 neox = hp.rope_neox }
  local kq_scale = 1.0 / math.sqrt(hp.head_dim)

  -- g.tokens [n_tokens] (i32 ids), g.positions [n_tokens]
  local x = g:embed(m:w "token_embd.weight", g.tokens)                 -- [n_embd, n_tokens]: the residual stream
  for i = 0, hp.n_layer - 1 do
    local L = m:layer(i)
    local h = g:rms_norm(x, L.attn_norm, eps)                           -- [n_embd, n_tokens]
    -- the three projections first (a device backend may run them as one)
    local q = g:linear(h, L.attn_q)                                     -- [n_embd, n_tokens]
    local k = g:linear(h, L.attn_k)                                     -- [n_embd_kv, n_tokens]
    local v = g:linear(h, L.attn_v)                                     -- [n_embd_kv, n_tokens]
    q = g:rope(q, hp.n_head, rope)                                      -- [head_dim, n_head, n_tokens]
    k = g:rope(k, hp.n_head_kv, rope)                                   -- [head_dim, n_head_kv, n_tokens]
    -- attention stores k and v at the tokens' positions in layer i's KV
    -- cache ([head_dim, n_head_kv, n_ctx] each) and attends over positions
    -- 0..pos of each token (causal)
    local a = g:attention(q, k, v, i, kq_scale)                         -- [n_embd, n_tokens]
    x = g:add(x, g:linear(a, L.attn_output))                            -- [n_embd, n_tokens]

    h = g:rms_norm(x, L.ffn_norm, eps)                                  -- [n_embd, n_tokens]
    local f = g:mul(g:silu(g:linear(h, L.ffn_gate)), g:linear(h, L.ffn_up)) -- [n_ff, n_tokens]
    x = g:add(x, g:linear(f, L.ffn_down))                               -- [n_embd, n_tokens]
  end
  -- only the rows whose logits are wanted go through the head: g.out_ids [n_out]
  if g.n_out < g.n_tokens then x = g:get_rows(x, g.out_ids) end        -- [n_embd, n_out]
  x = g:rms_norm(x, m:w "output_norm.weight", eps)                      -- [n_embd, n_out]
  return g:matmul(x, m:w "output.weight" or m:w "token_embd.weight")    -- [n_vocab, n_out]
end
