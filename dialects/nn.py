"""The `nn` dialect: tensor-level DNN layers (NCHW, static shapes).

Every layer op is pure, takes and returns ranked tensors, and verifies its
result shape from its operands and properties, so a mis-shaped layer is
rejected when the IR is parsed or built, not when it is run.

Weights are `nn.weight` ops holding a handle into the per-context
`WeightStore` (see `dlfusion.dialects.weights`):

    %conv1_w = nn.weight dense_resource<conv1_w> : tensor<64x3x7x7xf32>
    %conv1 = nn.conv2d %input, %conv1_w, %conv1_b {dilations = array<i64: 1, 1>,
        groups = 1 : i64, pads = array<i64: 3, 3, 3, 3>, strides = array<i64: 2, 2>}
        : (tensor<1x3x224x224xf32>, tensor<64x3x7x7xf32>, tensor<64xf32>)
        -> tensor<1x64x112x112xf32>

Layers are regrouped into kernels by `nn.fusion_group`, whose body holds the
layers and ends with `nn.yield`; it carries the kernel's core number once one
has been assigned:

    %out = nn.fusion_group "g0" cores 4 (%a, %w) : (tensor<..>, tensor<..>) -> tensor<..> {
    ^bb0(%x: tensor<..>, %k: tensor<..>):
      ...
      nn.yield %y : tensor<..>
    }
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    I64,
    ArrayAttr,
    DenseArrayBase,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Block, Dialect, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from dlfusion.dialects.weights import WeightStore

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def ints(values: Sequence[int]) -> DenseArrayBase:
    """An `array<i64: ...>` property."""
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def f32(value: float) -> FloatAttr:
    return FloatAttr(float(value), Float32Type())


def shape_of(value: SSAValue | Attribute) -> tuple[int, ...]:
    typ = value.type if isinstance(value, SSAValue) else value
    if not isinstance(typ, TensorType):
        raise VerifyException(f"expected a ranked tensor, got {typ}")
    return tuple(typ.get_shape())


def tensor(shape: Sequence[int], element_type: Attribute | None = None) -> TensorType:
    return TensorType(element_type or Float32Type(), list(shape))


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """Numpy/ONNX multidirectional broadcasting; raises VerifyException."""
    rank = max(len(s) for s in shapes)
    out: list[int] = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise VerifyException(
                f"shapes {' and '.join(str(list(s)) for s in shapes)} are not broadcastable"
            )
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def conv_out_dim(size: int, k: int, s: int, p0: int, p1: int, d: int = 1) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def pool_out_dim(
    size: int, k: int, s: int, p0: int, p1: int, d: int, ceil_mode: bool
) -> int:
    eff = d * (k - 1) + 1
    if not ceil_mode:
        return (size + p0 + p1 - eff) // s + 1
    out = -(-(size + p0 + p1 - eff) // s) + 1
    # the last window must start inside the input or its left padding
    if (out - 1) * s >= size + p0:
        out -= 1
    return out


def _check_result(op: IRDLOperation, expected: Sequence[int], which: int = 0):
    got = shape_of(op.results[which])
    if tuple(got) != tuple(expected):
        raise VerifyException(
            f"result shape {list(got)} does not match the expected {list(expected)}"
        )


def _rank(op: IRDLOperation, value: SSAValue, rank: int, what: str):
    if len(shape_of(value)) != rank:
        raise VerifyException(f"{what} must have rank {rank}, got {shape_of(value)}")


_FORMAT = "operands attr-dict `:` functional-type(operands, results)"

# --------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A constant tensor kept out of line in the context's `WeightStore`.

    `%w = nn.weight dense_resource<conv1_w> : tensor<64x3x7x7xf32>`
    """

    name = "nn.weight"
    handle = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, handle: str, typ: TensorType):
        super().__init__(properties={"handle": StringAttr(handle)}, result_types=[typ])

    @property
    def key(self) -> str:
        return self.handle.data

    def print(self, printer: Printer):
        printer.print_string(" dense_resource<")
        printer.print_resource_handle("nn", self.key)
        printer.print_string(">")
        if self.attributes:
            printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser) -> WeightOp:
        parser.parse_keyword("dense_resource")
        parser.parse_punctuation("<")
        key = parser.parse_identifier(" for weight handle")
        parser.parse_punctuation(">")
        store = parser.ctx.get_dialect("nn").get_interface(WeightStore)
        if store is not None:
            store.declare_resource(key)
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        start = parser.pos
        typ = parser.parse_type()
        if not isinstance(typ, TensorType):
            parser.raise_error(f"nn.weight must have a tensor type, got {typ}", start, parser.pos)
        op = cls(key, typ)
        op.attributes.update(attrs)
        return op


# --------------------------------------------------------------------------
# element-wise
# --------------------------------------------------------------------------


class UnaryLayer(IRDLOperation):
    """An element-wise layer: the result has the input's type."""

    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(self, x: SSAValue, **props: Attribute):
        super().__init__(operands=[x], result_types=[x.type], properties=props)

    def verify_(self):
        if self.input.type != self.output.type:
            raise VerifyException(
                f"result type {self.output.type} differs from input type {self.input.type}"
            )


@irdl_op_definition
class ReluOp(UnaryLayer):
    name = "nn.relu"


@irdl_op_definition
class SigmoidOp(UnaryLayer):
    name = "nn.sigmoid"


@irdl_op_definition
class HardSwishOp(UnaryLayer):
    name = "nn.hard_swish"


@irdl_op_definition
class LeakyReluOp(UnaryLayer):
    name = "nn.leaky_relu"
    alpha = prop_def(FloatAttr)


@irdl_op_definition
class ClipOp(UnaryLayer):
    """clamp(x, min, max); a missing bound is unbounded."""

    name = "nn.clip"
    min = opt_prop_def(FloatAttr)
    max = opt_prop_def(FloatAttr)


@irdl_op_definition
class HardSigmoidOp(UnaryLayer):
    """max(0, min(1, alpha * x + beta))"""

    name = "nn.hard_sigmoid"
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)


class BinaryLayer(IRDLOperation):
    """An element-wise layer with numpy/ONNX broadcasting."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = _FORMAT

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        shape = broadcast_shapes(shape_of(lhs), shape_of(rhs))
        super().__init__(
            operands=[lhs, rhs],
            result_types=[tensor(shape, lhs.type.get_element_type())],
        )

    def verify_(self):
        _check_result(self, broadcast_shapes(shape_of(self.lhs), shape_of(self.rhs)))


@irdl_op_definition
class AddOp(BinaryLayer):
    name = "nn.add"


@irdl_op_definition
class SubOp(BinaryLayer):
    name = "nn.sub"


@irdl_op_definition
class MulOp(BinaryLayer):
    name = "nn.mul"


@irdl_op_definition
class DivOp(BinaryLayer):
    name = "nn.div"


# --------------------------------------------------------------------------
# convolution, matrix products, normalization
# --------------------------------------------------------------------------


@irdl_op_definition
class Conv2DOp(IRDLOperation):
    """2-D convolution, NCHW input, OIHW weight (I = C/groups), optional bias.

    `pads` is [top, left, bottom, right].
    """

    name = "nn.conv2d"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    output = result_def(TensorType)
    strides = prop_def(DenseArrayBase[I64])
    pads = prop_def(DenseArrayBase[I64])
    dilations = prop_def(DenseArrayBase[I64])
    groups = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(
        self,
        x: SSAValue,
        w: SSAValue,
        b: SSAValue | None,
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        groups: int = 1,
    ):
        n, _, h, wd = shape_of(x)
        co, _, kh, kw = shape_of(w)
        out = (
            n,
            co,
            conv_out_dim(h, kh, strides[0], pads[0], pads[2], dilations[0]),
            conv_out_dim(wd, kw, strides[1], pads[1], pads[3], dilations[1]),
        )
        super().__init__(
            operands=[x, w, [b] if b is not None else []],
            result_types=[tensor(out)],
            properties={
                "strides": ints(strides),
                "pads": ints(pads),
                "dilations": ints(dilations),
                "groups": IntegerAttr(groups, i64),
            },
        )

    def verify_(self):
        _rank(self, self.input, 4, "conv2d input")
        _rank(self, self.weight, 4, "conv2d weight")
        n, c, h, w = shape_of(self.input)
        co, ci, kh, kw = shape_of(self.weight)
        s = self.strides.get_values()
        p = self.pads.get_values()
        d = self.dilations.get_values()
        g = self.groups.value.data
        if len(s) != 2 or len(d) != 2 or len(p) != 4:
            raise VerifyException("conv2d needs 2 strides, 2 dilations and 4 pads")
        if min(s) < 1 or min(d) < 1 or min(p) < 0 or g < 1:
            raise VerifyException("conv2d strides, dilations, groups must be positive")
        if c % g or co % g:
            raise VerifyException(
                f"channels in ({c}) and out ({co}) must be divisible by groups ({g})"
            )
        if ci * g != c:
            raise VerifyException(
                f"weight has {ci} input channels per group, input has {c} channels "
                f"in {g} group(s)"
            )
        if self.bias is not None and shape_of(self.bias) != (co,):
            raise VerifyException(f"bias must have shape [{co}], got {shape_of(self.bias)}")
        oh = conv_out_dim(h, kh, s[0], p[0], p[2], d[0])
        ow = conv_out_dim(w, kw, s[1], p[1], p[3], d[1])
        if oh < 1 or ow < 1:
            raise VerifyException("conv2d window is larger than the padded input")
        _check_result(self, (n, co, oh, ow))


@irdl_op_definition
class GemmOp(IRDLOperation):
    """alpha * op(A) @ op(B) + beta * C, with A, B 2-D and C broadcast to [M, N]."""

    name = "nn.gemm"
    a = operand_def(TensorType)
    b = operand_def(TensorType)
    c = opt_operand_def(TensorType)
    output = result_def(TensorType)
    trans_a = prop_def(IntegerAttr[I64])
    trans_b = prop_def(IntegerAttr[I64])
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(
        self,
        a: SSAValue,
        b: SSAValue,
        c: SSAValue | None,
        trans_a: bool = False,
        trans_b: bool = False,
        alpha: float = 1.0,
        beta: float = 1.0,
    ):
        sa, sb = shape_of(a), shape_of(b)
        m = sa[1] if trans_a else sa[0]
        n = sb[0] if trans_b else sb[1]
        super().__init__(
            operands=[a, b, [c] if c is not None else []],
            result_types=[tensor((m, n))],
            properties={
                "trans_a": IntegerAttr(int(trans_a), i64),
                "trans_b": IntegerAttr(int(trans_b), i64),
                "alpha": f32(alpha),
                "beta": f32(beta),
            },
        )

    def mnk(self) -> tuple[int, int, int]:
        sa, sb = shape_of(self.a), shape_of(self.b)
        m, k = (sa[1], sa[0]) if self.trans_a.value.data else sa
        k2, n = (sb[1], sb[0]) if self.trans_b.value.data else sb
        if k != k2:
            raise VerifyException(f"gemm inner dimensions differ: {k} and {k2}")
        return m, n, k

    def verify_(self):
        _rank(self, self.a, 2, "gemm A")
        _rank(self, self.b, 2, "gemm B")
        m, n, _ = self.mnk()
        if self.c is not None and broadcast_shapes(shape_of(self.c), (m, n)) != (m, n):
            raise VerifyException(
                f"gemm C of shape {list(shape_of(self.c))} does not broadcast to [{m}, {n}]"
            )
        _check_result(self, (m, n))


def matmul_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """numpy.matmul's result shape (1-D operands are promoted, then squeezed)."""
    a1, b1 = len(a) == 1, len(b) == 1
    a = (1, *a) if a1 else tuple(a)
    b = (*b, 1) if b1 else tuple(b)
    if a[-1] != b[-2]:
        raise VerifyException(f"matmul inner dimensions differ: {a[-1]} and {b[-2]}")
    batch = broadcast_shapes(a[:-2], b[:-2])
    out = (*batch, a[-2], b[-1])
    if a1:
        out = out[:-2] + out[-1:]
    if b1:
        out = out[:-1]
    return out


@irdl_op_definition
class MatMulOp(IRDLOperation):
    """numpy.matmul semantics (batched, broadcasting)."""

    name = "nn.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = _FORMAT

    def __init__(self, a: SSAValue, b: SSAValue):
        super().__init__(
            operands=[a, b], result_types=[tensor(matmul_shape(shape_of(a), shape_of(b)))]
        )

    def verify_(self):
        _check_result(self, matmul_shape(shape_of(self.lhs), shape_of(self.rhs)))


@irdl_op_definition
class BatchNormOp(IRDLOperation):
    """Inference batch normalization over axis 1:
    scale * (x - mean) / sqrt(var + epsilon) + bias."""

    name = "nn.batch_norm"
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    mean = operand_def(TensorType)
    var = operand_def(TensorType)
    output = result_def(TensorType)
    epsilon = prop_def(FloatAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(self, x, scale, bias, mean, var, epsilon: float = 1e-5):
        super().__init__(
            operands=[x, scale, bias, mean, var],
            result_types=[x.type],
            properties={"epsilon": f32(epsilon)},
        )

    def verify_(self):
        shape = shape_of(self.input)
        if len(shape) < 2:
            raise VerifyException("batch_norm input must have a channel axis")
        for name in ("scale", "bias", "mean", "var"):
            if shape_of(getattr(self, name)) != (shape[1],):
                raise VerifyException(
                    f"batch_norm {name} must have shape [{shape[1]}], "
                    f"got {list(shape_of(getattr(self, name)))}"
                )
        _check_result(self, shape)


@irdl_op_definition
class LRNOp(IRDLOperation):
    """Local response normalization across channels (ONNX LRN)."""

    name = "nn.lrn"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    size = prop_def(IntegerAttr[I64])
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)
    bias = prop_def(FloatAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(self, x, size: int, alpha: float, beta: float, bias: float):
        super().__init__(
            operands=[x],
            result_types=[x.type],
            properties={
                "size": IntegerAttr(size, i64),
                "alpha": f32(alpha),
                "beta": f32(beta),
                "bias": f32(bias),
            },
        )

    def verify_(self):
        _check_result(self, shape_of(self.input))


@irdl_op_definition
class SoftmaxOp(IRDLOperation):
    """Softmax along one axis."""

    name = "nn.softmax"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(self, x, axis: int):
        super().__init__(
            operands=[x], result_types=[x.type], properties={"axis": IntegerAttr(axis, i64)}
        )

    def verify_(self):
        rank = len(shape_of(self.input))
        if not 0 <= self.axis.value.data < rank:
            raise VerifyException(f"softmax axis {self.axis.value.data} out of range for rank {rank}")
        _check_result(self, shape_of(self.input))


# --------------------------------------------------------------------------
# pooling and reductions
# --------------------------------------------------------------------------


class PoolLayer(IRDLOperation):
    input = operand_def(TensorType)
    output = result_def(TensorType)
    kernel = prop_def(DenseArrayBase[I64])
    strides = prop_def(DenseArrayBase[I64])
    pads = prop_def(DenseArrayBase[I64])
    ceil_mode = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def dilation_values(self) -> tuple[int, int]:
        return (1, 1)

    def expected_shape(self) -> tuple[int, ...]:
        _rank(self, self.input, 4, f"{self.name} input")
        n, c, h, w = shape_of(self.input)
        k, s, p = (a.get_values() for a in (self.kernel, self.strides, self.pads))
        if len(k) != 2 or len(s) != 2 or len(p) != 4:
            raise VerifyException(f"{self.name} needs 2 kernel sizes, 2 strides, 4 pads")
        if min(k) < 1 or min(s) < 1 or min(p) < 0:
            raise VerifyException(f"{self.name} kernel and strides must be positive")
        d = self.dilation_values()
        cm = bool(self.ceil_mode.value.data)
        return (
            n,
            c,
            pool_out_dim(h, k[0], s[0], p[0], p[2], d[0], cm),
            pool_out_dim(w, k[1], s[1], p[1], p[3], d[1], cm),
        )

    def verify_(self):
        _check_result(self, self.expected_shape())

    @classmethod
    def make(cls, x: SSAValue, kernel, strides, pads, ceil_mode=False, **extra: Attribute):
        """Build the layer with its result type computed from the window."""
        props = {
            "kernel": ints(kernel),
            "strides": ints(strides),
            "pads": ints(pads),
            "ceil_mode": IntegerAttr(int(ceil_mode), i64),
            **extra,
        }
        probe = cls.create(operands=[x], result_types=[x.type], properties=props)
        shape = probe.expected_shape()
        probe.drop_all_references()  # OpResult.type is read-only in xDSL 0.74
        return cls.create(operands=[x], result_types=[tensor(shape)], properties=props)


@irdl_op_definition
class MaxPoolOp(PoolLayer):
    name = "nn.max_pool"
    dilations = opt_prop_def(DenseArrayBase[I64])

    def dilation_values(self) -> tuple[int, int]:
        return tuple(self.dilations.get_values()) if self.dilations else (1, 1)


@irdl_op_definition
class AvgPoolOp(PoolLayer):
    name = "nn.avg_pool"
    count_include_pad = prop_def(IntegerAttr[I64])


@irdl_op_definition
class GlobalAvgPoolOp(IRDLOperation):
    name = "nn.global_avg_pool"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = _FORMAT

    def __init__(self, x):
        shape = shape_of(x)
        super().__init__(operands=[x], result_types=[tensor((*shape[:2], *[1] * (len(shape) - 2)))])

    def verify_(self):
        shape = shape_of(self.input)
        if len(shape) < 3:
            raise VerifyException("global_avg_pool input needs spatial axes")
        _check_result(self, (*shape[:2], *[1] * (len(shape) - 2)))


@irdl_op_definition
class ReduceMeanOp(IRDLOperation):
    name = "nn.reduce_mean"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    axes = prop_def(DenseArrayBase[I64])
    keepdims = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    @staticmethod
    def reduced(shape, axes, keepdims) -> tuple[int, ...]:
        if keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(shape))
        return tuple(d for i, d in enumerate(shape) if i not in axes)

    def __init__(self, x, axes: Sequence[int], keepdims: bool):
        shape = self.reduced(shape_of(x), set(axes), keepdims)
        super().__init__(
            operands=[x],
            result_types=[tensor(shape)],
            properties={"axes": ints(axes), "keepdims": IntegerAttr(int(keepdims), i64)},
        )

    def verify_(self):
        shape = shape_of(self.input)
        axes = self.axes.get_values()
        if any(not 0 <= a < len(shape) for a in axes) or len(set(axes)) != len(axes):
            raise VerifyException(f"reduce_mean axes {list(axes)} invalid for rank {len(shape)}")
        _check_result(self, self.reduced(shape, set(axes), self.keepdims.value.data))


# --------------------------------------------------------------------------
# data movement
# --------------------------------------------------------------------------


@irdl_op_definition
class ConcatOp(IRDLOperation):
    name = "nn.concat"
    inputs = var_operand_def(TensorType)
    output = result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(self, xs: Sequence[SSAValue], axis: int):
        shapes = [shape_of(x) for x in xs]
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        super().__init__(
            operands=[list(xs)],
            result_types=[tensor(out, xs[0].type.get_element_type())],
            properties={"axis": IntegerAttr(axis, i64)},
        )

    def verify_(self):
        if not self.inputs:
            raise VerifyException("concat needs at least one input")
        shapes = [shape_of(x) for x in self.inputs]
        axis = self.axis.value.data
        rank = len(shapes[0])
        if not 0 <= axis < rank:
            raise VerifyException(f"concat axis {axis} out of range for rank {rank}")
        for s in shapes:
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
                raise VerifyException(
                    f"concat inputs {[list(x) for x in shapes]} differ outside axis {axis}"
                )
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        _check_result(self, out)


@irdl_op_definition
class SplitOp(IRDLOperation):
    """Split along `axis` into the result types' sizes."""

    name = "nn.split"
    input = operand_def(TensorType)
    outputs = var_result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(self, x, axis: int, sizes: Sequence[int]):
        shape = shape_of(x)
        types = []
        for size in sizes:
            s = list(shape)
            s[axis] = size
            types.append(tensor(s, x.type.get_element_type()))
        super().__init__(
            operands=[x], result_types=[types], properties={"axis": IntegerAttr(axis, i64)}
        )

    def verify_(self):
        shape = shape_of(self.input)
        axis = self.axis.value.data
        if not 0 <= axis < len(shape):
            raise VerifyException(f"split axis {axis} out of range for rank {len(shape)}")
        total = 0
        for r in self.outputs:
            s = shape_of(r)
            if len(s) != len(shape) or any(a != b for i, (a, b) in enumerate(zip(s, shape)) if i != axis):
                raise VerifyException(f"split result {list(s)} differs from input {list(shape)} outside axis {axis}")
            total += s[axis]
        if total != shape[axis]:
            raise VerifyException(f"split sizes add up to {total}, axis {axis} has {shape[axis]}")


@irdl_op_definition
class SliceOp(IRDLOperation):
    """Strided slice with one normalized (start, end, step) per axis, with
    Python `range` semantics on absolute indices (end exclusive; -1 as the end
    of a negative step means "through index 0"):
    result[i] = input[start + i * step] along each axis."""

    name = "nn.slice"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    starts = prop_def(DenseArrayBase[I64])
    ends = prop_def(DenseArrayBase[I64])
    steps = prop_def(DenseArrayBase[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    @staticmethod
    def sliced(shape, starts, ends, steps) -> tuple[int, ...]:
        return tuple(len(range(b, e, s)) for b, e, s in zip(starts, ends, steps))

    def __init__(self, x, starts, ends, steps):
        shape = self.sliced(shape_of(x), starts, ends, steps)
        super().__init__(
            operands=[x],
            result_types=[tensor(shape, x.type.get_element_type())],
            properties={"starts": ints(starts), "ends": ints(ends), "steps": ints(steps)},
        )

    def verify_(self):
        shape = shape_of(self.input)
        b, e, s = (a.get_values() for a in (self.starts, self.ends, self.steps))
        if not len(b) == len(e) == len(s) == len(shape):
            raise VerifyException("slice needs one start, end and step per axis")
        if 0 in s:
            raise VerifyException("slice steps must be non-zero")
        _check_result(self, self.sliced(shape, b, e, s))


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """Reinterpret the row-major data with the result type's shape
    (ONNX Reshape, Flatten, Squeeze and Unsqueeze all import to it)."""

    name = "nn.reshape"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = _FORMAT

    def __init__(self, x, shape: Sequence[int]):
        super().__init__(operands=[x], result_types=[tensor(shape, x.type.get_element_type())])

    def verify_(self):
        a, b = shape_of(self.input), shape_of(self.output)
        if math.prod(a) != math.prod(b):
            raise VerifyException(f"reshape from {list(a)} to {list(b)} changes the element count")


@irdl_op_definition
class TransposeOp(IRDLOperation):
    name = "nn.transpose"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    perm = prop_def(DenseArrayBase[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT

    def __init__(self, x, perm: Sequence[int]):
        shape = shape_of(x)
        super().__init__(
            operands=[x],
            result_types=[tensor([shape[p] for p in perm], x.type.get_element_type())],
            properties={"perm": ints(perm)},
        )

    def verify_(self):
        shape = shape_of(self.input)
        perm = self.perm.get_values()
        if sorted(perm) != list(range(len(shape))):
            raise VerifyException(f"transpose perm {list(perm)} is not a permutation of rank {len(shape)}")
        _check_result(self, [shape[p] for p in perm])


@irdl_op_definition
class PadOp(IRDLOperation):
    """Pad with `pads` = [begin_0, ..., begin_n, end_0, ..., end_n] (ONNX order);
    mode is constant, reflect or edge."""

    name = "nn.pad"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    pads = prop_def(DenseArrayBase[I64])
    mode = prop_def(StringAttr)
    value = prop_def(FloatAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = _FORMAT
    MODES: ClassVar[tuple[str, ...]] = ("constant", "reflect", "edge")

    @staticmethod
    def padded(shape, pads):
        r = len(shape)
        return tuple(d + pads[i] + pads[i + r] for i, d in enumerate(shape))

    def __init__(self, x, pads: Sequence[int], mode: str = "constant", value: float = 0.0):
        super().__init__(
            operands=[x],
            result_types=[tensor(self.padded(shape_of(x), pads), x.type.get_element_type())],
            properties={"pads": ints(pads), "mode": StringAttr(mode), "value": f32(value)},
        )

    def verify_(self):
        shape = shape_of(self.input)
        pads = self.pads.get_values()
        if len(pads) != 2 * len(shape):
            raise VerifyException(f"pad needs {2 * len(shape)} pads, got {len(pads)}")
        if self.mode.data not in self.MODES:
            raise VerifyException(f"pad mode '{self.mode.data}' is not one of {', '.join(self.MODES)}")
        _check_result(self, self.padded(shape, pads))


# --------------------------------------------------------------------------
# fusion groups
# --------------------------------------------------------------------------


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminates an `nn.fusion_group` body with the group's results."""

    name = "nn.yield"
    values = var_operand_def(TensorType)
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(FusionGroupOp)))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, *values: SSAValue):
        super().__init__(operands=[list(values)])


@irdl_op_definition
class FusionGroupOp(IRDLOperation):
    """Layers fused into one kernel. The body's block arguments are the group's
    operands (feature maps entering the kernel and its weights); `nn.yield`
    returns the feature maps that leave it. `cores` is the kernel's core
    number, absent until a core assignment has been made.
    """

    name = "nn.fusion_group"
    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    sym_name = prop_def(StringAttr)
    cores = opt_prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(Pure())
    assembly_format = (
        "$sym_name (`cores` $cores^)? (`ins` `(` $inputs^ `)`)? attr-dict "
        "`:` functional-type($inputs, $outputs) $body"
    )

    def __init__(
        self,
        name: str,
        inputs: Sequence[SSAValue],
        output_types: Sequence[Attribute],
        body: Region,
        cores: int | None = None,
    ):
        props: dict[str, Attribute] = {"sym_name": StringAttr(name)}
        if cores is not None:
            props["cores"] = IntegerAttr(cores, i64)
        super().__init__(
            operands=[list(inputs)],
            result_types=[list(output_types)],
            properties=props,
            regions=[body],
        )

    @property
    def block(self) -> Block:
        return self.body.block

    def layers(self) -> list[IRDLOperation]:
        return [op for op in self.block.ops if not isinstance(op, YieldOp)]

    def verify_(self):
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(
                f"fusion group has {len(self.inputs)} operands but its body takes "
                f"{len(block.args)} arguments"
            )
        for i, (arg, operand) in enumerate(zip(block.args, self.inputs)):
            if arg.type != operand.type:
                raise VerifyException(f"body argument {i} has type {arg.type}, operand has {operand.type}")
        term = block.last_op
        if not isinstance(term, YieldOp):
            raise VerifyException("fusion group body must end with nn.yield")
        if [v.type for v in term.values] != [r.type for r in self.outputs]:
            raise VerifyException("nn.yield types do not match the fusion group's result types")
        if self.cores is not None and self.cores.value.data < 1:
            raise VerifyException(f"core number must be positive, got {self.cores.value.data}")
        for op in block.ops:
            if isinstance(op, FusionGroupOp):
                raise VerifyException("fusion groups cannot be nested")
            for operand in op.operands:
                owner = operand.owner
                home = owner if isinstance(owner, Block) else owner.parent_block()
                if home is not block:
                    raise VerifyException(
                        f"'{op.name}' in fusion group '{self.sym_name.data}' uses a value "
                        "defined outside the group; pass it as a group operand"
                    )


NN_OPS = [
    WeightOp,
    ReluOp,
    SigmoidOp,
    HardSwishOp,
    LeakyReluOp,
    ClipOp,
    HardSigmoidOp,
    AddOp,
    SubOp,
    MulOp,
    DivOp,
    Conv2DOp,
    GemmOp,
    MatMulOp,
    BatchNormOp,
    LRNOp,
    SoftmaxOp,
    MaxPoolOp,
    AvgPoolOp,
    GlobalAvgPoolOp,
    ReduceMeanOp,
    ConcatOp,
    SplitOp,
    SliceOp,
    ReshapeOp,
    TransposeOp,
    PadOp,
    YieldOp,
    FusionGroupOp,
]

LAYER_OPS = tuple(op for op in NN_OPS if op not in (WeightOp, YieldOp, FusionGroupOp))


def make_nn_dialect() -> Dialect:
    """A fresh `nn` dialect with its own weight store (one per Context)."""
    return Dialect("nn", NN_OPS, [], [WeightStore()])


NN = make_nn_dialect()
