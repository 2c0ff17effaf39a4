// Input of lower-to-accel.mlir: a fusion group with more cores than mlu100 has.
func.func @main(%x: tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32> attributes {nn.input_names = ["x"], nn.output_names = ["y"]} {
  %y = nn.fusion_group "g0" cores 64 ins(%x) : (tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32> {
  ^bb0(%a: tensor<1x4x6x6xf32>):
    %r = nn.relu %a : (tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
    nn.yield %r : tensor<1x4x6x6xf32>
  }
  func.return %y : tensor<1x4x6x6xf32>
}
