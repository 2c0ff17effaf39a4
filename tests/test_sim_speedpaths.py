"""The simulator's fast paths for data movement give the per-core numbers.

`dlfusion.sim.accel_functions` decodes each distinct DMA table once per run,
turns loads of whole buffers and stores whose boxes lie side by side in DRAM
(`_grid`) into one view or one assignment, keeps a convolution's rows per
(input, weights) pair without reordering them, and tracks the rows of reused
temporaries written by such stores as one box. Each program here is checked
against the straightforward per-core reference of
tests/test_sim_numerics.py (`check_same`: within float32 rounding, which
only the stacked products of large convolutions use; it also checks that
the time account is the same without numbers). No timing is measured here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, i32

from dlfusion.context import make_context
from dlfusion.dialects.accel import per_core, table_rows
from dlfusion.ir_io import parse_module, print_module
from dlfusion.sim import simulate
from dlfusion.sim.accel_functions import _grid, _grid_view, _rows_key, _table

sys.path.insert(0, str(Path(__file__).parent))
from accel_builder import Builder, rand  # noqa: E402
from test_sim_numerics import Z4, check_same  # noqa: E402

# --------------------------------------------------------------------------
# boxes side by side
# --------------------------------------------------------------------------


def _boxes(offsets, size):
    return [tuple(slice(o, o + s) for o, s in zip(off, size)) for off in offsets]


@pytest.mark.parametrize(
    "offsets,size,counts",
    [
        ([(0, 0, 0, 0)], (1, 4, 3, 5), ()),
        ([(0, 0, 0, 0), (0, 4, 0, 0), (0, 8, 0, 0)], (1, 4, 3, 5), (3,)),
        ([(0, 8, 0, 0), (0, 0, 0, 0), (0, 4, 0, 0)], (1, 4, 3, 5), (3,)),  # not in order
        ([(0, 2, 3, 0), (0, 2, 0, 0)], (1, 4, 3, 5), (2,)),  # not from 0
        ([(0, 0, 0, 0), (0, 0, 3, 0), (0, 4, 0, 0), (0, 4, 3, 0)], (1, 4, 3, 5), (2, 2)),
        ([(0, 4, 3, 0), (0, 0, 3, 0), (0, 4, 0, 0), (0, 0, 0, 0)], (1, 4, 3, 5), (2, 2)),
    ],
)
def test_grid_of_boxes_side_by_side(offsets, size, counts):
    grid = _grid(offsets, size)
    assert grid is not None and grid[2] == counts
    arr = np.arange(2 * 16 * 9 * 5, dtype=np.float32).reshape(2, 16, 9, 5)
    view, pos = _grid_view(arr, grid, size)
    assert np.shares_memory(view, arr)
    flat = view.reshape(-1, *size) if len(counts) > 1 else view
    assert sorted(pos) == list(range(len(offsets)))
    for box, p in zip(_boxes(offsets, size), pos):
        np.testing.assert_array_equal(flat[p], arr[box])
    # writing through the view writes the boxes
    view[...] = -1.0
    for box in _boxes(offsets, size):
        assert (arr[box] == -1.0).all()
    assert (arr >= 0).sum() == arr.size - len(offsets) * np.prod(size)


@pytest.mark.parametrize(
    "offsets,size",
    [
        ([(0, 0), (0, 3)], (1, 4)),  # overlapping (halo rows)
        ([(0, 0), (0, 5)], (1, 4)),  # a gap
        ([(0, 0), (0, 4), (0, 4)], (1, 4)),  # twice the same box
        ([(0, 0), (0, 4), (1, 0)], (1, 4)),  # not a full grid
        ([(0, 0), (0, 0)], (0, 4)),  # empty boxes
        ([(0, 0), (0, 2)], (1, 0)),
    ],
)
def test_not_a_grid(offsets, size):
    assert _grid(offsets, size) is None


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------


def test_tables_decode_as_table_rows():
    rows = [(0, 0, 0, 0), (0, 64, 0, 0), (0, 0, 0, 0), (3, 1, 2, 10**12)]
    attr = per_core(rows)
    assert _table(attr) == table_rows(attr) == rows
    assert _rows_key(attr) == _rows_key(per_core(rows)) != _rows_key(per_core(rows[:3]))
    # i32 rows: the same values, but no shared decoding
    narrow = ArrayAttr([DenseArrayBase.from_list(i32, list(r[:3])) for r in rows])
    assert _table(narrow) == table_rows(narrow) == [r[:3] for r in rows]
    assert _rows_key(narrow) is None


# --------------------------------------------------------------------------
# programs against the per-core reference
# --------------------------------------------------------------------------


def test_stores_of_cores_out_of_order_and_in_two_dimensions():
    """Cores store their rows to channel blocks in a permuted order; then a
    rows x channels grid whose cores hold equal contents two by two; then
    a part of each core's buffer (not its whole) side by side."""
    b = Builder()
    x = b.input("x", (1, 8, 6, 5))
    y1, y2, y3 = b.temp("y1", (1, 8, 6, 5)), b.temp("y2", (1, 8, 12, 5)), b.temp("y3", (1, 8, 6, 5))
    k = b.kernel("perm", 4, 4, [x, y1, y2, y3])
    xin, o1, o2, o3 = k.args
    buf = k.alloc((1, 2, 6, 5))
    k.load(buf, xin, [(0, 2 * c, 0, 0) for c in range(4)], [(1, 2, 6, 5)], [Z4])
    k.eltwise(buf, [buf], "sigmoid")
    k.store(o1, buf, [Z4], [(1, 2, 6, 5)], [(0, 2 * c, 0, 0) for c in (2, 0, 3, 1)])
    k.store(o2, buf, [Z4], [(1, 2, 6, 5)], [(0, 2 * (c % 2), 6 * (c // 2), 0) for c in range(4)])
    k.store(o2, buf, [Z4], [(1, 2, 6, 5)], [(0, 4 + 2 * (c // 2), 6 * (c % 2), 0) for c in (0, 2, 1, 3)])
    k.store(o3, buf, [(0, 1, 0, 0)], [(1, 1, 6, 5)], [(0, c, 0, 0) for c in (4, 5, 6, 7)])
    # a shared load: every core holds the same row, stores it to 4 places
    k2 = b.kernel("shared", 4, 4, [x, y3])
    xin, o3 = k2.args
    buf = k2.alloc((1, 1, 6, 5))
    k2.load(buf, xin, [(0, 3, 0, 0)], [(1, 1, 6, 5)], [Z4])
    k2.store(o3, buf, [Z4], [(1, 1, 6, 5)], [(0, c, 0, 0) for c in range(4)])
    check_same(b.finish({"y1": y1, "y2": y2, "y3": y3}), b.ctx)


def test_loads_side_by_side_in_one_and_two_dimensions():
    """Whole-buffer loads whose slices lie along one axis in a permuted
    order (a view of DRAM, in place of which the buffer is then computed),
    along two axes (one copy), and overlapping (halo rows: a copy each);
    the same tables again in a later kernel, on a buffer of another shape."""
    b = Builder()
    x = b.input("x", (1, 8, 12, 5))
    y = b.temp("y", (1, 8, 12, 5))
    z = b.temp("z", (1, 8, 12, 5))
    k = b.kernel("one", 4, 4, [x, y])
    xin, yout = k.args
    buf = k.alloc((1, 2, 12, 5))
    order = (3, 1, 0, 2)
    k.load(buf, xin, [(0, 2 * c, 0, 0) for c in order], [(1, 2, 12, 5)], [Z4])
    k.eltwise(buf, [buf, buf], "mul")
    k.store(yout, buf, [Z4], [(1, 2, 12, 5)], [(0, 2 * c, 0, 0) for c in order])
    k = b.kernel("two", 4, 4, [y, z])
    yin, zout = k.args
    buf = k.alloc((1, 4, 6, 5))
    grid = [(0, 4 * (c // 2), 6 * (c % 2), 0) for c in (1, 3, 0, 2)]
    k.load(buf, yin, grid, [(1, 4, 6, 5)], [Z4])
    k.eltwise(buf, [buf], "relu")
    k.store(zout, buf, [Z4], [(1, 4, 6, 5)], grid)
    halo = k.alloc((1, 4, 7, 5))
    k.load(halo, yin, [(0, 4 * (c // 2), 5 * (c % 2), 0) for c in range(4)], [(1, 4, 7, 5)], [Z4])
    k.eltwise(halo, [halo], "sigmoid")
    k.store(zout, halo, [(0, 0, 1, 0)], [(1, 4, 6, 5)], [(0, 4 * (c // 2), 6 * (c % 2), 0) for c in range(4)])
    u = b.temp("u", (1, 8, 12, 6))
    k = b.kernel("again", 4, 4, [y, z, u])
    yin, zout, uout = k.args
    buf = k.alloc((1, 2, 12, 5))
    k.load(buf, yin, [(0, 2 * c, 0, 0) for c in order], [(1, 2, 12, 5)], [Z4])
    wide = k.alloc((1, 2, 12, 6))  # the same tables, part of a larger buffer
    k.fill(wide, 2.0)
    k.load(wide, yin, [(0, 2 * c, 0, 0) for c in order], [(1, 2, 12, 5)], [Z4])
    k.eltwise(buf, [buf, buf], "sub")
    k.store(zout, buf, [Z4], [(1, 2, 12, 5)], [(0, 2 * c, 0, 0) for c in order])
    k.store(uout, wide, [Z4], [(1, 2, 12, 6)], [(0, 2 * c, 0, 0) for c in order])
    check_same(b.finish({"y": y, "z": z, "u": u}), b.ctx)


def test_conv_pairs_not_in_core_order():
    """Rows x channels without bias, the cores numbered channel half first:
    the convolution's rows are per (input, weights) pair, each core points
    at its own."""
    b = Builder()
    x = b.input("x", (1, 6, 12, 9))
    w = rand(64, 6, 3, 3, seed=1)
    wv = b.weight("w", w)
    y = b.temp("y", (1, 64, 12, 9))
    k = b.kernel("conv", 6, 4, [x, wv, y])
    xin, win, yout = k.args
    i, kw, o = k.alloc((1, 6, 8, 11)), k.alloc((32, 6, 3, 3), "wram"), k.alloc((1, 32, 6, 9))
    k.fill(i, 0.0)
    ch = [0, 32, 0, 32]
    rows = [0, 0, 6, 6]
    idle = [Z4, Z4]  # the entries of the two idle cores
    k.load(kw, win, [(c, 0, 0, 0) for c in ch] + idle, [(32, 6, 3, 3)], [Z4])
    k.load(i, xin, [(0, 0, max(0, r - 1), 0) for r in rows] + idle, [(1, 6, 7, 9)],
           [(0, 0, 1, 1) if r == 0 else (0, 0, 0, 1) for r in rows] + idle)
    k.conv(o, i, kw)
    k.eltwise(o, [o], "relu")
    k.store(yout, o, [Z4], [(1, 32, 6, 9)], [(0, c, r, 0) for c, r in zip(ch, rows)] + idle)
    check_same(b.finish({"y": y}), b.ctx)


def test_reused_temporaries_written_side_by_side_then_read_in_part():
    """Temporaries in reused memory: one written by a store whose boxes lie
    side by side (noted as one box), one written only in part and then read
    whole (zeros where no store wrote)."""
    b = Builder()
    x = b.input("x", (1, 8, 4, 5))
    ts = [b.temp(f"t{j}", (1, 8, 4, 5)) for j in range(4)]
    y = b.temp("y", (1, 8, 4, 5))
    k = b.kernel("k0", 2, 2, [x, ts[0]])
    buf = k.alloc((1, 4, 4, 5))
    k.load(buf, k.args[0], [(0, 4 * c, 0, 0) for c in range(2)], [(1, 4, 4, 5)], [Z4])
    k.eltwise(buf, [buf], "relu")
    k.store(k.args[1], buf, [Z4], [(1, 4, 4, 5)], [(0, 4 * c, 0, 0) for c in range(2)])
    for j, rows in enumerate([4, 3, 4]):
        k = b.kernel(f"k{j + 1}", 4, 4, [ts[j], ts[j + 1]])
        buf = k.alloc((1, 2, 4, 5))
        k.load(buf, k.args[0], [(0, 2 * c, 0, 0) for c in range(4)], [(1, 2, 4, 5)], [Z4])
        k.eltwise(buf, [buf], "sigmoid")
        k.store(k.args[1], buf, [Z4], [(1, 2, rows, 5)], [(0, 2 * c, 0, 0) for c in (1, 0, 3, 2)])
    k = b.kernel("last", 1, 1, [ts[3], y])
    buf = k.alloc((1, 8, 4, 5))
    k.load(buf, k.args[0], [Z4], [(1, 8, 4, 5)], [Z4])
    k.store(k.args[1], buf, [Z4], [(1, 8, 4, 5)], [Z4])
    check_same(b.finish({"y": y}), b.ctx)


def test_parsed_program_gives_the_same_numbers_and_time():
    """A program printed and parsed back (its tables' element types are
    other objects than the builtin i64) simulates to the same result."""
    from dlfusion import zoo
    from dlfusion.frontend import import_model
    from dlfusion.passes.lower_to_accel import LowerToAccelPass

    sys.path.insert(0, str(Path(__file__).parent))
    from plan_helpers import random_plan

    ctx = make_context()
    module = import_model(zoo.build("squeezenet1_0"), ctx)
    random_plan(module, 7, 16)
    LowerToAccelPass(target="mlu100").apply(ctx, module)
    ctx2 = make_context()
    parsed = parse_module(print_module(module, ctx, emit_weights=True), ctx2)
    got = check_same(module, ctx)
    again = simulate(parsed, ctx2, None, record_events=False)
    first = simulate(module, ctx, None, record_events=False)
    assert again.report == first.report == got.report
    for name in first.outputs:
        np.testing.assert_array_equal(again.outputs[name], first.outputs[name])


def test_tables_of_other_integer_types():
    """DMA tables of i32 arrays (valid IR, not what the lowering writes) are
    decoded for each instruction on their own, with the same numbers."""
    from dlfusion.dialects import accel

    b = Builder()
    x = b.input("x", (1, 4, 6, 5))
    y = b.temp("y", (1, 4, 6, 5))
    k = b.kernel("k", 2, 2, [x, y])
    buf = k.alloc((1, 2, 6, 5))
    k.load(buf, k.args[0], [(0, 2 * c, 0, 0) for c in range(2)], [(1, 2, 6, 5)], [Z4])
    k.eltwise(buf, [buf], "sigmoid")
    k.store(k.args[1], buf, [Z4], [(1, 2, 6, 5)], [(0, 2 * c, 0, 0) for c in (1, 0)])
    for op in k.body.ops:
        if isinstance(op, accel.DmaOp):
            for key in ("src_offsets", "sizes", "dst_offsets"):
                rows = table_rows(op.properties[key])
                op.properties[key] = ArrayAttr([DenseArrayBase.from_list(i32, list(r)) for r in rows])
    check_same(b.finish({"y": y}), b.ctx)


@pytest.mark.parametrize("same_bias", [True, False])
def test_conv_bias_per_pair_or_per_core(same_bias):
    """Two row halves x two channel halves with a bias per channel half
    (added in place to the pair's rows); or cores with the same input and
    weights but another bias each (a row per core)."""
    b = Builder()
    x = b.input("x", (1, 3, 8, 6))
    w, bias = rand(16, 3, 3, 3, seed=1), rand(32, seed=2)
    wv, bv = b.weight("w", w), b.weight("b", bias)
    y = b.temp("y", (1, 16, 8, 6))
    z = b.temp("z", (1, 32, 4, 6))
    k = b.kernel("conv", 4, 4, [x, wv, bv, y, z])
    xin, win, bin_, yout, zout = k.args
    i, kw, kb, o = k.alloc((1, 3, 6, 8)), k.alloc((8, 3, 3, 3), "wram"), k.alloc((8,), "wram"), k.alloc((1, 8, 4, 6))
    k.fill(i, 0.0)
    # same_bias: 4 pairs, a bias per pair; else cores 0 and 1 (and 2 and 3)
    # share a pair with other biases (the later core's store stays in y)
    ch, rows = ([8, 0, 8, 0], [4, 4, 0, 0]) if same_bias else ([8, 8, 0, 0], [0, 0, 4, 4])
    k.load(kw, win, [(c, 0, 0, 0) for c in ch], [(8, 3, 3, 3)], [Z4])
    k.load(kb, bin_, [(c if same_bias else 8 * j,) for j, c in enumerate(ch)], [(8,)], [(0,)])
    k.load(i, xin, [(0, 0, max(0, r - 1), 0) for r in rows], [(1, 3, 5, 6)],
           [(0, 0, 1, 1) if r == 0 else (0, 0, 0, 1) for r in rows])
    k.conv(o, i, kw, kb)
    k.store(yout, o, [Z4], [(1, 8, 4, 6)], [(0, c, r, 0) for c, r in zip(ch, rows)])
    k.store(zout, o, [Z4], [(1, 8, 4, 6)], [(0, 8 * j, 0, 0) for j in range(4)])
    check_same(b.finish({"y": y, "z": z}), b.ctx)
