/* test_serve.c - `tern serve` over loopback with curl: every endpoint,
 * every error path (status, OpenAI error shape, message), the API key,
 * limits (body, headers, JSON depth, context, queue), a client that leaves
 * mid-stream, draining on SIGTERM, and greedy output equal to
 * `tern run --temp 0` with one slot and with four busy slots. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common/testutil.h"
#include "serve/serve_util.h"

#define KEY "sekret-key"

/* the call first: then b holds its body */
#define EXPECT(call, want, needle, what)                                                           \
    do {                                                                                           \
        int got_ = (call);                                                                         \
        expect(got_, want, b, needle, what);                                                       \
    } while (0)

static void expect(int got, int want, const char *body, const char *needle, const char *what)
{
    ck_assert_msg(got == want, "%s: HTTP %d, expected %d: %s", what, got, want, body);
    ck_assert_msg(!needle || strstr(body, needle), "%s: '%s' lacks '%s'", what, body, needle);
}

START_TEST(test_endpoints)
{
    srv s;
    char args[4200], *b, *h;
    snprintf(args, sizeof args, "-m %s -np 2 -c 256 -t 1 --api-key " KEY, tu_default_model());
    srv_start(&s, args);
    const char *auth = "-H 'Authorization: Bearer " KEY "'";

    EXPECT(srv_curl(&s, "", "/health", &b, NULL), 200, "\"ok\"", "health");
    free(b);
    EXPECT(srv_curl(&s, "", "/", &b, &h), 200, "tern chat", "page");
    ck_assert_ptr_nonnull(strstr(h, "text/html"));
    free(b), free(h);
    EXPECT(srv_curl(&s, auth, "/v1/models", &b, NULL), 200, "\"tiny-bitnet.gguf\"", "models");
    free(b);
    EXPECT(srv_curl(&s, auth, "/metrics", &b, NULL), 200, "tern_slot_busy{slot=\"1\"} 0", "metrics");
    ck_assert_ptr_nonnull(strstr(b, "# TYPE tern_requests_total counter"));
    free(b);

    /* completions, whole and streamed */
    EXPECT(srv_post(&s, "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0}",
                    KEY, &b), 200, "\"object\":\"text_completion\"", "completion");
    ck_assert_ptr_nonnull(strstr(b, "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":8,\"total_tokens\":13}"));
    ck_assert_ptr_nonnull(strstr(b, "\"finish_reason\":\"length\""));
    free(b);
    EXPECT(srv_post(&s, "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"stream\":true,"
                    "\"stream_options\":{\"include_usage\":true}}", KEY, &b), 200, "data: [DONE]", "stream");
    ck_assert_ptr_nonnull(strstr(b, "\"choices\":[],"));
    ck_assert_ptr_nonnull(strstr(b, "\"completion_tokens\":8"));
    free(b);
    /* chat, whole and streamed; stop strings cut the text */
    EXPECT(srv_post(&s, "/v1/chat/completions", "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}]}],\"max_tokens\":6,"
                    "\"seed\":7,\"top_k\":20,\"min_p\":0.1}", KEY, &b), 200, "\"object\":\"chat.completion\"", "chat");
    ck_assert_ptr_nonnull(strstr(b, "\"role\":\"assistant\""));
    free(b);
    EXPECT(srv_post(&s, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                    "\"max_tokens\":6,\"stream\":true}", KEY, &b), 200, "chat.completion.chunk", "chat stream");
    ck_assert_ptr_nonnull(strstr(b, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
    ck_assert_ptr_nonnull(strstr(b, "data: [DONE]"));
    free(b);
    EXPECT(srv_post(&s, "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":16,\"temperature\":0,"
                    "\"stop\":[\"sun\"]}", KEY, &b), 200, "\"text\":\", the \"", "stop string");
    ck_assert_ptr_nonnull(strstr(b, "\"finish_reason\":\"stop\""));
    free(b);

    /* tokenize and back */
    EXPECT(srv_post(&s, "/tokenize", "{\"content\":\"Hello world\"}", KEY, &b), 200, "\"tokens\":[", "tokenize");
    char req[512];
    snprintf(req, sizeof req, "{%s", strstr(b, "\"tokens\""));
    free(b);
    EXPECT(srv_post(&s, "/detokenize", req, KEY, &b), 200, "{\"content\":\"Hello world\"}", "detokenize");
    free(b);

    /* errors: status, OpenAI shape, the message */
    static const struct {
        const char *path, *body, *key;
        int status;
        const char *needle;
    } bad[] = {
        {"/v1/completions", "{\"prompt\":\"x\"}", NULL, 401, "\"type\":\"authentication_error\""},
        {"/v1/completions", "{\"prompt\":\"x\"}", "wrong", 401, "missing or wrong API key"},
        {"/v1/completions", "{\"prompt\":\"x\"}", KEY "x", 401, "invalid_api_key"},
        {"/v1/completions", "{\"prompt\":", KEY, 400, "malformed JSON"},
        {"/v1/completions", "[1,2]", KEY, 400, "must be a JSON object"},
        {"/v1/completions", "{\"prompt\":\"a\",\"prompt\":\"b\"}", KEY, 400, "duplicate"},
        {"/v1/completions", "{}", KEY, 400, "'prompt' must be a string"},
        {"/v1/completions", "{\"prompt\":[1,2]}", KEY, 400, "'prompt' must be a string"},
        {"/v1/completions", "{\"prompt\":\"x\",\"temperature\":5}", KEY, 400, "'temperature' is 5"},
        {"/v1/completions", "{\"prompt\":\"x\",\"top_p\":-0.5}", KEY, 400, "'top_p'"},
        {"/v1/completions", "{\"prompt\":\"x\",\"top_k\":-1}", KEY, 400, "'top_k'"},
        {"/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":\"8\"}", KEY, 400, "'max_tokens' must be an integer"},
        {"/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1e30}", KEY, 400, "'max_tokens' must be an integer"},
        {"/v1/completions", "{\"prompt\":\"x\",\"n\":2}", KEY, 400, "'n' must be 1"},
        {"/v1/completions", "{\"prompt\":\"x\",\"stream\":1}", KEY, 400, "'stream' must be true or false"},
        {"/v1/completions", "{\"prompt\":\"x\",\"stop\":[1]}", KEY, 400, "stop[0] must be a string"},
        {"/v1/completions", "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", KEY, 400, "at most 4"},
        {"/v1/completions", "{\"prompt\":\"a\\u0000b\"}", KEY, 400, "NUL"},
        {"/v1/chat/completions", "{\"messages\":[]}", KEY, 400, "non-empty array"},
        {"/v1/chat/completions", "{\"messages\":[{\"content\":\"x\"}]}", KEY, 400, "string 'role'"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\"}]}", KEY, 400, "has no 'content'"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", KEY,
         400, "only {\\\"type\\\": \\\"text\\\""},
        {"/tokenize", "{\"content\":5}", KEY, 400, "'content' must be a string"},
        {"/detokenize", "{\"tokens\":[1,99999999]}", KEY, 400, "tokens[1] is not a token id"},
        {"/detokenize", "{\"tokens\":\"x\"}", KEY, 400, "'tokens' must be an array"},
        {"/nowhere", "{}", KEY, 404, "no endpoint /nowhere"},
        {"/health", "{}", KEY, 405, "POST is not allowed on /health"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "error case %zu (%s)", i, bad[i].body);
        EXPECT(srv_post(&s, bad[i].path, bad[i].body, bad[i].key, &b), bad[i].status, bad[i].needle, what);
        ck_assert_msg(strstr(b, "{\"error\":{\"message\":"), "%s: not OpenAI-shaped: %s", what, b);
        free(b);
    }
    EXPECT(srv_curl(&s, auth, "/v1/completions", &b, NULL), 405, "GET is not allowed", "GET completions");
    free(b);

    /* limits: nesting, context, body and header size */
    char *deep = malloc(200000);
    strcpy(deep, "{\"prompt\":\"x\",\"a\":");
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    for (int i = 0; i < 70; i++) strcat(deep, "]");
    strcat(deep, "}");
    EXPECT(srv_post(&s, "/v1/completions", deep, KEY, &b), 400, "nested deeper than 64", "depth 71");
    free(b);
    strcpy(deep, "{\"a\":");
    for (int i = 0; i < 5000; i++) strcat(deep, "[");
    EXPECT(srv_post(&s, "/v1/completions", deep, KEY, &b), 400, "malformed JSON", "depth 5000");
    free(b);
    strcpy(deep, "{\"prompt\":\"");
    for (int i = 0; i < 400; i++) strcat(deep, "Once upon a time ");
    strcat(deep, "\"}");
    EXPECT(srv_post(&s, "/v1/completions", deep, KEY, &b), 400, "does not fit the context of 256", "long prompt");
    free(b);
    free(deep);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "head -c 5000000 /dev/zero | tr '\\000' ' ' > %s/big.json", s.dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --data-binary @%s/big.json", auth, s.dir);
    EXPECT(srv_curl(&s, cmd, "/v1/completions", &b, NULL), 413, "over 4194304 bytes", "big body");
    free(b);
    char *big = malloc(10000);
    strcpy(big, "-H 'X-Filler: ");
    for (int i = 0; i < 9000; i++) strcat(big, "a");
    strcat(big, "'");
    EXPECT(srv_curl(&s, big, "/health", &b, NULL), 431, "headers over 8192", "big headers");
    free(b);
    free(big);

    EXPECT(srv_curl(&s, auth, "/metrics", &b, NULL), 200, "tern_request_errors_total", "metrics after");
    free(b);
    ck_assert_int_eq(srv_stop(&s), 0);
    srv_clean(&s);
}
END_TEST

/* One slot, a queue of one: a third request is refused with 503 and
 * Retry-After; a client that leaves mid-stream frees the slot at once;
 * SIGTERM lets the running request finish. */
START_TEST(test_queue_cancel_drain)
{
    srv s;
    char args[4200], *b, *h;
    snprintf(args, sizeof args, "-m %s -np 1 -c 512 -t 1 --max-queue 1 --backend scalar", tu_default_model());
    srv_start(&s, args);
    const char *longreq = "{\"prompt\":\"Once\",\"max_tokens\":500,\"ignore_eos\":true,\"stream\":true}";
    char cmd[1200];
    FILE *f;
    snprintf(cmd, sizeof cmd, "%s/long.json", s.dir);
    ck_assert_ptr_nonnull(f = fopen(cmd, "w"));
    fputs(longreq, f);
    fclose(f);
    /* two long requests in the background: one runs, then one waits (the
     * second is sent once the first holds the slot: sent together, the
     * second could find the first still in the queue of one, and get 503) */
    pid_t bg[2];
    char *m = NULL;
    static const char *const state[2] = {"tern_slots_busy 1", "tern_queue_depth 1"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "exec curl -sN --data-binary @%s/long.json http://127.0.0.1:%d/v1/completions "
                 "> %s/bg%d.out 2>&1", s.dir, s.port, s.dir, k);
        bg[k] = sh_bg(cmd);
        for (int i = 0; i < 500; i++) {
            free(m);
            srv_curl(&s, "", "/metrics", &m, NULL);
            if (strstr(m, state[k])) break;
            usleep(20000);
        }
        ck_assert_msg(strstr(m, state[k]), "no '%s': %s", state[k], m);
    }
    ck_assert_msg(strstr(m, "tern_queue_depth 1"), "no request queued: %s", m);
    free(m);
    EXPECT(srv_post(&s, "/v1/completions", "{\"prompt\":\"x\"}", NULL, &b), 503, "queue is full", "queue full");
    free(b);
    EXPECT(srv_curl(&s, "--data-binary '{\"prompt\":\"x\"}'", "/v1/completions", &b, &h), 503,
           "\"type\":\"server_error\"", "retry after");
    ck_assert_msg(strstr(h, "Retry-After: 1"), "no Retry-After: %s", h);
    free(b), free(h);
    /* both clients leave: the slot and the queue must empty */
    for (int i = 0; i < 2; i++) kill(bg[i], SIGKILL);
    for (int i = 0; i < 200; i++) {
        srv_curl(&s, "", "/metrics", &m, NULL);
        int idle = strstr(m, "tern_slots_busy 0") && strstr(m, "tern_queue_depth 0");
        free(m);
        if (idle) break;
        ck_assert_msg(i < 199, "the slot stayed busy after its clients left");
        usleep(50000);
    }
    /* drain: a request running when SIGTERM comes still gets its answer */
    snprintf(cmd, sizeof cmd, "exec curl -s -o %s/drain.out --data-binary "
             "'{\"prompt\":\"Once\",\"max_tokens\":60,\"ignore_eos\":true}' http://127.0.0.1:%d/v1/completions",
             s.dir, s.port);
    pid_t client = sh_bg(cmd);
    for (int i = 0; i < 100; i++) {
        srv_curl(&s, "", "/metrics", &m, NULL);
        int busy = strstr(m, "tern_slots_busy 1") != NULL;
        free(m);
        if (busy) break;
        usleep(20000);
    }
    ck_assert_int_eq(srv_stop(&s), 0);
    for (int i = 0; i < 300 && kill(client, 0) == 0; i++) usleep(20000); /* not our child: sh_bg's shell's */
    snprintf(cmd, sizeof cmd, "%s/drain.out", s.dir);
    size_t n;
    b = tu_read_file(cmd, &n);
    ck_assert_msg(b && strstr(b, "\"completion_tokens\":60"), "drained request: %s", b ? b : "(nothing)");
    free(b);
    size_t ln;
    char *log = tu_read_file(s.log, &ln);
    ck_assert_msg(log && strstr(log, "SIGTERM: draining") && strstr(log, "stopped"), "log: %s", log);
    free(log);
    srv_clean(&s);
}
END_TEST

/* Greedy: the generated text of `tern run --temp 0` (its standard output
 * less the prompt and the final newline). */
static char *run_greedy(const char *model_path, const char *prompt, int n)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/bin/tern run -m '%s' -p '%s' -n %d --temp 0 -t 1 2>/dev/null", tu_build_dir(),
             model_path, prompt, n);
    char *out = sh_out(cmd);
    size_t lp = strlen(prompt), lo = strlen(out);
    ck_assert_msg(lo > lp && !strncmp(out, prompt, lp) && out[lo - 1] == '\n', "tern run: %s", out);
    out[lo - 1] = 0;
    memmove(out, out + lp, lo - lp);
    return out;
}

/* choices[0].text of a completion response. */
static char *completion_text(const char *body)
{
    json_error_t je;
    json_t *o = json_loads(body, 0, &je);
    ck_assert_msg(o != NULL, "not JSON: %s", body);
    json_t *t = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "text");
    ck_assert_msg(json_is_string(t), "no text: %s", body);
    char *s = strdup(json_string_value(t));
    json_decref(o);
    return s;
}

static const char *const prompts[] = {
    "Once upon a time, there was a little girl who",
    "The dog ran to the park and",
    "Tom had a red ball. One day",
    "She looked at the sky and said",
};
#define N_PROMPTS 4
#define N_GREEDY 48

static void greedy_model(const char *path)
{
    char *want[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++) want[i] = run_greedy(path, prompts[i], N_GREEDY);
    /* one slot, one request at a time */
    srv s;
    char args[4200], req[1024], *b;
    snprintf(args, sizeof args, "-m '%s' -np 1 -t 1", path);
    srv_start(&s, args);
    for (int i = 0; i < N_PROMPTS; i++) {
        snprintf(req, sizeof req, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}", prompts[i], N_GREEDY);
        EXPECT(srv_post(&s, "/v1/completions", req, NULL, &b), 200, NULL, "greedy, 1 slot");
        char *got = completion_text(b);
        ck_assert_msg(!strcmp(got, want[i]), "%s, 1 slot, prompt %d:\n server: '%s'\n run:    '%s'", path, i, got,
                      want[i]);
        free(got), free(b);
    }
    ck_assert_int_eq(srv_stop(&s), 0);
    srv_clean(&s);
    /* four slots, all four requests at once (scalar, one thread: slow
     * enough that they overlap), each twice */
    snprintf(args, sizeof args, "-m '%s' -np 4 -t 1 --backend scalar", path);
    srv_start(&s, args);
    pid_t bg[2 * N_PROMPTS];
    for (int k = 0; k < 2 * N_PROMPTS; k++) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec curl -s -o %s/out%d --data-binary '{\"prompt\":\"%s\",\"max_tokens\":%d,"
                 "\"temperature\":0}' http://127.0.0.1:%d/v1/completions", s.dir, k, prompts[k % N_PROMPTS], N_GREEDY,
                 s.port);
        bg[k] = sh_bg(cmd);
    }
    for (int k = 0; k < 2 * N_PROMPTS; k++) {
        for (int i = 0; i < 1500 && kill(bg[k], 0) == 0; i++) usleep(20000);
        char file[512];
        size_t n;
        snprintf(file, sizeof file, "%s/out%d", s.dir, k);
        b = tu_read_file(file, &n);
        ck_assert_msg(b != NULL, "request %d: no answer", k);
        char *got = completion_text(b);
        ck_assert_msg(!strcmp(got, want[k % N_PROMPTS]), "%s, 4 busy slots, request %d:\n server: '%s'\n run:    '%s'",
                      path, k, got, want[k % N_PROMPTS]);
        free(got), free(b);
    }
    /* the requests did share evaluations */
    srv_curl(&s, "", "/metrics", &b, NULL);
    long long evals = atoll(strstr(b, "\ntern_evals_total ") + 18);
    long long gen = atoll(strstr(b, "\ntern_generated_tokens_total ") + 29);
    ck_assert_msg(evals < gen, "no batching: %lld evaluations for %lld tokens", evals, gen);
    printf("serve: %s: 8 greedy requests on 4 slots: %lld tokens in %lld evaluations\n", path, gen, evals);
    free(b);
    ck_assert_int_eq(srv_stop(&s), 0);
    srv_clean(&s);
    for (int i = 0; i < N_PROMPTS; i++) free(want[i]);
}

/* _i: the embedded model, then the shared tiny-llama */
START_TEST(test_greedy_equals_run)
{
    char path[4096];
    if (_i == 0) {
        greedy_model(tu_default_model());
        return;
    }
    TU_REQUIRE_SHARED();
    greedy_model(tu_shared_path(path, sizeof path, "models/tiny-llama.gguf"));
}
END_TEST

/* The npm packages the client tests use, installed once per build folder
 * (BUILD/npm); NULL, after a visible line, when node or npm is missing or
 * the registry cannot be reached. */
static const char *npm_dir(const char *who)
{
    static char dir[4200];
    snprintf(dir, sizeof dir, "%s/npm", tu_build_dir());
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "test -d %s/node_modules/openai && test -d %s/node_modules/puppeteer-core", dir, dir);
    if (system(cmd) == 0) return dir;
    if (system("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
        printf("skipped: %s: node or npm not installed\n", who);
        return NULL;
    }
    snprintf(cmd, sizeof cmd, "mkdir -p %s && timeout 300 npm install --prefix %s --no-audit --no-fund "
             "--loglevel=error openai@4 puppeteer-core@23 > %s/install.log 2>&1", dir, dir, dir);
    if (system(cmd) != 0) {
        printf("skipped: %s: npm install openai puppeteer-core failed (see %s/install.log)\n", who, dir);
        return NULL;
    }
    return dir;
}

/* Runs a node script of this folder against a fresh server; its last line
 * is printed (the test log shows what was checked). */
static void node_case(const char *script, const char *server_args, const char *url_path, const char *tail_arg,
                      const char *dir)
{
    srv s;
    char args[4200], cmd[12000];
    snprintf(args, sizeof args, "-m %s %s", tu_default_model(), server_args);
    srv_start(&s, args);
    snprintf(cmd, sizeof cmd, "timeout 120 node %s/tests/serve/%s %s http://127.0.0.1:%d%s %s 2>&1; echo rc=$?",
             TERN_SOURCE_DIR, script, dir, s.port, url_path, tail_arg);
    char *out = sh_out(cmd);
    ck_assert_msg(strstr(out, ": ok (") && strstr(out, "rc=0"), "%s: %s", script, out);
    *strstr(out, "rc=") = 0;
    printf("%s", out);
    free(out);
    ck_assert_int_eq(srv_stop(&s), 0);
    srv_clean(&s);
}

/* Acceptance 1: the official openai npm client, streaming and not. */
START_TEST(test_openai_client)
{
    const char *dir = npm_dir("openai npm client");
    if (dir) node_case("openai_client.cjs", "-np 2 -t 1 --api-key " KEY, "/v1", KEY, dir);
}
END_TEST

/* The chat page in headless Chromium: type, send, see text stream in. */
START_TEST(test_chat_page)
{
    if (system("command -v chromium >/dev/null") != 0) {
        printf("skipped: chat page: chromium not installed\n");
        return;
    }
    const char *dir = npm_dir("chat page (puppeteer-core)");
    /* scalar, one thread: slow enough that the reply arrives in many pieces */
    if (dir) node_case("chat_page.cjs", "-np 2 -t 1 --backend scalar", "/", "/usr/bin/chromium", dir);
}
END_TEST

/* Two replicas behind haproxy (tools/deploy/haproxy.cfg); four clients
 * send requests through it; one replica is killed (SIGKILL) mid-run.
 * Every request must get an answer its client can judge, and all of them
 * a good one: haproxy retries a request whose replica died, and its
 * health checks take the dead one out. */
START_TEST(test_haproxy_failover)
{
    if (system("command -v haproxy >/dev/null") != 0) {
        printf("skipped: haproxy failover: haproxy not installed\n");
        return;
    }
    srv a, b;
    char args[4200], cmd[8192];
    snprintf(args, sizeof args, "-m %s -np 2 -t 1 --backend scalar", tu_default_model());
    srv_start(&a, args);
    srv_start(&b, args);
    int lb = 0, up = 0;
    pid_t hap = 0;
    for (int attempt = 0; attempt < 5 && !up; attempt++) { /* a port taken by someone else: try another */
        lb = 20000 + (int)((getpid() * 7 + attempt * 7919) % 40000);
        snprintf(cmd, sizeof cmd, "TERN_LB_BIND=127.0.0.1:%d TERN_REPLICA_A=127.0.0.1:%d "
                 "TERN_REPLICA_B=127.0.0.1:%d exec haproxy -db -f %s/tools/deploy/haproxy.cfg", lb, a.port, b.port,
                 TERN_SOURCE_DIR);
        hap = sh_bg(cmd);
        for (int i = 0; i < 50 && !up && kill(hap, 0) == 0; i++) {
            usleep(100000);
            snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/health", lb);
            char *code = sh_out(cmd);
            up = !strcmp(code, "200");
            free(code);
        }
        if (!up) kill(hap, SIGTERM);
    }
    ck_assert_msg(up, "haproxy on port %d never answered /health", lb);
    usleep(1200000); /* both replicas checked up */
    enum { CLIENTS = 4, EACH = 10 };
    pid_t cl[CLIENTS];
    for (int k = 0; k < CLIENTS; k++) {
        snprintf(cmd, sizeof cmd,
                 "exec sh -c 'for i in $(seq %d); do "
                 "c=$(curl -s -o %s/lb%d.body -w %%{http_code} --max-time 60 --data-binary "
                 "\"{\\\"prompt\\\":\\\"Once upon a time\\\",\\\"max_tokens\\\":24,\\\"ignore_eos\\\":true}\" "
                 "http://127.0.0.1:%d/v1/completions); "
                 "if [ \"$c\" = 200 ] && grep -q completion_tokens.:24 %s/lb%d.body; then echo ok; else echo fail $c; fi; "
                 "done > %s/lb%d.out'", EACH, a.dir, k, lb, a.dir, k, a.dir, k);
        cl[k] = sh_bg(cmd);
    }
    usleep(1500000);
    kill(a.pid, SIGKILL); /* mid-run: requests are in flight on it */
    int status;
    waitpid(a.pid, &status, 0);
    for (int k = 0; k < CLIENTS; k++)
        for (int i = 0; i < 3000 && kill(cl[k], 0) == 0; i++) usleep(20000);
    int ok = 0, answered = 0;
    for (int k = 0; k < CLIENTS; k++) {
        snprintf(cmd, sizeof cmd, "%s/lb%d.out", a.dir, k);
        size_t n;
        char *out = tu_read_file(cmd, &n);
        ck_assert_msg(out != NULL, "client %d wrote nothing", k);
        for (char *p = out; (p = strstr(p, "ok\n")); p += 3) ok++;
        for (char *p = out; *p; p++) answered += *p == '\n';
        free(out);
    }
    printf("haproxy failover: %d of %d requests answered, %d good, replica a killed mid-run\n", answered,
           CLIENTS * EACH, ok);
    ck_assert_int_eq(answered, CLIENTS * EACH);
    ck_assert_int_eq(ok, CLIENTS * EACH);
    kill(hap, SIGTERM);
    ck_assert_int_eq(srv_stop(&b), 0);
    srv_clean(&a);
    srv_clean(&b);
}
END_TEST

/* Bad command lines: exit 1, one last line on stderr saying why. */
START_TEST(test_cli_errors)
{
    static const struct {
        const char *args, *expect;
    } bad[] = {
        {"--port 70000", "tern serve: --port: '70000' is not an integer in [0, 65535]"},
        {"-np 0", "tern serve: -np: '0' is not an integer in [1, 256]"},
        {"--host nowhere --port 0", "tern serve: --host 'nowhere' is not an IPv4 or IPv6 address"},
        {"-m /nonexistent.gguf --port 0", "/nonexistent.gguf"},
        {"--port 0 -np 4 -b 2", "tern serve: -b 2 is less than -np 4"},
        {"--api-key '' --port 0", "tern serve: --api-key: give a non-empty key"},
        {"--temp 0", "tern serve: "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "timeout 60 %s/bin/tern serve %s 2>&1 >/dev/null | tail -1; echo rc=$?",
                 tu_build_dir(), bad[i].args);
        char *out = sh_out(cmd);
        ck_assert_msg(strstr(out, bad[i].expect), "serve %s: '%s' lacks '%s'", bad[i].args, out, bad[i].expect);
        free(out);
        snprintf(cmd, sizeof cmd, "timeout 60 %s/bin/tern serve %s >/dev/null 2>&1", tu_build_dir(), bad[i].args);
        int st = system(cmd);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "serve %s: exit status %d", bad[i].args, st);
    }
}
END_TEST

Suite *serve_suite(void)
{
    Suite *s = suite_create("serve");
    TCase *tc = tcase_create("serve");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cli_errors);
    tcase_add_test(tc, test_endpoints);
    tcase_add_test(tc, test_queue_cancel_drain);
    tcase_add_loop_test(tc, test_greedy_equals_run, 0, 2);
    tcase_add_test(tc, test_openai_client);
    tcase_add_test(tc, test_chat_page);
    tcase_add_test(tc, test_haproxy_failover);
    suite_add_tcase(s, tc);
    return s;
}
