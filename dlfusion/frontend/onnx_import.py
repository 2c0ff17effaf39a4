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

`constant_inputs` binds graph inputs to values known when the model is
compiled (the ONNX backend uses it for inputs that carry shapes, axes, pads or
bounds rather than feature maps, e.g. Reshape's `shape` fed as a graph input):
such an input is treated like an initializer, but a value derived from it may
only feed a compile-time parameter; if it reaches a layer as data or becomes a
graph output, the import fails (dlfusion compiles float32 feature maps, and the
program must not be a constant folded from its own inputs).
"""

from __future__ import annotations

import io
import os
import re
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
from xdsl.utils.exceptions import VerifyException

from dlfusion.dialects import nn
from dlfusion.dialects.weights import sanitize_handle, weight_store
from dlfusion.errors import DlfusionError
from dlfusion.frontend import converters

MIN_OPSET = 11
MAX_OPSET = onnx.defs.onnx_opset_version()

Value = SSAValue | np.ndarray


class CompileTimeValueError(DlfusionError):
    """A node needs tensor `tensor` as a compile-time value (a shape, axes,
    pads, bounds, ...) but it is computed at run time."""

    def __init__(self, tensor: str, message: str, where: str | None = None, hint: str | None = None):
        self.tensor = tensor
        super().__init__(message, where=where, hint=hint)


def load_onnx(
    data: bytes, text: bool = False, source: str = "<model>", base_dir: str | None = None
) -> onnx.ModelProto:
    """Parse and check ONNX bytes (binary protobuf, or the text syntax if `text`).

    A binary model is checked before Python parses it, from the file's own
    bytes: checking a parsed model would serialize it again, and the import's
    peak memory would hold three copies of the weights instead of two.
    External data is read from `base_dir` (by default the directory of
    `source`, when that is a file).
    """
    if text:
        try:
            model = onnx.parser.parse_model(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise DlfusionError("not an ONNX text file (not UTF-8)", where=source) from None
        except onnx.parser.ParseError as exc:
            raise _text_syntax_error(exc, source) from None
        _check(model, source)
        _check_not_empty(model, source)
        return model
    try:
        onnx.checker.check_model(data)
    except Exception as exc:  # ValidationError, or the C++ parser's own error
        model = _parse_binary(data, source)  # a decode error explains it best
        _check_not_empty(model, source)
        if _uses_external_data(model):
            _load_external_data(model, source, base_dir)
            _check(model, source)
            return model
        if _only_missing_shapes(model, exc):
            return model  # the importer asks for --input-shape where needed
        _raise_invalid(exc, source)
    model = _parse_binary(data, source)
    _check_not_empty(model, source)
    return model


def _text_syntax_error(exc: Exception, source: str) -> DlfusionError:
    """onnx.parser reports `b'[ParseError at position (line: 4 column: 1)]
    \\nError context: ...\\nExpected character ) not found.'`."""
    raw = exc.args[0] if exc.args else str(exc)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1].replace("\\n", "\n")
    where = source
    pos = re.search(r"line: (\d+) column: (\d+)", text)
    if pos:
        where = f"{source}:{pos.group(1)}:{pos.group(2)}"
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    message = lines[-1] if lines else "syntax error"
    if message.startswith("[ParseError"):
        message = "syntax error"
    return DlfusionError(
        f"ONNX text syntax error: {message[:200]}", where=where, hint="fix the file (see onnx.parser's grammar)"
    )


def _uses_external_data(model: onnx.ModelProto) -> bool:
    return any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
    )


def _load_external_data(model: onnx.ModelProto, source: str, base_dir: str | None) -> None:
    from onnx.external_data_helper import load_external_data_for_model

    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(source)) if os.path.isfile(source) else os.getcwd()
    try:
        load_external_data_for_model(model, base_dir)
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise DlfusionError(
            f"cannot read the model's external data: {' '.join(str(exc).split())}",
            where=source,
            hint=f"keep the data files beside the model (looked in {base_dir})",
        ) from None


def _only_missing_shapes(model: onnx.ModelProto, exc: Exception) -> bool:
    """The checker rejects a graph input or output without a shape; dlfusion
    accepts it (an input's shape then comes from --input-shape)."""
    if "Field 'shape' of 'type' is required but missing" not in str(exc):
        return False
    values = list(model.graph.input) + list(model.graph.output)
    return any(
        v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape") for v in values
    )


def _parse_binary(data: bytes, source: str) -> onnx.ModelProto:
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise DlfusionError(
            f"not a valid ONNX file ({type(exc).__name__}: {' '.join(str(exc).split())})",
            where=source,
            hint="check that the file is a complete binary ONNX model",
        ) from None


def _check_not_empty(model: onnx.ModelProto, source: str) -> None:
    if not model.graph.node and not model.graph.output:
        raise DlfusionError(
            "not a valid ONNX model (no graph nodes or outputs; truncated or not ONNX?)",
            where=source,
            hint="check that the file is a complete ONNX model",
        )


def _check(model: onnx.ModelProto, source: str) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        _raise_invalid(exc, source)


def _raise_invalid(exc: Exception, source: str):
    first = next((l for l in str(exc).splitlines() if l.strip()), str(exc))
    raise DlfusionError(
        f"invalid ONNX model: {first.strip()}",
        where=source,
        hint="the file is damaged or was written by a broken exporter",
    ) from None


def import_onnx_stream(
    stream: IO[bytes],
    ctx: Context,
    text: bool = False,
    input_shapes: dict[str, list[int]] | None = None,
    source: str = "<model>",
) -> ModuleOp:
    """Read an ONNX model from `stream` and import it (the driver frontends).

    The model read here is consumed: each initializer's bytes are released as
    soon as its array is in the weight store, so the import's peak memory
    stays near two copies of the weights (file bytes + parsed model)."""
    data = stream.read()
    model = load_onnx(data, text, source)
    del data
    return Importer(model, ctx, input_shapes or {}, source, consume=True).run()


def import_model(
    model: onnx.ModelProto,
    ctx: Context,
    input_shapes: dict[str, list[int]] | None = None,
    source: str = "<model>",
    constant_inputs: dict[str, np.ndarray] | None = None,
) -> ModuleOp:
    """Import `model` into a module with one `func.func @main`.

    `constant_inputs` maps graph input names to compile-time values (see the
    module docstring); those inputs are not arguments of `@main`."""
    return Importer(model, ctx, input_shapes or {}, source, constant_inputs or {}).run()


def _dim_text(d) -> str:
    if d.HasField("dim_value") and d.dim_value > 0:
        return str(d.dim_value)
    return d.dim_param if d.HasField("dim_param") else "?"


_TORCH_OUTPUT = re.compile(r"_output_\d+$")


def _value_name(name: str) -> str:
    """An SSA name hint for an ONNX tensor name. PyTorch's exporter writes
    `/layer1/conv1/Conv_output_0`; that reads as `%layer1_conv1_Conv`."""
    if name.startswith("/"):
        name = _TORCH_OUTPUT.sub("", name.lstrip("/"))
    return sanitize_handle(name)


class Importer:
    def __init__(
        self,
        model: onnx.ModelProto,
        ctx: Context,
        input_shapes: dict[str, list[int]],
        source: str,
        constant_inputs: dict[str, np.ndarray] | None = None,
        consume: bool = False,
    ):
        self.model = model
        self.consume = consume
        self.constant_inputs = dict(constant_inputs or {})
        # tensor name -> the bound graph input its known value derives from
        self.derived: dict[str, str] = {}
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

    def compile_time_error(
        self, tensor: str, message: str, node: onnx.NodeProto, hint: str | None = None
    ) -> CompileTimeValueError:
        err = self.error(message, node, hint)
        return CompileTimeValueError(tensor, err.message, err.where, err.hint)

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
        kind = inp.type.WhichOneof("value")
        if kind != "tensor_type":
            what = {"sequence_type": "a sequence", "optional_type": "an optional",
                    "map_type": "a map", "sparse_tensor_type": "a sparse tensor"}.get(kind, "not a tensor")
            raise self.error(
                f"graph input '{inp.name}' is {what}, not a tensor; dlfusion compiles float32 tensors",
                hint="export the model with plain tensor inputs",
            )
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
                        f"the model's shape [{', '.join(_dim_text(x) for x in dims)}]"
                    )
            return nn.tensor(fixed)
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value >= 0:
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
        if name in self.derived:
            raise self._bound_as_data(name)
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

    def _bound_as_data(self, name: str) -> DlfusionError:
        source = self.derived[name]
        dtype = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(self.constant_inputs[source]).dtype)
        through = "" if name == source else f" (through tensor '{name}')"
        if dtype != onnx.TensorProto.FLOAT:
            return DlfusionError(
                f"graph input '{source}' has element type {onnx.TensorProto.DataType.Name(dtype)} "
                f"and is used as data{through}; dlfusion compiles float32 feature maps",
                where=self.source,
                hint="non-float32 graph inputs can only carry compile-time values "
                "(shapes, axes, pads, indices, flags)",
            )
        return DlfusionError(
            f"graph input '{source}' is needed at compile time (as a parameter) and is "
            f"also used as run-time data{through}",
            where=self.source,
            hint="make the parameter an initializer or a Constant",
        )

    def shape(self, name: str) -> tuple[int, ...]:
        v = self.env[name]
        return tuple(v.shape) if isinstance(v, np.ndarray) else nn.shape_of(v)

    # -- main loop ------------------------------------------------------------
    def run(self) -> ModuleOp:
        initializers = {t.name for t in self.graph.initializer}
        for t in self.graph.initializer:
            self.env[t.name] = numpy_helper.to_array(t)
            if self.consume:  # the array owns a copy: drop the proto's bytes
                t.ClearField("raw_data")
        graph_inputs = {i.name for i in self.graph.input}
        unknown = sorted(set(self.constant_inputs) - graph_inputs)
        if unknown:
            raise self.error(f"cannot bind {', '.join(unknown)}: not a graph input")
        for name, value in self.constant_inputs.items():
            self.env[name] = np.asarray(value)
            self.derived[name] = name
        arg_types, arg_names = [], []
        for inp in self.graph.input:
            if inp.name in initializers or inp.name in self.constant_inputs:
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
            # a value folded from a bound input is derived from it (a shape
            # is not: it is static whatever the input's value)
            sources = [self.derived[i] for i in inputs if i in self.derived]
            if sources and node.op_type not in converters.SHAPE_ONLY:
                for name in node.output:
                    self.derived[name] = sources[0]
        elif rule is None:
            raise self.unsupported(node)
        else:
            last = self.block.last_op
            try:
                outputs = rule(self, node, converters.attributes(node))
                # check the new layers here, where the node is known
                op = self.block.first_op if last is None else last.next_op
                while op is not None:
                    op.verify()
                    op = op.next_op
            except VerifyException as exc:
                raise self.error(
                    f"invalid {node.op_type}: {' '.join(str(exc).split())}",
                    node,
                    hint="the model is not valid ONNX for these shapes",
                ) from None
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
