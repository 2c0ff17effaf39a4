"""The accelerator assembly listing: `dlfusion-opt -t accel-asm` writes it,
`dlfusion-run program.s` (and `dlfusion-opt program.s`) read it back.

    dlfusion-opt model.onnx -p '...,lower-to-accel' -t accel-asm --emit-weights -o model.s
    dlfusion-run model.s                 # same outputs and latency as the .mlir
    dlfusion-opt model.s                 # back to accel IR

A listing is a compiled program (one `accel.program`) with its memory resolved:
every DRAM tensor has a byte address, every on-chip buffer an offset in its
memory. One directive or instruction per line, `;` starts a comment:

    .program "mlu100" cores=32 nram_bytes=524288 wram_bytes=1048576 element_bytes=2
    .inputs "x"
    .outputs "y"

    .dram %x input "x" 1x3x8x8 @0x00000000              ; 384 B
    .dram %w weight w0 4x3x3x3 @0x00000180              ; 216 B (a weight-store handle)
    .dram %y temp "conv1" 1x4x8x8 @0x00000280           ; 512 B
    .view %f = %y 1x256 @0x00000280                     ; alias of %y

    .kernel "conv1" cores=2 active=2                    ; nram 896 B of 524,288 B, ...
      .arg %in = %x                                     ; the kernel's DRAM operands
      .arg %wt = %w
      .arg %out = %y
      .buf %i nram 1x3x10x10 @0x00000                   ; per-core on-chip buffers
      .buf %k wram 2x3x3x3 @0x00000
      .buf %o nram 1x2x8x8 @0x00280
      fill     %i value=0.0
      load     %i[0,0,1,1], %in[0,0,0,0] sizes=[1,3,8,8]
      load     %k[0,0,0,0], %wt[c0-1: 2c,0,0,0] sizes=[2,3,3,3]
      conv     %o, %i, %k strides=[1,1] dilations=[1,1] groups=1
      eltwise.relu %o, %o
      store    %out[c0-1: 0,2c,0,0], %o[0,0,0,0] sizes=[1,2,8,8]
      barrier
    .end
    .return %y

    .data
    .blob w0 0x04000000...                              ; with --emit-weights

Rules:

- Instructions are the `accel` ops without the `accel.` prefix; `pool`,
  `eltwise` and `vector` carry their kind as a suffix (`pool.max`,
  `vector.softmax`). Operands come first, then the op's properties as
  `key=value` fields under their IR names (`eltwise` and `vector` write their
  `params` entries as fields). Discardable attributes go in `attrs={...}`.
- `load dst[offsets], src[offsets] sizes=...` mirrors the IR: the bracketed
  tables are `dst_offsets` and `src_offsets`.
- Per-core tables (`sizes`, offsets, exchange `ranges`): `[1,3,8,8]` is one
  entry shared by every core; otherwise groups of cores in order,
  `[c0-3: 0,32c,0,0 | c4-7: 0,0,0,0]`, where a group shares one entry or
  follows `base + step*c` (`32c`, `8+32c`; `c` the core number).
- Values: `3` (i64), `0.5`/`-inf`/`nan` (f32, shortest exact text), `"s"`,
  `[1,2]` (array<i64>), `{k=v, ...}`, and any other attribute as
  `#mlir"<MLIR text>"`.
- Addresses (`@0x...`) are derived: DRAM tensors are laid out in declaration
  order, 64-byte aligned, sized in the program's element_bytes; views and
  kernel arguments alias their source; each kernel's buffers are laid out in
  order per memory, 64-byte aligned. An address may be left out; one that is
  written must match, so a hand edit cannot silently disagree with the layout.
- Names follow xDSL's printer (`%x`, `%x_1`, numbers for unnamed values);
  each kernel is a scope of its own.
- `.data` holds the weight blobs in MLIR's blob format (hex of a uint32
  alignment and the raw bytes) when the listing is printed with
  `--emit-weights`; without them, running it needs `--timing-only`.
"""

from dlfusion.asm.printer import AccelAsmTarget, compute_layout, print_listing

__all__ = ["AccelAsmTarget", "compute_layout", "load_listing", "print_listing"]


def load_listing(text, ctx, name="<listing>"):
    """Parse a listing into a verified accel module (see dlfusion.asm.loader)."""
    from dlfusion.asm.loader import load_listing as _load

    return _load(text, ctx, name)
