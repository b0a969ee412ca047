/* cl_bandwidth.c - device memory bandwidth of an OpenCL device, the
 * denominator of the decode roofline (run by hand, never by scons test):
 *   cl_bandwidth [device index] [MiB]
 * Times clEnqueueCopyBuffer of MiB (default 1024) between two buffers with
 * profiling events, best of 10, and prints bytes read + written per
 * second; also a read-only kernel (a sum over the buffer), which is what a
 * GEMV does. Devices are numbered as tern info numbers them. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>

#include "device_at.h"

static const char *src =
    "kernel void rd(global const uint4 *p, ulong n, global uint *out) {\n"
    "  uint4 s = 0; for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) s ^= p[i];\n"
    "  if ((s.x ^ s.y ^ s.z ^ s.w) == 0x12345678u) out[0] = 1; }\n";

static double event_seconds(cl_event e)
{
    cl_ulong t0 = 0, t1 = 0;
    clWaitForEvents(1, &e);
    clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(e);
    return 1e-9 * (double)(t1 - t0);
}

int main(int argc, char **argv)
{
    int want = argc > 1 ? atoi(argv[1]) : 0;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024, bytes = mib << 20;
    cl_device_id dev = device_at(want);
    if (!dev) {
        fprintf(stderr, "cl_bandwidth: no device %d\n", want);
        return 1;
    }
    char name[256] = "";
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
    cl_int e;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
    cl_command_queue q = clCreateCommandQueue(ctx, dev, CL_QUEUE_PROFILING_ENABLE, &e);
    cl_mem a = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
    cl_mem b = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
    cl_mem o = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 64, NULL, &e);
    if (e != CL_SUCCESS) {
        fprintf(stderr, "cl_bandwidth: allocating 2 x %zu MiB failed (%d)\n", mib, e);
        return 1;
    }
    cl_uint zero = 0x01010101u;
    clEnqueueFillBuffer(q, a, &zero, 4, 0, bytes, 0, NULL, NULL);
    clEnqueueFillBuffer(q, b, &zero, 4, 0, bytes, 0, NULL, NULL);
    clFinish(q);
    double best_copy = 1e30, best_read = 1e30;
    for (int i = 0; i < 10; i++) {
        cl_event ev;
        clEnqueueCopyBuffer(q, a, b, 0, 0, bytes, 0, NULL, &ev);
        double s = event_seconds(ev);
        if (s < best_copy) best_copy = s;
    }
    cl_program prog = clCreateProgramWithSource(ctx, 1, &src, NULL, &e);
    if (clBuildProgram(prog, 1, &dev, "", NULL, NULL) == CL_SUCCESS) {
        cl_kernel k = clCreateKernel(prog, "rd", &e);
        cl_ulong n = bytes / 16;
        clSetKernelArg(k, 0, sizeof a, &a);
        clSetKernelArg(k, 1, sizeof n, &n);
        clSetKernelArg(k, 2, sizeof o, &o);
        cl_uint units = 1;
        clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
        size_t gws = (size_t)units * 2048, lws = 256;
        for (int i = 0; i < 10; i++) {
            cl_event ev;
            if (clEnqueueNDRangeKernel(q, k, 1, NULL, &gws, &lws, 0, NULL, &ev) != CL_SUCCESS) break;
            double s = event_seconds(ev);
            if (s < best_read) best_read = s;
        }
        clReleaseKernel(k);
    }
    printf("%s: copy %.1f GB/s (read + write of %zu MiB), read-only kernel %.1f GB/s\n", name,
           2.0 * (double)bytes / best_copy / 1e9, mib, best_read < 1e30 ? (double)bytes / best_read / 1e9 : 0.0);
    clReleaseProgram(prog);
    clReleaseMemObject(a), clReleaseMemObject(b), clReleaseMemObject(o);
    clReleaseCommandQueue(q);
    clReleaseContext(ctx);
    return 0;
}
