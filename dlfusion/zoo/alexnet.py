"""AlexNet as in torchvision (the single-tower "One weird trick" variant).

torchvision's AlexNet follows Krizhevsky, "One weird trick for parallelizing
convolutional neural networks" (2014): 64-192-384-256-256 filters, no LRN, no
grouped convolutions -- not the two-GPU network of the 2012 paper (96-256-
384-384-256 filters, grouped conv2/4/5), which has a different MAC count
(~0.72 G vs torchvision's 0.71 G at 224x224).  No BatchNorm; convs carry a bias.
``AdaptiveAvgPool2d((6, 6))`` is the identity at 224x224 (the feature map is
6x6) and is omitted, as is Dropout.
"""

from __future__ import annotations

import onnx

from .builder import GraphBuilder


def alexnet(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder("alexnet", (batch, 3, 224, 224), seed, materialize=materialize)
    x = g.conv(g.input_name, "features.conv1", 64, 11, 4, 2, bias=True)
    x = g.relu(x, "features.relu1")
    x = g.maxpool(x, "features.pool1", 3, 2)
    x = g.conv(x, "features.conv2", 192, 5, 1, 2, bias=True)
    x = g.relu(x, "features.relu2")
    x = g.maxpool(x, "features.pool2", 3, 2)
    x = g.conv(x, "features.conv3", 384, 3, 1, 1, bias=True)
    x = g.relu(x, "features.relu3")
    x = g.conv(x, "features.conv4", 256, 3, 1, 1, bias=True)
    x = g.relu(x, "features.relu4")
    x = g.conv(x, "features.conv5", 256, 3, 1, 1, bias=True)
    x = g.relu(x, "features.relu5")
    x = g.maxpool(x, "features.pool5", 3, 2)
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "classifier.fc6", 4096, in_features=256 * 6 * 6, relu_follows=True)
    x = g.relu(x, "classifier.relu6")
    x = g.gemm(x, "classifier.fc7", 4096, relu_follows=True)
    x = g.relu(x, "classifier.relu7")
    x = g.gemm(x, "classifier.fc8", 1000)
    return g.build(x, doc="alexnet (torchvision one-tower architecture, random seeded weights)")
