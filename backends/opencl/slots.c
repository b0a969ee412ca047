/* slots.c - a kernel object per launch slot, so a run sets only the
 * arguments that changed since the same launch of the run before.
 *
 * A decode step is bound by the host, not the device: sync() enqueues
 * some 180 launches of 20-70 arguments each, and on NVIDIA every
 * clSetKernelArg costs about as much as the device spends on a small
 * launch. The runs of one shape class launch the same kernels with the
 * same buffers and offsets in the same order, so launch n of a run
 * (its slot) keeps its own cl_kernel and the values it last set: an
 * argument is set again only when it differs (a tail's counter index,
 * a fresh buffer). Two kernels a slot (least recently used goes), so
 * prefill and decode runs alternating keep theirs. Slots past
 * OCL_SLOTS use the shared kernel objects, setting every argument. */
#include <string.h>

#include "opencl.h"

/* The slot of the run's next launch, with a kernel object for `kind`
 * (created when the slot has none); NULL past OCL_SLOTS or when the
 * object cannot be made (the caller then uses c->kernels[kind]). */
ocl_slot_way *ocl_slot_next(ocl_ctx *c, int kind)
{
    int n = c->slot_next++;
    if (n >= OCL_SLOTS || c->no_slots) return NULL;
    if (n >= c->n_slots) {
        int cap = c->n_slots ? 2 * c->n_slots : 256;
        if (cap > OCL_SLOTS) cap = OCL_SLOTS;
        ocl_slot *ns = c->host->alloc((size_t)cap * sizeof *ns, 64);
        if (!ns) return NULL;
        if (c->n_slots) memcpy(ns, c->slots, (size_t)c->n_slots * sizeof *ns);
        memset(ns + c->n_slots, 0, (size_t)(cap - c->n_slots) * sizeof *ns);
        c->host->free(c->slots);
        c->slots = ns;
        c->n_slots = cap;
    }
    ocl_slot *s = &c->slots[n];
    for (int w = 0; w < 2; w++)
        if (s->way[w].k && s->way[w].kind == kind) {
            s->recent = w;
            return &s->way[w];
        }
    int w = s->way[0].k && (!s->way[1].k || s->recent == 0); /* an empty way, else the older one */
    ocl_slot_way *way = &s->way[w];
    if (way->k) clReleaseKernel(way->k);
    memset(way, 0, sizeof *way);
    cl_int e;
    way->k = clCreateKernel(c->program, ocl_kernel_names[kind], &e);
    if (e != CL_SUCCESS) {
        way->k = NULL;
        return NULL;
    }
    way->kind = kind;
    s->recent = w;
    return way;
}

/* Sets argument i of the slot's kernel to the n bytes at v unless it holds
 * them already. */
cl_int ocl_slot_arg(ocl_ctx *c, ocl_slot_way *way, cl_uint i, size_t n, const void *v)
{
    uint64_t val = 0;
    int known = i < OCL_SLOT_ARGS && n <= sizeof val;
    if (known) memcpy(&val, v, n);
    if (known && way->size[i] == n && way->val[i] == val) {
        c->args_kept++;
        return CL_SUCCESS;
    }
    cl_int e = clSetKernelArg(way->k, i, n, v);
    c->args_set++;
    if (known) {
        way->size[i] = e == CL_SUCCESS ? (uint8_t)n : 0;
        way->val[i] = val;
    }
    return e;
}

void ocl_slots_free(ocl_ctx *c)
{
    for (int n = 0; n < c->n_slots; n++)
        for (int w = 0; w < 2; w++)
            if (c->slots[n].way[w].k) clReleaseKernel(c->slots[n].way[w].k);
    c->host->free(c->slots);
    c->slots = NULL;
    c->n_slots = 0;
}
