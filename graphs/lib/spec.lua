-- graphs/lib/spec.lua: speculative decoding as parts that compose. Loaded
-- with tern.script("lib/spec.lua"); graphs/speculative.lua and
-- graphs/examples/*.lua are built on it, and so can a user's pipeline.
--
-- A run (M.new) has one verifier, one proposer (M.best_of joins several),
-- a draft policy (how many tokens a round may draft, when drafting stops)
-- and an acceptance rule. Each part is a table or a plain function and
-- swapping one leaves the others alone. A round: the proposer drafts up to
-- k tokens after the text so far; the verifier evaluates the last emitted
-- token and the draft in one batch; the acceptance rule keeps the longest
-- prefix the verifier agrees with, plus one token of the verifier's own;
-- the verifier's cache is rewound to a mark past what was kept.
--
-- Exactness is this file's job, so every pipeline on it inherits it:
-- greedy (temp <= 0), every emitted token is the verifier's own choice at
-- its position whatever was drafted; sampling, speculative sampling emits
-- each token from the verifier's distribution as long as a drafted token
-- comes with q, the distribution it was drawn from. A token without q is
-- judged against a one-hot q, which is exact whatever chose the token (an
-- n-gram match, a user function, the winner of M.best_of). Proposals are
-- checked (a list of token ids inside the vocabulary, at most k) before
-- they reach a session; a broken part is named by its file and line.
--
-- Invariant between rounds: run.tokens is the text so far (the prompt and
-- every emitted token); the verifier's cache holds all of it but the last
-- token, which the next round evaluates first. Proposers read run.tokens
-- and keep their own state in step with it (they are never told to roll
-- back: the text is the truth).
local common = tern.script("common.lua")

local M = {}

local BIG = 1 << 30

-- "file:line" of a Lua function, for messages about the part that failed.
local function where(fn)
  if type(fn) ~= "function" then return "?" end
  local i = debug.getinfo(fn, "S")
  return i.what == "C" and "[C]" or string.format("%s:%d", i.short_src, i.linedefined)
end

local function check_int(name, v, lo, hi)
  if math.type(v) ~= "integer" or v < lo or v > hi then
    error(string.format("%s must be an integer in %d..%d, not %s", name, lo, hi, tostring(v)), 0)
  end
  return v
end

local probs_mt = getmetatable(tern.probs(1, 1))

-- Expected tokens per round for per-token acceptance a and k drafted.
function M.expected_tokens(a, k)
  if a >= 1 then return k + 1 end
  return (1 - a ^ (k + 1)) / (1 - a)
end

-- ---- the verifier ----

-- Opens opts.model (on opts.backend, opts.threads) and its session.
function M.verifier(opts)
  local model, sess = common.open(opts)
  return { model = model, sess = sess, n_vocab = model:info().n_vocab, path = opts.model }
end

-- ---- proposers ----
--
-- A proposer is a table { name =, propose = function(self, run, k) } with
-- optional start(self, run) (a new text begins: run.tokens is the prompt)
-- and ahead(self, run, ids, ready) (the verifier checks ids on its worker
-- thread: draft past them until ready() is true). propose returns a list
-- of at most k token ids to follow run.tokens, optionally q (a tern.probs
-- buffer whose row i is the distribution ids[i] was drawn from) and conf
-- (per-token confidences in 0..1 for M.best_of). A plain function(run, k)
-- returning the list is a proposer too.

local Draft = {}
Draft.__index = Draft

-- A draft model: {model=, sess=} already open, or the options of the
-- command line (opts.model_draft on backend_draft, threads_draft).
-- Greedy it drafts its argmax, sampling it draws from the verifier's
-- sampler chain (without penalties) and returns q. It stops when the
-- policy says so (keep).
--
-- Its cache (self.toks) holds a prefix of the text, then maybe tokens it
-- drafted past the text; self.next is the token it picked after the
-- last one without evaluating it yet. A mark taken before each batch it
-- evaluates (self.starts) lets it rewind to any position.
--
-- Sequential rounds: it catches up with the text and drafts up to k
-- tokens. Overlapped rounds (run.overlap): while the verifier checks a
-- proposal (ahead), it catches up with the text and the proposal and
-- drafts past them; if the verifier takes the whole proposal and its own
-- next token is the first one drafted past it, the rest is the next
-- proposal, and the verifier does not wait for the draft at all. Without
-- such a head start it drafts up to run.k_sync tokens first (default k;
-- 0: none, the verifier decodes one token while the draft catches up).
-- Tokens drafted in an earlier round are judged one-hot.
function M.draft_model(a)
  local d = setmetatable({ name = a.name or "draft" }, Draft)
  if a.sess then
    d.model, d.sess, d.path = a.model, a.sess, a.path or a.model:info().path
  else
    if not a.model_draft then error("speculative decoding needs a draft model (--model-draft FILE)", 0) end
    local dopts = setmetatable({ model = a.model_draft, backend = a.backend_draft or a.backend,
                                 threads = a.threads_draft or a.threads }, { __index = a })
    d.model, d.sess = common.open(dopts)
    d.path = a.model_draft
  end
  return d
end

function Draft:start(run)
  self.greedy, self.policy = run.greedy, run.policy
  if not self.greedy and self.sp ~= run.sp then
    local sp = run.sp -- any q is exact as long as it is what the token was drawn from
    self.sp = sp
    self.smp = tern.sampler({ temp = sp.temp, top_k = sp.top_k, top_p = sp.top_p, min_p = sp.min_p,
                              seed = sp.seed and sp.seed + 1 or nil }, run.n_vocab)
    self.qa = tern.probs(run.n_vocab, 1)
  end
  self.sess:reset()
  self.toks, self.starts, self.base, self.next = {}, {}, 0, nil
  self:align(run.tokens, {}, true)
end

-- Evaluates ids[i..j] (one batch), with a mark before it.
function Draft:push(ids, i, j)
  local batch = table.move(ids, i, j, 1, {})
  local mark = self.sess:mark()
  self.sess:eval(batch)
  self.starts[#self.starts + 1] = mark
  table.move(batch, 1, #batch, #self.toks + 1, self.toks)
  self.fresh = true -- the logits are the last token's
end

-- Back to the first n tokens of the cache: to the mark of the batch
-- position n + 1 was in, keeping what came before it in that batch.
function Draft:cut(n)
  if n >= #self.toks then return end
  local st = self.starts
  while st[#st].pos > n do st[#st] = nil end
  self.sess:rewind(st[#st], n - st[#st].pos)
  for i = #self.toks, n + 1, -1 do self.toks[i] = nil end
  self.fresh = false
end

-- The next token after the cache's last and the draft's confidence (its
-- top probability); sampling, its distribution goes to q[row].
function Draft:pick(q, row)
  if not self.fresh then -- after a cut: evaluate the last token again
    local last = self.toks[#self.toks]
    self:cut(#self.toks - 1)
    self:push({ last }, 1, 1)
  end
  if self.greedy then return self.sess:top() end
  local _, pmax = self.smp:probs(self.sess, nil, q, row)
  return self.smp:draw(q, row), pmax
end

-- Puts the cache in step with the text h followed by extra (a proposal
-- under verification, or {}): keeps the longest prefix they share, and
-- with eval evaluates the rest in one batch (without, the cache may lag).
-- Tokens past h .. extra stay. Returns whether the cache holds h .. extra.
function Draft:align(h, extra, eval)
  local toks, n = self.toks, #h + #extra
  local c = math.min(self.base, #toks, #h) -- the first `base` were the text's at the last alignment
  while c < #toks and c < n and toks[c + 1] == (c < #h and h[c + 1] or extra[c + 1 - #h]) do c = c + 1 end
  if c == n then
    self.base = #h
    return true
  end
  self:cut(c)
  self.next, self.base = nil, math.min(c, #h)
  if not eval or n > self.sess:n_ctx() then return false end
  local batch = table.move(h, c + 1, #h, 1, {})
  table.move(extra, math.max(1, c + 1 - #h), #extra, #batch + 1, batch)
  self:push(batch, 1, #batch)
  self.base = #h
  return true
end

local function qbuf(self, n_vocab, k)
  if not self.q or select(2, self.q:size()) < k then self.q = tern.probs(n_vocab, math.max(k, 8)) end
  return self.q
end

function Draft:propose(run, k)
  local h = run.tokens
  local q = not self.greedy and qbuf(self, run.n_vocab, k) or nil
  local ids, conf = {}, {}
  if self:align(h, {}, not run.overlap) then
    -- the head start: drafted past the text in an earlier round, judged one-hot
    table.move(self.toks, #h + 1, #self.toks, 1, ids)
    if self.next then ids[#ids + 1] = self.next end
    if #ids > k then -- keep k: the cache holds the text and ids[1..k-1]
      self:cut(#h + k - 1)
      self.next = ids[k]
      for i = #ids, k + 1, -1 do ids[i] = nil end
    end
    if q then for i = 1, #ids do q:onehot(i, ids[i]) end end
    if run.overlap and #ids > 0 then return ids, q end
  elseif not run.overlap then
    return {} -- the text outgrew the draft's context
  end
  if run.overlap then -- no head start: catch up and draft k_sync tokens first
    if run.k_sync == 0 or not self:align(h, {}, true) then return {} end
    k = math.min(k, run.k_sync)
  end
  while #ids < k do
    local n = #ids
    if n > 0 and #self.toks < #h + n then -- ids[n] into the cache first
      if self.sess:n_past() >= self.sess:n_ctx() then break end
      self:push(ids, n, n)
    end
    local id, p = self:pick(q, n + 1)
    if not self.policy:keep(n + 1, p) then break end
    ids[n + 1], conf[n + 1] = id, p
  end
  self.next = #self.toks < #h + #ids and ids[#ids] or nil
  return ids, q, conf
end

-- While the verifier checks ids (overlapped rounds): catches up with the
-- text and ids, then drafts past them until ready() is true, k_ahead
-- tokens are drafted or the policy stops it.
function Draft:ahead(run, ids, ready)
  if not self:align(run.tokens, ids, true) then return end
  local j = #self.toks - #run.tokens - #ids + (self.next and 1 or 0) -- drafted past ids already
  while j < run.k_ahead and not ready() do
    if self.next then
      if self.sess:n_past() >= self.sess:n_ctx() - 1 then break end
      self:push({ self.next }, 1, 1)
      self.next = nil
    end
    local id, p = self:pick(self.qa, 1)
    j = j + 1
    if j > 1 and not self.policy:keep(j - 1, p) then break end
    self.next = id
  end
end

-- Prompt lookup: proposes what followed the latest earlier occurrence of
-- the text's last n tokens (n from n_max down to n_min), no model at all.
-- Each n has an index (n-gram -> where it last ended), grown as the text
-- grows. Deterministic, so its proposals are judged one-hot.
function M.ngram(o)
  o = o or {}
  local p = { name = o.name or "ngram", n_min = o.n_min or 2, n_max = o.n_max or 4 }
  check_int("ngram n_min", p.n_min, 1, 16)
  check_int("ngram n_max", p.n_max, p.n_min, 16)

  local function key(h, e, n, wide) -- the n-gram ending at e
    if wide then return string.pack(string.rep("i4", n), table.unpack(h, e - n + 1, e)) end
    local v = 0
    for i = e - n + 1, e do v = v * p.V + h[i] end
    return v
  end

  function p.start(self, run)
    self.h, self.upto, self.idx, self.V = run.tokens, 0, {}, run.n_vocab
    self.wide = {}
    for n = self.n_min, self.n_max do
      self.idx[n] = {}
      self.wide[n] = n * math.log(run.n_vocab, 2) > 62 -- integer keys would overflow
    end
  end

  function p.propose(self, run, k)
    local h = run.tokens
    if self.h ~= h then self:start(run) end -- a new text
    for e = self.upto + 1, #h - 1 do -- index every n-gram that ends before the last token
      for n = self.n_min, math.min(self.n_max, e) do self.idx[n][key(h, e, n, self.wide[n])] = e end
    end
    self.upto = math.max(self.upto, #h - 1)
    for n = math.min(self.n_max, #h), self.n_min, -1 do
      local e = self.idx[n][key(h, #h, n, self.wide[n])]
      if e and e < #h then -- (the text may have been cut back since e was indexed)
        local ids = {}
        for j = 1, k do ids[j] = e + j <= #h and h[e + j] or ids[e + j - #h] end -- a period repeats
        return ids
      end
    end
    return {}
  end
  return p
end

-- The proposer table for x: a proposer, a function, or a list (best of).
function M.proposer(x)
  if type(x) == "function" then
    local fn = x
    return { name = "function at " .. where(fn), fn = fn, propose = function(_, run, k) return fn(run, k) end }
  elseif type(x) == "table" and x.propose then
    return x
  elseif type(x) == "table" and #x > 0 then
    return #x == 1 and M.proposer(x[1]) or M.best_of(x)
  end
  error(string.format("a proposer is a function(run, k), a table with propose, or a list of them, not %s",
    type(x)), 0)
end

-- Several proposers, best of per round: each proposes in turn (the rest
-- are skipped once one offers `enough` expected tokens) and the proposal
-- with the most expected tokens wins: the sum over its tokens of the
-- product of their confidences, a token's confidence being what its
-- proposer says (a draft model: its probability) or else that proposer's
-- running acceptance. The winner's q is dropped: a choice made on the
-- drafted tokens would bias it, and one-hot judging is exact whatever
-- chose them. ahead goes to every part that has it.
function M.best_of(list, o)
  o = o or {}
  local parts, names = {}, {}
  for i, x in ipairs(list) do
    parts[i] = M.proposer(x)
    names[i] = parts[i].name
  end
  local b = { name = "best of " .. table.concat(names, ", "), parts = parts, enough = o.enough or BIG }
  function b.start(self, run)
    for _, p in ipairs(self.parts) do if p.start then p:start(run) end end
  end
  function b.propose(self, run, k)
    local best, score, who = {}, -1, nil
    for _, p in ipairs(self.parts) do
      local ids, _, conf = run:ask(p, k)
      local a, s, prod = run:acceptance(p), 0, 1
      for i = 1, #ids do
        prod = prod * (conf and conf[i] or a)
        s = s + prod
      end
      if s > score or (s == score and #ids > #best) then best, score, who = ids, s, p end
      if s >= self.enough then break end
    end
    self.winner = who
    return best, nil, nil, who
  end
  function b.ahead(self, run, ids, ready) -- every part may use the verifier's time, whoever won
    for _, p in ipairs(self.parts) do if p.ahead then p:ahead(run, ids, ready) end end
  end
  return b
end

-- ---- draft policies ----
--
-- A policy is { k = function(self, run) -> most tokens this round,
-- keep = function(self, i, p) -> whether a draft model keeps its i-th
-- token of confidence p, update = function(self, run, n, m, t_draft,
-- t_verify) (optional: n drafted, m accepted, the round's seconds) }. A
-- plain function(run) -> k is a policy that keeps every token.

-- Every round drafts up to k tokens.
function M.fixed(k)
  check_int("draft length", k, 0, 64)
  return { name = "fixed " .. k, k_max = k, k = function() return k end, keep = function() return true end }
end

-- Up to k_max tokens, stopping at the first token whose probability under
-- the draft is below p_min after k_min tokens (llama.cpp's --draft-p-min).
function M.p_min(o)
  local k_max = check_int("draft_max", o.k_max or 8, 0, 64)
  local k_min = check_int("draft_min", o.k_min or 0, 0, k_max)
  local p_min = o.p_min or 0.1
  return { name = string.format("draft_max %d, p_min %.2f", k_max, p_min), k_max = k_max,
           k = function() return k_max end, keep = function(_, i, p) return i <= k_min or p >= p_min end }
end

-- k from the running acceptance: the k in k_min..k_max that maximises a
-- round's expected tokens per second, E(a, k) / (k * t_draft + t_verify(k + 1)),
-- where a is the per-token acceptance, t_draft the proposer's seconds per
-- drafted token and t_verify(n) = alpha + beta * (n - 1) a line fitted to
-- the verifier's batch times, all averaged with weight `decay` per round.
-- A draft model also stops at p_min (default 0: never).
function M.adaptive(o)
  o = o or {}
  local P = { name = "adaptive", k_min = o.k_min or 1, k_max = o.k_max or 12, p_min = o.p_min or 0,
              decay = o.decay or 0.95, a0 = o.a0 or 0.6 }
  check_int("adaptive k_min", P.k_min, 0, 64)
  check_int("adaptive k_max", P.k_max, P.k_min, 64)
  local s = { acc = 0, tri = 0, td = 0, nd = 0, w = 0, x = 0, xx = 0, y = 0, xy = 0 }
  P.sums = s
  function P.acceptance() return s.tri > 0.5 and s.acc / s.tri or P.a0 end
  function P.k(self)
    if s.w < 1 then return math.max(self.k_min, math.min(self.k_max, 4)) end
    local a = math.min(math.max(self.acceptance(), 0.01), 0.99)
    local t_draft = s.nd > 0 and s.td / s.nd or 0
    local mx, my = s.x / s.w, s.y / s.w
    local var = s.xx / s.w - mx * mx
    local beta = var > 0.25 and (s.xy / s.w - mx * my) / var or 0.05 * my -- one batch size seen: a prior
    beta = math.max(beta, 0)
    local alpha = math.max(my - beta * mx, 1e-9)
    local best, bk = -1, self.k_min
    for k = self.k_min, self.k_max do
      local r = M.expected_tokens(a, k) / (k * t_draft + alpha + beta * k)
      if r > best then best, bk = r, k end
    end
    return bk
  end
  function P.keep(self, i, p) return p >= self.p_min end
  function P.update(self, run, n, m, t_draft, t_verify)
    local d = self.decay
    for key, v in pairs(s) do s[key] = v * d end
    if n > 0 then
      s.acc, s.tri = s.acc + m, s.tri + (m < n and m + 1 or m)
      s.td, s.nd = s.td + t_draft, s.nd + n
    end
    s.w, s.x, s.xx = s.w + 1, s.x + n, s.xx + n * n
    s.y, s.xy = s.y + t_verify, s.xy + n * t_verify
  end
  return P
end

-- The policy table for x: a policy, or a function(run) -> k.
function M.policy(x)
  if type(x) == "function" then
    local fn = x
    return { name = "function at " .. where(fn), fn = fn, k = function(_, run) return fn(run) end,
             keep = function() return true end }
  elseif type(x) == "table" and x.k then
    x.keep = x.keep or function() return true end
    return x
  end
  error(string.format("a policy is a function(run) -> k or a table with k, not %s", type(x)), 0)
end

-- ---- acceptance rules ----
--
-- rule(run, j, x, q, qrow) -> accepted, token: the verdict on draft token
-- x at row j of the verifier's batch (q[qrow]: what x was drawn from, or
-- nil). The token is what to emit there: x when accepted. Both rules here
-- pass the emitted token to the verifier's sampler (penalty window), as
-- generate.lua's sample does.

-- Greedy: the verifier's own token (its chain at temp 0, penalties
-- included); x stands if it is that token.
function M.greedy_accept(run, j, x)
  local tok = run.smp:sample(run.v.sess, j)
  return tok == x, tok
end

-- Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): accept
-- x with probability min(1, p(x)/q(x)), else draw from max(0, p - q).
function M.sampling_accept(run, j, x, q, qrow)
  run.smp:probs(run.v.sess, j, run.p, 1)
  if not q then
    q, qrow = run.q1, 1
    q:onehot(1, x)
  end
  return run.smp:speculate(run.p, 1, q, qrow, x)
end

-- ---- a run ----

local Run = {}
Run.__index = Run

-- cfg: verifier (M.verifier), proposer (or proposers: a list, best of),
-- policy (default M.p_min{}), accept (default by temperature), sampling
-- (sampler settings: temp, top_k, ..., seed), overlap (verify on the
-- verifier's worker thread while the proposer drafts ahead), k_ahead
-- (most tokens drafted ahead, default the policy's k_max or 8), k_sync
-- (overlapped rounds without a head start: most tokens drafted before the
-- verifier starts; default no limit but k).
function M.new(cfg)
  local v = cfg.verifier or error("spec.new: cfg.verifier is missing", 2)
  local sp = cfg.sampling or {}
  local run = setmetatable({ v = v, n_vocab = v.n_vocab, sp = sp, greedy = (sp.temp or 0.8) <= 0,
                             overlap = cfg.overlap, tokens = {}, n_prompt = 0 }, Run)
  run.smp = tern.sampler(sp, run.n_vocab)
  run.proposer = M.proposer(cfg.proposer or cfg.proposers)
  run.policy = M.policy(cfg.policy or M.p_min({}))
  run.accept = cfg.accept or (run.greedy and M.greedy_accept or M.sampling_accept)
  run.k_ahead, run.k_sync = cfg.k_ahead or run.policy.k_max or 8, cfg.k_sync or BIG
  if not run.greedy then run.p, run.q1 = tern.probs(run.n_vocab, 1), tern.probs(run.n_vocab, 1) end
  for _, p in ipairs(run.proposer.parts or { run.proposer }) do
    if p.model then
      local ok, why = tern.same_vocab(p.model, v.model)
      if not ok then
        error(string.format("draft %s and verifier %s do not share a vocabulary: %s", p.path or p.name,
          v.path or "?", why), 0)
      end
    end
  end
  run:reset_stats()
  return run
end

function Run:reset_stats()
  self.stats = { rounds = 0, drafted = 0, accepted = 0, trials = 0, t_draft = 0, t_verify = 0,
                 by = {}, by_n = {} }
end

-- Per-proposer counters (proposers of a best_of each have theirs).
function Run:counters(p)
  local c = self.stats.by[p]
  if not c then
    c = { name = p.name, rounds = 0, drafted = 0, accepted = 0, trials = 0 }
    self.stats.by[p] = c
  end
  return c
end

-- p's running per-token acceptance: (accepted + 1) / (tokens judged + 2),
-- so one bad round does not rule a proposer out for good.
function Run:acceptance(p)
  local c = self.stats.by[p]
  return c and (c.accepted + 1) / (c.trials + 2) or 0.5
end

-- Asks proposer p for up to k tokens and checks what comes back.
function Run:ask(p, k)
  local ids, q, conf, who = p:propose(self, k)
  local culprit = p.fn or p.propose
  if ids == nil then ids = {} end
  if type(ids) ~= "table" then
    error(string.format("%s: proposer '%s' returned %s, not a list of token ids", where(culprit), p.name,
      type(ids)), 0)
  end
  if #ids > k then ids = table.move(ids, 1, k, 1, {}) end
  for i = 1, #ids do
    local id = ids[i]
    if math.type(id) ~= "integer" or id < 0 or id >= self.n_vocab then
      error(string.format("%s: proposer '%s' returned %s at position %d, not a token id of the vocabulary " ..
        "(0..%d)", where(culprit), p.name, tostring(id), i, self.n_vocab - 1), 0)
    end
  end
  if q ~= nil and (getmetatable(q) ~= probs_mt or select(2, q:size()) < #ids) then
    error(string.format("%s: proposer '%s' returned a q that is not a tern.probs buffer of %d rows",
      where(culprit), p.name, #ids), 0)
  end
  return ids, q, conf, who or p
end

-- The acceptance rule's verdict on row j, checked.
function Run:judge(j, x, q)
  local ok, tok = self.accept(self, j, x, q, j)
  if math.type(tok) ~= "integer" or tok < 0 or tok >= self.n_vocab then
    error(string.format("%s: acceptance rule returned token %s for row %d, not a token id of the vocabulary",
      where(self.accept), tostring(tok), j), 0)
  end
  return ok and tok == x, tok
end

-- Evaluates the prompt in the verifier and starts the proposers on it.
function Run:prefill(ids)
  self.tokens = table.move(ids, 1, #ids, 1, {})
  self.n_prompt = #ids
  self.v.sess:eval(ids)
  for _, id in ipairs(ids) do self.smp:accept(id) end
  if self.proposer.start then self.proposer:start(self) end
end

-- One round: at most `limit` tokens (>= 1) come back, appended to
-- run.tokens.
function Run:round(limit)
  local vs, h = self.v.sess, self.tokens
  local k = self.policy:k(self)
  if math.type(k) ~= "integer" or k < 0 then
    error(string.format("%s: policy returned %s, not a draft length", where(self.policy.fn or self.policy.k),
      tostring(k)), 0)
  end
  k = math.max(0, math.min(k, limit - 1, vs:n_ctx() - vs:n_past() - 1))
  local t0 = tern.now()
  local ids, q, who = {}, nil, self.proposer
  if k > 0 then ids, q, _, who = self:ask(self.proposer, k) end
  local n = #ids
  local batch = { h[#h] }
  table.move(ids, 1, n, 2, batch)
  local t1 = tern.now()
  local mark = vs:mark()
  if self.overlap and self.proposer.ahead then
    vs:eval_async(batch, true)
    local ok, err = pcall(self.proposer.ahead, self.proposer, self, ids, function() return vs:ready() end)
    vs:wait()
    if not ok then error(err, 0) end
  else
    vs:eval(batch, true)
  end
  local out, m = {}, 0
  for j = 1, n do
    local ok, tok = self:judge(j, ids[j], q)
    out[j] = tok
    if not ok then break end
    m = j
  end
  if m == n then out[n + 1] = self.smp:sample(vs, n + 1) end
  vs:rewind(mark, 1 + m)
  table.move(out, 1, #out, #h + 1, h)
  local t2 = tern.now()
  local st, trials = self.stats, m < n and m + 1 or m
  st.rounds, st.drafted, st.accepted, st.trials = st.rounds + 1, st.drafted + n, st.accepted + m, st.trials + trials
  st.t_draft, st.t_verify = st.t_draft + (t1 - t0), st.t_verify + (t2 - t1)
  st.by_n[n] = (st.by_n[n] or 0) + 1
  if n > 0 then
    local c = self:counters(who)
    c.rounds, c.drafted, c.accepted, c.trials = c.rounds + 1, c.drafted + n, c.accepted + m, c.trials + trials
  end
  if self.policy.update then self.policy:update(self, n, m, t1 - t0, t2 - t1) end
  return out
end

-- Generates after prefill until end of generation, n_predict tokens (< 0:
-- no limit), a full context, Ctrl-C, or on_token(id) returning a reason
-- to stop. Returns the token count and why it stopped.
function Run:generate(n_predict, on_token)
  local v = self.v
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
  local first = self.smp:sample(v.sess)
  self.tokens[#self.tokens + 1] = first
  local why = take(first)
  while not why do
    if tern.interrupted() then why = "interrupted"; break end
    if v.sess:n_past() >= v.sess:n_ctx() then why = "context full"; break end
    local out = self:round(n_predict >= 0 and n_predict - n_gen or BIG)
    for _, tok in ipairs(out) do
      why = take(tok)
      if why then break end
    end
  end
  return n_gen, why
end

local function rate(n, t) return t > 0 and n / t or 0 end

function Run:report(n_gen, t_gen)
  local st = self.stats
  tern.log(string.format(
    "speculative: %d rounds, drafted %d, accepted %d (acceptance %.1f%%), %.2f accepted and %.2f tokens per round, %.2f tok/s | draft %.1f ms, verify %.1f ms%s\n",
    st.rounds, st.drafted, st.accepted, st.drafted > 0 and 100 * st.accepted / st.drafted or 0,
    rate(st.accepted, st.rounds), rate(n_gen - 1, st.rounds), rate(n_gen, t_gen),
    st.t_draft * 1000, st.t_verify * 1000, self.overlap and " (overlapped)" or ""))
  local parts = self.proposer.parts or { self.proposer }
  for _, p in ipairs(parts) do
    local c = st.by[p]
    if #parts > 1 or p.model then
      local what = p.model and p.model:info().describe or "no model"
      c = c or { rounds = 0, drafted = 0, accepted = 0 }
      tern.log(string.format("  %s (%s): won %d rounds, drafted %d, accepted %d (%.1f%%)\n", p.name, what,
        c.rounds, c.drafted, c.accepted, c.drafted > 0 and 100 * c.accepted / c.drafted or 0))
    end
  end
end

-- The verifier alone on the same prompt for n tokens (no early stop), as
-- generate.lua decodes: tokens/s and the tokens.
function M.verifier_alone(v, sp, ids, n)
  local vs = v.sess
  vs:reset()
  local smp = tern.sampler(sp, v.n_vocab)
  for _, id in ipairs(ids) do smp:accept(id) end
  vs:eval(ids)
  local toks, t0 = {}, tern.now()
  for i = 1, n do
    toks[i] = smp:sample(vs)
    if i < n then vs:eval({ toks[i] }) end
  end
  return rate(n, tern.now() - t0), toks
end

-- ---- the command-line pipeline ----

-- What `tern run` does with a run: opens the verifier from opts, builds
-- the run from cfg (a table for M.new without verifier and sampling, or
-- function(verifier, opts) returning one), tokenizes and evaluates the
-- prompt, streams the text to stdout and reports on stderr as
-- generate.lua does, and with -v (or spec_compare) runs the verifier
-- alone for the speed-up. opts.quiet: no output. Returns the generated
-- token ids and the run.
function M.main(opts, cfg)
  local v = M.verifier(opts)
  if type(cfg) == "function" then cfg = cfg(v, opts) end
  if type(cfg) ~= "table" then error("spec.main: cfg must be a table or a function returning one", 2) end
  cfg.verifier, cfg.sampling = v, cfg.sampling or common.sampler_params(opts)
  if cfg.overlap == nil then cfg.overlap = opts.overlap end
  local run = M.new(cfg)
  local quiet = opts.quiet
  local prompt = common.prompt_text(opts)
  local ids = v.model:tokenize(prompt, not opts.no_bos, opts.special)
  if #ids == 0 then error("empty prompt: nothing to evaluate (give -p TEXT)", 0) end
  if #ids > v.sess:n_ctx() then
    error(string.format("prompt of %d tokens does not fit the context of %d (raise -c)", #ids, v.sess:n_ctx()), 0)
  end
  if not quiet then tern.write(prompt) end
  local t_prompt = tern.now()
  run:prefill(ids)
  t_prompt = tern.now() - t_prompt
  local detok, text, toks = tern.detok(v.model), {}, {}
  local stops = common.stop_list(opts)
  local t_gen = tern.now()
  local ok, n_gen, why = pcall(run.generate, run, opts.n_predict or -1, function(id)
    toks[#toks + 1] = id
    local piece = detok:push(id)
    if not quiet then tern.write(piece) end
    text[#text + 1] = piece
    if common.hit_stop(text, stops) then return "stop string" end
  end)
  if not ok then -- the message on a line of its own, after the text so far
    if not quiet then tern.write("\n") end
    error(n_gen, 0)
  end
  t_gen = tern.now() - t_gen
  if quiet then return toks, run end
  tern.write(detok:flush() .. "\n")
  common.report(opts, v.model, v.sess, { n_prompt = #ids, t_prompt = t_prompt, n_gen = n_gen, t_gen = t_gen,
                                         stop = why })
  run:report(n_gen, t_gen)
  if (opts.spec_compare or opts.verbose) and n_gen > 0 then
    local tps, alone = M.verifier_alone(v, cfg.sampling, ids, n_gen)
    local same = ""
    if run.greedy then
      local k = 0
      while k < n_gen and alone[k + 1] == toks[k + 1] do k = k + 1 end
      same = k == n_gen and ", same tokens" or string.format(", tokens differ from position %d", k)
    end
    tern.log(string.format("verifier alone: %d tokens, %.2f tok/s%s | speed-up %.2fx\n",
      n_gen, tps, same, rate(n_gen, t_gen) / tps))
  end
  return toks, run
end

return M
