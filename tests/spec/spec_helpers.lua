-- tests/spec/spec_helpers.lua: the Lua half of test_spec.c. It drives
-- graphs/lib/spec.lua (the code every shipped pipeline runs) and the
-- pipelines themselves, and returns what the C side asserts on.
local spec = tern.script("lib/spec.lua")
local H = {}

-- The three prompts of refs.json, two of ours, and a passage said twice
-- and begun a third time (what prompt lookup is for).
function H.prompts(refs_json)
  local list = {}
  local arr = assert(refs_json:match('"prompts"%s*:%s*(%b[])'), "no prompts in refs.json")
  for s in arr:gmatch('"(.-)"') do list[#list + 1] = s end
  list[#list + 1] = "The old man looked out over the sea and said"
  list[#list + 1] = "In the morning the soldiers marched into the town, where"
  local p = "The old man looked out over the sea and said that the boats would come back before the storm. " ..
            "His daughter stood beside him at the window, and for a long time neither of them spoke."
  list[#list + 1] = p .. "\n\n" .. p .. "\n\nThe old man looked out over the sea"
  return list
end

-- The verifier's own greedy tokens: one token per evaluation, plain argmax.
local function alone(v, ids, n)
  local vs = v.sess
  vs:reset()
  vs:eval(ids)
  local want = {}
  for i = 1, n do
    want[i] = vs:argmax()
    if i < n then vs:eval({ want[i] }) end
  end
  return want
end

-- nil when got (stopped for `why`) is the verifier's own output want,
-- else what differs.
local function compare(label, got, want, why, v, n_gen)
  for i = 1, #got do
    if got[i] ~= want[i] then
      return string.format("%s: token %d is %d, the verifier alone writes %d", label, i, got[i], want[i])
    end
  end
  if #got < n_gen and not (why == "end of text" and v.model:is_eog(want[#got + 1])) then
    return string.format("%s: stopped after %d tokens (%s)", label, #got, why)
  end
end

-- Greedy exactness of the library's parts: for every prompt and run
-- configuration (draft_max 1..8 with p_min 0, so rejections and rewinds
-- happen all the time; the default p_min; draft_min 2 / p_min 0.5; the
-- adaptive policy; overlap; n-gram lookup; best of both), the emitted
-- tokens equal the verifier's own greedy tokens, and afterwards the
-- verifier's cache holds all of the text but its last token and the
-- draft's cache a prefix of the text plus what it drafted past it.
-- Returns nil, summary or an error message.
function H.greedy(vpath, dpath, backend, prompts, n_gen)
  local v = spec.verifier({ model = vpath, backend = backend, threads = 1 })
  local d = spec.draft_model({ model_draft = dpath, backend = backend, threads = 1 })
  local configs = {}
  for k = 1, 8 do configs[#configs + 1] = { "draft", spec.p_min({ k_max = k, p_min = 0 }) } end
  configs[#configs + 1] = { "draft", spec.p_min({ k_max = 8 }) }
  configs[#configs + 1] = { "draft", spec.p_min({ k_max = 5, k_min = 2, p_min = 0.5 }) }
  configs[#configs + 1] = { "draft", spec.adaptive() }
  configs[#configs + 1] = { "draft", spec.p_min({ k_max = 4, p_min = 0 }), true }
  configs[#configs + 1] = { "draft", spec.p_min({ k_max = 6, p_min = 0.3 }), true }
  configs[#configs + 1] = { "ngram", spec.fixed(6) }
  configs[#configs + 1] = { "both", spec.p_min({ k_max = 6, p_min = 0.3 }), true }
  local drafted, accepted, rounds = 0, 0, 0
  for pi, prompt in ipairs(prompts) do
    local ids = v.model:tokenize(prompt, true, false)
    local want = alone(v, ids, n_gen)
    for ci, cfg in ipairs(configs) do
      local proposer = cfg[1] == "draft" and d or cfg[1] == "ngram" and spec.ngram()
                       or spec.best_of({ spec.ngram(), d })
      v.sess:reset()
      local run = spec.new({ verifier = v, proposer = proposer, policy = cfg[2], overlap = cfg[3],
                             sampling = { temp = 0 } })
      run:prefill(ids)
      local got = {}
      local _, why = run:generate(n_gen, function(id) got[#got + 1] = id end)
      local label = string.format("prompt %d, configuration %d (%s, %s%s)", pi, ci, proposer.name, run.policy.name,
        cfg[3] and ", overlap" or "")
      local err = compare(label, got, want, why, v, n_gen)
      if err then return err end
      local h = run.tokens
      if why ~= "end of text" and v.sess:n_past() ~= #h - 1 then
        return string.format("%s: verifier holds %d tokens, the text has %d", label, v.sess:n_past(), #h)
      end
      if cfg[1] ~= "ngram" then
        if d.sess:n_past() ~= #d.toks then
          return string.format("%s: draft holds %d tokens, thinks %d", label, d.sess:n_past(), #d.toks)
        end
        for i = 1, math.min(d.base, #d.toks) do
          if d.toks[i] ~= h[i] then return string.format("%s: draft token %d is not the text's", label, i) end
        end
      end
      drafted, accepted, rounds = drafted + run.stats.drafted, accepted + run.stats.accepted,
                                  rounds + run.stats.rounds
    end
  end
  return nil, string.format("%d prompts x %d configurations x %d tokens: %d rounds, %d drafted, %d accepted",
    #prompts, #configs, n_gen, rounds, drafted, accepted)
end

-- Every shipped pipeline (names: "speculative.lua", "examples/...") on
-- every model pair ({v=, d=, backend=, backend_draft=, prompts=}: how
-- many of the prompts), run as `tern run` runs it (opts, temp 0, quiet),
-- writes the verifier's own greedy tokens. Returns nil, summary or an
-- error message.
function H.pipelines(names, pairs, prompts, n_gen)
  local runs, tokens, drafted, accepted, rounds = 0, 0, 0, 0, 0
  for _, pair in ipairs(pairs) do
    local v = spec.verifier({ model = pair.v, backend = pair.backend, threads = 1, ctx_size = 512 })
    local want = {}
    for pi = 1, pair.prompts do want[pi] = alone(v, v.model:tokenize(prompts[pi], true, false), n_gen) end
    for _, name in ipairs(names) do
      local pipeline = tern.script(name)
      for pi = 1, pair.prompts do
        local got, run = pipeline({ model = pair.v, model_draft = pair.d, backend = pair.backend,
                                    backend_draft = pair.backend_draft, threads = 1, ctx_size = 512,
                                    prompt = prompts[pi], n_predict = n_gen, temp = 0, quiet = true })
        local why = #got < n_gen and "end of text" or "n_predict"
        local label = string.format("%s, verifier %s (%s), draft %s, prompt %d", name, pair.v:gsub(".*/", ""),
          pair.backend, pair.d:gsub(".*/", ""), pi)
        if type(got) ~= "table" or not run then return label .. ": the pipeline did not return its tokens" end
        local err = compare(label, got, want[pi], why, v, n_gen)
        if err then return err end
        runs, tokens = runs + 1, tokens + #got
        drafted, accepted, rounds = drafted + run.stats.drafted, accepted + run.stats.accepted,
                                    rounds + run.stats.rounds
        run = nil
        collectgarbage() -- models, sessions and their worker threads go now
      end
    end
  end
  return nil, string.format("%d pipelines x %d model pairs: %d runs, %d tokens, all the verifier's own; " ..
    "%d rounds, %d drafted, %d accepted", #names, #pairs, runs, tokens, rounds, drafted, accepted)
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

-- End to end on the shared pair through spec.new and run:round: from a
-- fixed context, n rounds (temperature 1, top_k 8 in both chains, one
-- token drafted) each emit a first token; its distribution must be the
-- verifier's own chain. kind picks the proposal: "draft" (sampled, with
-- q), "overlap" (rounds verified on the worker thread, proposing what
-- the draft drafted ahead: judged one-hot), "onehot" (a user function proposing the verifier's
-- second likeliest token every time: judged one-hot) and "best_of" (n-gram
-- lookup and the draft, the winner judged one-hot).
function H.sampling_e2e(vpath, dpath, prompt, n, seed, kind)
  local v = spec.verifier({ model = vpath, threads = 1 })
  local d = spec.draft_model({ model_draft = dpath, threads = 1 })
  local vs = v.sess
  local ids = v.model:tokenize(prompt, true, false)
  local head, last = table.move(ids, 1, #ids - 1, 1, {}), ids[#ids]
  local sp = { temp = 1, top_k = 8, top_p = 1, min_p = 0, seed = seed }
  -- the verifier's distribution at this context
  local base = vs:mark()
  vs:eval(ids)
  local P = tern.probs(v.n_vocab, 1)
  tern.sampler(sp, v.n_vocab):probs(vs, nil, P, 1)
  vs:rewind(base)
  local probs, second, top = {}, nil, nil
  for id = 0, v.n_vocab - 1 do
    local p = P:get(1, id)
    if p > 0 then
      probs[id] = p
      if not top or p > probs[top] then top, second = id, top
      elseif not second or p > probs[second] then second = id end
    end
  end
  local proposer = d
  if kind == "onehot" then proposer = function() return { second } end
  elseif kind == "best_of" then proposer = { spec.ngram({ n_min = 1 }), d } end
  local run = spec.new({ verifier = v, proposer = proposer, policy = spec.fixed(1), sampling = sp,
                         overlap = kind == "overlap" })
  run:prefill(head)
  local mark = vs:mark()
  local counts = {}
  run.tokens[#head + 1] = last
  for _ = 1, n do
    local out = run:round(2)
    counts[out[1]] = (counts[out[1]] or 0) + 1
    vs:rewind(mark)
    for i = #run.tokens, #head + 2, -1 do run.tokens[i] = nil end
    if d.toks then -- no head start from the last round: a fresh draw each time
      d:cut(#head + 1)
      d.next = nil
      -- overlapped rounds propose only what was drafted ahead: draft one
      -- token past the text as a round's ahead would (judged one-hot)
      if kind == "overlap" then d:ahead(run, {}, function() return false end) end
    end
  end
  local chi2, df, impossible = chi_square(counts, probs, n)
  return chi2, df, impossible, run.stats.accepted / run.stats.drafted
end

return H
