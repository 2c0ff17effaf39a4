// Input of assign-cores.mlir: a conv - relu - max pool chain without fusion groups.
func.func @main(%x: tensor<1x16x12x12xf32>) -> tensor<1x32x6x6xf32> attributes {nn.input_names = ["x"], nn.output_names = ["pool"]} {
  %w = nn.weight dense_resource<w> : tensor<32x16x3x3xf32>
  %conv = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x12x12xf32>, tensor<32x16x3x3xf32>) -> tensor<1x32x12x12xf32>
  %relu = nn.relu %conv : (tensor<1x32x12x12xf32>) -> tensor<1x32x12x12xf32>
  %pool = nn.max_pool %relu {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64} : (tensor<1x32x12x12xf32>) -> tensor<1x32x6x6xf32>
  func.return %pool : tensor<1x32x6x6xf32>
}
