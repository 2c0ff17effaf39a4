// RUN: dlfusion-opt %s -p nn-canonicalize | filecheck %s
// RUN: dlfusion-opt %s -p nn-canonicalize --emit-weights | filecheck %s --check-prefix=WEIGHTS
// RUN: dlfusion-opt %s -p nn-canonicalize --emit-weights | dlfusion-opt -p nn-canonicalize | filecheck %s
// RUN: dlfusion-opt %s | dlfusion-opt -p nn-canonicalize | filecheck %s --check-prefix=ELIDED
// RUN: dlfusion-opt %s -p 'nn-canonicalize{fold-constants=false}' | filecheck %s --check-prefix=NOFOLD

// Dead layers go, weights included; a dead layer's dead inputs go with it.
// CHECK-LABEL: func.func @dead_layers
// CHECK-NEXT:    %live = nn.relu %x
// CHECK-NEXT:    func.return %live
func.func @dead_layers(%x: tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %w = nn.weight dense_resource<dead_w> : tensor<2x2x1x1xf32>
  %conv = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x2x2xf32>, tensor<2x2x1x1xf32>) -> tensor<1x2x2x2xf32>
  %dead = nn.relu %conv : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %live = nn.relu %x : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %g = nn.fusion_group "unused" ins(%x) : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  ^bb0(%a: tensor<1x2x2x2xf32>):
    %r = nn.relu %a : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
    nn.yield %r : tensor<1x2x2x2xf32>
  }
  func.return %live : tensor<1x2x2x2xf32>
}

// Inside a fusion group too; the yield keeps what it returns.
// CHECK-LABEL: func.func @dead_in_group
// CHECK:         nn.fusion_group "g0" ins(%x)
// CHECK-NEXT:    ^bb0(%a: tensor<1x2x2x2xf32>):
// CHECK-NEXT:      %r = nn.relu %a
// CHECK-NEXT:      nn.yield %r
func.func @dead_in_group(%x: tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %g = nn.fusion_group "g0" ins(%x) : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  ^bb0(%a: tensor<1x2x2x2xf32>):
    %unused = nn.sigmoid %a : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
    %r = nn.relu %a : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
    nn.yield %r : tensor<1x2x2x2xf32>
  }
  func.return %g : tensor<1x2x2x2xf32>
}

// A reshape to its own type is dropped.
// CHECK-LABEL: func.func @reshape_identity
// CHECK-NEXT:    %r = nn.relu %x
// CHECK-NEXT:    func.return %r
func.func @reshape_identity(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %same = nn.reshape %x : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %r = nn.relu %same : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %r : tensor<2x3xf32>
}

// A chain of reshapes becomes one; an inner reshape with another user stays
// for that user. A chain that comes back to the input type disappears.
// CHECK-LABEL: func.func @reshape_chain
// CHECK-NEXT:    %a = nn.reshape %x : (tensor<2x3x4xf32>) -> tensor<6x4xf32>
// CHECK-NEXT:    %c = nn.reshape %x : (tensor<2x3x4xf32>) -> tensor<4x6xf32>
// CHECK-NEXT:    %d = nn.relu %a
// CHECK-NEXT:    func.return %c, %d, %x
func.func @reshape_chain(%x: tensor<2x3x4xf32>) -> (tensor<4x6xf32>, tensor<6x4xf32>, tensor<2x3x4xf32>) {
  %a = nn.reshape %x : (tensor<2x3x4xf32>) -> tensor<6x4xf32>
  %b = nn.reshape %a : (tensor<6x4xf32>) -> tensor<24xf32>
  %c = nn.reshape %b : (tensor<24xf32>) -> tensor<4x6xf32>
  %d = nn.relu %a : (tensor<6x4xf32>) -> tensor<6x4xf32>
  %e = nn.reshape %b : (tensor<24xf32>) -> tensor<2x3x4xf32>
  func.return %c, %d, %e : tensor<4x6xf32>, tensor<6x4xf32>, tensor<2x3x4xf32>
}

// An identity transpose is dropped; two transposes compose into one (or
// into nothing); other transposes stay.
// CHECK-LABEL: func.func @transposes
// CHECK-NEXT:    %t3 = nn.transpose %x {perm = array<i64: 1, 2, 0>} : (tensor<2x3x4xf32>) -> tensor<3x4x2xf32>
// CHECK-NEXT:    %u = nn.transpose %x {perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
// CHECK-NEXT:    func.return %x, %t3, %u
func.func @transposes(%x: tensor<2x3x4xf32>) -> (tensor<2x3x4xf32>, tensor<3x4x2xf32>, tensor<4x2x3xf32>) {
  %id = nn.transpose %x {perm = array<i64: 0, 1, 2>} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %t1 = nn.transpose %x {perm = array<i64: 1, 0, 2>} : (tensor<2x3x4xf32>) -> tensor<3x2x4xf32>
  %t2 = nn.transpose %t1 {perm = array<i64: 1, 0, 2>} : (tensor<3x2x4xf32>) -> tensor<2x3x4xf32>
  %t3 = nn.transpose %t1 {perm = array<i64: 0, 2, 1>} : (tensor<3x2x4xf32>) -> tensor<3x4x2xf32>
  %u = nn.transpose %id {perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
  %sum = nn.add %t2, %id : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  func.return %t2, %t3, %u : tensor<2x3x4xf32>, tensor<3x4x2xf32>, tensor<4x2x3xf32>
}

// A pad with all-zero pads is dropped, whatever its mode; others stay.
// CHECK-LABEL: func.func @pads
// CHECK-NEXT:    %p = nn.pad %x {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "reflect", value = 0.000000e+00 : f32}
// CHECK-NEXT:    func.return %x, %p
func.func @pads(%x: tensor<1x1x3x3xf32>) -> (tensor<1x1x3x3xf32>, tensor<1x1x5x5xf32>) {
  %z = nn.pad %x {pads = array<i64: 0, 0, 0, 0, 0, 0, 0, 0>, mode = "constant", value = 1.0 : f32} : (tensor<1x1x3x3xf32>) -> tensor<1x1x3x3xf32>
  %e = nn.pad %z {pads = array<i64: 0, 0, 0, 0, 0, 0, 0, 0>, mode = "edge", value = 0.0 : f32} : (tensor<1x1x3x3xf32>) -> tensor<1x1x3x3xf32>
  %p = nn.pad %x {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "reflect", value = 0.0 : f32} : (tensor<1x1x3x3xf32>) -> tensor<1x1x5x5xf32>
  func.return %e, %p : tensor<1x1x3x3xf32>, tensor<1x1x5x5xf32>
}

// A slice that takes everything is dropped; a reversing or partial one stays.
// CHECK-LABEL: func.func @slices
// CHECK-NEXT:    %rev = nn.slice %x {starts = array<i64: 0, 3>, ends = array<i64: 2, -1>, steps = array<i64: 1, -1>}
// CHECK-NEXT:    %part = nn.slice %x {starts = array<i64: 0, 1>, ends = array<i64: 2, 4>, steps = array<i64: 1, 1>}
// CHECK-NEXT:    func.return %x, %rev, %part
func.func @slices(%x: tensor<2x4xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x3xf32>) {
  %all = nn.slice %x {starts = array<i64: 0, 0>, ends = array<i64: 2, 4>, steps = array<i64: 1, 1>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %rev = nn.slice %x {starts = array<i64: 0, 3>, ends = array<i64: 2, -1>, steps = array<i64: 1, -1>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %part = nn.slice %x {starts = array<i64: 0, 1>, ends = array<i64: 2, 4>, steps = array<i64: 1, 1>} : (tensor<2x4xf32>) -> tensor<2x3xf32>
  func.return %all, %rev, %part : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x3xf32>
}

// Layers whose operands are all weights are evaluated into new weights; the
// inputs they no longer need are erased. fc_w^T, then (fc_w^T + 1) * 2.
// CHECK-LABEL: func.func @constant_fold
// CHECK-NEXT:    %[[W:.*]] = nn.weight dense_resource<scaled> : tensor<3x2xf32>
// CHECK-NEXT:    %y = nn.matmul %a, %[[W]] : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
// CHECK-NEXT:    func.return %y
// WEIGHTS-DAG:   scaled: "0x0400000000008040000020410000c040000040410000004100000000"
func.func @constant_fold(%a: tensor<4x3xf32>) -> tensor<4x2xf32> {
  %fc_w = nn.weight dense_resource<cf_w> : tensor<2x3xf32>
  %one = nn.weight dense_resource<cf_one> : tensor<1xf32>
  %two = nn.weight dense_resource<cf_two> : tensor<1xf32>
  %wt = nn.transpose %fc_w {perm = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  %shifted = nn.add %wt, %one : (tensor<3x2xf32>, tensor<1xf32>) -> tensor<3x2xf32>
  %scaled = nn.mul %shifted, %two : (tensor<3x2xf32>, tensor<1xf32>) -> tensor<3x2xf32>
  %y = nn.matmul %a, %scaled : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  func.return %y : tensor<4x2xf32>
}

// Layers with several results fold too; a weight still used elsewhere stays.
// CHECK-LABEL: func.func @constant_fold_split
// CHECK-NEXT:    %w = nn.weight dense_resource<cs_w> : tensor<4xf32>
// CHECK-NEXT:    %[[A:.*]] = nn.weight dense_resource<lo> : tensor<1xf32>
// CHECK-NEXT:    %[[B:.*]] = nn.weight dense_resource<hi> : tensor<3xf32>
// CHECK-NEXT:    func.return %[[A]], %[[B]], %w
// WEIGHTS-DAG:   lo: "0x040000000000803f"
// WEIGHTS-DAG:   hi: "0x0400000000000040000040400000803f"
func.func @constant_fold_split() -> (tensor<1xf32>, tensor<3xf32>, tensor<4xf32>) {
  %w = nn.weight dense_resource<cs_w> : tensor<4xf32>
  %lo, %hi = nn.split %w {axis = 0 : i64} : (tensor<4xf32>) -> (tensor<1xf32>, tensor<3xf32>)
  func.return %lo, %hi, %w : tensor<1xf32>, tensor<3xf32>, tensor<4xf32>
}

// Convolution is folded by the interpreter's kernel: a 1x1 conv of ones.
// CHECK-LABEL: func.func @constant_fold_conv
// CHECK-NEXT:    %[[C:.*]] = nn.weight dense_resource<cc> : tensor<1x1x2x2xf32>
// CHECK-NEXT:    func.return %[[C]]
// WEIGHTS-DAG:   cc: "0x040000000000a0400000a0400000a0400000a040"
func.func @constant_fold_conv() -> tensor<1x1x2x2xf32> {
  %x = nn.weight dense_resource<cc_x> : tensor<1x2x2x2xf32>
  %w = nn.weight dense_resource<cc_w> : tensor<1x2x1x1xf32>
  %b = nn.weight dense_resource<cc_b> : tensor<1xf32>
  %cc = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x2x2xf32>, tensor<1x2x1x1xf32>, tensor<1xf32>) -> tensor<1x1x2x2xf32>
  func.return %cc : tensor<1x1x2x2xf32>
}

// Without weight data (printed without --emit-weights) nothing is folded,
// but the other simplifications still apply.
// With fold-constants=false, the layers stay (but their dead inputs still go).
// NOFOLD-LABEL: func.func @dead_layers
// NOFOLD-NEXT:    %live = nn.relu %x
// NOFOLD-LABEL: func.func @constant_fold
// NOFOLD-NEXT:    %fc_w = nn.weight dense_resource<cf_w>
// NOFOLD-NEXT:    %one = nn.weight dense_resource<cf_one>
// NOFOLD-NEXT:    %two = nn.weight dense_resource<cf_two>
// NOFOLD-NEXT:    %wt = nn.transpose %fc_w
// NOFOLD-NEXT:    %shifted = nn.add %wt, %one
// NOFOLD-NEXT:    %scaled = nn.mul %shifted, %two
// NOFOLD-LABEL: func.func @constant_fold_conv
// NOFOLD:         nn.conv2d

// ELIDED-LABEL: func.func @constant_fold
// ELIDED:         nn.transpose %fc_w
// ELIDED:         nn.add
// ELIDED:         nn.mul
// ELIDED-LABEL: func.func @constant_fold_split
// ELIDED:         nn.split %w
// ELIDED-LABEL: func.func @constant_fold_conv
// ELIDED:         nn.conv2d

{-#
  dialect_resources: {
    nn: {
      dead_w: "0x040000000000803f000000400000404000008040",
      cf_w: "0x040000000000803f0000004000004040000080400000a040000080bf",
      cf_one: "0x040000000000803f",
      cf_two: "0x0400000000000040",
      cs_w: "0x040000000000803f00000040000040400000803f",
      cc_x: "0x040000000000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f",
      cc_w: "0x040000000000803f00000040",
      cc_b: "0x0400000000000040"
    }
  }
#-}
