"""ResNet-18/34/50/101/152 as in torchvision (``torchvision.models.resnet``).

Bottleneck blocks are "ResNet v1.5" (stride on the 3x3 conv), like torchvision.
The last BatchNormalization of every residual branch gets a reduced gamma
(``RESIDUAL_GAIN``) so that the random-weight activations do not grow
geometrically with depth (the same idea as ``zero_init_residual``, but
non-zero so that every branch still contributes).
"""

from __future__ import annotations

import onnx

from .builder import GraphBuilder

RESIDUAL_GAIN = 0.2


def _basic_block(g: GraphBuilder, x: str, prefix: str, planes: int, stride: int) -> str:
    identity = x
    y = g.conv(x, f"{prefix}.conv1", planes, 3, stride, 1)
    y = g.bn(y, f"{prefix}.bn1")
    y = g.relu(y, f"{prefix}.relu1")
    y = g.conv(y, f"{prefix}.conv2", planes, 3, 1, 1)
    y = g.bn(y, f"{prefix}.bn2", gain=RESIDUAL_GAIN)
    if stride != 1 or g.channels[x] != planes:
        identity = g.conv(x, f"{prefix}.downsample.conv", planes, 1, stride, 0)
        identity = g.bn(identity, f"{prefix}.downsample.bn")
    y = g.add(y, identity, f"{prefix}.add")
    return g.relu(y, f"{prefix}.relu2")


def _bottleneck(g: GraphBuilder, x: str, prefix: str, planes: int, stride: int) -> str:
    out = planes * 4
    identity = x
    y = g.conv(x, f"{prefix}.conv1", planes, 1)
    y = g.bn(y, f"{prefix}.bn1")
    y = g.relu(y, f"{prefix}.relu1")
    y = g.conv(y, f"{prefix}.conv2", planes, 3, stride, 1)
    y = g.bn(y, f"{prefix}.bn2")
    y = g.relu(y, f"{prefix}.relu2")
    y = g.conv(y, f"{prefix}.conv3", out, 1)
    y = g.bn(y, f"{prefix}.bn3", gain=RESIDUAL_GAIN)
    if stride != 1 or g.channels[x] != out:
        identity = g.conv(x, f"{prefix}.downsample.conv", out, 1, stride, 0)
        identity = g.bn(identity, f"{prefix}.downsample.bn")
    y = g.add(y, identity, f"{prefix}.add")
    return g.relu(y, f"{prefix}.relu3")


def _resnet(name: str, bottleneck: bool, layers: list[int], seed: int, batch: int,
            materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder(name, (batch, 3, 224, 224), seed, materialize=materialize)
    x = g.conv(g.input_name, "conv1", 64, 7, 2, 3)
    x = g.bn(x, "bn1")
    x = g.relu(x, "relu")
    x = g.maxpool(x, "maxpool", 3, 2, 1)
    block = _bottleneck if bottleneck else _basic_block
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for j in range(n):
            stride = 2 if (j == 0 and i > 1) else 1
            x = block(g, x, f"layer{i}.{j}", planes, stride)
    x = g.global_avgpool(x, "avgpool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "fc", 1000)
    return g.build(x, doc=f"{name} (torchvision architecture, random seeded weights)")


def resnet18(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    return _resnet("resnet18", False, [2, 2, 2, 2], seed, batch, materialize)


def resnet34(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    return _resnet("resnet34", False, [3, 4, 6, 3], seed, batch, materialize)


def resnet50(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    return _resnet("resnet50", True, [3, 4, 6, 3], seed, batch, materialize)


def resnet101(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    return _resnet("resnet101", True, [3, 4, 23, 3], seed, batch, materialize)


def resnet152(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    return _resnet("resnet152", True, [3, 8, 36, 3], seed, batch, materialize)
