/* memory.c - device buffers and the run lock.
 *
 * A buffer handle is an ocl_buf (its cl_mem and size). Transfers are
 * blocking and go through the one in-order queue after whatever the
 * calling thread has queued, so they see (and never overtake) its work.
 *
 * The run lock: the executor calls a device backend node by node and
 * syncs at the end of each run. Two sessions on one model may do so from
 * two threads; the first op of a run takes the lock and sync releases it,
 * so runs of different threads never interleave in the queue. */
#include <stdio.h>

#include "opencl.h"

int ocl_run_owned(ocl_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    int own = c->run_busy && pthread_equal(c->run_owner, pthread_self());
    pthread_mutex_unlock(&c->mu);
    return own;
}

void ocl_run_lock(ocl_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    if (!(c->run_busy && pthread_equal(c->run_owner, pthread_self()))) {
        while (c->run_busy) pthread_cond_wait(&c->cv, &c->mu);
        c->run_busy = 1;
        c->run_owner = pthread_self();
    }
    pthread_mutex_unlock(&c->mu);
}

void ocl_run_unlock(ocl_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    c->run_busy = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void *ocl_buffer_alloc(void *ctx, size_t size)
{
    ocl_ctx *c = ctx;
    if (size == 0) size = 64;
    if (size > c->max_alloc) {
        c->host->log(TERN_LOG_WARN, "opencl: %zu bytes exceed the device's largest allocation (%llu)", size,
                     (unsigned long long)c->max_alloc);
        return NULL;
    }
    ocl_buf *b = c->host->alloc(sizeof *b, 64);
    if (!b) return NULL;
    cl_int e;
    b->mem = clCreateBuffer(c->context, CL_MEM_READ_WRITE, size, NULL, &e);
    if (e != CL_SUCCESS) {
        c->host->log(TERN_LOG_WARN, "opencl: clCreateBuffer(%zu): %s", size, ocl_error_name(e));
        c->host->free(b);
        return NULL;
    }
    b->size = size;
    return b;
}

void ocl_buffer_free(void *ctx, void *buffer)
{
    ocl_ctx *c = ctx;
    ocl_buf *b = buffer;
    if (!b) return;
    clReleaseMemObject(b->mem); /* the driver frees it once queued work is done */
    c->host->free(b);
}

static tern_status transfer(ocl_ctx *c, const ocl_buf *b, size_t off, void *host, size_t n, int up)
{
    if (!b || off > b->size || n > b->size - off) return TERN_EINVAL;
    if (!n) return TERN_OK;
    int owned = ocl_run_owned(c);
    if (!owned) ocl_run_lock(c);
    else ocl_flush(c); /* queued nodes first: the transfer follows them */
    cl_int e = up ? clEnqueueWriteBuffer(c->queue, b->mem, CL_TRUE, off, n, host, 0, NULL, NULL)
                  : clEnqueueReadBuffer(c->queue, b->mem, CL_TRUE, off, n, host, 0, NULL, NULL);
    if (!owned) ocl_run_unlock(c);
    if (e != CL_SUCCESS) {
        c->host->log(TERN_LOG_WARN, "opencl: %s of %zu bytes: %s", up ? "upload" : "download", n,
                     ocl_error_name(e));
        return TERN_EDEVICE;
    }
    return TERN_OK;
}

tern_status ocl_buffer_upload(void *ctx, void *buffer, size_t offset, const void *src, size_t n)
{
    return transfer(ctx, buffer, offset, (void *)src, n, 1);
}

tern_status ocl_buffer_download(void *ctx, const void *buffer, size_t offset, void *dst, size_t n)
{
    return transfer(ctx, buffer, offset, dst, n, 0);
}

cl_int ocl_scratch(ocl_ctx *c, cl_mem *mem, size_t *have, size_t size)
{
    if (*mem && *have >= size) return CL_SUCCESS;
    size_t want = size < 4096 ? 4096 : size + size / 4;
    if (want > c->max_alloc) want = size;
    cl_int e;
    cl_mem m = clCreateBuffer(c->context, CL_MEM_READ_WRITE, want, NULL, &e);
    if (e != CL_SUCCESS) return e;
    if (*mem) clReleaseMemObject(*mem); /* released after the queued work using it */
    *mem = m;
    *have = want;
    return CL_SUCCESS;
}
