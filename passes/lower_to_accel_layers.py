"""Per-layer lowering rules of `lower-to-accel` (see `lower_to_accel.py`).

A rule lowers one `nn` layer whose operands and results live in DRAM into the
instructions of one kernel, split across the kernel's cores by output channels
(and, when that leaves cores idle, by blocks of output rows: a `Grid` of
channel groups x row blocks, chosen by `estimate_ns`) and tiled so that it
fits the per-core memories it is given:

- `WindowRule`: conv2d (dense, grouped, depthwise), max/avg pooling, global
  average pooling: NCHW, output channels split in whole lane groups
  (processed in sub-blocks) x blocks of output rows, each core's rows and
  columns tiled with their halo;
- `EltwiseRule`: activations, binary element-wise layers (with broadcasting)
  and batch norm (a multiply and an add by per-channel constants computed at
  compile time), any rank; channels x blocks of axis 2;
- `MatmulRule`: gemm and 2-D matmul, the N axis split across the cores;
- `CopyRule`: concat, split and unit-step slices, DMA only;
- `VectorRule`: everything else, the whole tensor on one core's vector unit.

Each rule plans its tiles for a budget (`plan(nram, wram)`), reports the
smallest and the ideal use of each memory (`min_use`, `ideal_use`), and emits
its instructions into a `KernelBuilder` (`emit`). Sizes are in elements
unless a name says bytes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdsl.dialects.builtin import ArrayAttr
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue

from dlfusion.dialects import accel, nn
from dlfusion.dialects.accel import mshape
from dlfusion.dialects.nn import ints, shape_of

NEG_INF = float("-inf")

# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def rup(a: int, m: int) -> int:
    return cdiv(a, m) * m


def prod(xs: Sequence[int]) -> int:
    return math.prod(xs)


def vals(attr) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


def ival(attr) -> int:
    return int(attr.value.data)


def fval(attr) -> float:
    return float(attr.value.data)


@dataclass(frozen=True)
class Split:
    """Output channels (or any axis) split over cores in whole lane groups:
    core c owns [c * chunk, min(total, (c + 1) * chunk))."""

    total: int
    chunk: int
    active: int

    def range(self, c: int) -> tuple[int, int]:
        lo = c * self.chunk
        if lo >= self.total or c >= self.active:
            return (0, 0)
        return (lo, min(self.total, lo + self.chunk))

    def sub(self, c: int, j: int, cb: int) -> tuple[int, int]:
        """Core c's j-th sub-block of `cb` channels (empty: (0, 0))."""
        lo, hi = self.range(c)
        a = lo + j * cb
        if a >= hi:
            return (0, 0)
        return (a, min(hi, a + cb))


def make_split(total: int, cores: int, lanes: int, unit: int = 1) -> Split:
    """chunk = ceil(total / cores) rounded up to the lanes (and to `unit`, the
    channels of one group of a grouped conv); active = ceil(total / chunk)."""
    if total <= 0:
        return Split(total, 1, 1)
    align = math.lcm(lanes, unit)
    chunk = min(rup(cdiv(total, cores), align), total)
    return Split(total, chunk, cdiv(total, chunk))


def whole_split(total: int) -> Split:
    """The whole axis on core 0."""
    return Split(total, max(total, 1), 1)


def block_sizes(chunk: int, align: int, unit: int) -> list[int]:
    """Sub-block sizes to consider, largest first: the chunk, halvings rounded
    down to the lanes, then to `unit`, down to `unit`."""
    out = {chunk}
    k = chunk
    while k > unit:
        k //= 2
        a = align if k >= align else unit
        out.add(max(unit, k - k % a))
    return sorted(out, reverse=True)


def balanced(total: int, most: int) -> int:
    """The tile size <= most that covers `total` in the fewest, most even tiles."""
    most = max(1, min(most, total))
    return cdiv(total, cdiv(total, most))


def legal_name(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "_$.-" else "_" for ch in text)
    if not out or out[0].isdigit():
        out = "v" + out
    return out


# --------------------------------------------------------------------------
# the kernel under construction
# --------------------------------------------------------------------------

_ROWS: dict[tuple[int, ...], object] = {}


def row_attr(row: Sequence[int]):
    """`array<i64: ...>` for a DMA table row, shared (attributes are
    immutable; building one is the lowering's hot spot)."""
    key = tuple(int(v) for v in row)
    got = _ROWS.get(key)
    if got is None:
        got = _ROWS[key] = ints(key)
    return got


def table_attr(rows: Sequence[Sequence[int]]) -> ArrayAttr:
    return ArrayAttr([row_attr(r) for r in rows])


Entry = tuple[Sequence[int], Sequence[int], Sequence[int]] | None
"""One core's (src_offsets, sizes, dst_offsets) of a DMA; None moves nothing."""


class KernelBuilder:
    """Collects one kernel's body: block arguments for the DRAM tensors it
    touches (added on first use), buffers, instructions; tracks the per-core
    on-chip use and the active cores."""

    def __init__(self, name: str, cores: int, target, program=None):
        self.name = name
        self.cores = cores
        self.target = target
        self.program = program
        self.eb = target.element_bytes
        self.block = Block()
        self._args: dict[SSAValue, BlockArgument] = {}
        self.tensors: list[SSAValue] = []
        self.active = 1
        self.used = {"nram": 0, "wram": 0}
        self.allocs: list[accel.AllocOp] = []
        self._dmas: list[accel.DmaOp] = []
        self._names: dict[str, int] = {}

    # -- values -------------------------------------------------------------
    def arg(self, dram: SSAValue) -> BlockArgument:
        """The kernel's block argument bound to a program-level DRAM tensor."""
        a = self._args.get(dram)
        if a is None:
            a = self.block.insert_arg(dram.type, len(self.block.args))
            if dram.name_hint:
                a.name_hint = dram.name_hint
            self._args[dram] = a
            self.tensors.append(dram)
        return a

    def add(self, op: Operation) -> Operation:
        self.block.add_op(op)
        return op

    def note_active(self, n: int) -> None:
        self.active = max(self.active, min(n, self.cores))

    def capacity(self, space: str) -> int:
        return self.target.nram_bytes if space == "nram" else self.target.wram_bytes

    # -- buffers ------------------------------------------------------------
    def alloc(self, shape: Sequence[int], space: str, name: str) -> SSAValue:
        op = accel.AllocOp([int(d) for d in shape], space)
        op.result.name_hint = legal_name(name)
        self.add(op)
        self.allocs.append(op)
        self.used[space] += prod(shape) * self.eb
        return op.result

    def fill(self, buf: SSAValue, value: float) -> None:
        self.add(accel.FillOp(buf, value))

    def _table(self, entries: Sequence[Entry], rank: int):
        zero = (0,) * rank
        rows = [(tuple(e[0]), tuple(e[1]), tuple(e[2])) if e is not None else (zero, zero, zero)
                for e in entries]
        assert len(rows) == self.cores, (len(rows), self.cores)
        if all(r == rows[0] for r in rows):
            rows = rows[:1]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def load(self, buf: SSAValue, dram: SSAValue, entries: Sequence[Entry]) -> None:
        """buffer <- DRAM, one entry per core (None: nothing for that core)."""
        if all(e is None or prod(e[1]) == 0 for e in entries):
            return
        so, sz, do = self._table(entries, len(mshape(dram)))
        op = accel.LoadOp.create(
            operands=[buf, self.arg(dram)],
            properties={"src_offsets": table_attr(so), "sizes": table_attr(sz), "dst_offsets": table_attr(do)},
        )
        self._dmas.append(op)
        self.add(op)

    def store(self, dram: SSAValue, buf: SSAValue, entries: Sequence[Entry]) -> None:
        """DRAM <- buffer, one entry per core (None: nothing for that core)."""
        if all(e is None or prod(e[1]) == 0 for e in entries):
            return
        so, sz, do = self._table(entries, len(mshape(buf)))
        op = accel.StoreOp.create(
            operands=[self.arg(dram), buf],
            properties={"src_offsets": table_attr(so), "sizes": table_attr(sz), "dst_offsets": table_attr(do)},
        )
        self._dmas.append(op)
        self.add(op)

    def each(self, fn: Callable[[int], Entry]) -> list[Entry]:
        return [fn(c) for c in range(self.cores)]

    # -- finishing ----------------------------------------------------------
    def finish(self) -> accel.KernelOp:
        """The kernel op; DMA tables whose entries agree on every active core
        become one shared entry."""
        n = self.active
        for op in self._dmas:
            tables = (op.src_offsets, op.sizes, op.dst_offsets)
            if len(tables[0].data) == 1:
                continue
            rows = [tuple(t.data[c] for t in tables) for c in range(n)]
            if all(r == rows[0] for r in rows):
                op.properties["src_offsets"] = ArrayAttr([rows[0][0]])
                op.properties["sizes"] = ArrayAttr([rows[0][1]])
                op.properties["dst_offsets"] = ArrayAttr([rows[0][2]])
        return accel.KernelOp(self.name, self.cores, self.active, self.tensors, Region(self.block))

    def overflow(self) -> tuple[str, accel.AllocOp, int, int] | None:
        """(space, buffer, its bytes, the use it brings) of the first buffer
        that exceeds a memory, or None if the kernel fits."""
        total = {"nram": 0, "wram": 0}
        for op in self.allocs:
            size = prod(mshape(op.result)) * self.eb
            total[op.space] += size
            if total[op.space] > self.capacity(op.space):
                return op.space, op, size, total[op.space]
        return None


def box_entry(src_off, sizes, dst_off) -> Entry:
    if prod(sizes) == 0:
        return None
    return (tuple(src_off), tuple(sizes), tuple(dst_off))


# --------------------------------------------------------------------------
# plans and the rule interface
# --------------------------------------------------------------------------


class NoPlan(Exception):
    """No tiling fits the budget."""


@dataclass
class Use:
    nram: int
    wram: int
    # (buffer name, space, elements) of the buffers, for error messages
    buffers: list[tuple[str, str, int]] = field(default_factory=list)


class Rule:
    """One layer lowered on its own (operands and results in DRAM)."""

    op: Operation
    name: str
    active: int = 1

    def plan(self, nram: int, wram: int):
        raise NotImplementedError

    def use(self, plan) -> Use:
        raise NotImplementedError

    def min_plan(self):
        raise NotImplementedError

    def ideal_plan(self):
        raise NotImplementedError

    def emit(self, kb: KernelBuilder, plan) -> None:
        raise NotImplementedError


def dma_cost(target, elements: int, transfers: int) -> float:
    """A plan's DRAM cost in element-times: elements moved plus a fixed
    latency per transfer (both through the DRAM bandwidth)."""
    per = target.dma_latency_ns * target.dram_bandwidth_gbps / target.element_bytes
    return elements + transfers * per


# --------------------------------------------------------------------------
# channels x rows: the 2-D split of a layer lowered on its own
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A layer's cores as `ch.active` channel groups x `rows.active` blocks
    of output rows (axis 2): core c = g * rows.active + r, for g <
    ch.active and r < rows.active, computes the channels ch.range(g) of the
    rows rows.range(r); cores from `active` on are idle. The cores of one
    channel group are consecutive, so the weight slice they share is
    multicast as soon as they are dispatched."""

    ch: Split
    rows: Split

    @property
    def active(self) -> int:
        return self.ch.active * self.rows.active

    def cell(self, c: int) -> tuple[int, int] | None:
        """(channel group, row block) of core c; None for an idle core."""
        if c >= self.active:
            return None
        return divmod(c, self.rows.active)


def grids(total: int, rows: int, cores: int, lanes: int, unit: int = 1) -> list[Grid]:
    """The splits to choose from, the plain channel split first: when it
    leaves cores idle, every Pc x Pr <= cores with Pc channel groups of
    whole lane groups (as `make_split`) and Pr balanced blocks of rows that
    uses more cores than the channel split."""
    base = make_split(total, cores, lanes, unit)
    out = [Grid(base, whole_split(rows))]
    if base.active >= cores or rows <= 1:
        return out
    chunks: set[int] = set()
    for pc in range(base.active, 0, -1):  # most channel groups first (ties keep the least halo)
        ch = make_split(total, pc, lanes, unit)
        if ch.chunk in chunks:
            continue
        chunks.add(ch.chunk)
        blocks: set[int] = set()
        for pr in range(1, min(cores // ch.active, rows) + 1):
            rb = cdiv(rows, pr)
            if rb in blocks:
                continue
            blocks.add(rb)
            g = Grid(ch, Split(rows, rb, cdiv(rows, rb)))
            if g.active > base.active:
                out.append(g)
    return out


def estimate_ns(target, active: int, dram_elems: int, transfers: int, cycles: int) -> float:
    """A layer's time on `active` cores, to choose its split: the last
    active core's dispatch (the multicasts it takes part in wait for it),
    its DRAM traffic at the full bandwidth, one core's DMA latencies and one
    core's compute cycles (instruction overheads included)."""
    return (
        (active - 1) * target.core_dispatch_us * 1e3
        + dram_elems * target.element_bytes / target.dram_bandwidth_gbps
        + transfers * target.dma_latency_ns
        + cycles / target.clock_ghz
    )


def best_grid(options: list[Grid], cost: Callable[[Grid], float | None]) -> Grid:
    """The option of least cost; the first (the plain channel split) unless
    another is strictly better."""
    best, best_cost = options[0], cost(options[0])
    if best_cost is None or len(options) == 1:
        return best
    for g in options[1:]:
        c = cost(g)
        if c is not None and c < best_cost:
            best, best_cost = g, c
    return best


_GRIDS: dict[tuple, Grid] = {}


def chosen_grid(key: tuple, options: list[Grid], cost: Callable[[Grid], float | None]) -> Grid:
    """`best_grid`, remembered for layers of the same signature `key` (a
    network repeats its layer shapes)."""
    if len(options) == 1:
        return options[0]
    got = _GRIDS.get(key)
    if got is None:
        if len(_GRIDS) > 4096:
            _GRIDS.clear()
        got = _GRIDS[key] = best_grid(options, cost)
    return got


# the cost equations of docs/accelerator.md ("The timing model") that the
# estimate needs: MAC array cycles with lane padding, vector unit cycles
# with the work per element of each kind


def conv_cycles(target, n: int, ho: int, wo: int, kh: int, kw: int, co: int, ci_g: int, groups: int) -> int:
    lo, li = target.mac_lanes_out, target.mac_lanes_in
    base = n * ho * wo * kh * kw
    if ci_g == 1:
        return base * cdiv(co, lo)
    return base * cdiv(co // groups, lo) * cdiv(ci_g, li) * groups


def vector_cycles(target, elements: int, work: int) -> int:
    return cdiv(elements, target.vector_lanes) * work


VECTOR_WORK = {"relu": 1, "clip": 1, "add": 1, "sub": 1, "mul": 1, "leaky_relu": 1,
               "div": 2, "hard_sigmoid": 2, "hard_swish": 2, "sigmoid": 4}


# --------------------------------------------------------------------------
# windows: conv2d, pooling
# --------------------------------------------------------------------------


@dataclass
class WindowPlan:
    cb: int  # output channels per sub-block
    tn: int
    th: int
    tw: int


class WindowRule(Rule):
    """conv2d / max_pool / avg_pool / global_avg_pool on NCHW tensors."""

    def __init__(self, lw, op: Operation, cores: int):
        self.lw, self.op, self.cores = lw, op, cores
        t = lw.target
        self.name = lw.value_name(op.results[0])
        n, ci, h, w = shape_of(op.operands[0])
        _, co, ho, wo = shape_of(op.results[0])
        self.n, self.ci, self.h, self.w, self.co, self.ho, self.wo = n, ci, h, w, co, ho, wo
        self.weight = self.bias = None
        self.count_include_pad = False
        self.spatial_tiling = True
        if isinstance(op, nn.Conv2DOp):
            self.kind = "conv"
            cow, cig, kh, kw = shape_of(op.weight)
            self.k = (kh, kw)
            self.s = vals(op.strides)
            self.d = vals(op.dilations)
            self.p = vals(op.pads)
            self.g = ival(op.groups)
            self.cig, self.cog = cig, co // self.g
            self.dense = self.g == 1
            self.weight = op.weight
            self.bias = op.bias
            self.pad_value = 0.0
            lanes, unit = t.mac_lanes_out, (1 if self.dense else self.cog)
        elif isinstance(op, (nn.MaxPoolOp, nn.AvgPoolOp)):
            self.kind = "max" if isinstance(op, nn.MaxPoolOp) else "avg"
            self.k = vals(op.kernel)
            self.s = vals(op.strides)
            self.d = op.dilation_values()
            self.p = vals(op.pads)
            self.dense = False
            self.g, self.cig, self.cog = ci, 1, 1
            self.pad_value = NEG_INF if self.kind == "max" else 0.0
            if self.kind == "avg":
                self.count_include_pad = bool(ival(op.count_include_pad))
            lanes, unit = t.vector_lanes, 1
        elif isinstance(op, nn.GlobalAvgPoolOp):
            self.kind = "avg"
            self.k, self.s, self.d, self.p = (h, w), (1, 1), (1, 1), (0, 0, 0, 0)
            self.dense = False
            self.g, self.cig, self.cog = ci, 1, 1
            self.pad_value = 0.0
            self.spatial_tiling = False
            lanes, unit = t.vector_lanes, 1
        else:  # pragma: no cover - the dispatcher only sends the above
            raise AssertionError(op.name)
        self.eff = (self.d[0] * (self.k[0] - 1) + 1, self.d[1] * (self.k[1] - 1) + 1)
        self.lanes, self.unit = lanes, unit
        # the padded input's extent and the room past it that ceil_mode windows need
        self.hp = h + self.p[0] + self.p[2]
        self.wp = w + self.p[1] + self.p[3]
        self.hang = (
            max(0, (ho - 1) * self.s[0] + self.eff[0] - self.hp),
            max(0, (wo - 1) * self.s[1] + self.eff[1] - self.wp),
        )
        # an average counting its explicit pads must not count ceil_mode's
        # extra room: edge tiles get buffers of their exact extent
        self.exact = self.kind == "avg" and self.count_include_pad and any(self.hang)
        # output channels x blocks of output rows
        rows = ho if self._rows_may_split() else 1
        options = grids(co, rows, cores, lanes, unit)
        key = ("window", t, cores, self.kind, n, ci, h, w, co, ho, wo, self.k, self.s, self.d, self.p,
               self.g, self.cig, self.bias is not None, self.count_include_pad)
        self.grid = chosen_grid(key, options, self._estimate)
        if self.grid.rows.total != ho:
            self.grid = Grid(self.grid.ch, whole_split(ho))
        self.split, self.rows = self.grid.ch, self.grid.rows
        self.active = self.grid.active

    def _rows_may_split(self) -> bool:
        """Whether cores may take blocks of output rows. A pooling has one
        `pads` attribute for all cores (which rows of its buffer are
        padding): cores at the top, middle and bottom of the map differ, so
        the rows a core reads as padding are filled and declared data, which
        is exact for max pooling (-inf) and for an average that counts its
        pads, not for one that does not (unless it has no row padding at
        all), nor for edge tiles of exact extent."""
        if not self.spatial_tiling or self.exact:
            return False
        if self.kind == "avg" and not self.count_include_pad:
            return self.p[0] == self.p[2] == 0 and self.hang[0] == 0
        return True

    # -- sizes --------------------------------------------------------------
    def cin(self, cb: int) -> int:
        if self.kind == "conv":
            return self.ci if self.dense else cb // self.cog * self.cig
        return cb

    def w_elems(self, cb: int) -> int:
        if self.kind != "conv":
            return 0
        return cb * self.cig * self.k[0] * self.k[1] + (cb if self.bias is not None else 0)

    def in_shape(self, p: WindowPlan) -> tuple[int, int, int, int]:
        return (p.tn, self.cin(p.cb), (p.th - 1) * self.s[0] + self.eff[0], (p.tw - 1) * self.s[1] + self.eff[1])

    def out_shape(self, p: WindowPlan) -> tuple[int, int, int, int]:
        return (p.tn, p.cb, p.th, p.tw)

    def use(self, p: WindowPlan) -> Use:
        ins, outs = prod(self.in_shape(p)), prod(self.out_shape(p))
        mult = 4 if self.exact else 1
        bufs = [(f"{self.name}_in", "nram", ins * mult), (f"{self.name}_out", "nram", outs * mult)]
        if self.kind == "conv":
            bufs.insert(0, (f"{self.name}_w", "wram", self.w_elems(p.cb)))
        nram = (ins + outs) * mult
        return Use(nram, self.w_elems(p.cb), bufs)

    def _fit_rows(self, cb: int, tn: int, budget: int, rb: int) -> WindowPlan | None:
        """The plan with the most output rows (then columns) for `cb`, `tn`
        in a block of `rb` output rows."""
        mult = 4 if self.exact else 1
        budget //= mult
        cin = self.cin(cb)
        sh, sw = self.s
        eh, ew = self.eff
        if not self.spatial_tiling:
            p = WindowPlan(cb, tn, self.ho, self.wo)
            return p if tn * (cin * self.h * self.w + cb * self.ho * self.wo) <= budget else None
        wb = (self.wo - 1) * sw + ew
        # rows: tn * (cin * ((th - 1) * sh + eh) * wb + cb * th * wo) <= budget
        per_row = tn * (cin * sh * wb + cb * self.wo)
        fixed = tn * cin * (eh - sh) * wb
        th = (budget - fixed) // per_row if per_row else rb
        if th >= 1:
            return WindowPlan(cb, tn, balanced(rb, th), self.wo)
        # one row of output, columns tiled
        per_col = tn * (cin * eh * sw + cb)
        fixed = tn * cin * eh * (ew - sw)
        tw = (budget - fixed) // per_col
        if tw >= 1:
            return WindowPlan(cb, tn, 1, balanced(self.wo, tw))
        return None

    def _tiles(self, p: WindowPlan, chunk: int, rb: int) -> tuple[int, int]:
        """(sub-blocks, tiles per sub-block) of one core."""
        return cdiv(chunk, p.cb), cdiv(self.n, p.tn) * cdiv(rb, p.th) * cdiv(self.wo, p.tw)

    def _cost(self, p: WindowPlan, chunk: int, rb: int) -> float:
        nsub, tiles = self._tiles(p, chunk, rb)
        ins = prod(self.in_shape(p))
        moved = nsub * tiles * ins + self.w_elems(chunk)
        return dma_cost(self.lw.target, moved, nsub * tiles * 2 + nsub)

    def plan(self, nram: int, wram: int) -> WindowPlan:
        return self._plan(nram, wram, self.split.chunk, self.rows.chunk)

    def _plan(self, nram: int, wram: int, chunk: int, rb: int) -> WindowPlan:
        eb = self.lw.target.element_bytes
        nram //= eb
        wram //= eb
        best, best_cost = None, None
        for cb in block_sizes(chunk, math.lcm(self.lanes, self.unit), self.unit):
            if self.w_elems(cb) > wram:
                continue
            for tn in sorted({self.n, 1}, reverse=True):
                p = self._fit_rows(cb, tn, nram, rb)
                if p is None:
                    continue
                cost = self._cost(p, chunk, rb)
                if best is None or cost < best_cost:
                    best, best_cost = p, cost
                break
        if best is None:
            raise NoPlan
        return best

    def _estimate(self, grid: Grid) -> float | None:
        """`estimate_ns` of the layer split by `grid`, tiled for the whole
        per-core memories. A dense convolution's input tile is one DRAM read
        per row block (the channel groups' loads are identical: multicast),
        any other layer's one per core; a channel group's weights are one
        read (its row blocks share them)."""
        t = self.lw.target
        chunk, rb = grid.ch.chunk, grid.rows.chunk
        try:
            p = self._plan(t.nram_bytes, t.wram_bytes, chunk, rb)
        except NoPlan:
            return None
        nsub, tiles = self._tiles(p, chunk, rb)
        ins = prod(self.in_shape(p))
        readers = grid.rows.active if self.kind == "conv" and self.dense else grid.active
        dram = (nsub * tiles * ins * readers + self.w_elems(chunk) * grid.ch.active
                + self.n * self.co * self.ho * self.wo)
        weights = (1 + (self.bias is not None)) if self.kind == "conv" else 0
        transfers = nsub * (2 * tiles + weights)
        if self.kind == "conv":
            groups = self.cin(p.cb) // self.cig
            step = conv_cycles(t, p.tn, p.th, p.tw, *self.k, p.cb, self.cig, groups)
        else:
            step = vector_cycles(t, p.tn * p.cb * p.th * p.tw, self.k[0] * self.k[1])
        overhead = t.instruction_overhead_cycles
        cycles = nsub * tiles * (overhead + step)
        if any(self.p) or any(self.hang):  # padding fills: about two per sub-block
            cycles += nsub * min(tiles, 2) * (overhead + vector_cycles(t, ins, 1))
        return estimate_ns(t, grid.active, dram, transfers, cycles)

    def min_plan(self) -> WindowPlan:
        if not self.spatial_tiling:
            return WindowPlan(self.unit, 1, self.ho, self.wo)
        return WindowPlan(self.unit, 1, 1, 1)

    def ideal_plan(self) -> WindowPlan:
        return WindowPlan(self.split.chunk, self.n, self.rows.chunk, self.wo)

    # -- emission -----------------------------------------------------------
    def emit(self, kb: KernelBuilder, p: WindowPlan) -> None:
        lw = self.lw
        x = lw.dram(self.op.operands[0])
        y = lw.dram(self.op.results[0])
        kb.note_active(self.active)
        split, cores = self.split, kb.cores
        nsub = cdiv(split.chunk, p.cb)
        name = self.name
        w_buf = b_buf = None
        kb.arg(x)
        if self.kind == "conv":
            wt = lw.dram(self.weight)
            kb.arg(wt)
            w_buf = kb.alloc((p.cb, self.cig, *self.k), "wram", f"{name}_w")
            if self.bias is not None:
                bt = lw.dram(self.bias)
                kb.arg(bt)
                b_buf = kb.alloc((p.cb,), "wram", f"{name}_b")
        kb.arg(y)
        bufs: dict[tuple, tuple[SSAValue, SSAValue, dict]] = {}

        def buffers(ish, osh):
            key = (ish, osh)
            if key not in bufs:
                suffix = "" if not bufs else f"_{len(bufs)}"
                i = kb.alloc(ish, "nram", f"{name}_in{suffix}")
                o = kb.alloc(osh, "nram", f"{name}_out{suffix}")
                # whether the buffer was filled, and per core the boxes
                # loads wrote since
                bufs[key] = (i, o, {"filled": False, "boxes": [[] for _ in range(cores)]})
            return bufs[key]

        if not self.exact:
            buffers(self.in_shape(p), self.out_shape(p))

        cells = [self.grid.cell(c) for c in range(cores)]
        blocks = [self.rows.range(cell[1]) if cell is not None else (0, 0) for cell in cells]
        for j in range(nsub):
            ranges = [split.sub(cell[0], j, p.cb) if cell is not None else (0, 0) for cell in cells]
            if self.kind == "conv":
                kb.load(w_buf, wt, [box_entry((lo, 0, 0, 0), (hi - lo, self.cig, *self.k), (0, 0, 0, 0))
                                    for lo, hi in ranges])
                if b_buf is not None:
                    kb.load(b_buf, bt, [box_entry((lo,), (hi - lo,), (0,)) for lo, hi in ranges])
            for n0 in range(0, self.n, p.tn):
                tn = min(p.tn, self.n - n0)
                for t0 in range(0, self.rows.chunk, p.th):
                    # each core's output rows [r0, r1) of this tile (None: no work)
                    spans: list[tuple[int, int] | None] = []
                    for (lo, hi), (b0, b1) in zip(ranges, blocks):
                        r0, r1 = b0 + t0, min(b1, b0 + t0 + p.th)
                        spans.append((r0, r1) if hi > lo and r1 > r0 else None)
                    if not any(spans):
                        continue
                    for q0 in range(0, self.wo, p.tw):
                        q1 = min(self.wo, q0 + p.tw)
                        self._emit_tile(kb, p, x, y, w_buf, b_buf, buffers, ranges, spans, n0, tn, q0, q1)

    def _emit_tile(self, kb, p, x, y, w_buf, b_buf, buffers, ranges, spans, n0, tn, q0, q1) -> None:
        """One tile: each core with work loads its input rows (with the
        halo; padding filled), computes, stores its rows of its channels."""
        sh, sw = self.s
        eh, ew = self.eff
        pt, pl = self.p[0], self.p[1]
        wc0, wc1 = q0 * sw, (q1 - 1) * sw + ew
        ic0, ic1 = max(0, wc0 - pl), min(self.w, wc1 - pl)
        coff, nc = max(0, pl - wc0), max(0, ic1 - ic0)
        geo: list[tuple | None] = []  # per core: (r0, r1, wr0, wr1, ir0, roff, nr)
        for span in spans:
            if span is None:
                geo.append(None)
                continue
            r0, r1 = span
            wr0, wr1 = r0 * sh, (r1 - 1) * sh + eh  # padded coordinates
            ir0, ir1 = max(0, wr0 - pt), min(self.h, wr1 - pt)
            geo.append((r0, r1, wr0, wr1, ir0, max(0, pt - wr0), max(0, ir1 - ir0)))
        if self.exact:  # (one block of rows: every core has the same rows)
            r0, r1, wr0, wr1, *_ = next(g for g in geo if g is not None)
            hb = min(wr1, self.hp) - wr0
            wbb = min(wc1, self.wp) - wc0
            ish = (p.tn, self.cin(p.cb), hb, wbb)
            osh = (p.tn, p.cb, r1 - r0, q1 - q0)
        else:
            ish, osh = self.in_shape(p), self.out_shape(p)
        ibuf, obuf, state = buffers(ish, osh)
        hb, wbb = ish[2], ish[3]
        # fill the buffer if a core's valid outputs read a cell that no load
        # writes (padding) and a load wrote it since the last fill
        fill = False
        boxes = state["boxes"]
        for c, g in enumerate(geo):
            if g is None:
                continue
            _, _, wr0, wr1, _, roff, nr = g
            box = (roff, roff + nr, coff, coff + nc)
            need = (roff > 0 or roff + nr < min(wr1 - wr0, hb)
                    or coff > 0 or coff + nc < min(wc1 - wc0, wbb))
            dirty = not state["filled"] or any(
                not (box[0] <= b[0] and b[1] <= box[1] and box[2] <= b[2] and b[3] <= box[3]) for b in boxes[c]
            )
            fill = fill or (need and dirty)
        if fill:
            kb.fill(ibuf, self.pad_value)
            state["filled"] = True
            for b in boxes:
                b.clear()
        for c, g in enumerate(geo):
            if g is not None and g[6] and nc:
                box = (g[5], g[5] + g[6], coff, coff + nc)
                if box not in boxes[c]:
                    boxes[c].append(box)

        def in_entry(c):
            lo, hi = ranges[c]
            g = geo[c]
            if g is None:
                return None
            _, _, _, _, ir0, roff, nr = g
            if self.kind == "conv" and self.dense:
                clo, chi = 0, self.ci
            elif self.kind == "conv":
                clo, chi = lo // self.cog * self.cig, hi // self.cog * self.cig
            else:
                clo, chi = lo, hi
            return box_entry((n0, clo, ir0, ic0), (tn, chi - clo, nr, nc), (0, 0, roff, coff))

        cores = len(spans)
        kb.load(ibuf, x, [in_entry(c) for c in range(cores)])
        if self.kind == "conv":
            kb.add(accel.ConvOp(obuf, ibuf, w_buf, b_buf, self.s, self.d, ish[1] // self.cig))
        else:
            pads = {(g[5], coff, hb - g[5] - g[6], wbb - coff - nc) for g in geo if g is not None}
            if len(pads) == 1:
                (pool_pads,) = pads
            else:
                # cores differ in which rows are padding: declare them data
                # (they hold the pad value; see _rows_may_split)
                pool_pads = (0, coff, 0, wbb - coff - nc)
            kb.add(accel.PoolOp(obuf, ibuf, self.kind, self.k, self.s, self.d, pool_pads,
                                self.count_include_pad))
        stores = []
        for (lo, hi), g in zip(ranges, geo):
            if g is None:
                stores.append(None)
                continue
            r0, r1 = g[0], g[1]
            stores.append(box_entry((0, 0, 0, 0), (tn, hi - lo, r1 - r0, q1 - q0), (n0, lo, r0, q0)))
        kb.store(y, obuf, stores)


# --------------------------------------------------------------------------
# element-wise layers and batch norm
# --------------------------------------------------------------------------

ELTWISE = {
    nn.ReluOp: "relu",
    nn.SigmoidOp: "sigmoid",
    nn.HardSwishOp: "hard_swish",
    nn.LeakyReluOp: "leaky_relu",
    nn.ClipOp: "clip",
    nn.HardSigmoidOp: "hard_sigmoid",
    nn.AddOp: "add",
    nn.SubOp: "sub",
    nn.MulOp: "mul",
    nn.DivOp: "div",
}


def eltwise_params(op: Operation) -> dict[str, Attribute]:
    """alpha / beta / min / max of an element-wise layer, by their nn names."""
    out: dict[str, Attribute] = {}
    for key in ("alpha", "beta", "min", "max"):
        v = op.properties.get(key)
        if v is not None:
            out[key] = v
    return out


def split_axis(rank: int) -> int | None:
    return None if rank == 0 else (1 if rank >= 2 else 0)


def operand_box(oshape, out_off, out_size):
    """An operand's slice for the output box (numpy broadcasting: aligned
    right; broadcast axes take their single element)."""
    r, q = len(out_off), len(oshape)
    off, size = [], []
    for i, d in enumerate(oshape):
        k = i + r - q
        if d == 1:
            off.append(0)
            size.append(1)
        else:
            off.append(out_off[k])
            size.append(out_size[k])
    return tuple(off), tuple(size)


@dataclass
class BoxPlan:
    cb: int
    tile: tuple[int, ...]  # tile sizes over the output axes (tile[axis] == cb)


def plan_box(shape, axis, chunk, cost_of: Callable[[tuple[int, ...]], int], budget: int,
             lanes: int) -> BoxPlan | None:
    """The largest box tile of `shape` (sub-block `cb` on `axis`; inner axes
    whole, one axis partial, outer axes 1) whose buffers (`cost_of`) fit."""
    r = len(shape)
    others = [i for i in range(r) if i != axis]
    cbs = block_sizes(chunk, lanes, 1) if axis is not None else [1]
    for cb in cbs:
        for k_idx in range(len(others) + 1):
            # axes others[:k_idx] are 1, others[k_idx] partial, the rest whole
            tile = list(shape)
            if axis is not None:
                tile[axis] = cb
            for i in others[:k_idx]:
                tile[i] = 1
            if k_idx == len(others):
                if cost_of(tuple(tile)) <= budget:
                    return BoxPlan(cb, tuple(tile))
                continue
            a = others[k_idx]
            tile[a] = 1
            one = cost_of(tuple(tile))
            if one > budget:
                continue
            tile[a] = 2 if shape[a] >= 2 else 1
            two = cost_of(tuple(tile))
            slope = two - one
            t = shape[a] if slope <= 0 else min(shape[a], 1 + (budget - one) // slope)
            tile[a] = balanced(shape[a], t)
            return BoxPlan(cb, tuple(tile))
    return None


def box_tiles(shape, tile, axis):
    """Offsets of the tiles covering `shape` (the split axis excluded: it is
    handled per core)."""
    ranges = [range(0, d, t) if i != axis else range(0, 1) for i, (d, t) in enumerate(zip(shape, tile))]
    return itertools.product(*ranges)


class EltwiseRule(Rule):
    """Unary / binary element-wise layers and batch norm (any rank)."""

    def __init__(self, lw, op: Operation, cores: int):
        self.lw, self.op, self.cores = lw, op, cores
        self.name = lw.value_name(op.results[0])
        self.shape = shape_of(op.results[0])
        self.axis = split_axis(len(self.shape))
        t = lw.target
        if isinstance(op, nn.BatchNormOp):
            scale, shift = lw.bn_constants(op)
            self.operands = [(op.input, shape_of(op.input), "nram"), (scale, None, "wram"), (shift, None, "wram")]
            self.steps = [("mul", [0, 1], {}), ("add", [0, 2], {})]
        else:
            kind = ELTWISE[type(op)]
            self.operands = []
            for v in op.operands:
                space = "wram" if lw.is_weight(v) else "nram"
                self.operands.append((v, shape_of(v), space))
            self.steps = [(kind, list(range(len(op.operands))), eltwise_params(op))]
        # channels (axis 1; 0 for vectors) x blocks of axis 2 (rank >= 3)
        self.row_axis = 2 if len(self.shape) >= 3 else None
        if self.axis is None:
            self.grid = Grid(whole_split(1), whole_split(1))
        elif self.row_axis is None:
            self.grid = Grid(make_split(self.shape[self.axis], cores, t.vector_lanes), whole_split(1))
        else:
            options = grids(self.shape[self.axis], self.shape[self.row_axis], cores, t.vector_lanes)
            key = ("eltwise", t, cores, tuple(self.shape), tuple((tuple(s), sp) for s, sp in self._shapes()),
                   tuple(kind for kind, _, _ in self.steps))
            self.grid = chosen_grid(key, options, self._estimate)
        self.split, self.rows = self.grid.ch, self.grid.rows
        self.active = self.grid.active

    def _block(self, rows: Split | None = None) -> tuple[int, ...]:
        """The output box of one core's row block (all channels)."""
        shape = list(self.shape)
        if self.row_axis is not None:
            shape[self.row_axis] = (rows or self.rows).chunk
        return tuple(shape)

    def _estimate(self, grid: Grid) -> float | None:
        """`estimate_ns` of the layer split by `grid`, tiled for the whole
        per-core memories (operands that are broadcast are read by every
        core, an upper bound)."""
        t = self.lw.target
        block = self._block(grid.rows)
        try:
            p = self._plan(t.nram_bytes, t.wram_bytes, block, grid.ch.chunk)
        except NoPlan:
            return None
        tiles = cdiv(grid.ch.chunk, p.cb) * prod(
            cdiv(d, s) for i, (d, s) in enumerate(zip(block, p.tile)) if i != self.axis)
        dram = prod(self.shape)
        zero = (0,) * len(self.shape)
        for shp, _ in self._shapes():
            if tuple(shp) == tuple(self.shape):
                dram += prod(shp)
            else:
                dram += prod(operand_box(shp, zero, p.tile)[1]) * tiles * grid.active
        step = sum(t.instruction_overhead_cycles + vector_cycles(t, prod(p.tile), VECTOR_WORK.get(kind, 1))
                   for kind, _, _ in self.steps)
        transfers = tiles * (len(self.operands) + 1)
        return estimate_ns(t, grid.active, dram, transfers, tiles * step)

    def _shapes(self):
        out = []
        for v, shp, space in self.operands:
            out.append((shp if shp is not None else tuple(self.lw.dram_shape(v)), space))
        return out

    def _bufs(self, tile):
        """(shape, space) of each operand buffer, and whether the output
        reuses operand 0's buffer."""
        shapes = []
        zero = (0,) * len(tile)
        for shp, space in self._shapes():
            _, size = operand_box(shp, zero, tile)
            shapes.append((size, space))
        inplace = shapes[0][0] == tuple(tile) and shapes[0][1] == "nram"
        return shapes, inplace

    def _cost(self, tile, space="nram"):
        shapes, inplace = self._bufs(tile)
        total = sum(prod(s) for s, sp in shapes if sp == space)
        if space == "nram" and not inplace:
            total += prod(tile)
        return total

    def use(self, p: BoxPlan) -> Use:
        shapes, inplace = self._bufs(p.tile)
        bufs = [(f"{self.name}_{i}", sp, prod(s)) for i, (s, sp) in enumerate(shapes)]
        if not inplace:
            bufs.append((f"{self.name}_out", "nram", prod(p.tile)))
        return Use(self._cost(p.tile, "nram"), self._cost(p.tile, "wram"), bufs)

    def plan(self, nram: int, wram: int) -> BoxPlan:
        return self._plan(nram, wram, self._block(), self.split.chunk)

    def _plan(self, nram: int, wram: int, block: tuple[int, ...], chunk: int) -> BoxPlan:
        eb = self.lw.target.element_bytes
        nram //= eb
        wram //= eb

        def cost(tile):
            if self._cost(tile, "wram") > wram:
                return nram + 1
            return self._cost(tile, "nram")

        p = plan_box(block, self.axis, chunk, cost, nram, self.lw.target.vector_lanes)
        if p is None:
            raise NoPlan
        return p

    def min_plan(self) -> BoxPlan:
        tile = [1] * len(self.shape)
        return BoxPlan(1, tuple(tile))

    def ideal_plan(self) -> BoxPlan:
        tile = list(self._block())
        if self.axis is not None:
            tile[self.axis] = self.split.chunk
        return BoxPlan(self.split.chunk, tuple(tile))

    def emit(self, kb: KernelBuilder, p: BoxPlan) -> None:
        lw = self.lw
        kb.note_active(self.active)
        y = lw.dram(self.op.results[0])
        shapes, inplace = self._bufs(p.tile)
        drams = [lw.dram(v) for v, _, _ in self.operands]
        for d in (*drams, y):
            kb.arg(d)
        bufs = [kb.alloc(s, sp, f"{self.name}_{'in' if i == 0 else 'arg'}{'' if i == 0 else i}")
                for i, (s, sp) in enumerate(shapes)]
        out = bufs[0] if inplace else kb.alloc(p.tile, "nram", f"{self.name}_out")
        cores, axis, split, ra = kb.cores, self.axis, self.split, self.row_axis
        oshapes = [shp for shp, _ in self._shapes()]
        nsub = cdiv(split.chunk, p.cb) if axis is not None else 1
        cells = [self.grid.cell(c) for c in range(cores)]
        blocks = [self.rows.range(cell[1]) if cell is not None else (0, 0) for cell in cells]
        block = self._block()
        for j in range(nsub):
            if axis is not None:
                ranges = [split.sub(cell[0], j, p.cb) if cell is not None else (0, 0) for cell in cells]
            else:
                ranges = [(0, 1) if c == 0 else (0, 0) for c in range(cores)]
            for origin in box_tiles(block, p.tile, axis):
                sizes0 = [min(t, d - o) for o, t, d in zip(origin, p.tile, self.shape)]

                def out_box(c):
                    lo, hi = ranges[c]
                    if hi <= lo:
                        return None
                    off, size = list(origin), list(sizes0)
                    if axis is not None:
                        off[axis], size[axis] = lo, hi - lo
                    if ra is not None:  # the tile's rows inside the core's block
                        b0, b1 = blocks[c]
                        off[ra] = b0 + origin[ra]
                        size[ra] = min(p.tile[ra], b1 - off[ra])
                        if size[ra] <= 0:
                            return None
                    return tuple(off), tuple(size)

                boxes = [out_box(c) for c in range(cores)]
                for buf, dram, shp in zip(bufs, drams, oshapes):
                    entries = []
                    for b in boxes:
                        if b is None:
                            entries.append(None)
                            continue
                        off, size = operand_box(shp, *b)
                        entries.append(box_entry(off, size, (0,) * len(off)))
                    kb.load(buf, dram, entries)
                for i, (kind, args, params) in enumerate(self.steps):
                    ins = [out if (a == 0 and i > 0) else bufs[a] for a in args]
                    kb.add(accel.EltwiseOp(out, ins, kind, params))
                kb.store(y, out, [None if b is None else box_entry((0,) * len(b[0]), b[1], b[0]) for b in boxes])


# --------------------------------------------------------------------------
# gemm and 2-D matmul
# --------------------------------------------------------------------------


@dataclass
class Epilogue:
    """How a gemm's alpha, beta and C reach the accelerator: `bias` (a DRAM
    tensor of shape [N] for the matmul's bias), or a multiply by `alpha`
    and an add of `c` (broadcast to [M, N], scaled by `beta` on chip when it
    is not a constant)."""

    bias: object = None
    alpha: object = None  # Derived [1, 1] or None
    c: object = None  # value or Derived, broadcastable to [M, N]
    c_shape: tuple[int, ...] = ()
    beta: object = None  # Derived [1, 1] or None


def gemm_epilogue(lw, op: Operation) -> Epilogue:
    if not isinstance(op, nn.GemmOp):
        return Epilogue()
    m, n, _ = op.mnk()
    alpha, beta = fval(op.alpha), fval(op.beta)
    ep = Epilogue()
    if alpha != 1.0:
        ep.alpha = lw.scalar(alpha)
    c = op.c
    if c is None or beta == 0.0:
        return ep
    cshape = shape_of(c)
    # C's values are needed only to fold beta into it
    carr = lw.weight_array(c) if beta != 1.0 and lw.is_weight(c) else None
    if alpha == 1.0 and cshape in ((n,), (1, n)):
        if beta == 1.0:
            ep.bias = c if cshape == (n,) else ("view", c, (n,))
            return ep
        if carr is not None:
            ep.bias = lw.derived(("gemm_bias", lw.key_of(c), beta), f"{lw.value_name(op.output)}_bias",
                                 (beta * carr.astype("float64")).reshape(n))
            return ep
    if beta != 1.0 and carr is not None:
        ep.c = lw.derived(("gemm_c", lw.key_of(c), beta), f"{lw.value_name(op.output)}_c",
                          beta * carr.astype("float64"))
    else:
        ep.c = c
        if beta != 1.0:
            ep.beta = lw.scalar(beta)
    ep.c_shape = cshape
    return ep


@dataclass
class MatmulPlan:
    nb: int
    tm: int


class MatmulRule(Rule):
    """gemm (no trans_a) and 2-D matmul: out[M, N] = A @ B on the MAC array,
    N split over the cores, B's slice in WRAM (in sub-blocks of N if it does
    not fit), rows of A in tiles."""

    def __init__(self, lw, op: Operation, cores: int):
        self.lw, self.op, self.cores = lw, op, cores
        self.name = lw.value_name(op.results[0])
        if isinstance(op, nn.GemmOp):
            self.a, self.b, self.trans_b = op.a, op.b, bool(ival(op.trans_b))
        else:
            self.a, self.b, self.trans_b = op.lhs, op.rhs, False
        self.m, self.k = shape_of(self.a)
        self.n = shape_of(op.results[0])[1]
        self.ep = gemm_epilogue(lw, op)
        self.split = make_split(self.n, cores, lw.target.mac_lanes_out)
        self.active = self.split.active

    def _c_tile(self, tm, nb):
        if self.ep.c is None:
            return 0
        _, size = operand_box(self.ep.c_shape, (0, 0), (tm, nb))
        return prod(size)

    def _wram(self, nb):
        return nb * self.k + (nb if self.ep.bias is not None else 0) + (1 if self.ep.alpha else 0) + (
            1 if self.ep.beta else 0)

    def _nram(self, nb, tm):
        return tm * self.k + tm * nb + self._c_tile(tm, nb)

    def use(self, p: MatmulPlan) -> Use:
        bufs = [(f"{self.name}_w", "wram", p.nb * self.k), (f"{self.name}_a", "nram", p.tm * self.k),
                (f"{self.name}_out", "nram", p.tm * p.nb)]
        return Use(self._nram(p.nb, p.tm), self._wram(p.nb), bufs)

    def plan(self, nram: int, wram: int) -> MatmulPlan:
        eb = self.lw.target.element_bytes
        nram //= eb
        wram //= eb
        lanes = self.lw.target.mac_lanes_out
        best, best_cost = None, None
        sizes = block_sizes(self.split.chunk, lanes, 1)
        # the largest sub-block whose weights fit (WRAM use grows with nb)
        fits = [nb for nb in sizes if self._wram(nb) <= wram]
        if fits and fits[0] not in sizes[:1]:
            lo, hi = fits[0], self.split.chunk
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self._wram(mid) <= wram:
                    lo = mid
                else:
                    hi = mid
            fits.insert(0, lo - lo % lanes if lo >= lanes else lo)
        for nb in fits:
            per_row = self._nram(nb, 2) - self._nram(nb, 1)
            first = self._nram(nb, 1)
            if first > nram:
                continue
            tm = self.m if per_row <= 0 else min(self.m, 1 + (nram - first) // per_row)
            p = MatmulPlan(nb, balanced(self.m, tm))
            nsub = cdiv(self.split.chunk, nb)
            tiles = cdiv(self.m, p.tm)
            cost = dma_cost(self.lw.target, nsub * self.m * self.k + self.split.chunk * self.k,
                            nsub * (1 + 2 * tiles))
            if best is None or cost < best_cost:
                best, best_cost = p, cost
        if best is None:
            raise NoPlan
        return best

    def min_plan(self) -> MatmulPlan:
        return MatmulPlan(1, 1)

    def ideal_plan(self) -> MatmulPlan:
        return MatmulPlan(self.split.chunk, self.m)

    def emit(self, kb: KernelBuilder, p: MatmulPlan) -> None:
        lw, ep, name = self.lw, self.ep, self.name
        kb.note_active(self.active)
        a_d, b_d, y = lw.dram(self.a), lw.dram(self.b), lw.dram(self.op.results[0])
        for d in (a_d, b_d):
            kb.arg(d)
        k = self.k
        w_buf = kb.alloc((p.nb, k) if self.trans_b else (k, p.nb), "wram", f"{name}_w")
        bias_d = lw.dram(ep.bias) if ep.bias is not None else None
        for d in (bias_d, lw.dram(ep.c) if ep.c is not None else None, y):
            if d is not None:
                kb.arg(d)
        b_buf = kb.alloc((p.nb,), "wram", f"{name}_b") if bias_d is not None else None
        alpha_buf = beta_buf = None
        if ep.alpha is not None:
            alpha_buf = kb.alloc((1, 1), "wram", f"{name}_alpha")
            kb.load(alpha_buf, lw.dram(ep.alpha), kb.each(lambda c: box_entry((0, 0), (1, 1), (0, 0))))
        if ep.beta is not None:
            beta_buf = kb.alloc((1, 1), "wram", f"{name}_beta")
            kb.load(beta_buf, lw.dram(ep.beta), kb.each(lambda c: box_entry((0, 0), (1, 1), (0, 0))))
        a_buf = kb.alloc((p.tm, k), "nram", f"{name}_a")
        out = kb.alloc((p.tm, p.nb), "nram", f"{name}_out")
        c_buf = None
        if ep.c is not None:
            _, cs = operand_box(ep.c_shape, (0, 0), (p.tm, p.nb))
            c_buf = kb.alloc(cs, "nram", f"{name}_c")
            c_d = lw.dram(ep.c)
        split, cores = self.split, kb.cores
        for j in range(cdiv(split.chunk, p.nb)):
            ranges = [split.sub(c, j, p.nb) for c in range(cores)]
            if self.trans_b:
                kb.load(w_buf, b_d, [box_entry((lo, 0), (hi - lo, k), (0, 0)) for lo, hi in ranges])
            else:
                kb.load(w_buf, b_d, [box_entry((0, lo), (k, hi - lo), (0, 0)) for lo, hi in ranges])
            if b_buf is not None:
                kb.load(b_buf, bias_d, [box_entry((lo,), (hi - lo,), (0,)) for lo, hi in ranges])
            for m0 in range(0, self.m, p.tm):
                tm = min(p.tm, self.m - m0)
                kb.load(a_buf, a_d, [box_entry((m0, 0), (tm, k), (0, 0)) if hi > lo else None for lo, hi in ranges])
                kb.add(accel.MatMulOp(out, a_buf, w_buf, b_buf, self.trans_b))
                if alpha_buf is not None:
                    kb.add(accel.EltwiseOp(out, [out, alpha_buf], "mul"))
                if c_buf is not None:
                    entries = []
                    for lo, hi in ranges:
                        if hi <= lo:
                            entries.append(None)
                            continue
                        off, size = operand_box(ep.c_shape, (m0, lo), (tm, hi - lo))
                        entries.append(box_entry(off, size, (0,) * len(off)))
                    kb.load(c_buf, c_d, entries)
                    if beta_buf is not None:
                        kb.add(accel.EltwiseOp(c_buf, [c_buf, beta_buf], "mul"))
                    kb.add(accel.EltwiseOp(out, [out, c_buf], "add"))
                kb.store(y, out, [box_entry((0, 0), (tm, hi - lo), (m0, lo)) for lo, hi in ranges])


# --------------------------------------------------------------------------
# data movement: concat, split, slice
# --------------------------------------------------------------------------


@dataclass
class CopyJob:
    src: object
    src_off: tuple[int, ...]
    dst: object
    dst_off: tuple[int, ...]
    shape: tuple[int, ...]


class CopyRule(Rule):
    """Each job's box copied DRAM -> NRAM -> DRAM through one staging buffer,
    the box split over the cores along axis 1 (0 for vectors)."""

    def __init__(self, lw, op: Operation, cores: int):
        self.lw, self.op, self.cores = lw, op, cores
        self.name = lw.value_name(op.results[0])
        jobs: list[CopyJob] = []
        if isinstance(op, nn.ConcatOp):
            axis = ival(op.axis)
            at = 0
            y = op.output
            for x in op.inputs:
                shp = shape_of(x)
                off = [0] * len(shp)
                off[axis] = at
                jobs.append(CopyJob(x, (0,) * len(shp), y, tuple(off), shp))
                at += shp[axis]
        elif isinstance(op, nn.SplitOp):
            axis = ival(op.axis)
            at = 0
            for r in op.outputs:
                shp = shape_of(r)
                off = [0] * len(shp)
                off[axis] = at
                jobs.append(CopyJob(op.input, tuple(off), r, (0,) * len(shp), shp))
                at += shp[axis]
        elif isinstance(op, nn.SliceOp):
            shp = shape_of(op.output)
            jobs.append(CopyJob(op.input, vals(op.starts), op.output, (0,) * len(shp), shp))
        else:  # pragma: no cover
            raise AssertionError(op.name)
        self.jobs = [j for j in jobs if prod(j.shape) > 0]
        rank = len(shape_of(op.results[0]))
        self.axis = split_axis(rank)
        lanes = lw.target.vector_lanes
        if self.axis is None:
            self.splits = [whole_split(1) for _ in self.jobs]
        else:
            self.splits = [make_split(j.shape[self.axis], cores, lanes) for j in self.jobs]
        self.active = max([s.active for s in self.splits], default=1)
        self.maxshape = tuple(max(j.shape[i] for j in self.jobs) for i in range(rank)) if self.jobs else ()
        self.maxchunk = max([s.chunk for s in self.splits], default=1)

    def use(self, p: BoxPlan) -> Use:
        size = prod(p.tile)
        return Use(size, 0, [(f"{self.name}_buf", "nram", size)])

    def plan(self, nram: int, wram: int) -> BoxPlan:
        nram //= self.lw.target.element_bytes
        p = plan_box(self.maxshape, self.axis, self.maxchunk, prod, nram, self.lw.target.vector_lanes)
        if p is None:
            raise NoPlan
        return p

    def min_plan(self) -> BoxPlan:
        return BoxPlan(1, (1,) * len(self.maxshape))

    def ideal_plan(self) -> BoxPlan:
        tile = list(self.maxshape)
        if self.axis is not None:
            tile[self.axis] = self.maxchunk
        return BoxPlan(self.maxchunk, tuple(tile))

    def emit(self, kb: KernelBuilder, p: BoxPlan) -> None:
        if not self.jobs:
            return
        lw = self.lw
        kb.note_active(self.active)
        buf = kb.alloc(p.tile, "nram", f"{self.name}_buf")
        axis, cores = self.axis, kb.cores
        for job in self.jobs:
            kb.arg(lw.dram(job.src))
        for job in self.jobs:
            kb.arg(lw.dram(job.dst))
        for job, split in zip(self.jobs, self.splits):
            src, dst = lw.dram(job.src), lw.dram(job.dst)
            cb = min(p.cb, split.chunk)
            tile = [min(t, d) for t, d in zip(p.tile, job.shape)]
            for j in range(cdiv(split.chunk, cb) if axis is not None else 1):
                if axis is not None:
                    ranges = [split.sub(c, j, cb) for c in range(cores)]
                else:
                    ranges = [(0, 1) if c == 0 else (0, 0) for c in range(cores)]
                for origin in box_tiles(job.shape, tile, axis):
                    sizes0 = [min(t, d - o) for o, t, d in zip(origin, tile, job.shape)]
                    loads, stores = [], []
                    for lo, hi in ranges:
                        if hi <= lo:
                            loads.append(None)
                            stores.append(None)
                            continue
                        off, size = list(origin), list(sizes0)
                        if axis is not None:
                            off[axis], size[axis] = lo, hi - lo
                        zero = (0,) * len(off)
                        loads.append(box_entry(tuple(a + b for a, b in zip(job.src_off, off)), size, zero))
                        stores.append(box_entry(zero, size, tuple(a + b for a, b in zip(job.dst_off, off))))
                    kb.load(buf, src, loads)
                    kb.store(dst, buf, stores)


# --------------------------------------------------------------------------
# everything else: accel.vector on one core
# --------------------------------------------------------------------------

def _vector_tiling(op: Operation):
    """(output axes that may be tiled, fn(out_off, out_size) -> each
    operand's (offsets, sizes)) for layers whose vector op is the same op on
    a tile; None for the others (whole tensor only)."""
    out = shape_of(op.results[0])
    rank = len(out)
    ins = [shape_of(v) for v in op.operands]

    def same_box(dep):
        def fn(off, size):
            boxes = []
            for s in ins:
                if s == out:
                    boxes.append((tuple(off), tuple(size)))
                else:
                    boxes.append(((0,) * len(s), tuple(s)))
            return boxes

        if ins[0] != out:
            return None
        return [i for i in range(rank) if i not in dep], fn

    if isinstance(op, nn.SoftmaxOp):
        return same_box({ival(op.axis)})
    if isinstance(op, (nn.LRNOp, nn.BatchNormOp)):
        return same_box({1})
    if isinstance(op, nn.TransposeOp):
        perm = vals(op.perm)

        def fn_t(off, size):
            o, s = [0] * rank, [0] * rank
            for i, p in enumerate(perm):
                o[p], s[p] = off[i], size[i]
            return [(tuple(o), tuple(s))]

        return list(range(rank)), fn_t
    if isinstance(op, nn.ReduceMeanOp):
        axes = set(vals(op.axes))
        keep = bool(ival(op.keepdims))
        src = ins[0]
        kept = [i for i in range(len(src)) if i not in axes]
        out_to_in = list(range(len(src))) if keep else kept

        def fn_r(off, size):
            o, s = [0] * len(src), list(src)
            for i, a in enumerate(out_to_in):
                if a not in axes:
                    o[a], s[a] = off[i], size[i]
            return [(tuple(o), tuple(s))]

        return [i for i, a in enumerate(out_to_in) if a not in axes], fn_r
    return None


class VectorRule(Rule):
    """The layer's whole tensors on core 0, one `accel.vector` with the nn
    op's semantics; softmax, LRN, batch norm, transpose and reduce_mean that
    do not fit are tiled along the axes they are independent in."""

    def __init__(self, lw, op: Operation, cores: int):
        self.lw, self.op, self.cores = lw, op, cores
        self.name = lw.value_name(op.results[0])
        self.active = 1
        self.out_shape = tuple(shape_of(op.results[0]))
        self.in_shapes = [shape_of(v) for v in op.operands]
        self.tiling = _vector_tiling(op)

    def _in_boxes(self, off, size):
        if self.tiling is None:
            return [((0,) * len(s), tuple(s)) for s in self.in_shapes]
        return self.tiling[1](off, size)

    def _spaces(self):
        return ["wram" if self.lw.is_weight(v) else "nram" for v in self.op.operands]

    def use(self, tile) -> Use:
        boxes = self._in_boxes((0,) * len(tile), tile)
        spaces = self._spaces()
        bufs = [(f"{self.name}_in{i}", sp, prod(b[1])) for i, (b, sp) in enumerate(zip(boxes, spaces))]
        bufs.append((f"{self.name}_out", "nram", prod(tile)))
        nram = sum(b[2] for b in bufs if b[1] == "nram")
        wram = sum(b[2] for b in bufs if b[1] == "wram")
        return Use(nram, wram, bufs)

    def _tileable(self):
        return self.tiling[0] if self.tiling is not None else []

    def plan(self, nram: int, wram: int):
        eb = self.lw.target.element_bytes
        whole = self.out_shape
        u = self.use(whole)
        if u.nram * eb <= nram and u.wram * eb <= wram:
            return whole
        axes = self._tileable()
        for k_idx in range(len(axes)):
            tile = list(whole)
            for i in axes[:k_idx]:
                tile[i] = 1
            a = axes[k_idx]
            tile[a] = 1
            u1 = self.use(tuple(tile))
            if u1.nram * eb > nram or u1.wram * eb > wram:
                continue
            tile[a] = min(2, whole[a])
            slope = self.use(tuple(tile)).nram - u1.nram
            t = whole[a] if slope <= 0 else min(whole[a], 1 + (nram // eb - u1.nram) // slope)
            tile[a] = balanced(whole[a], t)
            return tuple(tile)
        raise NoPlan

    def min_plan(self):
        axes = set(self._tileable())
        return tuple(1 if i in axes else d for i, d in enumerate(self.out_shape))

    def ideal_plan(self):
        return self.out_shape

    def emit(self, kb: KernelBuilder, tile) -> None:
        lw, op = self.lw, self.op
        kb.note_active(1)
        tile = tuple(tile)
        boxes0 = self._in_boxes((0,) * len(tile), tile)
        spaces = self._spaces()
        drams = [lw.dram(v) for v in op.operands]
        y = lw.dram(op.results[0])
        for d in (*drams, y):
            kb.arg(d)
        several = len(boxes0) > 1
        bufs = [kb.alloc(b[1], sp, f"{self.name}_in{i if several else ''}")
                for i, (b, sp) in enumerate(zip(boxes0, spaces))]
        out = kb.alloc(tile, "nram", f"{self.name}_out")
        params = dict(op.properties)
        only0 = lambda e: [e if c == 0 else None for c in range(kb.cores)]  # noqa: E731
        loaded: dict[int, tuple] = {}
        for origin in box_tiles(self.out_shape, tile, None):
            size = tuple(min(t, d - o) for o, t, d in zip(origin, tile, self.out_shape))
            for i, (buf, dram, box) in enumerate(zip(bufs, drams, self._in_boxes(origin, size))):
                if loaded.get(i) == box:
                    continue  # e.g. batch norm's parameters: loaded once
                loaded[i] = box
                kb.load(buf, dram, only0(box_entry(box[0], box[1], (0,) * len(box[0]))))
            kb.add(accel.VectorOp(out, bufs, op.name, params))
            kb.store(y, out, only0(box_entry((0,) * len(size), size, origin)))
