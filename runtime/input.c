/* input.c - files named by users (tern/io.h): whole inputs read with a cap,
 * outputs checked before they are created or replaced. Owns the short-read
 * fault injection of fault.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "tern/io.h"

static atomic_size_t read_max;

void tern_fault_read_max(size_t max) { atomic_store(&read_max, max); }

static ssize_t read_some(int fd, char *buf, size_t n)
{
    size_t max = atomic_load_explicit(&read_max, memory_order_relaxed);
    return read(fd, buf, max && n > max ? max : n);
}

/* "64 MiB" for a cap in whole MiB, else bytes. */
static const char *cap_text(size_t cap, char *buf, size_t n)
{
    if (cap >= (1u << 20) && cap % (1u << 20) == 0) snprintf(buf, n, "%zu MiB", cap >> 20);
    else snprintf(buf, n, "%zu bytes", cap);
    return buf;
}

/* Reads fd to its end into a buffer grown by doubling, at most cap bytes. */
static tern_status read_fd(int fd, const char *name, size_t cap, char **out, size_t *len, tern_error *err)
{
    size_t size = 0, alloc = 4096;
    char *buf = malloc(alloc);
    if (!buf) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", name);
    for (;;) {
        if (size + 1 == alloc) { /* room for one byte past the cap proves it too long */
            size_t grow = alloc > cap / 2 ? cap + 2 : alloc * 2;
            char *nb = grow > alloc ? realloc(buf, grow) : NULL;
            if (!nb) {
                free(buf);
                return tern_error_set(err, TERN_ENOMEM, "%s: out of memory after %zu bytes", name, size);
            }
            buf = nb;
            alloc = grow;
        }
        ssize_t got = read_some(fd, buf + size, alloc - 1 - size);
        if (got < 0 && errno == EINTR) {
            free(buf);
            return tern_error_set(err, TERN_ECANCELED, "%s: interrupted while reading", name);
        }
        if (got < 0) {
            int e = errno;
            free(buf);
            return tern_error_set(err, TERN_EIO, "%s: read failed: %s", name, strerror(e));
        }
        if (got == 0) break;
        size += (size_t)got;
        if (size > cap) {
            char c[32];
            free(buf);
            return tern_error_set(err, TERN_EINVAL, "%s: longer than %s, the input limit", name,
                                  cap_text(cap, c, sizeof c));
        }
    }
    buf[size] = 0;
    *out = buf;
    *len = size;
    return TERN_OK;
}

tern_status tern_io_read(const char *path, size_t cap, char **out, size_t *len, tern_error *err)
{
    *out = NULL;
    *len = 0;
    if (cap > SIZE_MAX / 4) cap = SIZE_MAX / 4;
    if (strcmp(path, "-") == 0) return read_fd(0, "standard input", cap, out, len, err);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; the type is
     * checked on the open file, so nothing else is read from */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return tern_error_set(err, TERN_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tern_error_set(err, TERN_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return tern_error_set(err, TERN_EINVAL, "%s: %s", path,
                              S_ISDIR(sb.st_mode) ? "is a folder, not a file"
                                                  : "not a regular file (inputs are files, or '-' for standard input)");
    }
    char c[32];
    if ((uint64_t)sb.st_size > cap) {
        close(fd);
        return tern_error_set(err, TERN_EINVAL, "%s: %lld bytes, more than %s, the input limit", path,
                              (long long)sb.st_size, cap_text(cap, c, sizeof c));
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    tern_status st = read_fd(fd, path, cap, out, len, err);
    close(fd);
    return st;
}

tern_status tern_io_output_path(const char *path, char *out, size_t n, tern_error *err)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno != ENOENT) return tern_error_set(err, TERN_EIO, "%s: %s", path, strerror(errno));
        if ((size_t)snprintf(out, n, "%s", path) >= n) return tern_error_set(err, TERN_EINVAL, "%s: path too long", path);
        return TERN_OK; /* a new file */
    }
    if (S_ISLNK(sb.st_mode)) {
        char real[PATH_MAX];
        if (!realpath(path, real) || stat(real, &sb) != 0)
            return tern_error_set(err, TERN_EINVAL, "%s: a symbolic link to nothing; refusing to replace it", path);
        if ((size_t)snprintf(out, n, "%s", real) >= n) return tern_error_set(err, TERN_EINVAL, "%s: path too long", path);
    } else if ((size_t)snprintf(out, n, "%s", path) >= n) {
        return tern_error_set(err, TERN_EINVAL, "%s: path too long", path);
    }
    if (!S_ISREG(sb.st_mode))
        return tern_error_set(err, TERN_EINVAL, "%s: %s; refusing to replace it with a file", path,
                              S_ISDIR(sb.st_mode) ? "is a folder" : "exists and is not a regular file");
    return TERN_OK;
}

tern_status tern_io_create(const char *path, int *fd, tern_error *err)
{
    char real[PATH_MAX];
    *fd = -1;
    tern_status st = tern_io_output_path(path, real, sizeof real, err);
    if (st) return st;
    int f = open(real, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0644);
    if (f < 0) return tern_error_set(err, TERN_EIO, "%s: cannot create: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0 || !S_ISREG(sb.st_mode)) { /* replaced since the check */
        close(f);
        return tern_error_set(err, TERN_EINVAL, "%s: not a regular file; refusing to write to it", path);
    }
    fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK);
    *fd = f;
    return TERN_OK;
}
