// chat_page.cjs - the chat page (GET /) in headless Chromium through
// puppeteer-core: type a message, send it, and see streamed text arrive
// (more than one update of the reply before it ends) and a tokens/s line.
// usage: node chat_page.cjs NODE_MODULES_DIR URL CHROMIUM
const [dir, url, chromium] = process.argv.slice(2);
const puppeteer = require(dir + "/node_modules/puppeteer-core");

function fail(what) { console.error("chat page: FAILED: " + what); process.exit(1); }

(async () => {
  const browser = await puppeteer.launch({ executablePath: chromium, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => fail("page error: " + e.message));
    await page.goto(url, { waitUntil: "load", timeout: 30000 });
    if ((await page.title()) !== "tern chat") fail("title " + (await page.title()));
    // record every change of the reply's text, to see it stream
    await page.evaluate(() => {
      window.updates = 0;
      new MutationObserver(() => window.updates++).observe(document.getElementById("log"),
        { childList: true, subtree: true, characterData: true });
    });
    await page.type("#msg", "Tell me a story about a cat.");
    await page.click("#send");
    await page.waitForFunction(() => document.body.dataset.done === "1", { timeout: 60000 });
    const reply = await page.$eval(".assistant", (e) => e.textContent);
    const stats = await page.$eval("#stats", (e) => e.textContent);
    const updates = await page.evaluate(() => window.updates);
    if (!reply.trim()) fail("empty reply");
    if (updates < 3) fail("the reply did not stream (" + updates + " updates)");
    if (!/tok\/s/.test(stats)) fail("no tokens/s shown: '" + stats + "'");
    console.log(`chat page: ok (${updates} updates, ${reply.length} characters, '${stats}')`);
  } finally {
    await browser.close();
  }
})().catch((e) => fail(e.stack || String(e)));
