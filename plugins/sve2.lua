-- plugins/sve2.lua - Armv9-A SVE2 (Graviton 4, Neoverse V2): described,
-- not generated yet (no SVE2 emitter in gen.lua). The plan: vector-length
-- agnostic tiles of VL/32 rows (svdot on svint8), svtbl lookups for the
-- LUT and dense5 decodes, predicated tails instead of padded copies.
return {
    target = "sve2",
    isa = "sve2",
    variants = {},
    choices = {},
}
