-- graphs/generate.lua: the plain generation pipeline behind `tern run`.
-- Prefill the prompt in one go (the session cuts it into n_batch chunks),
-- then decode one token at a time until end of generation, -n tokens, a
-- stop string, a full context or Ctrl-C. Text streams to stdout; timings
-- go to stderr.
local common = tern.script("common.lua")

return function(opts)
  local model, session = common.open(opts)
  local info = model:info()
  local prompt = common.prompt_text(opts)
  local ids = model:tokenize(prompt, not opts.no_bos, opts.special)
  if #ids == 0 then error("empty prompt: nothing to evaluate (give -p TEXT)", 0) end
  if #ids > session:n_ctx() then
    error(string.format("prompt of %d tokens does not fit the context of %d (raise -c)", #ids, session:n_ctx()), 0)
  end
  local n_predict = opts.n_predict or -1

  tern.write(prompt)
  local t_prompt = tern.now()
  session:eval(ids)
  t_prompt = tern.now() - t_prompt

  local sampler = tern.sampler(common.sampler_params(opts), info.n_vocab)
  for _, id in ipairs(ids) do sampler:accept(id) end
  local detok, text, n_gen = tern.detok(model), {}, 0
  local stops = common.stop_list(opts)
  local t_gen = tern.now()
  local why = "n_predict"
  while n_predict < 0 or n_gen < n_predict do
    if tern.interrupted() then why = "interrupted"; break end
    local id = sampler:sample(session)
    if model:is_eog(id) then why = "end of text"; break end
    n_gen = n_gen + 1
    local piece = detok:push(id)
    tern.write(piece)
    text[#text + 1] = piece
    if common.hit_stop(text, stops) then why = "stop string"; break end
    if session:n_past() >= session:n_ctx() then why = "context full"; break end
    if n_predict >= 0 and n_gen >= n_predict then break end
    session:eval({ id })
  end
  t_gen = tern.now() - t_gen
  tern.write(detok:flush() .. "\n")
  common.report(opts, model, session, {
    n_prompt = #ids, t_prompt = t_prompt, n_gen = n_gen, t_gen = t_gen, stop = why })
end
