"""One rule per ONNX operator: ONNX node -> `nn` ops (or a known array).

A rule takes the importer, the node and its attributes, and returns one value
per produced output: an SSA value, or a numpy array when the result is known
at compile time. Attribute defaults follow the ONNX operator specification.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper

from dlfusion.dialects import nn

if TYPE_CHECKING:
    from dlfusion.frontend.onnx_import import Importer

Rule = Callable[["Importer", onnx.NodeProto, dict[str, Any]], list]
RULES: dict[str, Rule] = {}

# Ops whose known inputs must not be folded (none today: every supported op on
# known inputs is evaluated at import time).
NEVER_FOLD: set[str] = set()

# Ops whose (known) result depends only on the shape of their input.
SHAPE_ONLY: set[str] = {"Shape", "Size"}


def rule(*op_types: str):
    def register(fn: Rule) -> Rule:
        for t in op_types:
            RULES[t] = fn
        return fn

    return register


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


# --------------------------------------------------------------------------
# compile-time evaluation
# --------------------------------------------------------------------------


def fold(imp: Importer, node: onnx.NodeProto) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all known, with ONNX's reference
    implementation (dlfusion's own rules handle the ops that have them)."""
    if node.op_type in ("Identity", "Dropout"):
        return RULES[node.op_type](imp, node, attributes(node))
    if node.op_type == "Constant":
        return RULES["Constant"](imp, node, attributes(node))
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    graph = helper.make_graph(
        [node],
        "fold",
        [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(imp.const(i).dtype), None) for i in inputs],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", imp.opset)])
    try:
        results = ReferenceEvaluator(model).run(None, {i: imp.const(i) for i in inputs})
    except Exception as exc:  # noqa: BLE001
        if node.op_type not in RULES:
            raise imp.unsupported(node) from None
        raise imp.error(f"cannot evaluate this node at compile time: {exc}", node) from None
    return [np.asarray(r) for r in results]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _known(imp: Importer, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
    """Input `index` as a compile-time array (None if absent)."""
    if index >= len(node.input) or node.input[index] == "":
        return None
    name = node.input[index]
    v = imp.const(name)
    if v is None:
        raise imp.compile_time_error(
            name,
            f"input '{what}' (tensor '{name}') must be known at compile time, "
            "but it is computed at run time",
            node,
            hint="make it an initializer or a Constant (or a computation on static shapes)",
        )
    return v


def _scalar(imp: Importer, node: onnx.NodeProto, value: np.ndarray, what: str) -> float:
    """A compile-time scalar (exporters also write it as a 1-element tensor)."""
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1:
        raise imp.error(f"input '{what}' must be a scalar, got shape {list(np.shape(value))}", node)
    return float(flat[0])


def _f32(imp: Importer, node: onnx.NodeProto, name: str):
    v = imp.value(name)
    et = v.type.get_element_type()
    if str(et) != "f32":
        raise imp.error(f"tensor '{name}' has element type {et}; only float32 layers are compiled", node)
    return v


def _same_pads(
    in_dims, kernel, strides, dilations, mode: str
) -> list[int]:
    begins, ends = [], []
    for size, k, s, d in zip(in_dims, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


def _window(imp, node, a, x_shape, kernel) -> tuple[list[int], list[int], list[int]]:
    """strides, dilations, pads [top, left, bottom, right] of a 2-D window."""
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(x_shape[2:], kernel, strides, dilations, auto_pad)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    elif auto_pad == "NOTSET":
        pads = list(a.get("pads", [0] * (2 * nd)))
    else:
        raise imp.error(f"auto_pad '{auto_pad}' is not valid", node)
    return strides, dilations, pads


def _spatial2d(imp, node, x, x_shape):
    """Rank-3 (1-D spatial) inputs are compiled as 2-D with H = 1."""
    if len(x_shape) == 4:
        return x, False
    if len(x_shape) == 3:
        return imp.add(nn.ReshapeOp(x, (x_shape[0], x_shape[1], 1, x_shape[2]))), True
    raise imp.error(
        f"{node.op_type} on a rank-{len(x_shape)} input ({len(x_shape) - 2}-D spatial) is not supported",
        node,
        hint="dlfusion compiles 1-D and 2-D windows (NCW, NCHW)",
    )


def _lift1d(strides, dilations, pads, kernel):
    """Insert a unit H axis into 1-D window parameters."""
    return [1, *strides], [1, *dilations], [0, pads[0], 0, pads[1]], [1, *kernel]


# --------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------


@rule("Conv")
def conv(imp: Importer, node, a):
    x = _f32(imp, node, node.input[0])
    x_shape = nn.shape_of(x)
    w = imp.const(node.input[1])
    w_val = imp.value(node.input[1])
    w_shape = nn.shape_of(w_val)
    kernel = list(a.get("kernel_shape", w_shape[2:]))
    strides, dilations, pads = _window(imp, node, a, x_shape, kernel)
    x2, lifted = _spatial2d(imp, node, x, x_shape)
    if lifted:
        strides, dilations, pads, kernel = _lift1d(strides, dilations, pads, kernel)
        o, i, k = w_shape
        if w is not None:
            imp.env[node.input[1] + "/2d"] = w.reshape(o, i, 1, k)
            w_val = imp.value(node.input[1] + "/2d")
        else:
            w_val = imp.add(nn.ReshapeOp(w_val, (o, i, 1, k)))
    b = imp.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    pads2 = [pads[0], pads[1], pads[2], pads[3]]
    y = imp.add(nn.Conv2DOp(x2, w_val, b, strides, pads2, dilations, a.get("group", 1)))
    if lifted:
        s = nn.shape_of(y)
        y = imp.add(nn.ReshapeOp(y, (s[0], s[1], s[3])))
    return [y]


def _pool(imp: Importer, node, a, cls):
    x = _f32(imp, node, node.input[0])
    x_shape = nn.shape_of(x)
    kernel = list(a["kernel_shape"])
    strides, dilations, pads = _window(imp, node, a, x_shape, kernel)
    x2, lifted = _spatial2d(imp, node, x, x_shape)
    if lifted:
        strides, dilations, pads, kernel = _lift1d(strides, dilations, pads, kernel)
    extra = {}
    if cls is nn.MaxPoolOp:
        if dilations != [1, 1]:
            extra["dilations"] = nn.ints(dilations)
    else:
        if dilations != [1, 1]:
            raise imp.error("AveragePool with dilations is not supported", node)
        extra["count_include_pad"] = nn.IntegerAttr(a.get("count_include_pad", 0), nn.i64)
    op = cls.make(x2, kernel, strides, pads, bool(a.get("ceil_mode", 0)), **extra)
    y = imp.add(op)
    if lifted:
        s = nn.shape_of(y)
        y = imp.add(nn.ReshapeOp(y, (s[0], s[1], s[3])))
    return [y]


@rule("MaxPool")
def max_pool(imp, node, a):
    return _pool(imp, node, a, nn.MaxPoolOp)


@rule("AveragePool")
def avg_pool(imp, node, a):
    return _pool(imp, node, a, nn.AvgPoolOp)


@rule("GlobalAveragePool")
def global_avg_pool(imp, node, a):
    return [imp.add(nn.GlobalAvgPoolOp(_f32(imp, node, node.input[0])))]


@rule("Gemm")
def gemm(imp, node, a):
    A = _f32(imp, node, node.input[0])
    B = imp.value(node.input[1])
    C = imp.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return [
        imp.add(
            nn.GemmOp(
                A,
                B,
                C,
                bool(a.get("transA", 0)),
                bool(a.get("transB", 0)),
                a.get("alpha", 1.0),
                a.get("beta", 1.0),
            )
        )
    ]


@rule("MatMul")
def matmul(imp, node, a):
    A = _f32(imp, node, node.input[0])
    B = _f32(imp, node, node.input[1])
    return [imp.add(nn.MatMulOp(A, B))]


@rule("BatchNormalization")
def batch_norm(imp, node, a):
    if a.get("training_mode", 0):
        raise imp.error("BatchNormalization in training mode is not supported", node,
                        hint="export the model for inference (model.eval())")
    x = _f32(imp, node, node.input[0])
    rest = [imp.value(n) for n in node.input[1:5]]
    return [imp.add(nn.BatchNormOp(x, *rest, epsilon=a.get("epsilon", 1e-5)))]


@rule("LRN")
def lrn(imp, node, a):
    x = _f32(imp, node, node.input[0])
    return [
        imp.add(
            nn.LRNOp(x, a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
        )
    ]


@rule("Softmax")
def softmax(imp, node, a):
    x = _f32(imp, node, node.input[0])
    shape = nn.shape_of(x)
    rank = len(shape)
    if imp.opset >= 13:
        return [imp.add(nn.SoftmaxOp(x, _axis(a.get("axis", -1), rank)))]
    # opset < 13: softmax of the input coerced to 2-D at `axis`
    axis = _axis(a.get("axis", 1), rank)
    if axis == rank - 1:
        return [imp.add(nn.SoftmaxOp(x, axis))]
    flat = imp.add(nn.ReshapeOp(x, (math.prod(shape[:axis]), math.prod(shape[axis:]))))
    y = imp.add(nn.SoftmaxOp(flat, 1))
    return [imp.add(nn.ReshapeOp(y, shape))]


@rule("ReduceMean")
def reduce_mean(imp, node, a):
    x = _f32(imp, node, node.input[0])
    rank = len(nn.shape_of(x))
    if imp.opset >= 18:
        axes = _known(imp, node, 1, "axes")
        axes = [] if axes is None else [int(v) for v in axes.reshape(-1)]
    else:
        axes = list(a.get("axes", []))
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    axes = sorted(_axis(v, rank) for v in axes)
    return [imp.add(nn.ReduceMeanOp(x, axes, bool(a.get("keepdims", 1))))]


# --------------------------------------------------------------------------
# element-wise
# --------------------------------------------------------------------------


def _unary(cls, **defaults):
    def convert(imp, node, a):
        x = _f32(imp, node, node.input[0])
        props = {k: nn.f32(a.get(k, v)) for k, v in defaults.items()}
        return [imp.add(cls.create(operands=[x], result_types=[x.type], properties=props))]

    return convert


RULES["Relu"] = _unary(nn.ReluOp)
RULES["Sigmoid"] = _unary(nn.SigmoidOp)
RULES["HardSwish"] = _unary(nn.HardSwishOp)
RULES["LeakyRelu"] = _unary(nn.LeakyReluOp, alpha=0.01)
RULES["HardSigmoid"] = _unary(nn.HardSigmoidOp, alpha=0.2, beta=0.5)


@rule("Clip")
def clip(imp, node, a):
    x = _f32(imp, node, node.input[0])
    props = {}
    for index, key in ((1, "min"), (2, "max")):
        v = _known(imp, node, index, key)
        if v is not None:
            props[key] = nn.f32(_scalar(imp, node, v, key))
    return [imp.add(nn.ClipOp.create(operands=[x], result_types=[x.type], properties=props))]


def _binary(cls):
    def convert(imp, node, a):
        lhs = _f32(imp, node, node.input[0])
        rhs = _f32(imp, node, node.input[1])
        return [imp.add(cls(lhs, rhs))]

    return convert


RULES["Add"] = _binary(nn.AddOp)
RULES["Sub"] = _binary(nn.SubOp)
RULES["Mul"] = _binary(nn.MulOp)
RULES["Div"] = _binary(nn.DivOp)


# --------------------------------------------------------------------------
# data movement
# --------------------------------------------------------------------------


@rule("Identity")
def identity(imp, node, a):
    return [imp.env[node.input[0]]]


@rule("Dropout")
def dropout(imp, node, a):
    """Inference Dropout is the identity; its optional mask output is all true.
    Training mode is supported only with ratio 0 (also the identity)."""
    x = imp.env[node.input[0]]
    if imp.opset >= 12:
        training = _known(imp, node, 2, "training_mode")
        training = training is not None and bool(training)
    else:
        training = False
    if training:
        ratio = _known(imp, node, 1, "ratio")
        ratio = 0.5 if ratio is None else float(ratio)
        if ratio != 0.0:
            raise imp.error(
                f"Dropout in training mode (ratio {ratio:g}) is not supported",
                node,
                hint="export the model for inference (training_mode=False, model.eval())",
            )
    outputs = [x]
    if len(node.output) > 1 and node.output[1]:
        outputs.append(np.ones(imp.shape(node.input[0]), dtype=np.bool_))
    return outputs


@rule("Constant")
def constant(imp, node, a):
    if "value" in a:
        return [numpy_from_tensor(a["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [np.array(a[key], dtype=dtype)]
    raise imp.error(f"Constant with {', '.join(a) or 'no value'} is not supported", node)


def numpy_from_tensor(t: onnx.TensorProto) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


@rule("Shape")
def shape(imp, node, a):
    dims = np.array(imp.shape(node.input[0]), dtype=np.int64)
    start, end = a.get("start", 0), a.get("end", None)
    return [dims[start:end]]


@rule("Size")
def size(imp, node, a):
    return [np.array(math.prod(imp.shape(node.input[0])), dtype=np.int64)]


@rule("Cast")
def cast(imp, node, a):
    """Cast of a feature map: only to float32 (the identity)."""
    x = _f32(imp, node, node.input[0])
    to = a["to"]
    if to != onnx.TensorProto.FLOAT:
        name = onnx.TensorProto.DataType.Name(to)
        raise imp.error(
            f"Cast of a float32 feature map to {name} is not supported",
            node,
            hint="dlfusion compiles float32 layers; Cast is folded only on compile-time values",
        )
    return [x]


@rule("Gather")
def gather(imp, node, a):
    """Gather of a feature map at compile-time indices: strided slices (one
    per run of evenly spaced indices), concatenated, reshaped."""
    x = _f32(imp, node, node.input[0])
    shape = nn.shape_of(x)
    axis = _axis(a.get("axis", 0), len(shape))
    indices = _known(imp, node, 1, "indices")
    dim = shape[axis]
    flat = [int(i) for i in indices.reshape(-1)]
    bad = [i for i in flat if not -dim <= i < dim]
    if bad:
        raise imp.error(f"index {bad[0]} is out of range for axis {axis} of size {dim}", node)
    flat = [i + dim if i < 0 else i for i in flat]
    out_shape = (*shape[:axis], *indices.shape, *shape[axis + 1 :])

    def take(start: int, stop: int, step: int):
        b, e, st = [0] * len(shape), list(shape), [1] * len(shape)
        b[axis], e[axis], st[axis] = start, stop, step
        if (b, e, st) == ([0] * len(shape), list(shape), [1] * len(shape)):
            return x
        return imp.add(nn.SliceOp(x, b, e, st))

    # runs of evenly spaced indices, each one strided slice
    pieces, i = [], 0
    while i < len(flat):
        j = i + 1
        step = flat[j] - flat[i] if j < len(flat) else 1
        if step == 0:
            step = 1
        else:
            while j < len(flat) and flat[j] - flat[j - 1] == step:
                j += 1
        stop = flat[j - 1] + (1 if step > 0 else -1)
        pieces.append(take(flat[i], stop if stop >= 0 else -1, step))
        i = j
    if not pieces:
        raise imp.error("Gather with no indices (an empty result) is not supported", node)
    y = pieces[0] if len(pieces) == 1 else imp.add(nn.ConcatOp(pieces, axis))
    if nn.shape_of(y) != out_shape:
        y = imp.add(nn.ReshapeOp(y, out_shape))
    return [y]


@rule("Concat")
def concat(imp, node, a):
    xs = [_f32(imp, node, n) for n in node.input if n]
    rank = len(nn.shape_of(xs[0]))
    xs = [x for x in xs if 0 not in nn.shape_of(x)] or xs[:1]
    if len(xs) == 1:
        return [xs[0]]
    return [imp.add(nn.ConcatOp(xs, _axis(a["axis"], rank)))]


@rule("Split")
def split(imp, node, a):
    x = _f32(imp, node, node.input[0])
    shape = nn.shape_of(x)
    axis = _axis(a.get("axis", 0), len(shape))
    n_out = len(node.output)
    if imp.opset >= 13:
        sizes = _known(imp, node, 1, "split")
        sizes = None if sizes is None else [int(s) for s in sizes]
    else:
        sizes = list(a["split"]) if "split" in a else None
    if sizes is None:
        n = a.get("num_outputs", n_out)
        chunk = -(-shape[axis] // n)
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(n)]
    if sum(sizes) != shape[axis]:
        raise imp.error(f"split sizes {sizes} do not add up to {shape[axis]}", node)
    op = nn.SplitOp(x, axis, sizes)
    imp.block.add_op(op)
    return list(op.results)


def slice_params(shape, starts, ends, axes, steps):
    """ONNX Slice's clamping rules -> one (start, end, step) per axis."""
    rank = len(shape)
    b = [0] * rank
    e = list(shape)
    s = [1] * rank
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = _axis(int(ax), rank)
        dim = shape[ax]
        st, en, sp = int(st), int(en), int(sp)
        if sp == 0:
            raise ValueError("slice step 0")
        st = st + dim if st < 0 else st
        en = en + dim if en < 0 else en
        if sp > 0:
            st = min(max(st, 0), dim)
            en = min(max(en, 0), dim)
        else:
            st = min(max(st, 0), dim - 1)
            en = min(max(en, -1), dim - 1)
        b[ax], e[ax], s[ax] = st, en, sp
    return b, e, s


@rule("Slice")
def slice_(imp, node, a):
    x = _f32(imp, node, node.input[0])
    shape = nn.shape_of(x)
    starts = _known(imp, node, 1, "starts")
    ends = _known(imp, node, 2, "ends")
    axes = _known(imp, node, 3, "axes")
    steps = _known(imp, node, 4, "steps")
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    try:
        b, e, s = slice_params(shape, starts, ends, axes, steps)
    except ValueError as exc:
        raise imp.error(str(exc), node) from None
    return [imp.add(nn.SliceOp(x, b, e, s))]


def _reshape_to(imp, node, shape):
    x = _f32(imp, node, node.input[0])
    if tuple(shape) == nn.shape_of(x):
        return [x]
    return [imp.add(nn.ReshapeOp(x, shape))]


@rule("Reshape")
def reshape(imp, node, a):
    shape_in = imp.shape(node.input[0])
    target = [int(d) for d in _known(imp, node, 1, "shape")]
    allowzero = a.get("allowzero", 0)
    out = [shape_in[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(shape_in) // known if known else 0
    if math.prod(out) != math.prod(shape_in):
        raise imp.error(f"cannot reshape {list(shape_in)} to {target}", node)
    return _reshape_to(imp, node, out)


@rule("Flatten")
def flatten(imp, node, a):
    shape = imp.shape(node.input[0])
    axis = _axis(a.get("axis", 1), len(shape))
    return _reshape_to(imp, node, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def _axes_of(imp, node, a):
    if imp.opset >= 13:
        v = _known(imp, node, 1, "axes")
        return None if v is None else [int(x) for x in v.reshape(-1)]
    return list(a["axes"]) if "axes" in a else None


@rule("Squeeze")
def squeeze(imp, node, a):
    shape = imp.shape(node.input[0])
    axes = _axes_of(imp, node, a)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [_axis(x, len(shape)) for x in axes]
    for ax in axes:
        if shape[ax] != 1:
            raise imp.error(f"cannot squeeze axis {ax} of size {shape[ax]}", node)
    return _reshape_to(imp, node, [d for i, d in enumerate(shape) if i not in axes])


@rule("Unsqueeze")
def unsqueeze(imp, node, a):
    shape = list(imp.shape(node.input[0]))
    axes = _axes_of(imp, node, a)
    if axes is None:
        raise imp.error("Unsqueeze needs axes", node, hint="the model is invalid ONNX")
    rank = len(shape) + len(axes)
    for ax in sorted(_axis(x, rank) for x in axes):
        shape.insert(ax, 1)
    return _reshape_to(imp, node, shape)


@rule("Transpose")
def transpose(imp, node, a):
    x = _f32(imp, node, node.input[0])
    rank = len(nn.shape_of(x))
    perm = list(a.get("perm", range(rank - 1, -1, -1)))
    return [imp.add(nn.TransposeOp(x, perm))]


@rule("Pad")
def pad(imp, node, a):
    x = _f32(imp, node, node.input[0])
    rank = len(nn.shape_of(x))
    mode = a.get("mode", "constant")
    if mode not in nn.PadOp.MODES:
        raise imp.error(f"Pad mode '{mode}' is not supported (supported: {', '.join(nn.PadOp.MODES)})", node)
    pads = [int(p) for p in _known(imp, node, 1, "pads")]
    value = _known(imp, node, 2, "constant_value")
    axes = _known(imp, node, 3, "axes")
    if axes is not None:
        full = [0] * (2 * rank)
        axes = [_axis(int(v), rank) for v in axes]
        for i, ax in enumerate(axes):
            full[ax] = pads[i]
            full[ax + rank] = pads[i + len(axes)]
        pads = full
    if min(pads) < 0:
        # negative pads crop: slice first, then pad with the positive part
        shape = nn.shape_of(x)
        begins = [max(-p, 0) for p in pads[:rank]]
        ends = [d - max(-p, 0) for d, p in zip(shape, pads[rank:])]
        if any(e < b for b, e in zip(begins, ends)):
            raise imp.error(f"pads {pads} crop more than the input {list(shape)} holds", node)
        x = imp.add(nn.SliceOp(x, begins, ends, [1] * rank))
        pads = [max(p, 0) for p in pads]
    if not any(pads):
        return [x]
    fill = 0.0 if value is None or value.size == 0 else _scalar(imp, node, value, "constant_value")
    return [imp.add(nn.PadOp(x, pads, mode, fill))]
