/* fault.h - fault injection for tests, SQLite style (runtime/fault.c).
 * libtern is linked with -Wl,--wrap=malloc,calloc,realloc,strdup,
 * posix_memalign and free, so every allocation libtern's own code makes (the Lua
 * states' too, their allocator calls realloc; PCRE2's through the
 * tokenizer's general context) passes a counter that a test can arm.
 * Exported (tern_*) for tests/fault; not an installed header. */
#ifndef TERN_FAULT_H
#define TERN_FAULT_H

#include <stddef.h>

/* From now on, the nth allocation fails (n >= 1), and with persistent every
 * one after it too. n = 0 disarms. Counts restart at every call. */
void tern_fault_alloc_fail(long n, int persistent);
/* Allocations seen and failures injected since the last tern_fault_alloc_fail. */
long tern_fault_alloc_count(void);
long tern_fault_alloc_failures(void);
/* Blocks libtern allocated and has not freed: a leak check without ASan.
 * Every free libtern makes is of a block it allocated; a block it hands
 * out (tern_tokenize's ids) and the caller frees stays counted. */
long tern_fault_alloc_live(void);

/* Every read() of tern_io_read asks for at most max bytes (a pipe's or a
 * slow device's short reads, on a regular file); 0 = off. */
void tern_fault_read_max(size_t max);

#endif
