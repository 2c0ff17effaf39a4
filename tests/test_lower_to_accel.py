"""lower-to-accel: the lowered program computes what the nn module computes
(simulated, against the nn interpreter), for single layers of every kind,
tiled and untiled, on one and several cores, alone and in fusion groups;
every zoo model lowers to a program whose kernels fit; bad plans give one-line
errors."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Block, Region

from dlfusion import zoo
from dlfusion.context import make_context
from dlfusion.dialects import accel, nn
from dlfusion.dialects.nn import f32, ints, shape_of
from dlfusion.dialects.weights import weight_store
from dlfusion.errors import DlfusionError
from dlfusion.frontend import import_model
from dlfusion.interpreter import random_inputs, run_module
from dlfusion.passes import get_all_passes
from dlfusion.passes import lower_to_accel_layers as L
from dlfusion.passes.lower_to_accel import LowerToAccelPass
from dlfusion.sim import simulate

sys.path.insert(0, str(Path(__file__).parent))
from plan_helpers import layers_of, plan_all, random_plan, wrap  # noqa: E402

TINY = str(Path(__file__).parent / "filecheck" / "passes" / "Inputs" / "tiny.toml")


# --------------------------------------------------------------------------
# building small nn modules
# --------------------------------------------------------------------------


class Net:
    """A small @main built op by op, weights in the context's store."""

    def __init__(self, seed: int = 0):
        self.ctx = make_context()
        self.store = weight_store(self.ctx)
        self.rng = np.random.default_rng(seed)
        self.inputs: list[tuple[str, tuple[int, ...]]] = []
        self.block = Block()
        self.n = 0

    def input(self, name: str, shape) -> object:
        arg = self.block.insert_arg(nn.tensor(shape), len(self.block.args))
        arg.name_hint = name
        self.inputs.append((name, tuple(shape)))
        return arg

    def weight(self, shape, low=-1.0, high=1.0):
        self.n += 1
        key = self.store.add(f"w{self.n}", self.rng.uniform(low, high, shape).astype(np.float32))
        op = nn.WeightOp(key, nn.tensor(shape))
        op.result.name_hint = key
        self.block.add_op(op)
        return op.result

    def add(self, op, name: str | None = None):
        self.block.add_op(op)
        self.n += 1
        op.results[0].name_hint = name or f"{op.name.split('.')[-1]}{self.n}"
        return op.results[0]

    def module(self, *outputs) -> ModuleOp:
        self.block.add_op(func.ReturnOp(*outputs))
        fn = func.FuncOp(
            "main",
            ([a.type for a in self.block.args], [o.type for o in outputs]),
            Region(self.block),
        )
        fn.attributes["nn.input_names"] = ArrayAttr([StringAttr(n) for n, _ in self.inputs])
        fn.attributes["nn.output_names"] = ArrayAttr([StringAttr(f"out{i}") for i in range(len(outputs))])
        module = ModuleOp([fn])
        module.verify()
        return module


def conv(net, x, cout, k=3, stride=1, pad=1, dilation=1, groups=1, bias=True, name=None):
    cin = shape_of(x)[1]
    w = net.weight((cout, cin // groups, k, k))
    b = net.weight((cout,)) if bias else None
    pads = pad if isinstance(pad, tuple) else (pad,) * 4
    return net.add(nn.Conv2DOp(x, w, b, (stride, stride), pads, (dilation, dilation), groups), name)


def max_pool(net, x, k, s, pads=(0, 0, 0, 0), ceil=False, dil=(1, 1)):
    extra = {"dilations": ints(dil)} if dil != (1, 1) else {}
    op = nn.MaxPoolOp.make(x, (k, k), (s, s), pads, ceil, **extra)
    return net.add(op)


def avg_pool(net, x, k, s, pads=(0, 0, 0, 0), ceil=False, cip=False):
    op = nn.AvgPoolOp.make(x, (k, k), (s, s), pads, ceil, count_include_pad=IntegerAttr(int(cip), i64))
    return net.add(op)


def batch_norm(net, x):
    c = shape_of(x)[1]
    params = [net.weight((c,), 0.5, 2.0), net.weight((c,)), net.weight((c,)), net.weight((c,), 0.1, 2.0)]
    return net.add(nn.BatchNormOp(x, *params, epsilon=1e-3))


# --------------------------------------------------------------------------
# lowering and checking
# --------------------------------------------------------------------------


def lower(module, ctx, target="mlu100"):
    LowerToAccelPass(target=target).apply(ctx, module)
    module.verify()
    (program,) = [op for op in module.body.block.ops]
    assert isinstance(program, accel.ProgramOp)
    return program


def check_numerics(module, ctx, target="mlu100", rtol=2e-5):
    inputs = random_inputs(module, 0)
    ref = run_module(module, ctx, inputs)
    program = lower(module, ctx, target)
    got = simulate(module, ctx, inputs, target=target, record_events=False).outputs
    assert sorted(got) == sorted(ref)
    for name, want in ref.items():
        have = got[name]
        assert have.shape == want.shape
        assert np.isfinite(have).all()
        scale = float(np.max(np.abs(want))) or 1.0
        err = float(np.max(np.abs(have - want)))
        assert err <= rtol * scale, f"{name}: max abs error {err:.3g} vs max |ref| {scale:.3g}"
    return program


def kernels(program):
    return program.kernels()


def ops_in(kernel, cls):
    return [op for op in kernel.block.ops if isinstance(op, cls)]


# every small layer under: 1 core (mlu100), 4 cores (mlu100), the tiny target
# on 1 and 4 cores (tiles and sub-blocks), and as one fused group of 3 cores
MODES = [("mlu100", None), ("mlu100", 4), (TINY, None), (TINY, 4), ("mlu100", 3)]


def run_mode(build, target, cores, rtol=2e-5):
    net = Net()
    outs = build(net)
    outs = outs if isinstance(outs, tuple) else (outs,)
    module = net.module(*outs)
    if cores is not None:
        plan_all(module, cores)
    return check_numerics(module, net.ctx, target, rtol)


def _conv_dense(net):
    x = net.input("x", (1, 8, 12, 11))
    return conv(net, x, 20, k=3, stride=1, pad=1)


def _conv_stride_dilation(net):
    x = net.input("x", (1, 6, 13, 13))
    return conv(net, x, 12, k=3, stride=2, pad=(2, 1, 0, 2), dilation=2, bias=False)


def _conv_grouped(net):
    x = net.input("x", (1, 8, 9, 9))
    return conv(net, x, 12, k=3, pad=1, groups=2)


def _conv_depthwise(net):
    x = net.input("x", (1, 12, 10, 10))
    return conv(net, x, 12, k=3, stride=2, pad=1, groups=12)


def _conv_depthwise_multiplier(net):
    x = net.input("x", (1, 6, 9, 9))
    return conv(net, x, 12, k=3, pad=1, groups=6)


def _conv_batch2(net):
    x = net.input("x", (2, 5, 7, 7))
    return conv(net, x, 9, k=1, pad=0)


def _max_pool_ceil(net):
    x = net.input("x", (1, 10, 12, 12))
    return max_pool(net, x, 3, 2, ceil=True)


def _max_pool_pad_dilation(net):
    x = net.input("x", (1, 10, 11, 11))
    return max_pool(net, x, 3, 2, pads=(1, 1, 1, 1), dil=(2, 1))


def _avg_pool_cip(net):
    x = net.input("x", (1, 9, 11, 11))
    return avg_pool(net, x, 3, 2, pads=(1, 1, 1, 1), ceil=True, cip=True)


def _avg_pool_no_cip(net):
    x = net.input("x", (1, 9, 11, 11))
    return avg_pool(net, x, 3, 2, pads=(1, 0, 1, 1), ceil=True, cip=False)


def _global_pool(net):
    x = net.input("x", (1, 20, 6, 5))
    return net.add(nn.GlobalAvgPoolOp(x))


def _eltwise_chain(net):
    x = net.input("x", (1, 10, 6, 6))
    y = net.add(nn.SigmoidOp(x))
    y = net.add(nn.LeakyReluOp(y, alpha=f32(0.2)))
    y = net.add(nn.ClipOp(y, min=f32(-0.1), max=f32(0.3)))
    y = net.add(nn.HardSigmoidOp(y, alpha=f32(0.3), beta=f32(0.4)))
    return net.add(nn.HardSwishOp(y))


def _binary_broadcast(net):
    x = net.input("x", (1, 10, 5, 6))
    z = net.input("z", (1, 10, 5, 6))
    a = net.add(nn.AddOp(x, z))
    b = net.add(nn.MulOp(a, net.weight((1, 10, 1, 1))))
    c = net.add(nn.SubOp(b, net.weight((6,))))
    return net.add(nn.DivOp(c, net.weight((10, 1, 1), 1.0, 2.0)))


def _batch_norm(net):
    x = net.input("x", (1, 14, 7, 7))
    return batch_norm(net, x)


def _batch_norm_2d(net):
    x = net.input("x", (3, 20))
    return batch_norm(net, x)


def _gemm_bias(net):
    a = net.input("a", (3, 40))
    return net.add(nn.GemmOp(a, net.weight((24, 40)), net.weight((24,)), trans_b=True))


def _gemm_alpha_beta(net):
    a = net.input("a", (5, 12))
    return net.add(nn.GemmOp(a, net.weight((12, 18)), net.weight((5, 1)), alpha=0.5, beta=2.0))


def _gemm_row_c(net):
    a = net.input("a", (2, 12))
    return net.add(nn.GemmOp(a, net.weight((12, 10)), net.weight((1, 10)), beta=3.0))


def _gemm_dynamic_c(net):
    a = net.input("a", (2, 12))
    c = net.input("c", (2, 10))
    return net.add(nn.GemmOp(a, net.weight((10, 12)), c, trans_b=True, beta=0.5))


def _gemm_trans_a(net):
    a = net.input("a", (12, 3))
    return net.add(nn.GemmOp(a, net.weight((12, 10)), None, trans_a=True))


def _matmul_2d(net):
    a = net.input("a", (4, 9))
    b = net.input("b", (9, 13))
    return net.add(nn.MatMulOp(a, b))


def _matmul_batched(net):
    a = net.input("a", (2, 3, 4))
    return net.add(nn.MatMulOp(a, net.weight((4, 5))))


def _concat_split_slice(net):
    x = net.input("x", (1, 6, 5, 5))
    z = net.input("z", (1, 10, 5, 5))
    c = net.add(nn.ConcatOp([x, z, x], 1))
    split = nn.SplitOp(c, 1, [9, 13])
    net.add(split)
    split.results[1].name_hint = "split_b"
    t = net.add(nn.SliceOp(c, (0, 2, 1, 0), (1, 20, 5, 4), (1, 1, 1, 1)))
    u = net.add(nn.SliceOp(c, (0, 21, 4, 0), (1, -1, -1, 5), (1, -3, -2, 2)))
    return split.results[0], split.results[1], t, u


def _concat_axis2(net):
    x = net.input("x", (1, 3, 4, 5))
    z = net.input("z", (1, 3, 2, 5))
    return net.add(nn.ConcatOp([x, z], 2))


def _vector_layers(net):
    x = net.input("x", (1, 12, 4, 5))
    y = net.add(nn.LRNOp(x, 3, 1e-2, 0.75, 1.0))
    y = net.add(nn.PadOp(y, (0, 0, 1, 2, 0, 1, 0, 1), "reflect"))
    y = net.add(nn.TransposeOp(y, (0, 2, 3, 1)))
    y = net.add(nn.SoftmaxOp(y, 3))
    return net.add(nn.ReduceMeanOp(y, (1, 2), True))


def _softmax_big(net):
    x = net.input("x", (6, 16, 40))
    return net.add(nn.SoftmaxOp(x, 2))


def _reshape_gemm(net):
    x = net.input("x", (1, 16, 3, 3))
    y = net.add(nn.ReluOp(x))
    p = net.add(nn.GlobalAvgPoolOp(y))
    r = net.add(nn.ReshapeOp(p, (1, 16)))
    return net.add(nn.GemmOp(r, net.weight((10, 16)), net.weight((10,)), trans_b=True))


LAYERS = {
    "conv_dense": _conv_dense,
    "conv_stride_dilation": _conv_stride_dilation,
    "conv_grouped": _conv_grouped,
    "conv_depthwise": _conv_depthwise,
    "conv_depthwise_multiplier": _conv_depthwise_multiplier,
    "conv_batch2": _conv_batch2,
    "max_pool_ceil": _max_pool_ceil,
    "max_pool_pad_dilation": _max_pool_pad_dilation,
    "avg_pool_cip": _avg_pool_cip,
    "avg_pool_no_cip": _avg_pool_no_cip,
    "global_pool": _global_pool,
    "eltwise_chain": _eltwise_chain,
    "binary_broadcast": _binary_broadcast,
    "batch_norm": _batch_norm,
    "batch_norm_2d": _batch_norm_2d,
    "gemm_bias": _gemm_bias,
    "gemm_alpha_beta": _gemm_alpha_beta,
    "gemm_row_c": _gemm_row_c,
    "gemm_dynamic_c": _gemm_dynamic_c,
    "gemm_trans_a": _gemm_trans_a,
    "matmul_2d": _matmul_2d,
    "matmul_batched": _matmul_batched,
    "concat_split_slice": _concat_split_slice,
    "concat_axis2": _concat_axis2,
    "vector_layers": _vector_layers,
    "softmax_big": _softmax_big,
    "reshape_gemm": _reshape_gemm,
}


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{Path(m[0]).stem}-{m[1] or 'nogroup'}")
@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_numerics(layer, mode):
    target, cores = mode
    run_mode(LAYERS[layer], target, cores)


def test_fused_chain_numerics_and_on_chip():
    """conv -> bn -> relu -> conv -> add -> max_pool -> relu -> gemm in one
    group on 3 cores: fits on chip, so no DRAM temp, exchanges for the
    convolution and the gemm."""
    net = Net()
    x = net.input("x", (1, 6, 8, 8))
    a = conv(net, x, 20)
    a = batch_norm(net, a)
    a = net.add(nn.ReluOp(a))
    b = conv(net, a, 20, k=3, stride=1, pad=1)
    b = net.add(nn.AddOp(b, a))
    b = max_pool(net, b, 3, 2, pads=(1, 1, 1, 1))
    b = net.add(nn.ReluOp(b))
    g = net.add(nn.GlobalAvgPoolOp(b))
    r = net.add(nn.ReshapeOp(g, (1, 20)))
    y = net.add(nn.GemmOp(r, net.weight((7, 20)), net.weight((7,)), trans_b=True))
    module = net.module(y)
    wrap(layers_of(module), "g0", 3)
    program = check_numerics(module, net.ctx)
    (kernel,) = kernels(program)
    assert kernel.num_cores == 3
    temps = [op for op in program.block.ops if isinstance(op, accel.DramOp) and op.kind.data == "temp"]
    assert [t.label.data for t in temps] == ["out0"]
    assert len(ops_in(kernel, accel.ExchangeOp)) == 2
    assert not ops_in(kernel, accel.BarrierOp)


def test_fused_group_spills_when_it_does_not_fit():
    net = Net()
    x = net.input("x", (1, 8, 12, 12))
    a = conv(net, x, 16)
    a = net.add(nn.ReluOp(a))
    y = conv(net, a, 8)
    module = net.module(y)
    wrap(layers_of(module), "g0", 4)
    program = check_numerics(module, net.ctx, TINY)
    (kernel,) = kernels(program)
    temps = [op.label.data for op in program.block.ops if isinstance(op, accel.DramOp) and op.kind.data == "temp"]
    assert len(temps) == 3  # conv, relu, output
    assert ops_in(kernel, accel.BarrierOp)
    assert not ops_in(kernel, accel.ExchangeOp)


def test_random_plans_small_net():
    """Random groups and core numbers over a small residual network."""
    for seed in range(6):
        net = Net(seed)
        x = net.input("x", (1, 8, 10, 10))
        a = net.add(nn.ReluOp(batch_norm(net, conv(net, x, 16, stride=2))))
        b = net.add(nn.ReluOp(conv(net, a, 16)))
        b = conv(net, b, 16, groups=16)
        c = net.add(nn.AddOp(a, b))
        d = net.add(nn.ConcatOp([c, a], 1))
        e = max_pool(net, d, 2, 2)
        f = net.add(nn.ReshapeOp(net.add(nn.GlobalAvgPoolOp(e)), (1, 32)))
        y = net.add(nn.GemmOp(f, net.weight((10, 32)), net.weight((10,)), trans_b=True))
        module = net.module(y, c)
        random_plan(module, seed, 4)
        check_numerics(module, net.ctx, TINY if seed % 2 else "mlu100")


# --------------------------------------------------------------------------
# the structure of what is produced
# --------------------------------------------------------------------------


def test_split_chunks_and_active_cores():
    net = Net()
    x = net.input("x", (1, 4, 6, 6))
    y = conv(net, x, 40)
    module = net.module(y)
    plan_all(module, 4)
    program = lower(module, net.ctx)
    (k,) = kernels(program)
    # chunk = ceil(40 / 4) = 10 -> 32 lanes: cores 0 and 1 work (32 + 8)
    assert (k.num_cores, k.num_active) == (4, 2)
    (store,) = ops_in(k, accel.StoreOp)
    sizes = [tuple(a.get_values()) for a in store.sizes.data]
    assert sizes[:2] == [(1, 32, 6, 6), (1, 8, 6, 6)]


def test_reshape_is_a_view_and_names_kept():
    net = Net()
    x = net.input("x", (1, 4, 2, 2))
    r = net.add(nn.ReshapeOp(x, (1, 16)))
    y = net.add(nn.ReluOp(r))
    module = net.module(y)
    program = lower(module, net.ctx)
    views = [op for op in program.block.ops if isinstance(op, accel.ViewOp)]
    assert len(views) == 1 and len(kernels(program)) == 1
    assert [a.data for a in program.input_names.data] == ["x"]
    assert [a.data for a in program.output_names.data] == ["out0"]
    assert program.target.data == "mlu100" and program.cores.value.data == 32


def test_registered_in_pass_registry():
    assert get_all_passes()["lower-to-accel"]() is LowerToAccelPass


# --------------------------------------------------------------------------
# channels x rows: the 2-D split of layers lowered on their own
# --------------------------------------------------------------------------


def _rows_conv(net):  # one lane group: the channel split has one active core
    x = net.input("x", (1, 16, 40, 33))
    return conv(net, x, 32, k=3, pad=1)


def _rows_conv_stride2(net):  # stride 2, dilation, asymmetric pads, odd rows
    x = net.input("x", (1, 8, 45, 21))
    return conv(net, x, 48, k=3, stride=2, pad=(2, 1, 0, 2), dilation=2, bias=False)


def _rows_conv_5x5(net):
    x = net.input("x", (1, 12, 37, 29))
    return conv(net, x, 40, k=5, stride=2, pad=2)


def _rows_conv_batch2(net):
    x = net.input("x", (2, 8, 29, 17))
    return conv(net, x, 24, k=3, pad=(1, 0, 2, 1))


def _rows_conv_wide(net):  # on the tiny target: a block's tiles are columns
    x = net.input("x", (1, 8, 21, 60))
    return conv(net, x, 4, k=3, pad=(1, 1, 1, 0))


def _rows_grouped(net):
    x = net.input("x", (1, 8, 31, 30))
    return conv(net, x, 16, k=3, pad=1, groups=2)


def _rows_depthwise(net):
    x = net.input("x", (1, 24, 41, 40))
    return conv(net, x, 24, k=3, stride=2, pad=1, groups=24)


def _rows_depthwise_s1(net):
    x = net.input("x", (1, 40, 35, 36))
    return conv(net, x, 40, k=3, pad=1, groups=40)


def _rows_max_pool(net):
    x = net.input("x", (1, 16, 57, 57))
    return max_pool(net, x, 3, 2, pads=(1, 1, 1, 1))


def _rows_max_pool_ceil(net):
    x = net.input("x", (1, 12, 50, 50))
    return max_pool(net, x, 3, 2, ceil=True)


def _rows_avg_pool_cip(net):  # counts its pads: padding rows declared data
    x = net.input("x", (1, 16, 47, 47))
    return avg_pool(net, x, 3, 1, pads=(1, 1, 1, 1), cip=True)


def _rows_avg_pool_cols_padded(net):  # no padding rows: rows split without cip
    x = net.input("x", (1, 16, 48, 47))
    return avg_pool(net, x, 2, 2, pads=(0, 1, 0, 1))


def _rows_sigmoid(net):
    x = net.input("x", (1, 16, 64, 60))
    return net.add(nn.SigmoidOp(x))


def _rows_binary(net):
    x = net.input("x", (1, 24, 50, 40))
    z = net.input("z", (1, 24, 50, 40))
    a = net.add(nn.AddOp(x, z))
    return net.add(nn.MulOp(a, net.weight((1, 24, 1, 1))))


def _rows_batch_norm(net):
    x = net.input("x", (1, 24, 50, 40))
    return batch_norm(net, x)


def _rows_rank3(net):
    x = net.input("x", (2, 24, 301))
    return net.add(nn.ReluOp(x))


ROWS = {
    "conv": _rows_conv,
    "conv_stride2": _rows_conv_stride2,
    "conv_5x5": _rows_conv_5x5,
    "conv_batch2": _rows_conv_batch2,
    "conv_wide": _rows_conv_wide,
    "grouped": _rows_grouped,
    "depthwise": _rows_depthwise,
    "depthwise_s1": _rows_depthwise_s1,
    "max_pool": _rows_max_pool,
    "max_pool_ceil": _rows_max_pool_ceil,
    "avg_pool_cip": _rows_avg_pool_cip,
    "avg_pool_cols_padded": _rows_avg_pool_cols_padded,
    "sigmoid": _rows_sigmoid,
    "binary": _rows_binary,
    "batch_norm": _rows_batch_norm,
    "rank3": _rows_rank3,
}


@pytest.mark.parametrize("mode", [("mlu100", 32), ("mlu100", 6), (TINY, 4)],
                         ids=lambda m: f"{Path(m[0]).stem}-{m[1]}")
@pytest.mark.parametrize("layer", list(ROWS))
def test_rows_split_numerics(layer, mode):
    """Each layer on its own, with the split the lowering chooses."""
    target, cores = mode
    program = run_mode(ROWS[layer], target, cores)
    for k in kernels(program):
        assert 1 <= k.num_active <= k.num_cores == cores


def _grid_options(build, target, cores) -> int:
    """How many splits the lowering chooses from for the layers of `build`."""
    seen = [1]
    real = L.chosen_grid

    def record(key, options, cost):
        seen.append(len(options))
        return real(key, options, cost)

    net = Net()
    outs = build(net)
    module = net.module(*(outs if isinstance(outs, tuple) else (outs,)))
    plan_all(module, cores)
    L.chosen_grid, saved = record, L.chosen_grid
    try:
        lower(module, net.ctx, target)
    finally:
        L.chosen_grid = saved
    return max(seen)


@pytest.mark.parametrize("mode", [("mlu100", 6), (TINY, 4)], ids=lambda m: f"{Path(m[0]).stem}-{m[1]}")
@pytest.mark.parametrize("layer", list(ROWS))
def test_every_grid_computes_the_layer(layer, mode, monkeypatch):
    """Every channels x rows split the lowering may choose computes the layer
    (whichever the estimate prefers): uneven blocks of rows, halos, padding
    at the top and bottom blocks only, several tiles per block (tiny NRAM),
    channel sub-blocks (tiny WRAM)."""
    target, cores = mode
    count = _grid_options(ROWS[layer], target, cores)
    if layer in ("avg_pool_cols_padded", "conv_wide") or target == "mlu100":
        assert count > 1  # rows may split
    for i in range(count):
        chosen = []

        def pick(key, options, cost, i=i):
            g = options[min(i, len(options) - 1)]
            chosen.append(g)
            return g

        monkeypatch.setattr(L, "chosen_grid", pick)
        program = run_mode(ROWS[layer], target, cores)
        for k, g in zip(kernels(program), chosen):
            assert k.num_active == g.active
            assert g.active <= cores and g.rows.active <= g.rows.total


def test_rows_split_example_b_tables_share_slices():
    """The multicast issue's example (b), 3x3 256 -> 256 on 56x56 on 32
    cores: more than the 8 active cores of the channel split; cores of one
    row block load identical input entries (one DRAM read), cores of one
    channel group identical weight entries; the stores tile the output
    exactly once; the input is read about once (plus halos), not once per
    channel group."""
    net = Net()
    x = net.input("x", (1, 256, 56, 56))
    y = conv(net, x, 256, k=3, pad=1, bias=False)
    module = net.module(y)
    plan_all(module, 32)
    program = lower(module, net.ctx)
    (k,) = kernels(program)
    assert k.num_active > 8
    loads = ops_in(k, accel.LoadOp)
    w_loads = [op for op in loads if accel.mshape(op.dst)[1:] == (256, 3, 3)]
    x_loads = [op for op in loads if op not in w_loads]
    act = k.num_active

    def groups(op):
        """Cores (active) grouped by equal (src_offsets, sizes) entries."""
        rows = [(accel.row_for(op.src_offsets, c), accel.row_for(op.sizes, c)) for c in range(act)]
        out: dict = {}
        for c, r in enumerate(rows):
            out.setdefault(r, []).append(c)
        return sorted(out.values())

    (wl,) = w_loads
    w_sets = groups(wl)
    x_sets = [groups(op) for op in x_loads]
    pc, pr = len(w_sets), len(w_sets[0])
    assert pc * pr == act and pc < act and pr > 1
    # a channel group is consecutive cores; a row block one core of each group
    assert w_sets == [list(range(g * pr, (g + 1) * pr)) for g in range(pc)]
    for sets in x_sets:
        assert all(len(s) == pc for s in sets)
        assert all(s == [r + g * pr for g in range(pc)] for r, s in zip(range(pr), sets))
    # the stores cover every output element once
    cover = np.zeros((1, 256, 56, 56), dtype=np.int32)
    for st in ops_in(k, accel.StoreOp):
        for c in range(act):
            off, size = accel.row_for(st.dst_offsets, c), accel.row_for(st.sizes, c)
            cover[tuple(slice(o, o + s) for o, s in zip(off, size))] += 1
    assert (cover == 1).all()
    rep = simulate(module, net.ctx, None, timing_only=True, record_events=False).report["kernels"][0]
    # each row block's rows plus its halo (one row above and below) once,
    # the weights once
    eb, rb = 2, -(-56 // pr)
    halo_rows = sum(min(56, r0 + rb + 1) - max(0, r0 - 1) for r0 in range(0, 56, rb))
    assert rep["dram_bytes_read"] == 256 * halo_rows * 56 * eb + 256 * 256 * 9 * eb
    assert rep["multicast_transfers"] >= len(x_loads) * pr + pc


def test_rows_do_not_split_when_pooling_pads_cannot_be_shared():
    """An average not counting its pads, with padding rows, and a global
    average keep the plain channel split."""
    net = Net()
    x = net.input("x", (1, 16, 48, 48))
    a = avg_pool(net, x, 3, 2, pads=(1, 1, 1, 1), cip=False)
    g = net.add(nn.GlobalAvgPoolOp(x))
    module = net.module(a, g)
    plan_all(module, 32)
    program = check_numerics(module, net.ctx)
    assert [k.num_active for k in kernels(program)] == [1, 1]


def test_spilled_group_splits_rows():
    """A group that does not fit on chip lowers each layer on its own, with
    its own channels x rows split (and a barrier between them)."""
    net = Net()
    x = net.input("x", (1, 16, 120, 120))
    a = conv(net, x, 32, k=3, pad=1)
    y = net.add(nn.ReluOp(a))
    module = net.module(y)
    wrap(layers_of(module), "g0", 8)
    program = check_numerics(module, net.ctx)
    (k,) = kernels(program)
    temps = [op for op in program.block.ops if isinstance(op, accel.DramOp) and op.kind.data == "temp"]
    assert len(temps) == 2  # spilled: the conv's map goes through DRAM
    assert ops_in(k, accel.BarrierOp)
    assert k.num_active == 8  # one lane group: only rows can use the cores


def test_grids_options():
    """The choices: the plain channel split first; when it leaves cores idle,
    Pc x Pr <= cores using more cores, each (Pc, block) once."""
    (only,) = L.grids(1024, 56, 32, 32)  # 32 lane groups: no cores left
    assert (only.ch.active, only.rows.active) == (32, 1)
    opts = L.grids(256, 56, 32, 32)
    assert (opts[0].ch.chunk, opts[0].ch.active, opts[0].rows.active) == (32, 8, 1)
    assert len({(g.ch.chunk, g.rows.chunk) for g in opts}) == len(opts)
    for g in opts[1:]:
        assert 8 < g.active <= 32
        assert g.rows.active == -(-56 // g.rows.chunk)
        assert g.ch.chunk % 32 == 0
    assert any((g.ch.active, g.rows.active) == (8, 4) for g in opts)
    assert any((g.ch.active, g.rows.active) == (1, 28) for g in opts)
    # cores are channel-major: core c = g * Pr + r
    g = next(g for g in opts if (g.ch.active, g.rows.active) == (4, 8))
    assert [g.cell(c) for c in (0, 7, 8, 31)] == [(0, 0), (0, 7), (1, 0), (3, 7)]
    assert g.cell(32) is None
    # rows never split past one row each
    assert max(g.rows.active for g in L.grids(16, 5, 32, 32)) == 5


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_too_many_cores_is_one_line_error():
    net = Net()
    x = net.input("x", (1, 4, 6, 6))
    module = net.module(net.add(nn.ReluOp(x)))
    plan_all(module, 64)
    with pytest.raises(DlfusionError) as exc:
        lower(module, net.ctx)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "'g0'" in msg and "64 cores" in msg and "'mlu100'" in msg


def test_minimal_tile_does_not_fit():
    # a dense conv needs every input channel of a whole window: 256 channels
    # x 3 x 3 elements of fp16 are 4608 bytes > the tiny target's 2 KiB NRAM
    net = Net()
    x = net.input("x", (1, 256, 4, 4))
    module = net.module(conv(net, x, 4, name="big"))
    with pytest.raises(DlfusionError) as exc:
        lower(module, net.ctx, TINY)
    msg = str(exc.value)
    assert "\n" not in msg
    assert re.search(r"kernel 'big' .*buffer 'big_in' \(4608 bytes\).* 2048 bytes of nram", msg), msg


# --------------------------------------------------------------------------
# the zoo
# --------------------------------------------------------------------------


def zoo_module(name: str):
    ctx = make_context()
    return ctx, import_model(zoo.build(name), ctx)


def _check_fits(program, target) -> None:
    for k in program.kernels():
        use = k.buffer_bytes(target.element_bytes)
        assert sum(b for _, b in use["nram"]) <= target.nram_bytes, k.sym_name.data
        assert sum(b for _, b in use["wram"]) <= target.wram_bytes, k.sym_name.data
        assert 1 <= k.num_active <= k.num_cores


@pytest.mark.parametrize("name", zoo.MODELS)
def test_zoo_fits_at_1_and_32_cores(name):
    from dlfusion.targets import load_target

    target = load_target("mlu100")
    ctx, base = zoo_module(name)
    n_layers = len(layers_of(base))
    for cores in (1, 32):
        module = base.clone()
        plan_all(module, cores)
        program = lower(module, ctx)
        assert len(program.kernels()) <= n_layers
        _check_fits(program, target)


ZOO_NUMERICS = [
    ("resnet18", "all", 1, "mlu100"),
    ("resnet18", "random", 16, "mlu100"),
    ("mobilenet_v2", "random", 32, "mlu100"),
    ("googlenet", "random", 32, "mlu100"),
    ("squeezenet1_0", "random", 8, "edge8"),
    ("mobilenet_v1", "all", 8, "edge8"),
    # every model, every layer on all 32 cores (channels x rows splits)
    *[(name, "all", 32, "mlu100") for name in zoo.MODELS],
]


@pytest.mark.parametrize("case", ZOO_NUMERICS, ids=lambda c: "-".join(map(str, c)))
def test_zoo_numerics(case):
    name, plan, cores, target = case
    ctx, module = zoo_module(name)
    if plan == "all":
        plan_all(module, cores)
    else:
        random_plan(module, seed=cores, max_cores=cores)
    check_numerics(module, ctx, target, rtol=1e-4)


def test_resnet50_all_32_cores_lowers_in_seconds():
    ctx, module = zoo_module("resnet50")
    plan_all(module, 32)
    t0 = time.perf_counter()
    LowerToAccelPass().apply(ctx, module)
    elapsed = time.perf_counter() - t0
    module.verify()
    assert elapsed < 10, f"lowering took {elapsed:.1f}s"


def test_fused_matmul_of_two_computed_maps():
    """A matmul whose right operand is computed in the same group cannot
    read it from DRAM: the group spills and stays correct."""
    net = Net()
    a = net.input("a", (4, 6))
    b = net.input("b", (6, 5))
    ra = net.add(nn.ReluOp(a))
    rb = net.add(nn.SigmoidOp(b))
    y = net.add(nn.MatMulOp(ra, rb))
    module = net.module(y)
    wrap(layers_of(module), "g0", 2)
    program = check_numerics(module, net.ctx)
    (kernel,) = kernels(program)
    assert ops_in(kernel, accel.BarrierOp)
