"""MobileNet v1 (Howard et al. 2017) and MobileNet v2 (torchvision).

MobileNet v1 is not in torchvision; it follows Table 1 of the paper
(width multiplier 1.0, 224x224): a 3x3/2 stem conv with 32 filters, 13
depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each followed by
BN + ReLU), global average pooling and a 1024->1000 fully-connected layer.

MobileNet v2 follows ``torchvision.models.mobilenet_v2`` (width 1.0): ReLU6 is
exported as ``Clip(x, 0, 6)`` (like ``torch.onnx``), the projection conv of
each inverted residual is linear (BN, no activation), and blocks with stride 1
and equal in/out channels have a residual ``Add``.  Node names follow
torchvision's module paths where that gives readable names
(``features.3.expand``, ``features.3.dw``, ``features.3.project``).
"""

from __future__ import annotations

import onnx

from .builder import GraphBuilder

# (out_channels, stride) of the 13 depthwise-separable blocks of MobileNet v1
_V1_BLOCKS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]

# MobileNet v2 inverted residual settings: t (expansion), c, n, s
_V2_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]

RESIDUAL_GAIN = 0.5


def mobilenet_v1(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder("mobilenet_v1", (batch, 3, 224, 224), seed, materialize=materialize)
    x = g.conv_bn_act(g.input_name, "stem", 32, 3, 2, 1)
    for i, (out, stride) in enumerate(_V1_BLOCKS, start=1):
        cin = g.channels[x]
        x = g.conv_bn_act(x, f"block{i}.dw", cin, 3, stride, 1, groups=cin)
        x = g.conv_bn_act(x, f"block{i}.pw", out, 1)
    x = g.global_avgpool(x, "avgpool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "fc", 1000)
    return g.build(x, doc="mobilenet_v1 (Howard et al. 2017, width 1.0, random seeded weights)")


def mobilenet_v2(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder("mobilenet_v2", (batch, 3, 224, 224), seed, materialize=materialize)
    x = g.conv_bn_act(g.input_name, "features.0", 32, 3, 2, 1, relu6=True)
    idx = 1
    for t, c, n, s in _V2_SETTINGS:
        for j in range(n):
            stride = s if j == 0 else 1
            prefix = f"features.{idx}"
            cin = g.channels[x]
            hidden = cin * t
            y = x
            if t != 1:
                y = g.conv_bn_act(y, f"{prefix}.expand", hidden, 1, relu6=True)
            y = g.conv_bn_act(y, f"{prefix}.dw", hidden, 3, stride, 1, groups=hidden, relu6=True)
            y = g.conv(y, f"{prefix}.project.conv", c, 1)
            residual = stride == 1 and cin == c
            y = g.bn(y, f"{prefix}.project.bn", gain=RESIDUAL_GAIN if residual else 1.0)
            if residual:
                y = g.add(x, y, f"{prefix}.add")
            x = y
            idx += 1
    x = g.conv_bn_act(x, f"features.{idx}", 1280, 1, relu6=True)
    x = g.global_avgpool(x, "avgpool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "classifier", 1000)
    return g.build(x, doc="mobilenet_v2 (torchvision architecture, random seeded weights)")
