/* device_at.h - the probes' device pick: the want-th device over all
 * platforms, numbered as tern info numbers them (NULL: none). */
#ifndef TERN_TESTS_OPENCL_DEVICE_AT_H
#define TERN_TESTS_OPENCL_DEVICE_AT_H

#include <CL/cl.h>

static cl_device_id device_at(int want)
{
    cl_platform_id plats[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, plats, &np) != CL_SUCCESS) return NULL;
    int idx = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id devs[16];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, devs, &nd) != CL_SUCCESS) continue;
        for (cl_uint d = 0; d < nd; d++, idx++)
            if (idx == want) return devs[d];
    }
    return NULL;
}

#endif
