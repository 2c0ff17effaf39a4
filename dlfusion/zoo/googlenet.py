"""GoogLeNet (Inception v1) as in torchvision, eval mode.

Follows ``torchvision.models.googlenet`` exactly, including its quirks:

* every conv is ``BasicConv2d`` = Conv(bias=False) + BatchNorm(eps=1e-3) + ReLU
  (the original paper had no BN),
* the "5x5" branch of each Inception block uses a 3x3 convolution (a known
  torchvision bug kept for weight compatibility),
* max-pools use ``ceil_mode=True``,
* no auxiliary classifiers (they are only evaluated in training mode),
* ``transform_input`` (an input re-normalisation enabled for the pretrained
  weights) is not modelled; Dropout is omitted.
"""

from __future__ import annotations

import onnx

from .builder import GraphBuilder

_EPS = 1e-3

# name: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
_INCEPTION = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def _basic(g: GraphBuilder, x: str, prefix: str, out: int, k: int, s: int = 1, p: int = 0) -> str:
    return g.conv_bn_act(x, prefix, out, k, s, p, eps=_EPS)


def _inception(g: GraphBuilder, x: str, name: str) -> str:
    c1, c3r, c3, c5r, c5, pp = _INCEPTION[name]
    b1 = _basic(g, x, f"{name}.branch1", c1, 1)
    b2 = _basic(g, x, f"{name}.branch2a", c3r, 1)
    b2 = _basic(g, b2, f"{name}.branch2b", c3, 3, 1, 1)
    b3 = _basic(g, x, f"{name}.branch3a", c5r, 1)
    b3 = _basic(g, b3, f"{name}.branch3b", c5, 3, 1, 1)  # 3x3, as in torchvision
    b4 = g.maxpool(x, f"{name}.branch4pool", 3, 1, 1, ceil_mode=True)
    b4 = _basic(g, b4, f"{name}.branch4b", pp, 1)
    return g.concat([b1, b2, b3, b4], f"{name}.concat")


def googlenet(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder("googlenet", (batch, 3, 224, 224), seed, materialize=materialize)
    x = _basic(g, g.input_name, "conv1", 64, 7, 2, 3)
    x = g.maxpool(x, "maxpool1", 3, 2, ceil_mode=True)
    x = _basic(g, x, "conv2", 64, 1)
    x = _basic(g, x, "conv3", 192, 3, 1, 1)
    x = g.maxpool(x, "maxpool2", 3, 2, ceil_mode=True)
    x = _inception(g, x, "inception3a")
    x = _inception(g, x, "inception3b")
    x = g.maxpool(x, "maxpool3", 3, 2, ceil_mode=True)
    for n in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
        x = _inception(g, x, n)
    x = g.maxpool(x, "maxpool4", 2, 2, ceil_mode=True)
    x = _inception(g, x, "inception5a")
    x = _inception(g, x, "inception5b")
    x = g.global_avgpool(x, "avgpool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "fc", 1000)
    return g.build(x, doc="googlenet (torchvision architecture, eval mode, random seeded weights)")
