-- graphs/examples/lookup.lua: speculative decoding without a draft model
-- (prompt lookup), behind `tern run --lookup` (or lookup = true in
-- config.lua, or --pipeline examples/lookup.lua).
--
-- The proposer is spec.ngram: it finds the latest earlier place where the
-- last n tokens of the text occurred (n from 4 down to 2) and proposes the
-- tokens that followed it there. Drafting costs nothing, so every round
-- proposes up to --draft-max tokens (default 8) whenever there is a
-- match, and a plain decode step when there is none. It pays where the
-- output repeats its input: quoting, summarising, editing code, a
-- passage said twice. Output is the verifier's own (greedy) or
-- distributed as the verifier's (sampling: the proposals are judged
-- one-hot, which is exact).
--
--   tern run --lookup -m model.gguf -f long_prompt.txt -n 200 --temp 0
--
-- config.lua keys: draft_max, lookup_ngram_min, lookup_ngram_max.
local spec = tern.script("lib/spec.lua")

return function(opts)
  return spec.main(opts, {
    proposer = spec.ngram({ n_min = opts.lookup_ngram_min or 2, n_max = opts.lookup_ngram_max or 4 }),
    policy = spec.fixed(opts.draft_max or 8),
  })
end
