// Input of lower-to-accel.mlir: a conv whose smallest tile exceeds the tiny target's NRAM.
func.func @main(%x: tensor<1x256x4x4xf32>) -> tensor<1x4x4x4xf32> attributes {nn.input_names = ["x"], nn.output_names = ["y"]} {
  %w = nn.weight dense_resource<big_w> : tensor<4x256x3x3xf32>
  %big = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x256x4x4xf32>, tensor<4x256x3x3xf32>) -> tensor<1x4x4x4xf32>
  func.return %big : tensor<1x4x4x4xf32>
}
