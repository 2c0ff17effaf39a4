"""An ONNX backend (`onnx.backend.base.Backend`) for dlfusion.

    from dlfusion.onnx_backend import DlfusionBackend
    rep = DlfusionBackend.prepare(model)          # ModelProto
    (y,) = rep.run([x])                           # positional, graph input order

`prepare` imports the model into the `nn` dialect (a fresh context per model)
and `run` interprets it with the `nn` reference interpreter. It exists so that
ONNX's own backend test suite (`onnx.backend.test.BackendTest`) can check the
frontend and the interpreter operator by operator; see
`docs/onnx-conformance.md` and `tests/test_onnx_backend.py`.

dlfusion is a static-shape float32 compiler, so graph inputs split in two:

* float32 graph inputs are the program's run-time arguments (feature maps);
* every other graph input (int64 shapes, axes, pads, bool flags, ...) and any
  float32 input that a node needs as a compile-time value (Clip's bounds, Pad's
  constant value, ...) is *bound*: its value, given to `run`, is folded into
  the program as a constant. The program is therefore compiled when `run`
  first sees those values (and cached per distinct value), not in `prepare`.
  A bound value may only feed a compile-time parameter; if it reaches a layer
  as data (e.g. an int8 Add) the import fails with the frontend's error.

Models without bound inputs are compiled in `prepare`, so a model the frontend
rejects fails there, with the frontend's one-line `DlfusionError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from dlfusion.context import make_context
from dlfusion.errors import DlfusionError
from dlfusion.frontend.onnx_import import CompileTimeValueError, import_model

__all__ = ["DlfusionBackend", "DlfusionBackendRep", "prepare", "run_model", "supports_device"]


def _bindable_type(inp: onnx.ValueInfoProto) -> bool:
    """A tensor input of another element type than float32."""
    return inp.type.HasField("tensor_type") and inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT


class DlfusionBackendRep(BackendRep):
    """A prepared model: compiled programs, one per set of bound input values."""

    def __init__(self, model: onnx.ModelProto, source: str = "<model>"):
        self.model = model
        self.source = source
        graph = model.graph
        initializers = {t.name for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        # graph inputs bound at compile time (see the module docstring)
        self.bound = {
            i.name for i in graph.input if i.name not in initializers and _bindable_type(i)
        }
        self._producers = {o: n for n in graph.node for o in n.output if o}
        self._programs: dict[tuple, tuple[Any, Any, list[str]]] = {}
        if not self.bound:
            try:
                self._program({})
            except CompileTimeValueError as exc:
                # a float32 input is needed as a compile-time value: bind it
                # when `run` provides it
                if not self._bindable(exc.tensor):
                    raise

    # -- compilation ------------------------------------------------------------
    def _graph_inputs_behind(self, tensor: str) -> set[str]:
        """The run-time graph inputs whose values `tensor` depends on (shapes
        are static, so the walk stops at Shape and Size)."""
        found: set[str] = set()
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            name = stack.pop()
            if name in seen or not name:
                continue
            seen.add(name)
            if name in self.input_names:
                found.add(name)
            node = self._producers.get(name)
            if node is not None and node.op_type not in ("Shape", "Size"):
                stack.extend(node.input)
        return found

    def _bindable(self, tensor: str) -> set[str]:
        return self._graph_inputs_behind(tensor) - self.bound

    def _program(self, values: Mapping[str, np.ndarray]):
        """The compiled program for the bound inputs' `values` (cached)."""
        while True:
            key = tuple(
                (n, values[n].dtype.str, values[n].shape, values[n].tobytes()) for n in sorted(self.bound)
            )
            if key in self._programs:
                return self._programs[key]
            ctx = make_context()
            try:
                module = import_model(
                    self.model,
                    ctx,
                    source=self.source,
                    constant_inputs={n: values[n] for n in self.bound},
                )
            except CompileTimeValueError as exc:
                extra = self._bindable(exc.tensor)
                if not extra or not values:
                    raise
                self.bound |= extra
                missing = [n for n in extra if n not in values]
                if missing:
                    raise
                continue
            runtime = [n for n in self.input_names if n not in self.bound]
            self._programs[key] = (ctx, module, runtime)
            return self._programs[key]

    # -- execution ----------------------------------------------------------------
    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) > len(self.input_names):
                raise DlfusionError(
                    f"{len(inputs)} inputs given, the model has {len(self.input_names)} "
                    f"({', '.join(self.input_names) or 'none'})",
                    where=self.source,
                )
            feeds = dict(zip(self.input_names, inputs))
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise DlfusionError(
                f"missing input(s) {', '.join(repr(n) for n in missing)}",
                where=self.source,
                hint=f"the graph inputs are {', '.join(self.input_names)}",
            )
        return {n: np.asarray(v) for n, v in feeds.items()}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        from dlfusion.interpreter import run_module

        feeds = self._feeds(inputs)
        ctx, module, runtime = self._program(feeds)
        results = run_module(module, ctx, {n: feeds[n] for n in runtime})
        return namedtupledict("Outputs", self.output_names)(
            *[results[n] for n in self.output_names]
        )


class DlfusionBackend(Backend):
    """ONNX backend: import into `nn`, run with the `nn` reference interpreter."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> DlfusionBackendRep:
        if not cls.supports_device(device):
            raise DlfusionError(f"device '{device}' is not supported", hint="use device='CPU'")
        return DlfusionBackendRep(model, source=kwargs.get("source", model.graph.name or "<model>"))

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[np.ndarray, ...]:
        """Run one node on `inputs` (positional, in the node's input order)."""
        super().run_node(node, inputs, device=device, outputs_info=outputs_info, **kwargs)
        arrays = [np.asarray(x) for x in inputs]
        names = [n for n in node.input if n]
        graph_inputs = [
            onnx.helper.make_tensor_value_info(
                n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)
            )
            for n, a in zip(names, arrays)
        ]
        graph_outputs = [
            onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
            for o in node.output
            if o
        ]
        graph = onnx.helper.make_graph([node], f"node_{node.op_type}", graph_inputs, graph_outputs)
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        return cls.prepare(model, device).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except AttributeError:
            return False


prepare = DlfusionBackend.prepare
run_model = DlfusionBackend.run_model
run_node = DlfusionBackend.run_node
supports_device = DlfusionBackend.supports_device
