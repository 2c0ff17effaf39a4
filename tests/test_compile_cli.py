"""dlfusion-compile: a model planned, lowered, checked against onnxruntime and
compared with the baseline in one command; its program (.s listing or .mlir)
runs back with dlfusion-run to the same latency; bad input is one line,
exit 1 and no output file.

Runs in this process on the small model of test_tune_cli (6 layers after
fold-batchnorm) on edge8, so every case takes well under a second.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import onnx
import pytest

from dlfusion.compile_cli import main as compile_main
from dlfusion.run import main as run_main
from dlfusion.targets import load_target
from dlfusion.tuning import characterize as chz

sys.path.insert(0, str(Path(__file__).parent))
from test_tune_cli import small_model  # noqa: E402

TARGET = "edge8"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("compile") / "small.onnx"
    onnx.save(small_model(), path)
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("char")
    return chz.load_or_characterize(load_target(TARGET), cache_dir=d, quick=True)[1]


def run(capsys, main, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def latency_of(run_output: str) -> float:
    return float(re.search(r"latency: ([0-9.]+) us", run_output).group(1))


def test_compile_listing_and_report(model, tmp_path, capsys):
    prog, report = tmp_path / "small.s", tmp_path / "report.json"
    code, out, err = run(capsys, compile_main, model, "--target", TARGET, "--strategy", "dp",
                         "-o", prog, "--report", report)
    assert code == 0, err
    doc = json.loads(report.read_text())
    assert doc["model"] == "small" and doc["strategy"] == "dp" and doc["layers"] == 6
    assert doc["speedup"] == pytest.approx(doc["baseline_us"] / doc["latency_us"])
    assert doc["verification"]["max_rel_error"] < 1e-4
    assert sum(len(k["layers"]) for k in doc["kernels"]) == doc["layers"]
    for k in doc["kernels"]:
        assert re.search(rf"^{k['name']}\s+.*\s{k['cores']}\s+{k['latency_us']:.1f}$", out, re.M)
    assert re.search(rf"^latency\s+{doc['latency_us']:.1f} us", out, re.M)
    assert re.search(rf"^baseline\s+{doc['baseline_us']:.1f} us", out, re.M)
    assert re.search(r"^speedup\s+[0-9.]+x$", out, re.M)
    assert "max relative error" in out and "wall time" in out
    code, ran, err = run(capsys, run_main, prog, "--timing-only")
    assert code == 0, err
    assert latency_of(ran) == pytest.approx(doc["latency_us"], abs=1e-3)  # printed with 3 decimals


def test_compile_mlir_with_weights_runs_numerically(model, tmp_path, capsys, table):
    prog = tmp_path / "small.mlir"
    code, out, err = run(capsys, compile_main, model, "--target", TARGET, "--strategy", "dlfusion",
                         "--table", table, "-o", prog, "--emit-weights", "--no-verify")
    assert code == 0, err
    assert "verification  skipped (--no-verify)" in out
    assert "accel.program" in prog.read_text()
    code, ran, err = run(capsys, run_main, prog)
    assert code == 0, err
    assert re.search(r"^c3: float32 1x8x6x6 ", ran, re.M)


def test_baseline_strategy_has_speedup_one(model, capsys):
    code, out, err = run(capsys, compile_main, model, "--target", TARGET, "--strategy", "baseline")
    assert code == 0, err
    assert re.search(r"^speedup\s+1\.00x$", out, re.M)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nosuchnet"], "dlfusion-compile: unknown model 'nosuchnet'; give a path to an .onnx file or one of "),
        (["missing.onnx"], "dlfusion-compile: model file 'missing.onnx' does not exist"),
        (["{model}", "--strategy", "greedy"], "dlfusion-compile: unknown strategy 'greedy'; choose one of "),
        (["{model}", "--target", "tpu9"], "dlfusion-compile: unknown target 'tpu9'"),
        (["{model}", "-o", "{dir}/program.txt"], "dlfusion-compile: cannot tell the format of "),
    ],
)
def test_bad_input_is_one_line_without_output(argv, message, model, tmp_path, capsys):
    argv = [a.format(model=model, dir=tmp_path) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "program.s")]
    code, stdout, err = run(capsys, compile_main, *argv, "--report", tmp_path / "report.json")
    assert code == 1 and stdout == ""
    assert err.startswith(message) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_wrong_numbers_fail_without_output(model, tmp_path, capsys, monkeypatch):
    import dlfusion.models

    real = dlfusion.models.verify

    def off(*args, **kw):
        check = real(*args, **kw)
        check.max_rel_error = 3e-3
        return check

    monkeypatch.setattr(dlfusion.models, "verify", off)
    code, stdout, err = run(capsys, compile_main, model, "--target", TARGET, "--strategy", "baseline",
                            "-o", tmp_path / "p.s", "--report", tmp_path / "r.json")
    assert code == 1 and stdout == ""
    assert err.startswith("dlfusion-compile: the compiled program's output 'c3' differs from onnxruntime's: "
                          "max relative error 3.00e-03 > 1e-04")
    assert list(tmp_path.iterdir()) == []
