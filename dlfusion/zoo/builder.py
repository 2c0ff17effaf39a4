"""A small graph builder on top of :mod:`onnx.helper` used by the model zoo.

The builder keeps a list of nodes and initializers, tracks the channel count of
every activation tensor (so layer helpers can size their weights), creates
deterministic seeded weights, and finally assembles an ``onnx.ModelProto``.

Naming convention
-----------------
Every layer helper takes a *module path* such as ``"layer1.0.conv1"`` (the
PyTorch module name).  The ONNX node is named after the path, the output
tensor uses the path with ``.`` replaced by ``_`` (``"layer1_0_conv1"``) and
weights get a ``_weight``/``_bias``/... suffix (``"layer1_0_conv1_weight"``).
These names end up as IR value names, so they are kept short, unique and
valid identifiers (``[A-Za-z_][A-Za-z0-9_]*``).

Weight initialisation
---------------------
The models are not trained; weights are random but chosen so that activations
stay in a sane range through very deep networks:

* conv / linear weights: He init with a zero-mean *uniform* distribution
  of ``std = gain * sqrt(2 / fan_in)``
  (``gain`` lets a model damp e.g. the last BN of a residual branch; the final
  classifier uses ``sqrt(1 / fan_in)`` since no ReLU follows it),
* biases: zero-mean uniform with ``std = 0.01``,
* BatchNormalization (inference form, kept unfolded like a PyTorch export):
  ``gamma ~ gain * U(0.8, 1.2)``, ``beta ~ N(0, 0.05)``,
  ``running_mean ~ N(0, 0.05)``, ``running_var ~ U(0.8, 1.25)``.

All randomness comes from one ``numpy.random.default_rng(seed)`` consumed in
graph-construction order, so a model is a pure function of ``(name, seed,
batch)`` and serialises to identical bytes when built twice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
"""Default ONNX opset of the zoo models."""

IR_VERSION = 8
"""ONNX IR version of the zoo models (IR 8 is the one that goes with opset 17)."""

_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tensor_name(path: str) -> str:
    return path.replace(".", "_")


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


class GraphBuilder:
    """Incrementally build a single-input / single-output ONNX classifier.

    Parameters
    ----------
    name:
        graph name.
    input_shape:
        shape of the graph input (``N, C, H, W``); the input is called
        ``input_name``.
    seed:
        seed of the ``numpy.random.default_rng`` used for all weights.
    materialize:
        if ``False`` no weight data is generated: weights become additional
        graph inputs carrying only their shapes.  Such "skeleton" models are
        cheap to build and are enough for :func:`dlfusion.zoo.count_macs`
        and :func:`dlfusion.zoo.count_params`, but they cannot be run.
    """

    def __init__(
        self,
        name: str,
        input_shape: Sequence[int],
        seed: int = 0,
        *,
        input_name: str = "input",
        materialize: bool = True,
    ) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.materialize = materialize
        # Nodes and initializers are written straight into the final
        # ModelProto: copying hundreds of MB of weights between protobuf
        # messages (as helper.make_graph / make_model do) costs seconds.
        self.model = onnx.ModelProto()
        self.graph = self.model.graph
        self.weight_inputs: list[onnx.ValueInfoProto] = []
        self.channels: dict[str, int] = {}
        self._names: set[str] = set()
        self._node_names: set[str] = set()
        self._consts: dict[tuple[str, float], str] = {}
        self.input_shape = tuple(int(d) for d in input_shape)
        self.input_name = input_name
        self._claim(input_name)
        self.channels[input_name] = self.input_shape[1]

    # ------------------------------------------------------------------
    # bookkeeping
    # ------------------------------------------------------------------
    def _claim(self, tensor: str) -> str:
        if not _NAME_OK.fullmatch(tensor):
            raise ValueError(f"invalid tensor name {tensor!r}")
        if tensor in self._names:
            raise ValueError(f"duplicate tensor name {tensor!r}")
        self._names.add(tensor)
        return tensor

    def _node(
        self,
        op_type: str,
        inputs: Sequence[str],
        path: str,
        channels: int,
        *,
        output: str | None = None,
        **attrs,
    ) -> str:
        if path in self._node_names:
            raise ValueError(f"duplicate node name {path!r}")
        self._node_names.add(path)
        out = self._claim(output if output is not None else _tensor_name(path))
        self.graph.node.append(helper.make_node(op_type, list(inputs), [out], name=path, **attrs))
        self.channels[out] = channels
        return out

    def _add_initializer(self, name: str, array: np.ndarray) -> None:
        # (not np.ascontiguousarray: it turns 0-d scalars into shape (1,))
        array = np.asarray(array, dtype=np.float32)
        # add().CopyFrom() is much cheaper than appending to a Python list
        # and letting helper.make_graph extend the repeated field
        self.graph.initializer.add().CopyFrom(numpy_helper.from_array(array, name))

    def _add_weight(self, name: str, array: np.ndarray) -> str:
        self._claim(name)
        if self.materialize:
            self._add_initializer(name, array)
        else:
            self.weight_inputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape))
            )
        return name

    def _weight(self, name: str, shape: Sequence[int], std: float) -> str:
        """Zero-mean uniform weights with standard deviation ``std``.

        Uniform rather than normal (like PyTorch's default kaiming-uniform
        init) because it is several times faster to draw, which matters for
        the 100M+ weights of VGG.
        """
        shape = tuple(int(s) for s in shape)
        if self.materialize:
            arr = self.rng.random(shape, dtype=np.float32)  # U[0, 1): var 1/12
            arr -= np.float32(0.5)
            arr *= np.float32(std * np.sqrt(12.0))
        else:
            arr = np.empty(shape, np.float32)  # shape carrier only
        return self._add_weight(name, arr)

    def _uniform(self, name: str, shape: Sequence[int], lo: float, hi: float) -> str:
        if self.materialize:
            arr = self.rng.uniform(lo, hi, size=tuple(shape)).astype(np.float32)
        else:
            arr = np.empty(tuple(shape), np.float32)
        return self._add_weight(name, arr)

    def const(self, value: float) -> str:
        """A shared float32 scalar initializer (e.g. Clip bounds)."""
        key = ("f32", float(value))
        if key not in self._consts:
            text = f"{value:g}".replace(".", "p").replace("-", "m")
            name = self._claim(f"const_{text}_f32")
            self._add_initializer(name, np.array(value, dtype=np.float32))
            self._consts[key] = name
        return self._consts[key]

    # ------------------------------------------------------------------
    # layers
    # ------------------------------------------------------------------
    def conv(
        self,
        x: str,
        path: str,
        out_channels: int,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = False,
        gain: float = 1.0,
    ) -> str:
        """``Conv`` with symmetric padding ``padding`` (int or ``(ph, pw)``)."""
        cin = self.channels[x]
        if cin % groups or out_channels % groups:
            raise ValueError(f"{path}: channels {cin}->{out_channels} not divisible by {groups}")
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride)
        ph, pw = _pair(padding)
        fan_in = (cin // groups) * kh * kw
        tname = _tensor_name(path)
        inputs = [
            x,
            self._weight(f"{tname}_weight", (out_channels, cin // groups, kh, kw),
                         gain * np.sqrt(2.0 / fan_in)),
        ]
        if bias:
            inputs.append(self._weight(f"{tname}_bias", (out_channels,), 0.01))
        return self._node(
            "Conv", inputs, path, out_channels,
            kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw],
            dilations=[1, 1], group=groups,
        )

    def bn(self, x: str, path: str, eps: float = 1e-5, gain: float = 1.0) -> str:
        """Inference-mode ``BatchNormalization`` (scale, bias, mean, var)."""
        c = self.channels[x]
        tname = _tensor_name(path)
        if self.materialize:
            gamma = self.rng.uniform(0.8, 1.2, size=c) * gain
            beta = self.rng.standard_normal(c) * 0.05
            mean = self.rng.standard_normal(c) * 0.05
            var = self.rng.uniform(0.8, 1.25, size=c)
        else:
            gamma = beta = mean = var = np.empty(c, np.float32)
        inputs = [
            x,
            self._add_weight(f"{tname}_weight", gamma),
            self._add_weight(f"{tname}_bias", beta),
            self._add_weight(f"{tname}_running_mean", mean),
            self._add_weight(f"{tname}_running_var", var),
        ]
        return self._node("BatchNormalization", inputs, path, c, epsilon=float(eps))

    def relu(self, x: str, path: str) -> str:
        return self._node("Relu", [x], path, self.channels[x])

    def relu6(self, x: str, path: str) -> str:
        """ReLU6 as ``Clip(x, 0, 6)`` (what ``torch.onnx`` emits)."""
        return self._node("Clip", [x, self.const(0.0), self.const(6.0)], path, self.channels[x])

    def maxpool(
        self,
        x: str,
        path: str,
        kernel: int,
        stride: int,
        padding: int = 0,
        ceil_mode: bool = False,
    ) -> str:
        k, s, p = _pair(kernel), _pair(stride), _pair(padding)
        return self._node(
            "MaxPool", [x], path, self.channels[x],
            kernel_shape=list(k), strides=list(s), pads=[p[0], p[1], p[0], p[1]],
            ceil_mode=int(ceil_mode),
        )

    def avgpool(
        self,
        x: str,
        path: str,
        kernel: int,
        stride: int,
        padding: int = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> str:
        """``AveragePool``; PyTorch's default is ``count_include_pad=True``."""
        k, s, p = _pair(kernel), _pair(stride), _pair(padding)
        return self._node(
            "AveragePool", [x], path, self.channels[x],
            kernel_shape=list(k), strides=list(s), pads=[p[0], p[1], p[0], p[1]],
            ceil_mode=int(ceil_mode), count_include_pad=int(count_include_pad),
        )

    def global_avgpool(self, x: str, path: str) -> str:
        return self._node("GlobalAveragePool", [x], path, self.channels[x])

    def concat(self, xs: Sequence[str], path: str) -> str:
        return self._node("Concat", list(xs), path, sum(self.channels[x] for x in xs), axis=1)

    def add(self, a: str, b: str, path: str) -> str:
        if self.channels[a] != self.channels[b]:
            raise ValueError(f"{path}: adding {self.channels[a]} and {self.channels[b]} channels")
        return self._node("Add", [a, b], path, self.channels[a])

    def flatten(self, x: str, path: str) -> str:
        # after global pooling the spatial extent is 1x1, so features == channels
        return self._node("Flatten", [x], path, self.channels[x], axis=1)

    def gemm(
        self,
        x: str,
        path: str,
        out_features: int,
        in_features: int | None = None,
        relu_follows: bool = False,
    ) -> str:
        """``Gemm`` as PyTorch's ``nn.Linear``: ``y = x @ W^T + b`` (``transB=1``).

        ``in_features`` defaults to the channel count of ``x`` (correct after
        global pooling + flatten); pass it explicitly otherwise.
        """
        fin = int(in_features if in_features is not None else self.channels[x])
        tname = _tensor_name(path)
        std = np.sqrt((2.0 if relu_follows else 1.0) / fin)
        w = self._weight(f"{tname}_weight", (out_features, fin), std)
        b = self._weight(f"{tname}_bias", (out_features,), 0.01)
        return self._node(
            "Gemm", [x, w, b], path, out_features, alpha=1.0, beta=1.0, transB=1
        )

    # composite helpers -------------------------------------------------
    def conv_bn_act(
        self,
        x: str,
        prefix: str,
        out_channels: int,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        groups: int = 1,
        *,
        conv: str = "conv",
        bn: str = "bn",
        act: str | None = "relu",
        relu6: bool = False,
        eps: float = 1e-5,
    ) -> str:
        """``conv -> bn -> (relu | relu6)`` with node paths ``prefix.conv`` etc.

        Pass ``act=None`` to omit the activation.
        """
        y = self.conv(x, f"{prefix}.{conv}", out_channels, kernel, stride, padding, groups)
        y = self.bn(y, f"{prefix}.{bn}", eps=eps)
        if act is None:
            return y
        return self.relu6(y, f"{prefix}.{act}") if relu6 else self.relu(y, f"{prefix}.{act}")

    # ------------------------------------------------------------------
    # assembly
    # ------------------------------------------------------------------
    def build(self, output: str, output_name: str = "output", num_classes: int = 1000,
              doc: str = "") -> onnx.ModelProto:
        """Rename the tensor ``output`` to ``output_name`` and return the model.

        The builder must not be used after this call (the model is returned
        without copying).
        """
        if output != output_name:
            self._claim(output_name)
            for node in self.graph.node:
                for i, o in enumerate(node.output):
                    if o == output:
                        node.output[i] = output_name
                for i, o in enumerate(node.input):
                    if o == output:
                        node.input[i] = output_name
        batch = self.input_shape[0]
        g = self.graph
        g.name = self.name
        g.doc_string = doc
        g.input.append(
            helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, list(self.input_shape))
        )
        g.input.extend(self.weight_inputs)
        g.output.append(
            helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, num_classes])
        )
        m = self.model
        m.ir_version = IR_VERSION
        m.producer_name = "dlfusion.zoo"
        m.producer_version = "0.1"
        m.doc_string = doc
        m.opset_import.append(helper.make_opsetid("", OPSET))
        return m
