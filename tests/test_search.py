"""dp and exhaustive (dlfusion.tuning.search): the spaces they search, dp ==
exhaustive on chains and on branching blocks (residual, inception, dense
connections), the guard, and the strategy registry. (That every strategy's
plan computes what the model computes is in test_fuse_layers.py.)

Small ONNX graphs are built with onnx.helper and imported; measurements go
to one tuning-record cache per session, so dp and exhaustive on the same
graph measure every group once between them.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlfusion.context import make_context
from dlfusion.errors import DlfusionError
from dlfusion.frontend import import_model
from dlfusion.grouping import Group, LayerGraph, apply_groups
from dlfusion.targets import load_target
from dlfusion.tuning import search
from dlfusion.tuning.measure import Measurer
from dlfusion.tuning.strategies import STRATEGIES, StrategyContext, get_strategy, strategy_names

# --------------------------------------------------------------------------
# small graphs
# --------------------------------------------------------------------------


class G:
    """An ONNX graph built node by node (NCHW float32, seeded weights)."""

    def __init__(self, shape=(1, 8, 12, 12), seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
        self.channels = {"x": shape[1]}

    def conv(self, x, cout, k=3, name=None, stride=1):
        cin = self.channels[x]
        name = name or f"conv{len(self.nodes)}"
        w = self.rng.uniform(-0.3, 0.3, (cout, cin, k, k)).astype(np.float32)
        b = self.rng.uniform(-0.1, 0.1, (cout,)).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
        p = k // 2
        self.nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [name],
                                           kernel_shape=[k, k], pads=[p, p, p, p], strides=[stride, stride]))
        self.channels[name] = cout
        return name

    def op(self, kind, inputs, name, **attrs):
        self.nodes.append(helper.make_node(kind, list(inputs), [name], **attrs))
        if kind == "Concat":
            self.channels[name] = sum(self.channels[i] for i in inputs)
        else:
            self.channels[name] = self.channels[inputs[0]]
        return name

    def relu(self, x, name=None):
        return self.op("Relu", [x], name or f"relu{len(self.nodes)}")

    def model(self, *outputs) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "g", self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return onnx.shape_inference.infer_shapes(model)


def chain_model():
    """conv - relu - conv - relu - maxpool: a chain of 5 layers."""
    g = G()
    x = g.relu(g.conv("x", 16, name="c1"), "r1")
    x = g.relu(g.conv(x, 16, name="c2"), "r2")
    x = g.op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    return g.model(x)


def residual_model():
    """A basic block with a projection shortcut: c1 - r1 - c2, 1x1 shortcut,
    add, relu (6 layers, two parallel branches)."""
    g = G()
    x = g.relu(g.conv("x", 16, name="c1"), "r1")
    x = g.conv(x, 16, name="c2")
    s = g.conv("x", 16, k=1, name="short")
    y = g.op("Add", [x, s], "add")
    return g.model(g.relu(y, "out"))


def inception_model():
    """Four branches joined by a concat: 1x1 | 1x1-3x3 | 1x1-3x3 | pool-1x1
    (8 layers)."""
    g = G()
    b1 = g.conv("x", 8, k=1, name="b1")
    b2 = g.conv(g.conv("x", 8, k=1, name="b2a"), 8, name="b2b")
    b3 = g.conv(g.conv("x", 4, k=1, name="b3a"), 8, name="b3b")
    p = g.op("MaxPool", ["x"], "b4p", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    b4 = g.conv(p, 8, k=1, name="b4b")
    return g.model(g.op("Concat", [b1, b2, b3, b4], "cat", axis=1))


def dense_model():
    """A dense block: every layer reads the concatenation of all earlier
    feature maps (DenseNet's connections; 7 layers)."""
    g = G(shape=(1, 8, 10, 10))
    y1 = g.relu(g.conv("x", 8, name="d1"), "d1r")
    c1 = g.op("Concat", ["x", y1], "cat1", axis=1)
    y2 = g.relu(g.conv(c1, 8, name="d2"), "d2r")
    c2 = g.op("Concat", ["x", y1, y2], "cat2", axis=1)
    return g.model(g.conv(c2, 8, k=1, name="d3"))


MODELS = {
    "chain": chain_model,
    "residual": residual_model,
    "inception": inception_model,
    "dense": dense_model,
}


def graph_of(name: str):
    ctx = make_context()
    module = import_model(MODELS[name](), ctx)
    return ctx, module, LayerGraph.of(module)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tuning") / "records.jsonl")


def run(strategy: str, graph, cache=None, target="edge8", **options):
    measurer = Measurer.create(target, cache=cache)
    sctx = StrategyContext(load_target(target), measurer, dict(options, log=False))
    groups = get_strategy(strategy)(graph, sctx)
    return groups, sctx.stats, measurer


def plan_latency(graph, groups, measurer) -> float:
    return sum(
        measurer.costs([([graph.layers[i] for i in sorted(graph.ids(g.layers))], g.cores)])[0]
        for g in groups
    )


# --------------------------------------------------------------------------
# the spaces
# --------------------------------------------------------------------------


def test_groupings_of_a_chain_are_its_compositions():
    _, _, graph = graph_of("chain")
    n = len(graph)
    assert n == 5
    # contiguous partitions of a chain of n: 2^(n-1); with parts <= 2: Fibonacci
    assert search.count_groupings(graph, 8, 10**6) == 2 ** (n - 1)
    assert search.count_groupings(graph, 2, 10**6) == 8
    assert search.count_groupings(graph, 1, 10**6) == 1


def test_groupings_are_valid_and_unique():
    for name in MODELS:
        _, _, graph = graph_of(name)
        seen = set()
        for part in search.groupings(graph, 8):
            key = frozenset(part)
            assert key not in seen
            seen.add(key)
            assert sum(m.bit_count() for m in part) == len(graph)
            for m in part:
                assert graph.is_convex(search._bits(m))
            # they run in some order: a plan of them applies
            search._topological_blocks(graph, part)


def test_cyclic_partition_of_convex_groups_is_excluded():
    """In the inception block, {b2a, b3b} and {b3a, b2b} are both convex, but
    b2a -> b2b and b3a -> b3b make their group graph a cycle: no order runs
    them. Both searches leave such partitions out."""
    ctx, module, graph = graph_of("inception")
    a, b = graph.ids(["b2a", "b3b"]), graph.ids(["b3a", "b2b"])
    assert graph.is_convex(a) and graph.is_convex(b)
    masks = [sum(1 << i for i in a), sum(1 << i for i in b)]
    rest = [1 << i for i in range(len(graph)) if not any((m >> i) & 1 for m in masks)]
    part = frozenset(masks + rest)
    assert part not in {frozenset(p) for p in search.groupings(graph, 8)}
    pred = [sum(1 << p for p in graph.preds[v]) for v in range(len(graph))]
    assert not search._acyclic(len(graph), masks, pred)
    with pytest.raises(DlfusionError, match="cycle"):
        apply_groups(module, [Group(["b2a", "b3b"]), Group(["b3a", "b2b"])])


def test_ideal_space_covers_every_grouping_and_order_space_is_segments():
    for name in MODELS:
        _, _, graph = graph_of(name)
        groups_in_groupings = {b for p in search.groupings(graph, 8) for b in p}
        sg = search.explore(search.IdealSpace(graph, 8))
        assert sg.groups == groups_in_groupings, name
        order = search.explore(search.OrderSpace(graph, 3))
        n = len(graph)
        assert sg is not None and order is not None
        assert order.groups == {
            sum(1 << v for v in range(i, j)) for i in range(n) for j in range(i + 1, min(n, i + 3) + 1)
        }


def test_ideal_space_steps_are_unique_ideals():
    _, _, graph = graph_of("inception")
    space = search.IdealSpace(graph, 4)
    pred = space.pred_mask
    sg = search.explore(space)
    for done, steps in sg.steps.items():
        assert len(steps) == len(set(steps))
        for g in steps:
            assert g & done == 0 and 1 <= g.bit_count() <= 4
            after = done | g
            assert all(pred[v] & ~after == 0 for v in search._bits(after))


# --------------------------------------------------------------------------
# dp == exhaustive
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_dp_equals_exhaustive(name, cache):
    _, _, graph = graph_of(name)
    dp_groups, dp_stats, m = run("dp", graph, cache)
    ex_groups, ex_stats, _ = run("exhaustive", graph, cache)
    assert dp_stats["space"] == "ideals"
    assert dp_stats["latency_us"] == pytest.approx(ex_stats["latency_us"], rel=1e-9)
    # the reported latencies are the plans' measured sums
    assert plan_latency(graph, dp_groups, m) == pytest.approx(dp_stats["latency_us"], rel=1e-9)
    assert plan_latency(graph, ex_groups, m) == pytest.approx(ex_stats["latency_us"], rel=1e-9)
    # and no worse than any grouping we can think of
    for other in ("baseline", "cores-only"):
        groups, _, _ = run(other, graph, cache)
        assert dp_stats["latency_us"] <= plan_latency(graph, groups, m) + 1e-9


def test_dp_in_program_order_equals_exhaustive_on_a_chain(cache):
    _, _, graph = graph_of("chain")
    _, order, _ = run("dp", graph, cache, space="order")
    _, ex, _ = run("exhaustive", graph, cache)
    assert order["space"] == "order"
    assert order["latency_us"] == pytest.approx(ex["latency_us"], rel=1e-9)
    # with a shorter max group too: both search groups of at most 2
    _, order2, _ = run("dp", graph, cache, space="order", max_group=2)
    _, ex2, _ = run("exhaustive", graph, cache, max_group=2)
    assert order2["latency_us"] == pytest.approx(ex2["latency_us"], rel=1e-9)


@pytest.mark.parametrize("name", ["residual", "inception", "dense"])
def test_dp_in_program_order_on_branches_never_beats_exhaustive(name, cache, record_property):
    """Segments of the program order are a subset of the valid groupings:
    never better than exhaustive (on these small blocks, equal; the gap on a
    real inception block is the GoogLeNet test below)."""
    _, _, graph = graph_of(name)
    _, order, _ = run("dp", graph, cache, space="order")
    _, ex, _ = run("exhaustive", graph, cache)
    gap = order["latency_us"] / ex["latency_us"] - 1
    record_property("order_dp_gap", gap)
    assert gap >= -1e-12
    print(f"{name}: dp(order) {order['latency_us']:.2f} us, exhaustive {ex['latency_us']:.2f} us, gap {gap:.2%}")


def test_dp_counts_measurements_and_memoizes(tmp_path):
    _, _, graph = graph_of("chain")
    path = tmp_path / "t.jsonl"
    _, first, _ = run("dp", graph, str(path))
    assert first["measurements"] == first["configurations"] > 0
    assert first["groups"] == 15  # 5 + 4 + 3 + 2 + 1 segments
    _, again, _ = run("dp", graph, str(path))
    assert again["measurements"] == 0  # every record comes from the cache
    assert again["latency_us"] == first["latency_us"]


def test_repeated_structure_is_measured_once(tmp_path):
    """Two identical conv-relu pairs: their groups share measurements."""
    g = G()
    x = g.relu(g.conv("x", 8, name="a"), "ar")
    x = g.relu(g.conv(x, 8, name="b"), "br")
    ctx = make_context()
    graph = LayerGraph.of(import_model(g.model(x), ctx))
    _, stats, _ = run("dp", graph, None, core_choices=[1, 2])
    assert stats["groups"] == 4 + 3 + 2 + 1
    # {a}, {b} and {a, ar}, {b, br} and {ar}, {br} are the same kernels
    assert stats["distinct_groups"] < stats["groups"]


def test_core_choices_option_and_target_default():
    target = load_target("mlu100")
    assert StrategyContext(target).core_choices() == [1, 2, 4, 8, 16, 32]
    assert StrategyContext(target, options={"core_choices": [4, 1]}).core_choices() == [1, 4]
    with pytest.raises(DlfusionError, match="core choice 64 is not within 1..32"):
        StrategyContext(target, options={"core_choices": [64]}).core_choices()


def test_dp_auto_space_falls_back_to_program_order():
    _, _, graph = graph_of("inception")
    notes = []
    measurer = Measurer.create("edge8")
    sctx = StrategyContext(load_target("edge8"), measurer,
                           {"dp_max_groups": 5, "max_group": 2, "core_choices": [1], "log": notes.append})
    sctx.options["max_configs"] = 10  # exhaustive would not finish
    search.dp(graph, sctx)
    assert sctx.stats["space"] == "order"
    assert "more than 5 distinct groups" in notes[0]
    # where exhaustive would finish, dp stays exact
    notes.clear()
    sctx = StrategyContext(load_target("edge8"), measurer,
                           {"dp_max_groups": 5, "max_group": 2, "core_choices": [1], "log": notes.append})
    search.dp(graph, sctx)
    assert sctx.stats["space"] == "ideals" and not notes


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def test_exhaustive_past_its_guard_is_one_line_error():
    _, _, graph = graph_of("inception")
    measurer = Measurer.create("edge8")
    sctx = StrategyContext(load_target("edge8"), measurer, {"max_configs": 50})
    with pytest.raises(DlfusionError) as exc:
        search.exhaustive(graph, sctx)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == (
        "exhaustive search space has at least 128 groupings of 8 layers (> guard max-configs=50); "
        "use strategy=dp or raise max-configs"
    )
    # past the guard only once enumerated (the chain's compositions are 108 <= 120)
    sctx = StrategyContext(load_target("edge8"), measurer, {"max_configs": 120, "max_group": 4})
    assert search.compositions(8, 4) == 108
    with pytest.raises(DlfusionError, match="at least 121 groupings of 8 layers"):
        search.exhaustive(graph, sctx)
    assert measurer.measurements == 0  # nothing measured before the guard


def test_exhaustive_guard_on_a_zoo_model_is_fast():
    import time

    from dlfusion import zoo

    ctx = make_context()
    graph = LayerGraph.of(import_model(zoo.build("resnet18"), ctx))
    t0 = time.perf_counter()
    with pytest.raises(DlfusionError, match=r"at least [0-9,]+ groupings of [0-9]+ layers \(> guard max-configs=20000\)"):
        search.exhaustive(graph, StrategyContext(load_target("mlu100"), Measurer.create("mlu100")))
    assert time.perf_counter() - t0 < 5


def test_unknown_strategy_names_the_valid_ones():
    with pytest.raises(DlfusionError) as exc:
        get_strategy("greedy")
    msg = str(exc.value)
    assert msg.startswith("unknown strategy 'greedy'; choose one of ")
    for name in ("baseline", "cores-only", "dp", "exhaustive"):
        assert name in msg


def test_registry_fills_itself():
    names = strategy_names()
    assert {"baseline", "cores-only", "dp", "exhaustive"} <= set(names)
    assert set(names) <= set(STRATEGIES)


def test_bad_options():
    _, _, graph = graph_of("chain")
    sctx = StrategyContext(load_target("edge8"), Measurer.create("edge8"), {"space": "trees"})
    with pytest.raises(DlfusionError, match="unknown dp space 'trees'; choose one of auto, ideals, order"):
        search.dp(graph, sctx)
    sctx = StrategyContext(load_target("edge8"), Measurer.create("edge8"), {"max_group": 0})
    with pytest.raises(DlfusionError, match="max-group must be at least 1"):
        search.dp(graph, sctx)
    with pytest.raises(DlfusionError, match="measures kernels but no measurer"):
        search.dp(graph, StrategyContext(load_target("edge8")))


# --------------------------------------------------------------------------
# a window of a zoo model: where one topological order is not enough
# --------------------------------------------------------------------------


def test_googlenet_inception_window_order_gap():
    """GoogLeNet's inception3a, branches 2 and 3 and the concat (9 layers,
    1,920 groupings) on mlu100: the exact optimum fuses branch 3's first conv
    with branch 2's head, a group that no segment of the program order can
    hold. dp over ideals finds it (== exhaustive); dp over the program
    order's segments is worse (1.3% with every core choice; asserted here
    with two of them to keep the test short)."""
    from dlfusion import zoo
    from dlfusion.passes.fold_batchnorm import FoldBatchNormPass

    ctx = make_context()
    module = import_model(zoo.build("googlenet"), ctx)
    FoldBatchNormPass().apply(ctx, module)
    full = LayerGraph.of(module)
    names = [f"inception3a_branch{b}" for b in ("2a_conv", "2a_relu", "2b_conv", "2b_relu",
                                                 "3a_conv", "3a_relu", "3b_conv", "3b_relu")]
    graph = search.window(full, [*names, "inception3a_concat"])
    assert len(graph) == 9
    assert search.count_groupings(graph, 8, 10**6) == 1920
    measurer = Measurer.create("mlu100")

    def go(strategy, **opts):
        sctx = StrategyContext(load_target("mlu100"), measurer, dict(opts, core_choices=[4, 16], log=False))
        return get_strategy(strategy)(graph, sctx), sctx.stats

    ideal, ideal_stats = go("dp", space="ideals")
    order, order_stats = go("dp", space="order")
    _, ex_stats = go("exhaustive")
    assert ideal_stats["latency_us"] == pytest.approx(ex_stats["latency_us"], rel=1e-9)
    assert order_stats["latency_us"] > ideal_stats["latency_us"] * 1.001
    first = set(ideal[0].layers)
    assert {"inception3a_branch2a_conv", "inception3a_branch3a_conv"} <= first
    assert "inception3a_branch2b_relu" not in first  # not a segment of the program order


def test_target_core_choices_key(tmp_path):
    from importlib import resources

    text = (resources.files("dlfusion.targets") / "mlu100.toml").read_text()
    assert "core_choices = [1, 2, 4, 8, 16, 32]" in text
    for value, want in [
        ("[1, 64]", r"\[chip\] core_choices has 64, outside 1..32"),
        ("[]", r"\[chip\] core_choices must be a nonempty list of integers"),
        ('"all"', r"\[chip\] core_choices must be a nonempty list of integers"),
    ]:
        path = tmp_path / "t.toml"
        path.write_text(text.replace("core_choices = [1, 2, 4, 8, 16, 32]", f"core_choices = {value}"))
        with pytest.raises(DlfusionError, match=want):
            load_target(str(path))
        load_target.cache_clear()
    # absent: 1..cores
    path.write_text(text.replace("core_choices = [1, 2, 4, 8, 16, 32]", ""))
    t = load_target(str(path))
    load_target.cache_clear()
    assert t.core_choices == () and StrategyContext(t).core_choices() == list(range(1, 33))
