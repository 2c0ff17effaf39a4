"""Registry of zoo models, published reference figures, and MAC/param counting."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import onnx

from .alexnet import alexnet
from .densenet import densenet121
from .googlenet import googlenet
from .inception_v3 import inception_v3
from .mobilenet import mobilenet_v1, mobilenet_v2
from .resnet import resnet18, resnet34, resnet50, resnet101, resnet152
from .squeezenet import squeezenet1_0
from .vgg import vgg16, vgg19

ModelBuilder = Callable[..., onnx.ModelProto]
"""``builder(seed: int = 0, batch: int = 1, materialize: bool = True) -> ModelProto``"""

MODELS: "OrderedDict[str, ModelBuilder]" = OrderedDict(
    [
        ("alexnet", alexnet),
        ("vgg16", vgg16),
        ("vgg19", vgg19),
        ("resnet18", resnet18),
        ("resnet34", resnet34),
        ("resnet50", resnet50),
        ("resnet101", resnet101),
        ("resnet152", resnet152),
        ("googlenet", googlenet),
        ("inception_v3", inception_v3),
        ("mobilenet_v1", mobilenet_v1),
        ("mobilenet_v2", mobilenet_v2),
        ("squeezenet1_0", squeezenet1_0),
        ("densenet121", densenet121),
    ]
)
"""Model name -> builder, in a stable order (roughly chronological)."""

INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    name: ((3, 299, 299) if name == "inception_v3" else (3, 224, 224)) for name in MODELS
}
"""Per-sample input shape (C, H, W) of every model; the batch is prepended."""

# Published multiply-accumulate counts for one 224x224 image (299x299 for
# inception_v3), in MACs.
#
# Source unless noted: the "GFLOPS" field of the torchvision weight metadata
# (``torchvision.models.<Model>_Weights.IMAGENET1K_V1.meta["_ops"]``, shown in
# the "GFLOPS" column of https://pytorch.org/vision/stable/models.html).  Despite
# the column name these are multiply-accumulates of conv + linear layers
# (ResNet-50: 4.09 G), i.e. the same convention as :func:`count_macs`; they are
# rounded to 3 decimals by torchvision, which bounds the agreement we can expect.
# torchvision measured them in eval mode: no auxiliary classifiers for
# googlenet / inception_v3.
PUBLISHED_MACS: dict[str, int] = {
    # torchvision one-tower AlexNet ("One weird trick", 2014): 0.714 G.  The
    # two-tower 2012 network (grouped convs, 96 first-layer filters) is usually
    # quoted at ~0.72 G (724 M) -- a different network, not used here.
    "alexnet": 714_000_000,
    "vgg16": 15_470_000_000,  # torchvision 15.47 G
    "vgg19": 19_632_000_000,  # torchvision 19.632 G
    "resnet18": 1_814_000_000,  # torchvision 1.814 G
    "resnet34": 3_664_000_000,  # torchvision 3.664 G
    "resnet50": 4_089_000_000,  # torchvision 4.089 G
    "resnet101": 7_801_000_000,  # torchvision 7.801 G
    "resnet152": 11_514_000_000,  # torchvision 11.514 G
    "googlenet": 1_498_000_000,  # torchvision 1.498 G (incl. its 3x3-for-5x5 quirk)
    "inception_v3": 5_713_000_000,  # torchvision 5.713 G at 299x299
    # Not in torchvision: Howard et al., "MobileNets" (arXiv:1704.04861),
    # Table 8, 1.0 MobileNet-224: 569 M mult-adds, 4.2 M parameters.
    "mobilenet_v1": 569_000_000,
    "mobilenet_v2": 301_000_000,  # torchvision 0.301 G (paper: 300 M)
    "squeezenet1_0": 819_000_000,  # torchvision 0.819 G
    "densenet121": 2_834_000_000,  # torchvision 2.834 G
}

# Published trainable-parameter counts: torchvision's ``meta["num_params"]``
# (= sum of ``p.numel()`` over ``model.parameters()``: weights, biases, BN
# gamma/beta; BN running statistics are buffers and not counted).
PUBLISHED_PARAMS: dict[str, int] = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "googlenet": 6_624_904,
    # torchvision's 27_161_264 includes the training-only AuxLogits head
    # (3_326_696 parameters); the eval-mode network built here has:
    "inception_v3": 27_161_264 - 3_326_696,
    # MobileNet v1 paper: 4.2 M; the exact count of the network
    # (e.g. Keras' MobileNet(alpha=1.0) trainable parameters) is 4_231_976.
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "squeezenet1_0": 1_248_424,
    "densenet121": 7_978_856,
}


def build(name: str, seed: int = 0, batch: int = 1, *, materialize: bool = True) -> onnx.ModelProto:
    """Build zoo model ``name`` with deterministic weights from ``seed``.

    The model has one input ``"input"`` of shape ``(batch, 3, 224, 224)``
    (``(batch, 3, 299, 299)`` for ``inception_v3``) and one output
    ``"output"`` of shape ``(batch, 1000)``; opset 17, IR version 8.

    With ``materialize=False`` no weight data is generated and the weights
    become extra graph inputs carrying only shapes: much faster for large
    models, good for :func:`count_macs` / :func:`count_params`, not runnable.

    Raises ``KeyError`` (with the list of valid names) for an unknown name.
    """
    try:
        builder = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}") from None
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return builder(seed=seed, batch=batch, materialize=materialize)


# ----------------------------------------------------------------------
# counting
# ----------------------------------------------------------------------
def _shape_table(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    shapes: dict[str, tuple[int | None, ...]] = {}
    g = model.graph
    for init in g.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = tuple(
            int(d.dim_value) if d.HasField("dim_value") else None for d in t.shape.dim
        )
        shapes.setdefault(vi.name, dims)
    return shapes


def _prod(dims) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


_SMALL_INITIALIZER = 64


def _without_weight_data(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose large initializers are replaced by graph inputs.

    Shape inference only needs the *shapes* of weights, but
    ``infer_shapes`` serialises the whole model (hundreds of MB for VGG).
    Small initializers are kept since they may carry values that shape
    inference needs (Reshape targets, Slice bounds, ...).
    """
    m = onnx.ModelProto()
    m.ir_version = model.ir_version
    m.opset_import.extend(model.opset_import)
    m.functions.extend(model.functions)
    g, src = m.graph, model.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    declared = {vi.name for vi in src.input}
    for init in src.initializer:
        if _prod(init.dims) <= _SMALL_INITIALIZER:
            g.initializer.append(init)
        elif init.name not in declared:
            g.input.append(
                onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
            )
    return m


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulate count of ``model`` (for its declared batch size).

    Shapes come from :func:`onnx.shape_inference.infer_shapes`, so every
    Conv / Gemm / MatMul operand and result needs a fully static shape
    (otherwise ``ValueError``).  Convention (the usual one, e.g. torchvision's
    "GFLOPS" column, which really counts MACs):

    * ``Conv``: ``N * Cout * Hout * Wout * (Cin / groups) * kh * kw``
      (any number of spatial dims; ``ConvTranspose`` symmetrically, with the
      input spatial size);
    * ``Gemm`` ``(M, K) x (K, N)``: ``M * N * K``; ``MatMul``: ``M * N * K``
      times the broadcast batch size;
    * bias additions, element-wise ops, activations, pooling, BatchNormalization,
      Concat, Softmax, ... count nothing.

    Nodes inside subgraphs (If/Loop bodies) are not counted.
    """
    inferred = onnx.shape_inference.infer_shapes(_without_weight_data(model))
    shapes = _shape_table(inferred)

    def shape(name: str, node: onnx.NodeProto) -> tuple[int, ...]:
        s = shapes.get(name)
        if s is None or any(d is None for d in s):
            raise ValueError(
                f"count_macs: shape of {name!r} (operand of {node.op_type} node "
                f"{node.name!r}) is unknown or not static"
            )
        return s  # type: ignore[return-value]

    total = 0
    for node in inferred.graph.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            continue
        if op == "Conv":
            w = shape(node.input[1], node)
            y = shape(node.output[0], node)
            total += _prod(y) * _prod(w[1:])
        elif op == "ConvTranspose":
            x = shape(node.input[0], node)
            w = shape(node.input[1], node)  # (Cin, Cout/groups, k...)
            total += x[0] * _prod(x[1:]) * _prod(w[1:])
        elif op == "Gemm":
            a = shape(node.input[0], node)
            b = shape(node.input[1], node)
            attrs = {a_.name: onnx.helper.get_attribute_value(a_) for a_ in node.attribute}
            m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
            n = b[0] if attrs.get("transB", 0) else b[1]
            total += m * n * k
        elif op == "MatMul":
            a = shape(node.input[0], node)
            b = shape(node.input[1], node)
            k = a[-1]
            m = a[-2] if len(a) >= 2 else 1
            n = b[-1] if len(b) >= 2 else 1
            batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])) if (
                len(a) > 2 or len(b) > 2) else ()
            total += _prod(batch) * m * n * k
    return int(total)


# operand positions that hold weights, for weights passed as graph inputs
_WEIGHT_OPERANDS = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (1, 2),
    "MatMul": (1,),
    "BatchNormalization": (1, 2, 3, 4),
}


def count_params(model: onnx.ModelProto, *, include_buffers: bool = False) -> int:
    """Number of parameters of ``model``.

    Counts the elements of all initializers, plus graph inputs used as the
    weight operand of Conv / ConvTranspose / Gemm / MatMul /
    BatchNormalization (that is how a model built with ``materialize=False``
    carries its weights).  By default BatchNormalization running mean and
    variance (buffers in PyTorch) and the scalar bounds of ``Clip`` are
    excluded, which makes the figure comparable with torchvision's
    ``num_params``; pass ``include_buffers=True`` to count them too.
    """
    g = model.graph
    skip: set[str] = set()
    weight_inputs: set[str] = set()
    for node in g.node:
        for i in _WEIGHT_OPERANDS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i]:
                weight_inputs.add(node.input[i])
        if include_buffers:
            continue
        if node.op_type == "BatchNormalization":
            skip.update(node.input[3:5])
        elif node.op_type == "Clip":
            skip.update(node.input[1:3])
    total = 0
    for init in g.initializer:
        if init.name not in skip:
            total += _prod(init.dims)
    init_names = {i.name for i in g.initializer}
    for vi in g.input:
        if vi.name in init_names or vi.name in skip or vi.name not in weight_inputs:
            continue
        dims = vi.type.tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            raise ValueError(f"count_params: weight input {vi.name!r} has a non-static shape")
        total += _prod(d.dim_value for d in dims)
    return int(total)
