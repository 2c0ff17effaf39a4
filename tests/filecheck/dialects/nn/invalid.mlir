// RUN: dlfusion-opt %s --split-input-file --verify-diagnostics --parsing-diagnostics | filecheck %s

// One case per verifier error of each nn op: every chunk must be rejected
// with its own message (each message must directly follow its chunk's separator).

// CHECK: {{^}}result 'result' at position 0 does not verify:
%w = "nn.weight"() <{handle = "a"}> : () -> f32

// -----

// CHECK: {{^// -+$}}
// CHECK:      invalid.mlir:15:36
// CHECK-NEXT: %w = nn.weight dense_resource<a> : f32
// CHECK:      nn.weight must have a tensor type, got f32
%w = nn.weight dense_resource<a> : f32

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result type tensor<1x5xf32> differs from input type tensor<1x4xf32>
func.func @f(%x: tensor<1x4xf32>) {
  %r = nn.relu %x : (tensor<1x4xf32>) -> tensor<1x5xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}shapes [2, 3] and [2, 4] are not broadcastable
func.func @f(%a: tensor<2x3xf32>, %b: tensor<2x4xf32>) {
  %r = nn.add %a, %b : (tensor<2x3xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [2, 4] does not match the expected [2, 3]
func.func @f(%a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  %r = nn.mul %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}conv2d input must have rank 4, got (3, 8, 8)
func.func @f(%x: tensor<3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}conv2d weight must have rank 4, got (4, 3, 3)
func.func @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}conv2d needs 2 strides, 2 dilations and 4 pads
func.func @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}conv2d strides, dilations, groups must be positive
func.func @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 0, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}channels in (4) and out (4) must be divisible by groups (3)
func.func @f(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 3 : i64} : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}weight has 3 input channels per group, input has 4 channels in 1 group(s)
func.func @f(%x: tensor<1x4x8x8xf32>, %w: tensor<8x3x3x3xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<8x3x3x3xf32>) -> tensor<1x8x6x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}bias must have shape [4], got (3,)
func.func @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<3xf32>) {
  %r = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}conv2d window is larger than the padded input
func.func @f(%x: tensor<1x3x2x2xf32>, %w: tensor<4x3x5x5xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x2x2xf32>, tensor<4x3x5x5xf32>) -> tensor<1x4x1x1xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [1, 4, 8, 8] does not match the expected [1, 4, 4, 4]
func.func @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  %r = nn.conv2d %x, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}gemm A must have rank 2, got (2, 3, 4)
func.func @f(%a: tensor<2x3x4xf32>, %b: tensor<4x5xf32>) {
  %r = nn.gemm %a, %b {trans_a = 0 : i64, trans_b = 0 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<2x3x4xf32>, tensor<4x5xf32>) -> tensor<6x5xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}gemm inner dimensions differ: 3 and 4
func.func @f(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) {
  %r = nn.gemm %a, %b {trans_a = 0 : i64, trans_b = 0 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<2x3xf32>, tensor<4x5xf32>) -> tensor<2x5xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}shapes [2, 2] and [2, 5] are not broadcastable
func.func @f(%a: tensor<2x3xf32>, %b: tensor<5x3xf32>, %c: tensor<2x2xf32>) {
  %r = nn.gemm %a, %b, %c {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<2x3xf32>, tensor<5x3xf32>, tensor<2x2xf32>) -> tensor<2x5xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [3, 5] does not match the expected [2, 5]
func.func @f(%a: tensor<3x2xf32>, %b: tensor<3x5xf32>) {
  %r = nn.gemm %a, %b {trans_a = 1 : i64, trans_b = 0 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<3x2xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}matmul inner dimensions differ: 4 and 5
func.func @f(%a: tensor<2x3x4xf32>, %b: tensor<5x6xf32>) {
  %r = nn.matmul %a, %b : (tensor<2x3x4xf32>, tensor<5x6xf32>) -> tensor<2x3x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [3, 6] does not match the expected [2, 3, 6]
func.func @f(%a: tensor<2x3x4xf32>, %b: tensor<4x6xf32>) {
  %r = nn.matmul %a, %b : (tensor<2x3x4xf32>, tensor<4x6xf32>) -> tensor<3x6xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}batch_norm input must have a channel axis
func.func @f(%x: tensor<4xf32>, %p: tensor<4xf32>) {
  %r = nn.batch_norm %x, %p, %p, %p, %p {epsilon = 1.0e-05 : f32} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}batch_norm mean must have shape [4], got [2]
func.func @f(%x: tensor<1x4x2x2xf32>, %p: tensor<4xf32>, %q: tensor<2xf32>) {
  %r = nn.batch_norm %x, %p, %p, %q, %p {epsilon = 1.0e-05 : f32} : (tensor<1x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<2xf32>, tensor<4xf32>) -> tensor<1x4x2x2xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [1, 4, 2, 3] does not match the expected [1, 4, 2, 2]
func.func @f(%x: tensor<1x4x2x2xf32>) {
  %r = nn.lrn %x {size = 3 : i64, alpha = 1.0e-04 : f32, beta = 0.75 : f32, bias = 1.0 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x3xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}softmax axis 2 out of range for rank 2
func.func @f(%x: tensor<1x4xf32>) {
  %r = nn.softmax %x {axis = 2 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}nn.max_pool input must have rank 4, got (4, 8, 8)
func.func @f(%x: tensor<4x8x8xf32>) {
  %r = nn.max_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64} : (tensor<4x8x8xf32>) -> tensor<4x4x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}nn.max_pool needs 2 kernel sizes, 2 strides, 4 pads
func.func @f(%x: tensor<1x4x8x8xf32>) {
  %r = nn.max_pool %x {kernel = array<i64: 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}nn.avg_pool kernel and strides must be positive
func.func @f(%x: tensor<1x4x8x8xf32>) {
  %r = nn.avg_pool %x {kernel = array<i64: 0, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64, count_include_pad = 0 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [1, 4, 3, 3] does not match the expected [1, 4, 4, 4]
func.func @f(%x: tensor<1x4x8x8xf32>) {
  %r = nn.max_pool %x {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 1 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x3x3xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}global_avg_pool input needs spatial axes
func.func @f(%x: tensor<1x4xf32>) {
  %r = nn.global_avg_pool %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [1, 4] does not match the expected [1, 4, 1, 1]
func.func @f(%x: tensor<1x4x8x8xf32>) {
  %r = nn.global_avg_pool %x : (tensor<1x4x8x8xf32>) -> tensor<1x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}reduce_mean axes [2, 2] invalid for rank 4
func.func @f(%x: tensor<1x4x8x8xf32>) {
  %r = nn.reduce_mean %x {axes = array<i64: 2, 2>, keepdims = 1 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x1x8xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [1, 4] does not match the expected [1, 4, 1, 1]
func.func @f(%x: tensor<1x4x8x8xf32>) {
  %r = nn.reduce_mean %x {axes = array<i64: 2, 3>, keepdims = 1 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}concat needs at least one input
func.func @f() {
  %r = nn.concat {axis = 0 : i64} : () -> tensor<1xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}concat axis 2 out of range for rank 2
func.func @f(%a: tensor<1x4xf32>) {
  %r = nn.concat %a, %a {axis = 2 : i64} : (tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<1x8xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}concat inputs {{\[\[}}1, 4], [2, 4]] differ outside axis 1
func.func @f(%a: tensor<1x4xf32>, %b: tensor<2x4xf32>) {
  %r = nn.concat %a, %b {axis = 1 : i64} : (tensor<1x4xf32>, tensor<2x4xf32>) -> tensor<1x8xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [1, 8] does not match the expected [1, 7]
func.func @f(%a: tensor<1x4xf32>, %b: tensor<1x3xf32>) {
  %r = nn.concat %a, %b {axis = 1 : i64} : (tensor<1x4xf32>, tensor<1x3xf32>) -> tensor<1x8xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}split axis 2 out of range for rank 2
func.func @f(%x: tensor<1x4xf32>) {
  %a, %b = nn.split %x {axis = 2 : i64} : (tensor<1x4xf32>) -> (tensor<1x2xf32>, tensor<1x2xf32>)
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}split result [2, 2] differs from input [1, 4] outside axis 1
func.func @f(%x: tensor<1x4xf32>) {
  %a, %b = nn.split %x {axis = 1 : i64} : (tensor<1x4xf32>) -> (tensor<1x2xf32>, tensor<2x2xf32>)
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}split sizes add up to 5, axis 1 has 4
func.func @f(%x: tensor<1x4xf32>) {
  %a, %b = nn.split %x {axis = 1 : i64} : (tensor<1x4xf32>) -> (tensor<1x2xf32>, tensor<1x3xf32>)
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}slice needs one start, end and step per axis
func.func @f(%x: tensor<2x4xf32>) {
  %r = nn.slice %x {starts = array<i64: 0>, ends = array<i64: 2, 4>, steps = array<i64: 1, 1>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}slice steps must be non-zero
func.func @f(%x: tensor<2x4xf32>) {
  %r = nn.slice %x {starts = array<i64: 0, 0>, ends = array<i64: 2, 4>, steps = array<i64: 1, 0>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [2, 4] does not match the expected [2, 2]
func.func @f(%x: tensor<2x4xf32>) {
  %r = nn.slice %x {starts = array<i64: 0, 0>, ends = array<i64: 2, 4>, steps = array<i64: 1, 2>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}reshape from [2, 4] to [3, 3] changes the element count
func.func @f(%x: tensor<2x4xf32>) {
  %r = nn.reshape %x : (tensor<2x4xf32>) -> tensor<3x3xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}transpose perm [0, 0, 1] is not a permutation of rank 3
func.func @f(%x: tensor<2x3x4xf32>) {
  %r = nn.transpose %x {perm = array<i64: 0, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<2x2x3xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [4, 3, 2] does not match the expected [4, 2, 3]
func.func @f(%x: tensor<2x3x4xf32>) {
  %r = nn.transpose %x {perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x3x2xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}pad needs 4 pads, got 2
func.func @f(%x: tensor<2x4xf32>) {
  %r = nn.pad %x {pads = array<i64: 1, 1>, mode = "constant", value = 0.0 : f32} : (tensor<2x4xf32>) -> tensor<4x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}pad mode 'wrap' is not one of constant, reflect, edge
func.func @f(%x: tensor<2x4xf32>) {
  %r = nn.pad %x {pads = array<i64: 1, 0, 1, 0>, mode = "wrap", value = 0.0 : f32} : (tensor<2x4xf32>) -> tensor<4x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}result shape [3, 4] does not match the expected [4, 4]
func.func @f(%x: tensor<2x4xf32>) {
  %r = nn.pad %x {pads = array<i64: 1, 0, 1, 0>, mode = "reflect", value = 0.0 : f32} : (tensor<2x4xf32>) -> tensor<3x4xf32>
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}'nn.yield' expects parent op 'nn.fusion_group'
func.func @f(%x: tensor<2x4xf32>) {
  nn.yield %x : tensor<2x4xf32>
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}fusion group has 1 operands but its body takes 2 arguments
func.func @f(%x: tensor<2x4xf32>) {
  %g = nn.fusion_group "g" ins(%x) : (tensor<2x4xf32>) -> tensor<2x4xf32> {
  ^bb0(%a: tensor<2x4xf32>, %b: tensor<2x4xf32>):
    nn.yield %a : tensor<2x4xf32>
  }
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}body argument 0 has type tensor<4x2xf32>, operand has tensor<2x4xf32>
func.func @f(%x: tensor<2x4xf32>) {
  %g = nn.fusion_group "g" ins(%x) : (tensor<2x4xf32>) -> tensor<2x4xf32> {
  ^bb0(%a: tensor<4x2xf32>):
    %r = nn.reshape %a : (tensor<4x2xf32>) -> tensor<2x4xf32>
    nn.yield %r : tensor<2x4xf32>
  }
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}Operation nn.relu terminates block in single-block region but is not a terminator
func.func @f(%x: tensor<2x4xf32>) {
  %g = nn.fusion_group "g" ins(%x) : (tensor<2x4xf32>) -> tensor<2x4xf32> {
  ^bb0(%a: tensor<2x4xf32>):
    %r = nn.relu %a : (tensor<2x4xf32>) -> tensor<2x4xf32>
  }
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}nn.yield types do not match the fusion group's result types
func.func @f(%x: tensor<2x4xf32>) {
  %g = nn.fusion_group "g" ins(%x) : (tensor<2x4xf32>) -> tensor<4x2xf32> {
  ^bb0(%a: tensor<2x4xf32>):
    nn.yield %a : tensor<2x4xf32>
  }
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}core number must be positive, got 0
func.func @f(%x: tensor<2x4xf32>) {
  %g = nn.fusion_group "g" cores 0 ins(%x) : (tensor<2x4xf32>) -> tensor<2x4xf32> {
  ^bb0(%a: tensor<2x4xf32>):
    nn.yield %a : tensor<2x4xf32>
  }
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}fusion groups cannot be nested
func.func @f(%x: tensor<2x4xf32>) {
  %g = nn.fusion_group "outer" ins(%x) : (tensor<2x4xf32>) -> tensor<2x4xf32> {
  ^bb0(%a: tensor<2x4xf32>):
    %i = nn.fusion_group "inner" ins(%a) : (tensor<2x4xf32>) -> tensor<2x4xf32> {
    ^bb1(%b: tensor<2x4xf32>):
      nn.yield %b : tensor<2x4xf32>
    }
    nn.yield %i : tensor<2x4xf32>
  }
  func.return
}

// -----

// CHECK: {{^// -+$}}
// CHECK-NEXT: {{^}}'nn.relu' in fusion group 'g' uses a value defined outside the group; pass it as a group operand
func.func @f(%x: tensor<2x4xf32>) {
  %g = nn.fusion_group "g" : () -> tensor<2x4xf32> {
    %r = nn.relu %x : (tensor<2x4xf32>) -> tensor<2x4xf32>
    nn.yield %r : tensor<2x4xf32>
  }
  func.return
}
