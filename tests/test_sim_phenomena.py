"""The three phenomena of DESIGN.md ("The simulated target"), shown by the
simulator's mechanics on real accel programs of single layers and fused
groups:

1. latency versus core count improves for large layers and gets worse past
   some core count for small ones;
2. layers with few channels use many cores poorly (whole lane groups);
3. fusion saves kernel launches and DRAM round trips while the group fits on
   chip (only the launch once it spills), and one core number for the whole
   group is a trade-off.

The programs come from `lower_plan` below, a small lowering that follows the
rules of docs/accelerator.md ("Lowering"): one kernel per group (ending
with a barrier), output
channels split in whole lane groups (idle cores beyond them), the whole
input of a convolution loaded by every active core through one shared load
entry (which the simulator multicasts: one DRAM read for all of them),
padding materialized on chip, output rows tiled to fit NRAM, weight
sub-blocks to fit WRAM, a fused conv -> pool intermediate kept in NRAM when
the group's working set fits and spilled to DRAM otherwise. Each program's
numbers are checked against the `nn` kernels, so the timings are those of
programs that compute the layer.

Every phenomenon test runs twice: on the programs of `lower_plan` (the
"handbuilt" lowering, which depends only on the dialect and the simulator)
and on the programs of the real pass (`lower-to-accel`, on an ONNX model of
the same layers imported into `nn`, with one `nn.fusion_group` per planned
group; skipped if the pass is not registered). A few exact checks hold only
for the handbuilt programs, whose shape is known here (marked).

The last section runs the concrete examples of the multicast issue on the
real pipeline only (ONNX model -> `import_model` -> `apply_groups` ->
`LowerToAccelPass(target="mlu100")` -> timing-only simulation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.ir import Block, Region
from xdsl.rewriter import InsertPoint, Rewriter

from dlfusion.context import make_context
from dlfusion.dialects import nn
from dlfusion.interpreter import kernels as K
from dlfusion.interpreter import run_module
from dlfusion.sim import simulate
from dlfusion.targets import load_target
from accel_builder import Builder, Kernel, rand

T = load_target("mlu100")
EB = T.element_bytes
NRAM = T.nram_bytes // EB  # elements
WRAM = T.wram_bytes // EB
LO = T.mac_lanes_out
VL = T.vector_lanes


# --------------------------------------------------------------------------
# a small lowering of conv / max-pool chains (docs/accelerator.md rules)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    co: int
    k: int = 3  # stride 1, "same" padding
    relu: bool = True


@dataclass(frozen=True)
class Pool:
    k: int = 2  # max pooling, stride k, no padding


def out_shape(shape, layer):
    n, c, h, w = shape
    if isinstance(layer, Conv):
        return (n, layer.co, h, w)
    return (n, c, h // layer.k, w // layer.k)


def split(c: int, cores: int, lanes: int):
    """Whole lane groups per core: chunk, active cores, per-core [lo, hi)."""
    chunk = math.ceil(math.ceil(c / cores) / lanes) * lanes
    active = math.ceil(c / chunk)
    lo = [min(c, j * chunk) for j in range(cores)]
    hi = [min(c, l + chunk) for l in lo]
    return chunk, active, lo, hi


def rows_that_fit(h: int, per_row: int, fixed: int, budget: int) -> int:
    """The largest divisor of h whose tile fits the budget (at least 1)."""
    for r in range(h, 0, -1):
        if h % r == 0 and fixed + r * per_row <= budget:
            return r
    return 1


def emit_conv(k: Kernel, xin, win, bin_, yout, shape, layer: Conv, cores: int, budget: int, wbudget: int):
    n, c, h, w = shape
    p = layer.k // 2
    ks = layer.k
    chunk, active, lo, hi = split(layer.co, cores, LO)
    sub = chunk
    while sub > LO and sub * (c * ks * ks + 1) > wbudget:
        sub -= LO
    nsub = math.ceil(chunk / sub)
    wp = w + 2 * p
    rows = rows_that_fit(h, c * wp + sub * w, 2 * p * c * wp, budget)
    wb = k.alloc((sub, c, ks, ks), "wram")
    bb = k.alloc((sub,), "wram")
    ib = k.alloc((n, c, rows + 2 * p, wp))
    ob = k.alloc((n, sub, rows, w))
    for j in range(nsub):
        s_lo = [min(hi[i], lo[i] + j * sub) for i in range(cores)]
        s_sz = [max(0, min(hi[i], s_lo[i] + sub) - s_lo[i]) for i in range(cores)]
        k.load(wb, win, [(s, 0, 0, 0) for s in s_lo], [(z, c, ks, ks) for z in s_sz], [(0, 0, 0, 0)])
        k.load(bb, bin_, [(s,) for s in s_lo], [(z,) for z in s_sz], [(0,)])
        for top in range(0, h, rows):
            src_lo, src_hi = max(0, top - p), min(h, top + rows + p)
            if p:
                k.fill(ib, 0.0)
            k.load(ib, xin, [(0, 0, src_lo, 0)], [(n, c, src_hi - src_lo, w)], [(0, 0, src_lo - (top - p), p)])
            k.conv(ob, ib, wb, bb)
            if layer.relu:
                k.eltwise(ob, [ob], "relu")
            k.store(yout, ob, [(0, 0, 0, 0)], [(n, z, rows, w) for z in s_sz], [(0, s, top, 0) for s in s_lo])
    return active


def emit_pool(k: Kernel, xin, yout, shape, layer: Pool, cores: int, budget: int):
    n, c, h, w = shape
    ks = layer.k
    chunk, active, lo, hi = split(c, cores, VL)
    oh, ow = h // ks, w // ks
    rows = rows_that_fit(oh, chunk * (ks * w + ow), 0, budget)
    ib = k.alloc((n, chunk, rows * ks, w))
    ob = k.alloc((n, chunk, rows, ow))
    sz = [b - a for a, b in zip(lo, hi)]
    for top in range(0, oh, rows):
        k.load(ib, xin, [(0, l, top * ks, 0) for l in lo], [(n, z, rows * ks, w) for z in sz], [(0, 0, 0, 0)])
        k.pool(ob, ib, "max", (ks, ks), (ks, ks), (0, 0, 0, 0))
        k.store(yout, ob, [(0, 0, 0, 0)], [(n, z, rows, ow) for z in sz], [(0, l, top, 0) for l in lo])
    return active


def fits_fused(shape, conv: Conv, pool: Pool, cores: int) -> bool:
    """The whole conv -> pool group, untiled, in one core's NRAM and WRAM."""
    n, c, h, w = shape
    p = conv.k // 2
    chunk = split(conv.co, cores, LO)[0]
    nram = n * c * (h + 2 * p) * (w + 2 * p) + n * chunk * h * w + n * chunk * (h // pool.k) * (w // pool.k)
    wram = chunk * (c * conv.k * conv.k + 1)
    return nram <= NRAM and wram <= WRAM


def emit_fused_conv_pool(k: Kernel, xin, win, bin_, yout, shape, conv: Conv, pool: Pool, cores: int):
    """conv -> relu -> pool with the intermediate in NRAM: no store, no reload."""
    n, c, h, w = shape
    p, ks = conv.k // 2, conv.k
    chunk, active, lo, hi = split(conv.co, cores, LO)
    sz = [b - a for a, b in zip(lo, hi)]
    oh, ow = h // pool.k, w // pool.k
    wb = k.alloc((chunk, c, ks, ks), "wram")
    bb = k.alloc((chunk,), "wram")
    ib = k.alloc((n, c, h + 2 * p, w + 2 * p))
    mid = k.alloc((n, chunk, h, w))
    ob = k.alloc((n, chunk, oh, ow))
    k.load(wb, win, [(l, 0, 0, 0) for l in lo], [(z, c, ks, ks) for z in sz], [(0, 0, 0, 0)])
    k.load(bb, bin_, [(l,) for l in lo], [(z,) for z in sz], [(0,)])
    if p:
        k.fill(ib, 0.0)
    k.load(ib, xin, [(0, 0, 0, 0)], [(n, c, h, w)], [(0, 0, p, p)])
    k.conv(mid, ib, wb, bb)
    if conv.relu:
        k.eltwise(mid, [mid], "relu")
    k.pool(ob, mid, "max", (pool.k, pool.k), (pool.k, pool.k), (0, 0, 0, 0))
    k.store(yout, ob, [(0, 0, 0, 0)], [(n, z, oh, ow) for z in sz], [(0, l, 0, 0) for l in lo])
    return active


def lower_plan(shape, layers, plan, seed=0):
    """An accel program for a chain of layers; `plan` lists (number of
    layers, cores) per group, in order. Returns (builder, module, weights)."""
    b = Builder()
    x = b.input("x", shape)
    params = []
    cur, cur_shape = x, shape
    i = 0
    for g, (count, cores) in enumerate(plan):
        group = layers[i : i + count]
        shapes = [cur_shape]
        for layer in group:
            shapes.append(out_shape(shapes[-1], layer))
        weights = []
        for j, layer in enumerate(group):
            if isinstance(layer, Conv):
                c = shapes[j][1]
                w = rand(layer.co, c, layer.k, layer.k, seed=seed + 10 * (i + j)) / math.sqrt(c * layer.k**2)
                bias = rand(layer.co, seed=seed + 10 * (i + j) + 1)
                params.append((w, bias))
                weights.append((b.weight(f"w{i + j}", w), b.weight(f"b{i + j}", bias)))
            else:
                params.append(None)
                weights.append(None)
        y = b.temp(f"g{g}", shapes[-1])
        fused = (
            len(group) == 2
            and isinstance(group[0], Conv)
            and isinstance(group[1], Pool)
            and fits_fused(shapes[0], group[0], group[1], cores)
        )
        if fused:
            wv, bv = weights[0]
            conv_active = split(group[0].co, cores, LO)[1]
            k = b.kernel(f"g{g}", cores, conv_active, [cur, wv, bv, y])
            emit_fused_conv_pool(k, *k.args, shapes[0], group[0], group[1], cores)
        else:
            # each layer tiled on its own; intermediates spilled to DRAM temps
            temps = [b.temp(f"g{g}_t{j}", shapes[j + 1]) for j in range(len(group) - 1)] + [y]
            tensors = [cur] + [t for wb_ in weights if wb_ for t in wb_] + temps
            actives = [
                split(layer.co, cores, LO)[1] if isinstance(layer, Conv) else split(shapes[j][1], cores, VL)[1]
                for j, layer in enumerate(group)
            ]
            k = b.kernel(f"g{g}", cores, max(actives), tensors)
            args = list(k.args)
            src = args[0]
            wargs = iter(args[1 : 1 + 2 * sum(1 for wb_ in weights if wb_)])
            outs = args[1 + 2 * sum(1 for wb_ in weights if wb_) :]
            budget = NRAM // len(group)
            for j, layer in enumerate(group):
                if j:
                    k.barrier()  # the next layer reads what all cores stored
                if isinstance(layer, Conv):
                    emit_conv(k, src, next(wargs), next(wargs), outs[j], shapes[j], layer, cores, budget, WRAM // len(group))
                else:
                    emit_pool(k, src, outs[j], shapes[j], layer, cores, budget)
                src = outs[j]
        k.barrier()  # the kernel ends when all its cores agree
        cur, cur_shape = y, shapes[-1]
        i += count
    assert i == len(layers)
    return b, b.finish({"y": cur}), params


def reference(x, layers, params):
    for layer, p in zip(layers, params):
        if isinstance(layer, Conv):
            pad = layer.k // 2
            x = K.conv2d(x, p[0], p[1], (1, 1), (pad,) * 4, (1, 1), 1)
            if layer.relu:
                x = K.relu(x)
        else:
            x = K.max_pool(x, (layer.k,) * 2, (layer.k,) * 2, (0, 0, 0, 0))
    return x


def handbuilt(shape, layers, plan, check=False) -> tuple[float, dict]:
    """Latency (µs) and report of `lower_plan`'s program; with `check`, a
    full run whose output is compared with the nn kernels."""
    b, module, params = lower_plan(shape, layers, plan)
    if check:
        x = rand(*shape, seed=99)
        r = simulate(module, b.ctx, {"x": x})
        np.testing.assert_allclose(r.outputs["y"], reference(x, layers, params), rtol=1e-4, atol=1e-4)
    else:
        r = simulate(module, b.ctx, None, timing_only=True, record_events=False)
    return r.total_us, r.report


# --------------------------------------------------------------------------
# the same layers through lower-to-accel
# --------------------------------------------------------------------------


def onnx_chain(shape, layers, seed=0):
    """An ONNX model of the chain (Conv [+ Relu], MaxPool), weights as in
    `lower_plan`."""
    nodes, inits = [], []
    cur, c = "x", shape[1]
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv):
            w = rand(layer.co, c, layer.k, layer.k, seed=seed + 10 * i) / math.sqrt(c * layer.k**2)
            bias = rand(layer.co, seed=seed + 10 * i + 1)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
            p = layer.k // 2
            nodes.append(
                helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [f"c{i}"], pads=[p] * 4, kernel_shape=[layer.k] * 2)
            )
            cur, c = f"c{i}", layer.co
            if layer.relu:
                nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
                cur = f"r{i}"
        else:
            nodes.append(
                helper.make_node("MaxPool", [cur], [f"p{i}"], kernel_shape=[layer.k] * 2, strides=[layer.k] * 2)
            )
            cur = f"p{i}"
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, None)], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def group_ops(ops, cores: int, name: str) -> nn.FusionGroupOp:
    """Wrap consecutive layer ops into an nn.fusion_group on `cores` cores."""
    inputs = []
    for op in ops:
        for v in op.operands:
            if v.owner not in ops and v not in inputs:
                inputs.append(v)
    body = Block(arg_types=[v.type for v in inputs])
    mapping = dict(zip(inputs, body.args))
    for op in ops:
        clone = op.clone()
        for i, v in enumerate(op.operands):
            clone.operands[i] = mapping.get(v, v)
        for old, new in zip(op.results, clone.results):
            mapping[old] = new
        body.add_op(clone)
    last = ops[-1]
    body.add_op(nn.YieldOp(mapping[last.results[0]]))
    group = nn.FusionGroupOp(name, inputs, [last.results[0].type], Region(body), cores=cores)
    Rewriter.insert_op(group, InsertPoint.after(last))
    last.results[0].replace_all_uses_with(group.results[0])
    for op in reversed(ops):
        op.detach()
        op.erase()
    return group


def _lower_to_accel():
    from dlfusion.passes import get_all_passes

    factory = get_all_passes().get("lower-to-accel")
    return factory() if factory is not None else None


def lowered(shape, layers, plan, check=False) -> tuple[float, dict]:
    """Latency (µs) and report of lower-to-accel's program for the plan."""
    from dlfusion.frontend import import_model

    ctx = make_context()
    module = import_model(onnx_chain(shape, layers), ctx)
    fn = next(op for op in module.walk() if op.name == "func.func")
    ops = [op for op in fn.body.block.ops if isinstance(op, (nn.Conv2DOp, nn.ReluOp, nn.MaxPoolOp))]
    per_layer, j = [], 0
    for layer in layers:
        n = 2 if isinstance(layer, Conv) and layer.relu else 1
        per_layer.append(ops[j : j + n])
        j += n
    assert j == len(ops)
    feeds = {"x": rand(*shape, seed=99)} if check else None
    expected = run_module(module, ctx, feeds) if check else None
    i = 0
    for g, (count, cores) in enumerate(plan):
        group_ops([op for layer_ops in per_layer[i : i + count] for op in layer_ops], cores, f"g{g}")
        i += count
    module.verify()
    _lower_to_accel()(target="mlu100").apply(ctx, module)
    module.verify()
    r = simulate(module, ctx, feeds, timing_only=not check, record_events=False)
    if check:
        ((name, value),) = expected.items()
        np.testing.assert_allclose(r.outputs[name], value, rtol=1e-4, atol=1e-4)
    return r.total_us, r.report


@pytest.fixture(params=["handbuilt", "lower-to-accel"])
def lower(request):
    if request.param == "handbuilt":
        return handbuilt
    if _lower_to_accel() is None:
        pytest.skip("lower-to-accel is not registered")
    return lowered


CORES = [1, 2, 4, 8, 16, 32]


def curve(lower, shape, layer) -> dict[int, float]:
    return {n: lower(shape, [layer], [(1, n)])[0] for n in CORES}


def dram(report) -> int:
    return sum(k["dram_bytes"] for k in report["kernels"])


# --------------------------------------------------------------------------
# the programs compute the layers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,layers,plan",
    [
        ((1, 8, 8, 8), [Conv(70)], [(1, 3)]),
        ((1, 8, 16, 16), [Conv(40), Pool()], [(2, 2)]),  # fused in NRAM
        ((1, 8, 16, 16), [Conv(40), Pool()], [(1, 2), (1, 4)]),  # unfused
        ((1, 256, 32, 32), [Conv(64, 1), Pool()], [(2, 1)]),  # spills: does not fit
        ((1, 300, 8, 8), [Conv(40)], [(1, 1)]),  # weight sub-blocks and row tiles
        ((1, 16, 12, 12), [Conv(48), Conv(24, 1)], [(2, 2)]),  # conv after conv in one group
    ],
)
def test_the_programs_compute_the_layers(lower, shape, layers, plan):
    _, report = lower(shape, layers, plan, check=True)
    assert len(report["kernels"]) == len(plan)


def test_handbuilt_fused_fits_and_spills_as_intended():
    assert fits_fused((1, 8, 16, 16), Conv(40), Pool(), 2)
    assert not fits_fused((1, 256, 32, 32), Conv(64, 1), Pool(), 1)
    # the fused program has one kernel with no DRAM temporaries in between
    _, fused = handbuilt((1, 8, 16, 16), [Conv(40), Pool()], [(2, 2)])
    _, spilled = handbuilt((1, 256, 32, 32), [Conv(64, 1), Pool()], [(2, 1)])
    assert fused["kernels"][0]["dram_bytes_written"] == 40 * 8 * 8 * EB
    assert spilled["kernels"][0]["dram_bytes_written"] == (64 * 32 * 32 + 64 * 16 * 16) * EB


# --------------------------------------------------------------------------
# 1. large layers speed up with cores, small ones slow down
# --------------------------------------------------------------------------


def test_large_layer_speeds_up_with_cores(lower):
    shape, layer = (1, 256, 28, 28), Conv(1024, 3)
    runs = {n: lower(shape, [layer], [(1, n)]) for n in CORES}
    lat = {n: t for n, (t, _) in runs.items()}
    assert all(lat[a] > lat[b] for a, b in zip(CORES, CORES[1:])), lat
    assert lat[32] < lat[1] / 10, lat
    # the input is multicast: the DRAM reads do not grow with the cores (they
    # shrink: fewer weight sub-blocks re-read the input) ...
    k = {n: rep["kernels"][0] for n, (_, rep) in runs.items()}
    read = {n: k[n]["dram_bytes_read"] for n in CORES}
    assert all(read[b] <= read[a] for a, b in zip(CORES, CORES[1:])), read
    # ... while every byte of the input reaches each of the 32 cores
    assert k[32]["active"] == 32
    assert k[32]["multicast_bytes_saved"] >= 31 * 256 * 28 * 28 * EB
    # what still grows with the cores: dispatch, and each multicast waits for
    # the last core of the kernel, so 32 cores are far from 32 times faster
    assert lat[32] > lat[1] / 32 + 31 * T.core_dispatch_us


def test_small_layer_slows_down_past_some_core_count(lower):
    lat = curve(lower, (1, 64, 7, 7), Conv(64, 3))
    best = min(lat, key=lat.get)
    assert best < 32
    assert lat[32] > lat[best] * 1.3, lat
    # past the best core number, more cores never help
    after = [n for n in CORES if n >= best]
    assert all(lat[a] <= lat[b] for a, b in zip(after, after[1:])), lat


def test_medium_layer_improves_then_worsens(lower):
    lat = curve(lower, (1, 128, 14, 14), Conv(128, 3))
    best = min(lat, key=lat.get)
    assert 1 < best < 32, lat
    assert lat[1] > 1.5 * lat[best] and lat[32] > lat[best]


# --------------------------------------------------------------------------
# 2. few channels use many cores poorly
# --------------------------------------------------------------------------


def test_few_channels_use_many_cores_poorly(lower):
    """16 output channels fill half of one core's 32 lanes. With a channel
    split alone (the hand-built lowering) one core works whatever the plan;
    the real lowering also splits rows, but the speedup stays small while a
    256-channel layer of the same map scales (see the large-layer tests)."""
    shape, layer = (1, 64, 56, 56), Conv(16, 3)
    lat = curve(lower, shape, layer)
    if lower is handbuilt:
        for n in CORES:
            _, rep = lower(shape, [layer], [(1, n)])
            assert rep["kernels"][0]["active"] == 1
            busy = [c["busy_total_ns"] for c in rep["cores"]]
            assert busy[0] > 0 and not any(busy[1:])
        assert all(lat[a] <= lat[b] for a, b in zip(CORES, CORES[1:])), lat
    best = min(lat.values())
    assert lat[1] / best < 3, lat  # far from the 32 cores offered
    assert lat[32] > best, lat  # and all cores are worse than the best
    # on a smaller layer the dispatch of the idle cores shows
    small = curve(lower, (1, 64, 14, 14), layer)
    assert all(small[a] <= small[b] for a, b in zip(CORES, CORES[1:])), small
    assert small[32] - small[1] > 0.5 * 31 * T.core_dispatch_us


def test_few_channels_exact_costs_of_idle_cores():
    """(handbuilt) core 0 does all the work whatever the plan; the idle cores
    only make the closing barrier dearer (core 0 arrives last)."""
    lat = curve(handbuilt, (1, 64, 56, 56), Conv(16, 3))
    for n in CORES[1:]:
        assert lat[n] - lat[1] == pytest.approx((n - 1) * T.barrier_per_core_us, rel=1e-6)


def test_channels_are_padded_to_whole_lane_groups(lower):
    """33 output channels cost the MAC array as much as 64 on one core, and
    32 channels half as much."""
    shape = (1, 64, 28, 28)

    def mac_ns(co):
        _, rep = lower(shape, [Conv(co, 3)], [(1, 1)])
        return rep["cores"][0]["busy_ns"]["mac"]

    assert mac_ns(33) == mac_ns(64)
    assert mac_ns(32) < 0.51 * mac_ns(33)


# --------------------------------------------------------------------------
# 3. fusion: launches and DRAM round trips, only while it fits; one core number
# --------------------------------------------------------------------------


def test_fusion_saves_launch_and_round_trip_when_it_fits(lower):
    shape, layers = (1, 32, 28, 28), [Conv(64, 3), Pool()]
    fused, rf = lower(shape, layers, [(2, 2)])
    apart, ra = lower(shape, layers, [(1, 2), (1, 2)])
    inter = 1 * 64 * 28 * 28 * EB  # the conv's output feature map
    # the intermediate is neither stored nor reloaded
    assert dram(ra) - dram(rf) == 2 * inter
    # one launch fewer, and no DMA of the intermediate: more than a launch saved
    assert apart - fused > T.kernel_launch_us + 0.9 * 2 * inter / T.dram_bandwidth_gbps / 1e3


def test_fusion_that_does_not_fit_spills_and_saves_only_the_launch(lower):
    shape, layers = (1, 256, 32, 32), [Conv(64, 1), Pool()]
    fused, rf = lower(shape, layers, [(2, 2)])
    apart, ra = lower(shape, layers, [(1, 2), (1, 2)])
    assert dram(rf) == dram(ra)  # the intermediate round-trips DRAM anyway
    saved = apart - fused
    # about one launch (the rest: dispatch, tiling with half the memories, barriers)
    assert 0.5 * T.kernel_launch_us < saved < 1.5 * T.kernel_launch_us


def test_one_core_number_for_a_group_is_a_trade_off(lower):
    """A large conv (best on many cores) fused with a small-channel 1x1 conv
    (best on one core): a conv after a conv exchanges or spills its
    intermediate, and the two layers share one core number and one core's
    on-chip memory. The group's best core number is not the small layer's,
    and forcing the small layer's preference on the group costs a lot."""
    shape = (1, 256, 28, 28)
    big, small = Conv(512, 3), Conv(16, 1)
    lat_big = curve(lower, shape, big)
    lat_small = curve(lower, (1, 512, 28, 28), small)
    best_big = min(lat_big, key=lat_big.get)
    best_small = min(lat_small, key=lat_small.get)
    assert best_big >= 8 and best_small <= 4
    group = {n: lower(shape, [big, small], [(2, n)])[0] for n in CORES}
    best_group = min(group, key=group.get)
    assert best_group != best_small
    # forcing the small layer's best core number on the group is much worse
    assert group[best_small] > 2 * group[best_group]


# --------------------------------------------------------------------------
# the multicast issue's examples, on the real pipeline
# --------------------------------------------------------------------------


def onnx_convs(shape, convs) -> tuple:
    """conv (-> relu -> conv)*: `convs` lists (output channels, kernel size);
    the layers' outputs are named l0, l1, ... Returns (model, weight names)."""
    nodes, inits = [], []
    cur, c, i = "x", shape[1], 0
    for j, (co, k) in enumerate(convs):
        if j:
            nodes.append(helper.make_node("Relu", [cur], [f"l{i}"]))
            cur, i = f"l{i}", i + 1
        w = rand(co, c, k, k, seed=j) / math.sqrt(c * k * k)
        inits.append(numpy_helper.from_array(w, f"w{j}"))
        nodes.append(helper.make_node("Conv", [cur, f"w{j}"], [f"l{i}"], pads=[k // 2] * 4, kernel_shape=[k, k]))
        cur, c, i = f"l{i}", co, i + 1
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, None)], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def pipeline(model, groups) -> tuple[float, dict, int]:
    """Import, group (`dlfusion.grouping.Group`s), lower for mlu100, simulate
    timing-only: (latency µs, report, bytes of the program's DRAM weights)."""
    from dlfusion.dialects import accel
    from dlfusion.frontend import import_model
    from dlfusion.grouping import apply_groups
    from dlfusion.passes.lower_to_accel import LowerToAccelPass

    ctx = make_context()
    module = import_model(model, ctx)
    apply_groups(module, groups)
    LowerToAccelPass(target="mlu100").apply(ctx, module)
    module.verify()
    weights = sum(
        math.prod(op.result.type.get_shape()) * EB
        for op in module.walk()
        if isinstance(op, accel.DramOp) and op.kind.data == "weight"
    )
    r = simulate(module, ctx, None, timing_only=True, record_events=False)
    return r.total_us, r.report, weights


def single_conv_curve(shape, co, k, cores=CORES) -> dict[int, tuple[float, dict]]:
    from dlfusion.grouping import Group

    model = onnx_convs(shape, [(co, k)])
    return {n: pipeline(model, [Group(["l0"], n)])[:2] for n in cores}


def test_issue_small_1x1_conv_is_slower_on_all_cores():
    """(a) A 1x1 convolution with 16 channels on a 7x7 map: one lane group,
    one active core; all 32 cores only add dispatch."""
    runs = single_conv_curve((1, 16, 7, 7), 16, 1)
    lat = {n: t for n, (t, _) in runs.items()}
    assert all(rep["kernels"][0]["active"] == 1 for _, rep in runs.values())
    few = min(lat[n] for n in (1, 2, 4))
    assert lat[32] > 1.3 * few, lat


def test_issue_large_3x3_conv_speeds_up_more_than_10x():
    """(b) A 3x3 convolution 256 -> 256 on 56x56: with the input multicast
    (one DRAM read whatever the core count), all 32 cores are more than 10
    times faster than one. Needs more than C/32 = 8 active cores."""
    runs = single_conv_curve((1, 256, 56, 56), 256, 3, cores=[1, 32])
    (t1, _), (t32, rep) = runs[1], runs[32]
    assert rep["kernels"][0]["active"] > 8
    assert t1 / t32 > 10, (t1, t32)


@pytest.mark.parametrize("cores", [1, 2])
def test_issue_fusion_saves_exactly_the_intermediate_traffic_while_it_fits(cores):
    """(c) conv -> relu -> conv as one group vs three kernels. While the group
    fits on chip, the fused kernel saves exactly the store and the reload of
    both intermediate maps (l0, l1): with the input of each convolution read
    once (multicast), nothing else differs, except the small constants the
    lowering may add to a fused program (channel-placement weights), read
    once each. With a larger map the group spills: the intermediates are
    stored and reloaded anyway, and nothing is saved."""
    from dlfusion.grouping import Group

    def traffic(rep):
        return sum(k["dram_bytes"] for k in rep["kernels"])

    convs = [(64, 3), (64, 3)]
    # fits: 32 -> 64 -> 64 channels on 28x28
    shape = (1, 32, 28, 28)
    model = onnx_convs(shape, convs)
    fused_t, fused, fused_w = pipeline(model, [Group(["l0", "l1", "l2"], cores)])
    apart_t, apart, apart_w = pipeline(model, [Group([n], cores) for n in ("l0", "l1", "l2")])
    inter = 64 * 28 * 28 * EB  # l0 and l1 (conv output, relu output)
    assert len(fused["kernels"]) == 1 and len(apart["kernels"]) == 3
    k0, k1, k2 = apart["kernels"]
    (kf,) = fused["kernels"]
    # apart: l0 and l1 are each stored once and reloaded once (multicast)
    assert k0["dram_bytes_written"] == k1["dram_bytes_written"] == inter
    assert k1["dram_bytes_read"] == inter
    assert k2["dram_bytes_read"] == inter + 64 * 64 * 9 * EB
    # fused: only the output leaves the chip
    assert kf["dram_bytes_written"] == k2["dram_bytes_written"] == inter
    extra = fused_w - apart_w  # constants of the fused lowering, if any
    assert 0 <= extra < inter / 10
    assert traffic(apart) - traffic(fused) == 4 * inter - extra
    assert apart_t - fused_t > 2 * T.kernel_launch_us

    # does not fit: the same layers on 56x56 spill their intermediates
    shape = (1, 32, 56, 56)
    model = onnx_convs(shape, convs)
    fused_t, fused, _ = pipeline(model, [Group(["l0", "l1", "l2"], cores)])
    apart_t, apart, _ = pipeline(model, [Group([n], cores) for n in ("l0", "l1", "l2")])
    inter = 64 * 56 * 56 * EB
    (kf,) = fused["kernels"]
    assert kf["dram_bytes_written"] == 3 * inter  # l0, l1 and the output
    assert kf["dram_bytes_read"] >= sum(k["dram_bytes_read"] for k in apart["kernels"])
    assert traffic(fused) >= traffic(apart)  # no saving (tiling in a shared NRAM re-reads halos)
    assert apart_t - fused_t < 2 * T.kernel_launch_us  # at most the launches
