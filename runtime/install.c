/* install.c - what this libtern is and where its tree keeps the rest (see
 * tern/install.h): all paths derive from the folder of libtern.so itself,
 * found once with dladdr, so nothing but the layout is compiled in. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tern/install.h"
#include "tern/tern.h"

#ifndef TERN_BUILD_OPTIONS
#define TERN_BUILD_OPTIONS "unknown"
#endif

#define DEFAULT_MODEL "share/tern/models/tiny-bitnet.gguf"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char libdir[PATH_MAX];           /* "" when unknown */
static char plugin_dir[PATH_MAX + 8];   /* <libdir>/tern or <libdir> */
static char model_path[PATH_MAX + 64];  /* <libdir>/../share/tern/models/... */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Fills the three paths; runs once per process. */
static void find_tree(void)
{
    Dl_info info;
    char real[PATH_MAX];
    if (dladdr((void *)tern_install_libdir, &info) && info.dli_fname &&
        realpath(info.dli_fname, real)) {
        char *slash = strrchr(real, '/');
        if (slash) {
            *slash = 0;
            snprintf(libdir, sizeof libdir, "%s", real[0] ? real : "/");
        }
    }
    if (!libdir[0]) return;
    snprintf(plugin_dir, sizeof plugin_dir, "%s/tern", libdir);
    if (!is_dir(plugin_dir)) snprintf(plugin_dir, sizeof plugin_dir, "%s", libdir);
    /* <libdir>/.. by name, not realpath: <libdir> has no symlinks left */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", libdir);
    char *up = strrchr(parent, '/');
    if (up) *up = 0;
    snprintf(model_path, sizeof model_path, "%s/" DEFAULT_MODEL, parent);
}

const char *tern_install_version(void) { return TERN_VERSION; }

const char *tern_install_build(void) { return TERN_BUILD_OPTIONS; }

const char *tern_install_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

const char *tern_install_libdir(void)
{
    pthread_once(&once, find_tree);
    return libdir;
}

const char *tern_install_plugin_dir(void)
{
    pthread_once(&once, find_tree);
    return plugin_dir;
}

size_t tern_install_plugin_dirs(char *buf, size_t n)
{
    const char *env = getenv("TERN_PLUGIN_PATH");
    const char *own = tern_install_plugin_dir();
    int sep = env && *env && *own;
    int len = snprintf(buf, n, "%s%s%s", env ? env : "", sep ? ":" : "", own);
    return len < 0 ? 0 : (size_t)len;
}

const char *tern_install_default_model(void)
{
    pthread_once(&once, find_tree);
    struct stat st;
    return model_path[0] && stat(model_path, &st) == 0 && S_ISREG(st.st_mode) ? model_path : NULL;
}
