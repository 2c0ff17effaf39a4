// The accel-asm target: an accel program as an address-resolved listing; the
// listing reads back (.s frontend) to the same program.
//
// RUN: dlfusion-opt %s -t accel-asm | filecheck %s
// RUN: dlfusion-opt %s -t accel-asm -o %t.s && dlfusion-opt %t.s -t accel-asm | filecheck %s
// RUN: dlfusion-opt %s -t accel-asm --emit-weights | filecheck %s --check-prefix=DATA
// RUN: dlfusion-opt %s -t accel-asm --emit-weights -o %t.w.s && dlfusion-opt %t.w.s --emit-weights | filecheck %s --check-prefix=MLIR

accel.program attributes {target = "edge8", cores = 8 : i64, nram_bytes = 131072 : i64, wram_bytes = 262144 : i64, element_bytes = 2 : i64, input_names = ["x"], output_names = ["y"]} {
  %x = accel.dram input "x" : memref<1x4x4x4xf32>
  %w = accel.dram weight dense_resource<conv_w> : memref<4x4x1x1xf32>
  %t = accel.dram temp "conv" : memref<1x4x4x4xf32>
  %y = accel.dram temp "pool" : memref<1x4x2x2xf32>
  accel.kernel "conv" cores 4 active 2 ins(%x, %w, %t : memref<1x4x4x4xf32>, memref<4x4x1x1xf32>, memref<1x4x4x4xf32>) {
  ^bb0(%in: memref<1x4x4x4xf32>, %wt: memref<4x4x1x1xf32>, %out: memref<1x4x4x4xf32>):
    %i = accel.alloc : memref<1x4x4x4xf32, "nram">
    %k = accel.alloc : memref<2x4x1x1xf32, "wram">
    %o = accel.alloc : memref<1x2x4x4xf32, "nram">
    accel.load %i, %in {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 4, 4, 4>, array<i64: 1, 4, 4, 4>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], dst_offsets = [array<i64: 0, 0, 0, 0>]} : memref<1x4x4x4xf32, "nram">, memref<1x4x4x4xf32>
    accel.load %k, %wt {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 2, 0, 0, 0>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], sizes = [array<i64: 2, 4, 1, 1>, array<i64: 2, 4, 1, 1>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], dst_offsets = [array<i64: 0, 0, 0, 0>]} : memref<2x4x1x1xf32, "wram">, memref<4x4x1x1xf32>
    accel.conv %o, %i, %k {strides = array<i64: 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : memref<1x2x4x4xf32, "nram">, memref<1x4x4x4xf32, "nram">, memref<2x4x1x1xf32, "wram">
    accel.eltwise %o, %o {kind = "clip", params = {min = 0.0 : f32, max = 6.0 : f32}} : memref<1x2x4x4xf32, "nram">, memref<1x2x4x4xf32, "nram">
    accel.store %out, %o {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 2, 4, 4>, array<i64: 1, 2, 4, 4>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 2, 0, 0>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>]} : memref<1x4x4x4xf32>, memref<1x2x4x4xf32, "nram">
  }
  %flat = accel.view %t : memref<1x4x4x4xf32> to memref<1x64xf32>
  accel.kernel "pool" cores 2 active 2 ins(%t, %y : memref<1x4x4x4xf32>, memref<1x4x2x2xf32>) {
  ^bb0(%in: memref<1x4x4x4xf32>, %out: memref<1x4x2x2xf32>):
    %a = accel.alloc : memref<1x4x4x4xf32, "nram">
    %p = accel.alloc : memref<1x4x2x2xf32, "nram">
    accel.fill %a {value = 0xFF800000 : f32} : memref<1x4x4x4xf32, "nram">
    accel.load %a, %in {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 2, 0, 0>], sizes = [array<i64: 1, 2, 4, 4>], dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 2, 0, 0>]} : memref<1x4x4x4xf32, "nram">, memref<1x4x4x4xf32>
    accel.pool %p, %a {kind = "max", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, dilations = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, count_include_pad = 0 : i64} : memref<1x4x2x2xf32, "nram">, memref<1x4x4x4xf32, "nram">
    accel.exchange %p {axis = 1 : i64, ranges = [array<i64: 0, 2>, array<i64: 2, 4>]} : memref<1x4x2x2xf32, "nram">
    accel.store %out, %p {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 4, 2, 2>, array<i64: 0, 0, 0, 0>], dst_offsets = [array<i64: 0, 0, 0, 0>]} : memref<1x4x2x2xf32>, memref<1x4x2x2xf32, "nram">
    accel.barrier
  }
  accel.return %y : memref<1x4x2x2xf32>
}

{-#
  dialect_resources: {
    nn: {
      conv_w: "0x040000000000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f"
    }
  }
#-}

// The header: target, cores, capacities, element size, graph names.
// CHECK:      .program "edge8" cores=8 nram_bytes=131072 wram_bytes=262144 element_bytes=2 ; 128 KiB nram, 256 KiB wram per core
// CHECK-NEXT: .inputs "x"
// CHECK-NEXT: .outputs "y"

// DRAM: declaration order, 64-byte aligned, sized at 2 bytes per element;
// a weight by its handle.
// CHECK:      .dram %x input "x" 1x4x4x4 @0x00000000 ; 128 B
// CHECK-NEXT: .dram %w weight conv_w 4x4x1x1 @0x00000080 ; 32 B
// CHECK-NEXT: .dram %t temp "conv" 1x4x4x4 @0x000000c0 ; 128 B
// CHECK-NEXT: .dram %y temp "pool" 1x4x2x2 @0x00000140 ; 32 B

// A kernel: its DRAM operands, its buffers at per-memory offsets, then the
// instructions; per-core tables by groups of cores (`2c` = 2 x core number).
// CHECK:      .kernel "conv" cores=4 active=2 ; nram 192 B of 131,072 B, wram 64 B of 262,144 B
// CHECK-NEXT:   .arg %in = %x ; @0x00000000, 1x4x4x4, 128 B
// CHECK-NEXT:   .arg %wt = %w ; @0x00000080, 4x4x1x1, 32 B
// CHECK-NEXT:   .arg %out = %t ; @0x000000c0, 1x4x4x4, 128 B
// CHECK-NEXT:   .buf %i nram 1x4x4x4 @0x00000 ; 128 B
// CHECK-NEXT:   .buf %k wram 2x4x1x1 @0x00000 ; 16 B
// CHECK-NEXT:   .buf %o nram 1x2x4x4 @0x00080 ; 64 B
// CHECK-NEXT:   load %i[0,0,0,0], %in[0,0,0,0] sizes=[c0-1: 1,4,4,4 | c2-3: 0,0,0,0] ; 256 B over 2 core(s)
// CHECK-NEXT:   load %k[0,0,0,0], %wt[c0-1: 2c,0,0,0 | c2-3: 0,0,0,0] sizes=[c0-1: 2,4,1,1 | c2-3: 0,0,0,0] ; 32 B over 2 core(s)
// CHECK-NEXT:   conv %o, %i, %k strides=[1,1] dilations=[1,1] groups=1 ; 128 MACs per core
// CHECK-NEXT:   eltwise.clip %o, %o min=0.0 max=6.0
// CHECK-NEXT:   store %out[c0-1: 0,2c,0,0 | c2-3: 0,0,0,0], %o[0,0,0,0] sizes=[c0-1: 1,2,4,4 | c2-3: 0,0,0,0] ; 128 B over 2 core(s)
// CHECK-NEXT: .end

// A view aliases its source's address.
// CHECK:      .view %flat = %t 1x64 @0x000000c0 ; alias of %t, 128 B

// CHECK:      .kernel "pool" cores=2 active=2 ; nram 192 B of 131,072 B, wram 0 B of 262,144 B
// CHECK-NEXT:   .arg %in = %t ; @0x000000c0, 1x4x4x4, 128 B
// CHECK-NEXT:   .arg %out = %y ; @0x00000140, 1x4x2x2, 32 B
// CHECK-NEXT:   .buf %a nram 1x4x4x4 @0x00000 ; 128 B
// CHECK-NEXT:   .buf %p nram 1x4x2x2 @0x00080 ; 32 B
// CHECK-NEXT:   fill %a value=-inf
// CHECK-NEXT:   load %a[c0-1: 0,2c,0,0], %in[c0-1: 0,2c,0,0] sizes=[1,2,4,4] ; 128 B over 2 core(s)
// CHECK-NEXT:   pool.max %p, %a kernel=[2,2] strides=[2,2] dilations=[1,1] pads=[0,0,0,0] count_include_pad=0
// CHECK-NEXT:   exchange %p axis=1 ranges=[c0-1: 2c,2+2c] ; 32 B over the interconnect
// CHECK-NEXT:   store %out[0,0,0,0], %p[0,0,0,0] sizes=[c0: 1,4,2,2 | c1: 0,0,0,0] ; 32 B over 1 core(s)
// CHECK-NEXT:   barrier
// CHECK-NEXT: .end
// CHECK:      .return %y
// CHECK-NOT:  .blob

// With --emit-weights the listing carries the blobs (MLIR's blob format).
// DATA:      .dram %w weight conv_w 4x4x1x1 @0x00000080
// DATA:      .data
// DATA-NEXT: ; conv_w: 64 B
// DATA-NEXT: .blob conv_w 0x040000000000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f

// Read back, the listing is the program it was printed from.
// MLIR:      accel.program attributes {target = "edge8", cores = 8 : i64, nram_bytes = 131072 : i64, wram_bytes = 262144 : i64, element_bytes = 2 : i64, input_names = ["x"], output_names = ["y"]} {
// MLIR-NEXT:   %x = accel.dram input "x" : memref<1x4x4x4xf32>
// MLIR-NEXT:   %w = accel.dram weight dense_resource<conv_w> : memref<4x4x1x1xf32>
// MLIR:        accel.kernel "conv" cores 4 active 2 ins(%x, %w, %t : memref<1x4x4x4xf32>, memref<4x4x1x1xf32>, memref<1x4x4x4xf32>) {
// MLIR-NEXT:   ^bb0(%in: memref<1x4x4x4xf32>, %wt: memref<4x4x1x1xf32>, %out: memref<1x4x4x4xf32>):
// MLIR:          accel.load %k, %wt {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 2, 0, 0, 0>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], sizes = [array<i64: 2, 4, 1, 1>, array<i64: 2, 4, 1, 1>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], dst_offsets = [array<i64: 0, 0, 0, 0>]}
// MLIR:          accel.eltwise %o, %o {kind = "clip", params = {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32}}
// MLIR:        %flat = accel.view %t : memref<1x4x4x4xf32> to memref<1x64xf32>
// MLIR:          accel.fill %a {value = 0xff800000 : f32}
// MLIR:          accel.exchange %p {axis = 1 : i64, ranges = [array<i64: 0, 2>, array<i64: 2, 4>]}
// MLIR:        accel.return %y : memref<1x4x2x2xf32>
// MLIR:      conv_w: "0x040000000000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f"
