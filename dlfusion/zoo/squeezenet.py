"""SqueezeNet 1.0 as in torchvision.

Convs carry a bias and no BatchNorm; max-pools use ``ceil_mode=True``.  The
classifier is a 1x1 conv to 1000 channels + ReLU + global average pooling
(torchvision's ``AdaptiveAvgPool2d((1, 1))``) + Flatten; there is no Gemm.
Dropout is omitted.
"""

from __future__ import annotations

import onnx

from .builder import GraphBuilder


def _fire(g: GraphBuilder, x: str, name: str, squeeze: int, e1: int, e3: int) -> str:
    s = g.conv(x, f"{name}.squeeze", squeeze, 1, bias=True)
    s = g.relu(s, f"{name}.squeeze_activation")
    a = g.conv(s, f"{name}.expand1x1", e1, 1, bias=True)
    a = g.relu(a, f"{name}.expand1x1_activation")
    b = g.conv(s, f"{name}.expand3x3", e3, 3, 1, 1, bias=True)
    b = g.relu(b, f"{name}.expand3x3_activation")
    return g.concat([a, b], f"{name}.concat")


def squeezenet1_0(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder("squeezenet1_0", (batch, 3, 224, 224), seed, materialize=materialize)
    x = g.conv(g.input_name, "features.conv1", 96, 7, 2, bias=True)
    x = g.relu(x, "features.relu1")
    x = g.maxpool(x, "features.pool1", 3, 2, ceil_mode=True)
    x = _fire(g, x, "features.fire2", 16, 64, 64)
    x = _fire(g, x, "features.fire3", 16, 64, 64)
    x = _fire(g, x, "features.fire4", 32, 128, 128)
    x = g.maxpool(x, "features.pool4", 3, 2, ceil_mode=True)
    x = _fire(g, x, "features.fire5", 32, 128, 128)
    x = _fire(g, x, "features.fire6", 48, 192, 192)
    x = _fire(g, x, "features.fire7", 48, 192, 192)
    x = _fire(g, x, "features.fire8", 64, 256, 256)
    x = g.maxpool(x, "features.pool8", 3, 2, ceil_mode=True)
    x = _fire(g, x, "features.fire9", 64, 256, 256)
    x = g.conv(x, "classifier.final_conv", 1000, 1, bias=True)
    x = g.relu(x, "classifier.relu")
    x = g.global_avgpool(x, "classifier.avgpool")
    x = g.flatten(x, "flatten")
    return g.build(x, doc="squeezenet1_0 (torchvision architecture, random seeded weights)")
