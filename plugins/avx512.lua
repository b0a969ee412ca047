-- plugins/avx512.lua - a generic AVX-512 CPU with VNNI and VBMI (Ice Lake,
-- Sapphire Rapids; full-width 512-bit units): fewer variants than zen4's
-- record, the same families. Choices untuned here (Zen 4 is the only
-- AVX-512 machine this was measured on): `tern tune` replaces them.
return {
    target = "avx512",
    isa = "avx512",
    variants = {
        { family = "mad", tiles = 2, tokens = 1, prefetch = 2048 },
        { family = "mad", tiles = 4, tokens = 6, prefetch = 0 },
        { family = "dense5", tiles = 2, tokens = 1, prefetch = 2048 },
    },
    choices = {
        { K = 2560, N = 2560, gemv = "avx512.mad.v2p2048", gemm = "avx512.mad.m4x6" },
        { K = 2560, N = 640, gemv = "avx512.mad.v2p2048", gemm = "avx512.mad.m4x6" },
        { K = 2560, N = 6912, gemv = "avx512.mad.v2p2048", gemm = "avx512.mad.m4x6" },
        { K = 6912, N = 2560, gemv = "avx512.mad.v2p2048", gemm = "avx512.mad.m4x6" },
    },
}
