"""The characterization tables shipped in the package (dlfusion/tuning/tables):
one per shipped target, measured on that exact target file (its digest) with
the current lowering and simulator (the cost-model version), valid, and
found only for that file."""

from __future__ import annotations

import json

import pytest

from dlfusion.targets import load_target, shipped_targets
from dlfusion.tuning import characterize as chz
from dlfusion.tuning.tables import REFRESH_COMMAND, packaged_table, packaged_tables, table_name

TARGETS = shipped_targets()


def test_there_are_shipped_targets():
    assert "mlu100" in TARGETS and len(TARGETS) >= 2


@pytest.mark.parametrize("name", TARGETS)
def test_every_shipped_target_has_its_table(name):
    target = load_target(name)
    path = packaged_table(target)
    old = [p.name for p in packaged_tables() if p.name.startswith(f"{name}-")]
    assert path is not None, (
        f"no packaged characterization table {table_name(target)} for target '{name}' "
        f"(the package has {old or 'none'}): the target file, the cost-model version or the "
        f"characterization changed; run `{REFRESH_COMMAND}`"
    )
    doc = chz.load_table(path)  # check_table: version, keys, one latency per core number
    assert doc["target"] == name
    assert chz.is_current(doc, target), (
        f"{path.name} was measured on target digest {doc['target_digest']} with cost model "
        f"{doc.get('cost_model')}; run `{REFRESH_COMMAND}`"
    )
    assert doc["grid"] == "full", f"{path.name} is a quick table; run `{REFRESH_COMMAND}`"
    assert doc["machine"] == chz.machine_of(target)
    choices = list(target.core_choices) or list(range(1, target.cores + 1))
    assert doc["cores"] == choices
    assert doc["layers"] and doc["chains"]


def test_no_stale_tables():
    want = {table_name(load_target(n)) for n in TARGETS}
    stale = [p.name for p in packaged_tables() if p.name not in want]
    assert not stale, f"packaged tables for no current target file or cost model: {stale}; run `{REFRESH_COMMAND}`"


def test_every_packaged_table_passes_check_table():
    for path in packaged_tables():
        chz.check_table(json.loads(path.read_text()), str(path))


def test_edited_target_gets_no_table(tmp_path):
    src = load_target("mlu100")
    from importlib import resources

    text = (resources.files("dlfusion.targets") / "mlu100.toml").read_text()
    same = tmp_path / "same.toml"
    same.write_text(text)
    assert packaged_table(load_target(str(same))) is not None  # same bytes, same digest
    edited = tmp_path / "mlu100.toml"
    edited.write_text(text + "\n# an edit\n")
    other = load_target(str(edited))
    assert other.name == src.name and other.digest != src.digest
    assert packaged_table(other) is None


def test_heuristic_plans_from_the_packaged_table():
    """The dlfusion strategy runs on a packaged table given as `table`."""
    from dlfusion.context import make_context
    from dlfusion.frontend import import_model
    from dlfusion.grouping import LayerGraph
    from dlfusion.tuning.strategies import StrategyContext, get_strategy
    from dlfusion.zoo import GraphBuilder

    b = GraphBuilder("blk", (1, 16, 8, 8), seed=0)
    y = b.relu(b.conv("input", "c1", 16, 3, padding=1), "r1")
    y = b.gemm(b.flatten(b.global_avgpool(y, "gap"), "flat"), "fc", 10)
    ctx = make_context()
    graph = LayerGraph.of(import_model(b.build(y, num_classes=10), ctx))
    for name in TARGETS:
        target = load_target(name)
        groups = get_strategy("dlfusion")(graph, StrategyContext(target, None, {"table": str(packaged_table(target))}))
        assert sorted(n for g in groups for n in g.layers) == sorted(graph.names)
