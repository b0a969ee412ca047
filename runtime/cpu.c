/* cpu.c - what this CPU can do: cpuid on x86, HWCAP on ARM. Backends get the
 * result through the host table and decide from it in probe(). */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "tern/backend.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static uint64_t detect(void)
{
    unsigned a, b, c, d;
    uint64_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (c & bit_SSE4_2) f |= TERN_CPU_SSE42;
    int osxsave = (c & bit_OSXSAVE) != 0;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_ok = (xcr0 & 0x6) == 0x6, zmm_ok = (xcr0 & 0xe6) == 0xe6;
    if (ymm_ok && (c & bit_AVX)) f |= TERN_CPU_AVX;
    if (ymm_ok && (c & bit_FMA)) f |= TERN_CPU_FMA;
    if (ymm_ok && (c & bit_F16C)) f |= TERN_CPU_F16C;
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    if (ymm_ok && (b & bit_AVX2)) f |= TERN_CPU_AVX2;
    if (zmm_ok) {
        if (b & bit_AVX512F) f |= TERN_CPU_AVX512F;
        if (b & bit_AVX512BW) f |= TERN_CPU_AVX512BW;
        if (b & bit_AVX512VL) f |= TERN_CPU_AVX512VL;
        if (c & bit_AVX512VBMI) f |= TERN_CPU_AVX512VBMI;
        if (c & bit_AVX512VNNI) f |= TERN_CPU_AVX512VNNI;
        if (c & bit_AVX512VPOPCNTDQ) f |= TERN_CPU_AVX512VPOPCNTDQ;
    }
    __cpuid_count(7, 1, a, b, c, d);
    if (ymm_ok && (a & (1u << 4))) f |= TERN_CPU_AVX_VNNI;
    if (zmm_ok && (a & (1u << 5))) f |= TERN_CPU_AVX512BF16;
    return f;
}
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1 << 10)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP_SVE
#define HWCAP_SVE (1 << 22)
#endif
#ifndef HWCAP2_SVE2
#define HWCAP2_SVE2 (1 << 1)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
static uint64_t detect(void)
{
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    uint64_t f = TERN_CPU_NEON;
    if (hw & HWCAP_ASIMDDP) f |= TERN_CPU_DOTPROD;
    if (hw & HWCAP_ASIMDHP) f |= TERN_CPU_FP16;
    if (hw & HWCAP_SVE) f |= TERN_CPU_SVE;
    if (hw2 & HWCAP2_SVE2) f |= TERN_CPU_SVE2;
    if (hw2 & HWCAP2_I8MM) f |= TERN_CPU_I8MM;
    return f;
}
#else
static uint64_t detect(void) { return 0; }
#endif

static uint64_t cached_features;
static void detect_once(void) { cached_features = detect(); }

/* Detected once per process, whichever thread asks first. */
uint64_t tern_cpu_features(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, detect_once);
    return cached_features;
}

static const struct {
    uint64_t bit;
    const char *name;
} feature_names[] = {
    {TERN_CPU_SSE42, "sse4.2"},       {TERN_CPU_AVX, "avx"},
    {TERN_CPU_AVX2, "avx2"},          {TERN_CPU_FMA, "fma"},
    {TERN_CPU_F16C, "f16c"},          {TERN_CPU_AVX_VNNI, "avx-vnni"},
    {TERN_CPU_AVX512F, "avx512f"},    {TERN_CPU_AVX512BW, "avx512bw"},
    {TERN_CPU_AVX512VL, "avx512vl"},  {TERN_CPU_AVX512VNNI, "avx512vnni"},
    {TERN_CPU_AVX512VBMI, "avx512vbmi"}, {TERN_CPU_AVX512VPOPCNTDQ, "avx512vpopcntdq"},
    {TERN_CPU_AVX512BF16, "avx512bf16"}, {TERN_CPU_NEON, "neon"},
    {TERN_CPU_DOTPROD, "dotprod"},    {TERN_CPU_I8MM, "i8mm"},
    {TERN_CPU_SVE, "sve"},            {TERN_CPU_SVE2, "sve2"},
    {TERN_CPU_FP16, "fp16"},
};

void tern_cpu_features_string(uint64_t features, char *buf, size_t n)
{
    size_t used = 0;
    if (n == 0) return;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++) {
        if (!(features & feature_names[i].bit)) continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? " " : "", feature_names[i].name);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
    if (!used) snprintf(buf, n, "(none)");
}

/* Physical cores this process may run on: the CPUs of its affinity mask
 * counted once per (package, core) pair, so SMT siblings count once (as
 * llama.cpp's default). Without sysfs topology, the CPUs of the mask. */
static int physical_cores, logical_cpus;
static void count_cores(void)
{
    cpu_set_t set;
    int n_cpus = 0, n_cores = 0;
    long seen[1024][2];
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        physical_cores = logical_cpus = 1;
        return;
    }
    for (int cpu = 0; cpu < CPU_SETSIZE && n_cores < 1024; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        n_cpus++;
        long id[2] = {-1, -1};
        static const char *const files[2] = {"physical_package_id", "core_id"};
        for (int f = 0; f < 2; f++) {
            char path[128];
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/%s", cpu, files[f]);
            FILE *fp = fopen(path, "r");
            if (fp) {
                if (fscanf(fp, "%ld", &id[f]) != 1) id[f] = -1;
                fclose(fp);
            }
        }
        int dup = 0;
        for (int i = 0; i < n_cores && !dup; i++) dup = id[1] >= 0 && seen[i][0] == id[0] && seen[i][1] == id[1];
        if (!dup) {
            seen[n_cores][0] = id[0];
            seen[n_cores][1] = id[1];
            n_cores++;
        }
    }
    physical_cores = n_cores > 0 ? n_cores : n_cpus > 0 ? n_cpus : 1;
    logical_cpus = n_cpus > 0 ? n_cpus : 1;
}

static pthread_once_t cores_once = PTHREAD_ONCE_INIT;

int tern_cpu_physical_cores(void)
{
    pthread_once(&cores_once, count_cores);
    return physical_cores;
}

int tern_cpu_logical_cpus(void)
{
    pthread_once(&cores_once, count_cores);
    return logical_cpus;
}
