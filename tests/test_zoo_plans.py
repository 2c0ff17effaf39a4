"""Every plan of every strategy on every zoo model is a valid partition,
compiles for the accelerator (the on-chip capacity verifier passes) and
computes what onnxruntime computes.

Plans: the strategies that finish in CI time (`baseline`, `cores-only`,
`fusion-only`, `dlfusion`) on the default target, and every saved plan under
`benchmarks/plans/<target>/<model>-<strategy>.json` (the searched plans,
`dp` for instance, too slow to make here). For each plan: every layer in
exactly one group, every group convex, the groups acyclic (they run one after
another), core numbers the target allows; then `compile_plan` (apply the
groups, lower-to-accel, verify) and a numeric simulation on seeded random
inputs, max|simulated - onnxruntime| / max|onnxruntime| <= 1e-4.

No dependency on the user's cache: `cores-only` measures through a
session-scoped tuning cache in a temporary folder, `dlfusion` and
`fusion-only` read the characterization table shipped in the package.
Tests are ordered model by model and each model is imported once.
"""

from __future__ import annotations

import os
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from dlfusion import zoo
from dlfusion.grouping import LayerGraph
from dlfusion.interpreter import random_inputs
from dlfusion.models import compile_plan, load_model, reference_outputs, relative_error
from dlfusion.passes.fuse_layers import load_plan_for, run_order
from dlfusion.sim import simulate
from dlfusion.targets import DEFAULT_TARGET, load_target
from dlfusion.tuning.strategies import StrategyContext, get_strategy
from dlfusion.tuning.tables import REFRESH_COMMAND, packaged_table

MODELS = list(zoo.MODELS)
STRATEGIES = ["baseline", "cores-only", "fusion-only", "dlfusion"]
# DLFUSION_PLANS_DIR: test the saved plans of another folder
PLANS_DIR = Path(os.environ.get("DLFUSION_PLANS_DIR") or Path(__file__).resolve().parents[1] / "benchmarks" / "plans")
TOLERANCE = 1e-4
SEED = 0


def saved_plan_model(path: Path) -> str | None:
    """The zoo model of `<target>/<model>-<strategy>.json` (None: no zoo
    model's name starts the file name)."""
    names = [m for m in MODELS if path.stem.startswith(f"{m}-")]
    return max(names, key=len) if names else None


SAVED = sorted(PLANS_DIR.glob("*/*.json")) if PLANS_DIR.is_dir() else []


def cases() -> list:
    """(model, strategy name or saved plan path), model by model so that
    each model is imported once."""
    out = []
    for model in MODELS:
        for strategy in STRATEGIES:
            out.append(pytest.param(model, strategy, id=f"{model}-{strategy}"))
        for path in SAVED:
            if saved_plan_model(path) == model:
                rel = path.relative_to(PLANS_DIR)
                out.append(pytest.param(model, path, id=f"{model}-saved:{rel.parent}/{rel.stem}"))
    return out


@lru_cache(maxsize=1)  # one model in memory at a time; tests come model by model
def loaded(model: str):
    """The model (fold-batchnorm), its seeded inputs and onnxruntime's outputs."""
    lm = load_model(model, seed=0)
    inputs = random_inputs(lm.module, seed=SEED)
    return lm, inputs, reference_outputs(lm.onnx, inputs)


@pytest.fixture(scope="session")
def measurer(tmp_path_factory):
    from dlfusion.tuning.measure import Measurer

    m = Measurer.create(DEFAULT_TARGET, cache=tmp_path_factory.mktemp("zoo-plans") / "records.jsonl")
    yield m
    close = getattr(m, "close", None)
    if close is not None:
        close()


def plan_of(graph: LayerGraph, source, measurer):
    """The groups, the target and the allowed core numbers of a case."""
    if isinstance(source, Path):
        plan = load_plan_for(str(source), graph, load_target(source.parent.name))
        target = load_target(source.parent.name)
        return plan.groups, target, range(1, target.cores + 1)
    target = load_target(DEFAULT_TARGET)
    table = packaged_table(target)
    assert table is not None, f"no packaged characterization table for {target.name}; run `{REFRESH_COMMAND}`"
    sctx = StrategyContext(target, measurer, {"table": str(table)})
    return get_strategy(source)(graph, sctx), target, sctx.core_choices()


def check_partition(graph: LayerGraph, groups, source: str) -> None:
    """Every layer in exactly one group, groups convex, the group graph
    acyclic (run_order raises on a cycle), core numbers set."""
    count = Counter(n for g in groups for n in g.layers)
    assert set(count) == set(graph.names), (
        f"layers in no group: {sorted(set(graph.names) - set(count))[:5]}; "
        f"unknown layers: {sorted(set(count) - set(graph.names))[:5]}"
    )
    twice = [n for n, k in count.items() if k > 1]
    assert not twice, f"layers in several groups: {twice[:5]}"
    for i, g in enumerate(groups):
        assert g.layers, f"group {i} is empty"
        assert graph.is_convex(graph.ids(g.layers)), f"group {i} ({g.layers}) is not convex"
    assert len(run_order(graph, groups, source)) == len(groups)


@pytest.mark.parametrize(("model", "source"), cases())
def test_plan_compiles_fits_and_matches_onnxruntime(model, source, measurer):
    lm, inputs, reference = loaded(model)
    graph = LayerGraph.of(lm.module)
    groups, target, choices = plan_of(graph, source, measurer)
    check_partition(graph, groups, str(source))
    bad = [(i, g.cores) for i, g in enumerate(groups) if g.cores not in choices]
    assert not bad, f"core numbers outside {list(choices)}: {bad[:5]}"
    if source == "baseline":
        assert len(groups) == len(graph) and all(g.cores == 1 for g in groups)
    if source == "fusion-only":
        assert all(g.cores == 1 for g in groups)

    program = compile_plan(lm, groups, target)  # lower-to-accel + verify (on-chip capacity)
    outputs = simulate(program, lm.ctx, inputs, record_events=False).outputs
    assert sorted(outputs) == sorted(reference)
    for name, ref in reference.items():
        assert outputs[name].shape == ref.shape, name
        err = relative_error(outputs[name], ref)
        assert err <= TOLERANCE, f"{model} {source}: output {name} max|diff|/max|ref| = {err:.3g}"


def test_saved_plans_are_named_for_a_target_and_a_zoo_model():
    """`benchmarks/plans/<target>/<model>-<strategy>.json`: every saved plan
    is tested above, so a file named otherwise would be silently skipped."""
    if not SAVED:
        pytest.skip(f"no saved plans under {PLANS_DIR}")
    from dlfusion.targets import shipped_targets

    for path in SAVED:
        rel = path.relative_to(PLANS_DIR)
        assert path.parent.name in shipped_targets(), f"{rel}: '{path.parent.name}' is not a shipped target"
        assert saved_plan_model(path) is not None, f"{rel}: the name does not start with a zoo model's name"
