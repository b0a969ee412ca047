// openai_client.cjs - the official openai npm client against tern serve:
// /v1/models, a chat completion whole and streamed (greedy: the same text
// both ways), a completion, and a wrong key refused with 401.
// usage: node openai_client.cjs NODE_MODULES_DIR BASE_URL KEY
const [dir, baseURL, apiKey] = process.argv.slice(2);
const mod = require(dir + "/node_modules/openai");
const OpenAI = mod.default || mod.OpenAI || mod;

function check(ok, what) {
  if (!ok) { console.error("openai client: FAILED: " + what); process.exit(1); }
}

(async () => {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
  const models = await client.models.list();
  check(models.data.length === 1 && typeof models.data[0].id === "string", "models: " + JSON.stringify(models.data));
  const ask = { model: models.data[0].id, messages: [{ role: "user", content: "Hello, who are you?" }],
                max_tokens: 12, temperature: 0 };
  const whole = await client.chat.completions.create(ask);
  const text = whole.choices[0].message.content;
  check(typeof text === "string" && text.length > 0, "chat: " + JSON.stringify(whole));
  check(whole.choices[0].message.role === "assistant", "role");
  check(whole.usage.completion_tokens > 0 && whole.usage.total_tokens === whole.usage.prompt_tokens + whole.usage.completion_tokens, "usage");
  const stream = await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
  let streamed = "", chunks = 0, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length) streamed += chunk.choices[0].delta.content || "";
  }
  check(streamed === text, "stream gave '" + streamed + "', whole gave '" + text + "'");
  check(usage && usage.completion_tokens === whole.usage.completion_tokens, "stream usage");
  const cmpl = await client.completions.create({ model: ask.model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
  check(typeof cmpl.choices[0].text === "string" && cmpl.usage.completion_tokens > 0, "completion");
  const bad = new OpenAI({ baseURL, apiKey: apiKey + "-wrong", maxRetries: 0 });
  let status = 0;
  try { await bad.models.list(); } catch (e) { status = e.status; }
  check(status === 401, "wrong key answered " + status);
  console.log(`openai client: ok (models, chat ${whole.usage.completion_tokens} tokens, stream of ${chunks} chunks equal, completion, 401)`);
})().catch((e) => { console.error("openai client: FAILED: " + (e.stack || e)); process.exit(1); });
