-- plugins/avx2.lua - any x86-64 with AVX2/FMA/F16C (Haswell and later, Zen 1-3):
-- the 2-bit MAD layout with vpmaddubsw + vpmaddwd on 8-row ymm halves.
-- Choices untuned (no such CPU here): the measure grid is built and
-- tested, so `tern tune` on such a machine picks among real variants.
return {
    target = "avx2",
    isa = "avx2",
    grid = "measure",
    variants = {
        { family = "mad", tiles = 1, tokens = 1, prefetch = 2048 },
        { family = "mad", tiles = 2, tokens = 4, prefetch = 0 },
    },
    choices = {
        { K = 2560, N = 2560, gemv = "avx2.mad.v1p2048", gemm = "avx2.mad.m2x4" },
        { K = 2560, N = 640, gemv = "avx2.mad.v1p2048", gemm = "avx2.mad.m2x4" },
        { K = 2560, N = 6912, gemv = "avx2.mad.v1p2048", gemm = "avx2.mad.m2x4" },
        { K = 6912, N = 2560, gemv = "avx2.mad.v1p2048", gemm = "avx2.mad.m2x4" },
    },
}
