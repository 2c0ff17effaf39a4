"""The reference interpreter of the `nn` dialect.

    from dlfusion.interpreter import run_module, random_inputs
    outputs = run_module(module, ctx, {"input": x})   # by ONNX graph names

`run_module` interprets `func.func @main` with xDSL's interpreter framework
(`FuncFunctions` for func, `NNFunctions` for nn) and numpy kernels in float32.
Inputs and outputs are keyed by the names in `@main`'s `nn.input_names` and
`nn.output_names` attributes (the ONNX graph's input and output names); IR
written by hand without them uses the block arguments' names, or `input<i>` and
`output<i>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr, TensorType
from xdsl.interpreter import Interpreter, PythonValues
from xdsl.interpreters.func import FuncFunctions
from xdsl.ir import Operation
from xdsl.traits import SymbolTable

from dlfusion.dialects import nn
from dlfusion.dialects.weights import weight_store
from dlfusion.errors import DlfusionError
from dlfusion.interpreter.nn_functions import NNFunctions, numpy_dtype

__all__ = [
    "NNFunctions",
    "ShapeChecker",
    "check_inputs",
    "input_signature",
    "main_function",
    "make_interpreter",
    "output_names",
    "random_inputs",
    "run_module",
]


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def main_function(module: ModuleOp, name: str = "main") -> func.FuncOp:
    op = SymbolTable.lookup_symbol(module, name)
    if not isinstance(op, func.FuncOp):
        raise DlfusionError(
            f"the module has no function @{name} to run",
            hint="the ONNX frontend names the model's function @main",
        )
    return op


def _names(fn: func.FuncOp, attr: str, count: int, default: str, hints=None) -> list[str]:
    value = fn.attributes.get(attr)
    if isinstance(value, ArrayAttr) and len(value) == count and all(
        isinstance(v, StringAttr) for v in value
    ):
        return [v.data for v in value]
    names = []
    for i in range(count):
        hint = hints[i] if hints is not None else None
        names.append(hint if hint and hint not in names else f"{default}{i}")
    return names


def input_signature(module: ModuleOp) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Graph input name -> (shape, dtype), in argument order."""
    fn = main_function(module)
    args = fn.body.block.args if fn.body.blocks else ()
    types = fn.function_type.inputs.data
    names = _names(fn, "nn.input_names", len(types), "input", [a.name_hint for a in args] or None)
    sig = {}
    for name, typ in zip(names, types):
        if not isinstance(typ, TensorType):
            raise DlfusionError(f"input '{name}' has type {typ}; @main must take tensors")
        sig[name] = (tuple(typ.get_shape()), numpy_dtype(typ.get_element_type()))
    return sig


def output_names(module: ModuleOp) -> list[str]:
    fn = main_function(module)
    return _names(fn, "nn.output_names", len(fn.function_type.outputs.data), "output")


@dataclass
class ShapeChecker(Interpreter.Listener):
    """Checks every op's results against its result types (shape and dtype; a
    mismatch is an interpreter bug), so a wrong kernel cannot silently produce
    a mis-shaped tensor or leave float32."""

    def did_interpret_op(self, op: Operation, results: PythonValues) -> None:
        for res, val in zip(op.results, results):
            typ = res.type
            if not isinstance(typ, TensorType) or not isinstance(val, np.ndarray):
                continue
            if val.shape != tuple(typ.get_shape()):
                raise DlfusionError(
                    f"internal error: '{op.name}' computed shape {_fmt_shape(val.shape)}, "
                    f"its type says {_fmt_shape(typ.get_shape())}"
                )
            if val.dtype != numpy_dtype(typ.get_element_type()):
                raise DlfusionError(
                    f"internal error: '{op.name}' computed {val.dtype}, its type says "
                    f"{typ.get_element_type()}"
                )


def make_interpreter(module: ModuleOp, ctx: Context, check_shapes: bool = True) -> Interpreter:
    """An xDSL interpreter with the func and nn functions registered."""
    interpreter = Interpreter(module, listeners=(ShapeChecker(),) if check_shapes else ())
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(NNFunctions(weight_store(ctx)))
    return interpreter


def _check_weights(module: ModuleOp, ctx: Context) -> None:
    store = weight_store(ctx)
    for op in module.walk():
        if isinstance(op, nn.WeightOp) and not store.has_data(op.key):
            raise DlfusionError(
                f"weight '{op.key}' has no data: the IR was printed with weights elided",
                hint="re-print it with `dlfusion-opt --emit-weights` to run it",
            )


def check_inputs(
    module: ModuleOp, inputs: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """The arguments of @main from `inputs`, checked for presence, shape, dtype."""
    sig = input_signature(module)
    args = []
    for name, (shape, dtype) in sig.items():
        if name not in inputs:
            have = ", ".join(repr(k) for k in inputs) or "none"
            raise DlfusionError(
                f"missing input tensor '{name}' (expected shape {_fmt_shape(shape)}, "
                f"{dtype}; given: {have})"
            )
        value = np.asarray(inputs[name])
        if value.shape != shape:
            raise DlfusionError(
                f"input tensor '{name}' has shape {_fmt_shape(value.shape)}, "
                f"expected {_fmt_shape(shape)}"
            )
        if value.dtype != dtype:
            raise DlfusionError(
                f"input tensor '{name}' has dtype {value.dtype}, expected {dtype} "
                f"(shape {_fmt_shape(shape)})"
            )
        args.append(value)
    unknown = [k for k in inputs if k not in sig]
    if unknown:
        raise DlfusionError(
            f"unknown input tensor(s) {', '.join(repr(k) for k in unknown)}",
            hint=f"the graph inputs are {', '.join(repr(k) for k in sig) or 'none'}",
        )
    return args


def run_module(
    module: ModuleOp, ctx: Context, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Interpret `@main` on `inputs` (by graph input name); outputs by graph
    output name. `ctx` is the context the module was built or parsed in (its
    weight store holds the weights)."""
    args = check_inputs(module, inputs)
    _check_weights(module, ctx)
    interpreter = make_interpreter(module, ctx)
    # IEEE semantics as in onnxruntime: inf/nan results, no warnings
    with np.errstate(all="ignore"):
        results = interpreter.call_op("main", tuple(args))
    names = output_names(module)
    # copies: an output may be a view of a weight or of an input
    return {name: np.array(value, order="C", copy=True) for name, value in zip(names, results)}


def random_inputs(module: ModuleOp, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs (float32) for every graph input."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in input_signature(module).items():
        if dtype == np.float32:
            out[name] = rng.standard_normal(shape, dtype=np.float32)
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    return out
