"""dlfusion-tune and the measurement layer under it: the table and its
figures (speedup, gap, configurations, simulations), the files it writes
(JSON, Markdown and PNG agree; plans re-apply with dlfusion-opt), the
tuning-record cache (a second run simulates nothing; a corrupted cache is
reported and rebuilt), parallel measurement (same numbers), the measurer's
persistent pool and executor plug-in, and bad input (one line, exit 1,
nothing written).

A small ONNX model (conv-bn-relu-conv-relu-maxpool-conv, 6 layers after
fold-batchnorm) on the edge8 target keeps every search fast; the heuristic
reads a quick characterization table made once per module.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dlfusion.opt import main as opt_main
from dlfusion.targets import load_target
from dlfusion.tuning import characterize as chz
from dlfusion.tuning.measure import Measurer
from dlfusion.tuning.tune_cli import main as tune_main

sys.path.insert(0, str(Path(__file__).parent))
from test_search import G  # noqa: E402

ALL = "baseline,cores-only,fusion-only,dlfusion,dp,exhaustive"
TARGET = "edge8"


def small_model() -> onnx.ModelProto:
    """conv - batchnorm - relu - conv - relu - maxpool - 1x1 conv."""
    g = G(shape=(1, 8, 12, 12))
    x = g.conv("x", 16, name="c1")
    c = 16
    scale, bias, mean = (numpy_helper.from_array(a.astype(np.float32), f"bn.{n}") for n, a in
                         (("s", g.rng.uniform(0.5, 1.5, c)), ("b", g.rng.uniform(-0.1, 0.1, c)),
                          ("m", g.rng.uniform(-0.1, 0.1, c))))
    var = numpy_helper.from_array(g.rng.uniform(0.5, 1.5, c).astype(np.float32), "bn.v")
    g.inits += [scale, bias, mean, var]
    g.nodes.append(onnx.helper.make_node("BatchNormalization", [x, "bn.s", "bn.b", "bn.m", "bn.v"], ["bn"]))
    g.channels["bn"] = c
    x = g.relu("bn", "r1")
    x = g.relu(g.conv(x, 16, name="c2"), "r2")
    x = g.op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    return g.model(g.conv(x, 8, k=1, name="c3"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    model = d / "small.onnx"
    onnx.save(small_model(), model)
    _, table, _ = chz.load_or_characterize(load_target(TARGET), cache_dir=d / "char", quick=True)
    return d, model, table


def tune(capsys, *argv):
    """Run dlfusion-tune in this process: (exit code, stdout, stderr)."""
    code = tune_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def common(work, out: Path, *extra):
    _, model, table = work
    return [model, "--target", TARGET, "--table", table, "--out", out, *extra]


@pytest.fixture(scope="module")
def first(work, tmp_path_factory):
    """One run of every strategy, with --verify (module-scoped: later tests
    read its files and reuse its cache)."""
    out = tmp_path_factory.mktemp("first")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = tune_main([str(a) for a in common(work, out, "--strategies", ALL, "--verify")])
    assert code == 0, stderr.getvalue()
    doc = json.loads((out / "small-edge8.json").read_text())
    return out, doc, stdout.getvalue(), stderr.getvalue()


def by_strategy(doc: dict) -> dict[str, dict]:
    return {s["strategy"]: s for s in doc["strategies"]}


def test_files_written_and_agree(first):
    out, doc, stdout, _ = first
    assert (out / "small-edge8.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "small-edge8.md").read_text()
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ALL.split(","):
            rows[cells[0]] = cells
    assert list(rows) == ALL.split(",")
    for name, s in by_strategy(doc).items():
        row = rows[name]
        assert row[2] == f"{s['latency_us']:.1f}"
        assert row[3] == f"{s['speedup']:.2f}x"
        assert row[4] == f"{s['gap_pct']:.1f}"
        assert row[5:8] == [str(s["kernels"]), str(s["configurations"]), str(s["simulated"])]
        assert re.search(rf"^{re.escape(name)}\s+\S+\s+{s['latency_us']:.1f}\s", stdout, re.M)
        plan = json.loads(Path(s["plan"]).read_text())
        assert plan["strategy"] == name and len(plan["groups"]) == s["kernels"]
        assert plan["latency_us"] == pytest.approx(s["latency_us"])


def test_speedup_gap_and_counts(first):
    _, doc, _, _ = first
    s = by_strategy(doc)
    base = s["baseline"]["latency_us"]
    assert doc["baseline_us"] == base
    best = min(x["latency_us"] for x in s.values())
    assert doc["best"]["latency_us"] == best
    for x in s.values():
        assert x["finished"]
        assert x["speedup"] == pytest.approx(base / x["latency_us"])
        assert x["gap_pct"] == pytest.approx(100 * (x["latency_us"] - best) / best)
    # the exact searches agree and nothing beats them
    assert s["dp"]["latency_us"] == pytest.approx(s["exhaustive"]["latency_us"])
    assert s["dp"]["gap_pct"] == pytest.approx(0.0, abs=1e-9)
    # strategies that make no simulator call while planning measure nothing
    for name in ("baseline", "fusion-only", "dlfusion"):
        assert s[name]["configurations"] == 0 and s[name]["simulated"] == 0
    assert s["baseline"]["evaluation_simulated"] > 0  # its plan was measured after the search
    assert s["dp"]["configurations"] == s["dp"]["stats"]["configurations"]
    ex = s["exhaustive"]["stats"]  # its "configurations" counts groups before dedup by structure
    assert s["exhaustive"]["configurations"] == ex["distinct_groups"] * len(ex["core_choices"])
    layers = doc["layers"]
    assert s["cores-only"]["configurations"] <= layers * len(doc["core_choices"])
    assert s["baseline"]["kernels"] == layers
    assert doc["simulated"] == sum(x["simulated"] + x["evaluation_simulated"] for x in s.values())


def test_verify_column(first):
    _, doc, stdout, _ = first
    for x in doc["strategies"]:
        assert x["verify"]["fits"] is True
        assert x["verify"]["max_rel_error"] < 1e-4
        # the whole program's simulated time is the sum of its kernels' costs
        assert x["verify"]["simulated_us"] == pytest.approx(x["latency_us"], rel=1e-9)
    assert "max rel err" in stdout


def test_second_run_simulates_nothing(work, first, tmp_path, capsys):
    out, doc, _, _ = first
    code, stdout, err = tune(capsys, *common(work, tmp_path, "--strategies", ALL,
                                             "--cache", out / "tuning-records.jsonl"))
    assert code == 0, err
    again = json.loads((tmp_path / "small-edge8.json").read_text())
    assert again["simulated"] == 0
    for a, b in zip(doc["strategies"], again["strategies"]):
        assert (a["strategy"], a["latency_us"], a["configurations"], a["kernels"]) == \
               (b["strategy"], b["latency_us"], b["configurations"], b["kernels"])
        assert b["simulated"] == b["evaluation_simulated"] == 0


def test_jobs_2_gives_the_same_numbers(work, first, tmp_path, capsys):
    _, doc, _, _ = first
    code, _, err = tune(capsys, *common(work, tmp_path, "--strategies", "baseline,cores-only,dp", "--jobs", 2))
    assert code == 0, err
    par = by_strategy(json.loads((tmp_path / "small-edge8.json").read_text()))
    seq = by_strategy(doc)
    for name, x in par.items():
        assert x["latency_us"] == seq[name]["latency_us"]
        assert x["configurations"] == seq[name]["configurations"]
        assert x["kernels"] == seq[name]["kernels"]


def test_corrupted_cache_is_reported_and_rebuilt(work, first, tmp_path, capsys):
    out, _, _, _ = first
    cache = tmp_path / "records.jsonl"
    shutil.copy(out / "tuning-records.jsonl", cache)
    good = cache.read_text().count("\n")
    with open(cache, "a") as f:
        f.write('{"version": 1, "key": "trunc')  # a record cut short by a crash
    code, _, err = tune(capsys, *common(work, tmp_path / "o", "--strategies", "baseline,cores-only",
                                        "--cache", cache))
    assert code == 0
    assert "dropped 1 corrupted tuning record" in err
    lines = cache.read_text().splitlines()
    assert len(lines) == good and all(json.loads(line)["latency_us"] >= 0 for line in lines)
    assert json.loads((tmp_path / "o" / "small-edge8.json").read_text())["simulated"] == 0


def test_unknown_strategy_is_one_line_and_writes_nothing(work, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = tune(capsys, *common(work, out, "--strategies", "baseline,greedy"))
    assert code == 1 and stdout == ""
    assert err.count("\n") == 1
    assert err.startswith("dlfusion-tune: unknown strategy 'greedy'; choose one of ")
    for name in ("baseline", "cores-only", "dlfusion", "dp", "exhaustive", "fusion-only"):
        assert name in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nosuchnet"], "dlfusion-tune: unknown model 'nosuchnet'; give a path to an .onnx file or one of"),
        (["missing.onnx"], "dlfusion-tune: model file 'missing.onnx' does not exist"),
        (["alexnet", "--target", "tpu9"], "dlfusion-tune: unknown target 'tpu9'"),
        (["alexnet", "--core-choices", "1,x"], "dlfusion-tune: bad --core-choices '1,x'"),
        (["alexnet", "--core-choices", "64"], "dlfusion-tune: core choice 64 is not within 1..32"),
        (["alexnet", "--jobs", "0"], "dlfusion-tune: --jobs must be at least 1, got 0"),
    ],
)
def test_bad_input_is_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = tune(capsys, *argv, "--out", out)
    assert code == 1 and stdout == ""
    assert err.startswith(message) and err.count("\n") == 1
    assert not out.exists()


def test_exhaustive_past_its_guard_is_recorded(work, first, tmp_path, capsys):
    out, _, _, _ = first
    code, stdout, err = tune(capsys, *common(work, tmp_path, "--strategies", "baseline,exhaustive,dp",
                                             "--max-configs", 3, "--cache", out / "tuning-records.jsonl"))
    assert code == 0, err
    assert re.search(r"^exhaustive\s+\S+\s+not finished", stdout, re.M)
    assert "exhaustive: not finished: exhaustive search space has at least" in stdout
    s = by_strategy(json.loads((tmp_path / "small-edge8.json").read_text()))
    assert not s["exhaustive"]["finished"] and "max-configs=3" in s["exhaustive"]["message"]
    assert s["exhaustive"]["plan"] is None and s["dp"]["finished"]
    assert not (tmp_path / "plans" / "small-edge8-exhaustive.json").exists()
    assert "| exhaustive | " in (tmp_path / "small-edge8.md").read_text()


def test_baseline_is_measured_when_not_asked_for(work, first, tmp_path, capsys):
    out, doc, _, _ = first
    code, stdout, err = tune(capsys, *common(work, tmp_path, "--strategies", "dp",
                                             "--cache", out / "tuning-records.jsonl", "--no-plot"))
    assert code == 0, err
    again = json.loads((tmp_path / "small-edge8.json").read_text())
    assert again["baseline_us"] == doc["baseline_us"]
    assert [s["strategy"] for s in again["strategies"]] == ["dp"]
    assert again["strategies"][0]["speedup"] == pytest.approx(doc["baseline_us"] / again["strategies"][0]["latency_us"])
    assert "speedups are over baseline" in stdout
    assert not (tmp_path / "small-edge8.png").exists()


def test_plans_reapply_with_dlfusion_opt(work, first, tmp_path, capsys):
    _, model, _ = work
    _, doc, _, _ = first
    for s in doc["strategies"]:
        out = tmp_path / f"{s['strategy']}.mlir"
        code = opt_main([str(model), "-p", f'fold-batchnorm,fuse-layers{{plan="{s["plan"]}" target={TARGET}}}',
                         "-o", str(out)])
        assert code == 0, capsys.readouterr().err
        assert out.read_text().count("nn.fusion_group") == s["kernels"]


def test_progress_bar_only_when_asked(work, first, tmp_path, capsys):
    out, _, _, _ = first
    cache = tmp_path / "fresh.jsonl"
    code, _, err = tune(capsys, *common(work, tmp_path / "a", "--strategies", "cores-only", "--cache", cache,
                                        "--progress", "--no-plot"))
    assert code == 0 and "cores-only:" in err and "kernel" in err and "%|" in err
    cache.unlink()
    code, _, err = tune(capsys, *common(work, tmp_path / "b", "--strategies", "cores-only", "--cache", cache,
                                        "--no-plot"))
    assert code == 0 and "%|" not in err  # stderr is not a terminal here
    code, _, err = tune(capsys, *common(work, tmp_path / "c", "--strategies", "cores-only", "--cache", cache,
                                        "--progress", "--quiet", "--no-plot"))
    assert code == 0 and err == ""


# --------------------------------------------------------------------------
# the measurer: persistent pool, executor plug-in, tallies
# --------------------------------------------------------------------------


def _configs(n_layers: int = 3):
    from dlfusion.context import make_context
    from dlfusion.frontend import import_model
    from dlfusion.grouping import LayerGraph

    module = import_model(small_model(), make_context())
    graph = LayerGraph.of(module)
    return [([op], c) for op in graph.layers[:n_layers] for c in (1, 2)]


def test_measurer_pool_lives_until_closed():
    configs = _configs()
    with Measurer.create(TARGET, jobs=2) as m:
        first = m.costs(configs[:3])
        pool = m._pool
        assert pool is not None
        second = m.costs(configs[3:])
        assert m._pool is pool  # one pool for the measurer's lifetime
    assert m._pool is None
    inline = Measurer.create(TARGET).costs(configs)
    assert first + second == inline


class CountingExecutor:
    """A plug-in executor: anything with map(fn, items)."""

    def __init__(self):
        self.items = 0

    def map(self, fn, items):
        items = list(items)
        self.items += len(items)
        return [fn(i) for i in items]


def test_executor_plug_in_and_tally():
    configs = _configs()
    ex = CountingExecutor()
    m = Measurer.create(TARGET, executor=ex)
    with m.tally() as t:
        m.costs(configs)
        m.costs(configs)  # memoized: nothing new
    assert ex.items == len(configs) == t.simulated == t.configurations
    with m.tally() as t:
        m.costs(configs[:2])
    assert (t.configurations, t.simulated) == (2, 0)
    m.close()  # a given executor is left alone


def test_outputs_are_all_or_nothing(work, first, tmp_path, capsys, monkeypatch):
    from dlfusion.tuning import tune as tune_lib

    def broken(report):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tune_lib, "plot_png", broken)
    out, _, _, _ = first
    code, stdout, err = tune(capsys, *common(work, tmp_path / "o", "--strategies", "baseline,dp",
                                             "--cache", out / "tuning-records.jsonl", "--quiet"))
    assert code == 1 and stdout == ""
    assert err == f"dlfusion-tune: {tmp_path / 'o'}: cannot write the results: No space left on device\n"
    left = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert left == []  # no table, no plan, no temporary file
