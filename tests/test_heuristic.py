"""The joint heuristic (`dlfusion`, `fusion-only`): plans from the layer
characteristics and the characterization table alone (never a measurement),
valid convex groups, core numbers the target allows, derived from whatever
the table says (not tuned to one target), fast."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from dlfusion.context import make_context
from dlfusion.errors import DlfusionError
from dlfusion.frontend import import_model
from dlfusion.grouping import LayerGraph, apply_groups
from dlfusion.targets import load_target
from dlfusion.tuning import characterize as chz
from dlfusion.tuning import heuristic as H
from dlfusion.tuning.strategies import STRATEGIES, StrategyContext, get_strategy
from dlfusion.tuning.tables import packaged_table

EDGE8 = load_target("edge8")


class NoMeasurer:
    """A measurer that must not be used."""

    def __getattr__(self, name):
        raise AssertionError(f"the heuristic used the measurer ({name})")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("char")
    doc, path, _ = chz.load_or_characterize(EDGE8, cache_dir=d, quick=True)
    return doc, path


def resnet_block_module():
    """conv-relu-conv-add-relu-maxpool-gap-flatten-fc, built like the zoo's."""
    from dlfusion.zoo import GraphBuilder

    b = GraphBuilder("blk", (1, 32, 16, 16), seed=0)
    x = b.conv("input", "c1", 32, 3, padding=1)
    y = b.relu(x, "r1")
    y = b.conv(y, "c2", 32, 3, padding=1)
    y = b.add(y, "input", "add")
    y = b.relu(y, "r2")
    y = b.maxpool(y, "pool", 3, 2)
    y = b.global_avgpool(y, "gap")
    y = b.flatten(y, "flat")
    y = b.gemm(y, "fc", 10)
    model = b.build(y, num_classes=10)
    ctx = make_context()
    return ctx, import_model(model, ctx)


def plan(strategy, module, table_path, **options):
    graph = LayerGraph.of(module)
    sctx = StrategyContext(EDGE8, NoMeasurer(), dict(table=str(table_path), **options))
    return graph, get_strategy(strategy)(graph, sctx)


def test_registered():
    assert "dlfusion" in STRATEGIES and "fusion-only" in STRATEGIES


def test_plans_are_valid_without_measuring(table):
    _, path = table
    ctx, module = resnet_block_module()
    graph, groups = plan("dlfusion", module, path)
    names = [n for g in groups for n in g.layers]
    assert sorted(names) == sorted(graph.names)  # a partition
    for g in groups:
        assert graph.is_convex(graph.ids(g.layers))
        assert 1 <= g.cores <= EDGE8.cores
    apply_groups(module, groups)  # the groups can be applied
    module.verify()


def test_fusion_only_is_the_same_groups_on_one_core(table):
    _, path = table
    _, m1 = resnet_block_module()
    _, m2 = resnet_block_module()
    _, g1 = plan("dlfusion", m1, path)
    _, g2 = plan("fusion-only", m2, path)
    assert [g.layers for g in g1] == [g.layers for g in g2]
    assert all(g.cores == 1 for g in g2)


def test_reads_annotations_when_present(table):
    from dlfusion.passes.annotate_layers import AnnotateLayersPass

    _, path = table
    ctx, module = resnet_block_module()
    _, plain = plan("dlfusion", module, path)
    AnnotateLayersPass(target="edge8").apply(ctx, module)
    _, annotated = plan("dlfusion", module, path)
    assert [(g.layers, g.cores) for g in plain] == [(g.layers, g.cores) for g in annotated]


def scaled(doc, fn):
    """A copy of the table with every latency at core number n replaced by
    fn(latency, n)."""
    out = copy.deepcopy(doc)
    cores = out["cores"]
    for rec in out["layers"]:
        rec["latency_us"] = [fn(x, n) for x, n in zip(rec["latency_us"], cores)]
    for ch in out["chains"]:
        ch["fused_us"] = [fn(x, n) for x, n in zip(ch["fused_us"], cores)]
        for rec in ch["layers"]:
            rec["latency_us"] = [fn(x, n) for x, n in zip(rec["latency_us"], cores)]
        ch["unfused_us"] = [sum(r["latency_us"][i] for r in ch["layers"]) for i in range(len(cores))]
    return out


def no_fusion(doc):
    """The table, but with chains that say fusion always costs."""
    out = copy.deepcopy(doc)
    for ch in out["chains"]:
        ch["fused_us"] = [u * 1.5 for u in ch["unfused_us"]]
    return out


def test_core_numbers_follow_the_table(table):
    """The same code reads a table where cores never pay off and one where
    they always do, and decides accordingly: nothing is tuned in the code."""
    doc, _ = table
    _, module = resnet_block_module()
    graph = LayerGraph.of(module)
    slow = no_fusion(scaled(doc, lambda x, n: x * n))  # more cores, slower
    sctx = StrategyContext(EDGE8, NoMeasurer(), {"table": slow})
    groups = get_strategy("dlfusion")(graph, sctx)
    assert {g.cores for g in groups} == {1}
    fast = no_fusion(scaled(doc, lambda x, n: x / n**2))  # more cores, much faster
    sctx = StrategyContext(EDGE8, NoMeasurer(), {"table": fast})
    groups = get_strategy("dlfusion")(graph, sctx)
    convs = [g for g in groups if any(n in ("c1", "c2") for n in g.layers)]
    assert convs and all(g.cores > 1 for g in convs)
    # and only core numbers the strategy may choose
    sctx = StrategyContext(EDGE8, NoMeasurer(), {"table": fast, "core_choices": [1, 4]})
    assert {g.cores for g in get_strategy("dlfusion")(graph, sctx)} <= {1, 4}


def test_fusion_follows_the_table(table):
    """With chains that say fusion costs, the heuristic fuses nothing; with
    chains that say it saves, it fuses."""
    doc, _ = table
    _, module = resnet_block_module()
    graph = LayerGraph.of(module)
    worse = no_fusion(doc)
    sctx = StrategyContext(EDGE8, NoMeasurer(), {"table": worse})
    groups = get_strategy("dlfusion")(graph, sctx)
    assert all(len([n for n in g.layers if n != "flat"]) <= 1 for g in groups)
    better = copy.deepcopy(doc)
    for ch in better["chains"]:
        ch["fused_us"] = [u * 0.5 for u in ch["unfused_us"]]
    sctx = StrategyContext(EDGE8, NoMeasurer(), {"table": better})
    groups = get_strategy("dlfusion")(graph, sctx)
    assert max(len(g.layers) for g in groups) > 2


def test_layer_curve_interpolates_the_table(table):
    doc, _ = table
    model = H.Characterization(doc)
    rec = next(r for r in doc["layers"] if r["class"] == "conv3x3s1")
    info = model._info_of_record(rec)
    np.testing.assert_allclose(model.curve(info), rec["latency_us"], rtol=1e-6)
    # lane padding: a layer with fewer channels than one lane group uses one core
    assert H.parallelism(3, 8, 16) == 1.0 and H.parallelism(64, 8, 16) == 4.0
    assert H.chunk(96, 3, 32) == 32 and H.chunk(96, 2, 32) == 64


def test_missing_or_stale_table(table, tmp_path, monkeypatch):
    doc, path = table
    _, module = resnet_block_module()
    graph = LayerGraph.of(module)
    monkeypatch.setenv("DLFUSION_CACHE", str(tmp_path / "empty"))
    # a target file of one's own: no table in the cache nor in the package
    edited = tmp_path / "edge8b.toml"
    text = (Path(chz.__file__).parents[1] / "targets" / "edge8.toml").read_text()
    edited.write_text(text.replace('name = "edge8"', 'name = "edge8b"'))
    mine = load_target(str(edited))
    with pytest.raises(DlfusionError, match="dlfusion-characterize --target edge8b"):
        get_strategy("dlfusion")(graph, StrategyContext(mine, NoMeasurer(), {}))
    # the shipped target finds the shipped table
    assert get_strategy("dlfusion")(graph, StrategyContext(EDGE8, NoMeasurer(), {}))
    stale = tmp_path / "stale.json"
    chz.save_table(dict(doc, target_digest="0" * 16), stale)
    with pytest.raises(DlfusionError, match="another version of target"):
        get_strategy("dlfusion")(graph, StrategyContext(EDGE8, NoMeasurer(), {"table": str(stale)}))
    # the cached table is found by target digest under DLFUSION_CACHE
    d = tmp_path / "c" / "characterization"
    d.mkdir(parents=True)
    chz.save_table(dict(doc, target=mine.name, target_digest=mine.digest), chz.table_path(mine, d, quick=True))
    monkeypatch.setenv("DLFUSION_CACHE", str(tmp_path / "c"))
    assert chz.find_table(mine) == chz.table_path(mine, d, quick=True)
    assert get_strategy("dlfusion")(graph, StrategyContext(mine, NoMeasurer(), {}))
    # a full table in the cache comes before the shipped one
    assert chz.find_table(EDGE8) == packaged_table(EDGE8)
    chz.save_table(doc, chz.table_path(EDGE8, d))
    assert chz.find_table(EDGE8) == chz.table_path(EDGE8, d)
    # ... unless it is of an older table version: the shipped one is used
    chz.save_table(dict(doc, version=chz.TABLE_VERSION - 1), chz.table_path(EDGE8, d))
    assert chz.find_table(EDGE8) == packaged_table(EDGE8)


def test_plans_a_zoo_model_fast(table):
    from dlfusion import zoo

    _, path = table
    ctx = make_context()
    module = import_model(zoo.build("resnet50", materialize=False), ctx)
    graph = LayerGraph.of(module)
    sctx = StrategyContext(EDGE8, NoMeasurer(), {"table": str(path)})
    groups = get_strategy("dlfusion")(graph, sctx)
    # a partition of the layers into groups that can run one after another
    assert sorted(n for g in groups for n in g.layers) == sorted(graph.names)
    from dlfusion.passes.fuse_layers import run_order

    assert len(run_order(graph, groups, "dlfusion")) == len(groups)


def test_table_of_another_cost_model_is_one_line_error(table, tmp_path, capsys):
    """A table measured with another lowering or simulator is refused through
    dlfusion-opt: one line naming the file and the command to run, exit 1,
    no output file."""
    from dlfusion.ir_io import print_module
    from dlfusion.opt import main as opt_main

    doc, _ = table
    stale = tmp_path / "stale.json"
    chz.save_table(dict(doc, cost_model="cm0"), stale)
    ctx, module = resnet_block_module()
    src = tmp_path / "block.mlir"
    src.write_text(print_module(module, ctx))
    out = tmp_path / "out.mlir"
    code = opt_main([str(src), "-p", f'fuse-layers{{strategy=dlfusion target=edge8 table="{stale}"}}', "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    assert len(err) == 1 and "another version of the lowering or the simulator" in err[0]
    assert str(stale) in err[0] and "dlfusion-characterize --target edge8" in err[0]
