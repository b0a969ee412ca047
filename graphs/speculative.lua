-- graphs/speculative.lua: speculative decoding behind `tern run
-- --model-draft D -m V`, on graphs/lib/spec.lua. A cheap draft model
-- proposes up to --draft-max tokens (stopping early when its top
-- probability falls under --draft-p-min, after --draft-min), the verifier
-- evaluates them in one batch and the longest prefix it agrees with is
-- kept, plus one token of its own. Greedy (--temp 0) the output is token
-- for token the verifier's; sampling, speculative sampling keeps the
-- verifier's distribution. --overlap (or overlap = true in config.lua)
-- verifies on a worker thread while the draft drafts ahead. The benchmark
-- of `tern bench --model-draft` is graphs/spec_bench.lua.
local spec = tern.script("lib/spec.lua")

return function(opts)
  return spec.main(opts, {
    proposer = spec.draft_model(opts),
    policy = spec.p_min({ k_max = opts.draft_max, k_min = opts.draft_min, p_min = opts.draft_p_min }),
  })
end
