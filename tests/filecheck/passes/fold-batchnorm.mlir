// RUN: dlfusion-opt %s -p fold-batchnorm | filecheck %s
// RUN: dlfusion-opt %s -p fold-batchnorm --emit-weights | filecheck %s --check-prefix=WEIGHTS
// RUN: dlfusion-opt %s -p fold-batchnorm --emit-weights | dlfusion-opt -p fold-batchnorm | filecheck %s
// RUN: dlfusion-opt %s | filecheck %s --check-prefix=NOPASS
// RUN: dlfusion-opt %s | not dlfusion-opt -p fold-batchnorm 2>&1 | filecheck %s --check-prefix=ELIDED
// RUN: dlfusion-run %s --seed 1 --outputs %t.ref.npz
// RUN: dlfusion-run %s --seed 1 -p fold-batchnorm --outputs %t.folded.npz
// RUN: %python %S/Inputs/npz_close.py %t.ref.npz %t.folded.npz 1e-5

// Without the pass every batch norm is still there.
// NOPASS-COUNT-14: nn.batch_norm

// Weights printed without --emit-weights cannot be folded: one clear error.
// ELIDED: dlfusion-opt: fold-batchnorm: weight '{{.*}}' has no data: the IR was printed with weights elided; re-print it with `dlfusion-opt --emit-weights` to run it

// conv with a bias: W' = s * W, b' = s * (b - mean) + shift, s = [1, 2].
// CHECK-LABEL: func.func @conv_bias
// CHECK-NOT:     nn.batch_norm
// CHECK-NOT:     dense_resource<cb_w>
// CHECK:         %[[W:.*]] = nn.weight dense_resource<cb_w_bn> : tensor<2x1x1x1xf32>
// CHECK-NEXT:    %[[B:.*]] = nn.weight dense_resource<cb_b_bn> : tensor<2xf32>
// CHECK-NEXT:    %conv = nn.conv2d %x, %[[W]], %[[B]] {{.*}}groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<2x1x1x1xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
// CHECK-NEXT:    %relu = nn.relu %conv
// CHECK-NEXT:    func.return %relu
// WEIGHTS-DAG:   cb_w_bn: "0x040000000000803f0000c040"
// WEIGHTS-DAG:   cb_b_bn: "0x040000000000003f0000c040"
func.func @conv_bias(%x: tensor<1x1x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %w = nn.weight dense_resource<cb_w> : tensor<2x1x1x1xf32>
  %b = nn.weight dense_resource<cb_b> : tensor<2xf32>
  %conv = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<2x1x1x1xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  %g = nn.weight dense_resource<cb_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<cb_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<cb_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<cb_var> : tensor<2xf32>
  %bn = nn.batch_norm %conv, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  %relu = nn.relu %bn : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  func.return %relu : tensor<1x2x2x2xf32>
}

// conv without a bias gains one: b' = shift - s * mean.
// CHECK-LABEL: func.func @conv_nobias
// CHECK-NOT:     nn.batch_norm
// CHECK:         %[[W:.*]] = nn.weight dense_resource<cn_w_bn> : tensor<2x2x1x1xf32>
// CHECK-NEXT:    %[[B:.*]] = nn.weight dense_resource<conv_b_bn> : tensor<2xf32>
// CHECK-NEXT:    %conv = nn.conv2d %x, %[[W]], %[[B]] {{.*}} : (tensor<1x2x3x3xf32>, tensor<2x2x1x1xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
// CHECK-NEXT:    func.return %conv
// WEIGHTS-DAG:   cn_w_bn: "0x040000000000803f000000400000c04000000041"
// WEIGHTS-DAG:   conv_b_bn: "0x04000000000000c0000080bf"
func.func @conv_nobias(%x: tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32> {
  %w = nn.weight dense_resource<cn_w> : tensor<2x2x1x1xf32>
  %conv = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<2x2x1x1xf32>) -> tensor<1x2x3x3xf32>
  %g = nn.weight dense_resource<cn_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<cn_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<cn_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<cn_var> : tensor<2xf32>
  %bn = nn.batch_norm %conv, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x3x3xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
  func.return %bn : tensor<1x2x3x3xf32>
}

// depthwise conv (groups = channels): output channels are still W's axis 0.
// CHECK-LABEL: func.func @depthwise
// CHECK-NOT:     nn.batch_norm
// CHECK:         %[[W:.*]] = nn.weight dense_resource<dw_w_bn> : tensor<2x1x3x3xf32>
// CHECK-NEXT:    %[[B:.*]] = nn.weight dense_resource<dw_b_bn> : tensor<2xf32>
// CHECK-NEXT:    %dw = nn.conv2d %x, %[[W]], %[[B]] {{.*}}groups = 2 : i64} : (tensor<1x2x4x4xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
// WEIGHTS-DAG:   dw_b_bn: "0x040000000000000000000000"
func.func @depthwise(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %w = nn.weight dense_resource<dw_w> : tensor<2x1x3x3xf32>
  %dw = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x4x4xf32>, tensor<2x1x3x3xf32>) -> tensor<1x2x4x4xf32>
  %g = nn.weight dense_resource<dw_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<dw_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<dw_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<dw_var> : tensor<2xf32>
  %bn = nn.batch_norm %dw, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  func.return %bn : tensor<1x2x4x4xf32>
}

// gemm with trans_b, alpha and beta: B'[n, :] = s[n] * B[n, :],
// C' = s * (beta * C - mean) + shift, beta' = 1, alpha kept.
// CHECK-LABEL: func.func @gemm
// CHECK-NOT:     nn.batch_norm
// CHECK:         %[[W:.*]] = nn.weight dense_resource<g_w_bn> : tensor<2x3xf32>
// CHECK-NEXT:    %[[C:.*]] = nn.weight dense_resource<g_c_bn> : tensor<2xf32>
// CHECK-NEXT:    %fc = nn.gemm %a, %[[W]], %[[C]] {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 2.000000e+00 : f32, beta = 1.000000e+00 : f32} : (tensor<4x3xf32>, tensor<2x3xf32>, tensor<2xf32>) -> tensor<4x2xf32>
// WEIGHTS-DAG:   g_w_bn: "0x040000000000803f0000803f0000803f00000040000080400000c040"
// WEIGHTS-DAG:   g_c_bn: "0x040000000000003f0000c040"
func.func @gemm(%a: tensor<4x3xf32>) -> tensor<4x2xf32> {
  %w = nn.weight dense_resource<g_w> : tensor<2x3xf32>
  %c = nn.weight dense_resource<g_c> : tensor<2xf32>
  %fc = nn.gemm %a, %w, %c {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 2.0 : f32, beta = 0.5 : f32} : (tensor<4x3xf32>, tensor<2x3xf32>, tensor<2xf32>) -> tensor<4x2xf32>
  %g = nn.weight dense_resource<g_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<g_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<g_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<g_var> : tensor<2xf32>
  %bn = nn.batch_norm %fc, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<4x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<4x2xf32>
  func.return %bn : tensor<4x2xf32>
}

// gemm with C of shape [M, 1]: the folded C is broadcast to [M, N].
// CHECK-LABEL: func.func @gemm_broadcast_c
// CHECK-NOT:     nn.batch_norm
// CHECK:         %[[W:.*]] = nn.weight dense_resource<gb_w_bn> : tensor<3x2xf32>
// CHECK-NEXT:    %[[C:.*]] = nn.weight dense_resource<gb_c_bn> : tensor<2x2xf32>
// CHECK-NEXT:    %fc = nn.gemm %a, %[[W]], %[[C]] {trans_a = 0 : i64, trans_b = 0 : i64, alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32} : (tensor<2x3xf32>, tensor<3x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
// WEIGHTS-DAG:   gb_w_bn: "0x040000000000803f0000804000004040000000410000a04000004041"
// WEIGHTS-DAG:   gb_c_bn: "0x040000000000803f000000400000004000008040"
func.func @gemm_broadcast_c(%a: tensor<2x3xf32>) -> tensor<2x2xf32> {
  %w = nn.weight dense_resource<gb_w> : tensor<3x2xf32>
  %c = nn.weight dense_resource<gb_c> : tensor<2x1xf32>
  %fc = nn.gemm %a, %w, %c {trans_a = 0 : i64, trans_b = 0 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<2x3xf32>, tensor<3x2xf32>, tensor<2x1xf32>) -> tensor<2x2xf32>
  %g = nn.weight dense_resource<gb_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<gb_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<gb_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<gb_var> : tensor<2xf32>
  %bn = nn.batch_norm %fc, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2x2xf32>
  func.return %bn : tensor<2x2xf32>
}

// gemm without C gains one.
// CHECK-LABEL: func.func @gemm_no_c
// CHECK-NOT:     nn.batch_norm
// CHECK:         %[[W:.*]] = nn.weight dense_resource<gn_w_bn> : tensor<3x2xf32>
// CHECK-NEXT:    %[[C:.*]] = nn.weight dense_resource<fc_c_bn> : tensor<2xf32>
// CHECK-NEXT:    %fc = nn.gemm %a, %[[W]], %[[C]] {{.*}} : (tensor<2x3xf32>, tensor<3x2xf32>, tensor<2xf32>) -> tensor<2x2xf32>
// WEIGHTS-DAG:   fc_c_bn: "0x0400000000000000000080bf"
func.func @gemm_no_c(%a: tensor<2x3xf32>) -> tensor<2x2xf32> {
  %w = nn.weight dense_resource<gn_w> : tensor<3x2xf32>
  %fc = nn.gemm %a, %w {trans_a = 0 : i64, trans_b = 0 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<2x2xf32>
  %g = nn.weight dense_resource<gn_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<gn_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<gn_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<gn_var> : tensor<2xf32>
  %bn = nn.batch_norm %fc, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2x2xf32>
  func.return %bn : tensor<2x2xf32>
}

// A conv with another user keeps its batch norm (folding would change the
// other user's input).
// CHECK-LABEL: func.func @conv_two_users
// CHECK:         %w = nn.weight dense_resource<tu_w>
// CHECK:         %conv = nn.conv2d %x, %w {
// CHECK:         %bn = nn.batch_norm %conv
// CHECK:         %relu = nn.relu %conv
// CHECK-NOT:     _bn>
// CHECK:         func.return %bn, %relu
func.func @conv_two_users(%x: tensor<1x1x2x2xf32>) -> (tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) {
  %w = nn.weight dense_resource<tu_w> : tensor<2x1x1x1xf32>
  %conv = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x2x2xf32>
  %g = nn.weight dense_resource<tu_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<tu_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<tu_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<tu_var> : tensor<2xf32>
  %bn = nn.batch_norm %conv, %g, %t, %m, %v {epsilon = 1.0e-05 : f32} : (tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  %relu = nn.relu %conv : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  func.return %bn, %relu : tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>
}

// A batch norm after an add has nothing to fold into: it stays a layer.
// CHECK-LABEL: func.func @bn_after_add
// CHECK:         %sum = nn.add %x, %y
// CHECK:         %bn = nn.batch_norm %sum, %g, %t, %m, %v
// CHECK-NEXT:    func.return %bn
func.func @bn_after_add(%x: tensor<1x2x2x2xf32>, %y: tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %sum = nn.add %x, %y : (tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %g = nn.weight dense_resource<ad_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<ad_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<ad_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<ad_var> : tensor<2xf32>
  %bn = nn.batch_norm %sum, %g, %t, %m, %v {epsilon = 1.0e-05 : f32} : (tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  func.return %bn : tensor<1x2x2x2xf32>
}

// Two batch norms in a row both fold: W'' = 3 * 2 * W, b'' = 3 * 0 + 1.
// CHECK-LABEL: func.func @bn_chain
// CHECK-NOT:     nn.batch_norm
// CHECK:         %[[W:.*]] = nn.weight dense_resource<ch_w_bn_bn> : tensor<2x1x1x1xf32>
// CHECK-NEXT:    %[[B:.*]] = nn.weight dense_resource<chain_b_bn_bn> : tensor<2xf32>
// CHECK-NEXT:    %chain = nn.conv2d %x, %[[W]], %[[B]]
// CHECK-NEXT:    func.return %chain
// WEIGHTS-DAG:   ch_w_bn_bn: "0x040000000000c04000004041"
// WEIGHTS-DAG:   chain_b_bn_bn: "0x040000000000803f0000803f"
func.func @bn_chain(%x: tensor<1x1x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %w = nn.weight dense_resource<ch_w> : tensor<2x1x1x1xf32>
  %chain = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x2x2xf32>
  %g = nn.weight dense_resource<ch_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<ch_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<ch_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<ch_var> : tensor<2xf32>
  %bn = nn.batch_norm %chain, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  %g2 = nn.weight dense_resource<ch_scale2> : tensor<2xf32>
  %t2 = nn.weight dense_resource<ch_shift2> : tensor<2xf32>
  %m2 = nn.weight dense_resource<ch_mean2> : tensor<2xf32>
  %v2 = nn.weight dense_resource<ch_var2> : tensor<2xf32>
  %bn2 = nn.batch_norm %bn, %g2, %t2, %m2, %v2 {epsilon = 0.0 : f32} : (tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  func.return %bn2 : tensor<1x2x2x2xf32>
}

// A weight shared by two convs: the folded conv gets a new weight, the other
// conv keeps the old one (whose data is unchanged).
// CHECK-LABEL: func.func @shared_weight
// CHECK:         %w = nn.weight dense_resource<sh_w> : tensor<2x1x1x1xf32>
// CHECK:         %[[W:.*]] = nn.weight dense_resource<sh_w_bn>
// CHECK:         %a = nn.conv2d %x, %[[W]], %{{.*}} :
// CHECK:         %b = nn.conv2d %x, %w {
// CHECK-NOT:     nn.batch_norm
// WEIGHTS-DAG:   sh_w: "0x040000000000803f00000040"
// WEIGHTS-DAG:   sh_w_bn: "0x040000000000004000008040"
func.func @shared_weight(%x: tensor<1x1x2x2xf32>) -> (tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) {
  %w = nn.weight dense_resource<sh_w> : tensor<2x1x1x1xf32>
  %a = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x2x2xf32>
  %g = nn.weight dense_resource<sh_scale> : tensor<2xf32>
  %t = nn.weight dense_resource<sh_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<sh_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<sh_var> : tensor<2xf32>
  %bn = nn.batch_norm %a, %g, %t, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  %b = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x2x2xf32>
  func.return %bn, %b : tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>
}

// Batch norm parameters that are not constants cannot be folded.
// CHECK-LABEL: func.func @param_not_constant
// CHECK:         %conv = nn.conv2d %x, %w {
// CHECK:         %bn = nn.batch_norm %conv, %scale, %t, %m, %v
func.func @param_not_constant(%x: tensor<1x1x2x2xf32>, %scale: tensor<2xf32>) -> tensor<1x2x2x2xf32> {
  %w = nn.weight dense_resource<pa_w> : tensor<2x1x1x1xf32>
  %conv = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x2x2xf32>
  %t = nn.weight dense_resource<pa_shift> : tensor<2xf32>
  %m = nn.weight dense_resource<pa_mean> : tensor<2xf32>
  %v = nn.weight dense_resource<pa_var> : tensor<2xf32>
  %bn = nn.batch_norm %conv, %scale, %t, %m, %v {epsilon = 1.0e-05 : f32} : (tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
  func.return %bn : tensor<1x2x2x2xf32>
}

// The numbers: @main (conv + bn + relu, depthwise conv + bn, gemm + bn, with
// random weights) runs to the same outputs with and without the pass.
// CHECK-LABEL: func.func @main
// CHECK-NOT:     nn.batch_norm
// CHECK:         func.return
func.func @main(%x: tensor<1x3x6x6xf32>) -> tensor<1x5xf32> {
  %w1 = nn.weight dense_resource<m_conv_w> : tensor<4x3x3x3xf32>
  %b1 = nn.weight dense_resource<m_conv_b> : tensor<4xf32>
  %conv = nn.conv2d %x, %w1, %b1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x6x6xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x6x6xf32>
  %g1 = nn.weight dense_resource<m_bn1_scale> : tensor<4xf32>
  %t1 = nn.weight dense_resource<m_bn1_shift> : tensor<4xf32>
  %m1 = nn.weight dense_resource<m_bn1_mean> : tensor<4xf32>
  %v1 = nn.weight dense_resource<m_bn1_var> : tensor<4xf32>
  %bn1 = nn.batch_norm %conv, %g1, %t1, %m1, %v1 {epsilon = 1.0e-05 : f32} : (tensor<1x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x6x6xf32>
  %relu = nn.relu %bn1 : (tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
  %w2 = nn.weight dense_resource<m_dw_w> : tensor<4x1x3x3xf32>
  %dw = nn.conv2d %relu, %w2 {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x6x6xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x3x3xf32>
  %g2 = nn.weight dense_resource<m_bn2_scale> : tensor<4xf32>
  %t2 = nn.weight dense_resource<m_bn2_shift> : tensor<4xf32>
  %m2 = nn.weight dense_resource<m_bn2_mean> : tensor<4xf32>
  %v2 = nn.weight dense_resource<m_bn2_var> : tensor<4xf32>
  %bn2 = nn.batch_norm %dw, %g2, %t2, %m2, %v2 {epsilon = 1.0e-03 : f32} : (tensor<1x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x3x3xf32>
  %gap = nn.global_avg_pool %bn2 : (tensor<1x4x3x3xf32>) -> tensor<1x4x1x1xf32>
  %flat = nn.reshape %gap : (tensor<1x4x1x1xf32>) -> tensor<1x4xf32>
  %w3 = nn.weight dense_resource<m_fc_w> : tensor<5x4xf32>
  %c3 = nn.weight dense_resource<m_fc_c> : tensor<5xf32>
  %fc = nn.gemm %flat, %w3, %c3 {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 0.5 : f32, beta = 2.0 : f32} : (tensor<1x4xf32>, tensor<5x4xf32>, tensor<5xf32>) -> tensor<1x5xf32>
  %g3 = nn.weight dense_resource<m_bn3_scale> : tensor<5xf32>
  %t3 = nn.weight dense_resource<m_bn3_shift> : tensor<5xf32>
  %m3 = nn.weight dense_resource<m_bn3_mean> : tensor<5xf32>
  %v3 = nn.weight dense_resource<m_bn3_var> : tensor<5xf32>
  %y = nn.batch_norm %fc, %g3, %t3, %m3, %v3 {epsilon = 1.0e-05 : f32} : (tensor<1x5xf32>, tensor<5xf32>, tensor<5xf32>, tensor<5xf32>, tensor<5xf32>) -> tensor<1x5xf32>
  func.return %y : tensor<1x5xf32>
}

{-#
  dialect_resources: {
    nn: {
      cb_w: "0x040000000000803f00004040",
      cb_b: "0x040000000000803f00000040",
      cb_scale: "0x04000000000000400000c040",
      cb_shift: "0x040000000000003f00000000",
      cb_mean: "0x040000000000803f000080bf",
      cb_var: "0x040000000000804000001041",
      cn_w: "0x040000000000803f000000400000404000008040",
      cn_scale: "0x040000000000803f00008040",
      cn_shift: "0x04000000000000000000803f",
      cn_mean: "0x04000000000000400000803f",
      cn_var: "0x040000000000803f00008040",
      dw_w: "0x04000000000000000000803e0000003f0000403f0000803f0000a03f0000c03f0000e03f00000040000010400000204000003040000040400000504000006040000070400000804000008840",
      dw_scale: "0x040000000000803f00008040",
      dw_shift: "0x040000000000000000000000",
      dw_mean: "0x040000000000000000000000",
      dw_var: "0x040000000000804000008040",
      g_w: "0x040000000000803f0000803f0000803f0000803f0000004000004040",
      g_c: "0x040000000000004000008040",
      g_scale: "0x04000000000000400000c040",
      g_shift: "0x040000000000003f00000000",
      g_mean: "0x040000000000803f000080bf",
      g_var: "0x040000000000804000001041",
      gb_w: "0x040000000000803f0000004000004040000080400000a0400000c040",
      gb_c: "0x040000000000803f00000040",
      gb_scale: "0x040000000000803f00008040",
      gb_shift: "0x040000000000000000000000",
      gb_mean: "0x040000000000000000000000",
      gb_var: "0x040000000000803f00008040",
      gn_w: "0x040000000000803f0000004000004040000080400000a0400000c040",
      gn_scale: "0x040000000000803f00008040",
      gn_shift: "0x040000000000803f0000803f",
      gn_mean: "0x040000000000803f0000803f",
      gn_var: "0x040000000000803f00008040",
      tu_w: "0x040000000000803f00000040",
      tu_scale: "0x040000000000803f0000803f",
      tu_shift: "0x040000000000000000000000",
      tu_mean: "0x040000000000000000000000",
      tu_var: "0x040000000000803f0000803f",
      ad_scale: "0x040000000000803f0000803f",
      ad_shift: "0x040000000000000000000000",
      ad_mean: "0x040000000000000000000000",
      ad_var: "0x040000000000803f0000803f",
      ch_w: "0x040000000000803f00000040",
      ch_scale: "0x040000000000004000000040",
      ch_shift: "0x040000000000000000000000",
      ch_mean: "0x040000000000000000000000",
      ch_var: "0x040000000000803f0000803f",
      ch_scale2: "0x040000000000404000004040",
      ch_shift2: "0x040000000000803f0000803f",
      ch_mean2: "0x040000000000000000000000",
      ch_var2: "0x040000000000803f0000803f",
      sh_w: "0x040000000000803f00000040",
      sh_scale: "0x040000000000004000000040",
      sh_shift: "0x040000000000000000000000",
      sh_mean: "0x040000000000000000000000",
      sh_var: "0x040000000000803f0000803f",
      pa_w: "0x040000000000803f00000040",
      pa_shift: "0x040000000000000000000000",
      pa_mean: "0x040000000000000000000000",
      pa_var: "0x040000000000803f0000803f",
      m_conv_w: "0x040000000719803e9b5f4b3fad260d3fa5b10cbf36a1ccbe66423f3fde4d7dbf0d78243f7c19183fa45683bddeb1c9be65e4e2be7803fbbeabf7e0bd9009153c0a20db3d37b27d3fc8d7153f1b397a3efc587a3f0fc311bfb0f82dbf2a7b663e6f8069bf51bb6dbf3df0f33c8d6b8abd0497553fe353843eb44de73c0de7ccbbb94501bf22f679bf777d1dbf11a4c43e134a19bf469885be8c167ebf04fc283f7aea30bf73faedbee5ba423fa269a03cadbd313f04128f3ece92f73e7d2751bf6c86a83d3eae7e3c32203e3fcb108ebeba14493ec5a961bf4c2166bef635b5be051933bf11f7213fede476be711e753f914d383ebc27573efa4e8d3e5fafb43eeacb32bfde79f4bddf5705bff9ae47becd7c4ebf29876f3ffeea11bf35e3af3eae5eccbe06873f3f9f1ba63eda9c3cbf95ad303f3fd0633f2ece4e3feac80e3e468635bf6d751dbf74165b3f4d54d63d9f8e23bf1ba3443f2cf8903edfbb0e3ece5c7dbe145d36beab6105bfc1836cbfc09f403f522d84bd201dc33dd21ab6bea9ad003f651973bfdde182beed7570bf491441bf0e2e6f3f078ca13e430113be9d7a423dd9e03e3f3d879fbe7bea383ec217bc3e",
      m_conv_b: "0x04000000690e94be6e741c3d81ce073ff37f513f",
      m_dw_w: "0x04000000f7a732bf26e95d3f32597dbf4486013f5ffd1e3f10fa39bfd81526be4569213f72b178bf878b833e3207163ffb0cd53c1245e73e39120cbf705b1abf73288cbee52424bf12a29dbe8470653f772f163e32c5a3be73f5e9beb871673fd16ae3bd4df6753fcb52fe3c97642d3d5c074b3f0698f83e542d253ec93816bed7a1413fddf234bef173583f57d15cbfce5d0fbe",
      m_fc_w: "0x040000008bdd1f3d5fe1663f0efafebe2ab11c3fdeb4b43ec44bde3eadbb843e6870713f8d55abbee75450bef31b18bf1e0a66bfb2fd12bfc0b7543f9b2a2e3fc17246bf198a543e1d6c2abd24ea413efd18a33e",
      m_fc_c: "0x040000000efbc5be2e366c3f52eb8bbddf2c833ebc788a3e",
      m_bn1_scale: "0x04000000109d463f9ec1173fe0028f3f9bb1d23f",
      m_bn1_shift: "0x04000000c064213f4d82eb3e000a46bf40a3533f",
      m_bn1_mean: "0x040000008aa41a3fc360413f5ae83e3d2bce543f",
      m_bn1_var: "0x04000000a62a413e7854213e3ebb0d3ef48b143f",
      m_bn2_scale: "0x0400000067735f3f5400483feddfac3f77f80e3f",
      m_bn2_shift: "0x04000000461d393e96002bbf8724b63e9c3575bf",
      m_bn2_mean: "0x04000000e3f9c1be456e603f86459d3d62881f3f",
      m_bn2_var: "0x04000000fad4ac3fa855a13f2840ed3e287e983f",
      m_bn3_scale: "0x04000000553d0f3f69ebd93f6855f83f41f8e33ff678133f",
      m_bn3_shift: "0x040000004b36a5be5f5dbabef54946bf87a6813e704c183f",
      m_bn3_mean: "0x04000000ccbfbebe22c2393f0521183fa2e13dbfc3a1083f",
      m_bn3_var: "0x040000000f74e33fd21df33e3e4f983fdd24a83f77fda03f"
    }
  }
#-}
