"""Inception v3 as in torchvision, eval mode, 299x299 input.

Follows ``torchvision.models.inception_v3``: ``BasicConv2d`` = Conv(bias=False)
+ BatchNorm(eps=1e-3) + ReLU; branch average pools are 3x3/1 with padding 1
and ``count_include_pad=True`` (PyTorch's default).  The auxiliary classifier
(``AuxLogits``) only runs in training mode and is omitted, as are Dropout and
``transform_input`` (input re-normalisation for the pretrained weights).
Module names follow torchvision (``Mixed_5b.branch1x1`` ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from .builder import GraphBuilder

_EPS = 1e-3


def _basic(g: GraphBuilder, x: str, prefix: str, out: int, k: int | Sequence[int],
           s: int = 1, p: int | Sequence[int] = 0) -> str:
    return g.conv_bn_act(x, prefix, out, k, s, p, eps=_EPS)


def _pool_branch(g: GraphBuilder, x: str, name: str, out: int) -> str:
    y = g.avgpool(x, f"{name}.branch_pool_avg", 3, 1, 1)
    return _basic(g, y, f"{name}.branch_pool", out, 1)


def _inception_a(g: GraphBuilder, x: str, name: str, pool_features: int) -> str:
    b1 = _basic(g, x, f"{name}.branch1x1", 64, 1)
    b5 = _basic(g, x, f"{name}.branch5x5_1", 48, 1)
    b5 = _basic(g, b5, f"{name}.branch5x5_2", 64, 5, 1, 2)
    b3 = _basic(g, x, f"{name}.branch3x3dbl_1", 64, 1)
    b3 = _basic(g, b3, f"{name}.branch3x3dbl_2", 96, 3, 1, 1)
    b3 = _basic(g, b3, f"{name}.branch3x3dbl_3", 96, 3, 1, 1)
    bp = _pool_branch(g, x, name, pool_features)
    return g.concat([b1, b5, b3, bp], f"{name}.concat")


def _inception_b(g: GraphBuilder, x: str, name: str) -> str:
    b3 = _basic(g, x, f"{name}.branch3x3", 384, 3, 2)
    bd = _basic(g, x, f"{name}.branch3x3dbl_1", 64, 1)
    bd = _basic(g, bd, f"{name}.branch3x3dbl_2", 96, 3, 1, 1)
    bd = _basic(g, bd, f"{name}.branch3x3dbl_3", 96, 3, 2)
    bp = g.maxpool(x, f"{name}.branch_pool_max", 3, 2)
    return g.concat([b3, bd, bp], f"{name}.concat")


def _inception_c(g: GraphBuilder, x: str, name: str, c7: int) -> str:
    b1 = _basic(g, x, f"{name}.branch1x1", 192, 1)
    b7 = _basic(g, x, f"{name}.branch7x7_1", c7, 1)
    b7 = _basic(g, b7, f"{name}.branch7x7_2", c7, (1, 7), 1, (0, 3))
    b7 = _basic(g, b7, f"{name}.branch7x7_3", 192, (7, 1), 1, (3, 0))
    bd = _basic(g, x, f"{name}.branch7x7dbl_1", c7, 1)
    bd = _basic(g, bd, f"{name}.branch7x7dbl_2", c7, (7, 1), 1, (3, 0))
    bd = _basic(g, bd, f"{name}.branch7x7dbl_3", c7, (1, 7), 1, (0, 3))
    bd = _basic(g, bd, f"{name}.branch7x7dbl_4", c7, (7, 1), 1, (3, 0))
    bd = _basic(g, bd, f"{name}.branch7x7dbl_5", 192, (1, 7), 1, (0, 3))
    bp = _pool_branch(g, x, name, 192)
    return g.concat([b1, b7, bd, bp], f"{name}.concat")


def _inception_d(g: GraphBuilder, x: str, name: str) -> str:
    b3 = _basic(g, x, f"{name}.branch3x3_1", 192, 1)
    b3 = _basic(g, b3, f"{name}.branch3x3_2", 320, 3, 2)
    b7 = _basic(g, x, f"{name}.branch7x7x3_1", 192, 1)
    b7 = _basic(g, b7, f"{name}.branch7x7x3_2", 192, (1, 7), 1, (0, 3))
    b7 = _basic(g, b7, f"{name}.branch7x7x3_3", 192, (7, 1), 1, (3, 0))
    b7 = _basic(g, b7, f"{name}.branch7x7x3_4", 192, 3, 2)
    bp = g.maxpool(x, f"{name}.branch_pool_max", 3, 2)
    return g.concat([b3, b7, bp], f"{name}.concat")


def _inception_e(g: GraphBuilder, x: str, name: str) -> str:
    b1 = _basic(g, x, f"{name}.branch1x1", 320, 1)
    b3 = _basic(g, x, f"{name}.branch3x3_1", 384, 1)
    b3a = _basic(g, b3, f"{name}.branch3x3_2a", 384, (1, 3), 1, (0, 1))
    b3b = _basic(g, b3, f"{name}.branch3x3_2b", 384, (3, 1), 1, (1, 0))
    b3 = g.concat([b3a, b3b], f"{name}.branch3x3_concat")
    bd = _basic(g, x, f"{name}.branch3x3dbl_1", 448, 1)
    bd = _basic(g, bd, f"{name}.branch3x3dbl_2", 384, 3, 1, 1)
    bda = _basic(g, bd, f"{name}.branch3x3dbl_3a", 384, (1, 3), 1, (0, 1))
    bdb = _basic(g, bd, f"{name}.branch3x3dbl_3b", 384, (3, 1), 1, (1, 0))
    bd = g.concat([bda, bdb], f"{name}.branch3x3dbl_concat")
    bp = _pool_branch(g, x, name, 192)
    return g.concat([b1, b3, bd, bp], f"{name}.concat")


def inception_v3(seed: int = 0, batch: int = 1, materialize: bool = True) -> onnx.ModelProto:
    g = GraphBuilder("inception_v3", (batch, 3, 299, 299), seed, materialize=materialize)
    x = _basic(g, g.input_name, "Conv2d_1a_3x3", 32, 3, 2)
    x = _basic(g, x, "Conv2d_2a_3x3", 32, 3)
    x = _basic(g, x, "Conv2d_2b_3x3", 64, 3, 1, 1)
    x = g.maxpool(x, "maxpool1", 3, 2)
    x = _basic(g, x, "Conv2d_3b_1x1", 80, 1)
    x = _basic(g, x, "Conv2d_4a_3x3", 192, 3)
    x = g.maxpool(x, "maxpool2", 3, 2)
    x = _inception_a(g, x, "Mixed_5b", 32)
    x = _inception_a(g, x, "Mixed_5c", 64)
    x = _inception_a(g, x, "Mixed_5d", 64)
    x = _inception_b(g, x, "Mixed_6a")
    x = _inception_c(g, x, "Mixed_6b", 128)
    x = _inception_c(g, x, "Mixed_6c", 160)
    x = _inception_c(g, x, "Mixed_6d", 160)
    x = _inception_c(g, x, "Mixed_6e", 192)
    x = _inception_d(g, x, "Mixed_7a")
    x = _inception_e(g, x, "Mixed_7b")
    x = _inception_e(g, x, "Mixed_7c")
    x = g.global_avgpool(x, "avgpool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "fc", 1000)
    return g.build(x, doc="inception_v3 (torchvision architecture, eval mode, 299x299, random seeded weights)")
