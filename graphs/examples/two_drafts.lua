-- graphs/examples/two_drafts.lua: two proposers, the best of them each
-- round: a draft model (--model-draft, say a BitNet model on its own
-- --backend-draft) and the n-gram proposer of examples/lookup.lua.
--
-- The n-gram proposer asks first (it costs nothing); spec.best_of scores
-- each proposal by its expected accepted tokens (the product of per-token
-- confidences: the draft's probabilities, or the n-gram proposer's running
-- acceptance) and keeps the best. Once a proposal is worth `enough`
-- tokens the draft model is not asked, so repetitive stretches cost no
-- draft time at all; elsewhere the draft model drafts as in
-- speculative.lua. The report says how many rounds each one won.
--
--   tern run --pipeline examples/two_drafts.lua --model-draft tiny-bitnet.gguf \
--       -m tiny-llama.gguf -f prompt.txt -n 200 --temp 0
--
-- config.lua keys: draft_max, draft_p_min, draft_min, lookup_enough.
local spec = tern.script("lib/spec.lua")

return function(opts)
  local k = opts.draft_max or 8
  return spec.main(opts, {
    proposers = spec.best_of({ spec.ngram({ n_min = 2, n_max = 4 }), spec.draft_model(opts) },
                             { enough = opts.lookup_enough or 2.5 }),
    policy = spec.p_min({ k_max = k, k_min = opts.draft_min, p_min = opts.draft_p_min or 0.5 }),
  })
end
