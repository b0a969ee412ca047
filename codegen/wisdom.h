/* codegen/wisdom.h - tuning records ("wisdom", as FFTW calls them): what
 * `tern tune` writes to $XDG_CACHE_HOME/tern/wisdom.lua and the CPU
 * backends read at init (kplug.c). Compiled into the tern command and the
 * x86 and arm backends (not part of libtern's API).
 *
 * A record is a Lua chunk returning a table:
 *   return {
 *     signature = { tern = "0.1.0", kernels_abi = 1, cpu = "AMD EPYC 9R14 96-Core Processor",
 *                   features = "0x1fdf", compiler = "12.2.0" },
 *     plugin = "tern-kernels-tuned.so", threads = 2,
 *     shapes = { { K = 2560, N = 2560, gemv = "tuned.mad.v2p4096", gemm = "tuned.mad.m4x4",
 *                  why = "..." }, ... },
 *   }
 * It is read in a sandboxed state (no libraries at all, text chunks only,
 * 1 MiB of memory, an instruction budget), every field type- and
 * range-checked; import is all-or-nothing. */
#ifndef TERN_WISDOM_H
#define TERN_WISDOM_H

#include <stddef.h>
#include <stdint.h>

#define TW_MAX_SHAPES 64
#define TW_NAME 96

typedef struct tw_shape {
    int64_t K, N;
    char gemv[TW_NAME], gemm[TW_NAME];
    char why[160];
} tw_shape;

typedef struct tw_record {
    char tern[32];      /* TERN_VERSION that tuned */
    unsigned kernels_abi;
    char cpu[128];      /* CPU model (cpuid brand string) */
    char features[32];  /* TERN_CPU_* bits, "0x..." */
    char compiler[128]; /* __VERSION__ of the compiler that built the plugin */
    char plugin[128];   /* file name in the cache folder, no '/' */
    int threads;
    int n_shapes;
    tw_shape shapes[TW_MAX_SHAPES];
} tw_record;

/* This machine's CPU model and feature string, as a signature holds them. */
void tw_cpu_signature(uint64_t cpu_features, char *cpu, size_t cpu_len, char *feat, size_t feat_len);

/* Reads path into *r: 0 on success, else -1 with a one-line reason. */
int tw_read(const char *path, tw_record *r, char *err, size_t errlen);

/* 0 when r's signature matches this build and machine (compiler is checked
 * by the caller against the plugin it loads), else -1 and why. */
int tw_check(const tw_record *r, const char *tern_version, unsigned kernels_abi, uint64_t cpu_features,
             char *err, size_t errlen);

/* Writes r to path (through a temporary file and rename): 0 or -1. */
int tw_write(const char *path, const tw_record *r, char *err, size_t errlen);

#endif
