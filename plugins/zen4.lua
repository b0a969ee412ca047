-- plugins/zen4.lua - AMD Zen 4 (AVX-512 F/BW/VL/VNNI/VBMI/VPOPCNTDQ, 512-bit
-- ops double-pumped on 256-bit units): the kernel record SCons turns into
-- build/lib/tern-kernels-zen4.so through codegen/gen.lua. Per-shape choices
-- for the BitNet b1.58 2B4T shapes (K x N) come from `tern tune` on this
-- machine (2 threads). `grid` adds the whole tuning
-- grid of the isa so tests check every variant of it.
return {
    target = "zen4",
    isa = "avx512",
    cpu = "AMD",
    grid = "measure",
    variants = {
        { family = "mad", tiles = 2, tokens = 1, prefetch = 4096 },
        { family = "mad", tiles = 4, tokens = 4, prefetch = 0 },
        { family = "dense5", tiles = 2, tokens = 1, prefetch = 4096 },
        { family = "dense5", tiles = 4, tokens = 4, prefetch = 0 },
    },
    -- from `tern tune -m 2b4t-i2s.gguf -t 2 --patience measure` (Zen 4, 2 threads,
    -- ranked by the minimum of 7 cache-cold interleaved reps of one token, 4
    -- tokens and 128 tokens; three runs, 2026-11-27: the MAD layout won every
    -- shape, its m4x4 GEMM 1.0-1.17x the built-in at 4 tokens and 1.2x at 128,
    -- where dense5's GEMMs cost 1.1-1.3x MAD's at 4 tokens)
    choices = {
        { K = 2560, N = 2560, gemv = "zen4.mad.v1p0", gemm = "zen4.mad.m4x4" },
        { K = 2560, N = 640, gemv = "zen4.mad.v1p2048", gemm = "zen4.mad.m4x4" },
        { K = 2560, N = 6912, gemv = "zen4.mad.v1p2048", gemm = "zen4.mad.m4x4" },
        { K = 6912, N = 2560, gemv = "zen4.mad.v1p0", gemm = "zen4.mad.m4x4" },
    },
}
