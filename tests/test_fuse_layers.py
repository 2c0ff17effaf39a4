"""fuse-layers and assign-cores: plans written into the IR, saved and
replayed, checked against the model; what every strategy's plan computes
(lowered and simulated against the nn interpreter); a plan's latency against
the full program's simulated time; bad input (unknown strategy, a plan for
another model or target, an exhaustive search past its guard, a corrupted
tuning-record cache) with the module left as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from dlfusion.context import make_context
from dlfusion.dialects import nn
from dlfusion.errors import DlfusionError
from dlfusion.frontend import import_model
from dlfusion.grouping import LayerGraph, main_function
from dlfusion.passes import get_all_passes
from dlfusion.passes.assign_cores import AssignCoresPass
from dlfusion.passes.fuse_layers import FuseLayersPass
from dlfusion.passes.lower_to_accel import LowerToAccelPass
from dlfusion.sim import simulate
from dlfusion.tuning.measure import Measurer
from dlfusion.tuning.plan import Plan

sys.path.insert(0, str(Path(__file__).parent))
from test_search import MODELS, G  # noqa: E402

STRATEGIES = ["baseline", "cores-only", "dp", "exhaustive"]


def model(name: str):
    ctx = make_context()
    return ctx, import_model(MODELS[name](), ctx)


def groups_of(module: ModuleOp) -> list[nn.FusionGroupOp]:
    return [op for op in main_function(module).body.block.ops if isinstance(op, nn.FusionGroupOp)]


def describe(module: ModuleOp) -> list[tuple[str, int | None, list[str]]]:
    return [
        (g.sym_name.data, None if g.cores is None else g.cores.value.data,
         [op.results[0].name_hint for op in g.layers()])
        for g in groups_of(module)
    ]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuse") / "records.jsonl")


def test_registered():
    passes = get_all_passes()
    assert passes["fuse-layers"]() is FuseLayersPass
    assert passes["assign-cores"]() is AssignCoresPass


def test_options_parse_from_a_pipeline():
    from xdsl.passes import PassPipeline

    pipeline = PassPipeline.parse_spec(
        {"fuse-layers": lambda: FuseLayersPass},
        "fuse-layers{strategy=dp max-group=4 core-choices=1,2,4 space=order set-cores=false}",
    )
    (p,) = pipeline.passes
    assert (p.strategy, p.max_group, p.core_choices, p.space, p.set_cores) == ("dp", 4, (1, 2, 4), "order", False)


# --------------------------------------------------------------------------
# plans of every strategy compute what the model computes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_lowers_and_simulates_to_the_reference(strategy, name, cache):
    from dlfusion.interpreter import random_inputs, run_module

    ctx, module = model(name)
    inputs = random_inputs(module, 1)
    ref = run_module(module, ctx, inputs)
    FuseLayersPass(strategy=strategy, target="edge8", cache=cache).apply(ctx, module)
    module.verify()
    # every layer is in a group with a core number
    assert all(not isinstance(op, nn.LAYER_OPS) for op in main_function(module).body.block.ops)
    assert all(g.cores is not None for g in groups_of(module))
    assert [g.sym_name.data for g in groups_of(module)] == [f"g{i}" for i in range(len(groups_of(module)))]
    LowerToAccelPass(target="edge8").apply(ctx, module)
    got = simulate(module, ctx, inputs, target="edge8", record_events=False).outputs
    assert sorted(got) == sorted(ref)
    for key, want in ref.items():
        scale = float(np.max(np.abs(want))) or 1.0
        assert float(np.max(np.abs(got[key] - want))) <= 1e-4 * scale


@pytest.mark.parametrize("name", ["residual", "inception"])
def test_plan_latency_is_the_programs_simulated_time(name, cache, tmp_path):
    """Kernel costs add up: the saved plan's latency (sum of its groups'
    measured costs) is the whole lowered program's simulated time."""
    ctx, module = model(name)
    path = tmp_path / "plan.json"
    FuseLayersPass(strategy="dp", target="edge8", cache=cache, save=str(path)).apply(ctx, module)
    plan = Plan.load(path)
    LowerToAccelPass(target="edge8").apply(ctx, module)
    total = simulate(module, ctx, None, target="edge8", timing_only=True, record_events=False).total_us
    assert plan.latency_us == pytest.approx(total, rel=1e-9)
    assert plan.stats["measurements"] <= plan.stats["configurations"]


def test_dp_beats_or_ties_the_other_strategies(cache, tmp_path):
    lat = {}
    for strategy in STRATEGIES:
        ctx, module = model("residual")
        path = tmp_path / f"{strategy}.json"
        FuseLayersPass(strategy=strategy, target="edge8", cache=cache, save=str(path)).apply(ctx, module)
        lat[strategy] = Plan.load(path).latency_us
    assert lat["dp"] == pytest.approx(lat["exhaustive"], rel=1e-9)
    assert lat["dp"] <= lat["cores-only"] + 1e-9 <= lat["baseline"] + 2e-9


# --------------------------------------------------------------------------
# plans to and from JSON
# --------------------------------------------------------------------------


def test_saved_plan_replays_without_measuring(cache, tmp_path):
    ctx, module = model("inception")
    path = tmp_path / "plan.json"
    FuseLayersPass(strategy="dp", target="edge8", cache=cache, save=str(path)).apply(ctx, module)
    searched = describe(module)
    doc = json.loads(path.read_text())
    assert doc["strategy"] == "dp" and doc["target"] == "edge8"
    assert doc["stats"]["space"] == "ideals"
    assert sum(len(g["layers"]) for g in doc["groups"]) == 8

    ctx2, module2 = model("inception")
    calls = []
    orig = Measurer.costs
    Measurer.costs = lambda self, configs: calls.append(configs) or orig(self, configs)  # type: ignore[method-assign]
    try:
        FuseLayersPass(plan=str(path), target="edge8").apply(ctx2, module2)
    finally:
        Measurer.costs = orig  # type: ignore[method-assign]
    assert calls == []
    assert describe(module2) == searched


def test_plan_for_another_model_names_the_first_mismatch(tmp_path):
    ctx, module = model("chain")
    path = tmp_path / "chain.json"
    FuseLayersPass(strategy="baseline", save=str(path)).apply(ctx, module)
    ctx, module = model("residual")
    before = str(module)
    with pytest.raises(DlfusionError) as exc:
        FuseLayersPass(plan=str(path)).apply(ctx, module)
    msg = str(exc.value)
    assert msg == (
        f"{path}: the plan does not match the model: layer 3 is 'short nn.conv2d 1x16x12x12' "
        "in the model but 'r2 nn.relu 1x16x12x12' in the plan; plan this model again"
    )
    assert "\n" not in msg
    assert str(module) == before  # untouched


def test_plan_with_another_shape_is_rejected(tmp_path):
    """Same layer names, other shapes (the same net at another input size)."""
    ctx, module = model("chain")
    path = tmp_path / "chain.json"
    FuseLayersPass(strategy="baseline", save=str(path)).apply(ctx, module)
    g = G(shape=(1, 8, 16, 16))
    x = g.relu(g.conv("x", 16, name="c1"), "r1")
    x = g.relu(g.conv(x, 16, name="c2"), "r2")
    x = g.op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    ctx2 = make_context()
    module2 = import_model(g.model(x), ctx2)
    with pytest.raises(DlfusionError, match=r"layer 0 is 'c1 nn.conv2d 1x16x16x16' in the model but 'c1 nn.conv2d 1x16x12x12' in the plan"):
        FuseLayersPass(plan=str(path)).apply(ctx2, module2)


def test_plan_checks(tmp_path):
    ctx, module = model("chain")
    path = tmp_path / "p.json"
    FuseLayersPass(strategy="baseline", save=str(path)).apply(ctx, module)
    doc = json.loads(path.read_text())

    def attempt(doc, **kw):
        p = tmp_path / "edited.json"
        p.write_text(json.dumps(doc))
        ctx, module = model("chain")
        before = str(module)
        with pytest.raises(DlfusionError) as exc:
            FuseLayersPass(plan=str(p), **kw).apply(ctx, module)
        assert str(module) == before
        return str(exc.value)

    assert "made for target 'mlu100', not 'edge8'" in attempt(doc, target="edge8")
    bad = dict(doc, groups=doc["groups"][:-1])
    assert "leaves layer 'pool' out of every group" in attempt(bad)
    bad = dict(doc, groups=[*doc["groups"], {"layers": ["pool"], "cores": 1}])
    assert "layer 'pool' is in groups 4 and 5" in attempt(bad)
    bad = dict(doc, groups=[{"layers": ["c1", "c2"], "cores": 1}, {"layers": ["r1"], "cores": 1},
                            {"layers": ["r2", "pool"], "cores": 1}])
    assert "is not convex" in attempt(bad)
    bad = dict(doc, groups=[*doc["groups"][1:], doc["groups"][0]])  # any order is fine
    p = tmp_path / "reordered.json"
    p.write_text(json.dumps(bad))
    ctx, module = model("chain")
    FuseLayersPass(plan=str(p)).apply(ctx, module)
    assert [(n, layers) for n, _, layers in describe(module)] == [
        ("g0", ["c1"]), ("g1", ["r1"]), ("g2", ["c2"]), ("g3", ["r2"]), ("g4", ["pool"])]
    bad = dict(doc, groups=[{"layers": ["c1"], "cores": 64}, *doc["groups"][1:]])
    assert "group 0 has core number 64; target 'mlu100' has 32 cores" in attempt(bad)
    (tmp_path / "broken.json").write_text("{")
    ctx, module = model("chain")
    with pytest.raises(DlfusionError, match="plan file is not JSON"):
        FuseLayersPass(plan=str(tmp_path / "broken.json")).apply(ctx, module)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def test_plan_with_a_cycle_of_convex_groups_is_rejected_before_any_change(tmp_path):
    ctx, module = model("inception")
    path = tmp_path / "p.json"
    FuseLayersPass(strategy="baseline", save=str(path)).apply(ctx, module)
    doc = json.loads(path.read_text())
    doc["groups"] = [{"layers": ["b2a", "b3b"], "cores": 1}, {"layers": ["b3a", "b2b"], "cores": 1},
                     *[g for g in doc["groups"] if g["layers"][0] not in ("b2a", "b2b", "b3a", "b3b")]]
    path.write_text(json.dumps(doc))
    ctx, module = model("inception")
    before = str(module)
    with pytest.raises(DlfusionError, match=r"the groups cannot run one after another: group 0 \(b2a, b3b\) is on a cycle"):
        FuseLayersPass(plan=str(path)).apply(ctx, module)
    assert str(module) == before


def test_unknown_strategy_leaves_the_module(tmp_path):
    ctx, module = model("chain")
    before = str(module)
    with pytest.raises(DlfusionError, match=r"^unknown strategy 'greedy'; choose one of baseline, cores-only, .*dp, exhaustive"):
        FuseLayersPass(strategy="greedy", save=str(tmp_path / "p.json")).apply(ctx, module)
    assert str(module) == before
    assert not (tmp_path / "p.json").exists()


def test_exhaustive_past_the_guard(tmp_path):
    ctx, module = model("inception")
    before = str(module)
    with pytest.raises(DlfusionError) as exc:
        FuseLayersPass(strategy="exhaustive", max_configs=100, save=str(tmp_path / "p.json")).apply(ctx, module)
    assert str(exc.value) == (
        "exhaustive search space has at least 128 groupings of 8 layers (> guard max-configs=100); "
        "use strategy=dp or raise max-configs"
    )
    assert str(module) == before
    assert not (tmp_path / "p.json").exists()


def test_corrupted_cache_is_reported_and_rebuilt(tmp_path, capsys):
    ctx, module = model("chain")
    path = tmp_path / "records.jsonl"
    FuseLayersPass(strategy="cores-only", target="edge8", cache=str(path)).apply(ctx, module)
    good = path.read_text().splitlines()
    assert len(good) == 4 * 4  # four distinct layers (r1 and r2 are alike) on four core numbers
    # a torn last line, a line of garbage, a record without its latency
    rec = json.loads(good[0])
    del rec["latency_us"]
    path.write_text("\n".join(good[:-1]) + "\n" + good[-1][:20] + "\nnot json at all\n" + json.dumps(rec) + "\n")
    ctx, module = model("chain")
    FuseLayersPass(strategy="cores-only", target="edge8", cache=str(path)).apply(ctx, module)
    err = capsys.readouterr().err
    assert "dropped 3 corrupted tuning record(s); rewriting the cache from the good ones" in err
    lines = path.read_text().splitlines()
    assert all(json.loads(line)["latency_us"] >= 0 for line in lines)
    assert len(lines) == 4 * 4  # 14 good ones kept, the 2 lost measured again
    assert all(g[1] is not None for g in describe(module))


def test_cli_errors_are_one_line(tmp_path):
    src = tmp_path / "m.onnx"
    import onnx

    onnx.save(MODELS["chain"](), src)
    for pipeline, want in [
        ("fuse-layers{strategy=greedy}", "dlfusion-opt: unknown strategy 'greedy'; choose one of "),
        ("fuse-layers{strategy=exhaustive max-configs=3}", "dlfusion-opt: exhaustive search space has at least 16 groupings"),
        ("assign-cores", "dlfusion-opt: assign-cores: the module has no nn.fusion_group ops"),
    ]:
        out = tmp_path / "out.mlir"
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "dlfusion-opt"), str(src), "-p", pipeline, "-o", str(out)],
            capture_output=True, text=True,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith(want), proc.stderr
        assert proc.stderr.count("\n") == 1
        assert not out.exists()


# --------------------------------------------------------------------------
# assign-cores
# --------------------------------------------------------------------------


def test_assign_cores_measured_is_the_best_and_cleans_up(cache):
    ctx, module = model("residual")
    FuseLayersPass(strategy="dp", target="edge8", cache=cache, set_cores=False).apply(ctx, module)
    assert all(g.cores is None for g in groups_of(module))
    weights = [op for op in main_function(module).body.block.ops if isinstance(op, nn.WeightOp)]
    uses = [len(list(w.result.uses)) for w in weights]
    AssignCoresPass(target="edge8", cache=cache).apply(ctx, module)
    module.verify()
    assert [len(list(w.result.uses)) for w in weights] == uses  # the measured clones are gone
    # each group on its measured best (ties: fewer cores)
    m = Measurer.create("edge8", cache=cache)
    graph_ctx, fresh = model("residual")
    graph = LayerGraph.of(fresh)
    for name, cores, layers in describe(module):
        ops = [graph.layers[i] for i in sorted(graph.ids(layers))]
        costs = m.costs([(ops, c) for c in (1, 2, 4, 8)])
        assert cores == (1, 2, 4, 8)[min(range(4), key=lambda i: (costs[i], i))]


def test_assign_cores_keeps_and_overrides():
    ctx, module = model("chain")
    FuseLayersPass(strategy="baseline").apply(ctx, module)
    AssignCoresPass(cores=4).apply(ctx, module)
    assert {c for _, c, _ in describe(module)} == {1}
    AssignCoresPass(cores=4, override=True).apply(ctx, module)
    assert {c for _, c, _ in describe(module)} == {4}
    with pytest.raises(DlfusionError, match="cores=33 is not within 1..32"):
        AssignCoresPass(cores=33, override=True).apply(ctx, module)
    with pytest.raises(DlfusionError, match="cores=9 is not within 1..8"):
        AssignCoresPass(cores=9, target="edge8").apply(ctx, module)
    with pytest.raises(DlfusionError, match="unknown strategy 'magic'; choose one of measured"):
        AssignCoresPass(strategy="magic").apply(ctx, module)
