/* bad_abi.c - a kernel plugin built for a kernel ABI this tern does not
 * read (99): the x86 backend must skip it with a one-line reason. */
#include "tern/kernels.h"

static const tern_kernels_table table = {99u, sizeof(tern_kernels_table), "badabi", "test", "none",
                                         NULL, 0, sizeof(tern_kernel_variant), NULL, 0,
                                         sizeof(tern_kernel_choice), ""};

__attribute__((visibility("default"))) const tern_kernels_table *tern_kernels_entry(void) { return &table; }
