/* serve_util.c - see serve_util.h. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/testutil.h"
#include "serve/serve_util.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *sh_out(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (size_t r; (r = fread(b + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (cap - n < 2) b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    pclose(f);
    return b;
}

void srv_start(srv *s, const char *args)
{
    static int counter;
    snprintf(s->dir, sizeof s->dir, "/tmp/tern-serve-test-%d-%d", (int)getpid(), counter++);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", s->dir, s->dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(s->log, sizeof s->log, "%s/log", s->dir);
    snprintf(cmd, sizeof cmd, "exec %s/bin/tern serve --port 0 %s", tu_build_dir(), args);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    s->port = 0;
    for (int i = 0; i < 600; i++) {
        size_t n;
        char *log = tu_read_file(s->log, &n);
        const char *p = log ? strstr(log, "listening on http://") : NULL;
        if (p && strstr(log, "ready:")) {
            p = strchr(p + strlen("listening on http://"), ':');
            s->port = p ? atoi(p + 1) : 0;
        }
        int done = log && (strstr(log, "ready:") || waitpid(s->pid, NULL, WNOHANG) == s->pid);
        if (done && !s->port) ck_abort_msg("tern serve %s did not start: %s", args, log ? log : "");
        free(log);
        if (s->port) return;
        sleep_ms(100);
    }
    kill(s->pid, SIGKILL);
    ck_abort_msg("tern serve %s: not ready after 60 s", args);
}

int srv_stop(srv *s)
{
    kill(s->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 600; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            ck_assert_msg(WIFEXITED(status), "tern serve ended by signal %d", WTERMSIG(status));
            return WEXITSTATUS(status);
        }
        sleep_ms(100);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    ck_abort_msg("tern serve did not exit within 60 s of SIGTERM");
    return -1;
}

int srv_curl(const srv *s, const char *extra, const char *path, char **body, char **headers)
{
    static int counter;
    char bfile[400], hfile[400];
    int k = counter++;
    snprintf(bfile, sizeof bfile, "%s/body-%d", s->dir, k);
    snprintf(hfile, sizeof hfile, "%s/headers-%d", s->dir, k);
    size_t len = strlen(extra) + 1024;
    char *cmd = malloc(len);
    snprintf(cmd, len, "curl -s -o %s -D %s -w '%%{http_code}' %s 'http://127.0.0.1:%d%s'", bfile, hfile, extra,
             s->port, path);
    char *code = sh_out(cmd);
    free(cmd);
    int status = atoi(code);
    free(code);
    size_t n;
    char *b = tu_read_file(bfile, &n);
    if (body) *body = b ? b : strdup("");
    else free(b);
    char *h = tu_read_file(hfile, &n);
    if (headers) *headers = h ? h : strdup("");
    else free(h);
    return status;
}

int srv_post(const srv *s, const char *path, const char *json, const char *key, char **body)
{
    static int counter;
    char file[400], extra[1200];
    snprintf(file, sizeof file, "%s/req-%d.json", s->dir, counter++);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(json, f);
    fclose(f);
    snprintf(extra, sizeof extra, "-H 'Content-Type: application/json' --data-binary @%s %s%s%s", file,
             key ? "-H 'Authorization: Bearer " : "", key ? key : "", key ? "'" : "");
    return srv_curl(s, extra, path, body, NULL);
}

void srv_clean(srv *s)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    if (system(cmd)) { /* a leftover folder in /tmp is no failure */ }
}

pid_t sh_bg(const char *cmd)
{
    size_t n = strlen(cmd) + 96;
    char *full = malloc(n);
    snprintf(full, n, "%s >/dev/null 2>&1 </dev/null & echo $!", cmd); /* its output off the pipe, or popen waits */
    char *out = sh_out(full);
    free(full);
    pid_t pid = (pid_t)atoi(out);
    free(out);
    ck_assert_int_gt(pid, 0);
    return pid;
}
