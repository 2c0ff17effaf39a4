"""dlfusion-opt as a user runs it: bad input gives exit code 1, one line on
stderr, no traceback, and no output file; the standard xDSL driver options
work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
OPT = str(BIN / "dlfusion-opt")

VALID = """\
func.func @main(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %r = nn.reshape %x : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %y = nn.relu %r : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  func.return %y : tensor<1x2x4x4xf32>
}
"""

MALFORMED = """\
func.func @main(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %y = nn.relu %x : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  func.return %y tensor<1x2x4x4xf32>
}
"""

INVALID = """\
func.func @main(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %y = nn.relu %x : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x5xf32>
  func.return %x : tensor<1x2x4x4xf32>
}
"""

# batch norm parameters whose blobs were elided when the IR was printed
ELIDED = """\
func.func @main(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %w = nn.weight dense_resource<w> : tensor<2x2x1x1xf32>
  %c = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<2x2x1x1xf32>) -> tensor<1x2x4x4xf32>
  %p = nn.weight dense_resource<p> : tensor<2xf32>
  %y = nn.batch_norm %c, %p, %p, %p, %p {epsilon = 1.0e-05 : f32} : (tensor<1x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  func.return %y : tensor<1x2x4x4xf32>
}
"""


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DLFUSION_DEBUG"}
    return subprocess.run(
        [OPT, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, text in [
        ("valid", VALID),
        ("malformed", MALFORMED),
        ("invalid", INVALID),
        ("elided", ELIDED),
    ]:
        path = tmp_path / f"{name}.mlir"
        path.write_text(text)
        out[name] = path
    return out


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("dlfusion-opt: "), line
    for needle in needles:
        assert needle in line, line
    return line


# name -> (input file, extra args, what the error line must mention)
ERRORS = {
    "unknown-pass": ("valid", ["-p", "no-such-pass"], ["no-such-pass", "--help"]),
    "unknown-pass-in-pipeline": (
        "valid",
        ["-p", "nn-canonicalize,fold-batchnrom"],
        ["fold-batchnrom"],
    ),
    "bad-option-syntax": ("valid", ["-p", "nn-canonicalize{"], ["pass pipeline"]),
    "unknown-option": ("valid", ["-p", "fold-batchnorm{foo=1}"], ["foo"]),
    "bad-option-value": (
        "valid",
        ["-p", "nn-canonicalize{fold-constants=maybe}"],
        ["maybe", "bool"],
    ),
    "malformed-mlir": ("malformed", [], ["malformed.mlir:3:"]),
    "invalid-ir": ("invalid", [], ["differs from input type"]),
    "elided-weights": ("elided", ["-p", "fold-batchnorm"], ["fold-batchnorm", "--emit-weights"]),
    "missing-file": ("nonexistent", [], ["nonexistent.mlir"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_error_is_one_line_and_writes_nothing(case, files, tmp_path):
    name, extra, needles = ERRORS[case]
    src = files.get(name, tmp_path / f"{name}.mlir")
    out = tmp_path / "out.mlir"
    before = set(tmp_path.iterdir())
    proc = run(str(src), *extra, "-o", str(out))
    assert_one_line_error(proc, *needles)
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before  # no temporary file left behind
    assert proc.stdout == ""


def test_malformed_mlir_points_at_file_line_col(files):
    line = assert_one_line_error(run(str(files["malformed"])))
    assert line.startswith(f"dlfusion-opt: {files['malformed']}:3:"), line
    assert ": error: " in line


def test_output_file_is_written_on_success(files, tmp_path):
    out = tmp_path / "out.mlir"
    proc = run(str(files["valid"]), "-p", "nn-canonicalize", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    text = out.read_text()
    assert "nn.relu %x" in text and "nn.reshape" not in text


def test_failed_run_keeps_an_existing_output_file(files, tmp_path):
    out = tmp_path / "out.mlir"
    out.write_text("previous contents\n")
    proc = run(str(files["malformed"]), "-o", str(out))
    assert proc.returncode == 1
    assert out.read_text() == "previous contents\n"


def test_print_between_passes(files):
    proc = run(str(files["valid"]), "-p", "nn-canonicalize,fold-batchnorm", "--print-between-passes")
    assert proc.returncode == 0, proc.stderr
    assert "IR after nn-canonicalize:" in proc.stdout
    # the IR printed between the passes is already canonicalized
    between = proc.stdout.split("IR after nn-canonicalize:")[1]
    assert "nn.relu %x" in between and "nn.reshape" not in between


def test_time_passes(files):
    proc = run(str(files["valid"]), "-p", "nn-canonicalize,fold-batchnorm", "--time-passes")
    assert proc.returncode == 0, proc.stderr
    assert "Pass nn-canonicalize took" in proc.stdout
    assert "Pass fold-batchnorm took" in proc.stdout


def test_split_input_file(tmp_path):
    src = tmp_path / "two.mlir"
    src.write_text(VALID + "\n// -----\n\n" + VALID.replace("@main", "@second"))
    proc = run(str(src), "--split-input-file", "-p", "nn-canonicalize")
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("// -----\n")
    assert "@main" in first and "@second" not in first
    assert "@second" in second and "nn.reshape" not in second


def test_split_input_file_with_verify_diagnostics(tmp_path):
    src = tmp_path / "two.mlir"
    src.write_text(INVALID + "\n// -----\n\n" + VALID)
    proc = run(str(src), "--split-input-file", "--verify-diagnostics")
    assert proc.returncode == 0, proc.stderr
    assert "result type tensor<1x2x4x5xf32> differs from input type" in proc.stdout
    assert "func.func @main" in proc.stdout.split("// -----\n")[1]


def test_passes_are_listed_in_help():
    proc = run("--help")
    assert proc.returncode == 0
    # argparse wraps the pass list at hyphens and spaces: undo the wrapping
    text = re.sub(r"\n\s+", "", proc.stdout)
    for name in ("fold-batchnorm", "nn-canonicalize", "annotate-layers"):
        assert name in text, name
