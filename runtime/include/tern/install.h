/* tern/install.h - the tree this libtern belongs to: its version, how it was
 * built, and where its plugins and default model are.
 *
 * Everything is found relative to the folder libtern.so itself was loaded
 * from (<libdir>), never through a compiled-in prefix, so a tree can move
 * and a build tree and an installed tree never read each other's files:
 *
 *   plugins        <libdir>/tern when that folder exists (an installed tree),
 *                  else <libdir> itself (the build tree keeps them there)
 *   default model  <libdir>/../share/tern/models/tiny-bitnet.gguf (the build
 *                  tree links graphs/models/ there) */
#ifndef TERN_INSTALL_H
#define TERN_INSTALL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version ("0.1.0"); TERN_VERSION is the headers'. */
const char *tern_install_version(void);
/* The build options the library was built with ("debug=0 san=0 native=0"). */
const char *tern_install_build(void);
/* The compiler that built it: "gcc 12.2.0". */
const char *tern_install_compiler(void);
/* The folder libtern.so was loaded from, symlinks resolved; "" when the
 * dynamic loader cannot tell. */
const char *tern_install_libdir(void);
/* The ':'-separated folders tern_registry_scan searches: $TERN_PLUGIN_PATH
 * (when set), then this tree's plugin folder. Writes at most n bytes with
 * the NUL; returns the full length, as snprintf does. */
size_t tern_install_plugin_dirs(char *buf, size_t n);
/* This tree's plugin folder alone (no $TERN_PLUGIN_PATH). */
const char *tern_install_plugin_dir(void);
/* The default model file of this tree, or NULL when it has none. */
const char *tern_install_default_model(void);

#ifdef __cplusplus
}
#endif
#endif
