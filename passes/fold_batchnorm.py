"""`fold-batchnorm`: fold inference batch normalization into the layer that
produces its input.

An `nn.batch_norm` computes, per channel c,

    y = s[c] * (x - mean[c]) + bias[c],   s = scale / sqrt(var + epsilon)

When `x` is the result of an `nn.conv2d` (any groups, with or without a bias)
or of an `nn.gemm` (the batch norm's channel axis is the gemm's N axis), and
that producer has no other user and its weights are `nn.weight` constants, the
scaling goes into the producer's weights and the shift into its bias:

    conv:  W'[o] = s[o] * W[o]          b' = s * (b - mean) + bias
    gemm:  B'[:, n] = s[n] * B[:, n]    C' = s * (beta * C - mean) + bias, beta' = 1
           (B'[n, :] when trans_b; alpha stays; C broadcast as the gemm does)

    %w = nn.weight dense_resource<conv1_w> : tensor<8x3x3x3xf32>
    %conv1 = nn.conv2d %x, %w {...} : (...) -> tensor<1x8x16x16xf32>
    %bn1 = nn.batch_norm %conv1, %g, %b, %m, %v {epsilon = 1.0e-05 : f32} : ...
  becomes
    %conv1_w_bn = nn.weight dense_resource<conv1_w_bn> : tensor<8x3x3x3xf32>
    %conv1_b_bn = nn.weight dense_resource<conv1_b_bn> : tensor<8xf32>
    %conv1 = nn.conv2d %x, %conv1_w_bn, %conv1_b_bn {...} : (...) -> tensor<1x8x16x16xf32>

The folded tensors are new arrays under new handles in the context's weight
store (the old arrays may be shared by other ops and are never modified);
`nn.weight` ops left without users are erased. A batch norm that cannot be
folded (after an add or a concat, after a conv with other users, or in a
fusion group where weights are group arguments) stays a layer.

The pass needs the weight data: on IR printed without `--emit-weights` it
stops with an error instead of silently leaving the batch norms in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from dlfusion.dialects import nn
from dlfusion.dialects.weights import WeightStore, weight_store
from dlfusion.passes.canonicalize import (
    erase_dead_weights,
    make_weight,
    required_weight,
    weight_op_of,
)


def bn_scale_shift(bn: nn.BatchNormOp, store: WeightStore) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) with batch_norm(x) == s * x + t per channel, in float64."""
    scale, bias, mean, var = (
        required_weight(v, store, "fold-batchnorm").astype(np.float64)
        for v in (bn.scale, bn.bias, bn.mean, bn.var)
    )
    eps = bn.epsilon.value.data
    s = scale / np.sqrt(var + eps)
    return s, bias - s * mean


def _base_name(value: SSAValue, fallback: str) -> str:
    op = weight_op_of(value)
    if op is not None:
        return op.key
    return value.name_hint or fallback


class FoldIntoConv(RewritePattern):
    """batch_norm(conv2d(x, W, b)) -> conv2d(x, W', b')."""

    def __init__(self, store: WeightStore):
        self.store = store

    @op_type_rewrite_pattern
    def match_and_rewrite(self, bn: nn.BatchNormOp, rewriter: PatternRewriter):
        conv = bn.input.owner
        if not isinstance(conv, nn.Conv2DOp) or not conv.output.has_one_use():
            return
        w_op = weight_op_of(conv.weight)
        if w_op is None or not _constant_params(bn):
            return
        if conv.bias is not None and weight_op_of(conv.bias) is None:
            return
        store = self.store
        w = required_weight(conv.weight, store, "fold-batchnorm")
        co = w.shape[0]
        b = (
            required_weight(conv.bias, store, "fold-batchnorm").astype(np.float64)
            if conv.bias is not None
            else np.zeros(co)
        )
        s, t = bn_scale_shift(bn, store)
        new_w = (w.astype(np.float64) * s.reshape(co, 1, 1, 1)).astype(w.dtype)
        new_b = (s * b + t).astype(w.dtype)

        name = conv.output.name_hint or w_op.key
        w_new = make_weight(store, w_op.key + "_bn", new_w, conv.weight.type)
        b_name = (
            _base_name(conv.bias, name) + "_bn" if conv.bias is not None else name + "_b_bn"
        )
        b_new = make_weight(store, b_name, new_b)
        new_conv = nn.Conv2DOp.create(
            operands=[conv.input, w_new.result, b_new.result],
            result_types=[bn.output.type],
            properties=dict(conv.properties),
            attributes=dict(conv.attributes),
        )
        new_conv.output.name_hint = conv.output.name_hint
        _replace_and_clean(rewriter, bn, conv, [w_new, b_new, new_conv])


class FoldIntoGemm(RewritePattern):
    """batch_norm(gemm(A, B, C)) -> gemm(A, B', C') over the gemm's N axis."""

    def __init__(self, store: WeightStore):
        self.store = store

    @op_type_rewrite_pattern
    def match_and_rewrite(self, bn: nn.BatchNormOp, rewriter: PatternRewriter):
        gemm = bn.input.owner
        if not isinstance(gemm, nn.GemmOp) or not gemm.output.has_one_use():
            return
        # batch_norm normalizes axis 1 of its input, which for the [M, N]
        # gemm result is N: the output channels.
        b_op = weight_op_of(gemm.b)
        if b_op is None or not _constant_params(bn):
            return
        if gemm.c is not None and weight_op_of(gemm.c) is None:
            return
        store = self.store
        m, n, _ = gemm.mnk()
        b = required_weight(gemm.b, store, "fold-batchnorm")
        s, t = bn_scale_shift(bn, store)
        trans_b = bool(gemm.trans_b.value.data)
        scale_b = s.reshape(n, 1) if trans_b else s.reshape(1, n)
        new_b = (b.astype(np.float64) * scale_b).astype(b.dtype)
        beta = gemm.beta.value.data
        if gemm.c is not None:
            c = required_weight(gemm.c, store, "fold-batchnorm").astype(np.float64)
            new_c = s * (beta * c) + t  # numpy broadcasting == the gemm's broadcasting
        else:
            new_c = t
        new_c = new_c.astype(b.dtype)
        assert nn.broadcast_shapes(new_c.shape, (m, n)) == (m, n)

        name = gemm.output.name_hint or b_op.key
        b_new = make_weight(store, b_op.key + "_bn", new_b, gemm.b.type)
        c_name = _base_name(gemm.c, name) + "_bn" if gemm.c is not None else name + "_c_bn"
        c_new = make_weight(store, c_name, new_c)
        props = dict(gemm.properties)
        props["beta"] = nn.f32(1.0)
        new_gemm = nn.GemmOp.create(
            operands=[gemm.a, b_new.result, c_new.result],
            result_types=[bn.output.type],
            properties=props,
            attributes=dict(gemm.attributes),
        )
        new_gemm.output.name_hint = gemm.output.name_hint
        _replace_and_clean(rewriter, bn, gemm, [b_new, c_new, new_gemm])


def _constant_params(bn: nn.BatchNormOp) -> bool:
    return all(weight_op_of(v) is not None for v in (bn.scale, bn.bias, bn.mean, bn.var))


def _replace_and_clean(
    rewriter: PatternRewriter, bn: nn.BatchNormOp, producer: Operation, new_ops: list[Operation]
) -> None:
    """Replace `bn` by `new_ops`, erase the old producer and dead weights."""
    dead_inputs = [*producer.operands, *bn.operands[1:]]
    rewriter.replace(bn, new_ops, [new_ops[-1].results[0]])
    rewriter.erase(producer)
    erase_dead_weights(rewriter, dead_inputs)


@dataclass(frozen=True)
class FoldBatchNormPass(ModulePass):
    """Fold `nn.batch_norm` into the `nn.conv2d` or `nn.gemm` producing its input."""

    name = "fold-batchnorm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        store = weight_store(ctx)
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [FoldIntoConv(store), FoldIntoGemm(store)], dce_enabled=False
            ),
            apply_recursively=True,
        ).rewrite_module(op)
