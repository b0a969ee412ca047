-- graphs/examples/overlap.lua: the draft drafts ahead while the verifier
-- checks the last proposal on its worker thread (s:eval_async / s:wait).
--
-- Each round starts the verifier's batch asynchronously; meanwhile the
-- draft model evaluates its last proposed token and keeps drafting past
-- the proposal until the verifier is done. If the verifier accepts the
-- whole proposal and its own next token is the draft's first token ahead,
-- the rest is the next round's proposal, already drafted. Put the two on
-- different backends (or both on x86 with -t 1 each: one-thread models
-- run on their own threads, outside the shared pool) so they truly run at
-- once. On two CPU cores the draft and verifier compete for memory
-- bandwidth, and drafts ahead are wasted whenever the proposal fails;
-- `tern bench --model-draft D -m V --overlap` measures both modes.
--
--   tern run --pipeline examples/overlap.lua --model-draft tiny-bitnet.gguf \
--       --backend-draft x86 -m tiny-llama.gguf --backend scalar -p "Once" -n 100 --temp 0
local spec = tern.script("lib/spec.lua")

return function(opts)
  return spec.main(opts, {
    proposer = spec.draft_model(opts),
    policy = spec.p_min({ k_max = opts.draft_max or 4, k_min = opts.draft_min, p_min = opts.draft_p_min or 0.5 }),
    overlap = true,
  })
end
