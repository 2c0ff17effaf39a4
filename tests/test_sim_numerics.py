"""The simulator's fast numeric path (dlfusion.sim.accel_functions) equals
the straightforward per-core computation.

`reference_outputs` below interprets an `accel.program` the plain way: one
numpy array per core and buffer (idle cores included), every instruction
executed core by core with the `nn` kernels. The simulator computes each
instruction once for all cores whose inputs are identical, keeps buffers as
views of DRAM until written, shares DRAM memory between temporaries, and so
on; its outputs must equal the reference's within float32 rounding
(`check_same`: at most `REL_TOL` of the output's largest magnitude apart) on
hand-built programs (identical and different per-core inputs, idle cores,
tiles, exchanges, overlapping stores, DRAM hazards) and on lowered models,
and its time account must not depend on the numbers.

Only the products of large convolutions may differ in their last bits: the
simulator computes them with the products of all cores stacked (the weights
of all cores as one matrix, the columns of several inputs side by side),
and BLAS may sum a larger product in another order. Everything else is bit
for bit the per-core computation.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.interpreter import Interpreter
from xdsl.ir import Block

from dlfusion.context import make_context
from dlfusion.dialects import accel, nn
from dlfusion.dialects.accel import mshape, table_rows
from dlfusion.dialects.weights import weight_store
from dlfusion.interpreter import kernels as K
from dlfusion.interpreter.nn_functions import NNFunctions
from dlfusion.sim import accel_functions, find_program, random_program_inputs, simulate

sys.path.insert(0, str(Path(__file__).parent))
from accel_builder import Builder, rand  # noqa: E402
from plan_helpers import plan_all, random_plan  # noqa: E402

F32 = np.float32


# --------------------------------------------------------------------------
# the straightforward per-core reference
# --------------------------------------------------------------------------


def _box(offsets, sizes):
    return tuple(slice(o, o + s) for o, s in zip(offsets, sizes))


def _ints(attr):
    return tuple(int(v) for v in attr.get_values())


_NN = {op.name: op for op in nn.NN_OPS}


def _run_nn_layer(name, params, in_shapes, out_shape, values):
    full = name if name.startswith("nn.") else f"nn.{name}"
    block = Block(arg_types=[TensorType(f32, list(s)) for s in in_shapes])
    op = _NN[full].create(
        operands=list(block.args),
        result_types=[TensorType(f32, list(out_shape))],
        properties=dict(params.data),
    )
    block.add_op(op)
    interp = Interpreter(ModuleOp([]))
    interp.register_implementations(NNFunctions(None))
    (y,) = interp.run_op(op, tuple(values))
    y = np.asarray(y)
    return y.reshape(out_shape) if y.shape != tuple(out_shape) and y.size == math.prod(out_shape) else y


def _eltwise_ref(kind, params, values):
    p = {k: float(v.value.data) for k, v in params.data.items() if isinstance(v, FloatAttr)}
    if kind == "leaky_relu":
        return K.leaky_relu(values[0], p["alpha"])
    if kind == "hard_sigmoid":
        return K.hard_sigmoid(values[0], p["alpha"], p["beta"])
    if kind == "clip":
        return K.clip(values[0], p.get("min"), p.get("max"))
    return {"relu": K.relu, "sigmoid": K.sigmoid, "hard_swish": K.hard_swish, "add": K.add,
            "sub": K.sub, "mul": K.mul, "div": K.div}[kind](*values)


def _run_kernel_ref(kop: accel.KernelOp, dram_args, store):
    cores, active = kop.num_cores, kop.num_active
    env = dict(zip(kop.block.args, dram_args))

    def rows(attr, c):
        t = table_rows(attr)
        return t[0] if len(t) == 1 else t[c]

    for op in kop.block.ops:
        a = [env[v] for v in op.operands]
        if isinstance(op, accel.AllocOp):
            env[op.result] = [np.zeros(mshape(op.result), F32) for _ in range(cores)]
        elif isinstance(op, accel.FillOp):
            for c in range(active):
                a[0][c].fill(F32(op.value.value.data))
        elif isinstance(op, accel.LoadOp):
            bufs, dram = a
            for c in range(active):
                so, sz, do = (rows(t, c) for t in (op.src_offsets, op.sizes, op.dst_offsets))
                if math.prod(sz):
                    bufs[c][_box(do, sz)] = dram[_box(so, sz)]
        elif isinstance(op, accel.StoreOp):
            dram, bufs = a
            for c in range(active):
                so, sz, do = (rows(t, c) for t in (op.src_offsets, op.sizes, op.dst_offsets))
                if math.prod(sz):
                    dram[_box(do, sz)] = bufs[c][_box(so, sz)]
        elif isinstance(op, accel.ExchangeOp):
            bufs, axis, ranges = a[0], int(op.axis.value.data), table_rows(op.ranges)
            pre = (slice(None),) * axis
            parts = [bufs[c][pre + (slice(lo, hi),)].copy() for c, (lo, hi) in enumerate(ranges)]
            for c in range(cores):
                for c2, (lo, hi) in enumerate(ranges):
                    if c2 != c and hi > lo:
                        bufs[c][pre + (slice(lo, hi),)] = parts[c2]
        elif isinstance(op, accel.BarrierOp):
            pass
        elif isinstance(op, accel.ConvOp):
            out, x, w = a[:3]
            b = a[3] if len(a) > 3 else None
            for c in range(active):
                out[c][...] = K.conv2d(x[c], w[c], None if b is None else b[c], _ints(op.strides),
                                       (0, 0, 0, 0), _ints(op.dilations), int(op.groups.value.data))
        elif isinstance(op, accel.MatMulOp):
            out, x, w = a[:3]
            b = a[3] if len(a) > 3 else None
            for c in range(active):
                out[c][...] = K.gemm(x[c], w[c], None if b is None else b[c], False, bool(op.trans_b.value.data))
        elif isinstance(op, accel.PoolOp):
            kernel, strides, dil, pads = (_ints(x) for x in (op.kernel, op.strides, op.dilations, op.pads))
            t, l, bo, r = pads
            _, _, h, w = mshape(op.input)
            oh, ow = mshape(op.out)[2:]
            fh = nn.pool_out_dim(h - t - bo, kernel[0], strides[0], t, bo, dil[0], False)
            fw = nn.pool_out_dim(w - l - r, kernel[1], strides[1], l, r, dil[1], False)
            ceil = oh > fh or ow > fw
            for c in range(active):
                x = a[1][c][:, :, t : h - bo, l : w - r]
                if op.kind.data == "max":
                    y = K.max_pool(x, kernel, strides, pads, ceil, dil)
                else:
                    y = K.avg_pool(x, kernel, strides, pads, ceil, bool(op.count_include_pad.value.data))
                a[0][c][...] = y[:, :, :oh, :ow]
        elif isinstance(op, accel.EltwiseOp):
            for c in range(active):
                y = _eltwise_ref(op.kind.data, op.params, [v[c] for v in a[1:]])
                a[0][c][...] = y.reshape(a[0][c].shape) if y.shape != a[0][c].shape and y.size == a[0][c].size else y
        elif isinstance(op, accel.VectorOp):
            for c in range(active):
                a[0][c][...] = _run_nn_layer(op.layer.data, op.params, [mshape(v) for v in op.args],
                                             mshape(op.out), [v[c] for v in a[1:]])
        else:
            raise AssertionError(f"unexpected {op.name}")


def reference_outputs(module, ctx, inputs) -> dict[str, np.ndarray]:
    program = find_program(module)
    store = weight_store(ctx)
    env = {}
    names = iter(a.data for a in program.input_names.data)
    for op in program.block.ops:
        if isinstance(op, accel.DramOp):
            shape = mshape(op.result)
            if op.kind.data == "input":
                env[op.result] = np.array(inputs[next(names)], F32, copy=True)
            elif op.kind.data == "weight":
                env[op.result] = np.array(store.get(op.label.data, np.dtype(F32), shape), F32).reshape(shape)
            else:
                env[op.result] = np.zeros(shape, F32)
        elif isinstance(op, accel.ViewOp):
            env[op.result] = env[op.source].reshape(mshape(op.result))
        elif isinstance(op, accel.KernelOp):
            with np.errstate(all="ignore"):
                _run_kernel_ref(op, [env[v] for v in op.tensors], store)
        elif isinstance(op, accel.ReturnOp):
            outs = [a.data for a in program.output_names.data]
            return {n: np.array(env[v]) for n, v in zip(outs, op.values)}
    raise AssertionError("no accel.return")


#: the simulator's outputs and the per-core reference's may differ by this
#: much of the output's largest magnitude (float32 rounding of sums taken
#: in another order)
REL_TOL = 1e-6


def assert_close(got: np.ndarray, ref: np.ndarray, name: str = "") -> None:
    """`got` equals `ref` within `REL_TOL` of `ref`'s largest magnitude."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, name
    assert np.isfinite(got).all() == np.isfinite(ref).all(), name
    scale = float(np.max(np.abs(ref), initial=0.0))
    np.testing.assert_allclose(got, ref, rtol=0, atol=REL_TOL * scale, err_msg=name)


def check_same(module, ctx, inputs=None):
    """The simulator's outputs equal the reference's within `REL_TOL`; a
    second run's are bit for bit the first's; the time account is the same
    with and without numbers."""
    program = find_program(module)
    if inputs is None:
        inputs = random_program_inputs(program, seed=5)
    ref = reference_outputs(module, ctx, inputs)
    got = simulate(module, ctx, inputs, record_events=False)
    assert set(got.outputs) == set(ref)
    for name in ref:
        assert_close(got.outputs[name], ref[name], name)
    timing = simulate(module, ctx, None, timing_only=True, record_events=False)
    assert timing.report == got.report
    # a second run of the same program gives the same numbers (no state kept)
    again = simulate(module, ctx, inputs, record_events=False)
    for name in ref:
        np.testing.assert_array_equal(again.outputs[name], got.outputs[name], err_msg=name)
    return got


Z4 = (0, 0, 0, 0)


# --------------------------------------------------------------------------
# convolutions: identical and different inputs per core
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cores", [1, 3, 4])
def test_conv_channel_split_shared_input(cores):
    """The input is one shared (multicast) entry, the weights and bias a
    chunk per core (the last one partial), idle cores beyond the work."""
    b = Builder()
    x = b.input("x", (1, 5, 9, 7))
    w, bias = rand(70, 5, 3, 3, seed=1), rand(70, seed=2)
    wv, bv = b.weight("w", w), b.weight("b", bias)
    y = b.temp("y", (1, 70, 9, 7))
    active = min(cores, 3)
    k = b.kernel("conv", cores, active, [x, wv, bv, y])
    xin, win, bin_, yout = k.args
    i, kw, kb, o = k.alloc((1, 5, 11, 9)), k.alloc((32, 5, 3, 3), "wram"), k.alloc((32,), "wram"), k.alloc((1, 32, 9, 7))
    k.fill(i, 0.0)
    k.load(i, xin, [Z4], [(1, 5, 9, 7)], [(0, 0, 1, 1)])
    lo = [min(70, 32 * c) for c in range(cores)]
    sz = [max(0, min(70, l + 32) - l) for l in lo]
    k.load(kw, win, [(l, 0, 0, 0) for l in lo], [(s, 5, 3, 3) for s in sz], [Z4])
    k.load(kb, bin_, [(l,) for l in lo], [(s,) for s in sz], [(0,)])
    k.conv(o, i, kw, kb)
    k.eltwise(o, [o], "relu")
    k.store(yout, o, [Z4], [(1, s, 9, 7) for s in sz], [(0, l, 0, 0) for l in lo])
    check_same(b.finish({"y": y}), b.ctx)


def test_conv_row_split_with_tiles_and_halos():
    """Each core convolves its own rows (different inputs, shared weights),
    in two tiles per core reusing its buffers (the padding filled once)."""
    b = Builder()
    x = b.input("x", (1, 4, 16, 10))
    w = rand(8, 4, 3, 3, seed=1)
    wv = b.weight("w", w)
    y = b.temp("y", (1, 8, 16, 10))
    k = b.kernel("conv", 2, 2, [x, wv, y])
    xin, win, yout = k.args
    i, kw, o = k.alloc((1, 4, 6, 12)), k.alloc((8, 4, 3, 3), "wram"), k.alloc((1, 8, 4, 10))
    k.fill(i, 0.0)
    k.load(kw, win, [Z4], [(8, 4, 3, 3)], [Z4])
    # core 0: output rows 0-3 and 4-7; core 1: rows 8-11 and 12-15
    k.load(i, xin, [(0, 0, 0, 0), (0, 0, 7, 0)], [(1, 4, 5, 10), (1, 4, 6, 10)], [(0, 0, 1, 1), (0, 0, 0, 1)])
    k.conv(o, i, kw)
    k.store(yout, o, [Z4], [(1, 8, 4, 10)], [(0, 0, 0, 0), (0, 0, 8, 0)])
    k.load(i, xin, [(0, 0, 3, 0), (0, 0, 11, 0)], [(1, 4, 6, 10), (1, 4, 5, 10)], [(0, 0, 0, 1), (0, 0, 0, 1)])
    k.fill(i, 0.0)  # the last tile of core 1 needs the bottom border zero again: refill, reload
    k.load(i, xin, [(0, 0, 3, 0), (0, 0, 11, 0)], [(1, 4, 6, 10), (1, 4, 5, 10)], [(0, 0, 0, 1), (0, 0, 0, 1)])
    k.conv(o, i, kw)
    k.store(yout, o, [Z4], [(1, 8, 4, 10)], [(0, 0, 4, 0), (0, 0, 12, 0)])
    check_same(b.finish({"y": y}), b.ctx)


def test_conv_rows_times_channels_split():
    """4 active cores of 5: 2 row halves x 2 channel halves (each input half
    multicast to two cores, each weight half to two), bias per channel half."""
    b = Builder()
    x = b.input("x", (1, 6, 12, 9))
    w, bias = rand(64, 6, 3, 3, seed=1), rand(64, seed=2)
    wv, bv = b.weight("w", w), b.weight("b", bias)
    y = b.temp("y", (1, 64, 12, 9))
    k = b.kernel("conv", 5, 4, [x, wv, bv, y])
    xin, win, bin_, yout = k.args
    i, kw, kb, o = k.alloc((1, 6, 8, 11)), k.alloc((32, 6, 3, 3), "wram"), k.alloc((32,), "wram"), k.alloc((1, 32, 6, 9))
    k.fill(i, 0.0)
    ch = [0, 0, 32, 32, 0]
    rows = [0, 6, 0, 6, 0]
    k.load(kw, win, [(c, 0, 0, 0) for c in ch], [(32, 6, 3, 3)], [Z4])
    k.load(kb, bin_, [(c,) for c in ch], [(32,)], [(0,)])
    k.load(i, xin, [(0, 0, 0, 0), (0, 0, 5, 0), (0, 0, 0, 0), (0, 0, 5, 0), Z4],
           [(1, 6, 7, 9), (1, 6, 7, 9), (1, 6, 7, 9), (1, 6, 7, 9), (0, 0, 0, 0)],
           [(0, 0, 1, 1), (0, 0, 0, 1), (0, 0, 1, 1), (0, 0, 0, 1), Z4])
    k.conv(o, i, kw, kb)
    k.store(yout, o, [Z4], [(1, 32, 6, 9), (1, 32, 6, 9), (1, 32, 6, 9), (1, 32, 6, 9), Z4],
            [(0, c, r, 0) for c, r in zip(ch, rows)])
    check_same(b.finish({"y": y}), b.ctx)


@pytest.mark.parametrize("kind", ["depthwise", "grouped", "one_channel", "strided_dilated"])
def test_conv_grouped_and_special(kind):
    """Each core convolves its own input channels (different inputs):
    depthwise, grouped, a single input channel, stride and dilation."""
    cin, co, groups, stride, dil = {
        "depthwise": (64, 64, 32, 1, 1),  # per core: 32 channels, 32 groups
        "grouped": (16, 32, 2, 1, 1),  # per core: 8 in, 16 out, 2 groups
        "one_channel": (2, 64, 1, 1, 1),  # per core: 1 input channel
        "strided_dilated": (8, 64, 1, 2, 2),
    }[kind]
    b = Builder()
    per_in, half, h, kh = cin // 2, co // 2, 11, 3
    x = b.input("x", (1, cin, h, h))
    weight = rand(co, per_in // groups, kh, kh, seed=1)
    wv = b.weight("w", weight)
    ho = (h - dil * (kh - 1) - 1) // stride + 1
    y = b.temp("y", (1, co, ho, ho))
    k = b.kernel("conv", 3, 2, [x, wv, y])
    xin, win, yout = k.args
    i = k.alloc((1, per_in, h, h))
    kw = k.alloc((half, *weight.shape[1:]), "wram")
    o = k.alloc((1, half, ho, ho))
    k.load(i, xin, [(0, 0, 0, 0), (0, per_in, 0, 0), Z4], [(1, per_in, h, h), (1, per_in, h, h), Z4], [Z4])
    k.load(kw, win, [(0, 0, 0, 0), (half, 0, 0, 0), Z4], [(half, *weight.shape[1:]), (half, *weight.shape[1:]), Z4], [Z4])
    k.conv(o, i, kw, None, (stride, stride), (dil, dil), groups)
    k.store(yout, o, [Z4], [(1, half, ho, ho), (1, half, ho, ho), Z4], [(0, 0, 0, 0), (0, half, 0, 0), Z4])
    check_same(b.finish({"y": y}), b.ctx)


def test_conv_depthwise_of_shared_input_and_uniform_everything():
    """A depthwise convolution (channel multiplier 2) whose input is the
    same on both cores, their weights not; then a convolution where
    everything is shared."""
    b = Builder()
    x = b.input("x", (1, 8, 7, 7))
    w1, w2 = rand(32, 1, 3, 3, seed=1), rand(4, 8, 1, 1, seed=2)
    w1v, w2v = b.weight("w1", w1), b.weight("w2", w2)
    y1, y2 = b.temp("y1", (1, 32, 5, 5)), b.temp("y2", (1, 4, 7, 7))
    k = b.kernel("k", 2, 2, [x, w1v, w2v, y1, y2])
    xin, w1in, w2in, y1out, y2out = k.args
    i, kw1, kw2 = k.alloc((1, 8, 7, 7)), k.alloc((16, 1, 3, 3), "wram"), k.alloc((4, 8, 1, 1), "wram")
    o1, o2 = k.alloc((1, 16, 5, 5)), k.alloc((1, 4, 7, 7))
    k.load(i, xin, [Z4], [(1, 8, 7, 7)], [Z4])
    k.load(kw1, w1in, [Z4], [(16, 1, 3, 3)], [Z4])
    k.load(kw1, w1in, [Z4, (16, 0, 0, 0)], [(0, 0, 0, 0), (8, 1, 3, 3)], [Z4])  # core 1: partly reloaded
    k.conv(o1, i, kw1, None, (1, 1), (1, 1), 8)
    k.load(kw2, w2in, [Z4], [(4, 8, 1, 1)], [Z4])
    k.conv(o2, i, kw2)
    k.store(y1out, o1, [Z4], [(1, 16, 5, 5)], [(0, 0, 0, 0), (0, 16, 0, 0)])
    k.store(y2out, o2, [Z4], [(1, 4, 7, 7)], [Z4])
    check_same(b.finish({"y1": y1, "y2": y2}), b.ctx)


def _split_conv(split: str, parts: int, cin: int, cout: int, h: int, k: int, stride: int):
    """A padded k x k convolution with bias of an (h, h) map, on all cores of
    one kernel: split 'channels' (the input shared, a weight chunk per
    core), 'rows' (the weights shared, a block of output rows per core, the
    input rows it needs with their halo) or 'both' (2 row blocks x 2
    channel chunks)."""
    b = Builder()
    pad = k // 2
    ho = (h + 2 * pad - k) // stride + 1
    x = b.input("x", (1, cin, h, h))
    wv, bv = b.weight("w", rand(cout, cin, k, k, seed=1)), b.weight("b", rand(cout, seed=2))
    y = b.temp("y", (1, cout, ho, ho))
    nch = parts if split == "channels" else 2 if split == "both" else 1
    nrow = parts if split == "rows" else 2 if split == "both" else 1
    cores, co, rows = nch * nrow, cout // nch, ho // nrow
    hin = (rows - 1) * stride + k
    kern = b.kernel("conv", cores, cores, [x, wv, bv, y])
    xin, win, bin_, yout = kern.args
    i, kw = kern.alloc((1, cin, hin, h + 2 * pad)), kern.alloc((co, cin, k, k), "wram")
    kb, o = kern.alloc((co,), "wram"), kern.alloc((1, co, rows, ho))
    chans = [(c % nch) * co for c in range(cores)]
    starts = [(c // nch) * rows for c in range(cores)]
    src, size, dst = [], [], []
    for r in starts:
        top = r * stride - pad  # the tile's first input row
        lo, hi = max(0, top), min(h, top + hin)
        src.append((0, 0, lo, 0))
        size.append((1, cin, hi - lo, h))
        dst.append((0, 0, lo - top, pad))
    kern.fill(i, 0.0)
    kern.load(i, xin, src, size, dst)
    kern.load(kw, win, [(c, 0, 0, 0) for c in chans], [(co, cin, k, k)], [Z4])
    kern.load(kb, bin_, [(c,) for c in chans], [(co,)], [(0,)])
    kern.conv(o, i, kw, kb, (stride, stride))
    kern.store(yout, o, [Z4], [(1, co, rows, ho)], [(0, c, r, 0) for c, r in zip(chans, starts)])
    return b.finish({"y": y}), b.ctx


@pytest.mark.parametrize("split,parts,cin,cout,h,k,stride", [
    ("channels", 4, 256, 256, 14, 3, 1),  # one input: one product with all weights
    ("rows", 2, 256, 64, 14, 3, 1),  # the inputs' columns side by side: one product
    ("both", 2, 256, 128, 14, 3, 1),  # 2 inputs x 2 weights, inputs side by side
    ("rows", 4, 512, 256, 16, 1, 1),  # 1x1: the inputs' columns copied side by side
    ("rows", 4, 3, 64, 64, 7, 2),  # few weights, many columns: one product per input
])
def test_large_convs_stacked(split, parts, cin, cout, h, k, stride):
    """Convolutions whose per-core products are large enough
    (`STACK_MACS`) to be computed with the products of all cores stacked,
    through both ways of `_stacked_conv`."""
    module, ctx = _split_conv(split, parts, cin, cout, h, k, stride)
    check_same(module, ctx)


def test_stacked_products_differ_in_last_bits_within_tolerance(monkeypatch):
    """Small products stacked (`STACK_MACS` lowered to 0) are summed by BLAS
    in another order than each core's product alone: the outputs differ
    from the per-core reference in their last bits, within `REL_TOL`. (With
    the OpenBLAS of numpy's wheels: a BLAS summing these shapes alike would
    not exercise the tolerance, which this test then reports.)"""
    monkeypatch.setattr(accel_functions, "STACK_MACS", 0)
    differ = []
    for shape in [("channels", 3, 16, 96, 14, 3, 1), ("both", 2, 32, 64, 12, 3, 1)]:
        module, ctx = _split_conv(*shape)
        inputs = random_program_inputs(find_program(module), seed=5)
        ref = reference_outputs(module, ctx, inputs)["y"]
        got = check_same(module, ctx, inputs).outputs["y"]
        differ.append(not np.array_equal(got, ref))
    assert all(differ), "the stacked products equal the per-core ones bit for bit: the tolerance is not exercised"


# --------------------------------------------------------------------------
# matmul, pooling, element-wise, vector
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shared_a", [True, False])
@pytest.mark.parametrize("trans_b", [True, False])
def test_matmul(shared_a, trans_b):
    b = Builder()
    a = b.input("a", (3, 20))
    wt = rand(50, 20, seed=1) if trans_b else rand(20, 50, seed=1)
    bias = rand(50, seed=2)
    wv, bv = b.weight("w", wt), b.weight("b", bias)
    y = b.temp("y", (3, 50))
    k = b.kernel("fc", 3, 2, [a, wv, bv, y])
    ain, win, bin_, yout = k.args
    ab, kw, kb, o = k.alloc((3, 20)), k.alloc((32, 20) if trans_b else (20, 32), "wram"), k.alloc((32,), "wram"), k.alloc((3, 32))
    if shared_a:
        k.load(ab, ain, [(0, 0)], [(3, 20)], [(0, 0)])
    else:  # each core its own rows of a (the others zero)
        k.load(ab, ain, [(0, 0), (1, 0), (0, 0)], [(1, 20), (2, 20), (0, 0)], [(0, 0), (1, 0), (0, 0)])
    if trans_b:
        k.load(kw, win, [(0, 0), (32, 0), (0, 0)], [(32, 20), (18, 20), (0, 0)], [(0, 0)])
    else:
        k.load(kw, win, [(0, 0), (0, 32), (0, 0)], [(20, 32), (20, 18), (0, 0)], [(0, 0)])
    k.load(kb, bin_, [(0,), (32,), (0,)], [(32,), (18,), (0,)], [(0,)])
    k.matmul(o, ab, kw, kb, trans_b)
    k.store(yout, o, [(0, 0)], [(3, 32), (3, 18), (0, 0)], [(0, 0), (0, 32), (0, 0)])
    check_same(b.finish({"y": y}), b.ctx)


@pytest.mark.parametrize("kind,cip", [("max", False), ("avg", False), ("avg", True)])
def test_pool_per_core_channels_and_ceil_mode(kind, cip):
    """Each core pools its channels (unicast), with the padding already in
    the buffer and a ceil_mode extra output row and column; then the same
    pooling of a shared input."""
    b = Builder()
    x = b.input("x", (1, 6, 9, 9))
    y1, y2 = b.temp("y1", (1, 6, 5, 5)), b.temp("y2", (1, 3, 5, 5))
    k = b.kernel("pool", 3, 2, [x, y1, y2])
    xin, y1out, y2out = k.args
    i, o = k.alloc((1, 3, 10, 10)), k.alloc((1, 3, 5, 5))
    k.fill(i, -math.inf if kind == "max" else 0.0)
    k.load(i, xin, [(0, 0, 0, 0), (0, 3, 0, 0), Z4], [(1, 3, 9, 9)], [(0, 0, 1, 1)])
    k.pool(o, i, kind, (3, 3), (2, 2), (1, 1, 0, 0), cip)
    k.store(y1out, o, [Z4], [(1, 3, 5, 5)], [(0, 0, 0, 0), (0, 3, 0, 0), Z4])
    k.load(i, xin, [(0, 1, 0, 0)], [(1, 3, 9, 9)], [(0, 0, 1, 1)])
    k.pool(o, i, kind, (3, 3), (2, 2), (1, 1, 0, 0), cip)
    k.store(y2out, o, [Z4], [(1, 3, 5, 5)], [Z4])
    check_same(b.finish({"y1": y1, "y2": y2}), b.ctx)


def test_eltwise_broadcasting_in_place_and_params():
    """Element-wise work on per-core and shared operands of lower rank, in
    place and not, plain kinds and kinds with params."""
    b = Builder()
    x = b.input("x", (1, 8, 4, 5))
    s = b.weight("s", rand(1, 8, 1, 1, seed=1))
    r = b.weight("r", rand(5, seed=2))
    y = b.temp("y", (1, 8, 4, 5))
    k = b.kernel("elt", 4, 2, [x, s, r, y])
    xin, sin, rin, yout = k.args
    i, sc, row, t, o = k.alloc((1, 4, 4, 5)), k.alloc((1, 4, 1, 1), "wram"), k.alloc((5,), "wram"), k.alloc((1, 4, 4, 5)), k.alloc((1, 4, 4, 5))
    chans = [(0, 0, 0, 0), (0, 4, 0, 0), Z4, Z4]
    k.load(i, xin, chans, [(1, 4, 4, 5), (1, 4, 4, 5), Z4, Z4], [Z4])
    k.load(sc, sin, chans, [(1, 4, 1, 1), (1, 4, 1, 1), Z4, Z4], [Z4])
    k.load(row, rin, [(0,)], [(5,)], [(0,)])
    k.eltwise(t, [i, sc], "mul")  # per-core x per-core
    k.eltwise(t, [t, row], "add")  # in place, a shared operand of rank 1
    k.eltwise(o, [row, t], "sub")  # shared first
    k.eltwise(o, [o], "leaky_relu", alpha=0.1)
    k.eltwise(o, [o], "clip", min=-1.0, max=1.5)
    k.eltwise(t, [o, i], "div")
    k.eltwise(t, [t], "hard_sigmoid", alpha=0.2, beta=0.5)
    k.eltwise(o, [t, o], "mul")
    k.eltwise(o, [o], "hard_swish")
    k.eltwise(o, [o], "sigmoid")
    k.store(yout, o, [Z4], [(1, 4, 4, 5), (1, 4, 4, 5), Z4, Z4], [(0, 0, 0, 0), (0, 4, 0, 0), Z4, Z4])
    check_same(b.finish({"y": y}), b.ctx)


def test_vector_layers_per_core_and_shared():
    b = Builder()
    x = b.input("x", (2, 6))
    y1, y2 = b.temp("y1", (2, 6)), b.temp("y2", (6, 2))
    k = b.kernel("vec", 2, 2, [x, y1, y2])
    xin, y1out, y2out = k.args
    i, o1, o2 = k.alloc((1, 6)), k.alloc((1, 6)), k.alloc((6, 2))
    a = k.alloc((2, 6))
    k.load(i, xin, [(0, 0), (1, 0)], [(1, 6)], [(0, 0)])
    k.vector(o1, [i], "nn.softmax", axis=IntegerAttr(1, i64))
    k.store(y1out, o1, [(0, 0)], [(1, 6)], [(0, 0), (1, 0)])
    k.load(a, xin, [(0, 0)], [(2, 6)], [(0, 0)])
    k.vector(o2, [a], "nn.transpose", perm=DenseArrayBase.from_list(i64, [1, 0]))
    k.store(y2out, o2, [(0, 0)], [(6, 2)], [(0, 0)])
    check_same(b.finish({"y1": y1, "y2": y2}), b.ctx)


# --------------------------------------------------------------------------
# exchange, idle cores
# --------------------------------------------------------------------------


def test_fused_convs_with_exchange_and_idle_cores():
    """conv -> each core places its channels in a full map (a 1x1 conv with
    its rows of a placement matrix) -> exchange (all-gather, idle cores too)
    -> pad -> conv of the gathered map, the same input on every core."""
    b = Builder()
    x = b.input("x", (1, 4, 6, 6))
    w1, w2 = rand(64, 4, 3, 3, seed=1), rand(40, 64, 3, 3, seed=2)
    place = np.zeros((128, 32, 1, 1), F32)
    for c in range(2):
        place[64 * c + 32 * c : 64 * c + 32 * c + 32, :, 0, 0] = np.eye(32, dtype=F32)
    w1v, w2v, pv = b.weight("w1", w1), b.weight("w2", w2), b.weight("place", place)
    y = b.temp("y", (1, 40, 6, 6))
    k = b.kernel("fused", 4, 2, [x, w1v, w2v, pv, y])
    xin, w1in, w2in, pin, yout = k.args
    i, k1, t = k.alloc((1, 4, 8, 8)), k.alloc((32, 4, 3, 3), "wram"), k.alloc((1, 32, 6, 6))
    kp, m, mp = k.alloc((64, 32, 1, 1), "wram"), k.alloc((1, 64, 6, 6)), k.alloc((1, 64, 8, 8))
    k2, o = k.alloc((32, 64, 3, 3), "wram"), k.alloc((1, 32, 6, 6))
    none = (0, 0, 0, 0)
    k.fill(i, 0.0)
    k.load(i, xin, [Z4], [(1, 4, 6, 6)], [(0, 0, 1, 1)])
    k.load(k1, w1in, [(0, 0, 0, 0), (32, 0, 0, 0), Z4, Z4], [(32, 4, 3, 3), (32, 4, 3, 3), none, none], [Z4])
    k.conv(t, i, k1)
    k.eltwise(t, [t], "relu")
    k.load(kp, pin, [(0, 0, 0, 0), (64, 0, 0, 0), Z4, Z4], [(64, 32, 1, 1), (64, 32, 1, 1), none, none], [Z4])
    k.conv(m, t, kp)
    k.exchange(m, 1, [(0, 32), (32, 64), (0, 0), (0, 0)])
    k.vector(mp, [m], "nn.pad", pads=DenseArrayBase.from_list(i64, [0, 0, 1, 1, 0, 0, 1, 1]),
             mode=StringAttr("constant"), value=FloatAttr(0.0, Float32Type()))
    k.load(k2, w2in, [(0, 0, 0, 0), (32, 0, 0, 0), Z4, Z4], [(32, 64, 3, 3), (8, 64, 3, 3), none, none], [Z4])
    k.conv(o, mp, k2)
    k.store(yout, o, [Z4], [(1, 32, 6, 6), (1, 8, 6, 6), none, none], [(0, 0, 0, 0), (0, 32, 0, 0), Z4, Z4])
    check_same(b.finish({"y": y}), b.ctx)


@pytest.mark.parametrize("ranges", [
    [(0, 2), (2, 5), (5, 6), (0, 0)],  # disjoint, covering (an idle core contributes)
    [(0, 2), (4, 5), (0, 0), (5, 6)],  # disjoint, not covering
    [(0, 3), (2, 5), (4, 6), (1, 2)],  # overlapping
])
def test_exchange_idle_contributions(ranges):
    """Idle cores' buffers are only written by exchanges, and what they
    received is what they give in the next one."""
    b = Builder()
    x = b.input("x", (2, 6, 3))
    y = b.temp("y", (2, 6, 6))
    k = b.kernel("ex", 4, 2, [x, y])
    xin, yout = k.args
    buf = k.alloc((1, 6, 3))
    z = (0, 0, 0)
    k.load(buf, xin, [(0, 0, 0), (1, 0, 0), z, z], [(1, 6, 3)], [z])
    k.eltwise(buf, [buf], "relu")
    k.exchange(buf, 1, ranges)
    k.store(yout, buf, [z], [(1, 6, 3)], [(0, 0, 0), (1, 0, 0), z, z])
    k.load(buf, xin, [z], [(1, 6, 3)], [z])
    k.exchange(buf, 1, [(0, 1), (1, 2), (2, 4), (4, 6)])  # the idle cores give [2, 6)
    k.store(yout, buf, [z], [(1, 6, 3)], [(0, 0, 3), (1, 0, 3), z, z])
    check_same(b.finish({"y": y}), b.ctx)


def test_kernel_without_active_cores():
    b = Builder()
    x = b.input("x", (1, 4))
    y = b.temp("y", (1, 4))
    k = b.kernel("idle", 2, 0, [x, y])
    xin, yout = k.args
    buf = k.alloc((1, 4))
    k.fill(buf, 1.0)
    k.load(buf, xin, [(0, 0)], [(1, 4)], [(0, 0)])
    k.exchange(buf, 1, [(0, 2), (2, 4)])
    k.store(yout, buf, [(0, 0)], [(1, 4)], [(0, 0)])
    k2 = b.kernel("copy", 1, 1, [x, y])
    xin2, yout2 = k2.args
    t = k2.alloc((1, 2))
    k2.load(t, xin2, [(0, 1)], [(1, 2)], [(0, 0)])
    k2.store(yout2, t, [(0, 0)], [(1, 2)], [(0, 2)])
    check_same(b.finish({"y": y}), b.ctx)


# --------------------------------------------------------------------------
# DMA corner cases and DRAM
# --------------------------------------------------------------------------


def test_stores_in_core_order_and_partial_loads():
    """Overlapping stores (the later core's data stays), identical stores
    from several cores, cores that move nothing, loads into part of a
    buffer that keep each core's other contents."""
    b = Builder()
    x = b.input("x", (4, 6))
    y = b.temp("y", (4, 6))
    k = b.kernel("dma", 4, 3, [x, y])
    xin, yout = k.args
    buf = k.alloc((2, 6))
    k.load(buf, xin, [(0, 0), (1, 0), (2, 0), (0, 0)], [(2, 6)], [(0, 0)])
    k.load(buf, xin, [(3, 0)], [(1, 3), (0, 0), (1, 3), (0, 0)], [(1, 2)])  # part, on cores 0 and 2
    k.eltwise(buf, [buf], "sigmoid")
    k.store(yout, buf, [(0, 0)], [(2, 6)], [(0, 0), (1, 0), (2, 0), (0, 0)])  # overlapping rows
    k.store(yout, buf, [(0, 1)], [(1, 2)], [(3, 0)])  # the same slice from every core
    k.store(yout, buf, [(1, 0)], [(1, 4), (0, 0), (1, 4), (0, 0)], [(3, 2), (0, 0), (3, 1), (0, 0)])
    check_same(b.finish({"y": y}), b.ctx)


def test_buffers_loaded_from_dram_that_is_then_written():
    """A buffer loaded whole from a DRAM tensor keeps what it read when a
    store later writes that tensor, and computing in place on it does not
    write the tensor."""
    b = Builder()
    x = b.input("x", (2, 8))
    t = b.temp("t", (2, 8))
    y = b.temp("y", (2, 8))
    k = b.kernel("first", 1, 1, [x, t])
    xin, tout = k.args
    buf = k.alloc((2, 8))
    k.load(buf, xin, [(0, 0)], [(2, 8)], [(0, 0)])
    k.store(tout, buf, [(0, 0)], [(2, 8)], [(0, 0)])
    k2 = b.kernel("second", 2, 2, [t, x, y])
    tin, xin2, yout = k2.args
    a, c, d = k2.alloc((1, 8)), k2.alloc((1, 8)), k2.alloc((1, 8))
    k2.load(a, tin, [(0, 0), (1, 0)], [(1, 8)], [(0, 0)])  # each core a row of t (one view)
    k2.load(c, tin, [(0, 0)], [(1, 8)], [(0, 0)])  # shared
    k2.load(d, xin2, [(1, 0)], [(1, 8)], [(0, 0)])
    k2.eltwise(d, [d], "relu")
    k2.store(tin, d, [(0, 0)], [(1, 8)], [(0, 0), (1, 0)])  # overwrite t
    k2.eltwise(c, [c], "sigmoid")  # in place on a buffer read from t
    k2.eltwise(a, [a, c], "add")
    k2.store(yout, a, [(0, 0)], [(1, 8)], [(0, 0), (1, 0)])
    check_same(b.finish({"y": y, "t": t}), b.ctx)


def test_temporaries_read_where_never_written_are_zeros():
    """Temporaries share memory when their lifetimes do not overlap; one
    that is read where no store wrote it reads zeros, whether the stores
    wrote whole rows or parts of rows."""
    b = Builder()
    x = b.input("x", (1, 4, 3, 5))
    ts = [b.temp(f"t{j}", (1, 4, 3, 5)) for j in range(4)]
    y = b.temp("y", (1, 4, 3, 5))
    # t0 = x; t1 = channels 0-1 of t0 (rows); t2 = first 2 columns of t1; ...
    k = b.kernel("k0", 1, 1, [x, ts[0]])
    buf = k.alloc((1, 4, 3, 5))
    k.load(buf, k.args[0], [Z4], [(1, 4, 3, 5)], [Z4])
    k.eltwise(buf, [buf], "relu")
    k.store(k.args[1], buf, [Z4], [(1, 4, 3, 5)], [Z4])
    for j, sizes in enumerate([(1, 2, 3, 5), (1, 4, 3, 2), (1, 4, 2, 5)]):
        k = b.kernel(f"k{j + 1}", 2, 2, [ts[j], ts[j + 1]])
        buf = k.alloc((1, 4, 3, 5))
        k.load(buf, k.args[0], [Z4], [(1, 4, 3, 5)], [Z4])
        k.eltwise(buf, [buf], "sigmoid")
        k.store(k.args[1], buf, [Z4], [sizes, (0, 0, 0, 0)], [Z4])
    k = b.kernel("last", 1, 1, [ts[3], y])
    buf = k.alloc((1, 4, 3, 5))
    k.load(buf, k.args[0], [Z4], [(1, 4, 3, 5)], [Z4])
    k.store(k.args[1], buf, [Z4], [(1, 4, 3, 5)], [Z4])
    check_same(b.finish({"y": y}), b.ctx)


def test_views_and_returned_temporaries():
    b = Builder()
    x = b.input("x", (1, 2, 2, 3))
    t = b.temp("t", (1, 2, 2, 3))
    v = b.view(t, (1, 12))
    y = b.temp("y", (1, 12))
    k = b.kernel("a", 1, 1, [x, t])
    buf = k.alloc((1, 2, 2, 3))
    k.load(buf, k.args[0], [Z4], [(1, 2, 2, 3)], [Z4])
    k.store(k.args[1], buf, [Z4], [(1, 1, 2, 3)], [Z4])  # half of t
    k = b.kernel("b", 2, 2, [v, y])
    buf = k.alloc((1, 6))
    k.load(buf, k.args[0], [(0, 0), (0, 6)], [(1, 6)], [(0, 0)])
    k.eltwise(buf, [buf], "hard_swish")
    k.store(k.args[1], buf, [(0, 0)], [(1, 6)], [(0, 0), (0, 6)])
    check_same(b.finish({"y": y, "t": v}), b.ctx)


# --------------------------------------------------------------------------
# lowered programs
# --------------------------------------------------------------------------


def _zoo_module(name):
    from dlfusion import zoo
    from dlfusion.frontend import import_model

    ctx = make_context()
    return ctx, import_model(zoo.build(name), ctx)


@pytest.mark.parametrize("name,plan,cores,target", [
    ("squeezenet1_0", "all", 32, "mlu100"),
    ("squeezenet1_0", 3, 32, "mlu100"),
    ("mobilenet_v2", 4, 8, "edge8"),
])
def test_lowered_models_equal_per_core_reference(name, plan, cores, target):
    from dlfusion.passes.lower_to_accel import LowerToAccelPass

    ctx, module = _zoo_module(name)
    if plan == "all":
        plan_all(module, cores)
    else:
        random_plan(module, plan, cores)
    LowerToAccelPass(target=target).apply(ctx, module)
    check_same(module, ctx)


def test_blas_threads_do_not_change_numbers():
    from dlfusion.passes.lower_to_accel import LowerToAccelPass

    ctx, module = _zoo_module("squeezenet1_0")
    random_plan(module, 5, 16)
    LowerToAccelPass(target="mlu100").apply(ctx, module)
    inputs = random_program_inputs(find_program(module), seed=2)
    one = simulate(module, ctx, inputs, record_events=False)
    conf = simulate(module, ctx, inputs, record_events=False, blas_threads=None)
    for name in one.outputs:
        np.testing.assert_array_equal(one.outputs[name], conf.outputs[name])
    assert one.report == conf.report
