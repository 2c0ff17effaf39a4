"""Import an ONNX model into the `nn` dialect.

The importer walks the graph's nodes in their (topological) order and keeps,
for every ONNX tensor name, either an SSA value (a feature map computed at run
time) or a numpy array (a value known at compile time: an initializer, a
Constant, or anything computed from those, such as the Shape -> Gather ->
Concat -> Reshape chains that exporters write). Nodes whose inputs are all
known are evaluated at import time (ONNX's reference implementation evaluates
the ones dlfusion has no own rule for); `Shape` of a feature map is known
because every shape is static. Known arrays become `nn.weight` ops, in the
context's weight store, only where a layer consumes them.

Graph inputs with a symbolic or unknown dimension must be fixed with
`--input-shape NAME=DxDx...`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr, TensorType
from xdsl.context import Context
from xdsl.ir import Block, Region, SSAValue

from dlfusion.dialects import nn
from dlfusion.dialects.weights import sanitize_handle, weight_store
from dlfusion.errors import DlfusionError
from dlfusion.frontend import converters

MIN_OPSET = 11
MAX_OPSET = onnx.defs.onnx_opset_version()

Value = SSAValue | np.ndarray


def load_onnx(data: bytes, text: bool = False, source: str = "<model>") -> onnx.ModelProto:
    """Parse ONNX bytes (binary protobuf, or the text syntax if `text`)."""
    if text:
        try:
            model = onnx.parser.parse_model(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise DlfusionError("not an ONNX text file (not UTF-8)", where=source) from None
        except onnx.parser.ParseError as exc:
            raise DlfusionError(
                f"ONNX text syntax error: {' '.join(str(exc).split())}",
                where=source,
                hint="fix the file (see onnx.parser's grammar)",
            ) from None
    else:
        try:
            model = onnx.load_model_from_string(data)
        except Exception as exc:  # protobuf DecodeError and friends
            raise DlfusionError(
                f"not a valid ONNX file ({type(exc).__name__}: {' '.join(str(exc).split())})",
                where=source,
                hint="check that the file is a complete binary ONNX model",
            ) from None
    if not model.graph.node and not model.graph.output:
        raise DlfusionError(
            "not a valid ONNX model (no graph nodes or outputs; truncated or not ONNX?)",
            where=source,
            hint="check that the file is a complete ONNX model",
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = next((l for l in str(exc).splitlines() if l.strip()), str(exc))
        raise DlfusionError(
            f"invalid ONNX model: {first.strip()}",
            where=source,
            hint="the file is damaged or was written by a broken exporter",
        ) from None
    return model


def import_onnx_stream(
    stream: IO[bytes],
    ctx: Context,
    text: bool = False,
    input_shapes: dict[str, list[int]] | None = None,
    source: str = "<model>",
) -> ModuleOp:
    """Read an ONNX model from `stream` and import it (the driver frontends)."""
    return import_model(load_onnx(stream.read(), text, source), ctx, input_shapes, source)


def import_model(
    model: onnx.ModelProto,
    ctx: Context,
    input_shapes: dict[str, list[int]] | None = None,
    source: str = "<model>",
) -> ModuleOp:
    """Import `model` into a module with one `func.func @main`."""
    return Importer(model, ctx, input_shapes or {}, source).run()


def _value_name(name: str) -> str:
    return sanitize_handle(name)


class Importer:
    def __init__(
        self,
        model: onnx.ModelProto,
        ctx: Context,
        input_shapes: dict[str, list[int]],
        source: str,
    ):
        self.model = model
        self.graph = model.graph
        self.store = weight_store(ctx)
        self.input_shapes = dict(input_shapes)
        self.source = source
        self.env: dict[str, Value] = {}
        self.weights: dict[int, SSAValue] = {}  # id(array) -> nn.weight result
        self.block = Block()
        self.opset = self._opset()

    # -- errors -------------------------------------------------------------
    def error(self, message: str, node: onnx.NodeProto | None = None, hint: str | None = None):
        where = self.source
        if node is not None:
            where += f": node '{node.name or node.output[0]}' ({node.op_type})"
        return DlfusionError(message, where=where, hint=hint)

    # -- setup --------------------------------------------------------------
    def _opset(self) -> int:
        version = None
        for imp in self.model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                version = imp.version
        if version is None:
            raise self.error("the model imports no default-domain (ai.onnx) opset")
        if not MIN_OPSET <= version <= MAX_OPSET:
            raise self.error(
                f"opset {version} is not supported (supported: {MIN_OPSET} to {MAX_OPSET})",
                hint="convert the model with onnx.version_converter",
            )
        return version

    def _input_type(self, inp: onnx.ValueInfoProto) -> TensorType:
        ttype = inp.type.tensor_type
        if ttype.elem_type != onnx.TensorProto.FLOAT:
            name = onnx.TensorProto.DataType.Name(ttype.elem_type)
            raise self.error(
                f"graph input '{inp.name}' has element type {name}; dlfusion compiles float32 models",
                hint="export the model in float32",
            )
        fixed = self.input_shapes.pop(inp.name, None)
        if not ttype.HasField("shape"):
            if fixed is None:
                raise self.error(
                    f"graph input '{inp.name}' has no shape",
                    hint=f"fix it with --input-shape {inp.name}=1x3x224x224 (your dims)",
                )
            return nn.tensor(fixed)
        dims = list(ttype.shape.dim)
        if fixed is not None:
            if len(fixed) != len(dims):
                raise self.error(
                    f"--input-shape {inp.name} has rank {len(fixed)}, the input has rank {len(dims)}"
                )
            for d, f in zip(dims, fixed):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != f:
                    raise self.error(
                        f"--input-shape {inp.name}={'x'.join(map(str, fixed))} contradicts "
                        f"the model's static shape {[x.dim_value for x in dims]}"
                    )
            return nn.tensor(fixed)
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
            else:
                what = f"'{d.dim_param}'" if d.HasField("dim_param") else "unknown"
                example = "x".join(str(x.dim_value) if x.dim_value > 0 else "1" for x in dims)
                raise self.error(
                    f"graph input '{inp.name}' has a dynamic dimension {what} (axis {i})",
                    hint=f"fix it with --input-shape {inp.name}={example} (your dims)",
                )
        return nn.tensor(shape)

    # -- values -------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        v = self.env.get(name)
        return v if isinstance(v, np.ndarray) else None

    def value(self, name: str) -> SSAValue:
        """The SSA value of tensor `name`, materializing a weight if needed."""
        if name not in self.env:
            raise DlfusionError(f"tensor '{name}' is used before it is defined", where=self.source)
        v = self.env[name]
        if isinstance(v, SSAValue):
            return v
        key = id(v)
        if key not in self.weights:
            arr = v
            if arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            handle = self.store.add(name, arr)
            op = nn.WeightOp(handle, TensorType(_element_type(arr.dtype, name, self), list(arr.shape)))
            op.result.name_hint = _value_name(name)
            self.block.add_op(op)
            self.weights[key] = op.result
        return self.weights[key]

    def shape(self, name: str) -> tuple[int, ...]:
        v = self.env[name]
        return tuple(v.shape) if isinstance(v, np.ndarray) else nn.shape_of(v)

    # -- main loop ------------------------------------------------------------
    def run(self) -> ModuleOp:
        initializers = {t.name for t in self.graph.initializer}
        for t in self.graph.initializer:
            self.env[t.name] = numpy_helper.to_array(t)
        arg_types, arg_names = [], []
        for inp in self.graph.input:
            if inp.name in initializers:
                continue
            arg_types.append(self._input_type(inp))
            arg_names.append(inp.name)
        if self.input_shapes:
            raise self.error(
                f"--input-shape names {', '.join(sorted(self.input_shapes))}, "
                f"which {'is not a graph input' if len(self.input_shapes) == 1 else 'are not graph inputs'}",
                hint=f"the graph inputs are {', '.join(arg_names) or 'none'}",
            )
        self.block = Block(arg_types=arg_types)
        for arg, name in zip(self.block.args, arg_names):
            arg.name_hint = _value_name(name)
            self.env[name] = arg

        for node in self.graph.node:
            self.convert(node)

        results = [self.value(o.name) for o in self.graph.output]
        self.block.add_op(func.ReturnOp(*results))
        fn = func.FuncOp(
            "main",
            ([a.type for a in self.block.args], [r.type for r in results]),
            Region(self.block),
        )
        fn.attributes["nn.input_names"] = ArrayAttr([StringAttr(n) for n in arg_names])
        fn.attributes["nn.output_names"] = ArrayAttr(
            [StringAttr(o.name) for o in self.graph.output]
        )
        module = ModuleOp([fn])
        module.verify()
        return module

    def convert(self, node: onnx.NodeProto) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise self.unsupported(node)
        inputs = list(node.input)
        known = all(i == "" or self.const(i) is not None for i in inputs)
        rule = converters.RULES.get(node.op_type)
        if known and node.op_type not in converters.NEVER_FOLD:
            outputs = converters.fold(self, node)
        elif rule is None:
            raise self.unsupported(node)
        else:
            outputs = rule(self, node, converters.attributes(node))
        for name, value in zip(node.output, outputs):
            if name == "":
                continue
            if isinstance(value, SSAValue) and not value.name_hint:
                value.name_hint = _value_name(name)
            self.env[name] = value
        extra = [o for o in node.output[len(outputs):] if o]
        if extra:
            raise self.error(
                f"output(s) {', '.join(extra)} of {node.op_type} are not supported",
                node,
                hint="only the first output is computed at inference",
            )

    def unsupported(self, node: onnx.NodeProto) -> DlfusionError:
        domain = f" in domain '{node.domain}'" if node.domain not in ("", "ai.onnx") else ""
        return self.error(
            f"unsupported operator {node.op_type}{domain}",
            node,
            hint="supported operators: " + ", ".join(sorted(converters.RULES)),
        )

    # -- building ---------------------------------------------------------------
    def add(self, op) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]


def _element_type(dtype: np.dtype, name: str, imp: Importer):
    from xdsl.dialects.builtin import Float32Type, IntegerType, i1, i32, i64

    if dtype == np.float32:
        return Float32Type()
    if dtype == np.int64:
        return i64
    if dtype == np.int32:
        return i32
    if dtype == np.bool_:
        return i1
    raise imp.error(f"constant '{name}' has element type {dtype}, which dlfusion does not compile")
