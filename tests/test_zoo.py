"""Tests of the model zoo (dlfusion.zoo) and its CLI (dlfusion-zoo)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlfusion import zoo
from dlfusion.zoo import cli

ort = pytest.importorskip("onnxruntime")

EXPECTED_NAMES = [
    "alexnet", "vgg16", "vgg19",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "googlenet", "inception_v3", "mobilenet_v1", "mobilenet_v2",
    "squeezenet1_0", "densenet121",
]

MAC_TOLERANCE = 0.03

# value names become IR (xDSL SSA) names: identifier characters only, and no
# trailing "_<digits>" (xDSL strips such a suffix from name hints)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMERIC_SUFFIX = re.compile(r"_\d+$")


def _input_shape(name: str, batch: int = 1) -> tuple[int, ...]:
    return (batch, *zoo.INPUT_SHAPES[name])


@pytest.fixture(scope="module", params=EXPECTED_NAMES)
def built(request):
    """(name, model, serialized bytes), built once per model for the module.

    pytest groups the tests by this parameter, so only one (possibly 550 MB,
    for VGG) model is alive at a time.
    """
    name = request.param
    model = zoo.build(name, seed=0)
    return name, model, model.SerializeToString()


def test_registry_names():
    assert list(zoo.MODELS) == EXPECTED_NAMES
    assert set(zoo.PUBLISHED_MACS) == set(EXPECTED_NAMES)
    assert set(zoo.PUBLISHED_PARAMS) == set(EXPECTED_NAMES)
    assert set(zoo.INPUT_SHAPES) == set(EXPECTED_NAMES)


def test_checker_and_interface(built):
    name, model, data = built
    onnx.checker.check_model(data, full_check=True)
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    graph = model.graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["output"]
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert tuple(dims) == _input_shape(name)
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 1000]
    for init in graph.initializer:
        assert init.data_type == TensorProto.FLOAT
        # weights are stored as raw bytes (numpy_helper.from_array), not as lists
        assert not init.float_data
        assert len(init.raw_data) == 4 * int(np.prod(init.dims, dtype=np.int64))


def test_clip_bounds_are_scalars():
    """ReLU6 = Clip(x, min, max) with 0-d min/max, as the ONNX spec requires."""
    model = zoo.build("mobilenet_v2")
    inits = {i.name: i for i in model.graph.initializer}
    clips = [n for n in model.graph.node if n.op_type == "Clip"]
    assert len(clips) == 35
    for node in clips:
        lo, hi = (numpy_helper.to_array(inits[n]) for n in node.input[1:3])
        assert lo.shape == () and hi.shape == ()
        assert (float(lo), float(hi)) == (0.0, 6.0)


def test_readable_unique_names(built):
    _, model, _ = built
    nodes = model.graph.node
    node_names = [n.name for n in nodes]
    assert all(node_names) and len(set(node_names)) == len(node_names)
    values = [o for n in nodes for o in n.output] + [i.name for i in model.graph.initializer]
    assert len(set(values)) == len(values)
    bad = [v for v in values if not _IDENT.fullmatch(v) or _NUMERIC_SUFFIX.search(v)]
    assert not bad, bad[:10]


def test_macs_match_published(built):
    name, model, _ = built
    macs = zoo.count_macs(model)
    published = zoo.PUBLISHED_MACS[name]
    assert abs(macs - published) <= MAC_TOLERANCE * published, (name, macs, published)
    # the weight-less skeleton gives the same figures
    skeleton = zoo.build(name, materialize=False)
    assert zoo.count_macs(skeleton) == macs
    assert zoo.count_params(skeleton) == zoo.count_params(model)


def test_params_match_published(built):
    name, model, _ = built
    assert zoo.count_params(model) == zoo.PUBLISHED_PARAMS[name]


def test_onnxruntime_output(built):
    name, _, data = built
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1234).standard_normal(_input_shape(name)).astype(np.float32)
    (y,) = sess.run(["output"], {"input": x})
    assert y.shape == (1, 1000)
    assert y.dtype == np.float32
    assert np.isfinite(y).all()
    peak = float(np.abs(y).max())
    assert 1e-3 < peak < 1e6, peak
    assert float(y.std()) > 1e-4  # not a constant output


def test_deterministic(built):
    name, _, data = built
    assert zoo.build(name, seed=0).SerializeToString() == data


# ----------------------------------------------------------------------
# API details
# ----------------------------------------------------------------------
def test_seed_changes_weights_only():
    a, b = zoo.build("resnet18", seed=0), zoo.build("resnet18", seed=1)
    assert a.SerializeToString() != b.SerializeToString()
    assert [n.SerializeToString() for n in a.graph.node] == [
        n.SerializeToString() for n in b.graph.node
    ]
    wa = numpy_helper.to_array(a.graph.initializer[0])
    wb = numpy_helper.to_array(b.graph.initializer[0])
    assert wa.shape == wb.shape and not np.array_equal(wa, wb)


def test_batch():
    model = zoo.build("mobilenet_v2", batch=3)
    onnx.checker.check_model(model, full_check=True)
    assert zoo.count_macs(model) == 3 * zoo.count_macs(zoo.build("mobilenet_v2"))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    (y,) = sess.run(None, {"input": x})
    assert y.shape == (3, 1000) and np.isfinite(y).all()


def test_build_rejects_bad_arguments():
    with pytest.raises(KeyError, match="resnet18"):
        zoo.build("resnet9")
    with pytest.raises(ValueError):
        zoo.build("resnet18", batch=0)


def test_count_macs_convention():
    """Exact MACs of a hand-made graph with grouped conv, Gemm and MatMul."""
    def w(name, *shape):
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [
        # grouped conv: N=2, Cin=8, Cout=16, groups=4, 3x3, 10x10 -> 8x8
        helper.make_node("Conv", ["x", "cw"], ["c"], group=4, kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),  # (2, 256)
        # Gemm with transB: (2, 256) x (256, 10)
        helper.make_node("Gemm", ["f", "gw", "gb"], ["g"], transB=1),
        # Gemm with transA: (256, 2)^T x (256, 5) -> M=2, K=256, N=5
        helper.make_node("Transpose", ["f"], ["ft"], perm=[1, 0]),
        helper.make_node("Gemm", ["ft", "gw2"], ["g2"], transA=1),
        # batched MatMul (3, 4, 5) x (5, 6) -> (3, 4, 6)
        helper.make_node("MatMul", ["m", "mw"], ["mm"]),
    ]
    graph = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 10, 10]),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, [3, 4, 5])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("g", "g2", "mm")],
        initializer=[w("cw", 16, 2, 3, 3), w("gw", 10, 256), w("gb", 10), w("gw2", 256, 5),
                     w("mw", 5, 6)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    conv = 2 * 16 * 8 * 8 * (8 // 4) * 3 * 3
    gemm = 2 * 10 * 256
    gemm2 = 2 * 5 * 256
    matmul = 3 * 4 * 6 * 5
    assert zoo.count_macs(model) == conv + gemm + gemm2 + matmul
    # 16*2*3*3 + 10*256 + 10 + 256*5 + 5*6
    assert zoo.count_params(model) == 288 + 2560 + 10 + 1280 + 30


def test_count_macs_needs_static_shapes():
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], "t",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match="static"):
        zoo.count_macs(model)


# ----------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------
def test_cli_unknown_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "x.onnx"
    assert cli.main(["resnet9", "-o", str(out)]) == 1
    assert cli.main(["resnet9"]) == 1  # default output name
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 2  # one line per invocation
    for line in lines:
        assert "resnet9" in line
        assert all(n in line for n in EXPECTED_NAMES)
    assert list(tmp_path.iterdir()) == []


def test_cli_unknown_name_subprocess(tmp_path):
    """Real exit code, no traceback, no file, when run as a program."""
    root = Path(zoo.__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "dlfusion.zoo", "nosuchnet", "-o", "nosuchnet.onnx"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and "nosuchnet" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_model(tmp_path, capsys):
    out = tmp_path / "sq.onnx"
    assert cli.main(["squeezenet1_0", "-o", str(out), "--seed", "3", "--batch", "2"]) == 0
    assert "sq.onnx" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert model.SerializeToString() == zoo.build("squeezenet1_0", seed=3, batch=2).SerializeToString()
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [2, 1000]
    assert [p.name for p in tmp_path.iterdir()] == ["sq.onnx"]


def test_cli_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["mobilenet_v1"]) == 0
    onnx.load(str(tmp_path / "mobilenet_v1.onnx"))


def test_cli_list(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED_NAMES:
        assert re.search(rf"^{name}\s", out, re.M), name
    assert "25,557,032" in out  # resnet50 parameters
