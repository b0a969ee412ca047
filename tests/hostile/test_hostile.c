/* test_hostile.c - the tern command against a hostile but realistic user:
 * bad flags and values, bad files (FIFOs, devices, folders, garbage,
 * truncated models), bad config.lua files, bad graph scripts and plugins,
 * endless inputs and outputs that fail. Every case runs `tern` in a shell
 * (under a 60 s timeout) and must:
 *   - exit with the expected status (1 for an error; never by a signal,
 *     never by the timeout);
 *   - end its standard error with one line "tern[ CMD]: ..." that contains
 *     the expected words;
 *   - print no sanitizer report (ASan, UBSan, LSan) and no Lua panic.
 * The suite runs in the plain build and under san=1. The files the cases
 * use are made in a fresh folder by setup() below. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testutil.h"

typedef struct hcase {
    const char *cmd; /* a shell command; $T is the tern binary, the folder is the current one */
    int rc;          /* expected exit status */
    const char *expect; /* words the last line of standard error holds (NULL: anything) */
} hcase;

/* Files every case may use (the folder is fresh per test). */
static const char setup_script[] =
    "set -e\n"
    "ln -s \"$SRC/graphs/models/tiny-bitnet.gguf\" model.gguf\n"
    "head -c 100000 model.gguf > trunc.gguf\n"
    "head -c 4096 /dev/urandom > garbage.gguf\n"
    "printf 'GGUF\\003\\000\\000\\000' > header-only.gguf\n"
    ": > empty.gguf\n"
    "mkfifo fifo fifo.gguf fifo.lua fifo.txt\n"
    "mkdir dir\n"
    "ln -s nowhere dangling\n"
    "echo old > target.gguf; ln -s target.gguf link.gguf\n"
    "for i in $(seq 60); do printf 'Once upon a time, there was a little girl who liked to play. '; done > text.txt\n"
    ": > empty.txt\n"
    "printf '\\001\\000\\000' > odd.i32\n"
    "printf '\\001\\000\\000\\000\\377\\377\\377\\177' > badid.i32\n"
    "printf '\\001\\000\\000\\000\\002\\000\\000\\000' > two.i32\n"
    "head -c 2000000 /dev/zero | tr '\\000' ' ' > big.lua; echo 'return {}' >> big.lua\n"
    /* config files */
    "echo 'return setmetatable({}, {__index = function(t, k) error(\"undefined key \" .. k) end})' > strict.lua\n"
    "echo 'return setmetatable({n_predict = 1}, {__newindex = function() error(\"read only\") end, __index = function() error(\"strict\") end})' > strict2.lua\n"
    "echo 'setmetatable(_G, {__index = function(_, k) error(\"no global \" .. k, 2) end}) return {temp = 0}' > strictg.lua\n"
    "echo 'error({})' > err-table.lua\n"
    "echo 'error()' > err-nil.lua\n"
    "echo 'error(setmetatable({}, {__tostring = function() return \"custom message\" end}))' > err-tostring.lua\n"
    "echo 'error(false)' > err-false.lua\n"
    "echo 'return {' > syntax.lua\n"
    "echo 'return 42' > ret-number.lua\n"
    "echo 'return \"model.gguf\"' > ret-string.lua\n"
    "echo 'return nil' > ret-nil.lua\n"
    "echo 'return { model = 12 }' > model-number.lua\n"
    "echo 'return { threads = \"4\" }' > threads-string.lua\n"
    "echo 'return { threads = 1.5 }' > threads-float.lua\n"
    "echo 'return { threads = 0 }' > threads-zero.lua\n"
    "echo 'return { threads = 2^63 }' > threads-huge.lua\n"
    "echo 'return { ctx_size = 4294967297 }' > ctx-huge.lua\n"
    "echo 'return { temp = 0/0 }' > temp-nan.lua\n"
    "echo 'return { temp = math.huge }' > temp-inf.lua\n"
    "echo 'return { temp = \"hot\" }' > temp-string.lua\n"
    "echo 'return { stop = {1, 2} }' > stop-numbers.lua\n"
    "echo 'return { stop = {a = \"x\"} }' > stop-map.lua\n"
    "echo 'return { backend = {} }' > backend-empty.lua\n"
    "echo 'return { backend = {\"x86\", 7} }' > backend-number.lua\n"
    "echo 'return { backend = {\"x86,scalar\"} }' > backend-comma.lua\n"
    "echo 'return { no_bos = 1 }' > bool-number.lua\n"
    "echo 'return { modle = \"x\" }' > unknown-key.lua\n"
    "echo 'return { [1] = \"x\" }' > number-key.lua\n"
    "echo 'return { config = \"other.lua\" }' > config-key.lua\n"
    "echo 'return { spec_bench = true }' > internal-key.lua\n"
    "echo 'return { output = \"xml\" }' > output-bad.lua\n"
    "echo 'return { head = \"q4\" }' > head-bad.lua\n"
    "printf '%s\\n' 'return { prompt = \"a\\0b\" }' > nul-string.lua\n"
    "echo 'while true do end' > loop.lua\n"
    "echo 'local t = {} for i = 1, 1e9 do t[i] = i end return t' > mem-table.lua\n"
    "echo 'return { prompt = string.rep(\"x\", 1 << 30) }' > mem-rep.lua\n"
    "echo 'os.exit(0)' > exit.lua\n"
    "echo 'return { prompt = io.read(\"a\") }' > io.lua\n"
    "echo 'return load(\"return {}\")()' > load.lua\n"
    "echo 'return dofile(\"/dev/zero\")' > dofile.lua\n"
    "echo 'return require(\"os\")' > require.lua\n"
    "echo 'return coroutine.wrap(function() return {} end)()' > coroutine.lua\n"
    "echo 'return setmetatable({}, {__gc = function() while true do end end})' > gc-loop.lua\n"
    "printf '%s\\n' 'return { [\"bad\\nkey\"] = 1 }' > newline-key.lua\n"
    "echo 'return { prompt = \"ok\", n_predict = 1, temp = 0, seed = -1, stop = \"x\", backend = \"scalar\" }' > good.lua\n"
    "lua5.4 -e 'io.open(\"bytecode.lua\", \"wb\"):write(string.dump(function() return {} end))' 2>/dev/null || printf '\\033Lua' > bytecode.lua\n"
    /* graph and pipeline scripts ($TERN_GRAPH_PATH) */
    "mkdir gp-nonfunc gp-error gp-loop gp-badret gp-fifo gp-bytecode gp-mem gp-pipe gp-pipe-err gp-pipe-dir\n"
    "echo 'return 5' > gp-nonfunc/bitnet_b158.lua\n"
    "echo 'return function(g, m) error({}) end' > gp-error/bitnet_b158.lua\n"
    "echo 'return function(g, m) while true do end end' > gp-loop/bitnet_b158.lua\n"
    "echo 'return function(g, m) return \"x\" end' > gp-badret/bitnet_b158.lua\n"
    "echo 'return function(g, m) return g.tokens end' > gp-badret2.lua\n"
    "mkfifo gp-fifo/bitnet_b158.lua\n"
    "cp bytecode.lua gp-bytecode/bitnet_b158.lua\n"
    "echo 'return function(g, m) local t = {} while true do t[#t + 1] = {} end end' > gp-mem/bitnet_b158.lua\n"
    "echo 'return 5' > gp-pipe/generate.lua\n"
    "echo 'return function(opts) error(nil) end' > gp-pipe-err/generate.lua\n"
    "mkdir gp-pipe-dir/generate.lua\n"
    /* plugin folders ($TERN_PLUGIN_PATH) */
    "mkdir pp-garbage pp-fifo pp-dir pp-empty\n"
    "head -c 1000 /dev/urandom > pp-garbage/tern-backend-x86.so\n"
    "cp pp-garbage/tern-backend-x86.so pp-garbage/tern-backend-scalar.so\n"
    "mkfifo pp-fifo/tern-backend-evil.so\n"
    "mkdir pp-dir/tern-backend-dir.so\n"
    ": > pp-empty/tern-backend-empty.so\n";

static char folder[256];

static void setup(void)
{
    snprintf(folder, sizeof folder, "/tmp/tern-hostile-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(folder));
    char path[512];
    snprintf(path, sizeof path, "%s/setup.sh", folder);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(setup_script, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd %s && SRC=%s sh setup.sh", folder, TERN_SOURCE_DIR);
    ck_assert_int_eq(system(cmd), 0);
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", folder);
    if (system(cmd) != 0) printf("hostile: could not remove %s\n", folder);
}

/* The last non-empty line of s (s is modified). */
static const char *last_line(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

static int run_case(const hcase *c, int *n_checked)
{
    char script[4096], cmd[8192], errpath[512];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", folder);
    snprintf(script, sizeof script, "%s/case.sh", folder);
    FILE *f = fopen(script, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", c->cmd);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd %s && T=%s/bin/tern TERN_BUILD=%s timeout -k 5 60 sh case.sh > /dev/null 2> stderr.txt",
             folder, tu_build_dir(), tu_build_dir());
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    size_t n;
    char *err = tu_read_file(errpath, &n);
    ck_assert_ptr_nonnull(err);
    static const char *const reports[] = {"AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior",
                                          "outside a protected call", "Segmentation fault", "core dumped", NULL};
    for (int i = 0; reports[i]; i++)
        ck_assert_msg(!strstr(err, reports[i]), "'%s': '%s' in its output:\n%s", c->cmd, reports[i], err);
    ck_assert_msg(rc != 124 && rc != 137, "'%s' hung (killed by the timeout)", c->cmd);
    ck_assert_msg(rc == c->rc, "'%s' exited %d, expected %d:\n%s", c->cmd, rc, c->rc, err);
    const char *line = last_line(err);
    if (c->rc != 0) {
        ck_assert_msg(strncmp(line, "tern", 4) == 0, "'%s': the last line is not tern's message: '%s'", c->cmd, line);
        ck_assert_msg(strlen(line) < 600, "'%s': a message of %zu characters", c->cmd, strlen(line));
    }
    if (c->expect)
        ck_assert_msg(strstr(line, c->expect) != NULL, "'%s': expected '%s' in the message '%s'", c->cmd, c->expect, line);
    free(err);
    ++*n_checked;
    return 0;
}

static void run_cases(const char *what, const hcase *cases, size_t n)
{
    int checked = 0;
    for (size_t i = 0; i < n; i++) run_case(&cases[i], &checked);
    printf("hostile: %-34s %3d cases\n", what, checked);
}

#define RUN(what, cases) run_cases(what, cases, sizeof cases / sizeof cases[0])

/* ---- numbers: every numeric flag, as 64-bit, range-checked ---- */

static const char *const int_flags[][2] = {
    {"run", "-n"}, {"run", "-t"}, {"run", "-c"}, {"run", "-b"}, {"run", "--top-k"}, {"run", "-s"},
    {"run", "--repeat-last-n"}, {"run", "--threads-draft"}, {"run", "--draft-max"}, {"run", "--draft-min"},
    {"eval", "-b"}, {"perplexity", "--chunks"}, {"bench", "-p"}, {"bench", "-n"}, {"bench", "-r"},
    {"bench", "--spec-prompts"}, {"chat", "-c"},
};
static const char *const bad_ints[] = {"abc", "1.5", "4294967297", "-99999999999999999999", "''", "0x10", "9223372036854775808"};
static const char *const num_flags[][2] = {
    {"run", "--temp"}, {"run", "--top-p"}, {"run", "--min-p"}, {"run", "--repeat-penalty"},
    {"run", "--frequency-penalty"}, {"run", "--presence-penalty"}, {"run", "--draft-p-min"},
    {"bench", "--spec-accept-rate"},
};
static const char *const bad_nums[] = {"nan", "inf", "-inf", "1e999", "abc", "''"};

START_TEST(test_numbers)
{
    int checked = 0;
    char cmd[256];
    for (size_t f = 0; f < sizeof int_flags / sizeof int_flags[0]; f++)
        for (size_t v = 0; v < sizeof bad_ints / sizeof bad_ints[0]; v++) {
            snprintf(cmd, sizeof cmd, "$T %s %s %s", int_flags[f][0], int_flags[f][1], bad_ints[v]);
            hcase c = {cmd, 1, "is not an integer in ["};
            run_case(&c, &checked);
        }
    for (size_t f = 0; f < sizeof num_flags / sizeof num_flags[0]; f++)
        for (size_t v = 0; v < sizeof bad_nums / sizeof bad_nums[0]; v++) {
            snprintf(cmd, sizeof cmd, "$T %s %s %s", num_flags[f][0], num_flags[f][1], bad_nums[v]);
            hcase c = {cmd, 1, "is not a number in ["};
            run_case(&c, &checked);
        }
    static const hcase ranges[] = {
        {"$T run -p hi -t 0", 1, "-t: '0' is not an integer in [1, 512]"},
        {"$T run -p hi -t -3", 1, "-t: '-3' is not an integer in [1, 512]"},
        {"$T run -p hi -t 4294967297", 1, "[1, 512]"},
        {"$T run -p hi -c -1", 1, "-c: '-1' is not an integer in [0, 16777216]"},
        {"$T run -p hi -c 4294967297", 1, "[0, 16777216]"},
        {"$T run -p hi -b 0", 1, "-b: '0' is not an integer in [1, 16777216]"},
        {"$T bench -p 4294967296", 1, "'4294967296' is not an integer in [0, 1048576]"},
        {"$T run -p hi --draft-p-min nan", 1, "--draft-p-min: 'nan' is not a number in [0, 1]"},
        {"$T run -p hi --top-p 1.5", 1, "[0, 1]"},
        {"$T run -p hi --temp -1", 1, "--temp"},
        {"$T run -p hi -n -2", 1, "[-1, 2147483647]"},
        {"$T run -p hi --seed 4294967296", 1, "[-1, 4294967295]"},
        {"$T bench -r 0", 1, "[1, 64]"},
        {"$T bench -r 65", 1, "[1, 64]"},
        {"$T bench -t 1,x", 1, "'x' is not an integer in [1, 512]"},
        {"$T bench -t 2,600", 1, "'600' is not an integer in [1, 512]"},
        {"$T bench -t 1,,2", 1, "is not a list of integers"},
        {"$T run -t 1,2 -p hi", 1, "'1,2' is not an integer in [1, 512]"},
        {"$T run -p hi -t", 1, "-t needs a value"},
        {"$T eval -p hi --logits out.f32 -c 100000000", 1, "[0, 16777216]"},
        {"$T synth --preset tiny --seed -1 -o x.gguf", 1, "--seed"},
        {"$T synth --preset tiny --vocab-size 10 -o x.gguf", 1, "--vocab-size"},
        {"$T synth --dims embd=0,layers=1,heads=1,ff=8,vocab=300 -o x.gguf", 1, "--dims embd"},
        {"$T synth --dims embd=99999999999999999999,layers=1,heads=1,ff=8,vocab=300 -o x.gguf", 1, "--dims embd"},
        {"$T synth --dims embd=64,layers=4,heads=4,ff=128,vocab=300,rope=nan -o x.gguf", 1, "--dims rope"},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) run_case(&ranges[i], &checked);
    printf("hostile: %-34s %3d cases\n", "numbers (every numeric flag)", checked);
}
END_TEST

/* ---- flags and arguments ---- */

static const hcase flag_cases[] = {
    {"$T", 1, "no command given"},
    {"$T nosuchcommand", 1, "unknown command 'nosuchcommand'"},
    {"$T run -p hi --frobnicate", 1, "unknown option '--frobnicate'"},
    {"$T run hello", 1, "unexpected argument 'hello'"},
    {"$T run -p hi -", 1, "unexpected argument '-'"},
    {"$T run -p", 1, "-p needs a value"},
    {"$T run --config", 1, "--config needs a value"},
    {"$T run -p hi --logits x.f32", 1, "unknown option '--logits'"},
    {"$T eval -p hi --temp 0 --logits x.f32", 1, "unknown option '--temp'"},
    {"$T eval -p hi", 1, "give --logits"},
    {"$T perplexity", 1, "no input"},
    {"$T bench -o xml", 1, "'xml' is not one of: md json"},
    {"$T run -p hi -ctk q8", 1, "'q8' is not one of: f16 f32"},
    {"$T run -p hi -ctk f32 -ctv f16", 1, "differ"},
    {"$T eval -p hi -ctk f32 -ctv f16 --logits x.f32", 1, "differ"},
    {"$T bench -ctk f16 -ctv f32", 1, "differ"},
    {"$T perplexity -f text.txt -ctk f32 -ctv f16", 1, "differ"},
    {"$T run -p hi --head q4", 1, "'q4' is not one of: f16 q8"},
    {"$T run -p hi --backend ''", 1, "--backend"},
    {"$T run -p hi --backend nosuchbackend", 1, "backend 'nosuchbackend' not found"},
    {"$T run -p hi --backend ,,", 1, "an empty name"},
    {"$T run -p hi --backend x86,,scalar", 1, "an empty name"},
    {"$T run -p hi --backend $(printf 'x%.0s' $(seq 300))", 1, "--backend"},
    {"$T run -p hi --kernel nosuchkernel -n 1", 1, "nosuchkernel"},
    {"$T tokenize", 1, "no model given"},
    {"$T tokenize -m model.gguf", 1, "no text given"},
    {"$T tokenize -m model.gguf a b", 1, "one TEXT only"},
    {"$T tokenize -m model.gguf --frob x", 1, "unknown option '--frob'"},
    {"$T tokenize -m", 1, "-m needs a value"},
    {"$T info --frob", 1, "unknown option '--frob'"},
    {"$T info -m", 1, "-m needs a value"},
    {"$T info -m model.gguf extra", 1, "unknown option 'extra'"},
    {"$T info --backend scalar", 1, "--backend needs a model"},
    {"$T info -m model.gguf --backend nosuchbackend", 1, "backend 'nosuchbackend' not found"},
    {"$T info -m fifo.gguf --backend scalar", 1, "not a regular file"},
    {"$T synth", 1, "give --preset NAME or --dims SPEC"},
    {"$T synth --preset tiny", 1, "-o FILE is required"},
    {"$T synth --preset nosuch -o x.gguf", 1, "unknown preset 'nosuch'"},
    {"$T synth --preset tiny --type q4_0 -o x.gguf", 1, "not one of the allowed types"},
    {"$T synth --preset tiny --arch gpt -o x.gguf", 1, "--arch"},
    {"$T synth --dims embd -o x.gguf", 1, "is not key=value"},
    {"$T synth --dims embd=64,bogus=1 -o x.gguf", 1, "unknown key 'bogus'"},
    {"$T synth --dims embd=64,layers=2,heads=3,ff=128,vocab=300 -o x.gguf", 1, "heads must divide"},
    {"$T synth --dims embd=16777216,layers=16777216,heads=1,ff=16777216,vocab=16777216 -o x.gguf", 1, "the synth limit"},
    {"$T synth --dims $(printf 'embd=1,%.0s' $(seq 200)) -o x.gguf", 1, "longer than"},
    {"$T synth --preset tiny --frob 1", 1, "unknown option '--frob'"},
    {"$T synth --preset", 1, "needs a value"},
};

START_TEST(test_flags) { RUN("flags and arguments", flag_cases); }
END_TEST

/* ---- files: models and inputs that are not what they claim ---- */

static const hcase file_cases[] = {
    {"$T run -m nonexistent.gguf -p hi", 1, "nonexistent.gguf: cannot open"},
    {"$T run -m dir -p hi", 1, "not a regular file"},
    {"$T run -m fifo.gguf -p hi", 1, "not a regular file"},
    {"$T run -m /dev/zero -p hi", 1, "not a regular file"},
    {"$T run -m garbage.gguf -p hi", 1, "garbage.gguf"},
    {"$T run -m trunc.gguf -p hi", 1, "trunc.gguf"},
    {"$T run -m empty.gguf -p hi", 1, "empty.gguf"},
    {"$T run -m header-only.gguf -p hi", 1, "header-only.gguf"},
    {"$T run -m dangling -p hi", 1, "dangling"},
    {"$T chat -m fifo.gguf < /dev/null", 1, "not a regular file"},
    {"$T chat -m garbage.gguf < /dev/null", 1, "garbage.gguf"},
    {"$T eval -m fifo.gguf -p hi --logits x.f32", 1, "not a regular file"},
    {"$T eval -m trunc.gguf -p hi --logits x.f32", 1, "trunc.gguf"},
    {"$T perplexity -m fifo.gguf -f text.txt", 1, "not a regular file"},
    {"$T perplexity -m garbage.gguf -f text.txt", 1, "garbage.gguf"},
    {"$T bench -m fifo.gguf", 1, "not a regular file"},
    {"$T bench -m /dev/zero", 1, "not a regular file"},
    {"$T bench -m trunc.gguf", 1, "trunc.gguf"},
    {"$T tokenize -m fifo.gguf hi", 1, "not a regular file"},
    {"$T tokenize -m dir hi", 1, "not a regular file"},
    {"$T tokenize -m garbage.gguf hi", 1, "garbage.gguf"},
    {"$T tokenize -m trunc.gguf hi", 1, "trunc.gguf"},
    {"$T info -m fifo.gguf", 1, "not a regular file"},
    {"$T info -m /dev/zero", 1, "not a regular file"},
    {"$T info -m garbage.gguf", 1, "garbage.gguf"},
    {"$T info -m trunc.gguf", 1, "trunc.gguf"},
    {"$T info -m nonexistent.gguf", 1, "cannot open"},
    {"$T synth --preset tiny --vocab fifo.gguf -o x.gguf", 1, "not a regular file"},
    {"$T synth --preset tiny --vocab garbage.gguf -o x.gguf", 1, "garbage.gguf"},
    {"$T run -m model.gguf --model-draft fifo.gguf -p hi -n 2", 1, "not a regular file"},
    {"$T bench --model-draft nonexistent.gguf -n 2 -r 1", 1, "cannot open"},
};

START_TEST(test_files) { RUN("model files", file_cases); }
END_TEST

/* ---- unbounded input ---- */

static const hcase input_cases[] = {
    {"$T run -f /dev/zero", 1, "not a regular file"},
    {"$T run -f fifo.txt", 1, "not a regular file"},
    {"$T run -f dir", 1, "is a folder"},
    {"$T run -f nonexistent.txt", 1, "cannot open"},
    {"head -c 70000000 /dev/zero | $T run -f -", 1, "longer than 64 MiB, the input limit"},
    {"$T eval -f /dev/zero --logits x.f32", 1, "not a regular file"},
    {"$T eval -f fifo.txt --logits x.f32", 1, "not a regular file"},
    {"$T eval --ids /dev/zero --logits x.f32", 1, "not a regular file"},
    {"$T eval --ids odd.i32 --logits x.f32", 1, "not a whole number of int32 ids"},
    {"$T eval --ids empty.txt --logits x.f32", 1, "no tokens to evaluate"},
    {"$T eval --ids badid.i32 --logits x.f32", 1, "outside the vocabulary"},
    {"$T eval -f empty.txt --no-bos --logits x.f32", 1, "no tokens to evaluate"},
    {"$T eval -f text.txt -c 16 --logits x.f32", 1, "context overflow"},
    {"head -c 70000000 /dev/zero | $T eval -f - --logits x.f32", 1, "the input limit"},
    {"$T perplexity -f /dev/zero", 1, "not a regular file"},
    {"$T perplexity --ids fifo.txt", 1, "not a regular file"},
    {"$T perplexity --ids odd.i32", 1, "not a whole number"},
    {"$T perplexity -f text.txt -c 1", 1, "leaves nothing to score"},
    {"$T perplexity -f text.txt -c 2", 1, "leaves nothing to score"},
    {"$T perplexity --ids two.i32 -c 1", 1, "leaves nothing to score: give -c 2"},
    {"$T perplexity -f empty.txt", 1, "fewer than one chunk"},
    {"$T tokenize -m model.gguf - < /dev/zero", 1, "longer than 64 MiB, the input limit"},
    {"head -c 70000000 /dev/zero | $T tokenize -m model.gguf -", 1, "the input limit"},
    {"$T chat -n 2 < /dev/zero", 1, "longer than 1 MiB, the line limit"},
    {"$T run -p \"$(printf 'word %.0s' $(seq 600))\" -n 4", 1, "does not fit the context"},
    {"$T run -p '' -n 1 --no-bos", 1, "empty prompt"},
};

START_TEST(test_input) { RUN("endless and bad inputs", input_cases); }
END_TEST

/* ---- outputs ---- */

static const hcase output_cases[] = {
    {"$T run -p hi -n 2 > /dev/full", 1, "writing standard output failed"},
    {"$T chat -n 2 < /dev/null > /dev/full", 1, "writing standard output failed"},
    {"$T tokenize -m model.gguf hello > /dev/full", 1, "writing standard output failed"},
    {"$T tokenize -m model.gguf --ids hello > /dev/full", 1, "writing standard output failed"},
    {"$T info > /dev/full", 1, "writing standard output failed"},
    {"$T info -m model.gguf > /dev/full", 1, "writing standard output failed"},
    {"$T bench -p 4 -n 2 -r 1 > /dev/full", 1, "writing standard output failed"},
    {"$T bench -p 4 -n 2 -r 1 -o json > /dev/full", 1, "writing standard output failed"},
    {"$T perplexity -f text.txt -c 64 --chunks 1 > /dev/full", 1, "writing standard output failed"},
    {"$T --version > /dev/full", 1, "writing standard output failed"},
    {"$T run --help > /dev/full", 1, "writing standard output failed"},
    {"$T synth --preset tiny --dims layers=1,vocab=300 -o ok.gguf > /dev/full", 1, "writing standard output failed"},
    {"$T run -p hi -n 2 >&-", 1, "writing standard output failed"},
    {"$T eval -p hi --logits /dev/null", 1, "not a regular file"},
    {"$T eval -p hi --logits dir", 1, "is a folder"},
    {"$T eval -p hi --logits fifo", 1, "not a regular file"},
    {"$T eval -p hi --logits dangling", 1, "a symbolic link to nothing"},
    {"$T eval -p hi --logits nodir/x.f32", 1, "cannot create"},
    {"$T synth --preset tiny --dims layers=1,vocab=300 -o /dev/null", 1, "not a regular file"},
    {"$T synth --preset tiny --dims layers=1,vocab=300 -o fifo", 1, "not a regular file"},
    {"$T synth --preset tiny --dims layers=1,vocab=300 -o dir", 1, "is a folder"},
    {"$T synth --preset tiny --dims layers=1,vocab=300 -o dangling", 1, "a symbolic link to nothing"},
    {"$T synth --preset tiny --dims layers=1,vocab=300 -o nodir/x.gguf", 1, "nodir/x.gguf"},
    /* a symlink to a regular file is written through: the link stays a link */
    {"$T synth --preset tiny --dims layers=1,vocab=300 -o link.gguf && test -L link.gguf && "
     "$T info -m target.gguf > /dev/null && echo 'tern: written through' >&2", 0, "written through"},
    {"$T eval -p hi --logits link.gguf && test -L link.gguf && echo 'tern: written through' >&2", 0, "written through"},
};

START_TEST(test_output) { RUN("outputs", output_cases); }
END_TEST

/* ---- config.lua ---- */

static const hcase config_cases[] = {
    {"$T run --config strict.lua -p hi -n 1", 0, NULL},
    {"$T run --config strict2.lua -p hi", 0, NULL},
    {"$T run --config strictg.lua -p hi -n 1", 0, NULL},
    {"$T eval --config strict.lua -p hi --logits x.f32", 0, NULL},
    {"$T bench --config strict.lua -p 4 -n 2 -r 1", 0, NULL},
    {"$T perplexity --config strict.lua -f text.txt -c 64 --chunks 1", 0, NULL},
    {"$T run --config good.lua", 0, NULL},
    {"$T run --config err-table.lua", 1, "err-table.lua:1: error raised with a table value"},
    {"$T run --config err-nil.lua", 1, "error raised with a nil value"},
    {"$T run --config err-false.lua", 1, "error raised with a boolean value"},
    {"$T run --config err-tostring.lua", 1, "custom message"},
    {"$T eval --config err-table.lua --logits x.f32", 1, "table value"},
    {"$T bench --config err-table.lua", 1, "table value"},
    {"$T chat --config err-table.lua", 1, "table value"},
    {"$T perplexity --config err-nil.lua", 1, "nil value"},
    {"$T run --config syntax.lua", 1, "syntax.lua:"},
    {"$T run --config ret-number.lua", 1, "must return a table of options, not 42"},
    {"$T run --config ret-string.lua", 1, "must return a table"},
    {"$T run --config ret-nil.lua", 1, "must return a table of options, not a nil"},
    {"$T run --config model-number.lua", 1, "key 'model' must be a string, not 12"},
    {"$T eval --config model-number.lua --logits x.f32", 1, "key 'model'"},
    {"$T run --config threads-string.lua", 1, "key 'threads' must be an integer in [1, 512], not the string '4'"},
    {"$T run --config threads-float.lua", 1, "key 'threads' must be an integer in [1, 512], not 1.5"},
    {"$T run --config threads-zero.lua", 1, "key 'threads'"},
    {"$T bench --config threads-huge.lua", 1, "key 'threads'"},
    {"$T run --config ctx-huge.lua", 1, "key 'ctx_size' must be an integer in [0, 16777216]"},
    {"$T run --config temp-nan.lua", 1, "key 'temp' must be a number in [0, 1000]"},
    {"$T run --config temp-inf.lua", 1, "key 'temp'"},
    {"$T run --config temp-string.lua", 1, "key 'temp'"},
    {"$T run --config stop-numbers.lua", 1, "key 'stop' must be a string or a list of strings"},
    {"$T run --config stop-map.lua", 1, "key 'stop'"},
    {"$T run --config backend-empty.lua", 1, "key 'backend'"},
    {"$T run --config backend-number.lua", 1, "key 'backend'"},
    {"$T run --config backend-comma.lua", 1, "key 'backend'"},
    {"$T run --config bool-number.lua", 1, "key 'no_bos' must be true or false, not 1"},
    {"$T run --config unknown-key.lua", 1, "unknown key 'modle'"},
    {"$T run --config number-key.lua", 1, "a key that is not a name"},
    {"$T run --config config-key.lua", 1, "key 'config' works only as a flag"},
    {"$T run --config internal-key.lua", 1, "unknown key 'spec_bench'"},
    {"$T bench --config output-bad.lua", 1, "key 'output' must be one of: md json"},
    {"$T run --config head-bad.lua", 1, "key 'head'"},
    {"$T run --config nul-string.lua", 1, "key 'prompt' must be a string"},
    {"$T run --config newline-key.lua", 1, "unknown key 'bad key'"},
    {"$T run --config loop.lua", 1, "the config limit"},
    {"$T run --config gc-loop.lua -p hi -n 1", 1, "may not set __gc finalizers"},
    {"$T run --config mem-table.lua", 1, "more than 16 MiB of memory, the config limit"},
    {"$T run --config mem-rep.lua", 1, "the config limit"},
    {"$T run --config exit.lua", 1, "exit.lua:1:"},
    {"$T run --config io.lua < /dev/zero", 1, "io.lua:1:"},
    {"$T run --config load.lua", 1, "load.lua:1:"},
    {"$T run --config dofile.lua", 1, "dofile.lua:1:"},
    {"$T run --config require.lua", 1, "require.lua:1:"},
    {"$T run --config coroutine.lua", 1, "coroutine.lua:1:"},
    {"$T run --config bytecode.lua", 1, "attempt to load a binary chunk"},
    {"$T run --config big.lua", 1, "more than 1 MiB, the input limit"},
    {"$T run --config fifo.lua", 1, "not a regular file"},
    {"$T run --config /dev/zero", 1, "not a regular file"},
    {"$T run --config dir", 1, "is a folder"},
    {"$T run --config nonexistent.lua", 1, "cannot open"},
    {"$T run --config dangling", 1, "cannot open"},
};

START_TEST(test_config) { RUN("config.lua", config_cases); }
END_TEST

/* ---- session creation after the model loaded (the old double free) ---- */

static const hcase session_cases[] = {
    {"$T eval -p hi --logits x.f32 -t 1000", 1, "[1, 512]"},
    {"TERN_GRAPH_PATH=gp-nonfunc $T eval -p hi --logits x.f32", 1, "must return a function(g, m)"},
    {"TERN_GRAPH_PATH=gp-nonfunc $T perplexity -f text.txt -c 64", 1, "must return a function(g, m)"},
    {"TERN_GRAPH_PATH=gp-nonfunc $T bench -p 4 -n 2 -r 1", 1, "must return a function(g, m)"},
    {"TERN_GRAPH_PATH=gp-nonfunc $T run -p hi -n 1", 1, "must return a function(g, m)"},
    {"TERN_GRAPH_PATH=gp-nonfunc $T chat < /dev/null", 1, "must return a function(g, m)"},
    {"TERN_GRAPH_PATH=gp-error $T eval -p hi --logits x.f32", 1, "error raised with a table value"},
    {"TERN_GRAPH_PATH=gp-error $T run -p hi -n 1", 1, "error raised with a table value"},
    {"TERN_GRAPH_PATH=gp-loop $T eval -p hi --logits x.f32", 1, "million Lua instructions"},
    {"TERN_GRAPH_PATH=gp-loop $T bench -p 4 -n 2 -r 1", 1, "million Lua instructions"},
    {"TERN_GRAPH_PATH=gp-badret $T eval -p hi --logits x.f32", 1, "returned string, not a tensor"},
    {"TERN_GRAPH_PATH=gp-fifo $T eval -p hi --logits x.f32", 1, "not a regular file"},
    {"TERN_GRAPH_PATH=gp-bytecode $T run -p hi -n 1", 1, "binary chunk"},
    {"TERN_GRAPH_PATH=gp-mem $T eval -p hi --logits x.f32", 1, NULL},
    {"TERN_GRAPH_PATH=gp-pipe $T run -p hi", 1, "pipeline script generate.lua must return a function(opts)"},
    {"TERN_GRAPH_PATH=gp-pipe-err $T run -p hi", 1, "error raised with a nil value"},
    {"TERN_GRAPH_PATH=gp-pipe-dir $T run -p hi", 1, "not a regular file"},
};

START_TEST(test_session) { RUN("sessions and graph scripts", session_cases); }
END_TEST

/* ---- plugins ---- */

static const hcase plugin_cases[] = {
    {"TERN_PLUGIN_PATH=pp-garbage $T run -p hi -n 1 --backend x86", 1, "backend 'x86'"},
    {"TERN_PLUGIN_PATH=pp-garbage $T run -p hi -n 1 --backend scalar", 1, "scalar"},
    {"TERN_PLUGIN_PATH=pp-fifo $T run -p hi -n 1 --backend evil", 1, "not a regular file"},
    {"TERN_PLUGIN_PATH=pp-fifo $T run -p hi -n 1 && echo 'tern: fifo skipped' >&2", 0, "fifo skipped"},
    {"TERN_PLUGIN_PATH=pp-dir $T run -p hi -n 1 --backend dir", 1, "not a regular file"},
    {"TERN_PLUGIN_PATH=pp-empty $T run -p hi -n 1 --backend empty", 1, "backend 'empty'"},
    {"TERN_PLUGIN_PATH=pp-fifo:pp-dir:pp-empty $T info | grep -c 'not loadable' | grep -q 3 && echo 'tern: listed' >&2", 0, "listed"},
    {"TERN_PLUGIN_PATH=$TERN_BUILD/tests/plugins/badabi $T run -p hi -n 1 --backend badabi", 1, "ABI version"},
    {"TERN_PLUGIN_PATH=$TERN_BUILD/tests/plugins/cannotrun $T run -p hi -n 1 --backend cannotrun", 1, "cannot run here"},
    {"TERN_PLUGIN_PATH=$TERN_BUILD/tests/plugins/nosym $T run -p hi -n 1 --backend nosym", 1, "not a tern backend"},
    /* a plugin that is not asked for is not opened (its file is not even read) */
    {"TERN_PLUGIN_PATH=pp-garbage $T run -p hi -n 1 --backend x86 2>&1 | grep -q 'ignoring' && echo 'tern: warned' >&2", 0, "warned"},
};

START_TEST(test_plugins) { RUN("plugins", plugin_cases); }
END_TEST

/* ---- interrupts: Ctrl-C during a long prefill ends it ----
 * On scalar: x86 finishes these 902 tokens in under a second on an idle
 * machine, before the signal comes (CI failed that way). */

static const hcase interrupt_cases[] = {
    {"$T eval -f text.txt -b 1 -c 4096 --logits x.f32 --backend scalar & p=$!; sleep 1; kill -INT $p; wait $p", 130, "interrupted"},
    {"$T perplexity -f text.txt -b 1 -c 512 --backend scalar & p=$!; sleep 1; kill -INT $p; wait $p", 130, "interrupted"},
    {"$T run -f text.txt -b 1 -c 4096 -n 1 --backend scalar & p=$!; sleep 1; kill -INT $p; wait $p", 130, "interrupted"},
};

START_TEST(test_interrupt) { RUN("interrupts", interrupt_cases); }
END_TEST

Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_flags);
    tcase_add_test(tc, test_files);
    tcase_add_test(tc, test_input);
    tcase_add_test(tc, test_output);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_session);
    tcase_add_test(tc, test_plugins);
    tcase_add_test(tc, test_interrupt);
    suite_add_tcase(s, tc);
    return s;
}
