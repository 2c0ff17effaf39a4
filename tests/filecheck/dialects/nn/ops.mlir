// RUN: dlfusion-opt %s | dlfusion-opt | filecheck %s
// RUN: dlfusion-opt %s --print-op-generic | dlfusion-opt | filecheck %s
// RUN: dlfusion-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC

// Every nn op survives a print/parse round trip in the custom format and in
// the generic one; optional operands, optional properties, extra attributes,
// fusion groups with and without `cores` and `ins`.

// The generic format carries the properties.
// GENERIC: "nn.weight"() <{handle = "conv_w"}> : () -> tensor<4x4x3x3xf32>
// GENERIC: "nn.fusion_group"(%{{.*}}, %{{.*}}) <{sym_name = "g0"}> ({
// GENERIC: "nn.fusion_group"(%{{.*}}) <{sym_name = "g1", cores = 4 : i64}> ({

// CHECK-LABEL: func.func @layers(%x: tensor<1x4x8x8xf32>, %m: tensor<6x4xf32>) -> tensor<1x4x8x8xf32> {
// CHECK-NEXT:  %w = nn.weight dense_resource<conv_w> : tensor<4x4x3x3xf32>
// CHECK-NEXT:  %b = nn.weight dense_resource<conv_b> : tensor<4xf32>
// CHECK-NEXT:  %c6 = nn.weight dense_resource<fc_c> : tensor<6xf32>
// CHECK-NEXT:  %dw = nn.weight dense_resource<dw_w> {note = "depthwise"} : tensor<4x1x3x3xf32>
// CHECK-NEXT:  %conv = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %dconv = nn.conv2d %conv, %dw {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32>
// CHECK-NEXT:  %relu = nn.relu %conv : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %sig = nn.sigmoid %relu : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %hsw = nn.hard_swish %sig : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %lrelu = nn.leaky_relu %hsw {alpha = 1.000000e-01 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %clip = nn.clip %lrelu {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %clip_lo = nn.clip %clip {min = -1.000000e+00 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %clip_none = nn.clip %clip_lo : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %hsig = nn.hard_sigmoid %clip_none {alpha = 2.000000e-01 : f32, beta = 5.000000e-01 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %add = nn.add %hsig, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %sub = nn.sub %add, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %mul = nn.mul %sub, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %div = nn.div %mul, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %bn = nn.batch_norm %div, %b, %b, %b, %b {epsilon = 1.000000e-05 : f32} : (tensor<1x4x8x8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %lrn = nn.lrn %bn {size = 5 : i64, alpha = 9.99999902e-05 : f32, beta = 7.500000e-01 : f32, bias = 1.000000e+00 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %maxp = nn.max_pool %lrn {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, ceil_mode = 0 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
// CHECK-NEXT:  %maxd = nn.max_pool %lrn {kernel = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 1 : i64, dilations = array<i64: 2, 2>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x6x6xf32>
// CHECK-NEXT:  %avgp = nn.avg_pool %lrn {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64, count_include_pad = 0 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
// CHECK-NEXT:  %gap = nn.global_avg_pool %avgp : (tensor<1x4x4x4xf32>) -> tensor<1x4x1x1xf32>
// CHECK-NEXT:  %rmean = nn.reduce_mean %maxp {axes = array<i64: 2, 3>, keepdims = 0 : i64} : (tensor<1x4x4x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:  %cat = nn.concat %maxp, %avgp, %dconv {axis = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x12x4x4xf32>
// CHECK-NEXT:  %s0, %s1 = nn.split %cat {axis = 1 : i64} : (tensor<1x12x4x4xf32>) -> (tensor<1x5x4x4xf32>, tensor<1x7x4x4xf32>)
// CHECK-NEXT:  %sl = nn.slice %s1 {starts = array<i64: 0, 6, 0, 0>, ends = array<i64: 1, -1, 4, 4>, steps = array<i64: 1, -2, 2, 1>} : (tensor<1x7x4x4xf32>) -> tensor<1x4x2x4xf32>
// CHECK-NEXT:  %flat = nn.reshape %gap : (tensor<1x4x1x1xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:  %tr = nn.transpose %sl {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x4x2x4xf32>) -> tensor<1x4x4x2xf32>
// CHECK-NEXT:  %pad = nn.pad %tr {pads = array<i64: 0, 0, 2, 3, 0, 0, 2, 3>, mode = "edge", value = 0.000000e+00 : f32} : (tensor<1x4x4x2xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %fc = nn.gemm %flat, %m {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32} : (tensor<1x4xf32>, tensor<6x4xf32>) -> tensor<1x6xf32>
// CHECK-NEXT:  %fc_c = nn.gemm %rmean, %m, %c6 {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 5.000000e-01 : f32, beta = 2.000000e+00 : f32} : (tensor<1x4xf32>, tensor<6x4xf32>, tensor<6xf32>) -> tensor<1x6xf32>
// CHECK-NEXT:  %mm = nn.matmul %fc, %m : (tensor<1x6xf32>, tensor<6x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:  %sm = nn.softmax %mm {axis = 1 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:  func.return %pad : tensor<1x4x8x8xf32>
// CHECK-NEXT:  }
func.func @layers(%x: tensor<1x4x8x8xf32>, %m: tensor<6x4xf32>) -> tensor<1x4x8x8xf32> {
  %w = nn.weight dense_resource<conv_w> : tensor<4x4x3x3xf32>
  %b = nn.weight dense_resource<conv_b> : tensor<4xf32>
  %c6 = nn.weight dense_resource<fc_c> : tensor<6xf32>
  %dw = nn.weight dense_resource<dw_w> {note = "depthwise"} : tensor<4x1x3x3xf32>
  %conv = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
  %dconv = nn.conv2d %conv, %dw {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32>
  %relu = nn.relu %conv : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %sig = nn.sigmoid %relu : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %hsw = nn.hard_swish %sig : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %lrelu = nn.leaky_relu %hsw {alpha = 1.000000e-01 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %clip = nn.clip %lrelu {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %clip_lo = nn.clip %clip {min = -1.000000e+00 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %clip_none = nn.clip %clip_lo : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %hsig = nn.hard_sigmoid %clip_none {alpha = 2.000000e-01 : f32, beta = 5.000000e-01 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %add = nn.add %hsig, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %sub = nn.sub %add, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %mul = nn.mul %sub, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %div = nn.div %mul, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %bn = nn.batch_norm %div, %b, %b, %b, %b {epsilon = 1.000000e-05 : f32} : (tensor<1x4x8x8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
  %lrn = nn.lrn %bn {size = 5 : i64, alpha = 9.999999e-05 : f32, beta = 7.500000e-01 : f32, bias = 1.000000e+00 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  %maxp = nn.max_pool %lrn {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, ceil_mode = 0 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  %maxd = nn.max_pool %lrn {kernel = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 1 : i64, dilations = array<i64: 2, 2>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x6x6xf32>
  %avgp = nn.avg_pool %lrn {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64, count_include_pad = 0 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  %gap = nn.global_avg_pool %avgp : (tensor<1x4x4x4xf32>) -> tensor<1x4x1x1xf32>
  %rmean = nn.reduce_mean %maxp {axes = array<i64: 2, 3>, keepdims = 0 : i64} : (tensor<1x4x4x4xf32>) -> tensor<1x4xf32>
  %cat = nn.concat %maxp, %avgp, %dconv {axis = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x12x4x4xf32>
  %s0, %s1 = nn.split %cat {axis = 1 : i64} : (tensor<1x12x4x4xf32>) -> (tensor<1x5x4x4xf32>, tensor<1x7x4x4xf32>)
  %sl = nn.slice %s1 {starts = array<i64: 0, 6, 0, 0>, ends = array<i64: 1, -1, 4, 4>, steps = array<i64: 1, -2, 2, 1>} : (tensor<1x7x4x4xf32>) -> tensor<1x4x2x4xf32>
  %flat = nn.reshape %gap : (tensor<1x4x1x1xf32>) -> tensor<1x4xf32>
  %tr = nn.transpose %sl {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x4x2x4xf32>) -> tensor<1x4x4x2xf32>
  %pad = nn.pad %tr {pads = array<i64: 0, 0, 2, 3, 0, 0, 2, 3>, mode = "edge", value = 0.000000e+00 : f32} : (tensor<1x4x4x2xf32>) -> tensor<1x4x8x8xf32>
  %fc = nn.gemm %flat, %m {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32} : (tensor<1x4xf32>, tensor<6x4xf32>) -> tensor<1x6xf32>
  %fc_c = nn.gemm %rmean, %m, %c6 {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 5.000000e-01 : f32, beta = 2.000000e+00 : f32} : (tensor<1x4xf32>, tensor<6x4xf32>, tensor<6xf32>) -> tensor<1x6xf32>
  %mm = nn.matmul %fc, %m : (tensor<1x6xf32>, tensor<6x4xf32>) -> tensor<1x4xf32>
  %sm = nn.softmax %mm {axis = 1 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %pad : tensor<1x4x8x8xf32>
}

// CHECK-LABEL: func.func @groups(%x: tensor<1x4x8x8xf32>) -> (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) {
// CHECK-NEXT:  %w = nn.weight dense_resource<gw> : tensor<4x4x1x1xf32>
// CHECK-NEXT:  %g0 = nn.fusion_group "g0" ins(%x, %w) : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32> {
// CHECK-NEXT:  ^bb0(%a: tensor<1x4x8x8xf32>, %k: tensor<4x4x1x1xf32>):
// CHECK-NEXT:  %c = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %r = nn.relu %c : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  nn.yield %r : tensor<1x4x8x8xf32>
// CHECK-NEXT:  }
// CHECK-NEXT:  %g1, %g1_1 = nn.fusion_group "g1" cores 4 ins(%g0) {note = "two results"} : (tensor<1x4x8x8xf32>) -> (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) {
// CHECK-NEXT:  ^bb0(%a_1: tensor<1x4x8x8xf32>):
// CHECK-NEXT:  %s = nn.sigmoid %a_1 : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %m = nn.mul %a_1, %s : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  nn.yield %s, %m : tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>
// CHECK-NEXT:  }
// CHECK-NEXT:  %g2 = nn.fusion_group "g2" cores 1 : () -> tensor<4x4x1x1xf32> {
// CHECK-NEXT:  %k_1 = nn.weight dense_resource<gw> : tensor<4x4x1x1xf32>
// CHECK-NEXT:  nn.yield %k_1 : tensor<4x4x1x1xf32>
// CHECK-NEXT:  }
// CHECK-NEXT:  func.return %g1, %g1_1 : tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>
// CHECK-NEXT:  }
func.func @groups(%x: tensor<1x4x8x8xf32>) -> (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) {
  %w = nn.weight dense_resource<gw> : tensor<4x4x1x1xf32>
  %g0 = nn.fusion_group "g0" ins(%x, %w) : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32> {
  ^bb0(%a: tensor<1x4x8x8xf32>, %k: tensor<4x4x1x1xf32>):
    %c = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32>
    %r = nn.relu %c : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
    nn.yield %r : tensor<1x4x8x8xf32>
  }
  %g1:2 = nn.fusion_group "g1" cores 4 ins(%g0) {note = "two results"} : (tensor<1x4x8x8xf32>) -> (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) {
  ^bb0(%a: tensor<1x4x8x8xf32>):
    %s = nn.sigmoid %a : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
    %m = nn.mul %a, %s : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
    nn.yield %s, %m : tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>
  }
  %g2 = nn.fusion_group "g2" cores 1 : () -> tensor<4x4x1x1xf32> {
    %k = nn.weight dense_resource<gw> : tensor<4x4x1x1xf32>
    nn.yield %k : tensor<4x4x1x1xf32>
  }
  func.return %g1#0, %g1#1 : tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>
}

// CHECK-LABEL: func.func @batched_matmul(%a: tensor<2x3x4xf32>, %b: tensor<4x5xf32>, %v: tensor<4xf32>) -> (tensor<2x3x5xf32>, tensor<2x3xf32>) {
// CHECK-NEXT:  %mm = nn.matmul %a, %b : (tensor<2x3x4xf32>, tensor<4x5xf32>) -> tensor<2x3x5xf32>
// CHECK-NEXT:  %mv = nn.matmul %a, %v : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  func.return %mm, %mv : tensor<2x3x5xf32>, tensor<2x3xf32>
// CHECK-NEXT:  }
func.func @batched_matmul(%a: tensor<2x3x4xf32>, %b: tensor<4x5xf32>, %v: tensor<4xf32>) -> (tensor<2x3x5xf32>, tensor<2x3xf32>) {
  %mm = nn.matmul %a, %b : (tensor<2x3x4xf32>, tensor<4x5xf32>) -> tensor<2x3x5xf32>
  %mv = nn.matmul %a, %v : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3xf32>
  func.return %mm, %mv : tensor<2x3x5xf32>, tensor<2x3xf32>
}
