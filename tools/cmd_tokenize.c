/* cmd_tokenize.c - `tern tokenize`: a model's tokenizer on a text, printed
 * the way llama-tokenize prints it, and --bench for encode throughput. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tern/gguf.h"
#include "tern/io.h"
#include "tern/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tern tokenize -m MODEL.gguf [--ids] [--special] [--no-bos] [--bench] TEXT|-\n"
            "\n"
            "  -m FILE     the model whose tokenizer to use\n"
            "  --ids       print only the ids, as [1, 2, 3]\n"
            "  --special   recognise control-token texts in TEXT\n"
            "  --no-bos    add no BOS/EOS even where the model asks for them\n"
            "  --bench     time encoding: TEXT (or '-') repeated to at least 4 MiB, or\n"
            "              generated English-like text when no TEXT is given\n"
            "  TEXT        the text; '-' reads standard input byte for byte (at most 64 MiB)\n");
}

/* Deterministic English-like text: common words, capitals after full
 * stops, commas, numbers and paragraph breaks. */
static char *generated_text(size_t want, size_t *len)
{
    static const char *const words[] = {
        "the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as",
        "his", "on", "be", "at", "by", "had", "not", "are", "but", "from", "or", "have", "an", "they",
        "which", "one", "you", "were", "her", "all", "she", "there", "would", "their", "we", "him",
        "been", "has", "when", "who", "will", "more", "no", "if", "out", "so", "said", "what", "up",
        "its", "about", "into", "than", "them", "can", "only", "other", "new", "some", "could",
        "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like",
        "our", "over", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before",
        "must", "through", "back", "years", "where", "much", "your", "way", "well", "down", "should",
        "because", "each", "just", "those", "people", "how", "too", "little", "state", "good",
        "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here",
        "between", "both", "life", "being", "under", "never", "day", "same", "another", "know",
        "while", "last", "might", "us", "great", "old", "year", "off", "come", "since", "against",
        "go", "came", "right", "used", "take", "three", "committee", "government", "morning",
        "question", "children", "business", "community", "important", "understand", "development"};
    const size_t n_words = sizeof words / sizeof words[0];
    char *s = malloc(want + 64);
    if (!s) return NULL;
    unsigned long long x = 0x2545f4914f6cdd1dull;
    size_t n = 0;
    int cap_next = 1, in_sentence = 0;
    while (n < want) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *w = words[x % n_words];
        if (in_sentence) s[n++] = ' ';
        size_t wl = strlen(w);
        memcpy(s + n, w, wl);
        if (cap_next) s[n] = (char)(s[n] - 'a' + 'A');
        n += wl;
        cap_next = 0;
        in_sentence++;
        unsigned r = (unsigned)(x >> 40) % 100;
        if (r < 2) {
            n += (size_t)snprintf(s + n, 32, " %u", (unsigned)(x >> 20) % 10000);
        } else if (r < 9) {
            s[n++] = ',';
        } else if (in_sentence > 6 && r < 20) {
            s[n++] = r < 18 ? '.' : '?';
            cap_next = 1;
            in_sentence = 0;
            if (r % 7 == 0) {
                s[n++] = '\n';
                s[n++] = '\n';
            } else {
                s[n++] = ' ';
            }
            in_sentence = 0;
        }
    }
    *len = n;
    return s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench(const tern_tokenizer *tok, const char *text, size_t len, int add_special, int parse_special)
{
    const size_t want = 4u << 20;
    char *buf;
    size_t n = 0;
    if (text && len > 0) {
        size_t reps = (want + len - 1) / len;
        if (reps > SIZE_MAX / len) return cli_fail("tokenize", "--bench: text too long");
        buf = malloc(reps * len);
        if (!buf) return cli_fail("tokenize", "out of memory");
        for (size_t i = 0; i < reps; i++) memcpy(buf + n, text, len), n += len;
    } else {
        buf = generated_text(want, &n);
        if (!buf) return cli_fail("tokenize", "out of memory");
    }
    int32_t *ids = NULL;
    size_t cap = 0, n_ids = 0;
    tern_error err;
    double best = 1e30;
    for (int run = 0; run < 3; run++) {
        double t0 = now_s();
        if (tern_tokenize(tok, buf, n, add_special, parse_special, &ids, &cap, &n_ids, &err)) {
            free(buf);
            free(ids);
            return cli_fail("tokenize", "%s", err.msg);
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("tokenize: %s text, %.2f MB -> %zu tokens (%.2f bytes/token)\n", text ? "given" : "generated",
           (double)n / 1e6, n_ids, n_ids ? (double)n / (double)n_ids : 0.0);
    printf("tokenize: %.3f s, %.2f MB/s on one core (best of 3)\n", best, (double)n / 1e6 / best);
    free(buf);
    free(ids);
    return 0;
}

static void print_tokens(const tern_tokenizer *tok, const int32_t *ids, size_t n, int only_ids)
{
    if (only_ids) {
        printf("[");
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("]\n");
        return;
    }
    char small[256];
    for (size_t i = 0; i < n; i++) {
        int len = tern_token_to_piece(tok, ids[i], small, sizeof small, 1);
        char *p = small;
        if (len > (int)sizeof small && (p = malloc((size_t)len))) tern_token_to_piece(tok, ids[i], p, (size_t)len, 1);
        printf("%6d -> '", ids[i]);
        if (p && len > 0) fwrite(p, 1, (size_t)len, stdout);
        printf("'\n");
        if (p != small) free(p);
    }
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text_arg = NULL;
    int only_ids = 0, special = 0, no_bos = 0, do_bench = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (++i >= argc) return cli_fail("tokenize", "%s needs a value", a);
            model = argv[i];
        } else if (strcmp(a, "--ids") == 0) {
            only_ids = 1;
        } else if (strcmp(a, "--special") == 0) {
            special = 1;
        } else if (strcmp(a, "--no-bos") == 0) {
            no_bos = 1;
        } else if (strcmp(a, "--bench") == 0) {
            do_bench = 1;
        } else if (a[0] == '-' && a[1] != 0) {
            return cli_fail("tokenize", "unknown option '%s' (try --help)", a);
        } else if (text_arg) {
            return cli_fail("tokenize", "one TEXT only (quote it, or use '-' for standard input)");
        } else {
            text_arg = a;
        }
    }
    if (!model) return cli_fail("tokenize", "no model given (-m FILE)");
    if (!text_arg && !do_bench) return cli_fail("tokenize", "no text given (TEXT, or '-' for standard input)");

    char *text = NULL;
    size_t len = 0;
    tern_error err;
    if (text_arg && strcmp(text_arg, "-") == 0) {
        if (tern_io_read("-", TERN_IO_INPUT_MAX, &text, &len, &err)) return cli_fail("tokenize", "%s", err.msg);
    } else if (text_arg) {
        len = strlen(text_arg);
        if (!(text = malloc(len + 1))) return cli_fail("tokenize", "out of memory");
        memcpy(text, text_arg, len + 1);
    }

    tern_gguf *g = NULL;
    tern_tokenizer *tok = NULL;
    int rc = 0;
    if (tern_gguf_open(model, &g, &err) || tern_tokenizer_from_gguf(g, &tok, &err)) {
        rc = cli_fail("tokenize", "%s", err.msg);
        goto done;
    }
    tern_gguf_close(g);
    g = NULL;
    if (do_bench) {
        rc = bench(tok, text, len, !no_bos, special);
        goto done;
    }
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    if (tern_tokenize(tok, text, len, !no_bos, special, &ids, &cap, &n, &err)) {
        rc = cli_fail("tokenize", "%s", err.msg);
        goto done;
    }
    print_tokens(tok, ids, n, only_ids);
    free(ids);
done:
    tern_tokenizer_free(tok);
    tern_gguf_close(g);
    free(text);
    return rc;
}
