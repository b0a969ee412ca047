/* nosym.c - a shared object named like a backend that does not export
 * tern_backend_entry. */
#include "mini.h"

TERN_EXPORT int not_a_tern_backend(void) { return 42; }
