/* serve_util.h - starting `tern serve` on a free loopback port and talking
 * to it with curl, for the serve suite's tests. */
#ifndef TERN_SERVE_UTIL_H
#define TERN_SERVE_UTIL_H

#include <sys/types.h>

typedef struct srv {
    pid_t pid;
    int port;
    char dir[256];  /* a fresh folder: the log, bodies, scripts */
    char log[300];
} srv;

/* Starts `tern serve --port 0 ARGS` and waits until it is ready (fails the
 * test after 60 s). */
void srv_start(srv *s, const char *args);
/* SIGTERM, then the exit status (fails the test on a signal or timeout). */
int srv_stop(srv *s);
/* Removes the folder. */
void srv_clean(srv *s);
/* Starts a shell command in the background; its process id. */
pid_t sh_bg(const char *cmd);
/* Runs `curl -s ... URL` (extra: more curl arguments, shell-quoted by the
 * caller), returns the HTTP status; *body gets the response (malloc'ed,
 * NUL-terminated; the caller frees), *headers the response headers when
 * not NULL. */
int srv_curl(const srv *s, const char *extra, const char *path, char **body, char **headers);
/* POSTs json to path (key: the Bearer key, or NULL). */
int srv_post(const srv *s, const char *path, const char *json, const char *key, char **body);
/* Runs a shell command, returns its standard output (malloc'ed). */
char *sh_out(const char *cmd);

#endif
