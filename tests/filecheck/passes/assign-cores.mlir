// assign-cores: a core number for each nn.fusion_group that has none (or
// for every group with override=true): the measured best, or a fixed number.
//
// RUN: dlfusion-opt %s -p assign-cores | filecheck %s --check-prefix=MEASURED
// RUN: dlfusion-opt %s -p 'assign-cores{strategy=measured core-choices=1,2}' | filecheck %s --check-prefix=CHOICES
// RUN: dlfusion-opt %s -p 'assign-cores{cores=4}' | filecheck %s --check-prefix=FIXED
// RUN: dlfusion-opt %s -p 'assign-cores{cores=16 override=true}' | filecheck %s --check-prefix=OVERRIDE
// RUN: dlfusion-opt %s -p 'assign-cores{cores=4},lower-to-accel' | filecheck %s --check-prefix=ACCEL
// RUN: dlfusion-opt %s -p 'assign-cores{cores=4},assign-cores{cores=8}' | filecheck %s --check-prefix=FIXED
// Groups from fuse-layers without core numbers, then measured:
// RUN: dlfusion-opt %S/Inputs/assign-cores-layers.mlir -p 'fuse-layers{strategy=baseline set-cores=false},assign-cores{target=edge8}' | filecheck %s --check-prefix=PIPE
//
// RUN: not dlfusion-opt %s -p 'assign-cores{cores=64}' 2>&1 | filecheck %s --check-prefix=TOOMANY
// RUN: not dlfusion-opt %s -p 'assign-cores{strategy=magic}' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not dlfusion-opt %S/Inputs/assign-cores-layers.mlir -p assign-cores 2>&1 | filecheck %s --check-prefix=NOGROUPS

// A residual block in three groups: g1 has a core number, g0 and g2 do not.
func.func @main(%x: tensor<1x64x28x28xf32>) -> tensor<1x128x28x28xf32> attributes {nn.input_names = ["x"], nn.output_names = ["out"]} {
  %c1.w = nn.weight dense_resource<c1.w> : tensor<128x64x3x3xf32>
  %c1.b = nn.weight dense_resource<c1.b> : tensor<128xf32>
  %r1 = nn.fusion_group "g0" ins(%x, %c1.w, %c1.b) : (tensor<1x64x28x28xf32>, tensor<128x64x3x3xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32> {
  ^bb0(%x_1: tensor<1x64x28x28xf32>, %c1.w_1: tensor<128x64x3x3xf32>, %c1.b_1: tensor<128xf32>):
    %c1 = nn.conv2d %x_1, %c1.w_1, %c1.b_1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x64x28x28xf32>, tensor<128x64x3x3xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32>
    %r1_1 = nn.relu %c1 : (tensor<1x128x28x28xf32>) -> tensor<1x128x28x28xf32>
    nn.yield %r1_1 : tensor<1x128x28x28xf32>
  }
  %c2.w = nn.weight dense_resource<c2.w> : tensor<128x128x3x3xf32>
  %c2.b = nn.weight dense_resource<c2.b> : tensor<128xf32>
  %short.w = nn.weight dense_resource<short.w> : tensor<128x64x1x1xf32>
  %short.b = nn.weight dense_resource<short.b> : tensor<128xf32>
  %short = nn.fusion_group "g1" cores 2 ins(%x, %short.w, %short.b) : (tensor<1x64x28x28xf32>, tensor<128x64x1x1xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32> {
  ^bb0(%x_2: tensor<1x64x28x28xf32>, %short.w_1: tensor<128x64x1x1xf32>, %short.b_1: tensor<128xf32>):
    %short_1 = nn.conv2d %x_2, %short.w_1, %short.b_1 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x64x28x28xf32>, tensor<128x64x1x1xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32>
    nn.yield %short_1 : tensor<1x128x28x28xf32>
  }
  %out = nn.fusion_group "g2" ins(%r1, %c2.w, %c2.b, %short) : (tensor<1x128x28x28xf32>, tensor<128x128x3x3xf32>, tensor<128xf32>, tensor<1x128x28x28xf32>) -> tensor<1x128x28x28xf32> {
  ^bb0(%r1_2: tensor<1x128x28x28xf32>, %c2.w_1: tensor<128x128x3x3xf32>, %c2.b_1: tensor<128xf32>, %short_2: tensor<1x128x28x28xf32>):
    %c2 = nn.conv2d %r1_2, %c2.w_1, %c2.b_1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x128x28x28xf32>, tensor<128x128x3x3xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32>
    %add = nn.add %c2, %short_2 : (tensor<1x128x28x28xf32>, tensor<1x128x28x28xf32>) -> tensor<1x128x28x28xf32>
    %out_1 = nn.relu %add : (tensor<1x128x28x28xf32>) -> tensor<1x128x28x28xf32>
    nn.yield %out_1 : tensor<1x128x28x28xf32>
  }
  func.return %out : tensor<1x128x28x28xf32>
}

// g0 and g2 get their measured best core numbers; g1 keeps its 2.
// MEASURED: nn.fusion_group "g0" cores {{[0-9]+}} ins
// MEASURED: nn.fusion_group "g1" cores 2 ins
// MEASURED: nn.fusion_group "g2" cores {{[0-9]+}} ins

// CHOICES: nn.fusion_group "g0" cores {{[12]}} ins
// CHOICES: nn.fusion_group "g1" cores 2 ins
// CHOICES: nn.fusion_group "g2" cores {{[12]}} ins

// FIXED: nn.fusion_group "g0" cores 4 ins
// FIXED: nn.fusion_group "g1" cores 2 ins
// FIXED: nn.fusion_group "g2" cores 4 ins

// OVERRIDE: nn.fusion_group "g0" cores 16 ins
// OVERRIDE: nn.fusion_group "g1" cores 16 ins
// OVERRIDE: nn.fusion_group "g2" cores 16 ins

// ACCEL: accel.kernel "g0" cores 4 active {{[0-9]+}}
// ACCEL: accel.kernel "g1" cores 2 active {{[0-9]+}}
// ACCEL: accel.kernel "g2" cores 4 active {{[0-9]+}}

// PIPE: nn.fusion_group "g0" cores {{[0-9]+}} ins
// PIPE: nn.fusion_group "g1" cores {{[0-9]+}} ins
// PIPE: nn.fusion_group "g2" cores {{[0-9]+}} ins
// PIPE-NOT: nn.fusion_group "g{{[0-9]+}}" ins

// TOOMANY: dlfusion-opt: assign-cores: cores=64 is not within 1..32 (the cores of target 'mlu100')
// UNKNOWN: dlfusion-opt: assign-cores: unknown strategy 'magic'; choose one of measured, or give cores=N
// NOGROUPS: dlfusion-opt: assign-cores: the module has no nn.fusion_group ops; run fuse-layers first (fuse-layers{strategy=baseline} puts every layer in a group)
