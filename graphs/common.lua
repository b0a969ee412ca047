-- graphs/common.lua: helpers the pipelines share (opening a model and a
-- session from the options table, sampler settings, stop strings, the
-- timing report). Loaded with tern.script("common.lua").
local M = {}

function M.open(opts, prefix)
  prefix = prefix or ""
  local kt, vt = opts.cache_type_k or "f16", opts.cache_type_v or opts.cache_type_k or "f16"
  if kt ~= vt then error("tern keeps K and V in one type: -ctk " .. kt .. " and -ctv " .. vt .. " differ", 0) end
  local path = opts[prefix .. "model"] or opts.model or tern.default_model()
  if not path then error("no model given (opts.model) and the default model is not installed", 0) end
  local model = tern.load_model(path, {
    backend = opts[prefix .. "backend"] or opts.backend, threads = opts[prefix .. "threads"] or opts.threads,
    kernel = opts.kernel, head = opts.head, device = opts.device })
  local session = tern.session(model, { n_ctx = opts.ctx_size, n_batch = opts.batch_size, kv_type = kt })
  return model, session
end

function M.prompt_text(opts)
  if opts.prompt then return opts.prompt end
  if opts.file then return tern.read_file(opts.file) end -- a regular file or "-", at most 64 MiB
  error("no prompt: give -p TEXT or -f FILE", 0)
end

function M.sampler_params(opts)
  return { temp = opts.temp, top_k = opts.top_k, top_p = opts.top_p, min_p = opts.min_p,
           seed = opts.seed, repeat_penalty = opts.repeat_penalty, repeat_last_n = opts.repeat_last_n,
           frequency_penalty = opts.frequency_penalty, presence_penalty = opts.presence_penalty }
end

function M.stop_list(opts)
  local s = opts.stop
  if type(s) == "string" then return { s } end
  return s or {}
end

-- true when the generated text (a list of pieces) now contains a stop string
function M.hit_stop(pieces, stops)
  if #stops == 0 then return false end
  local tail = table.concat(pieces, "", math.max(1, #pieces - 16))
  for _, s in ipairs(stops) do
    if s ~= "" and tail:find(s, 1, true) then return true end
  end
  return false
end

local function rate(n, t) return t > 0 and n / t or 0 end

function M.report(opts, model, session, r)
  local info = model:info()
  tern.log(string.format("\n%s\nload: %.1f ms%s | prompt: %d tokens, %.1f ms, %.2f tok/s | generation: %d tokens, %.1f ms, %.2f tok/s | stop: %s\n",
    info.describe, info.load_seconds * 1000, info.pack_cache and (" (packed weights " .. info.pack_cache .. ")") or "", r.n_prompt, r.t_prompt * 1000, rate(r.n_prompt, r.t_prompt),
    r.n_gen, r.t_gen * 1000, rate(r.n_gen, r.t_gen), r.stop))
  if opts.verbose then M.print_stats(session) end
end

function M.print_stats(session)
  local st = session:stats()
  local total = 0
  for _, o in ipairs(st.ops) do total = total + o.seconds end
  tern.log(string.format("%-16s %8s %10s %7s %9s\n", "op", "calls", "ms", "share", "fallback"))
  for _, o in ipairs(st.ops) do
    tern.log(string.format("%-16s %8d %10.2f %6.1f%% %9d\n", o.name, o.calls, o.seconds * 1000,
      total > 0 and 100 * o.seconds / total or 0, o.fallback))
  end
  local where = {}
  for _, p in ipairs(st.placement) do where[#where + 1] = string.format("%s %d", p.backend, p.nodes) end
  tern.log(string.format("nodes per graph: %s; past the first backend: %d; KV cache on %s\n",
    table.concat(where, ", "), st.fallback_nodes, st.kv_backend))
  tern.log(string.format("copy nodes per graph: %d (%d bytes); copies run: %d, %.2f ms\n",
    st.copy_nodes, st.copy_bytes, st.copies, st.copy_seconds * 1000))
end

return M
