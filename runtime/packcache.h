/* packcache.h - packed weights kept in a cache file, mapped by later runs.
 *
 * Packing a model's weights for a backend (x86's tiles, the q8 head) is a
 * pass over every weight: seconds for a 2B model, minutes at 100B. The
 * first load packs straight into a new cache file's mapping; later loads
 * map that file, check it and use it as it is, so they start in the time
 * it takes to read the packed bytes once, and resident memory holds one
 * copy (the file's pages, shared with the page cache).
 *
 * A cache file is named by the model's path and the backend's options and
 * holds, in its header, the key it was written under (tern version, the
 * model file's and the backend plugin's identity: device, inode, size,
 * modification time) and, per weight, its size, the backend's layout line
 * and a checksum of its bytes. It is used only where all of these equal
 * what this run would write and every checksum holds; anything else (a
 * stale, truncated or damaged file) is ignored and written anew, never
 * trusted. A new file is written under a temporary name and renamed into
 * place once complete, so a reader never sees half of one. */
#ifndef TERN_PACKCACHE_H
#define TERN_PACKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "tern/threadpool.h"

#define PACKCACHE_LAYOUT_MAX 160
#define PACKCACHE_KEY_MAX 2048

/* One packed weight: which (weight index, purpose), how many bytes, and
 * the backend's line naming their layout. */
typedef struct packcache_item {
    uint32_t weight, purpose;
    uint64_t bytes;
    char layout[PACKCACHE_LAYOUT_MAX];
} packcache_item;

typedef struct tern_packcache tern_packcache;

/* Opens the cache file `name` in folder dir (created if missing) for the
 * items under key. A valid file is mapped read-only and *fill is 0; else a
 * new one is made (under a temporary name) and mapped writable, *fill 1:
 * the caller packs into tern_packcache_data() and calls _commit. NULL with
 * a one-line reason in why when no cache can be used here (read-only
 * folder, disk full, ...): the caller packs into memory of its own.
 * pool verifies checksums on all threads. */
tern_packcache *tern_packcache_open(const char *dir, const char *name, const char *key,
                                    const packcache_item *items, int n_items, tern_threadpool *pool,
                                    int *fill, char *why, size_t whylen);
/* Item i's bytes, 4096-byte aligned. */
void *tern_packcache_data(tern_packcache *pc, int i);
/* A filled file: checksums and header written, renamed into place, mapped
 * read-only from then on. Nonzero with a reason when that failed (the
 * data stays usable for this run; the next run packs again). */
int tern_packcache_commit(tern_packcache *pc, char *why, size_t whylen);
/* Unmaps (call once nothing reads the data) and removes an uncommitted
 * file. Accepts NULL. */
void tern_packcache_close(tern_packcache *pc);

/* The 64-bit checksum used for items (exposed for tests). */
uint64_t tern_packcache_hash(const void *data, size_t n, uint64_t seed);

#endif
