-- plugins/neon-dotprod.lua - Armv8.2-A with the dot-product extension
-- (Graviton 2/3, Apple M1+, Cortex-A76+): MAD over the MAD2 bytes, sdot's
-- lane form dotting each 2-bit field with four codes of one 16-byte load.
-- `grid` adds the isa's whole tuning grid so tests/kernels checks every
-- variant (under qemu: no ARM hardware here). No per-shape choices: none
-- were measured on ARM hardware, so `auto` keeps the arm backend's own
-- kernels; `--kernel neon-dotprod.mad.v1p0` runs one.
return {
    target = "neon-dotprod",
    isa = "neon",
    grid = "measure",
    variants = {},
    choices = {},
}
