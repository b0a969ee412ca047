/* tern/checked.h - overflow-checked size arithmetic for everything read from files.
 *
 * Every count, size and offset that comes from a file passes through these
 * before it feeds an allocation or a pointer. Each returns nonzero when the
 * exact result does not fit, and leaves *out unspecified in that case. */
#ifndef TERN_CHECKED_H
#define TERN_CHECKED_H

#include <stddef.h>
#include <stdint.h>

static inline int tern_mul_overflows(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline int tern_add_overflows(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

static inline int tern_mul_overflows_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline int tern_add_overflows_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/* Rounds v up to a multiple of align (a power of two); nonzero on overflow. */
static inline int tern_align_overflows(uint64_t v, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (__builtin_add_overflow(v, align - 1, &t)) return 1;
    *out = t & ~(align - 1);
    return 0;
}

#endif
