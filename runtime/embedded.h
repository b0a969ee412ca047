/* embedded.h - Lua graphs and pipelines compiled into libtern at build time
 * (generated table in build/gen/embedded_graphs.c). */
#ifndef TERN_EMBEDDED_H
#define TERN_EMBEDDED_H

#include <stddef.h>

typedef struct tern_embedded_file {
    const char *name; /* "bitnet_b158.lua" */
    const char *text; /* NUL-terminated */
    size_t size;
} tern_embedded_file;

extern const tern_embedded_file tern_embedded_graphs[]; /* ends with name NULL */

#endif
