/* packcache.c - packed weights kept in a cache file (see packcache.h).
 *
 * File: a header (magic, version, sizes, the key, a checksum of header and
 * directory), the directory (one entry per item: weight, purpose, offset,
 * bytes, checksum, layout line), then each item's bytes at a 4096-byte
 * boundary. Every offset is recomputed from the items the caller passes
 * and compared, so nothing read from the file decides where we read. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "packcache.h"
#include "tern/checked.h"

#define PC_MAGIC "TERNPCK\n"
#define PC_VERSION 1u
#define PC_ALIGN 4096u

typedef struct pc_header {
    char magic[8];
    uint32_t version, n_items;
    uint64_t file_size, dir_offset, data_offset;
    uint64_t check; /* hash of header (check = 0) and directory */
    char key[PACKCACHE_KEY_MAX];
} pc_header;

typedef struct pc_entry {
    uint32_t weight, purpose;
    uint64_t offset, bytes, hash;
    char layout[PACKCACHE_LAYOUT_MAX];
} pc_entry;

struct tern_packcache {
    uint8_t *map;
    size_t size;
    int n;
    pc_entry *dir;          /* what the file must hold, offsets computed */
    tern_threadpool *pool;
    char path[4096], tmp[4200];
    int writable, committed;
};

/* Four independent multiply-xor lanes over 8-byte words, so the loop runs
 * at memory speed; the tail and the lanes fold into one value. Not a
 * cryptographic hash: it catches truncation, damage and stale bytes, not
 * an attacker who can write the user's cache folder (who could as well
 * replace the model). */
uint64_t tern_packcache_hash(const void *data, size_t n, uint64_t seed)
{
    const uint64_t prime = 0x9E3779B97F4A7C15ull;
    const uint8_t *p = data;
    uint64_t h[4] = {seed ^ 0x243F6A8885A308D3ull, seed ^ 0x13198A2E03707344ull,
                     seed ^ 0xA4093822299F31D0ull, seed ^ 0x082EFA98EC4E6C89ull};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * l, 8);
            h[l] = (h[l] ^ w) * prime;
            h[l] ^= h[l] >> 29;
        }
    uint64_t t = n;
    for (; i < n; i++) t = (t ^ p[i]) * prime;
    uint64_t out = t;
    for (int l = 0; l < 4; l++) out = (out ^ h[l]) * prime, out ^= out >> 31;
    return out;
}

static uint64_t header_check(const pc_header *h, const pc_entry *dir, int n)
{
    pc_header copy = *h;
    copy.check = 0;
    memset(copy.magic, 0, sizeof copy.magic); /* written last, after the check */
    return tern_packcache_hash(dir, (size_t)n * sizeof *dir, tern_packcache_hash(&copy, sizeof copy, 1));
}

/* mkdir -p for the cache folder. */
static int make_dirs(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return -1;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST) return -1;
            *s = '/';
        }
    return mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
}

/* Hashes (or checks) every item on the pool's threads. */
typedef struct hash_job {
    tern_packcache *pc;
    int check; /* 1: compare with dir[i].hash; 0: store it */
    atomic_int next, bad;
} hash_job;

static void hash_items(void *arg, int ith, int nth)
{
    (void)ith, (void)nth;
    hash_job *j = arg;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->pc->n && !atomic_load(&j->bad);) {
        pc_entry *e = &j->pc->dir[i];
        uint64_t h = tern_packcache_hash(j->pc->map + e->offset, e->bytes, e->weight);
        if (!j->check) e->hash = h;
        else if (h != e->hash) atomic_store(&j->bad, 1);
    }
}

static int run_hash(tern_packcache *pc, int check)
{
    hash_job j = {.pc = pc, .check = check};
    tern_threadpool_run(pc->pool, hash_items, &j);
    return atomic_load(&j.bad);
}

/* 1 when the mapped file holds exactly pc->dir under key (the hashes are
 * taken from the file, then checked against the bytes). */
static int valid(tern_packcache *pc, const char *key, uint64_t data_offset)
{
    const pc_header *h = (const pc_header *)pc->map;
    const pc_entry *fd = (const pc_entry *)(pc->map + sizeof *h);
    if (memcmp(h->magic, PC_MAGIC, 8) || h->version != PC_VERSION || h->n_items != (uint32_t)pc->n ||
        h->file_size != pc->size || h->dir_offset != sizeof *h || h->data_offset != data_offset ||
        strncmp(h->key, key, sizeof h->key) || h->check != header_check(h, fd, pc->n))
        return 0;
    for (int i = 0; i < pc->n; i++) {
        const pc_entry *want = &pc->dir[i], *got = &fd[i];
        if (got->weight != want->weight || got->purpose != want->purpose || got->offset != want->offset ||
            got->bytes != want->bytes || strncmp(got->layout, want->layout, sizeof got->layout))
            return 0;
        pc->dir[i].hash = got->hash;
    }
    return !run_hash(pc, 1);
}

/* Maps an existing file if it is this one; 0 when it is used. */
static int open_existing(tern_packcache *pc, const char *key, uint64_t data_offset)
{
    int fd = open(pc->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != pc->size) {
        close(fd);
        return -1;
    }
    /* populated: the checksums read every page anyway, and the first
     * evaluation then takes no page faults */
    void *m = mmap(NULL, pc->size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    pc->map = m;
    if (valid(pc, key, data_offset)) return 0;
    munmap(m, pc->size);
    pc->map = NULL;
    return -1;
}

static int create_new(tern_packcache *pc, char *why, size_t whylen)
{
    snprintf(pc->tmp, sizeof pc->tmp, "%s.tmp.%ld", pc->path, (long)getpid());
    int fd = open(pc->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, whylen, "cannot create %s: %s", pc->tmp, strerror(errno));
        return -1;
    }
    /* blocks reserved now: a full disk is an error here, not a SIGBUS on
     * the first store into a page it cannot hold */
    int e = posix_fallocate(fd, 0, (off_t)pc->size);
    void *m = e ? MAP_FAILED : mmap(NULL, pc->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (!e && m == MAP_FAILED) e = errno;
    close(fd);
    if (e) {
        snprintf(why, whylen, "no room for %.0f MiB of packed weights in %s: %s",
                 (double)pc->size / (1 << 20), pc->tmp, strerror(e));
        unlink(pc->tmp);
        pc->tmp[0] = 0;
        return -1;
    }
    pc->map = m;
    pc->writable = 1;
    return 0;
}

tern_packcache *tern_packcache_open(const char *dir, const char *name, const char *key,
                                    const packcache_item *items, int n_items, tern_threadpool *pool,
                                    int *fill, char *why, size_t whylen)
{
    *fill = 0;
    if (n_items <= 0 || strlen(key) >= PACKCACHE_KEY_MAX) {
        snprintf(why, whylen, "nothing to keep or the key is too long");
        return NULL;
    }
    tern_packcache *pc = calloc(1, sizeof *pc);
    pc_entry *d = calloc((size_t)n_items, sizeof *d);
    if (!pc || !d) {
        free(pc), free(d);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    pc->dir = d;
    pc->n = n_items;
    pc->pool = pool;
    /* the layout every valid file has: header, directory, aligned items */
    uint64_t off = sizeof(pc_header) + (uint64_t)n_items * sizeof(pc_entry), data_offset;
    off = (off + PC_ALIGN - 1) / PC_ALIGN * PC_ALIGN;
    data_offset = off;
    int overflow = 0;
    for (int i = 0; i < n_items; i++) {
        d[i].weight = items[i].weight;
        d[i].purpose = items[i].purpose;
        d[i].bytes = items[i].bytes;
        memcpy(d[i].layout, items[i].layout, sizeof d[i].layout);
        d[i].layout[sizeof d[i].layout - 1] = 0;
        d[i].offset = off;
        overflow |= tern_add_overflows_u64(off, items[i].bytes + PC_ALIGN - 1, &off);
        off = off / PC_ALIGN * PC_ALIGN;
    }
    pc->size = (size_t)off;
    if (overflow || (uint64_t)pc->size != off ||
        snprintf(pc->path, sizeof pc->path, "%s/%s", dir, name) >= (int)sizeof pc->path) {
        snprintf(why, whylen, "cache path or size out of range");
        tern_packcache_close(pc);
        return NULL;
    }
    if (open_existing(pc, key, data_offset) == 0) return pc;
    if (make_dirs(dir)) {
        snprintf(why, whylen, "cannot create %s: %s", dir, strerror(errno));
        tern_packcache_close(pc);
        return NULL;
    }
    if (create_new(pc, why, whylen)) {
        tern_packcache_close(pc);
        return NULL;
    }
    pc_header *h = (pc_header *)pc->map;
    memset(h, 0, sizeof *h);
    h->version = PC_VERSION;
    h->n_items = (uint32_t)n_items;
    h->file_size = pc->size;
    h->dir_offset = sizeof *h;
    h->data_offset = data_offset;
    snprintf(h->key, sizeof h->key, "%s", key);
    *fill = 1;
    return pc;
}

void *tern_packcache_data(tern_packcache *pc, int i) { return pc->map + pc->dir[i].offset; }

int tern_packcache_commit(tern_packcache *pc, char *why, size_t whylen)
{
    if (!pc->writable) return 0;
    run_hash(pc, 0);
    pc_header *h = (pc_header *)pc->map;
    memcpy(pc->map + sizeof *h, pc->dir, (size_t)pc->n * sizeof *pc->dir);
    h->check = header_check(h, (const pc_entry *)(pc->map + sizeof *h), pc->n);
    memcpy(h->magic, PC_MAGIC, 8); /* last: a file without it is never read */
    mprotect(pc->map, pc->size, PROT_READ);
    pc->writable = 0;
    if (rename(pc->tmp, pc->path)) {
        snprintf(why, whylen, "cannot rename %s to %s: %s", pc->tmp, pc->path, strerror(errno));
        return -1;
    }
    pc->committed = 1;
    return 0;
}

void tern_packcache_close(tern_packcache *pc)
{
    if (!pc) return;
    if (pc->map) munmap(pc->map, pc->size);
    if (pc->tmp[0] && !pc->committed) unlink(pc->tmp);
    free(pc->dir);
    free(pc);
}
