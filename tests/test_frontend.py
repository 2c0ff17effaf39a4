"""The ONNX frontend on models written by another tool (PyTorch's exporters),
and its error behaviour on bad input, through `dlfusion-opt`.

The PyTorch fixtures are `tests/filecheck/frontend/torch_*.onnxtxt` (ONNX text
syntax, with lit RUN/CHECK lines as `#` comments on top) and, beside each,
`tests/fixtures/torch_*.npz` (its input and PyTorch's output, keyed by the
ONNX graph input/output names). They are written by
`tests/fixtures/make_torch_fixtures.py`, which needs torch; these tests do not.
"""

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

from dlfusion.context import make_context
from dlfusion.dialects import nn
from dlfusion.errors import DlfusionError
from dlfusion.frontend import import_model

TESTS = Path(__file__).resolve().parent
FRONTEND_DIR = TESTS / "filecheck" / "frontend"
NPZ_DIR = TESTS / "fixtures"
DLFUSION_OPT = Path(sys.executable).parent / "dlfusion-opt"

EXPECTED_FIXTURES = {
    "torch_conv_bn_relu",
    "torch_residual",
    "torch_inception",
    "torch_mobile",
    "torch_mobile_opset11",
    "torch_mobile_dynamo",
    "torch_dynamic_batch",
}
TORCH_FIXTURES = sorted(p.stem for p in FRONTEND_DIR.glob("torch_*.onnxtxt"))

# ONNX op type -> the nn op every such node must become (one to one)
ONE_TO_ONE = {
    "Conv": nn.Conv2DOp,
    "BatchNormalization": nn.BatchNormOp,
    "Pad": nn.PadOp,
    "Gemm": nn.GemmOp,
    "MaxPool": nn.MaxPoolOp,
    "AveragePool": nn.AvgPoolOp,
    "GlobalAveragePool": nn.GlobalAvgPoolOp,
    "ReduceMean": nn.ReduceMeanOp,
    "Relu": nn.ReluOp,
    "Clip": nn.ClipOp,
    "HardSwish": nn.HardSwishOp,
    "HardSigmoid": nn.HardSigmoidOp,
}


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got - ref))) / float(np.max(np.abs(ref)))


# ---------------------------------------------------------------------------
# the PyTorch fixtures
# ---------------------------------------------------------------------------


class TorchFixture:
    def __init__(self, name: str):
        self.name = name
        self.path = FRONTEND_DIR / f"{name}.onnxtxt"
        self.text = self.path.read_text()
        self.model = onnx.parser.parse_model(self.text)
        with np.load(NPZ_DIR / f"{name}.npz") as data:
            self.arrays = {k: data[k] for k in data.files}
        self.input_names = [i.name for i in self.model.graph.input
                            if i.name not in {t.name for t in self.model.graph.initializer}]
        self.output_names = [o.name for o in self.model.graph.output]
        self.inputs = {n: self.arrays[n] for n in self.input_names}
        self.expected = {n: self.arrays[n] for n in self.output_names}

    def dynamic_inputs(self) -> list[str]:
        return [
            i.name for i in self.model.graph.input
            if any(not d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)
        ]

    def import_(self, ctx=None):
        """(ctx, module), with the saved inputs' shapes for dynamic inputs."""
        ctx = ctx or make_context()
        shapes = {n: list(self.inputs[n].shape) for n in self.dynamic_inputs()}
        module = import_model(self.model, ctx, shapes, source=self.path.name)
        return ctx, module


@pytest.fixture(scope="module", params=TORCH_FIXTURES)
def fx(request) -> TorchFixture:
    return TorchFixture(request.param)


def test_fixture_set_is_complete():
    assert set(TORCH_FIXTURES) == EXPECTED_FIXTURES
    for name in TORCH_FIXTURES:
        assert (NPZ_DIR / f"{name}.npz").is_file(), name


def test_fixture_text_parses_with_lit_header(fx):
    """onnx.parser accepts `#` line comments: the RUN/CHECK header is part of
    the file it parses, and the model is valid."""
    header = [l for l in fx.text.splitlines() if l.startswith("#")]
    assert any(l.startswith("# RUN: dlfusion-opt %s") for l in header)
    assert any("CHECK" in l for l in header)
    onnx.checker.check_model(fx.model)
    assert fx.model.producer_name == "pytorch"
    # no blob is too large to read in a diff
    assert fx.path.stat().st_size < 64 * 1024


def test_fixture_matches_onnxruntime(fx):
    """The fixture itself: the text model run by onnxruntime gives PyTorch's
    output (so the text syntax kept every weight exactly enough)."""
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(fx.model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip(fx.output_names, sess.run(None, fx.inputs)))
    for name, ref in fx.expected.items():
        assert relative_error(got[name], ref) <= 1e-4, name


def test_import_verifies(fx):
    _, module = fx.import_()
    module.verify()
    # the integer shape arithmetic (Shape, Gather, Unsqueeze, Concat, Cast,
    # ConstantOfShape, ...) was evaluated at import: every value in the IR is a
    # float32 tensor (a feature map or a weight)
    for op in module.walk():
        assert op.name.startswith(("nn.", "func.", "builtin.")), op.name
        for r in op.results:
            assert str(r.type.get_element_type()) == "f32", f"{op.name}: {r.type}"


def test_import_keeps_the_layers(fx):
    """No folding at import: one nn op per Conv, BatchNormalization, Pad, ...
    (BatchNorm folding is the fold-batchnorm pass's decision)."""
    _, module = fx.import_()
    ops = list(module.walk())
    for op_type, cls in ONE_TO_ONE.items():
        n_onnx = sum(1 for n in fx.model.graph.node if n.op_type == op_type)
        n_nn = sum(1 for op in ops if type(op) is cls)
        assert n_nn == n_onnx, f"{op_type}: {n_onnx} ONNX nodes, {n_nn} {cls.name}"


def test_import_names_values_after_onnx_tensors(fx):
    _, module = fx.import_()
    main = next(op for op in module.walk() if op.name == "func.func")
    assert [a.name_hint for a in main.body.block.args] == fx.input_names
    for op in main.body.block.ops:
        for r in op.results:
            assert r.name_hint, f"{op.name} result has no name"
    weights = {op.result.name_hint for op in module.walk() if isinstance(op, nn.WeightOp)}
    initializers = {t.name for t in fx.model.graph.initializer}
    # initializer names ("conv1.weight") are kept as they are
    assert weights & initializers


def test_import_dynamic_batch_uses_input_shape():
    fx = TorchFixture("torch_dynamic_batch")
    assert fx.dynamic_inputs() == ["input"]
    with pytest.raises(DlfusionError, match=r"dynamic dimension 'batch'.*--input-shape input="):
        import_model(fx.model, make_context(), source=fx.path.name)
    for batch in (1, 3):
        module = import_model(fx.model, make_context(), {"input": [batch, 3, 8, 8]})
        main = next(op for op in module.walk() if op.name == "func.func")
        assert nn.shape_of(main.body.block.args[0]) == (batch, 3, 8, 8)
        (out_type,) = main.function_type.outputs.data
        assert tuple(out_type.get_shape()) == (batch, 4)


def test_interpreter_matches_pytorch_and_onnxruntime(fx):
    interpreter = pytest.importorskip("dlfusion.interpreter")
    if not hasattr(interpreter, "run_module"):
        pytest.skip("dlfusion.interpreter.run_module is not there yet")
    ort = pytest.importorskip("onnxruntime")
    ctx, module = fx.import_()
    got = interpreter.run_module(module, ctx, fx.inputs)
    assert set(got) == set(fx.output_names)
    sess = ort.InferenceSession(fx.model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = dict(zip(fx.output_names, sess.run(None, fx.inputs)))
    for name in fx.output_names:
        assert got[name].shape == fx.expected[name].shape, name
        assert relative_error(got[name], fx.expected[name]) <= 1e-4, f"{name} vs PyTorch"
        assert relative_error(got[name], reference[name]) <= 1e-4, f"{name} vs onnxruntime"


def test_printed_ir_round_trips(fx):
    """Printed with its weights, parsed back into a fresh context, the module
    computes the same numbers (names with '.' and '/' survive as SSA names and
    resource keys)."""
    ir_io = pytest.importorskip("dlfusion.ir_io")
    interpreter = pytest.importorskip("dlfusion.interpreter")
    ctx, module = fx.import_()
    text = ir_io.print_module(module, ctx, emit_weights=True)
    ctx2 = make_context()
    parsed = ir_io.parse_module(text, ctx2, name=fx.name)
    assert ir_io.print_module(parsed, ctx2) == ir_io.print_module(module, ctx)
    got = interpreter.run_module(parsed, ctx2, fx.inputs)
    for name in fx.output_names:
        assert relative_error(got[name], fx.expected[name]) <= 1e-4, name


# ---------------------------------------------------------------------------
# bad input through the command line
# ---------------------------------------------------------------------------


def zoo_like_model(
    act: str = "Relu",
    opset: int = 17,
    elem_type: int = TensorProto.FLOAT,
    dims=(1, 3, 8, 8),
    domain: str = "",
) -> onnx.ModelProto:
    """A small classifier as the zoo builds them: conv -> act -> pool -> fc."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv1.weight"),
        numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(act, ["conv1"], ["act1"], name="act1", domain=domain),
        helper.make_node("GlobalAveragePool", ["act1"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", elem_type, list(dims))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [dims[0], 10])],
        inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def nms_model() -> onnx.ModelProto:
    """A detection head: NonMaxSuppression on two feature maps."""
    nodes = [
        helper.make_node("Relu", ["scores_in"], ["scores"], name="scores"),
        helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["selected"], name="nms"),
    ]
    graph = helper.make_graph(
        nodes,
        "detect",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 6, 4]),
            helper.make_tensor_value_info("scores_in", TensorProto.FLOAT, [1, 1, 6]),
        ],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [6, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def write_model(model: onnx.ModelProto):
    return lambda path: path.write_bytes(model.SerializeToString())


def write_truncated(path: Path) -> None:
    data = zoo_like_model().SerializeToString()
    path.write_bytes(data[: len(data) // 2])


SYNTAX_ERROR_TEXT = """<ir_version: 8, opset_import: ["" : 17]>
broken (float[1,3,8,8] input) => (float[1,3,8,8] output) {
  output = Relu (input
}
"""

# id -> (file name, writer, extra args, substrings the one-line error must contain)
BAD_INPUTS = {
    "truncated-onnx": ("model.onnx", write_truncated, [],
                       ["model.onnx", "not a valid ONNX file"]),
    "png-named-onnx": ("picture.onnx",
                       lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
                       [], ["picture.onnx", "not a valid ONNX"]),
    "random-bytes-onnx": ("noise.onnx",
                          lambda p: p.write_bytes(np.random.default_rng(2).bytes(300)),
                          [], ["noise.onnx", "not a valid ONNX"]),
    "empty-onnx": ("empty.onnx", lambda p: p.write_bytes(b""), [],
                   ["empty.onnx", "not a valid ONNX"]),
    "unsupported-gelu": ("gelu.onnx", write_model(zoo_like_model("Gelu", opset=20)), [],
                         ["unsupported operator Gelu", "node 'act1'", "supported operators:",
                          "Conv", "Relu", "BatchNormalization"]),
    "unsupported-nms": ("nms.onnx", write_model(nms_model()), [],
                        ["unsupported operator NonMaxSuppression", "node 'nms'", "supported operators:"]),
    "unsupported-custom-domain": ("custom.onnx",
                                  write_model(zoo_like_model("Foo", domain="com.example")), [],
                                  ["Foo", "com.example", "node 'act1'", "supported operators:"]),
    "dynamic-dim-without-input-shape": ("dyn.onnx", write_model(zoo_like_model(dims=("N", 3, 8, 8))), [],
                                        ["graph input 'input'", "'N'", "--input-shape input=1x3x8x8"]),
    "unknown-dim-without-input-shape": ("dyn.onnx", write_model(zoo_like_model(dims=(None, 3, 8, 8))), [],
                                        ["graph input 'input'", "axis 0", "--input-shape input="]),
    "input-shape-names-no-input": ("model.onnx", write_model(zoo_like_model()),
                                   ["--input-shape", "data=1x3x8x8"],
                                   ["--input-shape", "data", "not a graph input", "graph inputs are input"]),
    "input-shape-names-no-input-dynamic": ("dyn.onnx", write_model(zoo_like_model(dims=("N", 3, 8, 8))),
                                           ["--input-shape", "input=2x3x8x8", "--input-shape", "x=1x3"],
                                           ["--input-shape names x", "not a graph input"]),
    "input-shape-wrong-rank": ("dyn.onnx", write_model(zoo_like_model(dims=("N", 3, 8, 8))),
                               ["--input-shape", "input=1x3x8"], ["input", "rank 3", "rank 4"]),
    "input-shape-malformed": ("dyn.onnx", write_model(zoo_like_model(dims=("N", 3, 8, 8))),
                              ["--input-shape", "input=1xthreex8x8"],
                              ["bad --input-shape 'input=1xthreex8x8'", "NAME=DxDx"]),
    "opset-below-11": ("old.onnx", write_model(zoo_like_model(opset=9)), [],
                       ["opset 9 is not supported", "11", "version_converter"]),
    "opset-10": ("old.onnx", write_model(zoo_like_model(opset=10)), [],
                 ["opset 10 is not supported"]),
    "opset-from-the-future": ("new.onnx", write_model(zoo_like_model(opset=99)), [],
                              ["opset 99 is not supported"]),
    "float16-input": ("half.onnx", write_model(zoo_like_model(elem_type=TensorProto.FLOAT16)), [],
                      ["graph input 'input'", "FLOAT16", "float32"]),
    "uint8-input": ("image.onnx", write_model(zoo_like_model(elem_type=TensorProto.UINT8)), [],
                    ["graph input 'input'", "UINT8", "float32"]),
    "text-syntax-error": ("broken.onnxtxt", lambda p: p.write_text(SYNTAX_ERROR_TEXT), [],
                          ["broken.onnxtxt", "syntax error"]),
    "text-truncated": ("cut.onnxtxt",
                       lambda p: p.write_text(onnx.printer.to_text(zoo_like_model())[:300]), [],
                       ["cut.onnxtxt", "syntax error"]),
    "text-not-utf8": ("latin1.onnxtxt", lambda p: p.write_bytes(b"\xff\xfe<ir_version: 8>"), [],
                      ["latin1.onnxtxt", "UTF-8"]),
}


def run_opt(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DLFUSION_DEBUG"}
    return subprocess.run(
        [str(DLFUSION_OPT), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, expected: list[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("dlfusion-opt: "), line
    assert "internal error" not in line, line
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert proc.stdout == ""
    return line


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_error(case, tmp_path):
    """Exit code 1, one line on stderr (what, where, what to do), no
    traceback, nothing on stdout, and `-o out.mlir` leaves no file behind
    (neither out.mlir nor a temporary one)."""
    filename, write, args, expected = BAD_INPUTS[case]
    write(tmp_path / filename)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_one_line_error(run_opt([filename, *args, "-o", "out.mlir"], tmp_path), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("case", ["truncated-onnx", "unsupported-gelu", "text-syntax-error"])
def test_bad_input_to_stdout_is_one_line_error(case, tmp_path):
    filename, write, args, expected = BAD_INPUTS[case]
    write(tmp_path / filename)
    assert_one_line_error(run_opt([filename, *args], tmp_path), expected)


def test_bad_input_keeps_existing_output_file(tmp_path):
    write_truncated(tmp_path / "model.onnx")
    (tmp_path / "out.mlir").write_text("previous result\n")
    assert_one_line_error(run_opt(["model.onnx", "-o", "out.mlir"], tmp_path), ["not a valid ONNX"])
    assert (tmp_path / "out.mlir").read_text() == "previous result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "out.mlir"]


def test_missing_file_is_one_line_error(tmp_path):
    proc = run_opt(["nowhere.onnx", "-o", "out.mlir"], tmp_path)
    assert_one_line_error(proc, ["nowhere.onnx"])
    assert list(tmp_path.iterdir()) == []


def test_good_inputs_write_the_output(tmp_path):
    """The control: the same models without the defect import fine."""
    (tmp_path / "model.onnx").write_bytes(zoo_like_model().SerializeToString())
    (tmp_path / "dyn.onnx").write_bytes(zoo_like_model(dims=("N", 3, 8, 8)).SerializeToString())
    proc = run_opt(["model.onnx", "-o", "out.mlir"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nn.conv2d" in (tmp_path / "out.mlir").read_text()
    proc = run_opt(["dyn.onnx", "--input-shape", "input=2x3x8x8"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "func.func @main(%input: tensor<2x3x8x8xf32>) -> tensor<2x10xf32>" in proc.stdout


def test_torch_fixture_through_the_cli(tmp_path):
    path = FRONTEND_DIR / "torch_dynamic_batch.onnxtxt"
    proc = run_opt([str(path), "--input-shape", "input=2x3x8x8", "-o", str(tmp_path / "out.mlir")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "tensor<2x6xf32>" in (tmp_path / "out.mlir").read_text()


# Defects found in the frontend and fixed; each test pins the fix.


def test_text_syntax_error_is_readable(tmp_path):
    (tmp_path / "broken.onnxtxt").write_text(SYNTAX_ERROR_TEXT)
    line = assert_one_line_error(run_opt(["broken.onnxtxt"], tmp_path), ["broken.onnxtxt"])
    assert "b'" not in line and "\\n" not in line, line
    assert re.search(r"\b4\b", line), f"no line number in {line!r}"


def test_contradicting_input_shape_shows_symbolic_dims(tmp_path):
    (tmp_path / "dyn.onnx").write_bytes(zoo_like_model(dims=("N", 3, 8, 8)).SerializeToString())
    line = assert_one_line_error(
        run_opt(["dyn.onnx", "--input-shape", "input=1x3x16x16"], tmp_path), ["contradicts"]
    )
    assert "[0," not in line, line


def test_external_data_is_found_beside_the_model(tmp_path):
    (tmp_path / "models").mkdir()
    onnx.save(zoo_like_model(), tmp_path / "models" / "model.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.data", size_threshold=0)
    proc = run_opt(["models/model.onnx"], tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_shapeless_input_is_fixed_by_input_shape(tmp_path):
    model = zoo_like_model()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    proc = run_opt(["model.onnx", "--input-shape", "input=1x3x8x8"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = assert_one_line_error(run_opt(["model.onnx"], tmp_path), ["'input'", "no shape", "--input-shape"])
    assert "Field 'shape'" not in line
