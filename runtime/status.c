/* status.c - status names and the error record helpers. */
#include <stdio.h>
#include <string.h>

#include "tern/status.h"

static const char *const status_names[TERN_STATUS_COUNT] = {
    [TERN_OK] = "OK",
    [TERN_EINVAL] = "EINVAL",
    [TERN_ENOMEM] = "ENOMEM",
    [TERN_EIO] = "EIO",
    [TERN_EFORMAT] = "EFORMAT",
    [TERN_EUNSUPPORTED] = "EUNSUPPORTED",
    [TERN_ENOTFOUND] = "ENOTFOUND",
    [TERN_EABI] = "EABI",
    [TERN_ECONTEXT] = "ECONTEXT",
    [TERN_ESCRIPT] = "ESCRIPT",
    [TERN_ECANCELED] = "ECANCELED",
    [TERN_ECANNOTRUN] = "ECANNOTRUN",
    [TERN_EDEVICE] = "EDEVICE",
};

const char *tern_status_name(tern_status st)
{
    if ((unsigned)st >= TERN_STATUS_COUNT) return "E?";
    return status_names[st];
}

tern_status tern_error_setv(tern_error *err, tern_status st, const char *fmt, va_list ap)
{
    if (err) {
        err->status = st;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        /* One line: a message never carries a newline from file contents. */
        for (char *p = err->msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return st;
}

tern_status tern_error_set(tern_error *err, tern_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tern_error_setv(err, st, fmt, ap);
    va_end(ap);
    return st;
}

tern_status tern_error_prefix(tern_error *err, const char *fmt, ...)
{
    if (!err) return TERN_OK;
    char prefix[TERN_ERROR_MSG_MAX], old[TERN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return err->status;
}
