// RUN: dlfusion-opt %s --split-input-file -p lower-to-accel | filecheck %s
// RUN: dlfusion-opt %s --split-input-file -p 'lower-to-accel{target="%S/Inputs/tiny.toml"}' | filecheck %s --check-prefix=TINY
// RUN: dlfusion-opt %s --split-input-file -p lower-to-accel | dlfusion-opt --split-input-file | filecheck %s
// RUN: not dlfusion-opt %S/Inputs/lower-to-accel-cores.mlir -p lower-to-accel 2>&1 | filecheck %s --check-prefix=CORES
// RUN: not dlfusion-opt %S/Inputs/lower-to-accel-no-fit.mlir -p 'lower-to-accel{target="%S/Inputs/tiny.toml"}' 2>&1 | filecheck %s --check-prefix=NOFIT

// A group asking for more cores than the target has: one line.
// CORES: dlfusion-opt: fusion group 'g0' asks for 64 cores; target 'mlu100' has 32{{$}}

// A dense conv whose smallest tile (every input channel of one 3x3 window)
// does not fit the tiny target's NRAM: the kernel, the buffer, both sizes.
// NOFIT: dlfusion-opt: kernel 'big' does not fit on chip even with the smallest tiles: buffer 'big_in' (4608 bytes) brings its nram use to 4608 bytes, target 'tiny' has 2048 bytes of nram per core; the layer needs a target with more on-chip memory{{$}}

// CHECK-LABEL: input_names = ["one_core"]
// CHECK:         %one_core = accel.dram input "one_core" : memref<1x3x8x8xf32>
// CHECK-NEXT:    %c1_w = accel.dram weight dense_resource<c1_w> : memref<16x3x3x3xf32>
// CHECK-NEXT:    %c1_b = accel.dram weight dense_resource<c1_b> : memref<16xf32>
// CHECK-NEXT:    %y = accel.dram temp "y" : memref<1x16x8x8xf32>
// CHECK-NEXT:    accel.kernel "conv1" cores 1 active 1 ins(%one_core, %c1_w, %c1_b, %y : {{.*}}) {
// CHECK:           %conv1_w = accel.alloc : memref<16x3x3x3xf32, "wram">
// CHECK-NEXT:      %conv1_b = accel.alloc : memref<16xf32, "wram">
// CHECK-NEXT:      %conv1_in = accel.alloc : memref<1x3x10x10xf32, "nram">
// CHECK-NEXT:      %conv1_out = accel.alloc : memref<1x16x8x8xf32, "nram">
// CHECK:           accel.fill %conv1_in {value = 0.000000e+00 : f32}
// CHECK-NEXT:      accel.load %conv1_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 3, 8, 8>], dst_offsets = [array<i64: 0, 0, 1, 1>]}
// CHECK-NEXT:      accel.conv %conv1_out, %conv1_in, %conv1_w, %conv1_b {strides = array<i64: 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64}
// CHECK-NEXT:      accel.store %{{.*}}, %conv1_out {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 16, 8, 8>], dst_offsets = [array<i64: 0, 0, 0, 0>]}
// CHECK:         accel.return %y : memref<1x16x8x8xf32>
// TINY-LABEL:  input_names = ["one_core"]
// TINY:          accel.kernel "conv1" cores 1 active 1

// A conv on one core (no group): the whole layer at once; padding filled on
// chip, the input loaded at an offset.
func.func @main(%x: tensor<1x3x8x8xf32>) -> tensor<1x16x8x8xf32> attributes {nn.input_names = ["one_core"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<c1_w> : tensor<16x3x3x3xf32>
  %b = nn.weight dense_resource<c1_b> : tensor<16xf32>
  %conv1 = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<16x3x3x3xf32>, tensor<16xf32>) -> tensor<1x16x8x8xf32>
  func.return %conv1 : tensor<1x16x8x8xf32>
}

// -----

// CHECK-LABEL: input_names = ["four_cores"]
// CHECK:         accel.kernel "conv4" cores 4 active 4
// CHECK:           %c_w = accel.alloc : memref<32x16x1x1xf32, "wram">
// CHECK-NEXT:      %c_in = accel.alloc : memref<1x16x8x8xf32, "nram">
// CHECK-NEXT:      %c_out = accel.alloc : memref<1x32x8x8xf32, "nram">
// CHECK-NEXT:      accel.load %c_w, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 32, 0, 0, 0>, array<i64: 64, 0, 0, 0>, array<i64: 96, 0, 0, 0>], sizes = [array<i64: 32, 16, 1, 1>, array<i64: 32, 16, 1, 1>, array<i64: 32, 16, 1, 1>, array<i64: 32, 16, 1, 1>]
// CHECK-NEXT:      accel.load %c_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 16, 8, 8>], dst_offsets = [array<i64: 0, 0, 0, 0>]}
// CHECK-NEXT:      accel.conv %c_out, %c_in, %c_w
// CHECK-NEXT:      accel.store %{{.*}}, %c_out {{{.*}}dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 32, 0, 0>, array<i64: 0, 64, 0, 0>, array<i64: 0, 96, 0, 0>]}
// TINY-LABEL:  input_names = ["four_cores"]
// TINY:          accel.kernel "conv4" cores 4 active 4

// A conv on 4 cores: 128 channels, chunk 32 each; every core loads the
// whole input and its own slice of the weights.
func.func @main(%x: tensor<1x16x8x8xf32>) -> tensor<1x128x8x8xf32> attributes {nn.input_names = ["four_cores"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<c4_w> : tensor<128x16x1x1xf32>
  %y = nn.fusion_group "conv4" cores 4 ins(%x, %w) : (tensor<1x16x8x8xf32>, tensor<128x16x1x1xf32>) -> tensor<1x128x8x8xf32> {
  ^bb0(%a: tensor<1x16x8x8xf32>, %k: tensor<128x16x1x1xf32>):
    %c = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x8x8xf32>, tensor<128x16x1x1xf32>) -> tensor<1x128x8x8xf32>
    nn.yield %c : tensor<1x128x8x8xf32>
  }
  func.return %y : tensor<1x128x8x8xf32>
}

// -----

// CHECK-LABEL: input_names = ["few"]
// CHECK:         accel.kernel "few" cores 4 active 1
// CHECK:           %c_w = accel.alloc : memref<16x8x1x1xf32, "wram">
// CHECK:           accel.store %{{.*}}, %c_out {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 16, 8, 8>], dst_offsets = [array<i64: 0, 0, 0, 0>]}
// The tiny target's 4-lane MAC arrays split the same 16 channels 4 ways.
// TINY-LABEL:  input_names = ["few"]
// TINY:          accel.kernel "few" cores 4 active 4
// TINY:            %c_w = accel.alloc : memref<4x8x1x1xf32, "wram">

// Few channels: 16 output channels cannot be split into 32-lane groups, so
// one of the 4 cores works.
func.func @main(%x: tensor<1x8x8x8xf32>) -> tensor<1x16x8x8xf32> attributes {nn.input_names = ["few"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<few_w> : tensor<16x8x1x1xf32>
  %y = nn.fusion_group "few" cores 4 ins(%x, %w) : (tensor<1x8x8x8xf32>, tensor<16x8x1x1xf32>) -> tensor<1x16x8x8xf32> {
  ^bb0(%a: tensor<1x8x8x8xf32>, %k: tensor<16x8x1x1xf32>):
    %c = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x8x8xf32>, tensor<16x8x1x1xf32>) -> tensor<1x16x8x8xf32>
    nn.yield %c : tensor<1x16x8x8xf32>
  }
  func.return %y : tensor<1x16x8x8xf32>
}

// -----

// CHECK-LABEL: input_names = ["lanes"]
// CHECK:         accel.kernel "lanes" cores 3 active 2
// CHECK:           %c_w = accel.alloc : memref<32x8x1x1xf32, "wram">
// CHECK:           %c_out = accel.alloc : memref<1x32x4x4xf32, "nram">
// CHECK-NEXT:      accel.load %c_w, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 32, 0, 0, 0>, array<i64: 0, 0, 0, 0>], sizes = [array<i64: 32, 8, 1, 1>, array<i64: 8, 8, 1, 1>, array<i64: 0, 0, 0, 0>]
// CHECK:           accel.store %{{.*}}, %c_out {{{.*}}sizes = [array<i64: 1, 32, 4, 4>, array<i64: 1, 8, 4, 4>, array<i64: 0, 0, 0, 0>], dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 32, 0, 0>, array<i64: 0, 0, 0, 0>]}
// TINY-LABEL:  input_names = ["lanes"]
// TINY:          accel.kernel "lanes" cores 3 active 3

// Channel padding to lanes: 40 channels on 3 cores, chunk ceil(40/3) = 14
// rounded up to 32: cores 0 and 1 get 32 and 8 channels, core 2 is idle.
func.func @main(%x: tensor<1x8x4x4xf32>) -> tensor<1x40x4x4xf32> attributes {nn.input_names = ["lanes"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<ln_w> : tensor<40x8x1x1xf32>
  %y = nn.fusion_group "lanes" cores 3 ins(%x, %w) : (tensor<1x8x4x4xf32>, tensor<40x8x1x1xf32>) -> tensor<1x40x4x4xf32> {
  ^bb0(%a: tensor<1x8x4x4xf32>, %k: tensor<40x8x1x1xf32>):
    %c = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x4x4xf32>, tensor<40x8x1x1xf32>) -> tensor<1x40x4x4xf32>
    nn.yield %c : tensor<1x40x4x4xf32>
  }
  func.return %y : tensor<1x40x4x4xf32>
}

// -----

// CHECK-LABEL: input_names = ["rows"]
// CHECK:           %rows_in = accel.alloc : memref<1x4x18x18xf32, "nram">
// CHECK-COUNT-1:   accel.conv
// CHECK-NOT:       accel.conv
// Four tiles of 4 output rows; each input tile holds 6 rows (4 + 2 halo),
// the first and last with a row of padding.
// TINY-LABEL:  input_names = ["rows"]
// TINY:            %rows_in = accel.alloc : memref<1x4x6x18xf32, "nram">
// TINY-NEXT:       %rows_out = accel.alloc : memref<1x8x4x16xf32, "nram">
// TINY:            accel.fill %rows_in
// TINY-NEXT:       accel.load %rows_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 4, 5, 16>], dst_offsets = [array<i64: 0, 0, 1, 1>]}
// TINY-NEXT:       accel.conv %rows_out, %rows_in
// TINY-NEXT:       accel.store %{{.*}}, %rows_out {{{.*}}dst_offsets = [array<i64: 0, 0, 0, 0>]}
// TINY-NEXT:       accel.load %rows_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 3, 0>], sizes = [array<i64: 1, 4, 6, 16>], dst_offsets = [array<i64: 0, 0, 0, 1>]}
// TINY-NEXT:       accel.conv %rows_out, %rows_in
// TINY-NEXT:       accel.store %{{.*}}, %rows_out {{{.*}}dst_offsets = [array<i64: 0, 0, 4, 0>]}
// TINY-NEXT:       accel.load %rows_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 7, 0>], sizes = [array<i64: 1, 4, 6, 16>], dst_offsets = [array<i64: 0, 0, 0, 1>]}
// TINY-NEXT:       accel.conv %rows_out, %rows_in
// TINY-NEXT:       accel.store %{{.*}}, %rows_out {{{.*}}dst_offsets = [array<i64: 0, 0, 8, 0>]}
// TINY-NEXT:       accel.fill %rows_in
// TINY-NEXT:       accel.load %rows_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 11, 0>], sizes = [array<i64: 1, 4, 5, 16>], dst_offsets = [array<i64: 0, 0, 0, 1>]}
// TINY-NEXT:       accel.conv %rows_out, %rows_in
// TINY-NEXT:       accel.store %{{.*}}, %rows_out {{{.*}}dst_offsets = [array<i64: 0, 0, 12, 0>]}
// TINY-NEXT:     }

// A 3x3 conv on a 16x16 map: the padded input (4 x 18 x 18) fits NRAM on
// mlu100 but not on the tiny target, where output rows are tiled and each
// input tile carries its halo rows.
func.func @main(%x: tensor<1x4x16x16xf32>) -> tensor<1x8x16x16xf32> attributes {nn.input_names = ["rows"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<rt_w> : tensor<8x4x3x3xf32>
  %rows = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x16x16xf32>, tensor<8x4x3x3xf32>) -> tensor<1x8x16x16xf32>
  func.return %rows : tensor<1x8x16x16xf32>
}

// -----

// CHECK-LABEL: input_names = ["subblocks"]
// CHECK:           %sub_w = accel.alloc : memref<32x64x1x1xf32, "wram">
// CHECK-COUNT-1:   accel.conv
// CHECK-NOT:       accel.conv
// Sub-blocks of 8 channels (8 x 64 fp16 = 1 KiB), the input re-read for each.
// TINY-LABEL:  input_names = ["subblocks"]
// TINY:            %sub_w = accel.alloc : memref<8x64x1x1xf32, "wram">
// TINY-NEXT:       %sub_in = accel.alloc : memref<1x64x2x2xf32, "nram">
// TINY-NEXT:       %sub_out = accel.alloc : memref<1x8x2x2xf32, "nram">
// TINY-NEXT:       accel.load %sub_w, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 8, 64, 1, 1>]
// TINY-NEXT:       accel.load %sub_in
// TINY-NEXT:       accel.conv %sub_out, %sub_in, %sub_w
// TINY-NEXT:       accel.store %{{.*}}, %sub_out {{{.*}}dst_offsets = [array<i64: 0, 0, 0, 0>]}
// TINY-NEXT:       accel.load %sub_w, %{{.*}} {src_offsets = [array<i64: 8, 0, 0, 0>], sizes = [array<i64: 8, 64, 1, 1>]
// TINY-NEXT:       accel.load %sub_in
// TINY-NEXT:       accel.conv %sub_out, %sub_in, %sub_w
// TINY-NEXT:       accel.store %{{.*}}, %sub_out {{{.*}}dst_offsets = [array<i64: 0, 8, 0, 0>]}
// TINY:            accel.load %sub_w, %{{.*}} {src_offsets = [array<i64: 24, 0, 0, 0>], sizes = [array<i64: 8, 64, 1, 1>]
// TINY:            accel.store %{{.*}}, %sub_out {{{.*}}dst_offsets = [array<i64: 0, 24, 0, 0>]}
// TINY-NEXT:     }

// A 1x1 conv with 64 x 32 weights: 4 KiB of fp16, more than the tiny
// target's 1 KiB WRAM: the channels are processed in sub-blocks.
func.func @main(%x: tensor<1x64x2x2xf32>) -> tensor<1x32x2x2xf32> attributes {nn.input_names = ["subblocks"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<sb_w> : tensor<32x64x1x1xf32>
  %sub = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x64x2x2xf32>, tensor<32x64x1x1xf32>) -> tensor<1x32x2x2xf32>
  func.return %sub : tensor<1x32x2x2xf32>
}

// -----

// CHECK-LABEL: input_names = ["fused"]
// CHECK-NOT:     accel.dram temp "c1"
// CHECK-NOT:     accel.dram temp "r1"
// CHECK:         accel.dram temp "y"
// CHECK-NEXT:    accel.kernel "block" cores 2 active 2
// CHECK:           accel.conv %c1_out, %a_in, %c1_w
// CHECK-NEXT:      accel.eltwise %c1_out, %c1_out {kind = "relu", params = {}}
// Each core places its channel range of the relu into a full buffer (a 1x1
// convolution by a selection matrix), then the cores exchange them.
// CHECK:           %c1_out_sel = accel.alloc : memref<48x32x1x1xf32, "wram">
// CHECK:           accel.conv %c1_out_all, %c1_out, %c1_out_sel
// CHECK-NEXT:      accel.exchange %c1_out_all {axis = 1 : i64, ranges = [array<i64: 0, 32>, array<i64: 32, 48>]} : memref<1x48x6x6xf32, "nram">
// CHECK:           accel.conv %c2_out, %c1_out_all, %c2_w
// CHECK-NEXT:      accel.store
// CHECK-NOT:       accel.barrier
// CHECK:         accel.return %y
// TINY-LABEL:  input_names = ["fused"]
// TINY:          %c1 = accel.dram temp "c1" : memref<1x48x6x6xf32>
// TINY-NEXT:     %r1 = accel.dram temp "r1" : memref<1x48x6x6xf32>
// TINY-NEXT:     accel.kernel "block" cores 2 active 2
// TINY-NOT:        accel.exchange
// TINY:            accel.store %c1_{{.*}}, %c1_out
// TINY:            accel.barrier
// TINY-NEXT:       %r1_in = accel.alloc
// TINY:            accel.store %r1_{{.*}}, %r1_in
// TINY:            accel.barrier
// TINY-NEXT:       %c2_w = accel.alloc
// TINY-NOT:        accel.exchange
// TINY:          accel.return %y

// conv -> relu -> conv fused on 2 cores: on mlu100 the intermediates stay in
// NRAM (no DRAM temp) and the second conv gets every channel by an exchange;
// on the tiny target the group does not fit and spills to DRAM temps.
func.func @main(%x: tensor<1x8x6x6xf32>) -> tensor<1x8x6x6xf32> attributes {nn.input_names = ["fused"], nn.output_names = ["y"]} {
  %w1 = nn.weight dense_resource<f_w1> : tensor<48x8x3x3xf32>
  %w2 = nn.weight dense_resource<f_w2> : tensor<8x48x1x1xf32>
  %y = nn.fusion_group "block" cores 2 ins(%x, %w1, %w2) : (tensor<1x8x6x6xf32>, tensor<48x8x3x3xf32>, tensor<8x48x1x1xf32>) -> tensor<1x8x6x6xf32> {
  ^bb0(%a: tensor<1x8x6x6xf32>, %k1: tensor<48x8x3x3xf32>, %k2: tensor<8x48x1x1xf32>):
    %c1 = nn.conv2d %a, %k1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x6x6xf32>, tensor<48x8x3x3xf32>) -> tensor<1x48x6x6xf32>
    %r1 = nn.relu %c1 : (tensor<1x48x6x6xf32>) -> tensor<1x48x6x6xf32>
    %c2 = nn.conv2d %r1, %k2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x48x6x6xf32>, tensor<8x48x1x1xf32>) -> tensor<1x8x6x6xf32>
    nn.yield %c2 : tensor<1x8x6x6xf32>
  }
  func.return %y : tensor<1x8x6x6xf32>
}

// -----

// CHECK-LABEL: input_names = ["view"]
// CHECK:         %pool = accel.dram temp "pool" : memref<1x4x2x2xf32>
// CHECK:         %pool_view = accel.view %pool : memref<1x4x2x2xf32> to memref<1x16xf32>
// CHECK-NEXT:    accel.kernel "pool" cores 1 active 1
// CHECK:           accel.fill %pool_in {value = 0xff800000 : f32}
// CHECK-NEXT:      accel.load %pool_in, %{{.*}} {{{.*}}dst_offsets = [array<i64: 0, 0, 1, 1>]}
// CHECK-NEXT:      accel.pool %pool_out, %pool_in {kind = "max", kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, dilations = array<i64: 1, 1>, pads = array<i64: 1, 1, 0, 0>, count_include_pad = 0 : i64}
// CHECK:         accel.kernel "fc" cores 1 active 1 ins(%pool_view, %fc_w, %fc_b, %y
// CHECK:           accel.matmul %fc_out, %fc_a, %{{.*}}, %{{.*}} {trans_b = 1 : i64}
// CHECK:         accel.return %y : memref<1x10xf32>

// max pool -> reshape -> gemm: padding for max pooling is -inf; the reshape
// is a view of the pool's DRAM tensor.
func.func @main(%x: tensor<1x4x4x4xf32>) -> tensor<1x10xf32> attributes {nn.input_names = ["view"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<fc_w> : tensor<10x16xf32>
  %b = nn.weight dense_resource<fc_b> : tensor<10xf32>
  %pool = nn.max_pool %x {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, ceil_mode = 0 : i64} : (tensor<1x4x4x4xf32>) -> tensor<1x4x2x2xf32>
  %flat = nn.reshape %pool : (tensor<1x4x2x2xf32>) -> tensor<1x16xf32>
  %fc = nn.gemm %flat, %w, %b {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<1x16xf32>, tensor<10x16xf32>, tensor<10xf32>) -> tensor<1x10xf32>
  func.return %fc : tensor<1x10xf32>
}

// -----

// CHECK-LABEL: input_names = ["cat_a", "cat_b"]
// CHECK:         accel.kernel "cat" cores 2 active 2 ins(%cat_a, %cat_b, %y
// CHECK:           %cat_buf = accel.alloc : memref<1x64x2x2xf32, "nram">
// CHECK-NEXT:      accel.load %cat_buf, %cat_a{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], sizes = [array<i64: 1, 64, 2, 2>, array<i64: 0, 0, 0, 0>]
// CHECK-NEXT:      accel.store %y{{.*}}, %cat_buf {{{.*}}dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>]}
// CHECK-NEXT:      accel.load %cat_buf, %cat_b{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 64, 0, 0>], sizes = [array<i64: 1, 64, 2, 2>, array<i64: 1, 32, 2, 2>]
// CHECK-NEXT:      accel.store %y{{.*}}, %cat_buf {{{.*}}dst_offsets = [array<i64: 0, 64, 0, 0>, array<i64: 0, 128, 0, 0>]}
// CHECK-NEXT:    }
// CHECK-NOT:     accel.conv
// CHECK-NOT:     accel.vector
// concat on 2 cores: each input's channels are split over the cores (64
// vector lanes: 64 channels on one core, 96 as 64 + 32) and copied into the
// output at the input's channel offset, by DMA only.
func.func @main(%x: tensor<1x64x2x2xf32>, %z: tensor<1x96x2x2xf32>) -> tensor<1x160x2x2xf32> attributes {nn.input_names = ["cat_a", "cat_b"], nn.output_names = ["y"]} {
  %y = nn.fusion_group "cat" cores 2 ins(%x, %z) : (tensor<1x64x2x2xf32>, tensor<1x96x2x2xf32>) -> tensor<1x160x2x2xf32> {
  ^bb0(%a: tensor<1x64x2x2xf32>, %b: tensor<1x96x2x2xf32>):
    %cat = nn.concat %a, %b {axis = 1 : i64} : (tensor<1x64x2x2xf32>, tensor<1x96x2x2xf32>) -> tensor<1x160x2x2xf32>
    nn.yield %cat : tensor<1x160x2x2xf32>
  }
  func.return %y : tensor<1x160x2x2xf32>
}

// -----

// CHECK-LABEL: input_names = ["rows4"]
// CHECK:         accel.kernel "rows4" cores 4 active 4
// CHECK:           %c_w = accel.alloc : memref<32x16x3x3xf32, "wram">
// CHECK-NEXT:      %c_in = accel.alloc : memref<1x16x10x34xf32, "nram">
// CHECK-NEXT:      %c_out = accel.alloc : memref<1x32x8x32xf32, "nram">
// CHECK-NEXT:      accel.load %c_w, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [array<i64: 32, 16, 3, 3>], dst_offsets = [array<i64: 0, 0, 0, 0>]}
// CHECK-NEXT:      accel.fill %c_in {value = 0.000000e+00 : f32}
// CHECK-NEXT:      accel.load %c_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 7, 0>, array<i64: 0, 0, 15, 0>, array<i64: 0, 0, 23, 0>], sizes = [array<i64: 1, 16, 9, 32>, array<i64: 1, 16, 10, 32>, array<i64: 1, 16, 10, 32>, array<i64: 1, 16, 9, 32>], dst_offsets = [array<i64: 0, 0, 1, 1>, array<i64: 0, 0, 0, 1>, array<i64: 0, 0, 0, 1>, array<i64: 0, 0, 0, 1>]}
// CHECK-NEXT:      accel.conv %c_out, %c_in, %c_w
// CHECK-NEXT:      accel.store %{{.*}}, %c_out {{{.*}}sizes = [array<i64: 1, 32, 8, 32>, array<i64: 1, 32, 8, 32>, array<i64: 1, 32, 8, 32>, array<i64: 1, 32, 8, 32>], dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 8, 0>, array<i64: 0, 0, 16, 0>, array<i64: 0, 0, 24, 0>]}
// CHECK-NEXT:    }
// The tiny target's 4-lane MAC arrays give each core 8 channels: no rows split.
// TINY-LABEL:  input_names = ["rows4"]
// TINY:          accel.kernel "rows4" cores 4 active 4
// TINY:            accel.store %{{.*}}, %c_out {{{.*}}dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 8, 0, 0>, array<i64: 0, 16, 0, 0>, array<i64: 0, 24, 0, 0>]}

// Channels x rows: 32 output channels are one lane group, which the channel
// split gives to one core of the 4; instead each core computes all 32
// channels of a block of 8 output rows (1 x 4). Every core loads its rows
// plus the halo (the first and last block have a row of padding filled on
// chip) and stores its block at its row offset; the weights are one shared
// entry (one multicast read).
func.func @main(%x: tensor<1x16x32x32xf32>) -> tensor<1x32x32x32xf32> attributes {nn.input_names = ["rows4"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<r4_w> : tensor<32x16x3x3xf32>
  %y = nn.fusion_group "rows4" cores 4 ins(%x, %w) : (tensor<1x16x32x32xf32>, tensor<32x16x3x3xf32>) -> tensor<1x32x32x32xf32> {
  ^bb0(%a: tensor<1x16x32x32xf32>, %k: tensor<32x16x3x3xf32>):
    %c = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x32x32xf32>, tensor<32x16x3x3xf32>) -> tensor<1x32x32x32xf32>
    nn.yield %c : tensor<1x32x32x32xf32>
  }
  func.return %y : tensor<1x32x32x32xf32>
}

// -----

// CHECK-LABEL: input_names = ["dw_grid"]
// CHECK:         accel.kernel "dw" cores 4 active 4
// CHECK:           %c_w = accel.alloc : memref<32x1x3x3xf32, "wram">
// CHECK-NEXT:      %c_in = accel.alloc : memref<1x32x18x34xf32, "nram">
// CHECK-NEXT:      %c_out = accel.alloc : memref<1x32x16x32xf32, "nram">
// CHECK-NEXT:      accel.load %c_w, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>, array<i64: 32, 0, 0, 0>, array<i64: 32, 0, 0, 0>], sizes = [array<i64: 32, 1, 3, 3>, array<i64: 32, 1, 3, 3>, array<i64: 32, 1, 3, 3>, array<i64: 32, 1, 3, 3>]
// CHECK-NEXT:      accel.fill %c_in
// CHECK-NEXT:      accel.load %c_in, %{{.*}} {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 15, 0>, array<i64: 0, 32, 0, 0>, array<i64: 0, 32, 15, 0>], sizes = [array<i64: 1, 32, 17, 32>, array<i64: 1, 32, 17, 32>, array<i64: 1, 32, 17, 32>, array<i64: 1, 32, 17, 32>], dst_offsets = [array<i64: 0, 0, 1, 1>, array<i64: 0, 0, 0, 1>, array<i64: 0, 0, 1, 1>, array<i64: 0, 0, 0, 1>]}
// CHECK-NEXT:      accel.conv %c_out, %c_in, %c_w {strides = array<i64: 1, 1>, dilations = array<i64: 1, 1>, groups = 32 : i64}
// CHECK-NEXT:      accel.store %{{.*}}, %c_out {{{.*}}dst_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 16, 0>, array<i64: 0, 32, 0, 0>, array<i64: 0, 32, 16, 0>]}
// CHECK-NEXT:    }
// TINY-LABEL:  input_names = ["dw_grid"]
// TINY:          accel.kernel "dw" cores 4 active 4
// TINY:            %c_w = accel.alloc : memref<2x1x3x3xf32, "wram">

// Channels x rows on a depthwise convolution: 64 channels are two lane
// groups, so the 4 cores are 2 channel groups x 2 blocks of 16 rows. Cores
// 0 and 1 (channel group 0) share their weight slice (identical entries: one
// multicast read), as do cores 2 and 3; each core reads its own channels of
// its rows.
func.func @main(%x: tensor<1x64x32x32xf32>) -> tensor<1x64x32x32xf32> attributes {nn.input_names = ["dw_grid"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<dw_w> : tensor<64x1x3x3xf32>
  %y = nn.fusion_group "dw" cores 4 ins(%x, %w) : (tensor<1x64x32x32xf32>, tensor<64x1x3x3xf32>) -> tensor<1x64x32x32xf32> {
  ^bb0(%a: tensor<1x64x32x32xf32>, %k: tensor<64x1x3x3xf32>):
    %c = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 64 : i64} : (tensor<1x64x32x32xf32>, tensor<64x1x3x3xf32>) -> tensor<1x64x32x32xf32>
    nn.yield %c : tensor<1x64x32x32xf32>
  }
  func.return %y : tensor<1x64x32x32xf32>
}
