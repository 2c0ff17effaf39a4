"""DenseNet-121 as in torchvision (growth 32, blocks (6, 12, 24, 16), bn_size 4).

Dense layers are pre-activation (BN -> ReLU -> 1x1 conv -> BN -> ReLU -> 3x3
conv); the input of every dense layer is the ``Concat`` of the block input and
all previous layer outputs (as a PyTorch export produces it).  Transitions
halve the channels with BN -> ReLU -> 1x1 conv -> AvgPool 2x2/2.  After the
last block: BN -> ReLU -> global average pooling -> Linear(1024, 1000).
"""

from __future__ import annotations

import onnx

from .builder import GraphBuilder

GROWTH = 32
BN_SIZE = 4
BLOCKS = (6, 12, 24, 16)
INIT_FEATURES = 64


def densenet121(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder("densenet121", (batch, 3, 224, 224), seed, materialize=materialize)
    x = g.conv(g.input_name, "features.conv0", INIT_FEATURES, 7, 2, 3)
    x = g.bn(x, "features.norm0")
    x = g.relu(x, "features.relu0")
    x = g.maxpool(x, "features.pool0", 3, 2, 1)
    for b, n in enumerate(BLOCKS, start=1):
        feats = [x]
        for i in range(1, n + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            y = feats[0] if len(feats) == 1 else g.concat(feats, f"{p}.concat")
            y = g.bn(y, f"{p}.norm1")
            y = g.relu(y, f"{p}.relu1")
            y = g.conv(y, f"{p}.conv1", BN_SIZE * GROWTH, 1)
            y = g.bn(y, f"{p}.norm2")
            y = g.relu(y, f"{p}.relu2")
            y = g.conv(y, f"{p}.conv2", GROWTH, 3, 1, 1)
            feats.append(y)
        x = g.concat(feats, f"features.denseblock{b}.concat")
        if b != len(BLOCKS):
            p = f"features.transition{b}"
            x = g.bn(x, f"{p}.norm")
            x = g.relu(x, f"{p}.relu")
            x = g.conv(x, f"{p}.conv", g.channels[x] // 2, 1)
            x = g.avgpool(x, f"{p}.pool", 2, 2)
    x = g.bn(x, "features.norm5")
    x = g.relu(x, "features.relu5")
    x = g.global_avgpool(x, "avgpool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "classifier", 1000)
    return g.build(x, doc="densenet121 (torchvision architecture, random seeded weights)")
