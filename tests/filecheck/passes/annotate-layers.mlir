// RUN: dlfusion-opt %s -p annotate-layers | filecheck %s
// RUN: dlfusion-opt %s -p 'annotate-layers{element-bytes=4}' | filecheck %s --check-prefix=F32
// RUN: dlfusion-opt %s -p 'annotate-layers{target=edge8}' | filecheck %s --check-prefix=EDGE
// RUN: dlfusion-opt %s -p annotate-layers,annotate-layers | filecheck %s

// Characteristics from shapes alone. The default target (mlu100) counts
// bytes in FP16 (2 bytes); element-bytes=4 overrides it; edge8 is FP16 too.

func.func @main(%x: tensor<1x3x8x8xf32>) -> tensor<1x10xf32> attributes {nn.input_names = ["x"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<w> : tensor<4x3x3x3xf32>
  %dw = nn.weight dense_resource<dw> : tensor<4x1x3x3xf32>
  %fc = nn.weight dense_resource<fc> : tensor<10x64xf32>
  // 4 out x 64 positions x 3 in x 9 taps = 6912 MACs; ifm 192, ofm 256, weights 108 elements
  // CHECK: %conv = nn.conv2d
  // CHECK-SAME: nn.kind = "conv", nn.macs = 6912 : i64, nn.vector_ops = 0 : i64, nn.ops = 6912 : i64, nn.cin = 3 : i64, nn.cout = 4 : i64, nn.hw = 64 : i64, nn.ifm_bytes = 384 : i64, nn.ofm_bytes = 512 : i64, nn.weight_bytes = 216 : i64
  // F32: %conv = nn.conv2d
  // F32-SAME: nn.ifm_bytes = 768 : i64, nn.ofm_bytes = 1024 : i64, nn.weight_bytes = 432 : i64
  // EDGE: %conv = nn.conv2d
  // EDGE-SAME: nn.ifm_bytes = 384 : i64
  %conv = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32>
  %g = nn.fusion_group "g0" cores 2 ins(%conv, %dw) : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32> {
  ^bb0(%a: tensor<1x4x8x8xf32>, %k: tensor<4x1x3x3xf32>):
    // inside a group the weight is a group argument, still counted as a weight
    // CHECK: %dconv = nn.conv2d
    // CHECK-SAME: nn.kind = "depthwise", nn.macs = 2304 : i64
    // CHECK-SAME: nn.ifm_bytes = 512 : i64, nn.ofm_bytes = 512 : i64, nn.weight_bytes = 72 : i64
    %dconv = nn.conv2d %a, %k {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x8x8xf32>
    // 64 outputs x 4-element windows
    // CHECK: %pool = nn.max_pool
    // CHECK-SAME: nn.kind = "pool", nn.macs = 0 : i64, nn.vector_ops = 256 : i64, nn.ops = 256 : i64, nn.cin = 4 : i64, nn.cout = 4 : i64, nn.hw = 16 : i64, nn.ifm_bytes = 512 : i64, nn.ofm_bytes = 128 : i64, nn.weight_bytes = 0 : i64
    %pool = nn.max_pool %dconv {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
    // CHECK: %sum = nn.add
    // CHECK-SAME: nn.kind = "eltwise", nn.macs = 0 : i64, nn.vector_ops = 64 : i64
    // CHECK-SAME: nn.ifm_bytes = 256 : i64, nn.ofm_bytes = 128 : i64
    %sum = nn.add %pool, %pool : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    nn.yield %sum : tensor<1x4x4x4xf32>
  }
  // a reshape moves no data
  // CHECK: %flat = nn.reshape
  // CHECK-SAME: nn.kind = "data", nn.macs = 0 : i64, nn.vector_ops = 0 : i64, nn.ops = 0 : i64
  %flat = nn.reshape %g : (tensor<1x4x4x4xf32>) -> tensor<1x64xf32>
  // CHECK: %y = nn.gemm
  // CHECK-SAME: nn.kind = "gemm", nn.macs = 640 : i64
  // CHECK-SAME: nn.cin = 64 : i64, nn.cout = 10 : i64, nn.hw = 1 : i64, nn.ifm_bytes = 128 : i64, nn.ofm_bytes = 20 : i64, nn.weight_bytes = 1280 : i64
  %y = nn.gemm %flat, %fc {trans_a = 0 : i64, trans_b = 1 : i64, alpha = 1.0 : f32, beta = 1.0 : f32} : (tensor<1x64xf32>, tensor<10x64xf32>) -> tensor<1x10xf32>
  func.return %y : tensor<1x10xf32>
}
