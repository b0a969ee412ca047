-- graphs/speculative.lua: speculative decoding behind `tern run --model-draft
-- D -m V` and `tern bench --model-draft D -m V`. A cheap draft model
-- proposes up to draft_max tokens, the verifier evaluates the last accepted
-- token and the whole proposal in one batch, and the longest prefix the
-- verifier agrees with is kept, plus one token of the verifier's own; both
-- KV caches roll back what was rejected. Greedy (temp <= 0) the output is
-- token for token what the verifier alone writes; sampling, the accept /
-- resample step (smp:speculate, in C) keeps the verifier's distribution.
--
-- Invariant between rounds: the verifier's cache holds every emitted token
-- but the last (r.last); the draft's holds a prefix of them and r.pending
-- lists the rest, r.last included, to be evaluated when it drafts next.
--
-- Called with no options, the script returns its building blocks (M) for
-- the tests and the bench; with options it runs the pipeline.
local common = tern.script("common.lua")

local M = {}

local BIG = 1 << 30

-- Loads the verifier (opts.model, backend, threads) and the draft
-- (opts.model_draft, backend_draft, threads_draft), each with its session.
function M.open(opts)
  if not opts.model_draft then error("speculative decoding needs a draft model (--model-draft FILE)", 0) end
  local vm, vs = common.open(opts)
  local dopts = setmetatable({ model = opts.model_draft, backend = opts.backend_draft or opts.backend,
                               threads = opts.threads_draft or opts.threads }, { __index = opts })
  local dm, ds = common.open(dopts)
  local ok, why = tern.same_vocab(dm, vm)
  if not ok then
    error(string.format("draft %s and verifier %s do not share a vocabulary: %s",
      opts.model_draft, opts.model, why), 0)
  end
  return { v = { model = vm, sess = vs }, d = { model = dm, sess = ds }, n_vocab = vm:info().n_vocab }
end

local function check_int(name, v, lo, hi)
  if math.type(v) ~= "integer" or v < lo or v > hi then
    error(string.format("%s must be an integer in %d..%d, not %s", name, lo, hi, tostring(v)), 0)
  end
  return v
end

-- A generation over ctx with its samplers, buffers and counters.
-- opts.spec_accept_rate (bench only) replaces the verifier's verdict by a
-- coin that accepts each draft token with that probability.
function M.new_run(ctx, opts)
  local sp = common.sampler_params(opts)
  local r = {
    ctx = ctx,
    greedy = (sp.temp or 0.8) <= 0,
    k_max = check_int("draft_max", opts.draft_max or 8, 0, 64),
    k_min = opts.draft_min or 0,
    p_min = opts.draft_p_min or 0.75,
    accept_rate = opts.spec_accept_rate,
    vsmp = tern.sampler(sp, ctx.n_vocab),
    pending = {},
    stats = { rounds = 0, drafted = 0, accepted = 0, trials = 0, t_draft = 0, t_verify = 0, t_model = 0 },
    costs = opts.spec_costs, -- bench: { t_draft =, t_verify = {} } to price each round by the cost model
  }
  check_int("draft_min", r.k_min, 0, r.k_max)
  if r.accept_rate then
    if r.accept_rate < 0 or r.accept_rate > 1 then error("--spec-accept-rate must be in 0..1", 0) end
    local state = opts.seed or 1234
    r.coin = function() -- a fixed LCG: the replay is the same every run
      state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFF
      return state / 0x1000000000000
    end
    r.p_min = 0 -- fixed-length rounds, as the cost model assumes
  end
  if not r.greedy then
    -- the draft samples from the same chain without penalties; any q is
    -- exact as long as it is the distribution the draft token came from
    local dp = { temp = sp.temp, top_k = sp.top_k, top_p = sp.top_p, min_p = sp.min_p,
                 seed = sp.seed and sp.seed + 1 or nil }
    r.dsmp = tern.sampler(dp, ctx.n_vocab)
    r.q = tern.probs(ctx.n_vocab, math.max(r.k_max, 1))
    r.p = tern.probs(ctx.n_vocab, 1)
  end
  return r
end

-- Evaluates the prompt in both models.
function M.prefill(r, ids)
  r.ctx.v.sess:eval(ids)
  r.ctx.d.sess:eval(ids)
  for _, id in ipairs(ids) do r.vsmp:accept(id) end
end

-- The draft proposes up to k tokens after r.pending. Returns the proposal
-- and how many of its tokens the draft's cache now holds.
local function draft(r, k)
  local ds, prop, held = r.ctx.d.sess, {}, 0
  ds:eval(r.pending)
  r.pending = {}
  for i = 1, k do
    local id, p
    if r.greedy then
      id, p = ds:top()
    else
      local _, pmax = r.dsmp:probs(ds, nil, r.q, i)
      id, p = r.dsmp:draw(r.q, i), pmax
    end
    if i > r.k_min and p < r.p_min then break end
    prop[i] = id
    if i < k then
      ds:eval({ id })
      held = i
    end
  end
  return prop, held
end

-- The verifier's verdict on proposal token j (row j of the batch).
local function verdict(r, j, x)
  local vs = r.ctx.v.sess
  if r.accept_rate then
    local tok = r.vsmp:sample(vs, j)
    if r.coin() < r.accept_rate then return true, x end
    return false, tok
  elseif r.greedy then
    local tok = r.vsmp:sample(vs, j)
    return tok == x, tok
  end
  r.vsmp:probs(vs, j, r.p, 1)
  return r.vsmp:speculate(r.p, 1, r.q, j, x)
end

-- One round: draft, verify in one batch, keep the agreeing prefix and the
-- verifier's next token, roll both caches back. At most `limit` tokens come
-- back (limit >= 1).
function M.round(r, limit)
  local v, d = r.ctx.v, r.ctx.d
  local k = math.min(r.k_max, limit - 1, v.sess:n_ctx() - v.sess:n_past() - 1)
  local d_room = d.sess:n_ctx() - d.sess:n_past() - #r.pending
  k = d_room < 0 and 0 or math.max(0, math.min(k, d_room + 1))
  local t0 = tern.now()
  local prop, held = {}, 0
  if k > 0 then prop, held = draft(r, k) end
  local t1 = tern.now()
  local n = #prop
  local batch = { r.last }
  for i = 1, n do batch[i + 1] = prop[i] end
  v.sess:eval(batch, true)
  local out, m = {}, 0
  for j = 1, n do
    local ok, tok = verdict(r, j, prop[j])
    out[j] = tok
    if not ok then break end
    m = j
  end
  if m == n then out[n + 1] = r.vsmp:sample(v.sess, n + 1) end
  v.sess:rollback(n - m)
  if held > m then d.sess:rollback(held - m) end
  for i = held + 1, m do r.pending[#r.pending + 1] = prop[i] end
  r.last = out[#out]
  r.pending[#r.pending + 1] = r.last
  local st = r.stats
  st.rounds, st.drafted, st.accepted = st.rounds + 1, st.drafted + n, st.accepted + m
  st.trials = st.trials + (m < n and m + 1 or m)
  st.t_draft, st.t_verify = st.t_draft + (t1 - t0), st.t_verify + (tern.now() - t1)
  if r.costs then st.t_model = st.t_model + n * r.costs.t_draft + r.costs.t_verify[n + 1] end
  return out
end

-- Generates after M.prefill until end of generation, n_predict tokens
-- (< 0: no limit), a full context, Ctrl-C, or on_token(id) returning a
-- reason to stop. Returns the token count and why it stopped.
function M.generate(r, n_predict, on_token)
  local v = r.ctx.v
  local n_gen = 0
  local function take(tok)
    if v.model:is_eog(tok) then return "end of text" end
    n_gen = n_gen + 1
    local stop = on_token and on_token(tok)
    if stop then return stop end
    if n_predict >= 0 and n_gen >= n_predict then return "n_predict" end
  end
  if n_predict == 0 then return 0, "n_predict" end
  if tern.interrupted() then return 0, "interrupted" end
  -- the first token comes from the prompt's logits, as in generate.lua
  r.last = r.vsmp:sample(v.sess)
  r.pending = { r.last }
  local why = take(r.last)
  while not why do
    if tern.interrupted() then why = "interrupted"; break end
    if v.sess:n_past() >= v.sess:n_ctx() then why = "context full"; break end
    local out = M.round(r, n_predict >= 0 and n_predict - n_gen or BIG)
    for _, tok in ipairs(out) do
      why = take(tok)
      if why then break end
    end
  end
  return n_gen, why
end

-- The verifier alone on the same prompt for n tokens (no early stop), as
-- generate.lua decodes: tokens/s and the tokens.
function M.verifier_alone(ctx, opts, ids, n)
  local vs = ctx.v.sess
  vs:reset()
  local smp = tern.sampler(common.sampler_params(opts), ctx.n_vocab)
  for _, id in ipairs(ids) do smp:accept(id) end
  vs:eval(ids)
  local toks, t0 = {}, tern.now()
  for i = 1, n do
    toks[i] = smp:sample(vs)
    if i < n then vs:eval({ toks[i] }) end
  end
  local t = tern.now() - t0
  return t > 0 and n / t or 0, toks
end

local function rate(n, t) return t > 0 and n / t or 0 end

function M.report(r, n_gen, t_gen)
  local st = r.stats
  local d = r.ctx.d.model:info()
  tern.log(string.format("draft: %s\n", d.describe))
  tern.log(string.format(
    "speculative: %d rounds, drafted %d, accepted %d (acceptance %.1f%%), %.2f accepted and %.2f tokens per round, %.2f tok/s | draft %.1f ms, verify %.1f ms\n",
    st.rounds, st.drafted, st.accepted, st.drafted > 0 and 100 * st.accepted / st.drafted or 0,
    rate(st.accepted, st.rounds), rate(n_gen - 1, st.rounds), rate(n_gen, t_gen),
    st.t_draft * 1000, st.t_verify * 1000))
end

-- ---- tern bench --model-draft: costs, acceptance, predicted and measured speed-up ----

M.bench_prompts = {
  "Once upon a time, there was a little girl who",
  "It was a bright cold day in April, and",
  "The committee said on Friday that the new school",
  "The old man looked out over the sea and said",
  "In the morning the soldiers marched into the town, where",
}

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or 0.5 * (s[n // 2] + s[n // 2 + 1])
end

-- Expected tokens per round for per-token acceptance a and k drafted.
function M.expected_tokens(a, k)
  if a >= 1 then return k + 1 end
  return (1 - a ^ (k + 1)) / (1 - a)
end

-- Standard cost model: E * T_verify(1) / (k * T_draft + T_verify(k + 1)),
-- with T_verify(1) of the verifier decoding alone (t_verify.alone) in the
-- numerator when measured: inside rounds its caches are colder.
function M.predicted_speedup(a, k, t_draft, t_verify)
  return M.expected_tokens(a, k) * (t_verify.alone or t_verify[1]) / (k * t_draft + t_verify[k + 1])
end

-- Costs measured the way rounds run them, alternating the two models (so
-- each pays for the caches the other evicted): for k = 0..K, k draft
-- decodes then one verifier batch of k + 1 tokens with all logits, after
-- the prompt, rolled back each time. Returns the draft's median seconds
-- per token at each k (t_draft[k]) and the verifier's per batch size.
local function measure_costs(ctx, ids, K, reps)
  local ds, vs = ctx.d.sess, ctx.v.sess
  ds:reset(); ds:eval(ids)
  vs:reset(); vs:eval(ids)
  local td, tv = {}, {}
  for k = 0, K do td[k], tv[k + 1] = {}, {} end
  for _ = 1, reps do
    for k = 0, K do
      local t0 = tern.now()
      for i = 1, k do ds:eval({ ids[i % #ids + 1] }) end
      local t1 = tern.now()
      if k > 0 then ds:rollback(k) end
      local batch = {}
      for i = 1, k + 1 do batch[i] = ids[(i - 1) % #ids + 1] end
      vs:eval(batch, k > 0)
      local t2 = tern.now()
      vs:rollback(k + 1)
      if k > 0 then td[k][#td[k] + 1] = (t1 - t0) / k end
      tv[k + 1][#tv[k + 1] + 1] = t2 - t1
    end
  end
  local t_draft, t_verify = {}, {}
  for k = 1, K do t_draft[k] = median(td[k]) end
  for b = 1, K + 1 do t_verify[b] = median(tv[b]) end
  -- the verifier alone decoding, nothing evicting its caches in between:
  -- the cost a speculative round has to beat
  local ta = {}
  for i = 1, 2 * reps + 1 do
    local t0 = tern.now()
    vs:eval({ ids[i % #ids + 1] })
    ta[i] = tern.now() - t0
    vs:rollback(1)
  end
  t_verify.alone = median(ta)
  return t_draft, t_verify
end

-- Greedy speculative generation of n tokens on every prompt with draft_max
-- k and p_min 0 (every round drafts k), reps times: median tokens/s and the
-- counters of all runs.
local function spec_rate(ctx, opts, prompts, n, k, reps, p_min, costs)
  local rates, tot = {}, { rounds = 0, drafted = 0, accepted = 0, trials = 0, tokens = 0, t_model = 0, t_gen = 0 }
  for rep = 1, reps do
    local toks, t = 0, 0
    for pi, ids in ipairs(prompts) do
      ctx.v.sess:reset()
      ctx.d.sess:reset()
      local r = M.new_run(ctx, { temp = 0, draft_max = k, draft_p_min = p_min or 0,
                                 spec_accept_rate = opts.spec_accept_rate, seed = 1000 * rep + pi,
                                 spec_costs = costs })
      M.prefill(r, ids)
      local t0 = tern.now()
      local got = M.generate(r, n)
      t = t + tern.now() - t0
      tot.t_gen = tot.t_gen + tern.now() - t0
      toks = toks + got
      for key in pairs(tot) do if r.stats[key] then tot[key] = tot[key] + r.stats[key] end end
      tot.tokens = tot.tokens + got
    end
    rates[rep] = rate(toks, t)
  end
  return median(rates), tot
end

local function base_rate(ctx, prompts, n, reps)
  local rates = {}
  for rep = 1, reps do
    local t = 0
    for _, ids in ipairs(prompts) do t = t + n / M.verifier_alone(ctx, { temp = 0 }, ids, n) end
    rates[rep] = rate(n * #prompts, t)
  end
  return median(rates)
end

local function basename(p) return (p:gsub(".*/", "")) end

function M.bench(opts)
  local ctx = M.open(opts)
  local K = check_int("draft_max", opts.draft_max or 8, 1, 16)
  local n = opts.n_gen_bench or 64
  local reps = opts.reps or 3
  local np = check_int("spec_prompts", opts.spec_prompts or #M.bench_prompts, 1, #M.bench_prompts)
  local P = opts.spec_accept_rate
  local prompts = {}
  for i = 1, np do prompts[i] = ctx.v.model:tokenize(M.bench_prompts[i], true, false) end
  -- warm-up: graphs for every batch shape, weights faulted in
  spec_rate(ctx, opts, { prompts[1] }, math.min(n, 2 * K + 4), K, 1)
  local t_draft, t_verify = measure_costs(ctx, prompts[1], K, 2 * reps + 3)
  local base = base_rate(ctx, prompts, n, reps)
  local rows, best = {}, nil
  for k = 1, K do
    local tps, st = spec_rate(ctx, opts, prompts, n, k, reps, 0, { t_draft = t_draft[k], t_verify = t_verify })
    local a = st.trials > 0 and st.accepted / st.trials or 0
    local row = { k = k, a = P or a, a_measured = a, tps = tps, measured = tps / base,
                  acceptance = st.drafted > 0 and st.accepted / st.drafted or 0,
                  per_round = st.rounds > 0 and st.tokens / st.rounds or 0, rounds = st.rounds,
                  model_share = st.t_gen > 0 and st.t_model / st.t_gen or 0 }
    row.E = M.expected_tokens(row.a, k)
    row.predicted = M.predicted_speedup(row.a, k, t_draft[k], t_verify)
    rows[k] = row
    if not best or row.measured > best.measured then best = row end
  end
  local adaptive
  if not P then -- the default configuration: draft_max K with the p_min of the options
    local pm = opts.draft_p_min or 0.75
    local tps, st = spec_rate(ctx, opts, prompts, n, K, reps, pm)
    adaptive = { k = K, p_min = pm, tps = tps, measured = tps / base,
                 acceptance = st.drafted > 0 and st.accepted / st.drafted or 0,
                 per_round = st.rounds > 0 and st.tokens / st.rounds or 0 }
  end
  local vi, di = ctx.v.model:info(), ctx.d.model:info()
  local out = {}
  local function w(...) out[#out + 1] = string.format(...) end
  if opts.output == "json" then
    w('{"verifier": "%s", "verifier_backend": "%s", "draft": "%s", "draft_backend": "%s", ',
      basename(opts.model), vi.describe, basename(opts.model_draft), di.describe)
    w('"n_prompts": %d, "n_gen": %d, "reps": %d, "accept_rate_replay": %s, ', np, n, reps, P and tostring(P) or "null")
    w('"t_draft_ms": [')
    for k = 1, K do w('%s%.6f', k > 1 and ", " or "", t_draft[k] * 1000) end
    w('], "t_verify_ms": [')
    for b = 1, K + 1 do w('%s%.6f', b > 1 and ", " or "", t_verify[b] * 1000) end
    w('], "t_verify_alone_ms": %.6f, "verifier_alone_ts": %.6f, "rows": [\n', t_verify.alone * 1000, base)
    for k = 1, K do
      local r = rows[k]
      w('  {"draft_max": %d, "a": %.6f, "a_measured": %.6f, "acceptance": %.6f, "expected_tokens": %.6f, ' ..
        '"tokens_per_round": %.6f, "predicted_speedup": %.6f, "avg_ts": %.6f, "measured_speedup": %.6f, ' ..
        '"measured_over_predicted": %.6f, "rounds": %d, "round_cost_model_over_measured_time": %.6f}%s\n',
        k, r.a, r.a_measured, r.acceptance, r.E, r.per_round, r.predicted, r.tps, r.measured,
        r.measured / r.predicted, r.rounds, r.model_share, k < K and "," or "")
    end
    w('], "best_draft_max": %d', best.k)
    if adaptive then
      w(', "adaptive": {"draft_max": %d, "p_min": %.3f, "avg_ts": %.6f, "measured_speedup": %.6f, "acceptance": %.6f}',
        adaptive.k, adaptive.p_min, adaptive.tps, adaptive.measured, adaptive.acceptance)
    end
    w('}\n')
  else
    w("speculative decoding: draft %s, verifier %s\n", basename(opts.model_draft), basename(opts.model))
    w("draft:    %s\nverifier: %s\n", di.describe, vi.describe)
    if P then
      w("acceptance replayed: each draft token accepted with probability %.2f (benchmark only: the text is meaningless)\n", P)
    else
      w("acceptance measured: greedy, %d prompts x %d tokens, p_min 0 (every round drafts draft_max)\n", np, n)
    end
    w("\ncosts (medians, measured in alternating rounds of k draft decodes and one verifier batch of k+1):\n\n")
    w("| k | T_draft ms/token | T_verify(k+1) ms | T_verify(k+1) / T_verify(1) | T_draft / T_verify(1) |\n")
    w("| ---: | ---: | ---: | ---: | ---: |\n")
    w("| 0 | - | %.3f | 1.000 | - |\n", t_verify[1] * 1000)
    w("| alone | - | %.3f | %.3f | - |\n", t_verify.alone * 1000, t_verify.alone / t_verify[1])
    for k = 1, K do
      w("| %d | %.3f | %.3f | %.3f | %.3f |\n", k, t_draft[k] * 1000, t_verify[k + 1] * 1000,
        t_verify[k + 1] / t_verify[1], t_draft[k] / t_verify[1])
    end
    w("\nverifier alone: %.2f t/s\n\n", base)
    w("| draft_max | a (per token) | acceptance | E tokens/round | tokens/round | rounds | predicted | t/s | measured | measured / predicted | rounds at model cost / measured time |\n")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    for k = 1, K do
      local r = rows[k]
      w("| %d | %.3f | %.1f%% | %.2f | %.2f | %d | %.2fx | %.2f | %.2fx | %.1f%% | %.1f%% |\n", k, r.a,
        100 * r.acceptance, r.E, r.per_round, r.rounds, r.predicted, r.tps, r.measured,
        100 * r.measured / r.predicted, 100 * r.model_share)
    end
    w("\n(the last column prices every round run at n*T_draft + T_verify(n+1) from the table above: the share\n" ..
      "of the measured time the cost model accounts for; the rest is per-round overhead)\n")
    w("\nbest draft_max: %d (measured %.2fx, predicted %.2fx)\n", best.k, best.measured, best.predicted)
    if adaptive then
      w("draft_max %d with p_min %.2f: %.2f t/s, %.2fx, acceptance %.1f%%, %.2f tokens/round\n", adaptive.k,
        adaptive.p_min, adaptive.tps, adaptive.measured, 100 * adaptive.acceptance, adaptive.per_round)
    end
  end
  tern.write(table.concat(out))
end

local function prompt_ids(ctx, opts)
  local prompt = common.prompt_text(opts)
  local ids = ctx.v.model:tokenize(prompt, not opts.no_bos, opts.special)
  if #ids == 0 then error("empty prompt: nothing to evaluate (give -p TEXT)", 0) end
  local n_ctx = math.min(ctx.v.sess:n_ctx(), ctx.d.sess:n_ctx())
  if #ids > n_ctx then
    error(string.format("prompt of %d tokens does not fit the context of %d (raise -c)", #ids, n_ctx), 0)
  end
  return prompt, ids
end

local function run(opts)
  local ctx = M.open(opts)
  local prompt, ids = prompt_ids(ctx, opts)
  local n_predict = opts.n_predict or -1
  local r = M.new_run(ctx, opts)
  tern.write(prompt)
  local t_prompt = tern.now()
  M.prefill(r, ids)
  t_prompt = tern.now() - t_prompt

  local detok, text, toks = tern.detok(ctx.v.model), {}, {}
  local stops = common.stop_list(opts)
  local t_gen = tern.now()
  local n_gen, why = M.generate(r, n_predict, function(id)
    toks[#toks + 1] = id
    local piece = detok:push(id)
    tern.write(piece)
    text[#text + 1] = piece
    if common.hit_stop(text, stops) then return "stop string" end
  end)
  t_gen = tern.now() - t_gen
  tern.write(detok:flush() .. "\n")
  common.report(opts, ctx.v.model, ctx.v.sess, {
    n_prompt = #ids, t_prompt = t_prompt, n_gen = n_gen, t_gen = t_gen, stop = why })
  M.report(r, n_gen, t_gen)
  if (opts.spec_compare or opts.verbose) and n_gen > 0 then
    local tps, alone = M.verifier_alone(ctx, opts, ids, n_gen)
    local same = ""
    if r.greedy then
      local k = 0
      while k < n_gen and alone[k + 1] == toks[k + 1] do k = k + 1 end
      same = k == n_gen and ", same tokens" or string.format(", tokens differ from position %d", k)
    end
    tern.log(string.format("verifier alone: %d tokens, %.2f tok/s%s | speed-up %.2fx\n",
      n_gen, tps, same, rate(n_gen, t_gen) / tps))
  end
end

return function(opts)
  if opts == nil then return M end
  if opts.spec_bench then return M.bench(opts) end
  return run(opts)
end
