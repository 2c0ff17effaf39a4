"""ONNX's own backend node tests, run through dlfusion's ONNX backend.

`onnx.backend.test.BackendTest` generates the node test cases in memory (one
small model with inputs and expected outputs per case). This module runs every
case of every operator the frontend supports (`OPERATOR_TESTS`) on the CPU
device, skips the cases listed in `tests/onnx_backend_exclusions.py` (checking
that each of those fails with the frontend's clear error), and adds:

* an opset sweep: every passing case converted down to opsets 11 and 13 with
  `onnx.version_converter` (where ONNX has the adapters) and checked against
  onnxruntime (the converter does not always preserve semantics, e.g. Softmax
  before opset 13 flattens to 2-D, so onnxruntime on the converted model is the
  reference, not the case's expected output);
* cases the node tests lack: grouped, depthwise and dilated convolution, 1-D
  windows, Gather of feature maps, the Dropout mask, and the backend's API.

Run it with `pytest tests/test_onnx_backend.py`; `python tests/test_onnx_backend.py`
prints the per-operator table of `docs/onnx-conformance.md`.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.backend.test
import onnx.reference
import pytest
from onnx import TensorProto, helper, version_converter
from onnx.backend.test.loader import load_model_tests
from onnx.backend.test.runner import Runner, _normalize_tensor

from dlfusion.errors import DlfusionError
from dlfusion.onnx_backend import DlfusionBackend

sys.path.insert(0, str(Path(__file__).parent))
from onnx_backend_exclusions import EXCLUSIONS  # noqa: E402

# Supported operator -> the node test cases that exercise it (regex on the case
# name). Cases of other operators are not run.
OPERATOR_TESTS: dict[str, str] = {
    "Conv": r"^test_(basic_)?conv_",
    "Gemm": r"^test_gemm_",
    "MatMul": r"^test_matmul_",
    "BatchNormalization": r"^test_batchnorm_",
    "Relu": r"^test_relu($|_)",
    "LeakyRelu": r"^test_leakyrelu",
    "Clip": r"^test_clip",
    "Sigmoid": r"^test_sigmoid",
    "HardSigmoid": r"^test_hardsigmoid",
    "HardSwish": r"^test_hardswish",
    "Add": r"^test_add($|_)",
    "Sub": r"^test_sub($|_)",
    "Mul": r"^test_mul($|_)",
    "Div": r"^test_div($|_)",
    "MaxPool": r"^test_maxpool_",
    "AveragePool": r"^test_averagepool_",
    "GlobalAveragePool": r"^test_globalaveragepool",
    "Concat": r"^test_concat_",
    "Split": r"^test_split_(?!to_sequence)",
    "Slice": r"^test_slice",
    "Flatten": r"^test_flatten",
    "Reshape": r"^test_reshape_",
    "Transpose": r"^test_transpose_",
    "Squeeze": r"^test_squeeze",
    "Unsqueeze": r"^test_unsqueeze",
    "Pad": r"^test_(constant|edge|reflect|wrap)_pad",
    "Softmax": r"^test_softmax_",
    "LRN": r"^test_lrn",
    "ReduceMean": r"^test_reduce_mean_",
    "Dropout": r"^test_(training_)?dropout",
    "Identity": r"^test_identity",
    "Constant": r"^test_constant$",
    "Shape": r"^test_shape",
    "Size": r"^test_size",
    "Gather": r"^test_gather_(?!elements)",
    "Cast": r"^test_cast_",
}
_PATTERNS = {op: re.compile(p) for op, p in OPERATOR_TESTS.items()}


def operator_of(case: str) -> str | None:
    """The supported operator whose node tests include `case` (no device suffix)."""
    hits = [op for op, p in _PATTERNS.items() if p.search(case)]
    assert len(hits) <= 1, f"{case} matches the patterns of {hits}"
    return hits[0] if hits else None


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the case generators' numpy overflow warnings
    NODE_CASES = {c.name: c for c in load_model_tests(kind="node")}
SUPPORTED_CASES = sorted(n for n in NODE_CASES if operator_of(n))
PASSING_CASES = [n for n in SUPPORTED_CASES if n not in EXCLUSIONS]

# -- ONNX's backend test suite -----------------------------------------------------------

backend_test = onnx.backend.test.BackendTest(DlfusionBackend, __name__)
for _pattern in OPERATOR_TESTS.values():
    backend_test.include(_pattern.rstrip("$") + (r"_cpu$" if _pattern.endswith("$") else ""))
for _name in EXCLUSIONS:
    backend_test.exclude(f"^{re.escape(_name)}_cpu$")

OnnxBackendNodeModelTest = backend_test.test_cases["OnnxBackendNodeModelTest"]
# keep the supported operators' cases on the CPU device only (the other
# thousands of cases would only be reported as skipped)
for _attr in list(vars(OnnxBackendNodeModelTest)):
    if _attr.startswith("test_") and not (
        _attr.endswith("_cpu") and operator_of(_attr[: -len("_cpu")])
    ):
        delattr(OnnxBackendNodeModelTest, _attr)


def test_exclusions_are_supported_operator_cases():
    """Every exclusion names an existing case of a supported operator."""
    unknown = [n for n in EXCLUSIONS if n not in NODE_CASES]
    assert not unknown, f"no such node test: {unknown}"
    foreign = [n for n in EXCLUSIONS if not operator_of(n)]
    assert not foreign, f"not a case of a supported operator: {foreign}"


def _run_case(name: str) -> None:
    case = NODE_CASES[name]
    rep = DlfusionBackend.prepare(case.model, "CPU")
    for inputs, outputs in case.data_sets:
        got = rep.run([_normalize_tensor(x) for x in inputs])
        Runner.assert_similar_outputs(
            [_normalize_tensor(y) for y in outputs], got, rtol=case.rtol, atol=case.atol
        )


@pytest.mark.parametrize("name", sorted(EXCLUSIONS))
def test_excluded_cases_fail_clearly(name):
    """An excluded case fails with the frontend's one-line error, for the
    reason the exclusion list gives."""
    _, fragment = EXCLUSIONS[name]
    with pytest.raises(DlfusionError) as info:
        _run_case(name)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message


# -- opsets 11 and 13 -------------------------------------------------------------------

SWEEP_OPSETS = (11, 13)


def _converted(name: str, opset: int) -> onnx.ModelProto | None:
    model = NODE_CASES[name].model
    version = next(i.version for i in model.opset_import if i.domain in ("", "ai.onnx"))
    if version <= opset:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return version_converter.convert_version(model, opset)
    except Exception:  # noqa: BLE001 - ONNX has no adapter for this op/version
        return None


SWEEP = {
    (name, opset): model
    for opset in SWEEP_OPSETS
    for name in PASSING_CASES
    if (model := _converted(name, opset)) is not None
}


@pytest.mark.parametrize("name,opset", sorted(SWEEP), ids=[f"{n}-opset{o}" for n, o in sorted(SWEEP)])
def test_older_opset_matches_onnxruntime(name, opset):
    ort = pytest.importorskip("onnxruntime")
    model = SWEEP[(name, opset)]
    inputs = [np.asarray(_normalize_tensor(x)) for x in NODE_CASES[name].data_sets[0][0]]
    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"onnxruntime cannot load the converted model: {exc}")
    expected = session.run(None, dict(zip(names, inputs)))
    got = DlfusionBackend.prepare(model).run(inputs)
    Runner.assert_similar_outputs(expected, got, rtol=1e-4, atol=1e-6)


# -- cases the node tests lack -----------------------------------------------------------

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=(), opset=onnx.defs.onnx_opset_version()):
    graph = helper.make_graph(nodes, "case", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _check_against_onnxruntime(model, feeds: dict[str, np.ndarray]):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    got = DlfusionBackend.prepare(model).run(feeds)
    Runner.assert_similar_outputs(expected, got, rtol=1e-4, atol=1e-5)


CONV_CASES = {
    # name: (x shape, w shape, attributes)
    "groups": ((1, 8, 9, 9), (12, 2, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    "depthwise": ((2, 6, 10, 10), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
    "depthwise_multiplier": ((1, 4, 8, 8), (8, 1, 3, 3), {"group": 4, "strides": [2, 2]}),
    "depthwise_strided_dilated": ((1, 3, 11, 11), (3, 1, 3, 3),
                                  {"group": 3, "strides": [2, 2], "dilations": [2, 2]}),
    "dilated": ((1, 3, 12, 12), (4, 3, 3, 3), {"dilations": [2, 3], "pads": [2, 3, 2, 3]}),
    "same_lower": ((1, 2, 7, 8), (3, 2, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    "same_upper": ((1, 2, 7, 8), (3, 2, 4, 4), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "valid": ((1, 2, 7, 8), (3, 2, 2, 3), {"auto_pad": "VALID", "strides": [2, 1]}),
    "pointwise_strided": ((1, 4, 7, 7), (5, 4, 1, 1), {"strides": [2, 2]}),
    "conv1d": ((2, 4, 15), (6, 2, 3), {"group": 2, "pads": [1, 2], "dilations": [2]}),
}


@pytest.mark.parametrize("opset", [11, onnx.defs.onnx_opset_version()])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_features(case, opset):
    x_shape, w_shape, attrs = CONV_CASES[case]
    w = RNG.standard_normal(w_shape).astype(np.float32)
    b = RNG.standard_normal(w_shape[0]).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    model = _model(
        [node], [_vi("x", x_shape)], [_vi("y", None)],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")], opset,
    )
    _check_against_onnxruntime(model, {"x": RNG.standard_normal(x_shape).astype(np.float32)})


POOL_CASES = {
    "maxpool1d_pads": ("MaxPool", (1, 3, 13), {"kernel_shape": [3], "pads": [1, 1], "strides": [2]}),
    "avgpool1d_ceil": ("AveragePool", (1, 3, 12),
                       {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}),
    "maxpool_dilated_ceil": ("MaxPool", (1, 2, 10, 10),
                             {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [2, 2],
                              "ceil_mode": 1}),
    "avgpool_include_pad_ceil": ("AveragePool", (1, 2, 9, 9),
                                 {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2],
                                  "count_include_pad": 1, "ceil_mode": 1}),
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pool_features(case):
    op, x_shape, attrs = POOL_CASES[case]
    model = _model([helper.make_node(op, ["x"], ["y"], **attrs)], [_vi("x", x_shape)],
                   [_vi("y", None)], opset=19)
    _check_against_onnxruntime(model, {"x": RNG.standard_normal(x_shape).astype(np.float32)})


GATHER_CASES = {
    "scalar": (0, np.array(2)),
    "progression": (1, np.array([0, 2, 4])),
    "reversed": (1, np.array([4, 3, 2, 1, 0])),
    "repeated_negative": (2, np.array([-1, -1, 0, 3])),
    "matrix": (1, np.array([[1, 0], [3, 3]])),
    "everything": (3, np.arange(6)),
}


@pytest.mark.parametrize("case", sorted(GATHER_CASES))
def test_gather_of_feature_map(case):
    axis, indices = GATHER_CASES[case]
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    init = onnx.numpy_helper.from_array(indices.astype(np.int64), "i")
    model = _model([node], [_vi("x", (3, 5, 4, 6))], [_vi("y", None)], [init])
    _check_against_onnxruntime(model, {"x": RNG.standard_normal((3, 5, 4, 6)).astype(np.float32)})


@pytest.mark.parametrize("opset", [11, 12])
def test_dropout_mask(opset):
    """The mask of an inference Dropout is all true (ONNX's reference
    implementation; onnxruntime agrees from opset 12, before that it returns
    all false)."""
    attrs = {"ratio": 0.3} if opset < 12 else {}
    node = helper.make_node("Dropout", ["x"], ["y", "mask"], **attrs)
    model = _model([node], [_vi("x", (2, 3))], [_vi("y", None), _vi("mask", None, TensorProto.BOOL)],
                   opset=opset)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    expected = onnx.reference.ReferenceEvaluator(model).run(None, {"x": x})
    Runner.assert_similar_outputs(expected, DlfusionBackend.prepare(model).run([x]), rtol=0, atol=0)
    if opset >= 12:
        _check_against_onnxruntime(model, {"x": x})


def _i64(*values):
    return np.array(values, dtype=np.int64)


def _f(*values):
    return np.array(values, dtype=np.float32)


# Operators whose ONNX form changed between opset 11 and today (attributes that
# became inputs, 2-D coercion, new attributes), each in its old form: opset ->
# (op, input shapes, constant inputs (None = absent), attributes, outputs).
OPSET_FORMS = {
    "split_attr": (11, "Split", [(2, 5, 3)], [], {"axis": 1, "split": [2, 3]}, 2),
    "split_equal": (11, "Split", [(2, 6, 3)], [], {"axis": 1}, 3),
    "squeeze_attr": (11, "Squeeze", [(1, 3, 1, 2)], [], {"axes": [0, -2]}, 1),
    "squeeze_all": (11, "Squeeze", [(1, 3, 1, 2)], [], {}, 1),
    "unsqueeze_attr": (11, "Unsqueeze", [(3, 2)], [], {"axes": [0, -1]}, 1),
    "reduce_mean_attr": (11, "ReduceMean", [(2, 3, 4)], [], {"axes": [1, -1], "keepdims": 0}, 1),
    "reduce_mean_all": (13, "ReduceMean", [(2, 3, 4)], [], {}, 1),
    "reduce_mean_noop": (18, "ReduceMean", [(2, 3, 4)], [], {"noop_with_empty_axes": 1}, 1),
    "clip_inputs": (11, "Clip", [(3, 4)], [_f(-0.5), _f(0.5)], {}, 1),
    "clip_max_only": (12, "Clip", [(3, 4)], [None, _f(0.25)], {}, 1),
    "pad_inputs": (11, "Pad", [(1, 2, 3, 3)], [_i64(0, 0, 1, 2, 0, 0, 2, 1), _f(1.5)], {}, 1),
    "pad_reflect": (11, "Pad", [(1, 2, 4, 4)], [_i64(0, 0, 1, 2, 0, 0, 2, 1)], {"mode": "reflect"}, 1),
    "pad_edge_crop": (13, "Pad", [(1, 2, 4, 4)], [_i64(0, 0, -1, 2, 0, 0, 2, -3)], {"mode": "edge"}, 1),
    "pad_axes": (18, "Pad", [(2, 3, 4)], [_i64(1, -1, 2, 0), _f(0.5), _i64(-1, 0)], {}, 1),
    "softmax_coerced": (11, "Softmax", [(2, 3, 4)], [], {"axis": 1}, 1),
    "softmax_default": (11, "Softmax", [(2, 3, 4)], [], {}, 1),
    "gemm_trans": (11, "Gemm", [(4, 3), (5, 4)], [_f(*range(5))], {"transA": 1, "transB": 1,
                                                                   "alpha": 0.5, "beta": 2.0}, 1),
    "reshape_zero": (11, "Reshape", [(2, 3, 4)], [_i64(0, -1, 2)], {}, 1),
    "slice_steps": (11, "Slice", [(5, 6)], [_i64(4, 1), _i64(-6, 100), _i64(0, 1), _i64(-2, 2)], {}, 1),
    "gather_axis": (11, "Gather", [(3, 4, 5)], [_i64(-1, 0)], {"axis": 2}, 1),
    "flatten_axis0": (11, "Flatten", [(2, 3, 4)], [], {"axis": 0}, 1),
    "concat_negative": (11, "Concat", [(2, 3), (2, 1)], [], {"axis": -1}, 1),
    "leaky_relu": (11, "LeakyRelu", [(3, 4)], [], {"alpha": 0.2}, 1),
    "hard_sigmoid": (11, "HardSigmoid", [(3, 4)], [], {"alpha": 0.3, "beta": 0.4}, 1),
    "hard_swish": (14, "HardSwish", [(3, 4)], [], {}, 1),
    "lrn": (11, "LRN", [(1, 6, 3, 3)], [], {"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 2.0}, 1),
    "batchnorm": (11, "BatchNormalization", [(2, 3, 4)],
                  [_f(1, 2, 3), _f(0.1, 0.2, 0.3), _f(0, 1, -1), _f(1, 0.5, 2)], {"epsilon": 1e-3}, 1),
    "global_avg_pool_1d": (11, "GlobalAveragePool", [(2, 3, 7)], [], {}, 1),
    "matmul_batched": (11, "MatMul", [(2, 1, 3, 4), (3, 4, 2)], [], {}, 1),
    "div_broadcast": (11, "Div", [(2, 3, 4), (3, 1)], [], {}, 1),
    "sub_scalar_constant": (11, "Sub", [(2, 3)], [_f(0.5).reshape(())], {}, 1),
    "transpose_perm": (11, "Transpose", [(2, 3, 4)], [], {"perm": [1, 2, 0]}, 1),
}


@pytest.mark.parametrize("case", sorted(OPSET_FORMS))
def test_opset_forms(case):
    opset, op, shapes, constants, attrs, n_out = OPSET_FORMS[case]
    inputs = [_vi(f"x{i}", s) for i, s in enumerate(shapes)]
    names = [f"x{i}" for i in range(len(shapes))]
    inits = []
    for i, c in enumerate(constants):
        if c is None:
            names.append("")
        else:
            names.append(f"c{i}")
            inits.append(onnx.numpy_helper.from_array(c, f"c{i}"))
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    model = _model([node], inputs, [_vi(o, None) for o in outs], inits, opset)
    feeds = {f"x{i}": RNG.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    _check_against_onnxruntime(model, feeds)


# -- the backend API ---------------------------------------------------------------------


def _reshape_model():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    return _model([node], [_vi("x", (2, 3, 4)), _vi("shape", (2,), TensorProto.INT64)], [_vi("y", None)])


def test_backend_api():
    assert DlfusionBackend.supports_device("CPU")
    assert not DlfusionBackend.supports_device("CUDA")
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    rep = DlfusionBackend.prepare(_reshape_model(), "CPU")
    # positional and by name; one program per value of the bound shape input
    (y,) = rep.run([x, np.array([4, 6])])
    assert y.shape == (4, 6) and np.array_equal(y.ravel(), x.ravel())
    out = rep.run({"x": x, "shape": np.array([-1, 2])})
    assert out[0].shape == (12, 2) and out["y"].shape == (12, 2)
    rep.run([x, np.array([4, 6])])
    assert len(rep._programs) == 2
    (y,) = DlfusionBackend.run_node(helper.make_node("Relu", ["a"], ["b"]), [x - 10])
    assert np.array_equal(y, np.maximum(x - 10, 0))


def test_backend_errors_are_one_line():
    rep = DlfusionBackend.prepare(_reshape_model())
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(DlfusionError, match="missing input"):
        rep.run([x])
    with pytest.raises(DlfusionError, match="3 inputs given, the model has 2"):
        rep.run([x, np.array([24]), x])
    with pytest.raises(DlfusionError, match=r"cannot reshape \[2, 3, 4\] to \[5, 5\]"):
        rep.run([x, np.array([5, 5])])
    with pytest.raises(DlfusionError, match="device 'CUDA' is not supported"):
        DlfusionBackend.prepare(_reshape_model(), "CUDA")


def test_float_input_bound_as_parameter():
    """A float32 input that only feeds a compile-time parameter is bound (here
    through a layer); one that is also data is rejected with a clear error."""
    nodes = [helper.make_node("Relu", ["lo"], ["lo2"]), helper.make_node("Clip", ["x", "lo2"], ["y"])]
    model = _model(nodes, [_vi("x", (2, 2)), _vi("lo", ())], [_vi("y", None)])
    x = np.array([[-1, 0.25], [0.75, 2]], np.float32)
    (y,) = DlfusionBackend.prepare(model).run([x, np.float32(0.5)])
    assert np.array_equal(y, np.maximum(x, 0.5))

    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
             helper.make_node("Clip", ["x", "m"], ["y"])]
    model = _model(nodes, [_vi("x", (2, 2))], [_vi("y", None)])
    with pytest.raises(DlfusionError, match="graph input 'x' is needed at compile time"):
        DlfusionBackend.prepare(model).run([x])


# -- the conformance table (docs/onnx-conformance.md) -------------------------------------


def conformance_table() -> str:
    """Run every supported operator's cases; a markdown table of the results."""
    import time

    rows = {op: [0, 0, 0, set()] for op in OPERATOR_TESTS}
    failed = []
    start = time.perf_counter()
    for name in SUPPORTED_CASES:
        row = rows[operator_of(name)]
        row[0] += 1
        if name in EXCLUSIONS:
            row[2] += 1
            row[3].add(EXCLUSIONS[name][0])
            continue
        try:
            _run_case(name)
            row[1] += 1
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    elapsed = time.perf_counter() - start

    def summary(reasons: set[str]) -> str:
        dtypes = sorted({r.split()[2].rstrip(":") for r in reasons
                         if r.startswith("data type ") and not r.startswith("data type:")})
        rest = sorted(r for r in reasons if r.startswith("data type:") or not r.startswith("data type "))
        parts = ([f"data type {', '.join(dtypes)}"] if dtypes else []) + rest
        return "; ".join(parts)

    lines = ["| operator | cases | passed | excluded | exclusion reasons |", "|---|---:|---:|---:|---|"]
    for op, (run, passed, excluded, reasons) in rows.items():
        lines.append(f"| {op} | {run} | {passed} | {excluded} | {summary(reasons)} |")
    total = [sum(r[i] for r in rows.values()) for i in range(3)]
    lines.append(f"| **total** | **{total[0]}** | **{total[1]}** | **{total[2]}** | |")
    lines.append("")
    lines.append(f"{len(failed)} failed; run in {elapsed:.1f} s")
    lines.extend(failed)
    return "\n".join(lines)


if __name__ == "__main__":
    print(conformance_table())
