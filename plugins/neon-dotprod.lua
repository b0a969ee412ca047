-- plugins/neon-dotprod.lua - Armv8.2-A with the dot-product extension
-- (Graviton 2/3, Apple M1+, Cortex-A76+). Described, not generated yet:
-- gen.lua has no NEON emitter. The plan: the MAD2 layout in 8-row tiles
-- (sdot/udot on 128-bit vectors, 4 codes per lane: udot of (w+1) fields by
-- the s8 codes needs usdot (i8mm), so dotprod-only CPUs use sdot on w in
-- {-1,0,1} sign-extended from the 2-bit field), and LUT g=2 with tbl.
-- SCons skips a record whose isa the compiler cannot target.
return {
    target = "neon-dotprod",
    isa = "neon",
    variants = {},
    choices = {},
}
