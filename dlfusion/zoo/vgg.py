"""VGG-16 / VGG-19 as in torchvision (configurations "D" and "E", no BatchNorm).

torchvision's plain ``vgg16``/``vgg19`` have no BatchNormalization (those are
the ``*_bn`` variants), so the convolutions carry a bias and are followed
directly by ReLU.  ``AdaptiveAvgPool2d((7, 7))`` is the identity for a 224x224
input (the feature map already is 7x7) and is therefore omitted; Dropout is
omitted too (identity at inference).
"""

from __future__ import annotations

import onnx

from .builder import GraphBuilder

_CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _vgg(name: str, seed: int, batch: int, materialize: bool) -> onnx.ModelProto:
    g = GraphBuilder(name, (batch, 3, 224, 224), seed, materialize=materialize)
    x = g.input_name
    # torchvision indexes features.N sequentially; we use block/conv numbering
    # (features.block1.conv1, ..., features.block1.pool) for readable names.
    blk, idx = 1, 1
    for v in _CFGS[name]:
        if v == "M":
            x = g.maxpool(x, f"features.block{blk}.pool", 2, 2)
            blk, idx = blk + 1, 1
        else:
            x = g.conv(x, f"features.block{blk}.conv{idx}", int(v), 3, 1, 1, bias=True)
            x = g.relu(x, f"features.block{blk}.relu{idx}")
            idx += 1
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "classifier.fc1", 4096, in_features=512 * 7 * 7, relu_follows=True)
    x = g.relu(x, "classifier.relu1")
    x = g.gemm(x, "classifier.fc2", 4096, relu_follows=True)
    x = g.relu(x, "classifier.relu2")
    x = g.gemm(x, "classifier.fc3", 1000)
    return g.build(x, doc=f"{name} (torchvision architecture, random seeded weights)")


def vgg16(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    return _vgg("vgg16", seed, batch, materialize)


def vgg19(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    return _vgg("vgg19", seed, batch, materialize)
