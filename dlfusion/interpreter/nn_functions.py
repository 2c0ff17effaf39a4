"""xDSL interpreter functions for the `nn` dialect.

One `InterpreterFunctions` class, `NNFunctions`, with one `@impl` per op; the
numerics live in `dlfusion.interpreter.kernels`. Tensors are numpy arrays.
`nn.weight` reads the `WeightStore` given to the constructor (the store of the
context the module was parsed or imported in): no global state.

    interpreter = Interpreter(module)
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(NNFunctions(weight_store(ctx)))
    outputs = interpreter.call_op("main", inputs)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects.builtin import Float32Type, IntegerType, TensorType
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)

from dlfusion.dialects import nn
from dlfusion.dialects.weights import MissingWeightError, WeightStore
from dlfusion.errors import DlfusionError
from dlfusion.interpreter import kernels as K


def numpy_dtype(element_type) -> np.dtype:
    """The numpy dtype of a builtin element type (f32, i64, i32, i1)."""
    if isinstance(element_type, Float32Type):
        return np.dtype(np.float32)
    if isinstance(element_type, IntegerType):
        width = element_type.width.data
        if width == 1:
            return np.dtype(np.bool_)
        if width in (8, 16, 32, 64):
            return np.dtype(f"int{width}")
    raise DlfusionError(f"element type {element_type} has no numpy equivalent in the interpreter")


def _vals(a) -> tuple[int, ...]:
    return tuple(int(v) for v in a.get_values())


def _int(a) -> int:
    return int(a.value.data)


def _float(a) -> float:
    return float(a.value.data)


@register_impls
@dataclass
class NNFunctions(InterpreterFunctions):
    """Numpy implementations of every `nn` op."""

    store: WeightStore

    # -- weights ------------------------------------------------------------
    @impl(nn.WeightOp)
    def run_weight(self, interpreter: Interpreter, op: nn.WeightOp, args: PythonValues):
        typ = op.result.type
        assert isinstance(typ, TensorType)
        dtype = numpy_dtype(typ.get_element_type())
        shape = tuple(typ.get_shape())
        try:
            arr = self.store.get(op.key, dtype, shape)
        except MissingWeightError as exc:
            raise DlfusionError(str(exc)) from None
        if arr.shape != shape or arr.dtype != dtype:
            raise DlfusionError(
                f"weight '{op.key}' holds {arr.dtype}{list(arr.shape)}, "
                f"but the IR declares {dtype}{list(shape)}"
            )
        return (arr,)

    # -- element-wise -----------------------------------------------------------
    @impl(nn.ReluOp)
    def run_relu(self, interpreter: Interpreter, op: nn.ReluOp, args: PythonValues):
        return (K.relu(args[0]),)

    @impl(nn.SigmoidOp)
    def run_sigmoid(self, interpreter: Interpreter, op: nn.SigmoidOp, args: PythonValues):
        return (K.sigmoid(args[0]),)

    @impl(nn.HardSwishOp)
    def run_hard_swish(self, interpreter: Interpreter, op: nn.HardSwishOp, args: PythonValues):
        return (K.hard_swish(args[0]),)

    @impl(nn.HardSigmoidOp)
    def run_hard_sigmoid(self, interpreter: Interpreter, op: nn.HardSigmoidOp, args: PythonValues):
        return (K.hard_sigmoid(args[0], _float(op.alpha), _float(op.beta)),)

    @impl(nn.LeakyReluOp)
    def run_leaky_relu(self, interpreter: Interpreter, op: nn.LeakyReluOp, args: PythonValues):
        return (K.leaky_relu(args[0], _float(op.alpha)),)

    @impl(nn.ClipOp)
    def run_clip(self, interpreter: Interpreter, op: nn.ClipOp, args: PythonValues):
        lo = None if op.min is None else _float(op.min)
        hi = None if op.max is None else _float(op.max)
        return (K.clip(args[0], lo, hi),)

    @impl(nn.AddOp)
    def run_add(self, interpreter: Interpreter, op: nn.AddOp, args: PythonValues):
        return (K.add(*args),)

    @impl(nn.SubOp)
    def run_sub(self, interpreter: Interpreter, op: nn.SubOp, args: PythonValues):
        return (K.sub(*args),)

    @impl(nn.MulOp)
    def run_mul(self, interpreter: Interpreter, op: nn.MulOp, args: PythonValues):
        return (K.mul(*args),)

    @impl(nn.DivOp)
    def run_div(self, interpreter: Interpreter, op: nn.DivOp, args: PythonValues):
        return (K.div(*args),)

    # -- convolution, matrix products, normalization ------------------------------
    @impl(nn.Conv2DOp)
    def run_conv2d(self, interpreter: Interpreter, op: nn.Conv2DOp, args: PythonValues):
        x, w = args[0], args[1]
        b = args[2] if len(args) > 2 else None
        return (
            K.conv2d(
                x,
                w,
                b,
                _vals(op.strides),
                _vals(op.pads),
                _vals(op.dilations),
                _int(op.groups),
            ),
        )

    @impl(nn.GemmOp)
    def run_gemm(self, interpreter: Interpreter, op: nn.GemmOp, args: PythonValues):
        a, b = args[0], args[1]
        c = args[2] if len(args) > 2 else None
        return (
            K.gemm(
                a,
                b,
                c,
                bool(_int(op.trans_a)),
                bool(_int(op.trans_b)),
                _float(op.alpha),
                _float(op.beta),
            ),
        )

    @impl(nn.MatMulOp)
    def run_matmul(self, interpreter: Interpreter, op: nn.MatMulOp, args: PythonValues):
        return (K.matmul(*args),)

    @impl(nn.BatchNormOp)
    def run_batch_norm(self, interpreter: Interpreter, op: nn.BatchNormOp, args: PythonValues):
        return (K.batch_norm(*args, epsilon=_float(op.epsilon)),)

    @impl(nn.LRNOp)
    def run_lrn(self, interpreter: Interpreter, op: nn.LRNOp, args: PythonValues):
        return (
            K.lrn(args[0], _int(op.size), _float(op.alpha), _float(op.beta), _float(op.bias)),
        )

    @impl(nn.SoftmaxOp)
    def run_softmax(self, interpreter: Interpreter, op: nn.SoftmaxOp, args: PythonValues):
        return (K.softmax(args[0], _int(op.axis)),)

    # -- pooling and reductions ----------------------------------------------------
    @impl(nn.MaxPoolOp)
    def run_max_pool(self, interpreter: Interpreter, op: nn.MaxPoolOp, args: PythonValues):
        return (
            K.max_pool(
                args[0],
                _vals(op.kernel),
                _vals(op.strides),
                _vals(op.pads),
                bool(_int(op.ceil_mode)),
                op.dilation_values(),
            ),
        )

    @impl(nn.AvgPoolOp)
    def run_avg_pool(self, interpreter: Interpreter, op: nn.AvgPoolOp, args: PythonValues):
        return (
            K.avg_pool(
                args[0],
                _vals(op.kernel),
                _vals(op.strides),
                _vals(op.pads),
                bool(_int(op.ceil_mode)),
                bool(_int(op.count_include_pad)),
            ),
        )

    @impl(nn.GlobalAvgPoolOp)
    def run_global_avg_pool(self, interpreter: Interpreter, op: nn.GlobalAvgPoolOp, args: PythonValues):
        return (K.global_avg_pool(args[0]),)

    @impl(nn.ReduceMeanOp)
    def run_reduce_mean(self, interpreter: Interpreter, op: nn.ReduceMeanOp, args: PythonValues):
        return (K.reduce_mean(args[0], _vals(op.axes), bool(_int(op.keepdims))),)

    # -- data movement ---------------------------------------------------------------
    @impl(nn.ConcatOp)
    def run_concat(self, interpreter: Interpreter, op: nn.ConcatOp, args: PythonValues):
        return (K.concat(args, _int(op.axis)),)

    @impl(nn.SplitOp)
    def run_split(self, interpreter: Interpreter, op: nn.SplitOp, args: PythonValues):
        axis = _int(op.axis)
        sizes = [nn.shape_of(r)[axis] for r in op.outputs]
        return tuple(K.split(args[0], axis, sizes))

    @impl(nn.SliceOp)
    def run_slice(self, interpreter: Interpreter, op: nn.SliceOp, args: PythonValues):
        return (K.slice_(args[0], _vals(op.starts), _vals(op.ends), _vals(op.steps)),)

    @impl(nn.ReshapeOp)
    def run_reshape(self, interpreter: Interpreter, op: nn.ReshapeOp, args: PythonValues):
        return (K.reshape(args[0], nn.shape_of(op.output)),)

    @impl(nn.TransposeOp)
    def run_transpose(self, interpreter: Interpreter, op: nn.TransposeOp, args: PythonValues):
        return (K.transpose(args[0], _vals(op.perm)),)

    @impl(nn.PadOp)
    def run_pad(self, interpreter: Interpreter, op: nn.PadOp, args: PythonValues):
        return (K.pad(args[0], _vals(op.pads), op.mode.data, _float(op.value)),)

    # -- fusion groups -----------------------------------------------------------------
    @impl(nn.FusionGroupOp)
    def run_fusion_group(self, interpreter: Interpreter, op: nn.FusionGroupOp, args: PythonValues):
        return interpreter.run_ssacfg_region(op.body, args, op.sym_name.data)

    @impl_terminator(nn.YieldOp)
    def run_yield(
        self, interpreter: Interpreter, op: nn.YieldOp, args: tuple[Any, ...]
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()
