"""`dlfusion-run` end to end, as a user runs it (subprocesses)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")

BIN = Path(sys.executable).parent


def tool(name: str) -> list[str]:
    exe = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if exe:
        return [exe]
    module = {"dlfusion-run": "dlfusion.run", "dlfusion-opt": "dlfusion.opt"}[name]
    return [sys.executable, "-m", module]


def run(*args, tool_name: str = "dlfusion-run", cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("DLFUSION_DEBUG", None)
    return subprocess.run(
        [*tool(tool_name), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def cnn_model() -> onnx.ModelProto:
    """conv -> batchnorm -> relu -> maxpool -> gemm, with two outputs."""
    inits = {
        "w": rand(4, 3, 3, 3, seed=2),
        "b": rand(4, seed=3),
        "s": rand(4, seed=4),
        "bb": rand(4, seed=5),
        "m": rand(4, seed=6),
        "v": np.abs(rand(4, seed=7)) + 0.5,
        "fc": rand(5, 64, seed=8),
        "fcb": rand(5, seed=9),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "s", "bb", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5]),
            helper.make_tensor_value_info("pool", TensorProto.FLOAT, [1, 4, 4, 4]),
        ],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


ONNX_TEXT = """
<
  ir_version: 8,
  opset_import: ["" : 17]
>
tiny (float[1,2,4,4] x) => (float[1,2,2,2] y) <float[2,2,1,1] w = {1.0, -2.0, 0.5, 3.0}>
{
  c = Conv (x, w)
  r = Relu (c)
  y = AveragePool <kernel_shape=[2,2], strides=[2,2]> (r)
}
"""

DYNAMIC_TEXT = """
<
  ir_version: 8,
  opset_import: ["" : 17]
>
dyn (float[N,3,4,4] x) => (float[N,3,4,4] y)
{
  y = Sigmoid (x)
}
"""


def reference(model: onnx.ModelProto, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in model.graph.output], sess.run(None, feeds)))


def assert_close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref)) + 1e-6


def assert_clean_failure(proc: subprocess.CompletedProcess, directory: Path, before: set[str], match: str):
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dlfusion-run: ")
    assert match in lines[0], lines[0]
    assert proc.stdout == ""
    # nothing written, not even a temporary file
    assert set(os.listdir(directory)) == before


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    onnx.save(cnn_model(), tmp_path / "cnn.onnx")
    (tmp_path / "tiny.onnxtxt").write_text(ONNX_TEXT)
    (tmp_path / "dyn.onnxtxt").write_text(DYNAMIC_TEXT)
    np.savez(tmp_path / "in.npz", x=rand(1, 3, 8, 8, seed=11))
    return tmp_path


# --------------------------------------------------------------------------
# happy paths
# --------------------------------------------------------------------------


def test_inputs_outputs_onnx(workdir: Path):
    out = workdir / "out.npz"
    proc = run(workdir / "cnn.onnx", "--inputs", workdir / "in.npz", "--outputs", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    feeds = {"x": np.load(workdir / "in.npz")["x"]}
    ref = reference(cnn_model(), feeds)
    with np.load(out) as data:
        assert data.files == ["logits", "pool"]
        for name in data.files:
            assert_close(data[name], ref[name])
        got = {k: data[k] for k in data.files}
    # summary: one line per output with name, dtype, shape, stats, checksum
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line, (name, arr) in zip(lines, got.items()):
        assert line.startswith(f"{name}: float32 {'x'.join(map(str, arr.shape))} ")
        assert f"min={float(arr.min()):.6g}" in line
        assert f"max={float(arr.max()):.6g}" in line
        assert "mean=" in line
        assert f"crc32={zlib.crc32(arr.tobytes()) & 0xFFFFFFFF:08x}" in line
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes


def test_onnx_text_input_directly(workdir: Path):
    out = workdir / "tiny_out.npz"
    proc = run(workdir / "tiny.onnxtxt", "--outputs", out, "--seed", 4)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("y: float32 1x2x2x2 ")
    model = onnx.parser.parse_model(ONNX_TEXT)
    x = np.random.default_rng(4).standard_normal((1, 2, 4, 4), dtype=np.float32)
    ref = reference(model, {"x": x})
    with np.load(out) as data:
        assert_close(data["y"], ref["y"])


def test_frontend_flag_for_unusual_extension(workdir: Path):
    path = workdir / "model.txt"
    path.write_text(ONNX_TEXT)
    proc = run(path, "-f", "onnxtxt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("y: float32 1x2x2x2 ")


def test_seed_changes_the_random_inputs(workdir: Path):
    a = run(workdir / "cnn.onnx", "--seed", 1)
    b = run(workdir / "cnn.onnx", "--seed", 1)
    c = run(workdir / "cnn.onnx", "--seed", 2)
    assert a.returncode == b.returncode == c.returncode == 0
    assert a.stdout == b.stdout
    assert a.stdout != c.stdout


def test_mlir_with_weights_matches_onnx(workdir: Path):
    mlir = workdir / "cnn.mlir"
    opt = run(workdir / "cnn.onnx", "--emit-weights", "-o", mlir, tool_name="dlfusion-opt")
    assert opt.returncode == 0, opt.stderr
    a = run(workdir / "cnn.onnx", "--inputs", workdir / "in.npz")
    b = run(mlir, "--inputs", workdir / "in.npz")
    assert a.returncode == b.returncode == 0, b.stderr
    assert a.stdout == b.stdout


def test_input_shape_fixes_dynamic_dims(workdir: Path):
    proc = run(workdir / "dyn.onnxtxt", "--input-shape", "x=2x3x4x4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("y: float32 2x3x4x4 ")


def test_summary_to_output_file(workdir: Path):
    summary = workdir / "summary.txt"
    proc = run(workdir / "tiny.onnxtxt", "-o", summary)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert summary.read_text().startswith("y: float32 1x2x2x2 ")


def _has_pass(name: str) -> bool:
    from dlfusion.passes import get_all_passes

    factory = get_all_passes().get(name)
    if factory is None:
        return False
    try:
        factory()
    except ImportError:
        return False
    return True


def test_pipeline_fold_batchnorm(workdir: Path):
    if not _has_pass("fold-batchnorm"):
        pytest.skip("the fold-batchnorm pass is not available yet")
    plain, folded = workdir / "plain.npz", workdir / "folded.npz"
    a = run(workdir / "cnn.onnx", "--inputs", workdir / "in.npz", "--outputs", plain)
    b = run(workdir / "cnn.onnx", "-p", "fold-batchnorm", "--inputs", workdir / "in.npz", "--outputs", folded)
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    with np.load(plain) as p, np.load(folded) as f:
        assert p.files == f.files
        for name in p.files:
            assert_close(f[name], p[name])


# --------------------------------------------------------------------------
# errors: exit 1, one line on stderr, no traceback, no output file
# --------------------------------------------------------------------------


def test_error_weights_elided(workdir: Path):
    mlir = workdir / "elided.mlir"
    opt = run(workdir / "cnn.onnx", "-o", mlir, tool_name="dlfusion-opt")
    assert opt.returncode == 0, opt.stderr
    before = set(os.listdir(workdir))
    proc = run(mlir, "--outputs", workdir / "out.npz")
    assert_clean_failure(
        proc,
        workdir,
        before,
        "was printed with weights elided; re-print it with `dlfusion-opt --emit-weights`",
    )
    assert "elided.mlir" in proc.stderr


def test_error_npz_missing_tensor(workdir: Path):
    np.savez(workdir / "wrong_name.npz", input=rand(1, 3, 8, 8))
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--inputs", workdir / "wrong_name.npz", "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, "missing input tensor 'x' (expected shape [1, 3, 8, 8]")
    assert "'input'" in proc.stderr  # what the archive has instead


def test_error_npz_misshaped_tensor(workdir: Path):
    np.savez(workdir / "wrong_shape.npz", x=rand(1, 3, 8, 9))
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--inputs", workdir / "wrong_shape.npz", "--outputs", workdir / "o.npz")
    assert_clean_failure(
        proc, workdir, before, "input tensor 'x' has shape [1, 3, 8, 9], expected [1, 3, 8, 8]"
    )


def test_error_npz_wrong_dtype(workdir: Path):
    np.savez(workdir / "f64.npz", x=np.zeros((1, 3, 8, 8)))
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--inputs", workdir / "f64.npz", "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, "'x' has dtype float64, expected float32")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"this is not a zip file", "not an .npz archive"),
        (b"PK\x03\x04" + b"\x00" * 40, "not an .npz archive"),
        (None, "a single .npy array"),
    ],
)
def test_error_unreadable_npz(workdir: Path, content, match):
    bad = workdir / "bad.npz"
    if content is None:
        with open(bad, "wb") as f:
            np.save(f, rand(1, 3, 8, 8))
    else:
        bad.write_bytes(content)
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--inputs", bad, "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, match)
    assert "bad.npz" in proc.stderr


def test_error_damaged_npz_member(workdir: Path):
    """A valid zip whose member is not an .npy array."""
    import zipfile

    bad = workdir / "damaged.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("x.npy", b"garbage")
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--inputs", bad, "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, "damaged .npz archive")


def test_error_missing_npz_file(workdir: Path):
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--inputs", workdir / "nope.npz", "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, "cannot open inputs")


def test_error_outputs_directory_missing(workdir: Path):
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--outputs", workdir / "no" / "such" / "o.npz")
    assert_clean_failure(proc, workdir, before, "cannot write outputs")


def test_error_unknown_pass(workdir: Path):
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "-p", "no-such-pass", "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, "no-such-pass")


def test_error_missing_model(workdir: Path):
    before = set(os.listdir(workdir))
    proc = run(workdir / "absent.onnx", "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, "absent.onnx")


def test_error_dynamic_dims_without_input_shape(workdir: Path):
    before = set(os.listdir(workdir))
    proc = run(workdir / "dyn.onnxtxt", "--outputs", workdir / "o.npz")
    assert_clean_failure(proc, workdir, before, "--input-shape x=")


def test_failed_run_keeps_an_existing_outputs_file(workdir: Path):
    out = workdir / "o.npz"
    out.write_bytes(b"previous")
    np.savez(workdir / "wrong_shape.npz", x=rand(1, 3, 8, 9))
    before = set(os.listdir(workdir))
    proc = run(workdir / "cnn.onnx", "--inputs", workdir / "wrong_shape.npz", "--outputs", out)
    assert_clean_failure(proc, workdir, before, "expected [1, 3, 8, 8]")
    assert out.read_bytes() == b"previous"


# --------------------------------------------------------------------------
# the npz helpers in-process
# --------------------------------------------------------------------------


def test_save_npz_is_atomic(tmp_path: Path, monkeypatch):
    from dlfusion import run as run_mod

    target = tmp_path / "out.npz"
    calls = []

    original = np.lib.format.write_array

    def failing_write_array(f, arr, allow_pickle=False):
        calls.append(1)
        if len(calls) == 2:  # the second array: the archive is half written
            raise RuntimeError("disk on fire")
        return original(f, arr, allow_pickle=allow_pickle)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(RuntimeError):
        run_mod.save_npz(str(target), {"a": np.zeros(3, np.float32), "b": np.ones(2, np.float32)})
    assert os.listdir(tmp_path) == []


def test_save_npz_any_names_round_trip(tmp_path: Path):
    from dlfusion.run import load_npz, save_npz

    arrays = {"file": np.arange(3, dtype=np.float32), "a/b:0": np.ones((2, 2), np.float32)}
    save_npz(str(tmp_path / "x.npz"), arrays)
    assert os.listdir(tmp_path) == ["x.npz"]
    back = load_npz(str(tmp_path / "x.npz"))
    assert list(back) == list(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
