/* tern/io.h - files named by users: inputs read whole with a size cap (a
 * regular file, or standard input), and outputs that never replace
 * anything but a regular file. */
#ifndef TERN_IO_H
#define TERN_IO_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The default cap on one input (a prompt file, a token-id file, standard
 * input): 64 MiB, far above any text a context holds. */
#define TERN_IO_INPUT_MAX ((size_t)64 << 20)

/* Reads all of path ("-" = standard input) into *out, malloc'ed and
 * NUL-terminated (*len excludes the NUL). A named path must be a regular
 * file (a FIFO or a device is refused before it is opened for reading);
 * standard input may be anything. Either way at most cap bytes: a longer
 * input is TERN_EINVAL, its message naming the cap. Short reads are
 * retried; an interrupted read (EINTR, Ctrl-C) is TERN_ECANCELED. On
 * failure *out is NULL. */
tern_status tern_io_read(const char *path, size_t cap, char **out, size_t *len, tern_error *err);

/* The path a writer should create or replace for path: path itself when
 * nothing is there or a regular file is, the target of a symlink to a
 * regular file (so replacing the file writes through the link, never
 * replaces it). Anything else that exists (a device, a FIFO, a directory,
 * a dangling link) is TERN_EINVAL. Fills out (n bytes). */
tern_status tern_io_output_path(const char *path, char *out, size_t n, tern_error *err);

/* Opens path for writing (created 0644 or truncated) after
 * tern_io_output_path's check, and checks again on the open file that it
 * is a regular one. */
tern_status tern_io_create(const char *path, int *fd, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
