-- tests/spec/spec_helpers.lua: the Lua half of test_spec.c. It drives the
-- building blocks of graphs/speculative.lua (the same code `tern run
-- --model-draft` runs) and returns what the C side asserts on.
local spec = tern.script("speculative.lua")()
local H = {}

-- The three prompts of refs.json and two of ours.
function H.prompts(refs_json)
  local list = {}
  local arr = assert(refs_json:match('"prompts"%s*:%s*(%b[])'), "no prompts in refs.json")
  for s in arr:gmatch('"(.-)"') do list[#list + 1] = s end
  list[#list + 1] = "The old man looked out over the sea and said"
  list[#list + 1] = "In the morning the soldiers marched into the town, where"
  return list
end

-- Greedy exactness: for every prompt and drafting configuration, the
-- speculative tokens equal the verifier's own greedy tokens (one token per
-- evaluation, plain argmax), and afterwards both caches hold exactly the
-- accepted tokens. Returns nil, summary or an error message.
function H.greedy(vpath, dpath, backend, prompts, n_gen)
  local ctx = spec.open({ model = vpath, model_draft = dpath, backend = backend, threads = 1 })
  local vs, ds = ctx.v.sess, ctx.d.sess
  local configs = {}
  for k = 1, 8 do configs[#configs + 1] = { draft_max = k, draft_p_min = 0 } end
  configs[#configs + 1] = { draft_max = 8 }                                -- default p_min 0.75
  configs[#configs + 1] = { draft_max = 5, draft_min = 2, draft_p_min = 0.5 }
  local drafted, accepted, rounds = 0, 0, 0
  for pi, prompt in ipairs(prompts) do
    local ids = ctx.v.model:tokenize(prompt, true, false)
    vs:reset()
    vs:eval(ids)
    local want = {}
    for i = 1, n_gen do
      want[i] = vs:argmax()
      if i < n_gen then vs:eval({ want[i] }) end
    end
    for _, cfg in ipairs(configs) do
      vs:reset()
      ds:reset()
      cfg.temp = 0
      local r = spec.new_run(ctx, cfg)
      spec.prefill(r, ids)
      local got = {}
      local _, why = spec.generate(r, n_gen, function(id) got[#got + 1] = id end)
      local label = string.format("prompt %d, draft_max %d, p_min %s", pi, cfg.draft_max, tostring(cfg.draft_p_min))
      for i = 1, #got do
        if got[i] ~= want[i] then
          return string.format("%s: token %d is %d, the verifier alone writes %d", label, i, got[i], want[i])
        end
      end
      if #got < n_gen and not (why == "end of text" and ctx.v.model:is_eog(want[#got + 1])) then
        return string.format("%s: stopped after %d tokens (%s)", label, #got, why)
      end
      if why ~= "end of text" then
        if vs:n_past() ~= #ids + #got - 1 then
          return string.format("%s: verifier holds %d tokens, %d accepted", label, vs:n_past(), #ids + #got - 1)
        end
        if ds:n_past() + #r.pending ~= #ids + #got then
          return string.format("%s: draft holds %d + %d pending, %d accepted", label, ds:n_past(), #r.pending, #ids + #got)
        end
      end
      drafted, accepted, rounds = drafted + r.stats.drafted, accepted + r.stats.accepted, rounds + r.stats.rounds
    end
  end
  return nil, string.format("%d prompts x %d configurations x %d tokens: %d rounds, %d drafted, %d accepted",
    #prompts, #configs, n_gen, rounds, drafted, accepted)
end

-- Pearson's chi-square of counts against n * probs, bins with expected
-- count < 5 merged into one. Returns chi2, degrees of freedom, and the
-- count of draws that fell where probs is 0 (must be none).
local function chi_square(counts, probs, n)
  local chi2, bins, small_e, small_o, impossible = 0, 0, 0, 0, 0
  for id, c in pairs(counts) do
    if (probs[id] or 0) == 0 then impossible = impossible + c end
  end
  for id, p in pairs(probs) do
    local e, o = n * p, counts[id] or 0
    if e < 5 then
      small_e, small_o = small_e + e, small_o + o
    else
      chi2, bins = chi2 + (o - e) ^ 2 / e, bins + 1
    end
  end
  if small_e > 0 then chi2, bins = chi2 + (small_o - small_e) ^ 2 / small_e, bins + 1 end
  return chi2, bins - 1, impossible
end

-- smp:speculate on synthetic distributions: x ~ q, then accept/resample
-- against p, n times. p has mass where q has none and the other way
-- round, so every branch runs. Returns chi2, df, impossible draws and the
-- acceptance rate (expected: sum_i min(p_i, q_i) = 0.57).
function H.synthetic(n, seed)
  local p = { 0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02, 0.0 }
  local q = { 0.05, 0.40, 0.0, 0.15, 0.10, 0.05, 0.05, 0.10, 0.10 }
  local nv = #p
  local vsmp = tern.sampler({ temp = 1, seed = seed }, nv)
  local dsmp = tern.sampler({ temp = 1, seed = seed + 1 }, nv)
  local P, Q = tern.probs(nv, 1), tern.probs(nv, 1)
  Q:set(1, q)
  local counts, acc = {}, 0
  for _ = 1, n do
    P:set(1, p) -- speculate leaves the residual in P
    local x = dsmp:draw(Q, 1)
    local ok, tok = vsmp:speculate(P, 1, Q, 1, x)
    if ok then acc = acc + 1 end
    counts[tok] = (counts[tok] or 0) + 1
  end
  local probs = {}
  for i = 1, nv do if p[i] > 0 then probs[i - 1] = p[i] end end
  local chi2, df, impossible = chi_square(counts, probs, n)
  return chi2, df, impossible, acc / n
end

-- End to end on the shared pair: from a fixed context, n speculative
-- rounds (draft_max 1, temperature 1, top_k 8 in both chains) each emit a
-- first token; its distribution must be the verifier's own chain.
function H.sampling_e2e(vpath, dpath, prompt, n, seed)
  local ctx = spec.open({ model = vpath, model_draft = dpath, threads = 1 })
  local vs, ds = ctx.v.sess, ctx.d.sess
  local ids = ctx.v.model:tokenize(prompt, true, false)
  local head, last = {}, ids[#ids]
  for i = 1, #ids - 1 do head[i] = ids[i] end
  local opts = { temp = 1, top_k = 8, top_p = 1, min_p = 0, seed = seed, draft_max = 1, draft_p_min = 0 }
  local r = spec.new_run(ctx, opts)
  spec.prefill(r, head)
  -- the verifier's distribution at this context
  vs:eval({ last })
  local P = tern.probs(ctx.n_vocab, 1)
  tern.sampler(opts, ctx.n_vocab):probs(vs, nil, P, 1)
  vs:rollback(1)
  local probs = {}
  for id = 0, ctx.n_vocab - 1 do
    local p = P:get(1, id)
    if p > 0 then probs[id] = p end
  end
  local counts, base = {}, #head
  for _ = 1, n do
    r.last, r.pending = last, { last }
    local out = spec.round(r, 2)
    counts[out[1]] = (counts[out[1]] or 0) + 1
    vs:rollback(vs:n_past() - base)
    ds:rollback(ds:n_past() - base)
  end
  local chi2, df, impossible = chi_square(counts, probs, n)
  return chi2, df, impossible, r.stats.accepted / r.stats.drafted
end

-- Opens the pair and returns the error spec.open raises (or nil).
function H.open_error(vpath, dpath)
  local ok, err = pcall(spec.open, { model = vpath, model_draft = dpath })
  if ok then return nil end
  return tostring(err)
end

return H
