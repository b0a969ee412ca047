-- graphs/examples/adaptive.lua: a draft model whose draft length follows
-- the running acceptance instead of a fixed --draft-max.
--
-- spec.adaptive keeps decayed averages of the per-token acceptance a, of
-- the draft's cost per token and of the verifier's batch times (a line in
-- the batch size), and each round drafts the k in 1..k_max that
-- maximises expected tokens per second: E(a, k) / (k T_draft + T_verify(k+1))
-- with E(a, k) = (1 - a^(k+1)) / (1 - a). When the draft agrees with the
-- verifier k grows; when it does not, rounds shrink to one token, so a
-- poor pairing costs little. Swap the policy for any function(run) -> k
-- to try another rule; exactness does not depend on it.
--
--   tern run --pipeline examples/adaptive.lua --model-draft tiny-bitnet.gguf \
--       -m tiny-llama.gguf -p "Once upon a time" -n 200 --temp 0
--
-- config.lua keys: draft_max (k_max, default 12), draft_p_min (default 0).
local spec = tern.script("lib/spec.lua")

return function(opts)
  return spec.main(opts, {
    proposer = spec.draft_model(opts),
    policy = spec.adaptive({ k_min = 1, k_max = opts.draft_max or 12, p_min = opts.draft_p_min or 0 }),
  })
end
