"""The characterization study: synthesized layers and chains, the table, its
cache (keyed by the target file's digest), the plots and the CLI. Everything
runs on the quick grid of the small edge8 target (seconds)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from dlfusion.errors import DlfusionError
from dlfusion.targets import load_target
from dlfusion.tuning import characterize as chz
from dlfusion.tuning.cost_model import cost_model_digest
from dlfusion.tuning.characterize_cli import main as cli_main

EDGE8 = load_target("edge8")


@pytest.fixture(scope="module")
def quick_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("char")


@pytest.fixture(scope="module")
def quick_table(quick_cache):
    doc, path, fresh = chz.load_or_characterize(EDGE8, cache_dir=quick_cache, quick=True)
    assert fresh
    return doc, path


def test_grid_is_derived_from_the_target():
    for name in ("mlu100", "edge8"):
        t = load_target(name)
        g = chz.make_grid(t)
        assert g.cores == (t.core_choices or tuple(range(1, t.cores + 1)))
        assert {s.cls for s in g.layers} == set(chz.CLASSES)
        # channel sizes are multiples (or half) of the target's lanes
        chans = {s.cout for s in g.layers if s.cls == "conv3x3s1"}
        assert min(chans) == max(8, t.mac_lanes_out // 2)
        assert {c.layers[0].cls for c in g.chains} >= {"conv3x3s1", "conv1x1s1", "dw3x3s1", "fc"}
        assert {len(c.layers) for c in g.chains} == {2, 3, 4, 6, 7, 8}
        # dense layers span input x output channels (a projection 4L -> L too)
        pairs = {(s.cin, s.cout) for s in g.layers if s.cls == "conv1x1s1"}
        assert (4 * t.mac_lanes_out, t.mac_lanes_out) in pairs and (t.mac_lanes_out, 4 * t.mac_lanes_out) in pairs
        # half-way sizes (3 x 2^k lane groups), up to 64 lane groups, and the image's 3 channels in
        L = t.mac_lanes_out
        assert {L, 3 * L // 2, 2 * L, 3 * L, 64 * L} <= chans and max(chans) == 64 * L
        assert {s.cin for s in g.layers if s.cls == "conv7x7s2"} >= {3}
        # DenseNet's two chained dense layers and its transition
        assert {"dense-join", "transition"} <= {c.pattern for c in g.chains}
    q = chz.make_grid(EDGE8, quick=True)
    assert len(q.layers) <= 24 and q.cores == (1, 2, 4, 8)


@pytest.mark.parametrize("cls, window, pads, out_side", [
    ("conv1x7s1", [1, 7], [0, 3, 0, 3], 17),  # 'same' along each axis
    ("conv1x1s2", [1, 1], [0, 0, 0, 0], 9),
    ("maxpool3x3s1", [3, 3], [1, 1, 1, 1], 17),
    ("avgpool2x2s2", [2, 2], [0, 0, 0, 0], 8),
])
def test_window_classes_are_synthesized_as_named(cls, window, pads, out_side):
    spec = chz.LayerSpec(cls, 32, 32, 17)
    _, _, (op,) = chz.build_layers([spec])
    assert list(op.pads.get_values()) == pads
    got = list(op.kernel.get_values()) if hasattr(op, "kernel") else list(op.weight.type.get_shape()[2:])
    assert got == window
    assert list(op.results[0].type.get_shape()[2:]) == [out_side, out_side] == [spec.out_h()] * 2
    rec = chz.layer_record(spec, op, 2)
    assert rec["kernel_hw"] == window and rec["kernel"] == pytest.approx(math.sqrt(window[0] * window[1]))


def test_synthesized_layers_go_through_the_frontend():
    spec = chz.LayerSpec("conv3x3s2", 32, 64, 28)
    _, module, ops = chz.build_layers([spec])
    (op,) = ops
    rec = chz.layer_record(spec, op, 2)
    assert rec["kind"] == "conv" and rec["hw"] == 14 * 14
    assert rec["ops"] == 14 * 14 * 64 * 32 * 9
    assert rec["weight_bytes"] == (64 * 32 * 9 + 64) * 2
    chain = (chz.LayerSpec("conv3x3s1", 32, 32, 8), chz.LayerSpec("add", 32, 32, 8), chz.LayerSpec("relu", 32, 32, 8))
    _, _, ops = chz.build_layers(chain)
    assert [o.name for o in ops] == ["nn.conv2d", "nn.add", "nn.relu"]


def test_the_table(quick_table):
    doc, path = quick_table
    assert path.name == f"edge8-{EDGE8.digest}-{cost_model_digest()}-quick.json"
    assert doc["version"] == chz.TABLE_VERSION and doc["target_digest"] == EDGE8.digest
    assert doc["cost_model"] == cost_model_digest()
    assert doc["cores"] == [1, 2, 4, 8]
    assert doc["machine"]["nram_bytes"] == EDGE8.nram_bytes
    for rec in doc["layers"]:
        assert len(rec["latency_us"]) == 4 and all(x > 0 for x in rec["latency_us"])
        # the busy cores the lowering gave the layer, at most the core number
        assert all(1 <= a <= n for a, n in zip(rec["active"], doc["cores"]))
        assert rec["best_cores"] in doc["cores"]
        assert rec["latency_us"][doc["cores"].index(rec["best_cores"])] == min(rec["latency_us"])
    assert {c["depth"] for c in doc["chains"]} == {2, 3, 4}
    for ch in doc["chains"]:
        assert len(ch["fused_us"]) == 4
        assert ch["unfused_us"][0] == pytest.approx(sum(r["latency_us"][0] for r in ch["layers"]), abs=1e-3)
        assert ch["best_each_us"] <= min(ch["unfused_us"]) + 1e-6
        assert ch["mismatch"] == pytest.approx(math.log2(max(ch["best_each_cores"]) / min(ch["best_each_cores"])), abs=1e-3)
    # fusing a conv with its relu saves a launch at least on one core number
    cr = next(c for c in doc["chains"] if c["pattern"] == "conv-relu")
    assert min(cr["fused_us"]) < min(cr["unfused_us"])


def test_the_table_is_cached_by_target_digest(quick_table, quick_cache, tmp_path, monkeypatch):
    doc, path = quick_table
    again, path2, fresh = chz.load_or_characterize(EDGE8, cache_dir=quick_cache, quick=True)
    assert not fresh and path2 == path and again == doc
    # an edited target file has another digest: another table
    edited = tmp_path / "edge8b.toml"
    text = (Path(chz.__file__).parents[1] / "targets" / "edge8.toml").read_text()
    edited.write_text(text.replace('name = "edge8"', 'name = "edge8b"'))
    t2 = load_target(str(edited))
    assert t2.digest != EDGE8.digest
    assert chz.table_path(t2, quick_cache, True) != path
    # another version of the lowering or the simulator: another table, and
    # this one is stale (never used for it)
    import dlfusion.tuning.cost_model as cm

    monkeypatch.setattr(cm, "COST_MODEL_VERSION", cm.COST_MODEL_VERSION + 1)
    assert chz.table_path(EDGE8, quick_cache, True) != path
    assert not chz.is_current(doc, EDGE8)
    monkeypatch.undo()
    assert chz.is_current(doc, EDGE8)
    # the cache dir comes from DLFUSION_CACHE when not given
    monkeypatch.setenv("DLFUSION_CACHE", str(tmp_path / "c"))
    assert chz.default_cache_dir() == tmp_path / "c" / "characterization"
    assert chz.table_path(EDGE8).parent == tmp_path / "c" / "characterization"


def test_a_corrupted_table_is_measured_again(quick_table, tmp_path, capsys):
    doc, path = quick_table
    d = tmp_path / "cache"
    d.mkdir()
    shutil.copy(path, d / path.name)
    # keep the measurement records so that re-measuring is free
    rec = path.with_suffix(".records.jsonl")
    shutil.copy(rec, d / rec.name)
    (d / path.name).write_text("{not json")
    again, _, fresh = chz.load_or_characterize(EDGE8, cache_dir=d, quick=True)
    assert fresh and again["layers"] == doc["layers"]
    assert "not JSON" in capsys.readouterr().err
    with pytest.raises(DlfusionError, match="version"):
        chz.check_table(dict(doc, version=99), "x")


def test_plots(quick_table, tmp_path):
    doc, _ = quick_table
    paths = chz.plot_table(doc, tmp_path)
    assert [p.name for p in paths] == [
        "edge8-latency-vs-cores.png", "edge8-best-cores.png", "edge8-fusion-gain.png"
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size < 400_000


def test_cli(quick_table, quick_cache, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["--target", "edge8", "--quick", "--cache-dir", str(quick_cache), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "cached" in text and "table:" in text
    assert json.loads((out / "edge8.json").read_text())["target"] == "edge8"
    assert (out / "edge8-best-cores.png").exists()


def test_cli_errors(tmp_path, capsys):
    assert cli_main(["--target", "nosuch", "--quick", "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown target 'nosuch'" in err
    assert cli_main(["--target", "edge8", "--jobs", "0", "--cache-dir", str(tmp_path)]) == 1
    assert "--jobs" in capsys.readouterr().err
