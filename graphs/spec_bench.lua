-- graphs/spec_bench.lua: `tern bench --model-draft D -m V`, on
-- graphs/lib/spec.lua, so the rounds timed are the ones `tern run
-- --model-draft` runs. It measures the draft's decode cost and the
-- verifier's cost per batch of 1..K+1, the acceptance on built-in prompts
-- (or replays a given one, --spec-accept-rate), and for every draft_max
-- up to K the speed-up the standard cost model predicts and the one
-- measured. With --overlap it compares sequential rounds with overlapped
-- ones (verifier on its worker thread, the draft drafting ahead) instead.
local spec = tern.script("lib/spec.lua")

local M = {}

M.prompts = {
  "Once upon a time, there was a little girl who",
  "It was a bright cold day in April, and",
  "The committee said on Friday that the new school",
  "The old man looked out over the sea and said",
  "In the morning the soldiers marched into the town, where",
}

local function median(t)
  local s = table.move(t, 1, #t, 1, {})
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or 0.5 * (s[n // 2] + s[n // 2 + 1])
end

local function minmax(t)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return lo, hi
end

local function rate(n, t) return t > 0 and n / t or 0 end

-- Standard cost model: E * T_verify(1) / (k * T_draft + T_verify(k + 1)),
-- with T_verify(1) of the verifier decoding alone (t_verify.alone) in the
-- numerator when measured: inside rounds its caches are colder.
function M.predicted_speedup(a, k, t_draft, t_verify)
  return spec.expected_tokens(a, k) * (t_verify.alone or t_verify[1]) / (k * t_draft + t_verify[k + 1])
end

-- Costs measured the way rounds run them, alternating the two models (so
-- each pays for the caches the other evicted): for k = 0..K, k draft
-- decodes then one verifier batch of k + 1 tokens with all logits, after
-- the prompt, rewound each time. Returns the draft's median seconds per
-- token at each k (t_draft[k]) and the verifier's per batch size.
local function measure_costs(v, d, ids, K, reps)
  local ds, vs = d.sess, v.sess
  ds:reset(); ds:eval(ids)
  vs:reset(); vs:eval(ids)
  local dm, vm = ds:mark(), vs:mark()
  local td, tv = {}, {}
  for k = 0, K do td[k], tv[k + 1] = {}, {} end
  for _ = 1, reps do
    for k = 0, K do
      local t0 = tern.now()
      for i = 1, k do ds:eval({ ids[i % #ids + 1] }) end
      local t1 = tern.now()
      ds:rewind(dm)
      local batch = {}
      for i = 1, k + 1 do batch[i] = ids[(i - 1) % #ids + 1] end
      vs:eval(batch, k > 0)
      local t2 = tern.now()
      vs:rewind(vm)
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
    vs:rewind(vm)
  end
  t_verify.alone = median(ta)
  return t_draft, t_verify
end

-- A run of the pipeline `tern run --model-draft` builds (greedy), with
-- --spec-accept-rate P an acceptance rule that replays P: each draft
-- token stands with probability P (a fixed LCG per seed), whatever the
-- verifier says.
local function new_run(v, d, opts, k, p_min, seed, overlap)
  local accept
  if opts.spec_accept_rate then
    local P, state = opts.spec_accept_rate, seed
    accept = function(run, j, x)
      local tok = run.smp:sample(run.v.sess, j)
      state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFF
      if state / 0x1000000000000 < P then return true, x end
      return false, tok
    end
  end
  return spec.new({ verifier = v, proposer = d, sampling = { temp = 0 }, accept = accept, overlap = overlap,
                    policy = spec.p_min({ k_max = k, p_min = p_min }) })
end

-- Greedy speculative generation of n tokens on every prompt, reps times:
-- tokens/s of each rep, the counters of all runs, and the tokens of the
-- last rep.
local function spec_rate(v, d, opts, prompts, n, k, reps, p_min, overlap)
  local rates, tot = {}, { rounds = 0, drafted = 0, accepted = 0, trials = 0, tokens = 0, t_gen = 0, by_n = {} }
  local toks = {}
  for rep = 1, reps do
    local got_all, t = 0, 0
    for pi, ids in ipairs(prompts) do
      v.sess:reset()
      local run = new_run(v, d, opts, k, p_min, 1000 * rep + pi, overlap)
      run:prefill(ids)
      local out = {}
      local t0 = tern.now()
      local got = run:generate(n, function(id) out[#out + 1] = id end)
      local dt = tern.now() - t0
      t = t + dt
      toks[pi] = out
      got_all = got_all + got
      for key in pairs(tot) do
        if math.type(run.stats[key]) then tot[key] = tot[key] + run.stats[key] end
      end
      for b, c in pairs(run.stats.by_n) do tot.by_n[b] = (tot.by_n[b] or 0) + c end
      tot.tokens, tot.t_gen = tot.tokens + got, tot.t_gen + dt
    end
    rates[rep] = rate(got_all, t)
  end
  return rates, tot, toks
end

local function base_rate(v, prompts, n, reps)
  local rates = {}
  for rep = 1, reps do
    local t = 0
    for _, ids in ipairs(prompts) do t = t + n / spec.verifier_alone(v, { temp = 0 }, ids, n) end
    rates[rep] = rate(n * #prompts, t)
  end
  return rates
end

local function basename(p) return (p:gsub(".*/", "")) end

local function open(opts)
  local v = spec.verifier(opts)
  local d = spec.draft_model(opts)
  local ok, why = tern.same_vocab(d.model, v.model)
  if not ok then
    error(string.format("draft %s and verifier %s do not share a vocabulary: %s", opts.model_draft, opts.model,
      why), 0)
  end
  return v, d
end

local function check_int(name, x, lo, hi)
  if math.type(x) ~= "integer" or x < lo or x > hi then
    error(string.format("%s must be an integer in %d..%d, not %s", name, lo, hi, tostring(x)), 0)
  end
  return x
end

local function prompt_ids(v, opts)
  local np = check_int("spec_prompts", opts.spec_prompts or #M.prompts, 1, #M.prompts)
  local prompts = {}
  for i = 1, np do prompts[i] = v.model:tokenize(M.prompts[i], true, false) end
  return prompts, np
end

-- --overlap: sequential and overlapped rounds, interleaved rep by rep, on
-- the same prompts; both must write the same tokens.
function M.overlap(opts)
  local v, d = open(opts)
  local K = check_int("draft_max", opts.draft_max or 8, 1, 16)
  local n, reps, pm = opts.n_gen_bench or 64, opts.reps or 7, opts.draft_p_min or 0.1
  local prompts, np = prompt_ids(v, opts)
  spec_rate(v, d, opts, { prompts[1] }, math.min(n, 2 * K + 4), K, 1, pm, false) -- warm-up
  spec_rate(v, d, opts, { prompts[1] }, math.min(n, 2 * K + 4), K, 1, pm, true)
  local seq, ovl, base, st_s, st_o, same = {}, {}, {}, nil, nil, true
  for rep = 1, reps do
    local r1, s1, t1 = spec_rate(v, d, opts, prompts, n, K, 1, pm, false)
    local r2, s2, t2 = spec_rate(v, d, opts, prompts, n, K, 1, pm, true)
    base[rep] = base_rate(v, prompts, n, 1)[1]
    seq[rep], ovl[rep], st_s, st_o = r1[1], r2[1], s1, s2
    for pi = 1, np do
      for i = 1, math.max(#t1[pi], #t2[pi]) do same = same and t1[pi][i] == t2[pi][i] end
    end
  end
  local ratio = {}
  for i = 1, reps do ratio[i] = ovl[i] / seq[i] end
  local di, vi = d.model:info(), v.model:info()
  local out = {}
  local function w(...) out[#out + 1] = string.format(...) end
  w("speculative rounds, sequential against overlapped: draft %s, verifier %s\n", basename(opts.model_draft),
    basename(opts.model))
  w("draft:    %s\nverifier: %s\n", di.describe, vi.describe)
  w("greedy, %d prompts x %d tokens, draft_max %d, p_min %.2f, %d interleaved repetitions (medians, min-max)\n\n",
    np, n, K, pm, reps)
  w("| mode | t/s | min-max | acceptance | tokens/round |\n| --- | ---: | ---: | ---: | ---: |\n")
  local function row(name, r, st)
    local lo, hi = minmax(r)
    w("| %s | %.2f | %.2f-%.2f | %s | %s |\n", name, median(r), lo, hi,
      st and string.format("%.1f%%", 100 * st.accepted / math.max(st.drafted, 1)) or "-",
      st and string.format("%.2f", st.tokens / math.max(st.rounds, 1)) or "-")
  end
  row("verifier alone", base)
  row("sequential", seq, st_s)
  row("overlapped", ovl, st_o)
  local lo, hi = minmax(ratio)
  w("\noverlapped / sequential: median %.3fx (min %.3f, max %.3f, per repetition); same tokens: %s\n",
    median(ratio), lo, hi, same and "yes" or "NO")
  tern.write(table.concat(out))
end

function M.bench(opts)
  if opts.overlap then return M.overlap(opts) end
  local v, d = open(opts)
  local K = check_int("draft_max", opts.draft_max or 8, 1, 16)
  local n = opts.n_gen_bench or 64
  local reps = opts.reps or 3
  local P = opts.spec_accept_rate
  if P and (P < 0 or P > 1) then error("--spec-accept-rate must be in 0..1", 0) end
  local prompts, np = prompt_ids(v, opts)
  -- warm-up: graphs for every batch shape, weights faulted in
  spec_rate(v, d, opts, { prompts[1] }, math.min(n, 2 * K + 4), K, 1, 0)
  local t_draft, t_verify = measure_costs(v, d, prompts[1], K, 2 * reps + 3)
  local base = median(base_rate(v, prompts, n, reps))
  local rows, best = {}, nil
  for k = 1, K do
    local rates, st = spec_rate(v, d, opts, prompts, n, k, reps, 0)
    local tps = median(rates)
    local t_model = 0 -- every round priced at n * T_draft + T_verify(n + 1)
    for b, c in pairs(st.by_n) do t_model = t_model + c * (b * t_draft[k] + t_verify[b + 1]) end
    local a = st.trials > 0 and st.accepted / st.trials or 0
    local row = { k = k, a = P or a, a_measured = a, tps = tps, measured = tps / base,
                  acceptance = st.drafted > 0 and st.accepted / st.drafted or 0,
                  per_round = st.rounds > 0 and st.tokens / st.rounds or 0, rounds = st.rounds,
                  model_share = st.t_gen > 0 and t_model / st.t_gen or 0 }
    row.E = spec.expected_tokens(row.a, k)
    row.predicted = M.predicted_speedup(row.a, k, t_draft[k], t_verify)
    rows[k] = row
    if not best or row.measured > best.measured then best = row end
  end
  local adaptive
  if not P then -- the default configuration: draft_max K with the p_min of the options
    local pm = opts.draft_p_min or 0.1
    local rates, st = spec_rate(v, d, opts, prompts, n, K, reps, pm)
    local tps = median(rates)
    adaptive = { k = K, p_min = pm, tps = tps, measured = tps / base,
                 acceptance = st.drafted > 0 and st.accepted / st.drafted or 0,
                 per_round = st.rounds > 0 and st.tokens / st.rounds or 0 }
  end
  local vi, di = v.model:info(), d.model:info()
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

return function(opts)
  if opts == nil then return M end
  return M.bench(opts)
end
