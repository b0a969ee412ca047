/* tern/status.h - status codes and the error record every fallible call fills.
 *
 * Library calls never exit or abort on bad input: they return a tern_status
 * and, when the caller passes a tern_error, a one-line message that names the
 * file, the field, the offset and the value involved.
 *
 * Ownership on error paths, one rule for every constructor (tern_X_create,
 * tern_X_load, tern_X_open, ...): the function that creates an object frees
 * it. A constructor sets *out to NULL first, and when it fails it has freed
 * everything it allocated and leaves *out NULL; only after TERN_OK does the
 * caller own *out (and free it with the matching tern_X_free, which accepts
 * NULL). A caller never frees what a failed call made, so an error path in
 * the caller can always free its own handles without double frees. */
#ifndef TERN_STATUS_H
#define TERN_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_status {
    TERN_OK = 0,
    TERN_EINVAL,       /* bad argument or option value */
    TERN_ENOMEM,       /* allocation failed or memory cap reached */
    TERN_EIO,          /* open/read/mmap failed */
    TERN_EFORMAT,      /* malformed file contents */
    TERN_EUNSUPPORTED, /* valid input that tern does not handle */
    TERN_ENOTFOUND,    /* missing key, tensor, plugin or symbol */
    TERN_EABI,         /* plugin ABI mismatch */
    TERN_ECONTEXT,     /* context window exhausted */
    TERN_ESCRIPT,      /* Lua graph or pipeline script error */
    TERN_ECANCELED,    /* interrupted by the user */
    TERN_ECANNOTRUN,   /* backend probe says it cannot run here */
    TERN_EDEVICE,      /* a device (or its driver) failed during an evaluation */
    TERN_STATUS_COUNT
} tern_status;

#define TERN_ERROR_MSG_MAX 512

/* One error record per call site (per session, per model), never global. */
typedef struct tern_error {
    tern_status status;
    char msg[TERN_ERROR_MSG_MAX];
} tern_error;

/* Short stable name of a status ("EFORMAT"); never NULL. */
const char *tern_status_name(tern_status st);

/* Records st and a printf-style message in err (err may be NULL) and returns st,
 * so callers can write `return tern_error_set(err, TERN_EFORMAT, "...")`. */
tern_status tern_error_set(tern_error *err, tern_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
tern_status tern_error_setv(tern_error *err, tern_status st, const char *fmt, va_list ap);

/* Prefixes an existing message with more context ("loading model: "). */
tern_status tern_error_prefix(tern_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
