-- plugins/sve2.lua - Armv9-A SVE2 (Graviton 4, Neoverse V2): vector-length
-- agnostic MAD over the MAD2 bytes (segments of min(VL, 64) bytes of a
-- block, svld1rq + svdot_lane), the same code at every VL. `grid` adds the
-- isa's tuning grid so tests/kernels checks every variant (under qemu at
-- VL 128/256/512 bits). No choices: not measured on ARM hardware, so
-- `auto` keeps the arm backend's own kernels; `--kernel sve2.mad.m1x4` runs one.
return {
    target = "sve2",
    isa = "sve2",
    grid = "measure",
    variants = {},
    choices = {},
}
