"""Per-layer figures computed from the IR alone: multiply-accumulates,
weight elements, feature-map sizes.

Convention: one multiply-accumulate (MAC) is one multiplication plus one
addition; an operation count in FLOPs is 2 x MACs. Only convolutions and
matrix products count MACs (as in the published model figures); element-wise
layers, pooling and normalization count 0 MACs.
"""

from __future__ import annotations

import math

from xdsl.ir import Operation

from dlfusion.dialects import nn


def macs(op: Operation) -> int:
    """Multiply-accumulates of one layer."""
    if isinstance(op, nn.Conv2DOp):
        n, co, oh, ow = nn.shape_of(op.output)
        _, ci, kh, kw = nn.shape_of(op.weight)
        return n * co * oh * ow * ci * kh * kw
    if isinstance(op, nn.GemmOp):
        m, n, k = op.mnk()
        return m * n * k
    if isinstance(op, nn.MatMulOp):
        a = nn.shape_of(op.lhs)
        return math.prod(nn.shape_of(op.output)) * a[-1]
    return 0


def weight_elements(op: Operation) -> int:
    """Elements of the constant (`nn.weight`) operands of one layer."""
    return sum(
        math.prod(nn.shape_of(v))
        for v in op.operands
        if isinstance(v.owner, nn.WeightOp)
    )


def output_elements(op: Operation) -> int:
    return sum(math.prod(nn.shape_of(r)) for r in op.results)


def is_layer(op: Operation) -> bool:
    return isinstance(op, nn.LAYER_OPS)
