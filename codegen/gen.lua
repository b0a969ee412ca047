-- codegen/gen.lua - the kernel generator: a target record (plugins/*.lua,
-- or one `tern tune` writes) in, one C file of ternary matmul kernels out,
-- with the registry table that tern-kernels-<target>.so exports
-- (runtime/include/tern/kernels.h).
--
--   lua5.4 codegen/gen.lua RECORD.lua OUT.c
--
-- A record is a Lua chunk returning
--   { target = "zen4", isa = "avx512",
--     variants = { {family = "mad", tiles = 2, tokens = 1, prefetch = 4096}, ... },
--     choices = { {K = 2560, N = 2560, gemv = "zen4.mad.v2p4096", gemm = "zen4.mad.m4x6"}, ... } }
-- Families (each a 16-row tile, int32 accumulation, bit-exact against
-- scalar by construction: exact integer dot, then (float)acc / inv * scale):
--   mad     2-bit layout (TERN_KLAYOUT_MAD2): tiles = 16-row tiles per step,
--           tokens = 1 (GEMV: fields masked in place, 4 accumulators) or
--           T > 1 (GEMM: tiles x T accumulators), prefetch = bytes ahead.
--   dense5  1.6-bit layout (TERN_KLAYOUT_DENSE5): 5 trits a byte, decoded
--           by two vpermi2b table lookups per 64 bytes into a MAD byte
--           (4 trits in 2-bit fields) plus the fifth trit.
--   lut2, lut3, lut4  T-MAC-style lookup tables (TERN_KLAYOUT_LUT2/3/4):
--           weights as indices of g = 2/3/4 trits (one base-3 code per
--           group), per token and group a table of the 3^g partial sums,
--           looked up with vpermb / vpermt2b. See lut_tables() for the
--           layouts and why the sums are split in bytes.
-- The same record always gives the same bytes: nothing here reads the
-- clock, the environment or the host.
local M = {}

M.FEATURES = { avx2 = 1 << 2, fma = 1 << 3, f16c = 1 << 4, avx512f = 1 << 6, avx512bw = 1 << 7,
               avx512vl = 1 << 8, avx512vnni = 1 << 9, avx512vbmi = 1 << 10, neon = 1 << 16,
               dotprod = 1 << 17, sve2 = 1 << 20 }
-- What each ISA's kernels need, and the flags that compile them.
M.ISA = {
    avx512 = { features = { "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512vbmi" },
               cflags = "-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi",
               families = { mad = true, dense5 = true, lut2 = true, lut3 = true, lut4 = true } },
    avx2 = { features = { "avx2", "fma", "f16c" }, cflags = "-mavx2 -mfma -mf16c",
             families = { mad = true } },
    -- aarch64: MAD over the MAD2 bytes (sdot lanes; SVE at any vector length)
    neon = { features = { "neon", "dotprod" }, cflags = "-march=armv8.2-a+dotprod", families = { mad = true } },
    sve2 = { features = { "neon", "sve2" }, cflags = "-march=armv8.2-a+sve2", families = { mad = true } },
}
local OP_MATMUL_TERNARY, TYPE_Q8_TOK = 11, 64
local LAYOUT = { mad = 1, dense5 = 2, lut2 = 3, lut3 = 4, lut4 = 5 }
local KBLOCK = { mad = 16, dense5 = 20, lut2 = 16, lut3 = 12, lut4 = 16 }
-- LUT families: trits a group (g), table entries a group's sub-table (S,
-- a power of two >= 3^g, so an index is code | S * group), entries a block
-- (E = groups a block x S).
local LUT = { lut2 = { g = 2, S = 16, E = 128 }, lut3 = { g = 3, S = 32, E = 128 }, lut4 = { g = 4, S = 128, E = 512 } }

function M.variant_name(target, v)
    if v.tokens == 1 then
        return string.format("%s.%s.v%dp%d", target, v.family, v.tiles, v.prefetch or 0)
    end
    return string.format("%s.%s.m%dx%d", target, v.family, v.tiles, v.tokens)
end

local function features_of(isa)
    local f = 0
    for _, n in ipairs(M.ISA[isa].features) do f = f | M.FEATURES[n] end
    return f
end

local function check(rec)
    assert(type(rec) == "table", "record: not a table")
    assert(type(rec.target) == "string" and rec.target:match("^[%w_%-]+$"), "record: bad target")
    assert(rec.cpu == nil or (type(rec.cpu) == "string" and not rec.cpu:find('[\\"]')), "record: bad cpu")
    local isa = M.ISA[rec.isa]
    assert(isa, "record: unknown isa " .. tostring(rec.isa))
    local seen = {}
    for i, v in ipairs(rec.variants or {}) do
        assert(isa.families[v.family], ("record: variant %d: family %s not emitted for %s"):format(i, tostring(v.family), rec.isa))
        assert(math.type(v.tiles) == "integer" and v.tiles >= 1 and v.tiles <= 4, "record: tiles 1..4")
        assert(math.type(v.tokens) == "integer" and v.tokens >= 1 and v.tokens <= 8, "record: tokens 1..8")
        assert(v.tiles * v.tokens <= 24, "record: tiles x tokens must fit the registers (<= 24)")
        -- LUT blocks hold two accumulators (low and high bytes) a tile and token
        assert(not LUT[v.family] or v.tiles * v.tokens <= 12, "record: lut tiles x tokens must fit the registers (<= 12)")
        -- NEON holds a 16-row tile's sums in four 128-bit registers a token
        assert(rec.isa ~= "neon" or v.tiles * v.tokens <= 6, "record: neon tiles x tokens must fit the registers (<= 6)")
        v.prefetch = v.prefetch or 0
        assert(math.type(v.prefetch) == "integer" and v.prefetch >= 0 and v.prefetch % 64 == 0, "record: prefetch")
        local n = M.variant_name(rec.target, v)
        assert(not seen[n], "record: duplicate variant " .. n)
        seen[n] = true
    end
    return isa
end

-- ---------------------------------------------------------------- emitters
local out
local function emit(fmt, ...) out[#out + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end

local COMMON = [[
#include <stdint.h>
#include <string.h>

#include "tern/kernels.h"

#define AI static inline __attribute__((always_inline))
#define EXPORT __attribute__((visibility("default")))

typedef struct tk_tok {
    const int8_t *q; /* K codes */
    float inv;
    int32_t sum;
} tk_tok;

static tk_tok tk_token(const tern_kernel_call *c, int64_t t)
{
    const uint8_t *row = c->x + (size_t)t * c->x_stride;
    tk_tok r;
    memcpy(&r.inv, row, 4);
    memcpy(&r.sum, row + 4, 4);
    r.q = (const int8_t *)(row + 64);
    return r;
}

__attribute__((unused)) static int32_t tk_load32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int64_t tk_round(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

static void tk_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    if (nth < 1) nth = 1;
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

/* The largest K whose GEMV in-place fields stay below 2^31 (see gen.lua). */
#define TK_KMAX 65536

static int tk_applicable(int64_t K, int64_t N, int nth)
{
    return K > 0 && K <= TK_KMAX && N > 0 && N <= ((int64_t)1 << 32) && nth >= 1;
}

__attribute__((unused)) static size_t tk_scratch(int64_t K, int64_t n_tok)
{
    (void)K, (void)n_tok;
    return 0;
}

/* Every layout: 16-row tiles of blocks of 64 bytes, a block covering
 * k_block values of k; byte 4r + i of block kb is byte_of(row r, kb, i).
 * Inlined into each layout's repack, so byte_of is a known call. */
typedef unsigned (*tk_byte_fn)(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t kb, int i);

__attribute__((unused)) static size_t tk_blocks_size(int64_t K, int64_t N, int k_block)
{
    return (size_t)(tk_round(N, 16) / 16) * (size_t)(tk_round(K, k_block) / k_block) * 64;
}

AI void tk_pack(const int8_t *codes, int64_t K, int64_t rows, int64_t tile, uint8_t *packed, int k_block,
                tk_byte_fn byte_of)
{
    int64_t nkb = tk_round(K, k_block) / k_block;
    uint8_t *out = packed + (size_t)tile * (size_t)nkb * 64;
    for (int64_t kb = 0; kb < nkb; kb++)
        for (int j = 0; j < 64; j++) out[kb * 64 + j] = (uint8_t)byte_of(codes, K, rows, j / 4, kb, j % 4);
}

/* Weight (row r, k) in {-1,0,1} plus one, 0 outside the matrix (padding
 * never contributes: the activations' sum correction counts only k < K). */
__attribute__((unused)) static int tk_code1(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t k)
{
    return r < rows && k < K ? codes[r * K + k] + 1 : 0;
}

/* TERN_KLAYOUT_MAD2 (16 k a block): w + 1 of k = 16 kb + 4p + i in bits 2p, 2p+1 */
__attribute__((unused)) static unsigned tk_mad_byte(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t kb, int i)
{
    unsigned b = 0;
    for (int p = 0; p < 4; p++) b |= (unsigned)tk_code1(codes, K, rows, r, 16 * kb + 4 * p + i) << (2 * p);
    return b;
}

/* TERN_KLAYOUT_DENSE5 (20 k a block): sum_p (w + 1) 3^p of k = 20 kb + 4p + i,
 * p = 0..4: 1.6 bits a weight */
__attribute__((unused)) static unsigned tk_dense5_byte(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t kb, int i)
{
    unsigned b = 0;
    for (int p = 4; p >= 0; p--) b = 3 * b + (unsigned)tk_code1(codes, K, rows, r, 20 * kb + 4 * p + i);
    return b;
}

/* LUT layouts: a group of g trits is its base-3 code sum_p (w_p + 1) 3^p;
 * weights outside the matrix are 0 (code digit 1), so a padding
 * activation meets a zero weight whatever its value. */
__attribute__((unused)) static unsigned tk_group(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t k0, int g)
{
    unsigned c = 0;
    for (int p = g - 1; p >= 0; p--) c = 3 * c + (unsigned)(r < rows && k0 + p < K ? codes[r * K + k0 + p] + 1 : 1);
    return c;
}

/* TERN_KLAYOUT_LUT2 (16 k a block): pair i (k = 16 kb + 2i, +1) in the low
 * nibble, pair 4 + i (k + 8) in the high nibble */
__attribute__((unused)) static unsigned tk_lut2_byte(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t kb, int i)
{
    return tk_group(codes, K, rows, r, 16 * kb + 2 * i, 2) | tk_group(codes, K, rows, r, 16 * kb + 8 + 2 * i, 2) << 4;
}

/* TERN_KLAYOUT_LUT3 (12 k a block): 32 i + the code of the triple k = 12 kb
 * + 3i .. +2 (the offset of sub-table i is stored: 8 bits for 3 weights,
 * 2.67 bits a weight) */
__attribute__((unused)) static unsigned tk_lut3_byte(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t kb, int i)
{
    return 32u * (unsigned)i + tk_group(codes, K, rows, r, 12 * kb + 3 * i, 3);
}

/* TERN_KLAYOUT_LUT4 (16 k a block): the code (0..80) of the quad k = 16 kb
 * + 4i .. +3: 2 bits a weight */
__attribute__((unused)) static unsigned tk_lut4_byte(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t kb, int i)
{
    return tk_group(codes, K, rows, r, 16 * kb + 4 * i, 4);
}
]]

local AVX512_COMMON = [[
/* Rows r..r+15 of token t: as scalar, (float)acc / inv * scale. */
AI void tk_store16(const tern_kernel_call *c, int64_t t, int64_t r, __m512i acc, float inv)
{
    float *y = (float *)((uint8_t *)c->y + (size_t)t * c->y_stride);
    __m512 v = _mm512_div_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(inv));
    v = _mm512_mul_ps(v, _mm512_set1_ps(c->scale));
    int64_t n = c->N - r;
    _mm512_mask_storeu_ps(y + r, n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1), v);
}

/* In-place fields: a_p holds 4^p sum (w+1) q; exact while |a_p| < 2^31. */
AI __m512i tk_combine(__m512i a0, __m512i a1, __m512i a2, __m512i a3, int32_t sum)
{
    __m512i s = _mm512_add_epi32(a0, _mm512_srai_epi32(a1, 2));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_srai_epi32(a2, 4), _mm512_srai_epi32(a3, 6)));
    return _mm512_sub_epi32(s, _mm512_set1_epi32(sum));
}
]]

-- dense5 decode tables: byte b -> MAD byte of its trits 0..3, and trit 4
local function dense5_tables()
    local t, e = {}, {}
    for b = 0, 255 do
        local d, x = {}, b
        for p = 0, 4 do d[p] = x % 3; x = x // 3 end
        if b < 243 then
            t[b + 1] = d[0] + 4 * d[1] + 16 * d[2] + 64 * d[3]
            e[b + 1] = d[4]
        else
            t[b + 1], e[b + 1] = 0, 0
        end
    end
    emit("/* dense5 decode: byte b (5 trits, base 3) -> 2-bit fields of trits 0..3, and trit 4 */")
    for _, tab in ipairs({ { "tk_d5_lo", t }, { "tk_d5_hi", e } }) do
        emit("static const uint8_t %s[256] __attribute__((aligned(64))) = {", tab[1])
        for row = 0, 15 do
            local s = {}
            for i = 1, 16 do s[i] = tostring(tab[2][row * 16 + i]) end
            emit("    " .. table.concat(s, ", ") .. ",")
        end
        emit("};")
    end
    emit([[
typedef struct tk_d5 { __m512i t0, t1, t2, t3, e0, e1, e2, e3; } tk_d5;
AI tk_d5 tk_d5_load(void)
{
    tk_d5 d;
    d.t0 = _mm512_load_si512(tk_d5_lo); d.t1 = _mm512_load_si512(tk_d5_lo + 64);
    d.t2 = _mm512_load_si512(tk_d5_lo + 128); d.t3 = _mm512_load_si512(tk_d5_lo + 192);
    d.e0 = _mm512_load_si512(tk_d5_hi); d.e1 = _mm512_load_si512(tk_d5_hi + 64);
    d.e2 = _mm512_load_si512(tk_d5_hi + 128); d.e3 = _mm512_load_si512(tk_d5_hi + 192);
    return d;
}
/* v: 64 dense bytes -> *f: MAD byte of trits 0..3, return: trit 4 */
AI __m512i tk_d5_decode(const tk_d5 *d, __m512i v, __m512i *f)
{
    __mmask64 hi = _mm512_movepi8_mask(v);
    *f = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(d->t0, v, d->t1),
                                _mm512_permutex2var_epi8(d->t2, v, d->t3));
    return _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(d->e0, v, d->e1),
                                  _mm512_permutex2var_epi8(d->e2, v, d->e3));
}
]])
end

-- One AVX-512 block function: nt tiles x nt tokens (nt_tok == 1 and gemv:
-- in-place fields), for family fam. Emitted once per (fam, kind, nt, T, pf).
local emitted = {}
local function avx512_block(fam, gemv, nt, T, pf)
    local fname = ("tk_%s_%s_%dx%d_p%d"):format(fam, gemv and "gemv" or "gemm", nt, T, pf)
    if emitted[fname] then return fname end
    emitted[fname] = true
    local kb_bytes = 64
    local kstep = KBLOCK[fam]
    emit("/* %s: %d tile(s) x %d token(s)%s */", fname, nt, T, pf > 0 and (", prefetch " .. pf .. " bytes") or "")
    emit("static void %s(const tern_kernel_call *c, const uint8_t *w, size_t tb, int64_t r, const tk_tok *x, int64_t t0, int64_t nkb)", fname)
    emit("{")
    if fam == "dense5" then emit("    const tk_d5 d5 = tk_d5_load();") end
    -- the last block of a dense5 row may reach past the readable codes: it
    -- reads a zero-padded copy (its padding weights are 0 anyway)
    local tail = fam == "dense5"
    if tail then
        emit("    int8_t tail[%d][32] __attribute__((aligned(64)));", T)
        emit("    for (int t = 0; t < %d; t++) {", T)
        emit("        int64_t k0 = 20 * (nkb - 1), n = c->K - k0;")
        emit("        memset(tail[t], 0, 32);")
        emit("        memcpy(tail[t], x[t].q + k0, (size_t)n);")
        emit("    }")
    end
    if gemv then
        emit("    const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0c);")
        emit("    const __m512i m2 = _mm512_set1_epi8(0x30), m3 = _mm512_set1_epi8((char)0xc0);")
        for i = 0, nt - 1 do
            emit("    __m512i a%d_0 = _mm512_setzero_si512(), a%d_1 = _mm512_setzero_si512(), a%d_2 = _mm512_setzero_si512(), a%d_3 = _mm512_setzero_si512();", i, i, i, i)
        end
    else
        emit("    const __m512i m3 = _mm512_set1_epi8(0x03);")
        for i = 0, nt - 1 do
            for t = 0, T - 1 do emit("    __m512i acc%d_%d = _mm512_setzero_si512();", i, t) end
        end
    end
    local function body(qexpr)
        -- qexpr(t): pointer expression to token t's block codes
        for i = 0, nt - 1 do
            emit("        __m512i v%d = _mm512_loadu_si512(w + %d * tb + %d * kb);", i, i, kb_bytes)
            if pf > 0 then emit("        _mm_prefetch((const char *)(w + %d * tb + %d * kb + %d), _MM_HINT_T0);", i, kb_bytes, pf) end
        end
        if fam == "dense5" then
            for i = 0, nt - 1 do emit("        __m512i f%d, e%d = tk_d5_decode(&d5, v%d, &f%d);", i, i, i, i) end
        else
            for i = 0, nt - 1 do emit("        __m512i f%d = v%d;", i, i) end
        end
        if gemv then
            emit("        const int8_t *q = %s;", qexpr(0))
            emit("        __m512i x0 = _mm512_set1_epi32(tk_load32(q)), x1 = _mm512_set1_epi32(tk_load32(q + 4));")
            emit("        __m512i x2 = _mm512_set1_epi32(tk_load32(q + 8)), x3 = _mm512_set1_epi32(tk_load32(q + 12));")
            if fam == "dense5" then emit("        __m512i x4 = _mm512_set1_epi32(tk_load32(q + 16));") end
            for i = 0, nt - 1 do
                for p = 0, 3 do
                    emit("        a%d_%d = _mm512_dpbusd_epi32(a%d_%d, _mm512_and_si512(f%d, m%d), x%d);", i, p, i, p, i, p, p)
                end
                if fam == "dense5" then emit("        a%d_0 = _mm512_dpbusd_epi32(a%d_0, e%d, x4);", i, i, i) end
            end
        else
            local np = fam == "dense5" and 5 or 4
            for p = 0, np - 1 do
                emit("        {")
                for i = 0, nt - 1 do
                    if p == 4 then
                        emit("        __m512i u%d = e%d;", i, i)
                    elseif p == 0 then
                        emit("        __m512i u%d = _mm512_and_si512(f%d, m3);", i, i)
                    else
                        emit("        __m512i u%d = _mm512_and_si512(_mm512_srli_epi16(f%d, %d), m3);", i, i, 2 * p)
                    end
                end
                for t = 0, T - 1 do
                    emit("        { __m512i xv = _mm512_set1_epi32(tk_load32(%s + %d));", qexpr(t), 4 * p)
                    for i = 0, nt - 1 do
                        emit("          acc%d_%d = _mm512_dpbusd_epi32(acc%d_%d, u%d, xv);", i, t, i, t, i)
                    end
                    emit("        }")
                end
                emit("        }")
            end
        end
    end
    -- dense5: every block but the last reads the row; the last reads tail
    local last = tail and "nkb - 1" or "nkb"
    emit("    for (int64_t kb = 0; kb < %s; kb++) {", last)
    body(function(t) return ("(x[%d].q + %d * kb)"):format(t, kstep) end)
    emit("    }")
    if tail then
        emit("    { int64_t kb = nkb - 1;")
        body(function(t) return ("tail[%d]"):format(t) end)
        emit("    }")
    end
    if gemv then
        for i = 0, nt - 1 do
            emit("    tk_store16(c, t0, r + %d, tk_combine(a%d_0, a%d_1, a%d_2, a%d_3, x[0].sum), x[0].inv);", 16 * i, i, i, i, i)
        end
    else
        for t = 0, T - 1 do
            for i = 0, nt - 1 do
                emit("    tk_store16(c, t0 + %d, r + %d, _mm512_sub_epi32(acc%d_%d, _mm512_set1_epi32(x[%d].sum)), x[%d].inv);", t, 16 * i, i, t, t, t)
            end
        end
    end
    emit("}")
    emit("")
    return fname
end

-- The loop of a variant's kernel over its share of 16-row tiles: blocks of
-- nt tiles x T tokens (b.main; b.tile for the last tiles of the share),
-- then the R < T tokens left in one block of R tokens (b.rest[R], b.rest1[R])
-- so a batch smaller than T (a server's few slots, a speculative verify)
-- reads and decodes each weight once, not once per token.
local function emit_tile_loop(nt, T, b)
    emit("    tk_tok x[%d];", T)
    emit("    for (int64_t i = lo; i < hi; i += %d) {", nt)
    emit("        const uint8_t *w = c->w + (size_t)i * tb;")
    emit("        int full = i + %d <= hi;", nt)
    emit("        int64_t t = 0;")
    emit("        for (; t + %d <= c->n_tok; t += %d) {", T, T)
    emit("            for (int j = 0; j < %d; j++) x[j] = tk_token(c, t + j);", T)
    emit("            if (full) %s(c, w, tb, 16 * i, x, t, nkb);", b.main)
    emit("            else for (int64_t k = i; k < hi; k++) %s(c, c->w + (size_t)k * tb, tb, 16 * k, x, t, nkb);", b.tile)
    emit("        }")
    if T > 1 then
        emit("        int rest = (int)(c->n_tok - t);")
        emit("        for (int j = 0; j < rest; j++) x[j] = tk_token(c, t + j);")
        emit("        switch (rest) {")
        for R = 1, T - 1 do
            emit("        case %d:", R)
            emit("            if (full) %s(c, w, tb, 16 * i, x, t, nkb);", b.rest[R])
            emit("            else for (int64_t k = i; k < hi; k++) %s(c, c->w + (size_t)k * tb, tb, 16 * k, x, t, nkb);", b.rest1[R])
            emit("            break;")
        end
        emit("        }")
    end
    emit("    }")
end

-- A tiled variant's kernel: its share of 16-row tiles through emit_tile_loop
-- over the block functions block(tiles, tokens, prefetch) emits.
local function tiled_variant(target, v, block, isa)
    local nt, T, pf = v.tiles, v.tokens, v.prefetch
    local name = M.variant_name(target, v)
    local cname = name:gsub("[^%w]", "_")
    local b = { main = block(nt, T, pf), tile = block(1, T, pf), rest = {}, rest1 = {} }
    for R = 1, T - 1 do b.rest[R], b.rest1[R] = block(nt, R, pf), block(1, R, pf) end
    emit("/* variant %s: family %s (%s), %d tile(s) of 16 rows, %d token(s) a step, prefetch %d */", name,
         v.family, isa, nt, T, pf)
    emit("static void %s_kernel(const tern_kernel_call *c, int ith, int nth, void *scratch)", cname)
    emit("{")
    emit("    (void)scratch;")
    emit("    int64_t nkb = tk_round(c->K, %d) / %d, lo, hi;", KBLOCK[v.family], KBLOCK[v.family])
    emit("    size_t tb = (size_t)nkb * 64;")
    emit("    tk_split(tk_round(c->N, 16) / 16, ith, nth, &lo, &hi);")
    emit_tile_loop(nt, T, b)
    emit("}")
    emit("")
    return name, cname
end

-- ---------------------------------------------------------------- LUT
-- Per token and 64-byte weight block, a table of every group's partial
-- sums: entry S * G + c holds sum_p a[g G + p] (digit p of c - 1), the dot
-- of the block's group G with the weights of code c (0 for codes >= 3^g).
-- A sum lies in [-128 g, 127 g], beyond a byte, so each table is stored as
-- its low bytes L (E of them, unsigned) and high bytes H (E, signed: the
-- sum is L + 256 H): a block's lookups add L by vpdpbusd(acc, L, ones) and
-- H by vpdpbusd(acc, ones, H), and the two int32 sums combine exactly.
-- Built 32 entries at a time in int16 lanes: entry e takes activation
-- idx[e] times digit dig[e], for each of the g digits.
local function lut_tables(fam)
    local L = LUT[fam]
    local g, S, E, kstep = L.g, L.S, L.E, KBLOCK[fam]
    -- laid out [chunk of 32 entries][digit p][lane]: entry e, digit p
    local idx, dig, codes = {}, {}, math.tointeger(3 ^ g)
    for e = 0, E - 1 do
        local G, c = e // S, e % S
        for p = 0, g - 1 do
            local at = (e // 32) * g * 32 + p * 32 + e % 32 + 1
            idx[at] = G * g + p
            dig[at] = c < codes and c // math.tointeger(3 ^ p) % 3 - 1 or 0
        end
    end
    local function table_of(name, v)
        emit("static const int16_t %s[%d] __attribute__((aligned(64))) = {", name, E * g)
        for row = 0, E * g // 32 - 1 do
            local t = {}
            for i = 1, 32 do t[i] = tostring(v[row * 32 + i]) end
            emit("    " .. table.concat(t, ", ") .. ",")
        end
        emit("};")
    end
    emit("/* %s tables: %d groups of %d trits a %d-k block, sub-tables of %d entries */", fam, E // S, g, kstep, S)
    table_of(("tk_%s_idx"):format(fam), idx)
    table_of(("tk_%s_dig"):format(fam), dig)
    emit("/* token x's tables for blocks 0..nkb-1: %d bytes a block (L then H) */", 2 * E)
    emit("static void tk_%s_tables(const tern_kernel_call *c, const tk_tok *x, int64_t nkb, uint8_t *tab)", fam)
    emit("{")
    emit("    for (int64_t kb = 0; kb < nkb; kb++) {")
    emit("        int64_t n = c->K - %d * kb; /* codes past K are not read: they count as 0 */", kstep)
    emit("        __mmask32 m = n >= %d ? (__mmask32)0x%x : (__mmask32)((1u << n) - 1);", kstep, (1 << kstep) - 1)
    emit("        __m512i a = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, x->q + %d * kb));", kstep)
    emit("        uint8_t *L = tab + (size_t)kb * %d, *H = L + %d;", 2 * E, E)
    emit("        for (int ch = 0; ch < %d; ch++) {", E // 32)
    emit("            const int16_t *ix = tk_%s_idx + %d * ch, *dg = tk_%s_dig + %d * ch;", fam, 32 * g, fam, 32 * g)
    emit("            __m512i s = _mm512_mullo_epi16(_mm512_permutexvar_epi16(_mm512_load_si512(ix), a), _mm512_load_si512(dg));")
    for p = 1, g - 1 do
        emit("            s = _mm512_add_epi16(s, _mm512_mullo_epi16(_mm512_permutexvar_epi16(_mm512_load_si512(ix + %d), a), _mm512_load_si512(dg + %d)));", 32 * p, 32 * p)
    end
    emit("            _mm256_storeu_si256((__m256i *)(L + 32 * ch), _mm512_cvtepi16_epi8(s));")
    emit("            _mm256_storeu_si256((__m256i *)(H + 32 * ch), _mm512_cvtepi16_epi8(_mm512_srai_epi16(s, 8)));")
    emit("        }")
    emit("    }")
    emit("}")
    emit("")
end

-- One LUT block function: nt tiles x T tokens over all blocks of a row.
local function lut_block(fam, nt, T, pf)
    local fname = ("tk_%s_%dx%d_p%d"):format(fam, nt, T, pf)
    if emitted[fname] then return fname end
    emitted[fname] = true
    local E = LUT[fam].E
    emit("/* %s: %d tile(s) x %d token(s)%s */", fname, nt, T, pf > 0 and (", prefetch " .. pf .. " bytes") or "")
    emit("static void %s(const tern_kernel_call *c, const uint8_t *w, size_t tb, int64_t r, const tk_tok *x, const uint8_t *tab, size_t tabt, int64_t t0, int64_t nkb)", fname)
    emit("{")
    emit("    const __m512i ones = _mm512_set1_epi8(1);")
    if fam == "lut2" then
        emit("    const __m512i lo4 = _mm512_set1_epi8(0x0f), bias = _mm512_set1_epi32(0x30201000); /* byte 4r + i: 16 i */")
    end
    for i = 0, nt - 1 do
        for t = 0, T - 1 do emit("    __m512i l%d_%d = _mm512_setzero_si512(), h%d_%d = _mm512_setzero_si512();", i, t, i, t) end
    end
    emit("    for (int64_t kb = 0; kb < nkb; kb++) {")
    for i = 0, nt - 1 do
        emit("        __m512i v%d = _mm512_loadu_si512(w + %d * tb + 64 * kb);", i, i)
        if pf > 0 then emit("        _mm_prefetch((const char *)(w + %d * tb + 64 * kb + %d), _MM_HINT_T0);", i, pf) end
        if fam == "lut2" then
            -- (v & 15) | bias, (v >> 4 & 15) | bias: pair i's and pair 4 + i's entries
            emit("        __m512i ia%d = _mm512_ternarylogic_epi32(v%d, lo4, bias, 0xEA);", i, i)
            emit("        __m512i ib%d = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v%d, 4), lo4, bias, 0xEA);", i, i)
        end
    end
    for t = 0, T - 1 do
        emit("        {")
        emit("        const uint8_t *L = tab + %d * tabt + (size_t)kb * %d, *H = L + %d;", t, 2 * E, E)
        if fam == "lut2" then
            emit("        __m512i la = _mm512_loadu_si512(L), lb = _mm512_loadu_si512(L + 64);")
            emit("        __m512i ha = _mm512_loadu_si512(H), hb = _mm512_loadu_si512(H + 64);")
            for i = 0, nt - 1 do
                emit("        l%d_%d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(l%d_%d, _mm512_permutexvar_epi8(ia%d, la), ones), _mm512_permutexvar_epi8(ib%d, lb), ones);", i, t, i, t, i, i)
                emit("        h%d_%d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(h%d_%d, ones, _mm512_permutexvar_epi8(ia%d, ha)), ones, _mm512_permutexvar_epi8(ib%d, hb));", i, t, i, t, i, i)
            end
        elseif fam == "lut3" then
            -- the index holds its sub-table: one 128-entry lookup a block
            emit("        __m512i l0 = _mm512_loadu_si512(L), l1 = _mm512_loadu_si512(L + 64);")
            emit("        __m512i g0 = _mm512_loadu_si512(H), g1 = _mm512_loadu_si512(H + 64);")
            for i = 0, nt - 1 do
                emit("        l%d_%d = _mm512_dpbusd_epi32(l%d_%d, _mm512_permutex2var_epi8(l0, v%d, l1), ones);", i, t, i, t, i)
                emit("        h%d_%d = _mm512_dpbusd_epi32(h%d_%d, ones, _mm512_permutex2var_epi8(g0, v%d, g1));", i, t, i, t, i)
            end
        else
            -- 81 codes fill a 128-entry table: byte i of each dword looks
            -- up group i's table, four masked lookups a block (the bytes
            -- not yet looked up keep their index: vpermi2b's idx merge)
            for i = 0, nt - 1 do emit("        __m512i sl%d = v%d, sh%d = v%d;", i, i, i, i) end
            for p = 0, 3 do
                emit("        { __m512i l0 = _mm512_loadu_si512(L + %d), l1 = _mm512_loadu_si512(L + %d);", 128 * p, 128 * p + 64)
                emit("          __m512i g0 = _mm512_loadu_si512(H + %d), g1 = _mm512_loadu_si512(H + %d);", 128 * p, 128 * p + 64)
                for i = 0, nt - 1 do
                    emit("          sl%d = _mm512_mask2_permutex2var_epi8(l0, sl%d, (__mmask64)0x%016xull, l1);", i, i, 0x1111111111111111 << p)
                    emit("          sh%d = _mm512_mask2_permutex2var_epi8(g0, sh%d, (__mmask64)0x%016xull, g1);", i, i, 0x1111111111111111 << p)
                end
                emit("        }")
            end
            for i = 0, nt - 1 do
                emit("        l%d_%d = _mm512_dpbusd_epi32(l%d_%d, sl%d, ones);", i, t, i, t, i)
                emit("        h%d_%d = _mm512_dpbusd_epi32(h%d_%d, ones, sh%d);", i, t, i, t, i)
            end
        end
        emit("        }")
    end
    emit("    }")
    for t = 0, T - 1 do
        for i = 0, nt - 1 do
            emit("    tk_store16(c, t0 + %d, r + %d, _mm512_add_epi32(l%d_%d, _mm512_slli_epi32(h%d_%d, 8)), x[%d].inv);", t, 16 * i, i, t, i, t, t)
        end
    end
    emit("}")
    emit("")
    return fname
end

-- A LUT variant: per step of T tokens, each thread builds the step's
-- tables (scratch) then runs its tiles; the last step's R < T tokens run
-- as one block of R tokens.
local function lut_variant(target, v)
    local fam, nt, T, pf = v.family, v.tiles, v.tokens, v.prefetch
    local name = M.variant_name(target, v)
    local cname = name:gsub("[^%w]", "_")
    local E, kstep = LUT[fam].E, KBLOCK[fam]
    local main, tile = {}, {}
    for R = 1, T do main[R], tile[R] = lut_block(fam, nt, R, pf), lut_block(fam, 1, R, pf) end
    local scratch = ("tk_%s_scratch_t%d"):format(fam, T)
    if not emitted[scratch] then
        emitted[scratch] = true
        emit("static size_t %s(int64_t K, int64_t n_tok)", scratch)
        emit("{")
        emit("    return (size_t)(n_tok < %d ? n_tok : %d) * (size_t)(tk_round(K, %d) / %d) * %d;", T, T, kstep, kstep, 2 * E)
        emit("}")
        emit("")
    end
    emit("/* variant %s: family %s, %d tile(s) of 16 rows, %d token(s) a step, prefetch %d */", name, fam, nt, T, pf)
    emit("static void %s_kernel(const tern_kernel_call *c, int ith, int nth, void *scratch)", cname)
    emit("{")
    emit("    int64_t nkb = tk_round(c->K, %d) / %d, lo, hi;", kstep, kstep)
    emit("    size_t tb = (size_t)nkb * 64, tabt = (size_t)nkb * %d;", 2 * E)
    emit("    tk_split(tk_round(c->N, 16) / 16, ith, nth, &lo, &hi);")
    emit("    if (lo >= hi) return;")
    emit("    uint8_t *tab = scratch;")
    emit("    tk_tok x[%d];", T)
    emit("    for (int64_t t = 0; t < c->n_tok; t += %d) {", T)
    emit("        int R = c->n_tok - t < %d ? (int)(c->n_tok - t) : %d;", T, T)
    emit("        for (int j = 0; j < R; j++) {")
    emit("            x[j] = tk_token(c, t + j);")
    emit("            tk_%s_tables(c, &x[j], nkb, tab + (size_t)j * tabt);", fam)
    emit("        }")
    emit("        for (int64_t i = lo; i < hi; i += %d) {", nt)
    emit("            const uint8_t *w = c->w + (size_t)i * tb;")
    emit("            int full = i + %d <= hi;", nt)
    emit("            switch (R) {")
    for R = 1, T do
        emit("            case %d:", R)
        emit("                if (full) %s(c, w, tb, 16 * i, x, tab, tabt, t, nkb);", main[R])
        emit("                else for (int64_t k = i; k < hi; k++) %s(c, c->w + (size_t)k * tb, tb, 16 * k, x, tab, tabt, t, nkb);", tile[R])
        emit("                break;")
    end
    emit("            }")
    emit("        }")
    emit("    }")
    emit("}")
    emit("")
    return name, cname, scratch
end

-- ---------------------------------------------------------------- AVX2
local AVX2_COMMON = [[
/* Rows r..r+7 of token t (n of them inside the matrix). */
static void tk_store8(const tern_kernel_call *c, int64_t t, int64_t r, __m256i acc, float inv)
{
    float *y = (float *)((uint8_t *)c->y + (size_t)t * c->y_stride);
    __m256 v = _mm256_div_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(inv));
    v = _mm256_mul_ps(v, _mm256_set1_ps(c->scale));
    float buf[8];
    _mm256_storeu_ps(buf, v);
    for (int64_t i = 0; i < 8 && r + i < c->N; i++) y[r + i] = buf[i];
}
]]

-- AVX2 MAD: a 16-row tile is two 8-row ymm halves; each field (w+1 in
-- {0,1,2}) times 4 codes by vpmaddubsw (pairs, |sum| <= 508) then vpmaddwd.
local function avx2_block(nt, T, pf)
    local fname = ("tk_mad2_%dx%d_p%d"):format(nt, T, pf)
    if emitted[fname] then return fname end
    emitted[fname] = true
    emit("static void %s(const tern_kernel_call *c, const uint8_t *w, size_t tb, int64_t r, const tk_tok *x, int64_t t0, int64_t nkb)", fname)
    emit("{")
    emit("    const __m256i m3 = _mm256_set1_epi8(0x03), one = _mm256_set1_epi16(1);")
    for h = 0, 2 * nt - 1 do
        for t = 0, T - 1 do emit("    __m256i acc%d_%d = _mm256_setzero_si256();", h, t) end
    end
    emit("    for (int64_t kb = 0; kb < nkb; kb++) {")
    for h = 0, 2 * nt - 1 do
        emit("        __m256i v%d = _mm256_loadu_si256((const __m256i *)(w + %d * tb + 64 * kb + %d));", h, h // 2, 32 * (h % 2))
        if pf > 0 and h % 2 == 0 then emit("        _mm_prefetch((const char *)(w + %d * tb + 64 * kb + %d), _MM_HINT_T0);", h // 2, pf) end
    end
    for p = 0, 3 do
        emit("        {")
        for h = 0, 2 * nt - 1 do
            emit("        __m256i u%d = _mm256_and_si256(%s, m3);", h, p == 0 and ("v" .. h) or ("_mm256_srli_epi16(v%d, %d)"):format(h, 2 * p))
        end
        for t = 0, T - 1 do
            emit("        { __m256i xv = _mm256_set1_epi32(tk_load32(x[%d].q + 16 * kb + %d));", t, 4 * p)
            for h = 0, 2 * nt - 1 do
                emit("          acc%d_%d = _mm256_add_epi32(acc%d_%d, _mm256_madd_epi16(_mm256_maddubs_epi16(u%d, xv), one)); ", h, t, h, t, h)
            end
            emit("        }")
        end
        emit("        }")
    end
    emit("    }")
    for t = 0, T - 1 do
        for h = 0, 2 * nt - 1 do
            emit("    tk_store8(c, t0 + %d, r + %d, _mm256_sub_epi32(acc%d_%d, _mm256_set1_epi32(x[%d].sum)), x[%d].inv);", t, 8 * h, h, t, t, t)
        end
    end
    emit("}")
    emit("")
    return fname
end

-- ---------------------------------------------------------------- NEON
-- NEON (dotprod) MAD over the same MAD2 bytes: a 64-byte block is four
-- 16-byte quarters (rows 4h..4h+3, a dword a row); field p of every byte,
-- shifted to {0,1,2}, dots the four codes 4p..4p+3 of the block by
-- sdot's lane form, so one load of 16 codes serves the four fields.
local NEON_COMMON = [[
/* Rows r..r+3 of token t: as scalar, (float)(acc - sum) / inv * scale. */
static inline void tk_store4(const tern_kernel_call *c, int64_t t, int64_t r, int32x4_t acc, int32_t sum, float inv)
{
    float *y = (float *)((uint8_t *)c->y + (size_t)t * c->y_stride);
    float32x4_t v = vdivq_f32(vcvtq_f32_s32(vsubq_s32(acc, vdupq_n_s32(sum))), vdupq_n_f32(inv));
    v = vmulq_f32(v, vdupq_n_f32(c->scale));
    int64_t n = c->N - r;
    if (n >= 4) {
        vst1q_f32(y + r, v);
    } else if (n > 0) {
        float b[4];
        vst1q_f32(b, v);
        for (int64_t i = 0; i < n; i++) y[r + i] = b[i];
    }
}
]]

local function neon_block(nt, T, pf)
    local fname = ("tk_nmad_%dx%d_p%d"):format(nt, T, pf)
    if emitted[fname] then return fname end
    emitted[fname] = true
    emit("/* %s: %d tile(s) x %d token(s)%s */", fname, nt, T, pf > 0 and (", prefetch " .. pf .. " bytes") or "")
    emit("static void %s(const tern_kernel_call *c, const uint8_t *w, size_t tb, int64_t r, const tk_tok *x, int64_t t0, int64_t nkb)", fname)
    emit("{")
    emit("    const uint8x16_t m3 = vdupq_n_u8(3);")
    for i = 0, nt - 1 do
        for h = 0, 3 do
            for t = 0, T - 1 do emit("    int32x4_t a%d_%d_%d = vdupq_n_s32(0);", i, h, t) end
        end
    end
    emit("    for (int64_t kb = 0; kb < nkb; kb++) {")
    for i = 0, nt - 1 do
        for h = 0, 3 do emit("        uint8x16_t v%d_%d = vld1q_u8(w + %d * tb + 64 * kb + %d);", i, h, i, 16 * h) end
        if pf > 0 then emit("        __builtin_prefetch(w + %d * tb + 64 * kb + %d);", i, pf) end
    end
    for t = 0, T - 1 do emit("        int8x16_t q%d = vld1q_s8(x[%d].q + 16 * kb);", t, t) end
    for p = 0, 3 do
        emit("        {")
        for i = 0, nt - 1 do
            for h = 0, 3 do
                local f = p == 0 and ("vandq_u8(v%d_%d, m3)"):format(i, h)
                    or p == 3 and ("vshrq_n_u8(v%d_%d, 6)"):format(i, h)
                    or ("vandq_u8(vshrq_n_u8(v%d_%d, %d), m3)"):format(i, h, 2 * p)
                emit("        int8x16_t u%d_%d = vreinterpretq_s8_u8(%s);", i, h, f)
            end
        end
        for t = 0, T - 1 do
            for i = 0, nt - 1 do
                for h = 0, 3 do emit("        a%d_%d_%d = vdotq_laneq_s32(a%d_%d_%d, u%d_%d, q%d, %d);", i, h, t, i, h, t, i, h, t, p) end
            end
        end
        emit("        }")
    end
    emit("    }")
    for t = 0, T - 1 do
        for i = 0, nt - 1 do
            for h = 0, 3 do emit("    tk_store4(c, t0 + %d, r + %d, a%d_%d_%d, x[%d].sum, x[%d].inv);", t, 16 * i + 4 * h, i, h, t, t, t) end
        end
    end
    emit("}")
    emit("")
    return fname
end

-- ---------------------------------------------------------------- SVE
-- Vector-length-agnostic MAD over the MAD2 bytes: a 64-byte block is cut
-- in segments of min(VL, 64) bytes (VL/4 rows, a dword a row); svld1rq
-- repeats the block's 16 codes in every 128-bit segment so svdot_lane
-- dots field p with codes 4p..4p+3 at any VL. VL > 512 bits: the load
-- predicate keeps the 64 bytes, the other lanes stay 0.
local SVE_COMMON = [[
/* rows r..r+rows-1 of token t (those inside the matrix) */
static inline void tk_store_sv(const tern_kernel_call *c, int64_t t, int64_t r, int64_t rows, svint32_t acc, int32_t sum, float inv)
{
    int64_t n = c->N - r < rows ? c->N - r : rows;
    if (n <= 0) return;
    float *y = (float *)((uint8_t *)c->y + (size_t)t * c->y_stride);
    svbool_t pg = svwhilelt_b32_s64(0, n);
    svfloat32_t v = svdiv_n_f32_x(pg, svcvt_f32_s32_x(pg, svsub_n_s32_x(pg, acc, sum)), inv);
    svst1_f32(pg, y + r, svmul_n_f32_x(pg, v, c->scale));
}
]]

local function sve_block(nt, T, pf)
    local fname = ("tk_smad_%dx%d_p%d"):format(nt, T, pf)
    if emitted[fname] then return fname end
    emitted[fname] = true
    emit("/* %s: %d tile(s) x %d token(s)%s */", fname, nt, T, pf > 0 and (", prefetch " .. pf .. " bytes") or "")
    emit("static void %s(const tern_kernel_call *c, const uint8_t *w, size_t tb, int64_t r, const tk_tok *x, int64_t t0, int64_t nkb)", fname)
    emit("{")
    emit("    const int64_t seg = svcntb() < 64 ? (int64_t)svcntb() : 64;")
    emit("    const svbool_t all = svptrue_b8(), pb = svwhilelt_b8_s64(0, seg);")
    emit("    for (int64_t s = 0; s < 64; s += seg) {")
    for i = 0, nt - 1 do
        for t = 0, T - 1 do emit("        svint32_t a%d_%d = svdup_n_s32(0);", i, t) end
    end
    emit("        for (int64_t kb = 0; kb < nkb; kb++) {")
    for i = 0, nt - 1 do
        emit("            svuint8_t v%d = svld1_u8(pb, w + %d * tb + 64 * kb + s);", i, i)
        if pf > 0 then emit("            __builtin_prefetch(w + %d * tb + 64 * kb + s + %d);", i, pf) end
    end
    for t = 0, T - 1 do emit("            svint8_t q%d = svld1rq_s8(all, x[%d].q + 16 * kb);", t, t) end
    for p = 0, 3 do
        emit("            {")
        for i = 0, nt - 1 do
            local f = p == 0 and ("svand_n_u8_x(all, v%d, 3)"):format(i)
                or p == 3 and ("svlsr_n_u8_x(all, v%d, 6)"):format(i)
                or ("svand_n_u8_x(all, svlsr_n_u8_x(all, v%d, %d), 3)"):format(i, 2 * p)
            emit("            svint8_t u%d = svreinterpret_s8_u8(%s);", i, f)
        end
        for t = 0, T - 1 do
            for i = 0, nt - 1 do emit("            a%d_%d = svdot_lane_s32(a%d_%d, u%d, q%d, %d);", i, t, i, t, i, t, p) end
        end
        emit("            }")
    end
    emit("        }")
    for t = 0, T - 1 do
        for i = 0, nt - 1 do emit("        tk_store_sv(c, t0 + %d, r + %d + s / 4, seg / 4, a%d_%d, x[%d].sum, x[%d].inv);", t, 16 * i, i, t, t, t) end
    end
    emit("    }")
    emit("}")
    emit("")
    return fname
end

-- ---------------------------------------------------------------- driver
function M.generate(rec, record_name)
    local isa = check(rec)
    out = {}
    emitted = {}
    local feats = features_of(rec.isa)
    emit("/* tern-kernels-%s.c - generated by codegen/gen.lua from %s, do not edit.", rec.target, record_name)
    emit(" * target %s, isa %s (%s), %d variant(s):", rec.target, rec.isa, isa.cflags, #(rec.variants or {}))
    for _, v in ipairs(rec.variants or {}) do
        emit(" *   %s: family %s tile_rows 16 k_block %d tiles %d tokens %d prefetch %d",
             M.variant_name(rec.target, v), v.family, KBLOCK[v.family], v.tiles, v.tokens, v.prefetch)
    end
    emit(" */")
    if rec.isa == "avx512" or rec.isa == "avx2" then emit("#include <immintrin.h>") end
    if rec.isa == "neon" or rec.isa == "sve2" then emit("#include <arm_neon.h>") end
    if rec.isa == "sve2" then emit("#include <arm_sve.h>") end
    emit(COMMON)
    local names = {}
    if rec.isa == "avx512" then
        emit(AVX512_COMMON)
        local used = {}
        for _, v in ipairs(rec.variants or {}) do used[v.family] = true end
        if used.dense5 then dense5_tables() end
        for _, fam in ipairs({ "lut2", "lut3", "lut4" }) do
            if used[fam] then lut_tables(fam) end
        end
        for _, v in ipairs(rec.variants or {}) do
            if LUT[v.family] then
                local n, cn, scratch = lut_variant(rec.target, v)
                names[#names + 1] = { n, cn, v, scratch }
            else
                -- GEMV variants (one token a step) keep the fields in place
                local block = function(nt, T, pf) return avx512_block(v.family, v.tokens == 1, nt, T, pf) end
                local n, cn = tiled_variant(rec.target, v, block, rec.isa)
                names[#names + 1] = { n, cn, v }
            end
        end
    elseif rec.isa == "neon" or rec.isa == "sve2" then
        emit(rec.isa == "neon" and NEON_COMMON or SVE_COMMON)
        for _, v in ipairs(rec.variants or {}) do
            local n, cn = tiled_variant(rec.target, v, rec.isa == "neon" and neon_block or sve_block, rec.isa)
            names[#names + 1] = { n, cn, v }
        end
    elseif rec.isa == "avx2" then
        emit(AVX2_COMMON)
        for _, v in ipairs(rec.variants or {}) do
            local n, cn = tiled_variant(rec.target, v, avx2_block, rec.isa)
            names[#names + 1] = { n, cn, v }
        end
    end
    -- each used layout's packed_size and repack, from its byte function
    local wrapped = {}
    for _, e in ipairs(names) do
        local f = e[3].family
        if not wrapped[f] then
            wrapped[f] = true
            emit("static size_t tk_%s_size(int64_t K, int64_t N) { return tk_blocks_size(K, N, %d); }", f, KBLOCK[f])
            emit("static void tk_%s_repack(const int8_t *codes, int64_t K, int64_t rows, int64_t tile, uint8_t *packed)", f)
            emit("{")
            emit("    tk_pack(codes, K, rows, tile, packed, %d, tk_%s_byte);", KBLOCK[f], f)
            emit("}")
        end
    end
    -- the registry
    emit("static const tern_kernel_variant tk_variants[] = {")
    for _, e in ipairs(names) do
        local v = e[3]
        emit("    {sizeof(tern_kernel_variant), \"%s\", \"%s\", %d, %d, 0x%xull, %d, 16, %d, %d, %d, %d, %d,",
             e[1], v.family, OP_MATMUL_TERNARY, TYPE_Q8_TOK, feats, LAYOUT[v.family], KBLOCK[v.family],
             LUT[v.family] and LUT[v.family].g or 0, v.tiles, v.tokens, v.prefetch)
        emit("     tk_applicable, tk_%s_size, tk_%s_repack, %s, %s_kernel},", v.family, v.family, e[4] or "tk_scratch", e[2])
    end
    if #names == 0 then emit("    {0}") end
    emit("};")
    emit("static const tern_kernel_choice tk_choices[] = {")
    local known = {}
    for _, e in ipairs(names) do known[e[1]] = true end
    local nchoice = 0
    for _, ch in ipairs(rec.choices or {}) do
        assert(math.type(ch.K) == "integer" and math.type(ch.N) == "integer", "record: choice K, N")
        local function ok(n) return known[n] or n == "builtin" end
        assert(ok(ch.gemv) and ok(ch.gemm), "record: choice names a variant not in the record: " .. tostring(ch.gemv) .. ", " .. tostring(ch.gemm))
        emit("    {sizeof(tern_kernel_choice), %d, %d, \"%s\", \"%s\"},", ch.K, ch.N, ch.gemv, ch.gemm)
        nchoice = nchoice + 1
    end
    if nchoice == 0 then emit("    {0}") end
    emit("};")
    emit([[
static const tern_kernels_table tk_table = {
    TERN_KERNELS_ABI_VERSION, sizeof(tern_kernels_table), "%s",
    "generated by codegen/gen.lua from %s", __VERSION__,
    tk_variants, %d, sizeof(tern_kernel_variant), tk_choices, %d, sizeof(tern_kernel_choice), "%s"};

EXPORT const tern_kernels_table *tern_kernels_entry(void) { return &tk_table; }]],
        rec.target, record_name, #names, nchoice, rec.cpu or "")
    return table.concat(out, "\n") .. "\n"
end

-- Adds family f to grid g: a GEMV variant for each tile count x prefetch,
-- a GEMM variant for each {tiles, tokens}.
local function add_family(g, f, tiles, prefetches, gemms)
    for _, nt in ipairs(tiles) do
        for _, pf in ipairs(prefetches) do g[#g + 1] = { family = f, tiles = nt, tokens = 1, prefetch = pf } end
    end
    for _, b in ipairs(gemms) do g[#g + 1] = { family = f, tiles = b[1], tokens = b[2], prefetch = 0 } end
end

-- The grid `tern tune` and the tests search, per isa and patience.
function M.grid(isa, patience)
    local g, est, exh = {}, patience == "estimate", patience == "exhaustive"
    if isa == "neon" or isa == "sve2" then
        -- NEON: four registers a tile and token, so at most 6 of them
        add_family(g, "mad", est and { 1 } or { 1, 2 }, est and { 0 } or { 0, 1024 },
                   est and { { 1, 4 } } or { { 1, 2 }, { 1, 4 }, { 2, 2 }, { 1, 6 }, { 2, 3 } })
        return g
    end
    local pfs = est and { 4096 } or exh and { 0, 1024, 2048, 4096, 8192 } or { 0, 2048, 4096 }
    local gemm = est and { { 4, 4 } } or { { 2, 4 }, { 4, 4 }, { 3, 6 }, { 2, 8 } }
    if exh then gemm[#gemm + 1] = { 4, 6 }; gemm[#gemm + 1] = { 1, 8 } end
    for _, f in ipairs(isa == "avx512" and { "mad", "dense5" } or { "mad" }) do
        add_family(g, f, est and { 2 } or { 1, 2, 4 }, pfs, gemm)
    end
    if isa ~= "avx512" then return g end
    -- LUT families: two accumulators a tile and token, so smaller blocks;
    -- their lookups, not the weight bytes, bound them: no prefetch grid
    local lgemm = est and { { 2, 4 } } or { { 1, 4 }, { 2, 4 }, { 3, 4 }, { 1, 8 } }
    if exh then lgemm[#lgemm + 1] = { 2, 6 } end
    for _, f in ipairs({ "lut2", "lut3", "lut4" }) do add_family(g, f, est and { 2 } or { 1, 2, 4 }, { 0 }, lgemm) end
    return g
end

-- command line: gen.lua RECORD OUT.c
if arg and arg[0] and arg[0]:match("gen%.lua$") and arg[1] then
    local chunk = assert(loadfile(arg[1], "t", {}))
    local rec = chunk()
    if rec.grid then -- a record may ask for the whole tuning grid of its isa
        rec.variants = rec.variants or {}
        local have = {}
        for _, v in ipairs(rec.variants) do have[M.variant_name(rec.target, v)] = true end
        for _, v in ipairs(M.grid(rec.isa, rec.grid)) do
            if not have[M.variant_name(rec.target, v)] then rec.variants[#rec.variants + 1] = v end
        end
    end
    local name = arg[1]:match("([^/]*/[^/]*)$") or arg[1]
    local text = M.generate(rec, name)
    if arg[2] then
        local f = assert(io.open(arg[2], "wb"))
        f:write(text)
        f:close()
    else
        io.write(text)
    end
end
return M
