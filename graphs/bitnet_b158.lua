-- graphs/bitnet_b158.lua: BitNet b1.58 (2B4T layout: bitnet.cpp's
-- "bitnet-b1.58" / "bitnet-25", and llama.cpp's "bitnet").
-- Called once per shape class; returns the logits tensor [n_vocab, g.n_out].
--
-- Each block: pre-norm attention with a sub-norm before the output
-- projection, then a gated FFN with a sub-norm before the down projection.
-- The gate is relu(x)^2 for bitnet-b1.58 and SiLU for llama.cpp's "bitnet"
-- (hp.ffn_act says which; the loader reads the file's hidden_act key).
-- Every linear layer is a BitLinear: per-token int8 activations times
-- ternary weights (g:bitlinear); the output head is a float matmul.
return function(g, m)
  local hp = m.hparams
  local eps = hp.eps
  local rope = { n_rot = hp.n_rot, base = hp.rope_freq_base, scale = hp.rope_freq_scale,
                 neox = hp.rope_neox }
  local kq_scale = 1.0 / math.sqrt(hp.head_dim)
  local gate = hp.ffn_act == "relu_sq" and g.relu_sq or g.silu

  local x = g:embed(m:w "token_embd.weight", g.tokens)
  for i = 0, hp.n_layer - 1 do
    local L = m:layer(i)
    local h = g:rms_norm(x, L.attn_norm, eps)
    -- the three projections first, then the rotations: with q, k and v
    -- live at once a device backend may run the three matmuls as one
    local q, k, v = g:bitlinear(h, L.attn_q), g:bitlinear(h, L.attn_k), g:bitlinear(h, L.attn_v)
    local a = g:attention(g:rope(q, hp.n_head, rope), g:rope(k, hp.n_head_kv, rope), v, i, kq_scale)
    if L.attn_sub_norm then a = g:rms_norm(a, L.attn_sub_norm, eps) end
    x = g:add(x, g:bitlinear(a, L.attn_output))

    h = g:rms_norm(x, L.ffn_norm, eps)
    local gt, up = g:bitlinear(h, L.ffn_gate), g:bitlinear(h, L.ffn_up)
    local f = g:mul(gate(g, gt), up)
    if L.ffn_sub_norm then f = g:rms_norm(f, L.ffn_sub_norm, eps) end
    x = g:add(x, g:bitlinear(f, L.ffn_down))
  end
  -- only the rows whose logits are wanted go through the head
  if g.n_out < g.n_tokens then x = g:get_rows(x, g.out_ids) end
  x = g:rms_norm(x, m:w "output_norm.weight", eps)
  return g:matmul(x, m:w "output.weight" or m:w "token_embd.weight")
end
