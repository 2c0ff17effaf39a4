"""fold-batchnorm on ONNX graphs with random weights: the folded weights
against the analytic formula, and the folded program against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlfusion.context import make_context
from dlfusion.dialects import nn
from dlfusion.dialects.weights import weight_store
from dlfusion.errors import DlfusionError
from dlfusion.frontend import import_model
from dlfusion.passes import get_all_passes
from dlfusion.passes.fold_batchnorm import FoldBatchNormPass

EPS = 1e-3

try:
    from dlfusion.interpreter import run_module
except ImportError:  # pragma: no cover - the interpreter is optional here
    run_module = None


# --------------------------------------------------------------------------
# graph builders
# --------------------------------------------------------------------------


class Graph:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}

    def init(self, name: str, array) -> str:
        self.inits[name] = np.asarray(array, dtype=np.float32)
        return name

    def rand(self, name: str, shape, low=-1.0, high=1.0) -> str:
        return self.init(name, self.rng.uniform(low, high, shape))

    def node(self, op: str, inputs, output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def bn(self, x: str, channels: int, name: str) -> str:
        params = [
            self.rand(f"{name}_scale", channels, 0.5, 2.0),
            self.rand(f"{name}_bias", channels),
            self.rand(f"{name}_mean", channels),
            self.rand(f"{name}_var", channels, 0.1, 2.0),
        ]
        return self.node("BatchNormalization", [x, *params], name, epsilon=EPS)

    def model(self, inputs: dict[str, list[int]], outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_empty_tensor_value_info(o) for o in outputs],
            [numpy_helper.from_array(a, n) for n, a in self.inits.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        # give the outputs their inferred types, then check the model
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        for out in model.graph.output:
            out.CopyFrom(inferred[out.name])
        onnx.checker.check_model(model, full_check=True)
        return model


def conv_bn_model(cin, cout, groups, bias, kernel=3, stride=1, dilation=1, seed=0):
    g = Graph(seed)
    inputs = ["x", g.rand("conv_w", (cout, cin // groups, kernel, kernel))]
    if bias:
        inputs.append(g.rand("conv_b", cout))
    g.node(
        "Conv", inputs, "conv", group=groups, pads=[1, 1, 1, 1], strides=[stride, stride],
        dilations=[dilation, dilation],
    )
    g.node("Relu", [g.bn("conv", cout, "bn")], "y")
    return g.model({"x": [1, cin, 9, 9]}, ["y"])


def gemm_bn_model(m, k, n, trans_b, alpha, beta, c_shape, seed=0):
    g = Graph(seed)
    b = g.rand("fc_w", (n, k) if trans_b else (k, n))
    inputs = ["a", b]
    if c_shape is not None:
        inputs.append(g.rand("fc_c", c_shape))
    g.node("Gemm", inputs, "fc", transB=int(trans_b), alpha=alpha, beta=beta)
    g.bn("fc", n, "y")
    return g.model({"a": [m, k]}, ["y"])


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def fold(model: onnx.ModelProto):
    ctx = make_context()
    module = import_model(model, ctx)
    store = weight_store(ctx)
    before = {k: np.array(store.get(k), copy=True) for k in store.keys()}
    FoldBatchNormPass().apply(ctx, module)
    module.verify()
    # the arrays under the original handles are never modified
    for key, arr in before.items():
        np.testing.assert_array_equal(store.get(key), arr, err_msg=key)
    return ctx, module


def ops_of(module, cls):
    return [op for op in module.walk() if isinstance(op, cls)]


def array(ctx, value) -> np.ndarray:
    owner = value.owner
    assert isinstance(owner, nn.WeightOp), f"{value} is not a weight"
    return weight_store(ctx).get(owner.key)


def bn_params(model: onnx.ModelProto, name: str):
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    scale, bias, mean, var = (inits[f"{name}_{p}"] for p in ("scale", "bias", "mean", "var"))
    s = scale / np.sqrt(var + EPS)
    return s, bias - s * mean, inits


def onnxruntime_outputs(model: onnx.ModelProto, inputs: dict[str, np.ndarray]):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))


def check_against_onnxruntime(model, ctx, module, seed=1):
    if run_module is None:
        pytest.skip("dlfusion.interpreter is not available")
    rng = np.random.default_rng(seed)
    inputs = {
        i.name: rng.standard_normal(
            [d.dim_value for d in i.type.tensor_type.shape.dim]
        ).astype(np.float32)
        for i in model.graph.input
    }
    ref = onnxruntime_outputs(model, inputs)
    got = run_module(module, ctx, inputs)
    assert got.keys() == ref.keys()
    for name in ref:
        assert got[name].shape == ref[name].shape
        scale = float(np.max(np.abs(ref[name])))
        err = float(np.max(np.abs(got[name] - ref[name])))
        assert err <= 1e-4 * scale, f"{name}: max abs error {err:.3g} (max |ref| {scale:.3g})"


# --------------------------------------------------------------------------
# conv
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cin,cout,groups,bias,stride,dilation",
    [
        (3, 8, 1, True, 1, 1),  # plain conv with bias
        (3, 8, 1, False, 2, 1),  # no bias: the folded conv gains one
        (8, 8, 8, False, 1, 1),  # depthwise
        (8, 8, 8, True, 2, 1),  # depthwise with bias
        (8, 12, 4, True, 1, 2),  # grouped, dilated
    ],
)
def test_conv_bn_folds(cin, cout, groups, bias, stride, dilation):
    model = conv_bn_model(cin, cout, groups, bias, stride=stride, dilation=dilation)
    ctx, module = fold(model)
    assert not ops_of(module, nn.BatchNormOp)
    (conv,) = ops_of(module, nn.Conv2DOp)
    assert conv.groups.value.data == groups
    assert conv.bias is not None

    s, t, inits = bn_params(model, "bn")
    w = inits["conv_w"]
    b = inits["conv_b"] if bias else np.zeros(cout)
    np.testing.assert_allclose(array(ctx, conv.weight), w * s[:, None, None, None], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(array(ctx, conv.bias), s * b + t, rtol=1e-6, atol=1e-6)

    # new handles; the original weights and the batch norm parameters are gone
    keys = {op.key for op in ops_of(module, nn.WeightOp)}
    assert keys == {conv.weight.owner.key, conv.bias.owner.key}
    assert conv.weight.owner.key == "conv_w_bn"
    assert conv.bias.owner.key == "conv_b_bn"
    check_against_onnxruntime(model, ctx, module)


def test_folding_is_idempotent():
    ctx, module = fold(conv_bn_model(3, 4, 1, True))
    text = str(module)
    FoldBatchNormPass().apply(ctx, module)
    assert str(module) == text


def test_two_batch_norms_in_a_row_fold_into_one_conv():
    g = Graph(3)
    g.node("Conv", ["x", g.rand("conv_w", (4, 3, 3, 3))], "conv", pads=[1, 1, 1, 1])
    g.bn(g.bn("conv", 4, "bn1"), 4, "y")
    model = g.model({"x": [1, 3, 6, 6]}, ["y"])
    ctx, module = fold(model)
    assert not ops_of(module, nn.BatchNormOp)
    (conv,) = ops_of(module, nn.Conv2DOp)
    s1, t1, inits = bn_params(model, "bn1")
    s2, t2, _ = bn_params(model, "y")
    np.testing.assert_allclose(
        array(ctx, conv.weight), inits["conv_w"] * (s1 * s2)[:, None, None, None], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(array(ctx, conv.bias), s2 * t1 + t2, rtol=1e-5, atol=1e-6)
    check_against_onnxruntime(model, ctx, module)


# --------------------------------------------------------------------------
# gemm
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trans_b,alpha,beta,c_shape",
    [
        (True, 1.0, 1.0, "n"),
        (False, 1.0, 1.0, "n"),
        (True, 0.5, 2.0, "1n"),
        (False, 1.5, 0.25, "mn"),
        (True, 1.0, 3.0, "m1"),  # broadcast along N: the folded C becomes [M, N]
        (False, 2.0, 0.0, "n"),  # beta = 0: C is ignored
        (True, 1.0, 1.0, None),  # no C: the folded gemm gains one
    ],
)
def test_gemm_bn_folds(trans_b, alpha, beta, c_shape):
    m, k, n = 3, 5, 4
    shape = {"n": (n,), "1n": (1, n), "mn": (m, n), "m1": (m, 1), None: None}[c_shape]
    model = gemm_bn_model(m, k, n, trans_b, alpha, beta, shape)
    ctx, module = fold(model)
    assert not ops_of(module, nn.BatchNormOp)
    (gemm,) = ops_of(module, nn.GemmOp)
    assert bool(gemm.trans_b.value.data) == trans_b
    assert gemm.alpha.value.data == pytest.approx(alpha)
    assert gemm.beta.value.data == 1.0

    s, t, inits = bn_params(model, "y")
    w = inits["fc_w"]
    want_b = w * s[:, None] if trans_b else w * s[None, :]
    np.testing.assert_allclose(array(ctx, gemm.b), want_b, rtol=1e-6, atol=1e-6)
    c = inits["fc_c"] if shape is not None else np.zeros(n)
    want_c = s * (beta * c) + t
    got_c = array(ctx, gemm.c)
    np.testing.assert_allclose(np.broadcast_to(got_c, (m, n)), np.broadcast_to(want_c, (m, n)), rtol=1e-6, atol=1e-6)
    check_against_onnxruntime(model, ctx, module)


# --------------------------------------------------------------------------
# batch norms that stay
# --------------------------------------------------------------------------


def test_conv_with_another_user_keeps_its_batch_norm():
    g = Graph(1)
    g.node("Conv", ["x", g.rand("conv_w", (4, 3, 3, 3))], "conv", pads=[1, 1, 1, 1])
    g.bn("conv", 4, "bn")
    g.node("Relu", ["conv"], "side")
    model = g.model({"x": [1, 3, 6, 6]}, ["bn", "side"])
    ctx, module = fold(model)
    assert len(ops_of(module, nn.BatchNormOp)) == 1
    (conv,) = ops_of(module, nn.Conv2DOp)
    assert conv.weight.owner.key == "conv_w"
    check_against_onnxruntime(model, ctx, module)


def test_batch_norm_after_add_and_concat_stays():
    g = Graph(2)
    g.node("Add", ["x", "z"], "sum")
    g.bn("sum", 3, "bn1")
    g.node("Concat", ["x", "z"], "cat", axis=1)
    g.bn("cat", 6, "bn2")
    model = g.model({"x": [1, 3, 4, 4], "z": [1, 3, 4, 4]}, ["bn1", "bn2"])
    ctx, module = fold(model)
    assert len(ops_of(module, nn.BatchNormOp)) == 2
    check_against_onnxruntime(model, ctx, module)


def test_gemm_with_non_constant_weight_keeps_its_batch_norm():
    g = Graph(4)
    g.node("Gemm", ["a", "b"], "fc")
    g.bn("fc", 4, "y")
    model = g.model({"a": [2, 3], "b": [3, 4]}, ["y"])
    ctx, module = fold(model)
    assert len(ops_of(module, nn.BatchNormOp)) == 1


def test_shared_weight_is_not_modified():
    g = Graph(5)
    w = g.rand("conv_w", (4, 3, 1, 1))
    g.node("Conv", ["x", w], "c1")
    g.bn("c1", 4, "bn")
    g.node("Conv", ["x", w], "c2")
    model = g.model({"x": [1, 3, 4, 4]}, ["bn", "c2"])
    ctx, module = fold(model)  # also checks that the original array is intact
    assert not ops_of(module, nn.BatchNormOp)
    c1, c2 = ops_of(module, nn.Conv2DOp)
    assert c1.weight.owner.key == "conv_w_bn"
    assert c2.weight.owner.key == "conv_w"
    np.testing.assert_array_equal(array(ctx, c2.weight), g.inits["conv_w"])
    check_against_onnxruntime(model, ctx, module)


def test_elided_weights_are_a_clear_error():
    from dlfusion.ir_io import parse_module, print_module

    ctx = make_context()
    module = import_model(conv_bn_model(3, 4, 1, True), ctx)
    text = print_module(module, ctx)  # weights elided
    ctx2 = make_context()
    module2 = parse_module(text, ctx2)
    with pytest.raises(DlfusionError, match=r"fold-batchnorm: weight '\w+' has no data.*--emit-weights"):
        FoldBatchNormPass().apply(ctx2, module2)


def test_registered_under_its_name():
    assert get_all_passes()["fold-batchnorm"]() is FoldBatchNormPass
    assert FoldBatchNormPass.name == "fold-batchnorm"
