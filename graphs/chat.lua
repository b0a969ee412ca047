-- graphs/chat.lua: interactive multi-turn chat behind `tern chat`.
-- Each turn formats the whole conversation with the model's chat template
-- (tokenizer.chat_template: Llama 3 headers, BitNet 2B4T's "User: ...
-- <|eot_id|>Assistant:" style, ChatML, or a plain default), tokenizes it,
-- and evaluates only what the KV cache does not already hold: the cache
-- is kept between turns and rolled back to the longest common prefix.
local common = tern.script("common.lua")

local function common_prefix(a, b)
  local n = 0
  while n < #a and n < #b and a[n + 1] == b[n + 1] do n = n + 1 end
  return n
end

return function(opts)
  local model, session = common.open(opts)
  local info = model:info()
  local sampler = tern.sampler(common.sampler_params(opts), info.n_vocab)
  local history, cached = {}, {}
  if opts.system then history[1] = { role = "system", content = opts.system } end
  local n_predict = opts.n_predict or -1
  local _, style = tern.chat_format(info.chat_template, {}, false)
  tern.log(string.format("tern chat: %s, template %s; empty line or Ctrl-D ends, Ctrl-C stops\n",
    info.describe, style))
  while true do
    tern.write("> ")
    local line = tern.read_line() -- at most 1 MiB; nil at the end of input or on Ctrl-C
    if not line or tern.interrupted() then break end
    if line == "" then break end
    history[#history + 1] = { role = "user", content = line }
    local text = tern.chat_format(info.chat_template, history, true)
    local ids = model:tokenize(text, true, true)
    local keep = common_prefix(cached, ids)
    if keep == #ids then keep = keep - 1 end -- re-evaluate one token for fresh logits
    session:rollback(#cached - keep)
    local new = table.move(ids, keep + 1, #ids, 1, {})
    if session:n_past() + #new >= session:n_ctx() then
      error(string.format("context full: the conversation needs %d tokens, the context holds %d (raise -c)",
        keep + #new, session:n_ctx()), 0)
    end
    session:eval(new)
    cached = ids
    local detok, reply, n_gen = tern.detok(model), {}, 0
    while n_predict < 0 or n_gen < n_predict do
      if tern.interrupted() then break end
      local id = sampler:sample(session)
      if model:is_eog(id) then break end
      local piece = detok:push(id)
      tern.write(piece)
      reply[#reply + 1] = piece
      n_gen = n_gen + 1
      if session:n_past() >= session:n_ctx() then tern.log("\n[context full]\n"); break end
      session:eval({ id })
      cached[#cached + 1] = id -- cached mirrors the session's tokens
    end
    reply[#reply + 1] = detok:flush()
    tern.write(reply[#reply] .. "\n")
    history[#history + 1] = { role = "assistant", content = table.concat(reply) }
    if tern.interrupted() then break end
  end
  if tern.interrupted() then tern.log("\ninterrupted\n") end
end
