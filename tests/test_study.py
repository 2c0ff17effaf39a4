"""benchmarks/study.py: the study's tables are the measured numbers, its
goals are computed from them, and a regeneration keeps the Discussion."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from dlfusion.grouping import LayerGraph

ROOT = Path(__file__).resolve().parents[1]


def _load_study():
    spec = importlib.util.spec_from_file_location("study", ROOT / "benchmarks" / "study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["study"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


study = _load_study()


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of `text` as rows keyed by the header cells."""
    out, header, rows = [], None, []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            elif not set(line) <= set("|-: "):
                rows.append(dict(zip(header, cells)))
        elif header is not None:
            out.append(rows)
            header, rows = None, []
    return out


def test_block_starts_are_where_one_feature_map_crosses():
    # 0 -> 1 -> 2 -> 3 (add) <- 0; 3 -> 4: a residual block between 1 and 4
    succs = [{1, 3}, {2}, {3}, {4}, set()]
    preds = [set(), {0}, {1}, {0, 2}, {3}]
    graph = LayerGraph([None] * 5, [f"l{i}" for i in range(5)], preds, succs)
    assert study.block_starts(graph) == [0, 1, 4]


def row(model: str, latencies: dict[str, float], seconds: dict[str, float]) -> study.ModelRow:
    doc = {"layers": 3, "baseline_us": 100.0, "strategies": [
        {"strategy": s, "finished": True, "latency_us": lat, "search_s": seconds.get(s, 0.0),
         "configurations": 0} for s, lat in latencies.items()]}
    return study.ModelRow(model, doc, [])


def test_goals_are_computed_from_the_rows():
    names = ["baseline", "dlfusion", "dp"]
    near = row("a", {"dlfusion": 50.5, "dp": 50.0}, {"dlfusion": 0.001, "dp": 1.0})
    far = row("b", {"dlfusion": 60.0, "dp": 50.0}, {"dlfusion": 0.1, "dp": 1.0})
    def text(rows):
        return "\n".join(study.summary(rows, names) + study.goals(rows, names))

    good = text([near])
    assert "models with dlfusion within 5% of dp: 1 of 1" in good
    assert "dlfusion/dp latency: 1.010" in good
    assert good.count("**holds**") == 3
    assert "dp = exhaustive on every window (0 windows): not measured" in good
    bad = text([near, far])
    assert "models with dlfusion within 5% of dp: 1 of 2" in bad
    assert bad.count("**does not hold**") == 3
    assert text([near, row("c", {"dp": 50.0}, {"dp": 1.0})]).count("not measured") == 4


def test_study_writes_the_measured_numbers_and_keeps_the_discussion(tmp_path):
    results = tmp_path / "docs" / "RESULTS.md"
    argv = [
        "--targets", "edge8", "--models", "alexnet", "--strategies", "baseline,cores-only,dp",
        "--core-choices", "1,8", "--max-group", "3", "--windows", "1", "--window-layers", "4",
        "--jobs", "1", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
        "--plans", str(tmp_path / "plans"), "--results", str(results),
    ]
    assert study.main(argv) == 0
    doc = json.loads((tmp_path / "out/edge8/alexnet-edge8.json").read_text())
    windows = json.loads((tmp_path / "out/edge8/alexnet-edge8-windows.json").read_text())["windows"]
    text = results.read_text()
    assert "python benchmarks/study.py --targets edge8" in text
    assert (tmp_path / "docs/figures/study-edge8.png").stat().st_size > 0
    # the searches' plans are kept for tests/test_zoo_plans.py, not the cheap ones
    assert (tmp_path / "plans" / "edge8" / "alexnet-dp.json").is_file()
    assert not (tmp_path / "plans" / "edge8" / "alexnet-baseline.json").exists()

    models, wins = tables(text)
    [got] = models
    by = {r["strategy"]: r for r in doc["strategies"]}
    assert got["baseline µs"] == f"{doc['baseline_us']:.1f}"
    for s in ("cores-only", "dp"):
        assert got[f"{s} µs"] == f"{by[s]['latency_us']:.1f}"
        assert got[f"{s} speedup"] == f"{doc['baseline_us'] / by[s]['latency_us']:.2f}x"
        assert got[f"{s} search s"] == f"{by[s]['search_s']:.2f}"
        assert got[f"{s} configs"] == str(by[s]["configurations"])
    assert "exhaustive µs" not in got and "dlfusion µs" not in got

    [w] = windows
    assert len(w["layers"]) <= 4 and w["dp"]["finished"] and w["exhaustive"]["finished"]
    [wrow] = wins
    assert wrow["dp µs"] == f"{w['dp']['latency_us']:.1f}"
    assert wrow["exhaustive µs"] == f"{w['exhaustive']['latency_us']:.1f}"
    assert wrow["equal?"] == ("yes" if w["equal"] else "**no**")
    verdict = "**holds**" if w["equal"] else "**does not hold**"
    assert f"dp = exhaustive on every window (1 windows): {verdict}" in text

    # the lead's Discussion survives a regeneration (cheap: the cache has every kernel)
    mine = "Our speedups are lower than the paper's because of reasons.\n\nSecond paragraph."
    start = text.index("## Discussion")
    results.write_text(text[:start] + "## Discussion\n\n" + mine + "\n\n## Notes\n\nnot the discussion\n")
    assert study.main(argv) == 0
    again = results.read_text()
    assert mine in again
    assert again.count("## Discussion") == 1 and "not the discussion" not in again
    assert study.DISCUSSION not in again


def test_bad_model_is_one_line_and_writes_nothing(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    argv = ["--models", "nosuchnet", "--out", str(tmp_path / "out"), "--results", str(results)]
    assert study.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuchnet" in err[0]
    assert not results.exists() and not (tmp_path / "out").exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
