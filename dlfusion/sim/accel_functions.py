"""xDSL interpreter functions for the `accel` dialect.

`AccelFunctions` gives every `accel` op an `@impl`. Interpreting an
`accel.program` does two things at once, kept strictly apart:

* the time account: each instruction appends an `Instr` (duration, or bytes
  per core) to the current kernel's `KernelProgram`, computed from shapes and
  attributes only; at the end of each `accel.kernel` the `Machine` simulates
  the kernel on all its cores (see `dlfusion.sim.machine`);
* the numbers (skipped when `timing_only`): DRAM tensors are float32 numpy
  arrays, on-chip buffers are `SpmdBuffer`s (the buffer of every core of the
  kernel); every core `< active` executes every instruction on its own buffer
  with the numpy kernels of the `nn` reference interpreter (`accel.conv` is the
  nn convolution without pads, `accel.eltwise` runs the `nn` kernel it names,
  `accel.vector` runs its `nn` op through `NNFunctions`).

An `accel.load` whose (src_offsets, sizes) entry is the same on several
active cores (a single shared entry, or identical per-core entries) is a
multicast: the time account moves that DRAM slice once for all of them (see
`dlfusion.sim.machine`); the numbers are unchanged (every core gets the data
in its own buffer).

A core numbered `active` or above executes only the collectives: it receives
its share of an `accel.exchange` (all-gather along `axis`) like every core.
Cores run an instruction one after another in core order (SPMD lock-step), so
stores and loads of different cores of one kernel see each other in program
order.

How the numbers are computed fast (the results are those of the per-core
semantics above, bit for bit except that large convolutions' stacked
products may round differently, within float32 rounding:
`tests/test_sim_numerics.py` checks them against a straightforward per-core
reference):

* An `SpmdBuffer` holds the *distinct* contents of its active cores and,
  per core, which one is its own: a multicast-loaded input tile is one row
  for all cores, per-core weight slices one row each, a rows x channels
  split one row per distinct slice. Each instruction is computed once per
  distinct combination of its inputs' rows, for all of them at once: a
  convolution is one im2col of every distinct input and one batched product
  with every distinct weight (per pair the same float32 BLAS product as the
  per-core `conv2d`; when the products are large, the weights of all
  cores as one matrix and, where it pays, the inputs' columns side by side:
  `_stacked_conv`), pooling and depthwise convolutions take the distinct
  rows side by side as channels, element-wise work broadcasts over them.
  A convolution's result keeps a row per (input, weights) pair, each core
  pointing at its pair's (its bias, if any, added in place).
* A DMA's per-core tables are decoded once per distinct tables in a run (a
  network repeats its blocks: ResNet-50's 527 DMAs have 114 distinct
  ones), with what the numbers ask about them (`_Moves`), and kept per
  op across runs while the op's tables are the same (`_OP_MOVES`).
* A load of each core's whole buffer from DRAM takes a view instead of a
  copy when the slices lie side by side along one axis (in any core
  order), one copy when along two (`_grid`); the view is copied before the
  buffer or that DRAM tensor is written. Buffers are updated in place when
  they can be. A store of the same box of every core's buffer to boxes
  side by side in DRAM is one assignment.
* DRAM temporaries whose lifetimes (first to last kernel using them) do not
  overlap share memory, touched once instead of page by page; a temporary in
  reused memory is zeroed only where it is read before being written (the
  rows stores wrote are noted as one box when their boxes lie side by side).
* A kernel's instructions are dispatched directly, not through the xDSL
  interpreter's per-op machinery.
"""

from __future__ import annotations

import math
import struct
import weakref
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np
from xdsl.dialects.builtin import DictionaryAttr, Float32Type, FloatAttr, IntegerType, TensorType, i64
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.ir import Block, Operation

from dlfusion.dialects import accel, nn
from dlfusion.dialects.accel import mshape
from dlfusion.dialects.weights import MissingWeightError, WeightStore
from dlfusion.errors import DlfusionError
from dlfusion.interpreter import kernels as K
from dlfusion.sim.machine import ELTWISE_WORK, KernelProgram, Machine, TimingModel

_NN_OPS: dict[str, type[Operation]] = {op.name: op for op in nn.NN_OPS}

F32 = np.float32

#: vector-unit work per output element of `accel.vector` layers (docs/accelerator.md);
#: reductions use the reduced extent, every other layer is data movement (1)
VECTOR_WORK = {"softmax": 4}
_REDUCTIONS = ("reduce_mean", "global_avg_pool")

_NO_PADS = (0, 0, 0, 0)


def _ints(attr) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


def _int(attr) -> int:
    return int(attr.value.data)


def _layer_name(name: str) -> str:
    """'softmax' or 'nn.softmax' -> 'softmax'."""
    return name[3:] if name.startswith("nn.") else name


def vector_work(layer: str, params: DictionaryAttr, in_shapes, out_shape) -> int:
    """w of the vector-unit equation for an `accel.vector` layer."""
    name = _layer_name(layer)
    if name == "lrn":
        return _int(params.data["size"]) + 4
    if name in _REDUCTIONS and in_shapes:
        return max(1, math.prod(in_shapes[0]) // max(1, math.prod(out_shape)))
    if name in VECTOR_WORK:
        return VECTOR_WORK[name]
    return ELTWISE_WORK.get(name, 1)


def _box(offsets, sizes) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(offsets, sizes))


# --------------------------------------------------------------------------
# per-core tables, decoded fast
# --------------------------------------------------------------------------

_STRUCTS: dict[int, struct.Struct] = {}


def _i64_row(raw: bytes) -> tuple[int, ...]:
    st = _STRUCTS.get(len(raw))
    if st is None:
        st = _STRUCTS[len(raw)] = struct.Struct(f"<{len(raw) >> 3}q")
    return st.unpack(raw)


_SIGNLESS = i64.signedness.data
_I64_ID = {id(i64)}
_ELT_TYPE = attrgetter("elt_type")
_BYTES = attrgetter("data.data")


def _is_i64(t) -> bool:
    """`t == i64`, fast (parsed IR holds other instances than the builtin)."""
    return t is i64 or (type(t) is IntegerType and t.width.data == 64 and t.signedness.data is _SIGNLESS)


def _table(attr) -> list[tuple[int, ...]]:
    """`accel.table_rows(attr)` (each row's values as a tuple), decoded from
    the rows' bytes when they are i64 arrays: each distinct row once (equal
    rows give the same tuple)."""
    rows = attr.data
    if set(map(id, map(_ELT_TYPE, rows))) != _I64_ID and not all(_is_i64(r.elt_type) for r in rows):
        return [tuple(r.get_values()) for r in rows]
    raws = list(map(_BYTES, rows))
    decoded = dict.fromkeys(raws)
    for raw in decoded:
        decoded[raw] = _i64_row(raw)
    return [decoded[raw] for raw in raws]


def _rows_key(attr) -> tuple[bytes, ...] | None:
    """The bytes of a table's rows when they are all i64 arrays (equal keys:
    equal tables), else None."""
    rows = attr.data
    types = set(map(id, map(_ELT_TYPE, rows)))
    if types != _I64_ID and not all(_is_i64(r.elt_type) for r in rows):
        return None
    return tuple(map(_BYTES, rows))


class _Moves:
    """The moves of a DMA on a kernel's active cores: per core its
    (src_offsets, sizes, dst_offsets) or None if it moves nothing; the bytes
    per core of the kernel and, per active core, its multicast key (the time
    account's). Decoded once per distinct tables in a run (a network repeats
    its blocks), with what the numbers ask about them (`memo`)."""

    __slots__ = ("per_core", "nbytes", "slices", "memo")

    def __init__(self, so, sz, do, active: int, cores: int, element_bytes: int):
        # per active core its entry of each table (a single entry is shared)
        so, sz, do = (t * active if len(t) == 1 else t[:active] for t in (so, sz, do))
        elems = dict.fromkeys(sz)
        for size in elems:
            elems[size] = math.prod(size)
        per_core = list(zip(so, sz, do))
        nbytes = [elems[size] * element_bytes for size in sz]
        if not all(elems.values()):
            per_core = [mv if n else None for mv, n in zip(per_core, nbytes)]
        self.per_core: list = per_core
        self.nbytes = tuple(nbytes + [0] * (cores - active))
        self.slices = [None if mv is None else (mv[0], mv[1]) for mv in per_core]
        self.memo: dict = {}

    def load_plan(self, whole: tuple[int, ...]):
        """For a buffer of shape `whole`, when every core's move fills it:
        (per core the number of its distinct slice, the distinct moves, the
        `_grid` of their sources or None, its `_grid_recipe`), the numbers
        following the grid's if there is one; else None."""
        key = ("load", whole)
        if key not in self.memo:
            idx, distinct = _partition(self.per_core)
            zeros = (0,) * len(whole)
            plan = None
            if all(mv is not None and mv[1] == whole and mv[2] == zeros for mv in distinct):
                grid = _grid([mv[0] for mv in distinct], whole)
                if grid is not None:
                    pos = grid[3]
                    idx = tuple([pos[r] for r in idx])
                plan = (idx, distinct, grid, None if grid is None else _grid_recipe(grid, whole))
            self.memo[key] = plan
        return self.memo[key]

    def store_plan(self):
        """When the moving cores all store the same box of their buffer to
        distinct boxes lying side by side in DRAM: (those cores, the box's
        offsets and size, the `_grid` of the destinations, its
        `_grid_recipe`, the moving cores in the order of their boxes in
        the grid's view); else None."""
        plan = self.memo.get("store", False)
        if plan is False:
            plan = None
            cores = [c for c, mv in enumerate(self.per_core) if mv is not None]
            if cores:
                src, size, _ = self.per_core[cores[0]]
                moves = [self.per_core[c] for c in cores]
                if all(mv[0] == src and mv[1] == size for mv in moves):
                    grid = _grid([mv[2] for mv in moves], size)
                    if grid is not None:
                        by_pos = [0] * len(grid[3])
                        for c, q in zip(cores, grid[3]):
                            by_pos[q] = c
                        plan = (cores, src, size, grid, _grid_recipe(grid, size), by_pos)
            self.memo["store"] = plan
        return plan

    def distinct(self) -> list:
        """The distinct moves (None excluded)."""
        moved = self.memo.get("distinct")
        if moved is None:
            moved = self.memo["distinct"] = [mv for mv in dict.fromkeys(self.per_core) if mv is not None]
        return moved

    def read_box(self) -> tuple[slice, ...] | None:
        """The box around the source rows (all axes but the last) of every
        move, or None if nothing moves."""
        if "read_box" not in self.memo:
            moved = self.distinct()
            box = None
            if moved:
                lo = map(min, zip(*(mv[0][:-1] for mv in moved)))
                hi = map(max, zip(*(tuple(map(sum, zip(mv[0][:-1], mv[1][:-1]))) for mv in moved)))
                box = tuple(map(slice, lo, hi))
            self.memo["read_box"] = box
        return self.memo["read_box"]

    def write_box(self) -> tuple[slice, ...] | None:
        """The box of destination rows (all axes but the last) the moves
        write, when they lie side by side filling it; else None."""
        if "write_box" not in self.memo:
            moved = self.distinct()
            box = None
            if moved:
                size = moved[0][1]
                if all(mv[1] == size for mv in moved):
                    grid = _grid([mv[2] for mv in moved], size)
                    if grid is not None:
                        lo, axes, counts, _ = grid
                        hi = list(map(sum, zip(lo, size)))
                        for d, count in zip(axes, counts):
                            hi[d] = lo[d] + count * size[d]
                        box = tuple(map(slice, lo[:-1], hi[:-1]))
            self.memo["write_box"] = box
        return self.memo["write_box"]


# --------------------------------------------------------------------------
# the buffers of all cores
# --------------------------------------------------------------------------


def _owned(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A new float32 array of `shape` holding `y` (broadcast as `out[...] = y`)."""
    new = np.empty(shape, dtype=F32)
    new[...] = y
    return new


def _fit(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`y` (a fresh result) as an array of `shape`, as the assignment
    `out[...] = y` fills a buffer of that shape (a reshape when only size-1
    axes differ, else a broadcast)."""
    if y.shape == shape and y.dtype == F32:
        return y
    if y.size == math.prod(shape):
        return np.ascontiguousarray(y, dtype=F32).reshape(shape)
    return _owned(y, shape)


#: a convolution whose per-core product has at least this many
#: multiply-adds is computed with the products of its cores stacked
#: (`_stacked_conv`); smaller ones one product per (input, weights) pair,
#: like the per-core `conv2d` (BLAS sums small products with other kernels
#: than large ones, so stacking them would change their last bits the most,
#: and there is little to gain)
STACK_MACS = 1 << 20


def _stacked_conv(X: np.ndarray, wa: np.ndarray, co: int, kernel, strides, dilations, out_hw) -> np.ndarray:
    """The ungrouped convolutions of every distinct input `X[ix]` (`X` of
    shape (dx, n, c, h, w)) with every distinct weights (`wa`: the dw cores'
    (co, c, kh, kw) weights as one (dw * co, c * kh * kw) matrix), as an
    array (dx * dw, n, co, oh, ow) whose row ix * dw + iw is pair (ix, iw)'s.

    One product per distinct input with all weights at once, or one product
    of all weights with the columns of all inputs side by side when reading
    the weights once per input costs more than copying the inputs' columns
    side by side (when they would be a view: an unstrided 1x1 convolution)
    and reordering the result per pair. The values are the per-pair products'
    within float32 rounding: each output is the same dot product, but BLAS
    may block a larger product's sums differently."""
    dx, n, c, h, wd = X.shape
    oh, ow = out_hw
    m, kk = wa.shape
    dw, p = m // co, n * oh * ow
    view_cols = kernel == (1, 1) and tuple(strides) == (1, 1) and n == 1
    if dx > 1 and (dx - 1) * m * kk > dx * m * p + (dx * c * h * wd if view_cols else 0):
        # the columns of the inputs as one batch: (kk, dx * p), ordered (ix, n, oh, ow)
        cols = K.im2col(X.reshape(dx * n, c, h, wd), kernel, strides, dilations)[0]
        y = np.matmul(wa, cols)
        out = np.empty((dx, dw, n, co, oh, ow), dtype=F32)
        out[...] = y.reshape(dw, co, dx, n, oh, ow).transpose(2, 0, 3, 1, 4, 5)
        return out.reshape(dx * dw, n, co, oh, ow)
    # the inputs' columns side by side as groups: (dx, kk, p), then per input one product
    cols = K.im2col(X.transpose(1, 0, 2, 3, 4).reshape(n, dx * c, h, wd), kernel, strides, dilations, dx)
    y = np.matmul(wa, cols).reshape(dx * dw, co, n, oh, ow)
    return y.transpose(0, 2, 1, 3, 4) if n == 1 else np.ascontiguousarray(y.transpose(0, 2, 1, 3, 4))


def _partition(keys) -> tuple[tuple[int, ...], list]:
    """Number equal keys alike, in order of first appearance: (the number of
    each key, the distinct keys)."""
    seen: dict = {}
    distinct: list = []
    numbers = []
    for key in keys:
        r = seen.get(key)
        if r is None:
            r = seen[key] = len(distinct)
            distinct.append(key)
        numbers.append(r)
    return tuple(numbers), distinct


def _combinations(bufs, active: int) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The distinct combinations of the buffers' rows over the active cores:
    (per core the number of its combination, the combinations)."""
    if not bufs:
        return (0,) * active, [()]
    return _partition(zip(*(b.idx for b in bufs)))


def _pick(rows: np.ndarray, sel: list[int]) -> np.ndarray:
    """rows[sel] without a copy when `sel` takes every row in order or the
    only row (then broadcast against the others)."""
    if len(rows) == 1 or sel == list(range(len(rows))):
        return rows
    return rows[sel]


class SpmdBuffer:
    """One on-chip buffer (`accel.alloc`) of every core of a kernel.

    The active cores' contents are the distinct `rows` (an array of shape
    `(distinct, *shape)`; None while every core holds zeros) and, per active
    core, the number of its row (`idx`). Cores whose contents are known to
    be equal share a row: a uniform buffer (a multicast-loaded input, a map
    after an all-gather) has one row, a buffer with a different slice on
    every core (its weights, its output channels) one per core, one split in
    both ways (rows × channels) one per distinct content. Every row is some
    core's. Compute instructions work on the distinct rows (or the distinct
    combinations of their inputs' rows), not core by core.

    Idle cores (`active` and above) are written only by `accel.exchange`:
    `idle` is None (all zeros), one array that every idle core holds, or a
    list with one array per idle core.

    Storage arrays belong to this buffer alone, so they are updated in place,
    except while `view` is set: then `rows` is a view of the DRAM slices that
    a load would have copied (each core's whole buffer), only read; the
    buffer copies it before it is written (`own`), and the kernel does before
    a store writes that DRAM tensor (`release`).
    """

    __slots__ = ("shape", "cores", "active", "rows", "idx", "view", "idle")

    def __init__(self, shape: tuple[int, ...], cores: int, active: int):
        self.shape = shape
        self.cores = cores
        self.active = active
        self.rows: np.ndarray | None = None
        self.idx: tuple[int, ...] = (0,) * active
        self.view = False
        self.idle: np.ndarray | list[np.ndarray] | None = None

    # -- the contents ------------------------------------------------------------
    @property
    def distinct(self) -> int:
        return 1 if self.rows is None else len(self.rows)

    def get_rows(self) -> np.ndarray:
        """The distinct contents, to read."""
        if self.rows is None:
            self.rows = np.zeros((1, *self.shape), dtype=F32)
        return self.rows

    def core(self, c: int) -> np.ndarray:
        """Active core `c`'s contents, to read."""
        return self.get_rows()[self.idx[c]]

    def set(self, rows: np.ndarray, idx: tuple[int, ...], view: bool = False) -> None:
        """Active core `c` now holds `rows[idx[c]]` (owned by this buffer
        unless `view`)."""
        self.rows, self.idx, self.view = rows, idx, view

    def own(self) -> None:
        """Make the storage this buffer's own (copy a DRAM view)."""
        if self.view:
            self.view = False
            self.rows = np.array(self.rows, dtype=F32, order="C", copy=True)

    def release(self, dram: np.ndarray) -> None:
        """Before `dram` is written: copy a view of it."""
        if self.view and np.may_share_memory(self.rows, dram):
            self.own()

    def owned_rows(self) -> np.ndarray | None:
        """The rows if they may be written in place, else None."""
        return None if self.view else self.rows

    def all_cores(self) -> list[np.ndarray]:
        """Independent writable arrays of every core (active, then idle), for
        the straightforward per-core algorithms."""
        act = self.active
        if act:
            rows = self.get_rows()
            if self.view or self.idx != tuple(range(act)):
                rows = np.array(rows[list(self.idx)], dtype=F32, order="C", copy=True)
            self.set(rows, tuple(range(act)))
        n_idle = self.cores - act
        if not isinstance(self.idle, list):
            if self.idle is None:
                self.idle = [np.zeros(self.shape, dtype=F32) for _ in range(n_idle)]
            else:
                first = self.idle
                self.idle = [first] + [first.copy() for _ in range(n_idle - 1)]
        return (list(self.rows) if act else []) + self.idle

    def _idle_core(self, c: int) -> np.ndarray:
        if self.idle is None:
            self.idle = np.zeros(self.shape, dtype=F32)
        return self.idle[c - self.active] if isinstance(self.idle, list) else self.idle

    # -- instructions ------------------------------------------------------------
    def fill(self, value: np.float32) -> None:
        if not self.active:
            return
        rows = self.owned_rows()
        if rows is not None and len(rows) == 1:
            rows.fill(value)
        else:
            rows = np.full((1, *self.shape), value, dtype=F32)
        self.set(rows, (0,) * self.active)

    def load(self, dram: np.ndarray, mv: _Moves) -> bool:
        """buffer_c[dst_c] = dram[src_c] for every active core's move (None:
        none); True if the buffer is now a view of `dram`."""
        act = self.active
        if not act:
            return False
        whole = self.shape
        moves = mv.per_core
        plan = mv.load_plan(whole)
        if plan is not None:
            # every core's move fills its buffer: the distinct slices, as a
            # view of DRAM when they lie side by side along one axis
            idx, dmoves, grid, recipe = plan
            if grid is not None:
                view = _recipe_view(dram, recipe)
                if len(grid[1]) <= 1:
                    self.set(view, idx, view=True)
                    return True
                rows = np.empty((len(dmoves), *whole), dtype=F32)
                rows.reshape(view.shape)[...] = view
                self.set(rows, idx)
                return False
            rows = np.empty((len(dmoves), *whole), dtype=F32)
            for r, m in enumerate(dmoves):
                rows[r] = dram[_box(m[0], whole)]
            self.set(rows, idx)
            return False
        old = self.idx
        # a core's new contents: its move's slice if that fills the buffer,
        # else its old contents (row) with the move applied
        keys = [
            ("all", mv[0]) if mv is not None and mv[1] == whole and not any(mv[2]) else (old[c], mv)
            for c, mv in enumerate(moves)
        ]
        idx, distinct = _partition(keys)
        rows = self.owned_rows()
        in_place = (
            rows is not None
            and len(rows) == len(distinct)
            and all(k[0] == r for r, k in enumerate(distinct))
        )
        if not in_place:
            old_rows = self.rows
            if old_rows is None:
                rows = np.zeros((len(distinct), *whole), dtype=F32)
            else:
                rows = np.empty((len(distinct), *whole), dtype=F32)
                for r, (o, mv) in enumerate(distinct):
                    if o != "all" and (mv is None or mv[1] != whole):
                        rows[r] = old_rows[o]
        for r, (o, mv) in enumerate(distinct):
            if o == "all":
                rows[r] = dram[_box(mv, whole)]
            elif mv is not None:
                src, size, dst = mv
                rows[r][_box(dst, size)] = dram[_box(src, size)]
        self.set(rows, idx)
        return False

    def store(self, dram: np.ndarray, mv: _Moves) -> None:
        """dram[dst_c] = buffer_c[src_c] for every active core, in core order."""
        if not self.active:
            return
        rows = self.get_rows()
        plan = mv.store_plan()
        if plan is not None:
            # one box of the moving cores' rows to distinct boxes side by
            # side in DRAM (disjoint: the order does not matter): one
            # assignment
            cores, src, size, grid, recipe, by_pos = plan
            view = _recipe_view(dram, recipe)
            idx = self.idx
            order = [idx[c] for c in by_pos]
            part = rows if size == self.shape and not any(src) else rows[(slice(None), *_box(src, size))]
            if order != list(range(len(part))):
                part = part[order]
            view[...] = part.reshape(view.shape)
            return
        writes = [(r, m) for r, m in zip(self.idx, mv.per_core) if m is not None]
        # a write that a later identical one repeats is overwritten by it
        done: set = set()
        last_first = []
        for w in reversed(writes):
            if w not in done:
                done.add(w)
                last_first.append(w)
        for r, (src, size, dst) in reversed(last_first):
            dram[_box(dst, size)] = rows[r][_box(src, size)]

    def exchange(self, axis: int, ranges: list[tuple[int, ...]]) -> None:
        """All-gather along `axis`: every core receives the range [lo, hi)
        of each other core (`ranges[c]`, one per core of the kernel)."""
        pre = (slice(None),) * axis
        nonempty = [(c, lo, hi) for c, (lo, hi) in enumerate(ranges) if hi > lo]
        spans = sorted((lo, hi) for _, lo, hi in nonempty)
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
            self._exchange_per_core(pre, ranges)
            return
        # disjoint ranges: every core ends with each range's contribution in
        # that range (its own range holds its own contribution already) and
        # its own contents elsewhere
        act, n_idle = self.active, self.cores - self.active

        def part(c, lo, hi):
            src = self.core(c) if c < act else self._idle_core(c)
            return src[(*pre, slice(lo, hi))]

        if sum(hi - lo for _, lo, hi in nonempty) == self.shape[axis]:
            new = np.empty(self.shape, dtype=F32)
            for c, lo, hi in nonempty:
                new[(*pre, slice(lo, hi))] = part(c, lo, hi)
            if n_idle:
                self.idle = new.copy()
            if act:
                self.set(new[None], (0,) * act)
            return
        parts = [(slice(lo, hi), part(c, lo, hi).copy()) for c, lo, hi in nonempty]
        if act:
            self.get_rows()
            self.own()
            for sl, p in parts:
                self.rows[(slice(None), *pre, sl)] = p
        if n_idle:
            if self.idle is None:
                self.idle = np.zeros(self.shape, dtype=F32)
            for arr in self.idle if isinstance(self.idle, list) else [self.idle]:
                for sl, p in parts:
                    arr[(*pre, sl)] = p

    def _exchange_per_core(self, pre, ranges) -> None:
        """The all-gather core by core (overlapping ranges: later cores'
        contributions overwrite earlier ones, except on their own core)."""
        bufs = self.all_cores()
        parts = [bufs[c][(*pre, slice(lo, hi))].copy() for c, (lo, hi) in enumerate(ranges)]
        for c in range(self.cores):
            for c2, (lo, hi) in enumerate(ranges):
                if c2 != c and hi > lo:
                    bufs[c][(*pre, slice(lo, hi))] = parts[c2]


def _grid(offsets: list[tuple[int, ...]], size: tuple[int, ...]):
    """When the distinct `offsets` are the corners of boxes of `size` that
    tile a box side by side (along each axis where they differ, at
    consecutive multiples of the size from the smallest): (the smallest
    offsets, the axes they differ along, the number of boxes along each, per
    offset the row-major number of its box); else None. Such boxes are
    disjoint."""
    n = len(offsets)
    if n == 1:
        return offsets[0], (), (), [0]
    columns = list(zip(*offsets))
    lo = tuple(map(min, columns))
    axes, counts = [], []
    pos = None
    for d, column in enumerate(columns):
        first, step = lo[d], size[d]
        if max(column) == first:
            continue
        if not step:
            return None
        q = [v - first for v in column]
        if any(v % step for v in q):
            return None
        q = [v // step for v in q]
        count = max(q) + 1
        axes.append(d)
        counts.append(count)
        pos = q if pos is None else [p * count + v for p, v in zip(pos, q)]
    if pos is None or math.prod(counts) != n or len(set(pos)) != n:
        return None
    return lo, tuple(axes), tuple(counts), pos


def _grid_view(arr: np.ndarray, grid, size: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    """The view of `arr` holding the boxes of a `_grid`: shape `(n, *size)`
    for boxes along one axis (or one box), else `(*counts, *size)`; and per
    offset the number of its box."""
    return _recipe_view(arr, _grid_recipe(grid, size)), grid[3]


def _recipe_view(arr: np.ndarray, recipe) -> np.ndarray:
    """`_grid_view`'s view of `arr` from the `_grid_recipe`."""
    box, shape, perm = recipe
    if shape is None:
        return arr[box][None]
    return arr[box].reshape(shape).transpose(perm)


def _grid_recipe(grid, size: tuple[int, ...]):
    """How `_grid_view` takes its view (computed once per grid): the box
    around the boxes, and the shape and axis order splitting it (None for
    one box)."""
    lo, axes, counts, pos = grid
    box = [slice(o, o + s) for o, s in zip(lo, size)]
    if not axes:
        return tuple(box), None, None
    shape: list[int] = []
    front: list[int] = []
    for d, s in enumerate(size):
        if d in axes:
            count = counts[len(front)]
            box[d] = slice(lo[d], lo[d] + count * s)
            front.append(len(shape))
            shape.append(count)
        shape.append(s)
    # splitting an axis in two is always a view
    rest = [d for d in range(len(shape)) if d not in front]
    return tuple(box), tuple(shape), tuple(front + rest)


# --------------------------------------------------------------------------
# element-wise kinds, straight to the kernels
# --------------------------------------------------------------------------

#: kinds that are one numpy ufunc (as in `dlfusion.interpreter.kernels`): the
#: ufunc and its constant trailing operands; computed in place when possible
_UFUNCS = {
    "add": (np.add, ()),
    "sub": (np.subtract, ()),
    "mul": (np.multiply, ()),
    "div": (np.divide, ()),
    "relu": (np.maximum, (F32(0.0),)),
}

#: kinds without params: their kernels
_PLAIN = {
    "relu": K.relu, "sigmoid": K.sigmoid, "hard_swish": K.hard_swish,
    "add": K.add, "sub": K.sub, "mul": K.mul, "div": K.div,
}


def _fparam(params: dict, key: str) -> float:
    attr = params.get(key)
    if not isinstance(attr, FloatAttr):
        raise KeyError(key)
    return float(attr.value.data)


def _eltwise_kernel(kind: str, params: DictionaryAttr):
    """The kernel of an `accel.eltwise` kind with its params, as `NNFunctions`
    calls it; None unless the params are the plain ones (then the `nn` op is
    built and interpreted, with its checks and errors)."""
    p = params.data
    try:
        if kind in _PLAIN:
            return None if p else _PLAIN[kind]
        if kind == "leaky_relu" and set(p) == {"alpha"}:
            alpha = _fparam(p, "alpha")
            return lambda x: K.leaky_relu(x, alpha)
        if kind == "hard_sigmoid" and set(p) == {"alpha", "beta"}:
            alpha, beta = _fparam(p, "alpha"), _fparam(p, "beta")
            return lambda x: K.hard_sigmoid(x, alpha, beta)
        if kind == "clip" and set(p) <= {"min", "max"}:
            lo = _fparam(p, "min") if "min" in p else None
            hi = _fparam(p, "max") if "max" in p else None
            return lambda x: K.clip(x, lo, hi)
    except KeyError:
        return None
    return None


@dataclass
class _TempPlan:
    """Where the program's DRAM temporaries live (see `_plan_temps`)."""

    #: the array of each temporary
    arrays: dict[Operation, np.ndarray] = field(default_factory=dict)
    #: per kernel: the temporaries that start there in memory another one
    #: used, each with whether its zeros may be written lazily
    start: dict[Operation, list[tuple[np.ndarray, bool]]] = field(default_factory=dict)
    #: per kernel: the temporaries whose last use it is
    end: dict[Operation, list[np.ndarray]] = field(default_factory=dict)


def _plan_temps(program: accel.ProgramOp) -> _TempPlan:
    """The arrays of the program's DRAM temporaries. A temporary lives from
    the first to the last kernel that takes it (or a view of it) as operand,
    or to the end if the program returns it; temporaries whose lifetimes do
    not overlap share memory (a slot as large as the largest of them), so
    memory is reused instead of touched page by page for every temporary.
    A temporary reads as zeros where it was not written, as a fresh one
    would: when its slot held an earlier one, it is zeroed when its first
    kernel starts, or lazily (see `AccelFunctions._unwritten`) if no view of
    it is taken."""
    ops = list(program.block.ops)
    root: dict = {}
    first: dict[Operation, int] = {}
    last: dict[Operation, float] = {}
    viewed: set[Operation] = set()
    kernels = []
    for o in ops:
        if isinstance(o, accel.DramOp):
            if o.kind.data == "temp":
                root[o.result] = o
        elif isinstance(o, accel.ViewOp):
            if o.source in root:
                root[o.result] = root[o.source]
                viewed.add(root[o.source])
        elif isinstance(o, accel.KernelOp):
            i = len(kernels)
            kernels.append(o)
            for v in o.tensors:
                r = root.get(v)
                if r is not None:
                    first.setdefault(r, i)
                    last[r] = i
        elif isinstance(o, accel.ReturnOp):
            for v in o.values:
                r = root.get(v)
                if r is not None:
                    last[r] = math.inf
    # first fit, in order of first use, into the smallest free slot that holds it
    slots: list[list] = []  # [elements, free after kernel index, [temps]]
    for t in sorted(first, key=lambda t: first[t]):
        need = math.prod(mshape(t.result))
        free = [s for s in slots if s[1] < first[t] and s[0] >= need]
        if free:
            slot = min(free, key=lambda s: s[0])
        else:
            free = [s for s in slots if s[1] < first[t]]
            slot = max(free, key=lambda s: s[0]) if free else None
            if slot is None:
                slot = [0, -1, []]
                slots.append(slot)
            slot[0] = need
        slot[1] = last[t]
        slot[2].append(t)
    plan = _TempPlan()
    for size, _, members in slots:
        mem = np.zeros(size, dtype=F32)
        for k, t in enumerate(members):
            shape = mshape(t.result)
            arr = mem[: math.prod(shape)].reshape(shape)
            plan.arrays[t] = arr
            if k:  # the slot's memory held an earlier temporary
                plan.start.setdefault(kernels[first[t]], []).append((arr, bool(shape) and t not in viewed))
            if last[t] != math.inf:
                plan.end.setdefault(kernels[int(last[t])], []).append(arr)
    return plan


#: per DMA op, the `_Moves` decoded for it: (its src_offsets, sizes and
#: dst_offsets attributes, (active, cores, element bytes), the moves); valid
#: while the op holds the same attributes (attributes are immutable), so
#: runs of the same program decode its tables once
_OP_MOVES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@register_impls
@dataclass
class AccelFunctions(InterpreterFunctions):
    """Numbers and time of the `accel` instructions (see the module doc)."""

    store: WeightStore
    machine: Machine
    model: TimingModel
    timing_only: bool = False
    #: the arrays of the program's input tensors, by their `accel.dram` op
    input_arrays: dict[Operation, np.ndarray] = field(default_factory=dict)
    #: the values of `accel.return` (DRAM arrays), set by the program
    outputs: tuple[Any, ...] = ()
    _kernel: KernelProgram | None = None
    #: the current kernel's buffers that are views of DRAM
    _views: list[SpmdBuffer] = field(default_factory=list)
    _nn_ops: dict[Operation, Operation] = field(default_factory=dict)
    #: the decoded moves of the DMAs, by their tables' bytes and the kernel's cores
    _moves: dict[tuple, _Moves] = field(default_factory=dict)
    #: DRAM temporaries (sharing memory when their lifetimes do not overlap)
    _temps: _TempPlan = field(default_factory=_TempPlan)
    #: temporaries in reused memory, not zeroed yet, by id: the array and,
    #: for its rows (all axes but the last), whether a store wrote them
    #: whole; the rest is zeroed before it is read
    _unwritten: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    # -- program structure -------------------------------------------------
    @impl(accel.ProgramOp)
    def run_program(self, interpreter: Interpreter, op: accel.ProgramOp, args: PythonValues):
        if not self.timing_only:
            self._temps = _plan_temps(op)
        with np.errstate(all="ignore"):
            self.outputs = interpreter.run_ssacfg_region(op.body, (), "accel.program")
            for arr, _ in list(self._unwritten.values()):
                self._zero_unwritten(arr)
        return ()

    @impl_terminator(accel.ReturnOp)
    def run_return(
        self, interpreter: Interpreter, op: accel.ReturnOp, args: tuple[Any, ...]
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()

    @impl(accel.DramOp)
    def run_dram(self, interpreter: Interpreter, op: accel.DramOp, args: PythonValues):
        if self.timing_only:
            return (None,)
        shape = mshape(op.result)
        kind = op.kind.data
        if kind == "input":
            return (self.input_arrays[op],)
        if kind == "weight":
            try:
                arr = self.store.get(op.label.data, np.dtype(np.float32), shape)
            except MissingWeightError as exc:
                raise DlfusionError(str(exc)) from None
            if arr.size != math.prod(shape):
                raise DlfusionError(
                    f"weight '{op.label.data}' holds {list(arr.shape)}, the program declares {list(shape)}"
                )
            return (np.ascontiguousarray(arr, dtype=np.float32).reshape(shape),)
        arr = self._temps.arrays.get(op)
        return (np.zeros(shape, dtype=np.float32) if arr is None else arr,)

    @impl(accel.ViewOp)
    def run_view(self, interpreter: Interpreter, op: accel.ViewOp, args: PythonValues):
        src = args[0]
        if src is None:
            return (None,)
        view = src.reshape(mshape(op.result))
        assert view.base is not None or view is src  # the same bytes, never a copy
        return (view,)

    @impl(accel.KernelOp)
    def run_kernel(self, interpreter: Interpreter, op: accel.KernelOp, args: PythonValues):
        self._kernel = KernelProgram(op.sym_name.data, op.num_cores, op.num_active)
        for arr, lazy in self._temps.start.get(op, ()):
            if lazy:
                self._unwritten[id(arr)] = (arr, np.zeros(arr.shape[:-1], dtype=bool))
            else:
                arr.fill(0)
        self._run_body(interpreter, op, args)
        self.machine.run_kernel(self._kernel)
        self._kernel = None
        self._views.clear()
        for arr in self._temps.end.get(op, ()):
            self._unwritten.pop(id(arr), None)
        return ()

    def _run_body(self, interpreter: Interpreter, op: accel.KernelOp, args: PythonValues) -> None:
        """Run the kernel's instructions in order. A kernel body is a straight
        line of this class's instructions: they are dispatched here directly,
        without the interpreter's per-op machinery (unless it has listeners,
        which expect to see every op)."""
        if interpreter.listeners:
            interpreter.run_ssacfg_region(op.body, args, op.sym_name.data)
            return
        block = op.body.block
        env = dict(zip(block.args, args))
        impls = _KERNEL_IMPLS
        for inst in block.ops:
            values = tuple([env[v] for v in inst.operands])
            fn = impls.get(type(inst))
            if fn is None:  # not an accel instruction: as the interpreter runs it
                results = interpreter.run_op(inst, values)
            else:
                try:
                    results = fn(self, interpreter, inst, values).values
                except Exception as exc:  # reported as the interpreter does
                    inst.emit_error("Error while interpreting op", exc)
            if results:
                env.update(zip(inst.results, results))

    # -- on-chip buffers and data movement -----------------------------------
    @impl(accel.AllocOp)
    def run_alloc(self, interpreter: Interpreter, op: accel.AllocOp, args: PythonValues):
        if self.timing_only:
            return (None,)
        kp = self._kernel
        return (SpmdBuffer(mshape(op.result), kp.cores, kp.active),)

    @impl(accel.FillOp)
    def run_fill(self, interpreter: Interpreter, op: accel.FillOp, args: PythonValues):
        kp = self._kernel
        n = math.prod(mshape(op.buffer))
        kp.compute("fill", "vector", self.model.compute_ns(self.model.vector_cycles(n, ELTWISE_WORK["fill"])))
        if not self.timing_only:
            args[0].fill(np.float32(op.value.value.data))
        return ()

    def _dma(self, op: accel.DmaOp, label: str) -> _Moves:
        """Record the DMA's bytes per core (for a load, with each core's
        source slice, so that cores reading the same slice multicast it);
        return its moves (per active core its (src_offsets, sizes,
        dst_offsets) or None if it moves nothing)."""
        kp = self._kernel
        # the moves decoded for this op in an earlier run (or instruction),
        # while its tables and the kernel's cores are the same
        src, sizes, dst = op.src_offsets, op.sizes, op.dst_offsets
        shape = (kp.active, kp.cores, self.model.element_bytes)
        hit = _OP_MOVES.get(op)
        if hit is not None and hit[0] is src and hit[1] is sizes and hit[2] is dst and hit[3] == shape:
            mv = hit[4]
        else:
            mv = self._shared_moves(op)
            if mv is None:
                mv = _Moves(*map(_table, (src, sizes, dst)), *shape)
            _OP_MOVES[op] = (src, sizes, dst, shape, mv)
        kp.dma(label, mv.nbytes, mv.slices if label == "load" else None)
        return mv

    def _shared_moves(self, op: accel.DmaOp) -> _Moves | None:
        """The moves of `op` in the current kernel, decoded once per distinct
        tables; None unless its tables are i64 arrays."""
        kp = self._kernel
        tables = (op.src_offsets, op.sizes, op.dst_offsets)
        keys = tuple(map(_rows_key, tables))
        if None in keys:
            return None
        key = (keys, kp.active, kp.cores)
        mv = self._moves.get(key)
        if mv is None:
            mv = self._moves[key] = _Moves(*map(_table, tables), kp.active, kp.cores, self.model.element_bytes)
        return mv

    def _zero_unwritten(self, dram: np.ndarray) -> None:
        """Zero the rows of a temporary in reused memory that no store wrote."""
        arr, written = self._unwritten.pop(id(dram))
        if not written.all():
            arr[~written] = 0

    def _read(self, dram: np.ndarray, mv: _Moves) -> None:
        """Before `mv` reads `dram`: zeros where it was not written."""
        entry = self._unwritten.get(id(dram))
        if entry is not None:
            written = entry[1]
            box = mv.read_box()
            # the box around every move's rows first: all written, nothing to do
            if box is None or written[box].all():
                return
            for m in mv.distinct():
                if not written[_box(m[0][:-1], m[1][:-1])].all():
                    self._zero_unwritten(dram)
                    return

    def _write(self, dram: np.ndarray, mv: _Moves) -> None:
        """Before `mv` writes `dram`: note the rows written whole."""
        entry = self._unwritten.get(id(dram))
        if entry is not None:
            last = dram.shape[-1]
            moved = mv.distinct()
            if any(m[1][-1] != last for m in moved):
                self._zero_unwritten(dram)
                return
            written = entry[1]
            box = mv.write_box()
            if box is not None:  # boxes side by side: the box around them
                written[box] = True
                return
            for _, size, dst in moved:
                written[_box(dst[:-1], size[:-1])] = True

    @impl(accel.LoadOp)
    def run_load(self, interpreter: Interpreter, op: accel.LoadOp, args: PythonValues):
        moves = self._dma(op, "load")
        if not self.timing_only:
            buf, dram = args
            if self._unwritten:
                self._read(dram, moves)
            if buf.load(dram, moves):
                self._views.append(buf)
        return ()

    @impl(accel.StoreOp)
    def run_store(self, interpreter: Interpreter, op: accel.StoreOp, args: PythonValues):
        moves = self._dma(op, "store")
        if not self.timing_only:
            dram, buf = args
            for view in self._views:
                view.release(dram)
            if self._unwritten:
                self._write(dram, moves)
            buf.store(dram, moves)
        return ()

    @impl(accel.BarrierOp)
    def run_barrier(self, interpreter: Interpreter, op: accel.BarrierOp, args: PythonValues):
        self._kernel.barrier()
        return ()

    @impl(accel.ExchangeOp)
    def run_exchange(self, interpreter: Interpreter, op: accel.ExchangeOp, args: PythonValues):
        kp = self._kernel
        shape = mshape(op.buffer)
        axis = _int(op.axis)
        ranges = _table(op.ranges)
        inner = math.prod(shape) // shape[axis] if shape[axis] else 0
        contrib = [(hi - lo) * inner for lo, hi in ranges]
        total = sum(contrib)
        eb = self.model.element_bytes
        kp.exchange(tuple((total - contrib[c]) * eb for c in range(kp.cores)))
        if not self.timing_only:
            args[0].exchange(axis, ranges)
        return ()

    # -- compute ---------------------------------------------------------------
    # Every compute instruction writes its whole output buffer from its
    # inputs: an active core's output depends only on the combination of its
    # inputs' rows, so it is computed once per distinct combination.

    @impl(accel.ConvOp)
    def run_conv(self, interpreter: Interpreter, op: accel.ConvOp, args: PythonValues):
        kp = self._kernel
        n, co, ho, wo = mshape(op.out)
        _, ci_g, kh, kw = mshape(op.weight)
        groups = _int(op.groups)
        m = self.model
        kp.compute("conv", "mac", m.compute_ns(m.conv_cycles(n, ho, wo, kh, kw, co, ci_g, groups)))
        if not self.timing_only and kp.active:
            self._conv(args, _ints(op.strides), _ints(op.dilations), groups)
        return ()

    def _conv(self, args, strides, dilations, groups) -> None:
        out, x, w = args[0], args[1], args[2]
        b = args[3] if len(args) > 3 else None
        ins = (x, w) if b is None else (x, w, b)
        idx, combos = _combinations(ins, self._kernel.active)
        X, W = x.get_rows(), w.get_rows()
        B = None if b is None else b.get_rows()
        if len(combos) == 1:
            (ix, iw, *ib) = combos[0]
            y = K.conv2d(X[ix], W[iw], B[ib[0]] if ib else None, strides, _NO_PADS, dilations, groups)
            out.set(y[None], idx)
            return
        n, c, h, wd = x.shape
        co, ci_g = w.shape[0], w.shape[1]
        _, _, ho, wo = out.shape
        g = groups
        if ci_g == 1 and g > 1:
            # depthwise: each combination's channels are groups of one
            # depthwise convolution (the same tap sums as per core)
            nc = len(combos)
            xs = _pick(X, [k[0] for k in combos])
            xm = np.broadcast_to(xs, (nc, *xs.shape[1:])).transpose(1, 0, 2, 3, 4).reshape(n, nc * c, h, wd)
            ws = np.broadcast_to(_pick(W, [k[1] for k in combos]), (nc, *W.shape[1:]))
            bm = None if b is None else np.broadcast_to(_pick(B, [k[2] for k in combos]), (nc, co)).reshape(nc * co)
            y = K.conv2d(xm, ws.reshape(nc * co, *W.shape[2:]), bm, strides, _NO_PADS, dilations, nc * g)
            ys = y.reshape(n, nc, co, ho, wo).transpose(1, 0, 2, 3, 4)
            out.set(ys if n == 1 else np.ascontiguousarray(ys), idx)
            return
        dx, dw = len(X), len(W)
        kh, kw = w.shape[2:]
        kk, p = ci_g * kh * kw, n * ho * wo
        pair_of, pairs = _partition((k[0], k[1]) for k in combos)
        if len(pairs) == dx * dw:
            pair_rows = [ix * dw + iw for ix, iw in pairs]
        if g == 1 and len(pairs) == dx * dw and co * kk * p >= STACK_MACS:
            # every input with every weight, large products: the weights
            # of all cores as one matrix, and the distinct inputs' columns
            # side by side too when that saves more than it copies
            y = _stacked_conv(X, W.reshape(dw * co, kk), co, (kh, kw), strides, dilations, (ho, wo))
            self._conv_bias(out, y, idx, combos, pair_of, pair_rows, B)
            return
        # the columns of every distinct input once (one im2col of the rows
        # side by side as groups), then conv2d's product per (input,
        # weights) pair: per pair the same BLAS product as conv2d's
        xm = X.transpose(1, 0, 2, 3, 4).reshape(n, dx * c, h, wd)
        cols = K.im2col(xm, (kh, kw), strides, dilations, dx * g)
        cols = cols.reshape(dx, g, kk, p)
        wg = W.reshape(dw, g, co // g, kk)
        if len(pairs) == dx * dw:  # every input with every weight: one broadcast product
            if g == 1:
                y = np.matmul(wg[None, :, 0], cols[:, None, 0])
            else:
                y = np.matmul(wg[None], cols[:, None])
            y = y.reshape(dx * dw, co, p)
        else:
            y = np.empty((len(pairs), co, p), dtype=F32)
            for r, (ix, iw) in enumerate(pairs):
                if g == 1:
                    y[r] = np.matmul(wg[iw, 0], cols[ix, 0])
                else:
                    y[r] = np.matmul(wg[iw], cols[ix]).reshape(co, p)
            pair_rows = list(range(len(pairs)))
        y = y.reshape(len(y), co, n, ho, wo).transpose(0, 2, 1, 3, 4)
        self._conv_bias(out, y, idx, combos, pair_of, pair_rows, B)

    @staticmethod
    def _conv_bias(out, y, idx, combos, pair_of, pair_rows, B) -> None:
        """`out` from the (n, co, ho, wo) results of the (input, weights)
        pairs of the combinations (`y[pair_rows[pair_of[k]]]` is
        combination k's) and the combinations' bias rows `B`."""
        co = y.shape[2]
        # a row per pair (each some core's): the cores follow their pair,
        # its bias added in place when the cores of a pair have the same
        bias_of: dict[int, int] = {}
        if B is None or all(bias_of.setdefault(q, k[2]) == k[2] for q, k in zip(pair_of, combos)):
            if B is not None:
                sel = [0] * len(y)
                for q, r in enumerate(pair_rows):
                    sel[r] = bias_of[q]
                y += _pick(B, sel).reshape(-1, 1, co, 1, 1)
            out.set(np.ascontiguousarray(y, dtype=F32), tuple([pair_rows[pair_of[q]] for q in idx]))
            return
        y = _pick(y, [pair_rows[q] for q in pair_of])
        y = y + _pick(B, [k[2] for k in combos]).reshape(-1, 1, co, 1, 1)
        out.set(np.ascontiguousarray(y, dtype=F32), idx)

    @impl(accel.MatMulOp)
    def run_matmul(self, interpreter: Interpreter, op: accel.MatMulOp, args: PythonValues):
        kp = self._kernel
        mm, kk = mshape(op.a)
        nn_ = mshape(op.out)[1]
        m = self.model
        kp.compute("matmul", "mac", m.compute_ns(m.matmul_cycles(mm, nn_, kk)))
        if not self.timing_only and kp.active:
            self._matmul(args, bool(_int(op.trans_b)))
        return ()

    def _matmul(self, args, trans_b: bool) -> None:
        out, a, b = args[0], args[1], args[2]
        bias = args[3] if len(args) > 3 else None
        ins = (a, b) if bias is None else (a, b, bias)
        idx, combos = _combinations(ins, self._kernel.active)
        A, Bm = a.get_rows(), b.get_rows()
        C = None if bias is None else bias.get_rows()
        if len(combos) == 1:
            (ia, ib, *ic) = combos[0]
            out.set(K.gemm(A[ia], Bm[ib], C[ic[0]] if ic else None, False, trans_b)[None], idx)
            return
        # a batched product: per combination the same BLAS product as K.gemm
        av, bv = _pick(A, [k[0] for k in combos]), _pick(Bm, [k[1] for k in combos])
        y = np.matmul(av, bv.transpose(0, 2, 1) if trans_b else bv)
        if C is not None:
            y = y + _pick(C, [k[2] for k in combos])[:, None, :]
        out.set(np.ascontiguousarray(y, dtype=F32), idx)

    @impl(accel.PoolOp)
    def run_pool(self, interpreter: Interpreter, op: accel.PoolOp, args: PythonValues):
        kp = self._kernel
        kind = op.kind.data
        kernel = _ints(op.kernel)
        out_shape = mshape(op.out)
        m = self.model
        kp.compute(
            f"pool.{kind}", "vector",
            m.compute_ns(m.vector_cycles(math.prod(out_shape), kernel[0] * kernel[1])),
        )
        if not self.timing_only and kp.active:
            strides, dilations, pads = _ints(op.strides), _ints(op.dilations), _ints(op.pads)
            cip = bool(_int(op.count_include_pad))
            t, l, b, r = pads
            nb, c, h, w = mshape(op.input)
            oh, ow = out_shape[2], out_shape[3]
            # the padding borders are already in the buffer: pool the interior
            # with the layer's pads, so the kernel knows which border is padding
            floor_h = nn.pool_out_dim(h - t - b, kernel[0], strides[0], t, b, dilations[0], False)
            floor_w = nn.pool_out_dim(w - l - r, kernel[1], strides[1], l, r, dilations[1], False)
            ceil_mode = oh > floor_h or ow > floor_w
            out, x = args[0], args[1]
            # pooling is per channel: the distinct rows' channels side by side
            rows = x.get_rows()
            d = len(rows)
            xm = rows.transpose(1, 0, 2, 3, 4).reshape(nb, d * c, h, w)[:, :, t : h - b, l : w - r]
            if kind == "max":
                y = K.max_pool(xm, kernel, strides, pads, ceil_mode, dilations)
            else:
                y = K.avg_pool(xm, kernel, strides, pads, ceil_mode, cip)
            if y.shape[2] < oh or y.shape[3] < ow:
                raise DlfusionError(
                    f"internal error: accel.pool computed {[nb, c, *y.shape[2:]]} for an output buffer {list(out_shape)}"
                )
            y = y[:, :, :oh, :ow].reshape(nb, d, c, oh, ow).transpose(1, 0, 2, 3, 4)
            out.set(np.ascontiguousarray(y, dtype=F32), x.idx)
        return ()

    def _nn_op(self, op: Operation, name: str, params: DictionaryAttr, args) -> Operation:
        """The `nn` op `name` with `params` as properties, on detached
        operands of the argument buffers' shapes (built once per op)."""
        built = self._nn_ops.get(op)
        if built is not None:
            return built
        full = name if name.startswith("nn.") else f"nn.{name}"
        cls = _NN_OPS.get(full)
        if cls is None or full in ("nn.weight", "nn.yield", "nn.fusion_group"):
            raise DlfusionError(f"{op.name}: '{name}' is not an nn layer")
        f32 = Float32Type()
        block = Block(arg_types=[TensorType(f32, list(mshape(a))) for a in args])
        try:
            built = cls.create(
                operands=list(block.args),
                result_types=[TensorType(f32, list(mshape(op.out)))],
                properties=dict(params.data),
            )
        except Exception as exc:  # noqa: BLE001 - a malformed params dictionary
            raise DlfusionError(f"{op.name} '{name}': cannot build the nn layer from params: {exc}") from None
        block.add_op(built)
        self._nn_ops[op] = built
        return built

    def _run_nn(self, interpreter: Interpreter, op, name: str, params: DictionaryAttr, args):
        """Interpret the `nn` op `name` once per distinct combination of the
        active cores' input rows."""
        if not self._kernel.active:
            return
        nn_op = self._nn_op(op, name, params, op.args)
        out, ins = args[0], args[1:]
        shape = out.shape
        idx, combos = _combinations(ins, self._kernel.active)
        rows = [i.get_rows() for i in ins]
        ys = np.empty((len(combos), *shape), dtype=F32)
        for r, combo in enumerate(combos):
            try:
                (y,) = interpreter.run_op(nn_op, tuple(rs[k] for rs, k in zip(rows, combo)))
            except DlfusionError:
                raise
            except Exception as exc:  # noqa: BLE001
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DlfusionError(f"{op.name} '{name}' failed: {first}") from None
            y = np.asarray(y)
            if y.shape != shape and y.size == ys[r].size:
                y = y.reshape(shape)
            ys[r] = y
        out.set(ys, idx)

    def _eltwise(self, kind: str, fn, args) -> None:
        out, ins = args[0], args[1:]
        shape = out.shape
        rank = len(shape)
        idx, combos = _combinations(ins, self._kernel.active)
        # per combination each input's row, its axes aligned to the output's
        # from the right (numpy broadcasting per core)
        values = []
        for j, buf in enumerate(ins):
            v = _pick(buf.get_rows(), [k[j] for k in combos])
            values.append(v.reshape(len(v), *(1,) * (rank - len(buf.shape)), *buf.shape))
        full = (len(combos), *shape)
        uf = _UFUNCS.get(kind)
        if uf is not None:
            ufunc, consts = uf
            target = out.owned_rows()
            if target is not None and np.broadcast_shapes(*(v.shape for v in values)) == target.shape == full:
                y = ufunc(*values, *consts, out=target)
            else:
                y = ufunc(*values, *consts)
        else:
            y = fn(*values)
            if any(np.may_share_memory(y, v) for v in values):  # storage is never shared
                y = y.copy()
        out.set(_fit(y, full), idx)

    @impl(accel.EltwiseOp)
    def run_eltwise(self, interpreter: Interpreter, op: accel.EltwiseOp, args: PythonValues):
        kp = self._kernel
        kind = op.kind.data
        m = self.model
        n = math.prod(mshape(op.out))
        kp.compute(f"eltwise.{kind}", "vector", m.compute_ns(m.vector_cycles(n, ELTWISE_WORK[kind])))
        if not self.timing_only and kp.active:
            fn = _eltwise_kernel(kind, op.params)
            if fn is None:
                self._run_nn(interpreter, op, kind, op.params, args)
            else:
                self._eltwise(kind, fn, args)
        return ()

    @impl(accel.VectorOp)
    def run_vector(self, interpreter: Interpreter, op: accel.VectorOp, args: PythonValues):
        kp = self._kernel
        layer = op.layer.data
        out_shape = mshape(op.out)
        m = self.model
        w = vector_work(layer, op.params, [mshape(a) for a in op.args], out_shape)
        kp.compute(f"vector.{_layer_name(layer)}", "vector", m.compute_ns(m.vector_cycles(math.prod(out_shape), w)))
        if not self.timing_only:
            self._run_nn(interpreter, op, layer, op.params, args)
        return ()


#: the `@impl`s of the instructions of a kernel body, by op type
_KERNEL_IMPLS = {
    accel.AllocOp: AccelFunctions.run_alloc,
    accel.FillOp: AccelFunctions.run_fill,
    accel.LoadOp: AccelFunctions.run_load,
    accel.StoreOp: AccelFunctions.run_store,
    accel.BarrierOp: AccelFunctions.run_barrier,
    accel.ExchangeOp: AccelFunctions.run_exchange,
    accel.ConvOp: AccelFunctions.run_conv,
    accel.MatMulOp: AccelFunctions.run_matmul,
    accel.PoolOp: AccelFunctions.run_pool,
    accel.EltwiseOp: AccelFunctions.run_eltwise,
    accel.VectorOp: AccelFunctions.run_vector,
}
