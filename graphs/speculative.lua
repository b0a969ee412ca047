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
    stats = { rounds = 0, drafted = 0, accepted = 0, trials = 0, t_draft = 0, t_verify = 0 },
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
