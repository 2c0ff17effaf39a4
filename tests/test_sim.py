"""The accelerator simulator (dlfusion.sim): numbers against the `nn` kernels,
the timing equations of docs/accelerator.md on tiny cases, timing-only runs,
reports, and `dlfusion-run` on accel programs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp, f32, i64
from xdsl.ir import Region

from dlfusion.context import make_context
from dlfusion.dialects import accel
from dlfusion.dialects.nn import ints
from dlfusion.errors import DlfusionError
from dlfusion.interpreter import kernels as K
from dlfusion.ir_io import print_module
from dlfusion.sim import simulate
from dlfusion.sim.machine import KernelProgram, Machine, TimingModel
from dlfusion.sim.report import trace_json, write_gantt, write_report, write_trace
from dlfusion.targets import load_target

sys.path.insert(0, str(Path(__file__).parent))
from accel_builder import Builder, rand  # noqa: E402

BIN = Path(sys.executable).parent
MLU = load_target("mlu100")


def conv_layer(b: Builder, x, x_shape, w, bias, cores, pad=1, relu=True, name="conv"):
    """A conv split over `cores` by output channels, as lower-to-accel does:
    the whole input is one shared load entry (multicast to the active cores),
    each core loads its own weight chunk."""
    n, c, h, wd = x_shape
    co = w.shape[0]
    lanes = MLU.mac_lanes_out
    chunk = math.ceil(math.ceil(co / cores) / lanes) * lanes  # whole lane groups
    active = math.ceil(co / chunk)
    kh, kw = w.shape[2:]
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    wv = b.weight(f"{name}_w", w)
    bv = b.weight(f"{name}_b", bias)
    y = b.temp(name, (n, co, ho, wo))
    k = b.kernel(name, cores, active, [x, wv, bv, y])
    xin, win, bin_, yout = k.args
    i = k.alloc((n, c, h + 2 * pad, wd + 2 * pad))
    kw_ = k.alloc((chunk, c, kh, kw), "wram")
    kb = k.alloc((chunk,), "wram")
    o = k.alloc((n, chunk, ho, wo))
    k.fill(i, 0.0)
    k.load(i, xin, [(0, 0, 0, 0)], [(n, c, h, wd)], [(0, 0, pad, pad)])
    lo = [min(co, j * chunk) for j in range(cores)]
    sz = [max(0, min(co, l + chunk) - l) for l in lo]
    k.load(kw_, win, [(l, 0, 0, 0) for l in lo], [(s, c, kh, kw) for s in sz], [(0, 0, 0, 0)])
    k.load(kb, bin_, [(l,) for l in lo], [(s,) for s in sz], [(0,)])
    k.conv(o, i, kw_, kb)
    if relu:
        k.eltwise(o, [o], "relu")
    k.store(yout, o, [(0, 0, 0, 0)], [(n, s, ho, wo) for s in sz], [(0, l, 0, 0) for l in lo])
    return y, (n, co, ho, wo), active


def ref_conv(x, w, bias, pad=1, relu=True):
    y = K.conv2d(x, w, bias, (1, 1), (pad,) * 4, (1, 1), 1)
    return K.relu(y) if relu else y


def events_of(result, label=None, core=None):
    return [e for e in result.events if (label is None or e.label == label) and (core is None or e.core == core)]


# --------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cores", [1, 2, 3, 4])
def test_conv_split_over_cores_matches_nn(cores):
    b = Builder()
    x = b.input("x", (1, 5, 9, 7))
    w, bias = rand(70, 5, 3, 3, seed=1), rand(70, seed=2)
    y, _, active = conv_layer(b, x, (1, 5, 9, 7), w, bias, cores)
    module = b.finish({"y": y})
    xv = rand(1, 5, 9, 7, seed=3)
    r = simulate(module, b.ctx, {"x": xv})
    np.testing.assert_allclose(r.outputs["y"], ref_conv(xv, w, bias), rtol=1e-5, atol=1e-5)
    assert r.report["kernels"][0]["active"] == active
    # chunks are whole lane groups of 32: 70 channels -> at most 3 active cores
    assert active == min(cores, 3)


def test_idle_cores_do_nothing_but_are_dispatched():
    """16 channels on 4 cores: one active core; idle cores execute no
    instruction, yet their dispatch is in the kernel's latency."""
    b = Builder()
    x = b.input("x", (1, 3, 6, 6))
    w, bias = rand(16, 3, 3, 3, seed=1), rand(16, seed=2)
    y, _, active = conv_layer(b, x, (1, 3, 6, 6), w, bias, 4)
    assert active == 1
    module = b.finish({"y": y})
    xv = rand(1, 3, 6, 6, seed=3)
    r = simulate(module, b.ctx, {"x": xv})
    np.testing.assert_allclose(r.outputs["y"], ref_conv(xv, w, bias), rtol=1e-5, atol=1e-5)
    assert {e.core for e in r.events} == {0}
    busy = [c["busy_total_ns"] for c in r.report["cores"]]
    assert busy[0] > 0 and busy[1:4] == [0, 0, 0]
    # the idle cores still finish at their dispatch times
    k = r.report["kernels"][0]
    assert k["end_us"] >= k["dispatch_us"] + 3 * MLU.core_dispatch_us


def test_exchange_between_fused_convs_and_views():
    """conv1 split over 2 cores -> all-gather in NRAM -> conv2 split over the
    same cores; the result leaves through a view (flatten) into a matmul
    kernel. Each core places its conv1 channels at their offset in the
    exchange buffer by loading its weight chunk at that offset of a zeroed
    full-size weight buffer (per-core dst_offsets)."""
    b = Builder()
    xs = (1, 4, 6, 6)
    x = b.input("x", xs)
    w1, b1 = rand(64, 4, 3, 3, seed=1), rand(64, seed=2)
    w2, b2 = rand(64, 64, 1, 1, seed=3), rand(64, seed=4)
    fc, fcb = rand(10, 64 * 36, seed=5), rand(10, seed=6)
    W1, B1, W2, B2 = (b.weight(n, a) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)))
    t = b.temp("t", (1, 64, 6, 6))
    k = b.kernel("fused", 2, 2, [x, W1, B1, W2, B2, t])
    xin, w1in, b1in, w2in, b2in, tout = k.args
    i = k.alloc((1, 4, 8, 8))
    kw1 = k.alloc((64, 4, 3, 3), "wram")
    kb1 = k.alloc((64,), "wram")
    mid = k.alloc((1, 64, 6, 6))
    kw2 = k.alloc((32, 64, 1, 1), "wram")
    kb2 = k.alloc((32,), "wram")
    o = k.alloc((1, 32, 6, 6))
    k.fill(i)
    k.load(i, xin, [(0, 0, 0, 0)], [(1, 4, 6, 6)], [(0, 0, 1, 1)])
    k.load(kw1, w1in, [(0, 0, 0, 0), (32, 0, 0, 0)], [(32, 4, 3, 3)], [(0, 0, 0, 0), (32, 0, 0, 0)])
    k.load(kb1, b1in, [(0,), (32,)], [(32,)], [(0,), (32,)])
    k.conv(mid, i, kw1, kb1)
    k.eltwise(mid, [mid], "relu")
    k.exchange(mid, 1, [(0, 32), (32, 64)])
    k.load(kw2, w2in, [(0, 0, 0, 0), (32, 0, 0, 0)], [(32, 64, 1, 1)], [(0, 0, 0, 0)])
    k.load(kb2, b2in, [(0,), (32,)], [(32,)], [(0,)])
    k.conv(o, mid, kw2, kb2)
    k.store(tout, o, [(0, 0, 0, 0)], [(1, 32, 6, 6)], [(0, 0, 0, 0), (0, 32, 0, 0)])
    k.barrier()
    flat = b.view(t, (1, 64 * 36))
    FC, FCB = b.weight("fc", fc), b.weight("fcb", fcb)
    out = b.temp("logits", (1, 10))
    k2 = b.kernel("fc", 1, 1, [flat, FC, FCB, out])
    a_in, fc_in, fcb_in, o_out = k2.args
    a = k2.alloc((1, 64 * 36))
    wb = k2.alloc((10, 64 * 36), "wram")
    bb = k2.alloc((10,), "wram")
    ob = k2.alloc((1, 10))
    k2.load(a, a_in, [(0, 0)], [(1, 64 * 36)], [(0, 0)])
    k2.load(wb, fc_in, [(0, 0)], [(10, 64 * 36)], [(0, 0)])
    k2.load(bb, fcb_in, [(0,)], [(10,)], [(0,)])
    k2.matmul(ob, a, wb, bb, trans_b=True)
    k2.store(o_out, ob, [(0, 0)], [(1, 10)], [(0, 0)])
    module = b.finish({"logits": out, "t": t})
    xv = rand(*xs, seed=7)
    r = simulate(module, b.ctx, {"x": xv})
    h1 = K.relu(K.conv2d(xv, w1, b1, (1, 1), (1, 1, 1, 1), (1, 1), 1))
    t_ref = K.conv2d(h1, w2, b2, (1, 1), (0,) * 4, (1, 1), 1)
    np.testing.assert_allclose(r.outputs["t"], t_ref, rtol=1e-4, atol=1e-4)
    logits = K.gemm(t_ref.reshape(1, -1), fc, fcb, False, True)
    np.testing.assert_allclose(r.outputs["logits"], logits, rtol=1e-4, atol=1e-3)
    # each core receives the other's 32 channels over the interconnect
    assert r.report["kernels"][0]["interconnect_bytes"] == 2 * (32 * 36 * 2)
    # the timing-only run gives the same report
    rt = simulate(module, b.ctx, None, timing_only=True)
    assert rt.outputs == {}
    assert rt.report == r.report


def test_exchange_all_gather():
    """Each core's range along the axis lands in every core's buffer; an idle
    core (active < cores) receives too."""
    b = Builder()
    x = b.input("x", (1, 6, 2, 2))
    outs = [b.temp(f"o{c}", (1, 6, 2, 2)) for c in range(3)]
    k = b.kernel("gather", 3, 2, [x, *outs])
    xin, *oo = k.args
    buf = k.alloc((1, 6, 2, 2))
    # core 0 loads channels [0, 2), core 1 [2, 6) (same positions in its buffer)
    k.load(buf, xin, [(0, 0, 0, 0), (0, 2, 0, 0), (0, 0, 0, 0)], [(1, 2, 2, 2), (1, 4, 2, 2), (0, 0, 0, 0)],
           [(0, 0, 0, 0), (0, 2, 0, 0), (0, 0, 0, 0)])
    k.exchange(buf, 1, [(0, 2), (2, 6), (6, 6)])
    # each active core stores its whole buffer to its own tensor; core 2 is idle
    for c in range(3):
        sizes = [(0, 0, 0, 0)] * 3
        sizes[c] = (1, 6, 2, 2)
        if c < 2:
            k.store(oo[c], buf, [(0, 0, 0, 0)], sizes, [(0, 0, 0, 0)])
    module = b.finish({f"o{c}": outs[c] for c in range(2)})
    xv = rand(1, 6, 2, 2, seed=1)
    r = simulate(module, b.ctx, {"x": xv})
    for c in range(2):
        np.testing.assert_array_equal(r.outputs[f"o{c}"], xv)
    # bytes received: core 0 gets 4 channels, core 1 gets 2, core 2 gets all 6
    eb = MLU.element_bytes
    assert r.report["kernels"][0]["interconnect_bytes"] == (4 + 2 + 6) * 4 * eb
    ic = sorted((e.core, e.end - e.start) for e in r.events if e.unit == "interconnect")
    assert [c for c, _ in ic] == [0, 1, 2]
    # the idle core takes part in the exchange only
    assert {e.label for e in r.events if e.core == 2} == {"exchange", "exchange.barrier"}


def test_pool_eltwise_vector_numerics():
    b = Builder()
    xs = (1, 3, 7, 7)
    x = b.input("x", xs)
    z = b.input("z", (1, 3, 1, 1))
    mp = b.temp("mp", (1, 3, 4, 4))
    ap = b.temp("ap", (1, 3, 4, 4))
    sm = b.temp("sm", (1, 3, 4, 4))
    k = b.kernel("misc", 1, 1, [x, z, mp, ap, sm])
    xin, zin, mpo, apo, smo = k.args
    im = k.alloc((1, 3, 9, 9))
    ia = k.alloc((1, 3, 9, 9))
    zb = k.alloc((1, 3, 1, 1))
    om = k.alloc((1, 3, 4, 4))
    oa = k.alloc((1, 3, 4, 4))
    os_ = k.alloc((1, 3, 4, 4))
    k.fill(im, -math.inf)
    k.fill(ia, 0.0)
    for buf in (im, ia):
        k.load(buf, xin, [(0, 0, 0, 0)], [xs], [(0, 0, 1, 1)])
    k.load(zb, zin, [(0, 0, 0, 0)], [(1, 3, 1, 1)], [(0, 0, 0, 0)])
    k.pool(om, im, "max", (3, 3), (2, 2), (1, 1, 1, 1))
    k.pool(oa, ia, "avg", (3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=False)
    k.eltwise(om, [om, zb], "add")
    k.eltwise(oa, [oa], "leaky_relu", alpha=FloatAttr(0.1, f32))
    k.vector(os_, [oa], "softmax", axis=IntegerAttr(1, i64))
    k.eltwise(os_, [os_], "clip", min=FloatAttr(0.0, f32), max=FloatAttr(0.3, f32))
    k.store(mpo, om, [(0, 0, 0, 0)], [(1, 3, 4, 4)], [(0, 0, 0, 0)])
    k.store(apo, oa, [(0, 0, 0, 0)], [(1, 3, 4, 4)], [(0, 0, 0, 0)])
    k.store(smo, os_, [(0, 0, 0, 0)], [(1, 3, 4, 4)], [(0, 0, 0, 0)])
    module = b.finish({"mp": mp, "ap": ap, "sm": sm})
    xv, zv = rand(*xs, seed=1), rand(1, 3, 1, 1, seed=2)
    r = simulate(module, b.ctx, {"x": xv, "z": zv})
    mp_ref = K.max_pool(xv, (3, 3), (2, 2), (1, 1, 1, 1)) + zv
    ap_ref = K.leaky_relu(K.avg_pool(xv, (3, 3), (2, 2), (1, 1, 1, 1), False, False), 0.1)
    sm_ref = K.clip(K.softmax(ap_ref, 1), 0.0, 0.3)
    np.testing.assert_allclose(r.outputs["mp"], mp_ref, rtol=1e-6)
    np.testing.assert_allclose(r.outputs["ap"], ap_ref, rtol=1e-6)
    np.testing.assert_allclose(r.outputs["sm"], sm_ref, rtol=1e-6)


def test_vector_layers_run_the_nn_kernels():
    """accel.vector runs the nn op it names with its params (transpose,
    slice, concat, reduce_mean, global_avg_pool, pad); an unknown layer is a
    one-line error."""
    from xdsl.dialects.builtin import StringAttr

    b = Builder()
    x = b.input("x", (1, 4, 3, 5))
    outs = {
        "tr": b.temp("tr", (1, 5, 3, 4)),
        "sl": b.temp("sl", (1, 2, 3, 2)),
        "cat": b.temp("cat", (1, 8, 3, 5)),
        "rm": b.temp("rm", (1, 4)),
        "gap": b.temp("gap", (1, 4, 1, 1)),
        "pad": b.temp("pad", (1, 4, 5, 5)),
    }
    k = b.kernel("vec", 1, 1, [x, *outs.values()])
    xin, *dram = k.args
    xb = k.alloc((1, 4, 3, 5))
    k.load(xb, xin, [(0, 0, 0, 0)], [(1, 4, 3, 5)], [(0, 0, 0, 0)])
    bufs = {name: k.alloc(d.type.get_shape()) for name, d in zip(outs, dram)}
    k.vector(bufs["tr"], [xb], "transpose", perm=ints([0, 3, 2, 1]))
    k.vector(bufs["sl"], [xb], "nn.slice", starts=ints([0, 1, 0, 0]), ends=ints([1, 4, 3, 5]), steps=ints([1, 2, 1, 3]))
    k.vector(bufs["cat"], [xb, xb], "concat", axis=IntegerAttr(1, i64))
    k.vector(bufs["rm"], [xb], "reduce_mean", axes=ints([2, 3]), keepdims=IntegerAttr(0, i64))
    k.vector(bufs["gap"], [xb], "global_avg_pool")
    k.vector(bufs["pad"], [xb], "pad", pads=ints([0, 0, 1, 0, 0, 0, 1, 0]), mode=StringAttr("edge"),
             value=FloatAttr(0.0, f32))
    for name, d in zip(outs, dram):
        shape = tuple(d.type.get_shape())
        k.store(d, bufs[name], [(0,) * len(shape)], [shape], [(0,) * len(shape)])
    module = b.finish(outs)
    xv = rand(1, 4, 3, 5, seed=1)
    r = simulate(module, b.ctx, {"x": xv})
    np.testing.assert_array_equal(r.outputs["tr"], xv.transpose(0, 3, 2, 1))
    np.testing.assert_array_equal(r.outputs["sl"], xv[:, 1:4:2, :, 0:5:3])
    np.testing.assert_array_equal(r.outputs["cat"], np.concatenate([xv, xv], axis=1))
    np.testing.assert_allclose(r.outputs["rm"], xv.mean(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(r.outputs["gap"], xv.mean(axis=(2, 3), keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(r.outputs["pad"], np.pad(xv, [(0, 0), (0, 0), (1, 1), (0, 0)], mode="edge"))
    # the reductions' work per element is the reduced extent (15), others 1
    ov = MLU.instruction_overhead_cycles
    dur = {e.label: e.end - e.start for e in r.events if e.unit == "vector"}
    assert dur["vector.reduce_mean"] == ov + 1 * 15 and dur["vector.global_avg_pool"] == ov + 15
    assert dur["vector.transpose"] == ov + 1 and dur["vector.concat"] == ov + 2  # 120 outputs

    b2 = Builder()
    x2 = b2.input("x", (1, 4))
    k2 = b2.kernel("bad", 1, 1, [x2])
    buf = k2.alloc((1, 4))
    k2.vector(buf, [buf], "frobnicate")
    module2 = b2.finish({"x": x2})
    with pytest.raises(DlfusionError, match="accel.vector: 'frobnicate' is not an nn layer"):
        simulate(module2, b2.ctx, None)
    assert simulate(module2, b2.ctx, None, timing_only=True).total_us > 0


def test_row_tiles_with_halo():
    """A conv computed in two row tiles (input tiles with halo rows), as the
    lowering tiles a layer that does not fit in NRAM."""
    b = Builder()
    xs = (1, 2, 8, 5)
    x = b.input("x", xs)
    w = rand(3, 2, 3, 3, seed=1)
    W = b.weight("w", w)
    y = b.temp("y", (1, 3, 8, 5))
    k = b.kernel("tiled", 1, 1, [x, W, y])
    xin, win, yout = k.args
    kw_ = k.alloc((3, 2, 3, 3), "wram")
    k.load(kw_, win, [(0, 0, 0, 0)], [(3, 2, 3, 3)], [(0, 0, 0, 0)])
    for top in (0, 4):  # output rows [top, top + 4)
        i = k.alloc((1, 2, 6, 7))
        o = k.alloc((1, 3, 4, 5))
        k.fill(i)
        lo, hi = max(0, top - 1), min(8, top + 5)
        k.load(i, xin, [(0, 0, lo, 0)], [(1, 2, hi - lo, 5)], [(0, 0, lo - (top - 1), 1)])
        k.conv(o, i, kw_)
        k.store(yout, o, [(0, 0, 0, 0)], [(1, 3, 4, 5)], [(0, 0, top, 0)])
    module = b.finish({"y": y})
    xv = rand(*xs, seed=2)
    r = simulate(module, b.ctx, {"x": xv})
    np.testing.assert_allclose(r.outputs["y"], K.conv2d(xv, w, None, (1, 1), (1, 1, 1, 1)), rtol=1e-5, atol=1e-5)


def test_input_errors_are_one_line():
    b = Builder()
    x = b.input("x", (1, 2, 3, 3))
    module = b.finish({"x": x})
    with pytest.raises(DlfusionError, match=r"missing input tensor 'x' \(expected shape \[1, 2, 3, 3\]"):
        simulate(module, b.ctx, {})
    with pytest.raises(DlfusionError, match=r"input tensor 'x' has shape \[1, 2\], expected \[1, 2, 3, 3\]"):
        simulate(module, b.ctx, {"x": np.zeros((1, 2), np.float32)})
    with pytest.raises(DlfusionError, match="unknown input tensor"):
        simulate(module, b.ctx, {"x": np.zeros((1, 2, 3, 3), np.float32), "q": np.zeros(1, np.float32)})
    # no kernel: the output is the input, the time is 0
    r = simulate(module, b.ctx, {"x": np.ones((1, 2, 3, 3), np.float32)})
    assert r.total_us == 0 and r.outputs["x"].sum() == 18


def test_more_cores_than_the_target_is_rejected():
    b = Builder("mlu100")
    x = b.input("x", (1, 2, 3, 3))
    k = b.kernel("k", 16, 1, [x])
    k.barrier()
    module = b.finish({"x": x})
    r = simulate(module, b.ctx, None, timing_only=True)
    assert r.report["kernels"][0]["cores"] == 16
    with pytest.raises(DlfusionError, match="kernel 'k' uses 16 cores; target 'edge8' has 8"):
        simulate(module, b.ctx, None, timing_only=True, target="edge8")


# --------------------------------------------------------------------------
# time: the equations of docs/accelerator.md on tiny cases
# --------------------------------------------------------------------------


def machine(target=MLU, eb=2):
    return Machine(TimingModel(target, eb))


def test_one_dma_alone():
    m = machine()
    kp = KernelProgram("k", 1, 1)
    kp.dma("load", (4096,))
    st = m.run_kernel(kp)
    launch = MLU.kernel_launch_us * 1e3
    assert st.start_ns == launch
    assert st.end_ns == pytest.approx(launch + MLU.dma_latency_ns + 4096 / MLU.dram_bandwidth_gbps, rel=1e-12)
    assert m.busy[0]["dma"] == pytest.approx(MLU.dma_latency_ns + 4096 / MLU.dram_bandwidth_gbps, rel=1e-12)


def test_two_dmas_share_the_bandwidth():
    """Core 0's transfer runs alone for one dispatch interval, then shares the
    bandwidth with core 1's; when it ends core 1 has the whole bandwidth."""
    m = machine()
    b0, b1 = 200_000, 300_000
    kp = KernelProgram("k", 2, 2)
    kp.dma("load", (b0, b1))
    m.run_kernel(kp)
    bw, lat, d = MLU.dram_bandwidth_gbps, MLU.dma_latency_ns, MLU.core_dispatch_us * 1e3
    s = MLU.kernel_launch_us * 1e3
    t0, t1 = s + lat, s + d + lat
    alone = (t1 - t0) * bw
    assert alone < b0
    r0 = b0 - alone
    end0 = t1 + 2 * r0 / bw
    end1 = end0 + (b1 - r0) / bw
    ends = {e.core: e.end for e in m.events}
    assert ends[0] == pytest.approx(end0, rel=1e-12)
    assert ends[1] == pytest.approx(end1, rel=1e-12)
    assert m.total_ns == pytest.approx(end1, rel=1e-12)


def test_bandwidth_is_re_divided_at_every_join_and_completion():
    """Three transfers joining one dispatch interval apart: alone, then two,
    then three sharing; then two and one again as they complete."""
    m = machine()
    nbytes = 1_000_000
    kp = KernelProgram("k", 3, 3)
    kp.dma("load", (nbytes,) * 3)
    m.run_kernel(kp)
    bw, lat, d = MLU.dram_bandwidth_gbps, MLU.dma_latency_ns, MLU.core_dispatch_us * 1e3
    t0 = MLU.kernel_launch_us * 1e3 + lat
    t2 = t0 + 2 * d
    r0 = nbytes - d * bw - d * bw / 2  # core 0's rest when core 2 joins
    r1 = nbytes - d * bw / 2
    end0 = t2 + 3 * r0 / bw
    end1 = end0 + 2 * (r1 - r0) / bw
    end2 = end1 + (nbytes - r1) / bw
    ends = {e.core: e.end for e in m.events}
    assert [ends[0], ends[1], ends[2]] == pytest.approx([end0, end1, end2], rel=1e-12)


def test_equal_concurrent_dmas_take_n_times_as_long(tmp_path):
    """With (almost) no dispatch offset, n equal transfers each take n times
    as long as one alone: processor sharing across cores."""
    src = (Path(__file__).parents[1] / "dlfusion" / "targets" / "mlu100.toml").read_text()
    src = src.replace("core_dispatch_us = 0.5", "core_dispatch_us = 1e-9")
    path = tmp_path / "t.toml"
    path.write_text(src)
    tgt = load_target(str(path))
    m = machine(tgt)
    n, nbytes = 8, 1_000_000
    kp = KernelProgram("k", n, n)
    kp.dma("load", (nbytes,) * n)
    m.run_kernel(kp)
    durs = [e.end - e.start for e in m.events]
    expect = tgt.dma_latency_ns + n * nbytes / tgt.dram_bandwidth_gbps
    assert durs == pytest.approx([expect] * n, rel=1e-6)


# -- multicast loads ---------------------------------------------------------


@pytest.mark.parametrize("n", [2, 8])
def test_multicast_is_one_transfer_after_the_last_core_arrives(n):
    """n cores loading the same slice: the earlier cores wait (idle) for the
    last one (dispatched last); then one transfer pays the DMA latency once
    and moves the bytes once at the whole bandwidth, ending on every core at
    the same time. The DRAM counter counts the slice once."""
    m = machine()
    nbytes = 200_000
    kp = KernelProgram("k", n, n)
    kp.dma("load", (nbytes,) * n, slices=("x",) * n)
    st = m.run_kernel(kp)
    bw, lat, d = MLU.dram_bandwidth_gbps, MLU.dma_latency_ns, MLU.core_dispatch_us * 1e3
    s = MLU.kernel_launch_us * 1e3
    t0 = s + (n - 1) * d  # the last core arrives
    end = t0 + lat + nbytes / bw
    dma = sorted((e for e in m.events if e.unit == "dma"), key=lambda e: e.core)
    assert [e.core for e in dma] == list(range(n))
    for e in dma:
        assert e.label == "load.multicast"
        assert e.start == pytest.approx(t0) and e.end == pytest.approx(end, rel=1e-12)
    waits = sorted((e for e in m.events if e.unit == "sync"), key=lambda e: e.core)
    assert [e.core for e in waits] == list(range(n - 1))
    for e in waits:
        assert e.start == pytest.approx(s + e.core * d) and e.end == pytest.approx(t0)
    # the wait is idle time, not DMA time
    for c in range(n):
        assert m.busy[c]["dma"] == pytest.approx(lat + nbytes / bw, rel=1e-12)
    assert m.total_ns == pytest.approx(end, rel=1e-12)
    assert st.dram_bytes_read == nbytes
    assert st.multicast_transfers == 1 and st.multicast_bytes_saved == (n - 1) * nbytes
    assert st.instructions == n  # executed on every core


def test_different_slices_share_the_bandwidth_as_before():
    """Two cores loading different slices: two transfers in processor sharing,
    exactly as a load without slice keys (see
    test_two_dmas_share_the_bandwidth)."""
    b0, b1 = 200_000, 300_000
    runs = []
    for slices in (None, ("a", "b")):
        m = machine()
        kp = KernelProgram("k", 2, 2)
        kp.dma("load", (b0, b1), slices=slices)
        st = m.run_kernel(kp)
        runs.append((m, st))
    (m0, st0), (m1, st1) = runs
    assert m1.events == m0.events and m1.total_ns == m0.total_ns
    assert st1.dram_bytes_read == st0.dram_bytes_read == b0 + b1
    assert st1.multicast_transfers == 0 and st1.multicast_bytes_saved == 0
    bw, lat, d = MLU.dram_bandwidth_gbps, MLU.dma_latency_ns, MLU.core_dispatch_us * 1e3
    s = MLU.kernel_launch_us * 1e3
    t1 = s + d + lat
    r0 = b0 - (t1 - s - lat) * bw
    end0 = t1 + 2 * r0 / bw
    end1 = end0 + (b1 - r0) / bw
    ends = {e.core: e.end for e in m1.events}
    assert ends[0] == pytest.approx(end0, rel=1e-12) and ends[1] == pytest.approx(end1, rel=1e-12)
    assert not [e for e in m1.events if e.unit == "sync"]


def test_multicast_and_unicast_mixed():
    """Cores 0 and 2 load slice A together, core 1 its own slice B. Core 1's
    transfer starts when it arrives and runs alone; the multicast starts when
    core 2 (the last of its set) arrives and then shares the bandwidth with
    core 1's as ONE transfer (each at BW / 2, not BW / 3)."""
    m = machine()
    a, b = 100_000, 300_000
    kp = KernelProgram("k", 3, 3)
    kp.dma("load", (a, b, a), slices=("A", "B", "A"))
    st = m.run_kernel(kp)
    bw, lat, d = MLU.dram_bandwidth_gbps, MLU.dma_latency_ns, MLU.core_dispatch_us * 1e3
    s = MLU.kernel_launch_us * 1e3
    t2 = s + 2 * d + lat  # the multicast joins
    r1 = b - d * bw  # core 1's rest then (it ran alone for one dispatch interval)
    assert r1 > a
    end_a = t2 + 2 * a / bw
    end_b = end_a + (r1 - a) / bw
    dma = {e.core: e for e in m.events if e.unit == "dma"}
    assert dma[0].start == dma[2].start == pytest.approx(s + 2 * d)
    assert dma[0].end == dma[2].end == pytest.approx(end_a, rel=1e-12)
    assert dma[1].label == "load" and dma[1].start == pytest.approx(s + d)
    assert dma[1].end == pytest.approx(end_b, rel=1e-12)
    waits = [(e.core, e.start, e.end) for e in m.events if e.unit == "sync"]
    assert waits == [(0, pytest.approx(s), pytest.approx(s + 2 * d))]
    assert m.busy[0]["dma"] == pytest.approx(end_a - s - 2 * d, rel=1e-12)
    assert m.busy[1]["dma"] == pytest.approx(end_b - s - d, rel=1e-12)
    assert st.dram_bytes_read == a + b
    assert st.multicast_transfers == 1 and st.multicast_bytes_saved == a


def test_multicast_waits_for_a_core_delayed_by_its_own_load():
    """A unicast load of different sizes, then a shared slice: the core whose
    first load took longer arrives last, and the multicast starts then; the
    store after it is per core again (stores are never multicast)."""
    m = machine()
    b0, b1, shared = 400_000, 40_000, 100_000
    kp = KernelProgram("k", 2, 2)
    kp.dma("load", (b0, b1), slices=("w0", "w1"))
    kp.dma("load", (shared, shared), slices=("x", "x"))
    kp.dma("store", (1000, 1000))
    st = m.run_kernel(kp)
    bw, lat, d = MLU.dram_bandwidth_gbps, MLU.dma_latency_ns, MLU.core_dispatch_us * 1e3
    s = MLU.kernel_launch_us * 1e3
    # first loads: core 0 alone for one dispatch interval, then both share
    t1 = s + d + lat
    r0 = b0 - d * bw
    assert r0 > b1
    end1 = t1 + 2 * b1 / bw  # core 1's small load ends first
    end0 = end1 + (r0 - b1) / bw
    # core 1 waits at the multicast from end1 to end0
    start = end0
    end_mc = start + lat + shared / bw
    ev = {(e.core, e.label): e for e in m.events}
    assert ev[(0, "load")].end == pytest.approx(end0, rel=1e-12)
    assert ev[(1, "load")].end == pytest.approx(end1, rel=1e-12)
    w = ev[(1, "load.multicast.wait")]
    assert w.unit == "sync" and w.start == pytest.approx(end1, rel=1e-12) and w.end == pytest.approx(end0, rel=1e-12)
    assert (0, "load.multicast.wait") not in ev
    for c in (0, 1):
        assert ev[(c, "load.multicast")].start == pytest.approx(start, rel=1e-12)
        assert ev[(c, "load.multicast")].end == pytest.approx(end_mc, rel=1e-12)
        assert ev[(c, "store")].start == pytest.approx(end_mc, rel=1e-12)
    assert st.dram_bytes_read == b0 + b1 + shared and st.dram_bytes_written == 2000
    with pytest.raises(ValueError, match="stores are never multicast"):
        kp.dma("store", (1, 1), slices=("y", "y"))


def _broadcast_program(load):
    """4 cores load from x (1, 8, 4, 4) with `load(kernel, buf, xin)` into a
    zeroed (1, 8, 4, 4) buffer; core c stores its buffer to y[c]."""
    b = Builder()
    x = b.input("x", (1, 8, 4, 4))
    y = b.temp("y", (4, 8, 4, 4))
    k = b.kernel("bc", 4, 4, [x, y])
    xin, yout = k.args
    buf = k.alloc((1, 8, 4, 4))
    k.fill(buf, 0.0)
    load(k, buf, xin)
    k.store(yout, buf, [(0, 0, 0, 0)], [(1, 8, 4, 4)], [(c, 0, 0, 0) for c in range(4)])
    return b, b.finish({"y": y})


def test_multicast_in_programs_counts_bytes_once_and_delivers_to_every_core():
    """Through the interpreter: a shared entry and identical per-core entries
    are the same multicast (same report, same time); per-core entries with
    two distinct slices are two multicasts (dst_offsets may differ within a
    set). Every core gets its data; the byte counter counts each slice once."""
    xv = rand(1, 8, 4, 4, seed=1)
    eb = MLU.element_bytes
    whole = 8 * 16 * eb

    b1, shared = _broadcast_program(lambda k, buf, x: k.load(buf, x, [(0, 0, 0, 0)], [(1, 8, 4, 4)], [(0, 0, 0, 0)]))
    b2, per_core = _broadcast_program(
        lambda k, buf, x: k.load(buf, x, [(0, 0, 0, 0)] * 4, [(1, 8, 4, 4)] * 4, [(0, 0, 0, 0)] * 4)
    )
    r1 = simulate(shared, b1.ctx, {"x": xv})
    r2 = simulate(per_core, b2.ctx, {"x": xv})
    for r in (r1, r2):
        np.testing.assert_array_equal(r.outputs["y"], np.concatenate([xv] * 4))
        k = r.report["kernels"][0]
        assert k["dram_bytes_read"] == whole and k["dram_bytes_written"] == 4 * whole
        assert k["multicast_transfers"] == 1 and k["multicast_bytes_saved"] == 3 * whole
        mc = [e for e in r.events if e.label == "load.multicast"]
        assert sorted(e.core for e in mc) == [0, 1, 2, 3]
        assert len({(e.start, e.end) for e in mc}) == 1
    assert r1.report == r2.report and r1.events == r2.events

    # cores 0, 1 read channels [0, 4), cores 2, 3 channels [4, 8), each pair
    # into different places of their buffers
    b3, pairs = _broadcast_program(
        lambda k, buf, x: k.load(
            buf, x, [(0, 0, 0, 0), (0, 0, 0, 0), (0, 4, 0, 0), (0, 4, 0, 0)], [(1, 4, 4, 4)],
            [(0, 0, 0, 0), (0, 4, 0, 0), (0, 4, 0, 0), (0, 0, 0, 0)],
        )
    )
    r3 = simulate(pairs, b3.ctx, {"x": xv})
    z = np.zeros((1, 4, 4, 4), np.float32)
    lo, hi = xv[:, :4], xv[:, 4:]
    expected = np.concatenate([np.concatenate(p, axis=1) for p in ((lo, z), (z, lo), (z, hi), (hi, z))])
    np.testing.assert_array_equal(r3.outputs["y"], expected)
    k = r3.report["kernels"][0]
    assert k["dram_bytes_read"] == whole  # two half slices, once each
    assert k["multicast_transfers"] == 2 and k["multicast_bytes_saved"] == whole
    assert simulate(pairs, b3.ctx, None, timing_only=True).report == r3.report


def test_barrier_release_time():
    m = machine()
    kp = KernelProgram("k", 4, 4)
    kp.compute("work", "mac", 10_000.0)
    kp.barrier()
    m.run_kernel(kp)
    s, d = MLU.kernel_launch_us * 1e3, MLU.core_dispatch_us * 1e3
    last_arrival = s + 3 * d + 10_000.0
    release = last_arrival + (MLU.barrier_base_us + MLU.barrier_per_core_us * 4) * 1e3
    waits = [e for e in m.events if e.unit == "sync"]
    assert len(waits) == 4
    for e in waits:
        assert e.start == pytest.approx(s + e.core * d + 10_000.0)
        assert e.end == pytest.approx(release)
    assert m.total_ns == pytest.approx(release)


def test_barrier_of_idle_cores_counts_all_cores():
    """A kernel with 1 active core out of 8: the barrier waits for and costs
    all 8 (dispatch of the last core, per-core barrier cost)."""
    m = machine()
    kp = KernelProgram("k", 8, 1)
    kp.compute("work", "vector", 100.0)
    kp.barrier()
    m.run_kernel(kp)
    s, d = MLU.kernel_launch_us * 1e3, MLU.core_dispatch_us * 1e3
    assert m.total_ns == pytest.approx(s + 7 * d + (MLU.barrier_base_us + 8 * MLU.barrier_per_core_us) * 1e3)
    assert m.kernels[0].instructions == 1 + 8


def test_exchange_time():
    m = machine()
    kp = KernelProgram("k", 2, 2)
    kp.exchange((1000, 3000))
    m.run_kernel(kp)
    s, d = MLU.kernel_launch_us * 1e3, MLU.core_dispatch_us * 1e3
    r = s + d + (MLU.barrier_base_us + 2 * MLU.barrier_per_core_us) * 1e3
    t = r + MLU.interconnect_latency_ns
    bw = MLU.interconnect_bandwidth_gbps
    end0 = t + 2 * 1000 / bw
    end1 = end0 + 2000 / bw
    ic = {e.core: e for e in m.events if e.unit == "interconnect"}
    assert ic[0].start == pytest.approx(r) and ic[0].end == pytest.approx(end0, rel=1e-12)
    assert ic[1].end == pytest.approx(end1, rel=1e-12)


def test_launch_and_dispatch_offsets():
    m = machine()
    for name in ("a", "b"):
        kp = KernelProgram(name, 4, 4)
        kp.compute("fill", "vector", 100.0)
        m.run_kernel(kp)
    s, d = MLU.kernel_launch_us * 1e3, MLU.core_dispatch_us * 1e3
    a, b = m.kernels
    assert a.launch_start_ns == 0 and a.start_ns == s
    assert a.end_ns == pytest.approx(s + 3 * d + 100.0)
    assert b.launch_start_ns == a.end_ns and b.start_ns == pytest.approx(a.end_ns + s)
    starts = sorted((e.kernel, e.core, e.start) for e in m.events)
    for k, c, t in starts:
        assert t == pytest.approx(m.kernels[k].start_ns + c * d)
    assert a.latency_ns + b.latency_ns == pytest.approx(m.total_ns)


def test_compute_does_not_overlap_dma_within_a_core():
    m = machine()
    kp = KernelProgram("k", 1, 1)
    kp.dma("load", (1024,))
    kp.compute("conv", "mac", 500.0)
    kp.dma("store", (1024,))
    m.run_kernel(kp)
    e = m.events
    assert e[0].end == e[1].start and e[1].end == e[2].start
    assert m.kernels[0].dram_bytes_read == 1024 and m.kernels[0].dram_bytes_written == 1024


def test_mac_cycles_with_lane_padding():
    tm = TimingModel(MLU, 2)
    # 33 output channels pay for 2 lane groups; 3 input channels for one
    assert tm.conv_cycles(1, 10, 10, 3, 3, 33, 3, 1) == 900 * 2 * 1
    assert tm.conv_cycles(1, 10, 10, 3, 3, 32, 32, 1) == 900
    assert tm.conv_cycles(1, 10, 10, 3, 3, 32, 33, 1) == 900 * 2
    # grouped: g groups of Co_g / Ci_g
    assert tm.conv_cycles(2, 4, 4, 1, 1, 64, 16, 4) == 32 * 1 * 1 * 4
    # depthwise: ceil(Co / Lo), channels packed across the output lanes
    assert tm.conv_cycles(1, 8, 8, 3, 3, 96, 1, 96) == 576 * 3
    assert tm.matmul_cycles(4, 1000, 2048) == 4 * 32 * 64
    assert tm.compute_ns(900) == (MLU.instruction_overhead_cycles + 900) / MLU.clock_ghz
    assert tm.vector_cycles(65, 2) == 4
    edge = TimingModel(load_target("edge8"), 2)
    assert edge.compute_ns(100) == pytest.approx((32 + 100) / 0.8)


def test_instruction_times_in_a_program():
    """The per-instruction times of an interpreted program follow the
    equations (conv with lane padding, eltwise, pool, softmax, LRN)."""
    b = Builder()
    x = b.input("x", (1, 3, 10, 10))
    w = b.weight("w", rand(33, 3, 3, 3, seed=1))
    y = b.temp("y", (1, 33, 8, 8))
    k = b.kernel("k", 1, 1, [x, w, y])
    xin, win, yout = k.args
    i = k.alloc((1, 3, 10, 10))
    kw_ = k.alloc((33, 3, 3, 3), "wram")
    o = k.alloc((1, 33, 8, 8))
    p = k.alloc((1, 33, 4, 4))
    k.load(i, xin, [(0, 0, 0, 0)], [(1, 3, 10, 10)], [(0, 0, 0, 0)])
    k.load(kw_, win, [(0, 0, 0, 0)], [(33, 3, 3, 3)], [(0, 0, 0, 0)])
    k.conv(o, i, kw_)
    k.eltwise(o, [o], "sigmoid")
    k.eltwise(o, [o, o], "div")
    k.pool(p, o, "max", (2, 2), (2, 2), (0, 0, 0, 0))
    k.vector(p, [p], "softmax", axis=IntegerAttr(1, i64))
    k.vector(p, [p], "lrn", size=IntegerAttr(5, i64), alpha=FloatAttr(1e-4, f32),
             beta=FloatAttr(0.75, f32), bias=FloatAttr(1.0, f32))
    k.store(yout, o, [(0, 0, 0, 0)], [(1, 33, 8, 8)], [(0, 0, 0, 0)])
    module = b.finish({"y": y})
    r = simulate(module, b.ctx, None)
    ov = MLU.instruction_overhead_cycles
    dur = {e.label: e.end - e.start for e in r.events if e.unit != "dma"}
    n_o, n_p = 33 * 64, 33 * 16
    assert dur["conv"] == ov + 64 * 9 * 2 * 1
    assert dur["eltwise.sigmoid"] == ov + math.ceil(n_o / 64) * 4
    assert dur["eltwise.div"] == ov + math.ceil(n_o / 64) * 2
    assert dur["pool.max"] == ov + math.ceil(n_p / 64) * 4
    assert dur["vector.softmax"] == ov + math.ceil(n_p / 64) * 4
    assert dur["vector.lrn"] == ov + math.ceil(n_p / 64) * (5 + 4)
    dmas = [e for e in r.events if e.unit == "dma"]
    loads = [(1 * 3 * 10 * 10) * 2, 33 * 27 * 2]
    assert dmas[0].end - dmas[0].start == pytest.approx(MLU.dma_latency_ns + loads[0] / MLU.dram_bandwidth_gbps)


# --------------------------------------------------------------------------
# timing-only, reports
# --------------------------------------------------------------------------


def _two_layer_program(cores=4):
    b = Builder()
    x = b.input("x", (1, 8, 12, 12))
    y1, s1, _ = conv_layer(b, x, (1, 8, 12, 12), rand(96, 8, 3, 3, seed=1), rand(96, seed=2), cores, name="c1")
    y2, _, _ = conv_layer(b, y1, s1, rand(40, 96, 3, 3, seed=3), rand(40, seed=4), cores, name="c2")
    return b, b.finish({"y": y2})


def test_timing_only_equals_full_run_and_needs_no_weights():
    b, module = _two_layer_program()
    full = simulate(module, b.ctx, {"x": rand(1, 8, 12, 12, seed=5)})
    fast = simulate(module, b.ctx, None, timing_only=True)
    assert fast.total_us == full.total_us
    assert fast.report == full.report
    assert fast.events == full.events
    # parsed without weight data: the full run refuses, timing-only runs
    ctx = make_context()
    from dlfusion.ir_io import parse_module

    elided = parse_module(print_module(module, b.ctx, emit_weights=False), ctx)
    with pytest.raises(DlfusionError, match="has no data"):
        simulate(elided, ctx, None)
    assert simulate(elided, ctx, None, timing_only=True).report == full.report
    no_events = simulate(module, b.ctx, None, timing_only=True, record_events=False)
    assert no_events.events == [] and no_events.report == full.report


def test_report_trace_gantt_files(tmp_path):
    b, module = _two_layer_program()
    r = simulate(module, b.ctx, None)
    rep = r.report
    assert rep["target"] == "mlu100" and rep["instructions"] > 0
    assert [k["name"] for k in rep["kernels"]] == ["c1", "c2"]
    assert sum(k["latency_us"] for k in rep["kernels"]) == pytest.approx(rep["total_us"])
    assert len(rep["cores"]) == MLU.cores
    for c in rep["cores"]:
        assert set(c["busy_ns"]) == {"dma", "mac", "vector", "interconnect"}
        assert 0 <= c["utilization"] <= 1
        assert c["utilization"] == pytest.approx(c["busy_total_ns"] / (rep["total_us"] * 1e3))
    k1 = rep["kernels"][0]
    # c1 reads the whole input once (multicast to its 3 active cores), its
    # weights, bias; writes its output
    assert k1["active"] == 3
    assert k1["dram_bytes_read"] == 2 * (8 * 144 + 96 * 72 + 96)
    assert k1["multicast_transfers"] == 1 and k1["multicast_bytes_saved"] == 2 * 2 * 8 * 144
    assert k1["dram_bytes_written"] == 2 * 96 * 144

    write_report(str(tmp_path / "r.json"), rep)
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(rep))
    write_trace(str(tmp_path / "t.json"), r)
    doc = json.loads((tmp_path / "t.json").read_text())
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert all({"name", "ts", "dur", "pid", "tid"} <= e.keys() and e["dur"] >= 0 for e in xs)
    core_tracks = {e["tid"] for e in xs if e.get("cat") not in ("launch", "kernel")}
    assert core_tracks == {0, 1, 2}  # core 3 is idle (96 channels in 3 lane groups)
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"core 0", "core 2", "kernels"} <= names
    assert any(e["name"] == "conv [c2]" for e in xs)
    write_gantt(str(tmp_path / "g.png"), r)
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "r.json", "t.json"]  # no temporaries
    with pytest.raises(DlfusionError, match="no such directory"):
        write_report(str(tmp_path / "nope" / "r.json"), rep)
    assert trace_json([], [], "x")["traceEvents"]


# --------------------------------------------------------------------------
# dlfusion-run on accel programs
# --------------------------------------------------------------------------


def run_tool(*args, cwd=None):
    exe = BIN / "dlfusion-run"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dlfusion.run"]
    env = dict(os.environ)
    env.pop("DLFUSION_DEBUG", None)
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_cli_runs_accel_programs(tmp_path):
    b, module = _two_layer_program()
    src = tmp_path / "p.mlir"
    src.write_text(print_module(module, b.ctx, emit_weights=True))
    xv = rand(1, 8, 12, 12, seed=9)
    np.savez(tmp_path / "in.npz", x=xv)
    rep, tr, gantt, out = (tmp_path / n for n in ("r.json", "t.json", "g.png", "o.npz"))
    p = run_tool(src, "--inputs", tmp_path / "in.npz", "--outputs", out, "--report", rep, "--trace", tr,
                 "--gantt", gantt)
    assert p.returncode == 0, p.stderr
    expected = simulate(module, b.ctx, {"x": xv})
    with np.load(out) as data:
        np.testing.assert_array_equal(data["y"], expected.outputs["y"])
    lines = p.stdout.splitlines()
    assert lines[0].startswith("y: float32 1x40x12x12 ")
    assert lines[1] == (
        f"latency: {expected.total_us:.3f} us on mlu100 (2 kernels, {expected.instructions} instructions)"
    )
    assert json.loads(rep.read_text()) == json.loads(json.dumps(expected.report))
    assert json.loads(tr.read_text())["traceEvents"]
    assert gantt.read_bytes()[:4] == b"\x89PNG"

    # timing-only: the same latency line, no outputs; works on elided weights
    elided = tmp_path / "elided.mlir"
    elided.write_text(print_module(module, b.ctx, emit_weights=False))
    rep2 = tmp_path / "r2.json"
    p = run_tool(elided, "--timing-only", "--report", rep2)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [lines[1]]
    assert json.loads(rep2.read_text()) == json.loads(rep.read_text())

    # a full run of elided weights: one line, exit 1
    p = run_tool(elided)
    assert p.returncode == 1 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and "has no data" in p.stderr


def test_cli_rejects_more_cores_than_the_target(tmp_path):
    b = Builder()
    x = b.input("x", (1, 2, 3, 3))
    k = b.kernel("wide", 33, 1, [x])
    k.barrier()
    b.block.add_op(accel.ReturnOp(x))
    prog = accel.ProgramOp(b.target, ["x"], ["x"], Region([b.block]))
    src = tmp_path / "p.mlir"
    src.write_text(print_module(ModuleOp([prog]), b.ctx))
    rep = tmp_path / "r.json"
    p = run_tool(src, "--timing-only", "--report", rep)
    assert p.returncode == 1 and p.stdout == ""
    err = p.stderr.strip().splitlines()
    assert len(err) == 1, p.stderr
    assert "kernel 'wide' uses 33 cores; target 'mlu100' has 32" in err[0]
    assert not rep.exists()


def test_cli_sim_options_need_an_accel_program(tmp_path):
    src = tmp_path / "nn.mlir"
    src.write_text(
        'func.func @main(%x: tensor<1x2xf32>) -> tensor<1x2xf32> {\n'
        '  %y = nn.relu %x : (tensor<1x2xf32>) -> tensor<1x2xf32>\n'
        '  func.return %y : tensor<1x2xf32>\n}\n'
    )
    p = run_tool(src, "--report", tmp_path / "r.json")
    assert p.returncode == 1
    assert "--report applies to accel programs" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_tool(src)
    assert p.returncode == 0, p.stderr
    p = run_tool(src, "--timing-only", "--outputs", tmp_path / "o.npz")
    assert p.returncode == 1 and "--timing-only" in p.stderr
    p = run_tool(src, "--report", tmp_path / "no" / "r.json")
    assert p.returncode == 1 and "no such directory" in p.stderr


def _has_lowering() -> bool:
    from dlfusion.passes import get_all_passes

    return "lower-to-accel" in get_all_passes()


@pytest.mark.skipif(not _has_lowering(), reason="lower-to-accel is not registered")
def test_cli_lowered_onnx_model_matches_the_reference_interpreter(tmp_path):
    """dlfusion-run model.onnx -p lower-to-accel runs the simulator; its
    outputs are those of the nn reference interpreter."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(rand(24, 3, 3, 3, seed=1), "w"),
        numpy_helper.from_array(rand(24, seed=2), "b"),
        numpy_helper.from_array(rand(10, 24 * 8 * 8, seed=3), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    ref, sim, rep = tmp_path / "ref.npz", tmp_path / "sim.npz", tmp_path / "r.json"
    p = run_tool(src, "--outputs", ref)
    assert p.returncode == 0, p.stderr
    p = run_tool(src, "-p", "lower-to-accel", "--outputs", sim, "--report", rep)
    assert p.returncode == 0, p.stderr
    with np.load(ref) as a, np.load(sim) as b:
        np.testing.assert_allclose(b["prob"], a["prob"], rtol=1e-5, atol=1e-6)
    report = json.loads(rep.read_text())
    assert len(report["kernels"]) >= 4 and report["total_us"] > 4 * MLU.kernel_launch_us
    latency = p.stdout.splitlines()[-1]
    p = run_tool(src, "-p", "lower-to-accel{target=edge8}", "--timing-only")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("latency: ") and " on edge8 " in p.stdout
    p = run_tool(src, "-p", "lower-to-accel", "--timing-only")
    assert p.stdout.splitlines() == [latency]
