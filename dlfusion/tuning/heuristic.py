"""The joint fusion / core-number heuristic (`strategy=dlfusion`).

It plans from two things only: each layer's characteristics (the
`annotate-layers` figures: kind, operation count, channel sizes, bytes) with
the graph's edges, and the target's characterization table
(`dlfusion.tuning.characterize`), plus the capacities and lane counts of the
target file. It never measures: no simulator call at plan time. The rule
(docs/heuristic.md has the equations and why each step follows from the
characterization):

1. **Launch and dispatch** from the table's lower envelope (the fastest
   record per core number): its slope at the most cores is the per-core
   dispatch, its intercept the launch.
2. **A layer's latency and work** per core number, interpolated from the
   table: the records of its class form lines over (input channels, output
   channels), points along the spatial work `ops / (cin x cout)`; the work is
   the busiest core's time past its dispatch (latency - launch - (busy - 1)
   x dispatch, with the busy cores each record measured).
3. **A group's latency** follows the kernel's time line: one launch; the
   stretch up to the first synchronization overlaps the cores' dispatch;
   then every layer's work adds up. A group kept on chip (every layer one
   the lowering fuses on chip, the working set counted buffer by buffer
   within NRAM and WRAM) splits channels only and synchronizes at
   exchanges; a spilled one keeps each layer's own split and synchronizes
   at barriers. The mechanics the time line does not count (DRAM round
   trips saved, barriers, exchanged bytes, on-chip copies, memory sharing
   of spilled groups) are linear terms fitted per target to the table's
   chains, with the signs the mechanics fix.
4. **Groups and core numbers** minimize the predicted latency over the same
   groupings as `dp` (ideals of the graph, or program-order segments past
   `dp-max-groups` candidates), with the model as the cost oracle; each
   group on its predicted best core number.

`fusion-only` is the same groups on one core each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group, LayerGraph
from dlfusion.tuning.strategies import StrategyContext, register

DENSE_KINDS = ("conv", "gemm", "matmul")  # consumers that read every input channel
MAC_KINDS = ("conv", "depthwise", "gemm", "matmul")  # channels split in MAC lanes
MAX_GROUP = 8  # the largest group the planner considers (dp's default too)
DP_MAX_GROUPS = 4000  # candidate groups past which the planner takes program-order segments (as dp)


# -------------------------------------------------------------------------
# layer features from the annotations
# -------------------------------------------------------------------------


@dataclass
class LayerInfo:
    """What the heuristic knows of one layer: the annotate-layers figures
    plus two derived from them (kernel area and stride for convolutions,
    the number of feature-map inputs for element-wise layers)."""

    kind: str
    ops: float
    cin: int
    cout: int
    hw: int
    ifm: int
    ofm: int
    wbytes: int
    kernel: float = 1.0
    stride: float = 1.0
    inputs: int = 1
    op: str = ""  # the nn operation, when known
    pads: tuple[float, float, float, float] | None = None  # top, left, bottom, right, when known
    window: tuple[int, int] | None = None  # kernel rows x columns, when known

    def padding(self) -> tuple[float, float, float, float]:
        """The window's border: the layer's own pads when known, else
        symmetric from the kernel size (a synthesized layer's 'same')."""
        if self.kind not in ("conv", "depthwise", "pool"):
            return (0.0, 0.0, 0.0, 0.0)
        if self.pads is not None:
            return self.pads
        p = (self.kernel - 1) / 2
        return (p, p, p, p)

    def grow(self, side: float) -> float:
        """How much its padding grows a side x side input map."""
        t, l, b, r = self.padding()
        return (side + t + b) * (side + l + r) / (side * side)

    @staticmethod
    def of(ch: dict, element_bytes: int) -> LayerInfo:
        kind = str(ch["nn.kind"])
        ops = float(ch["nn.ops"])
        cin, cout, hw = int(ch["nn.cin"]), int(ch["nn.cout"]), int(ch["nn.hw"])
        ifm, ofm, wb = int(ch["nn.ifm_bytes"]), int(ch["nn.ofm_bytes"]), int(ch["nn.weight_bytes"])
        info = LayerInfo(kind, ops, cin, cout, hw, ifm, ofm, wb)
        in_hw = ifm / max(1, cin * element_bytes)
        if kind in ("conv", "depthwise") and hw:
            per_in = cout if kind == "conv" else 1
            # weight bytes = cout x cin/groups x k^2 x element bytes
            info.kernel = math.sqrt(max(1.0, wb / max(1, cout * (cin if kind == "conv" else 1) * element_bytes)))
            if kind == "conv" and ops:
                info.kernel = math.sqrt(max(1.0, ops / (hw * cin * per_in)))
            info.stride = math.sqrt(max(1.0, in_hw / hw))
        if kind in ("pool",) and hw:
            info.stride = math.sqrt(max(1.0, in_hw / hw))
            info.kernel = math.sqrt(max(1.0, ops / (hw * max(1, cout))))  # ops: outputs x window
        if kind == "eltwise" and ofm:
            info.inputs = max(1, round(ifm / ofm))
        return info


def on_chip_capable(info: LayerInfo) -> bool:
    """Whether `lower-to-accel` can keep the layer in a fused group on chip
    (convolutions, matrix products, pooling, element-wise, batch norm,
    views); the others (concatenation, LRN, softmax, ...) make the group
    spill."""
    if info.kind == "data":
        return info.ops == 0
    if info.kind == "norm":
        return info.op in ("", "nn.batch_norm")
    return info.kind in ("conv", "depthwise", "gemm", "matmul", "pool", "eltwise")


def kernels(infos: Sequence[LayerInfo]) -> int:
    """Layers that are work of their own (a reshape is a view, no kernel)."""
    return sum(1 for i in infos if i.ops > 0 or i.kind != "data")


def layer_infos(graph: LayerGraph, element_bytes: int) -> list[LayerInfo]:
    """Characteristics of every layer: the `nn.*` attributes when
    annotate-layers has run, else computed the same way."""
    from dlfusion.dialects import nn
    from dlfusion.passes.annotate_layers import ATTRS, characteristics

    out = []
    for op in graph.layers:
        if all(a in op.attributes for a in ATTRS):
            ch = {}
            for a in ATTRS:
                v = op.attributes[a]
                ch[a] = v.data if hasattr(v, "data") and isinstance(v.data, str) else v.value.data
        else:
            ch = characteristics(op, element_bytes)
        info = LayerInfo.of(ch, element_bytes)
        info.op = op.name
        if info.kind in ("conv", "depthwise") and len(op.operands) > 1:
            w = nn.shape_of(op.operands[1])
            if len(w) == 4:
                info.window = (int(w[2]), int(w[3]))
        elif info.kind == "pool" and getattr(op, "kernel", None) is not None:
            k = list(op.kernel.get_values())
            if len(k) == 2:
                info.window = (int(k[0]), int(k[1]))
        pads = getattr(op, "pads", None)
        if info.kind in ("conv", "depthwise", "pool") and pads is not None:
            v = list(pads.get_values())
            if len(v) == 4:
                info.pads = (float(v[0]), float(v[1]), float(v[2]), float(v[3]))
        out.append(info)
    return out


def table_class(info: LayerInfo, classes: Sequence[str]) -> str | None:
    """The characterized class a layer is read from (None: no kernel)."""
    k = info.kind

    def pick(prefs: list[str]) -> str | None:
        for p in prefs:
            if p in classes:
                return p
        return None

    def nearest(*prefixes: str) -> str | None:
        """The class ('conv3x3s2', 'maxpool3x3s1') of the nearest stride (how
        much input a position reads), then window shape, then the first
        prefix."""
        named = [(c, p) for c in classes for p in prefixes
                 if c.startswith(p) and "x" in c[len(p):] and "s" in c[len(p):]]
        if not named:
            return None

        kh, kw = sorted(info.window) if info.window else (max(info.kernel, 1.0),) * 2

        def dist(item: tuple[str, str]) -> tuple[float, float, int]:
            c, p = item
            rest = c[len(p):]
            ch, cw = sorted((int(rest[: rest.index("x")]), int(rest[rest.index("x") + 1 : rest.index("s")])))
            ss = int(rest[rest.index("s") + 1 :])
            return (abs(math.log(max(info.stride, 1.0) / ss)),
                    abs(math.log(max(kh, 1) / ch)) + abs(math.log(max(kw, 1) / cw)), prefixes.index(p))

        return min(named, key=dist)[0]

    if k == "conv":
        return nearest("conv") or pick(["relu"])
    if k == "depthwise":
        return pick(["dw3x3s2", "dw3x3s1"] if info.stride > 1.4 else ["dw3x3s1", "dw3x3s2"]) or pick(["relu"])
    if k in ("gemm", "matmul"):
        return pick(["fc", "conv1x1s1"])
    if k == "pool":
        if info.hw == 1:
            return pick(["gap", "maxpool3x3s2", "relu"])
        kinds = ("avgpool", "maxpool") if info.op == "nn.avg_pool" else ("maxpool", "avgpool")
        return nearest(*kinds) or pick(["relu"])
    if k == "data" and info.ops == 0:
        return None  # a view (reshape, flatten): no kernel
    if k == "data":
        return pick(["concat", "relu", "add"])  # data movement: copies
    if k == "norm":
        return pick(["bn", "relu"])
    if k == "eltwise" and info.inputs >= 2:
        return pick(["add", "relu"])
    return pick(["relu", "add"])


# -------------------------------------------------------------------------
# the characterization as a latency model
# -------------------------------------------------------------------------


def chunk(c: int, n: int, lanes: int) -> int:
    """Channels per core when c channels are split over n cores in whole
    lane groups (the lowering's rule, docs/accelerator.md)."""
    return max(lanes, -(-(-(-c // n)) // lanes) * lanes)


def active(c: int, n: int, lanes: int) -> int:
    """Cores that get channels (the others idle)."""
    return -(-c // chunk(c, n, lanes))


def parallelism(c: int, n: int, lanes: int) -> float:
    """How many cores' worth of work the split gives: c / chunk (>= 1 core's
    share when c is smaller than one lane group)."""
    return max(1.0, c / chunk(c, n, lanes))


def _interp_loglog(x: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Log-log interpolation of ys (rows: points xs) at x; beyond the ends
    the end segment's slope, clamped to [0, 1.5]."""
    lx = math.log(max(x, 1e-12))
    lxs = np.log(xs)
    lys = np.log(np.maximum(ys, 1e-9))
    if len(xs) == 1:
        return ys[0]
    if lx <= lxs[0]:
        i = 0
    elif lx >= lxs[-1]:
        i = len(xs) - 2
    else:
        i = int(np.searchsorted(lxs, lx) - 1)
    t = (lx - lxs[i]) / (lxs[i + 1] - lxs[i]) if lxs[i + 1] > lxs[i] else 0.0
    slope = (lys[i + 1] - lys[i]) / max(lxs[i + 1] - lxs[i], 1e-12)
    if t < 0 or t > 1:
        slope = np.clip(slope, 0.0, 1.5)
        base = lys[i] if t < 0 else lys[i + 1]
        ref = lxs[i] if t < 0 else lxs[i + 1]
        return np.exp(base + slope * (lx - ref))
    return np.exp(lys[i] * (1 - t) + lys[i + 1] * t)


def _bracket(v: float, values: Sequence[int]) -> tuple[int, int, float]:
    """The grid values around v and v's position between them (log scale);
    clamped at the ends."""
    if v <= values[0]:
        return values[0], values[0], 0.0
    if v >= values[-1]:
        return values[-1], values[-1], 0.0
    hi = next(x for x in values if x >= v)
    lo = max(x for x in values if x <= v)
    if hi == lo:
        return lo, hi, 0.0
    return lo, hi, (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Geometric interpolation between two latency curves."""
    if t <= 0.0:
        return a
    if t >= 1.0:
        return b
    return np.exp(np.log(a) * (1 - t) + np.log(b) * t)


def _at_cores(curve: np.ndarray, cores: np.ndarray, p: float) -> float:
    """A curve at a (fractional) core number p: log-log between the table's
    core numbers."""
    if len(cores) == 1:
        return float(curve[0])
    return float(np.exp(np.interp(math.log(max(p, 1.0)), np.log(cores.astype(float)),
                                  np.log(np.maximum(curve, 1e-9)))))


def spatial_work(kind: str, ops: float, cin: int, cout: int) -> float:
    """The grid's third axis: the operation count per channel pair of a dense
    layer (output side^2 x kernel area; a fully-connected layer's rows), per
    channel of a vector layer (side^2, x window area for pooling)."""
    if kind in DENSE_KINDS:
        return max(1.0, ops / max(1, cin * cout))
    return max(1.0, ops / max(1, cout))


@dataclass
class LayerTerms:
    """What the group model needs of one layer, per table core number: its
    latency as a kernel of its own; its work (the busiest core's time past
    its dispatch) split as alone (`solo`, on `busy` cores) and split by
    channels only (`chip`, on `pc` cores)."""

    curve: np.ndarray
    solo: np.ndarray
    chip: np.ndarray
    busy: np.ndarray
    pc: np.ndarray
    kernel: bool


@dataclass
class GroupView:
    """A candidate group as the model sees it: its layers' figures and terms
    (in program order) and, per layer, which earlier layers of the group it
    reads (`preds`, local indices), how many layers of the group read it
    (`uses`), and whether something outside the group (or the program's
    return) reads it (`external`)."""

    infos: Sequence[LayerInfo]
    terms: Sequence[LayerTerms]
    preds: Sequence[Sequence[int]]
    uses: Sequence[int]
    external: Sequence[bool]
    sources: Sequence[Sequence[tuple[object, float]]] = ()

    @staticmethod
    def of(graph: LayerGraph, infos: Sequence[LayerInfo], terms: Sequence[LayerTerms], ids: Sequence[int]) -> GroupView:
        """`sources`: per layer, the maps it reads from outside the group, as
        (producing layer or "input", bytes): layers of a group that read the
        same map load it once."""
        ids = list(ids)
        local = {i: k for k, i in enumerate(ids)}
        sources = []
        for i in ids:
            outer = [(p, float(infos[p].ofm)) for p in sorted(graph.preds[i]) if p not in local]
            rest = infos[i].ifm - sum(infos[p].ofm for p in graph.preds[i])
            if rest > 0:
                outer.append(("input", float(rest)))
            sources.append(outer)
        return GroupView(
            [infos[i] for i in ids],
            [terms[i] for i in ids],
            [sorted(local[p] for p in graph.preds[i] if p in local) for i in ids],
            [sum(1 for s in graph.succs[i] if s in local) for i in ids],
            [not graph.succs[i] or any(s not in local for s in graph.succs[i]) for i in ids],
            sources,
        )

    @staticmethod
    def chain(infos: Sequence[LayerInfo], terms: Sequence[LayerTerms]) -> GroupView:
        """A chain: each layer reads the previous one (and, for a binary
        element-wise layer, a map from outside); the last is the output."""
        k = len(infos)
        sources = [[((i, "x"), float(infos[i].ifm - (infos[i - 1].ofm if i else 0)))]
                   if infos[i].ifm - (infos[i - 1].ofm if i else 0) > 0 else [] for i in range(k)]
        return GroupView(infos, terms, [[i - 1] if i else [] for i in range(k)],
                         [1] * (k - 1) + [0], [False] * (k - 1) + [True], sources)

    @property
    def internal(self) -> list[bool]:
        return [u > 0 for u in self.uses]

    def dense_readers(self) -> list[bool]:
        """Per layer: read inside the group by a layer that needs every channel."""
        out = [False] * len(self.infos)
        for i, ps in enumerate(self.preds):
            if self.infos[i].kind in DENSE_KINDS:
                for p in ps:
                    out[p] = True
        return out


class Characterization:
    """A target's characterization table as a latency model.

    Per layer: the table's records of the layer's class form lines over
    (input channels, output channels) — one line per pair, points along the
    spatial work (see `spatial_work`) — and a layer's latency curve is
    interpolated log-log along its line and between the lines around its
    channels. Per group: see `group_curve`."""

    def __init__(self, table: dict):
        self.table = table
        m = table["machine"]
        self.cores = np.array(table["cores"], dtype=int)
        self.mac_lanes = int(m["mac_lanes"])
        self.mac_lanes_in = int(m.get("mac_lanes_in", m["mac_lanes"]))
        self.vector_lanes = int(m["vector_lanes"])
        self.nram = float(m["nram_bytes"])
        self.wram = float(m["wram_bytes"])
        self.eb = int(m["element_bytes"])
        self._chunk_cache: dict[tuple[int, int], np.ndarray] = {}
        from dlfusion.tuning.characterize import CLASSES

        # the kernel floor: no kernel on n cores finishes before its last
        # core is dispatched (launch + dispatches), the table's lower envelope
        lat = np.array([r["latency_us"] for r in table["layers"]], float)
        self.floor = lat.min(axis=0) if len(lat) else np.zeros(len(self.cores))
        # launch and per-core dispatch, from the floor's slope at the most cores
        # (where the last core's dispatch hides the smallest layers' work)
        if len(self.cores) >= 2 and self.cores[-1] > self.cores[-2]:
            self.dispatch = max(0.0, float(self.floor[-1] - self.floor[-2]) / float(self.cores[-1] - self.cores[-2]))
        else:
            self.dispatch = 0.0
        self.launch = max(0.0, float(self.floor[-1]) - (int(self.cores[-1]) - 1) * self.dispatch)
        self.base = self.launch + (self.cores - 1) * self.dispatch
        # the DRAM's bandwidth (bytes/us), from the table too: the fastest any
        # layer moved its bytes past the launch (the large element-wise
        # layers, which only stream)
        moved = np.array([r["ifm_bytes"] + r["ofm_bytes"] + r["weight_bytes"] for r in table["layers"]], float)
        self.dram_bw = float((moved[:, None] / np.maximum(lat - self.launch, 1e-3)).max()) if len(lat) else np.inf
        # class -> (cin, cout) -> (spatial work, latency rows, work rows, busy rows)
        self.grid: dict[str, dict[tuple[int, int], tuple[np.ndarray, ...]]] = {}
        by: dict[str, dict[tuple[int, int], list]] = {}
        for r in table["layers"]:
            kind = CLASSES[r["class"]][0]
            key = (int(r["cin"]), int(r["cout"])) if kind in DENSE_KINDS else (int(r["cout"]), int(r["cout"]))
            by.setdefault(r["class"], {}).setdefault(key, []).append(r)
        for cls, lines in by.items():
            kind = CLASSES[cls][0]
            self.grid[cls] = {}
            for key, recs in lines.items():
                xs = [spatial_work(kind, r["ops"], r["cin"], r["cout"]) for r in recs]
                order = np.argsort(xs, kind="stable")
                x = np.array(xs, float)[order]
                lat = np.array([recs[i]["latency_us"] for i in order], dtype=float)
                busy = np.array([recs[i].get("active") or list(self.cores) for i in order], dtype=float)
                work = self._work(lat, busy)
                keep = np.concatenate([[True], np.diff(x) > 0])  # one point per spatial work
                self.grid[cls][key] = (x[keep], lat[keep], work[keep], np.maximum(busy[keep], 1.0))
        self.classes = list(self.grid)
        # the deepest chain the table measured spilled (set by the fit):
        # deeper spilled groups would be extrapolation
        self.max_spilled_depth = 1
        self.coef_chip, self.coef_spill = self._fit_groups()

    def _work(self, lat: np.ndarray, busy: np.ndarray) -> np.ndarray:
        """The busiest core's time past its dispatch, per record and core
        number: latency - launch - (busy - 1) x dispatch. Where the latency
        is the kernel floor (the last core's dispatch ends after the work)
        that is only a bound; the work is then taken from the next smaller
        core number, scaled by the busy cores (work splits over them)."""
        work = np.maximum(lat - self.launch - (busy - 1) * self.dispatch, 1e-3)
        hidden = lat <= self.base + 1e-3
        for j in range(1, work.shape[1]):
            scaled = work[:, j - 1] * busy[:, j - 1] / np.maximum(busy[:, j], 1.0)
            work[:, j] = np.where(hidden[:, j], np.minimum(work[:, j], scaled), work[:, j])
        return work

    def _chunks(self, c: int, lanes: int) -> np.ndarray:
        """Channels per core of a c-channel split, at every table core number."""
        key = (c, lanes)
        got = self._chunk_cache.get(key)
        if got is None:
            got = self._chunk_cache[key] = np.array([chunk(c, int(x), lanes) for x in self.cores], float)
        return got

    def _share(self, c: int, lanes: int) -> np.ndarray:
        """The fraction of a c-channel map one core holds, per core number."""
        return np.minimum(self._chunks(c, lanes) / c, 1.0)

    def lanes(self, kind: str) -> int:
        return self.mac_lanes if kind in MAC_KINDS else self.vector_lanes

    def _class_kind(self, cls: str) -> str:
        from dlfusion.tuning.characterize import CLASSES

        return CLASSES[cls][0] if cls in CLASSES else "eltwise"

    # -- per-layer curves ------------------------------------------------
    def _line(self, cls: str, key: tuple[int, int], x: float, field: int) -> np.ndarray:
        line = self.grid[cls][key]
        return _interp_loglog(x, line[0], line[field])

    def _read(self, info: LayerInfo, field: int) -> np.ndarray | None:
        """One of the table's per-core-number figures (1: latency, 2: work,
        3: busy cores) of the layer, interpolated; None for a view."""
        cls = table_class(info, self.classes)
        if cls is None:
            return None
        kind = self._class_kind(cls)
        lines = self.grid[cls]
        x = spatial_work(kind, info.ops, info.cin, info.cout)
        cout = max(1, info.cout)
        if kind not in DENSE_KINDS:
            chans = sorted({c for c, _ in lines})
            lo, hi, t = _bracket(cout, chans)
            return _mix(self._line(cls, (lo, lo), x, field), self._line(cls, (hi, hi), x, field), t)
        cins = sorted({ci for ci, _ in lines})
        cin = max(1, info.cin)
        c_lo, c_hi, tc = _bracket(cin, cins)
        # past the grid's largest channels, the extra channels move to the
        # spatial axis: the same operations, weight bytes and map bytes
        x *= max(1.0, cin / cins[-1])

        def at_cin(ci: int) -> np.ndarray:
            couts = sorted(co for cj, co in lines if cj == ci)
            lo, hi, t = _bracket(cout, couts)
            xo = x * max(1.0, cout / couts[-1])
            return _mix(self._line(cls, (ci, lo), xo, field), self._line(cls, (ci, hi), xo, field), t)

        a = at_cin(c_lo)
        return a if c_hi == c_lo else _mix(a, at_cin(c_hi), tc)

    def curve(self, info: LayerInfo) -> np.ndarray:
        """Predicted latency (us) of the layer as a kernel of its own, at each
        table core number."""
        c = self._read(info, 1)
        return np.zeros(len(self.cores)) if c is None else c

    def terms(self, info: LayerInfo) -> LayerTerms:
        """A layer's curve and its work per core number: the latency past the
        launch and the dispatch of its last busy core (busy: the cores the
        lowering gave work, recorded in the table). Standalone (alone, or in
        a spilled group) a layer splits channels x rows as it would alone; on
        chip in a group, channels only: its work there is read at its
        channel groups `Pc(n)`, where no row split happens."""
        curve = self._read(info, 1)
        n_cores = len(self.cores)
        if curve is None:
            z = np.zeros(n_cores)
            return LayerTerms(z, z, z, z, z, False)
        work = self._read(info, 2)
        busy = np.clip(self._read(info, 3), 1.0, self.cores.astype(float))
        lanes = self.lanes(info.kind)
        pc = np.array([active(max(1, info.cout), int(n), lanes) for n in self.cores], float)
        chip = np.array([_at_cores(work, self.cores, p) for p in pc])
        return LayerTerms(curve, work, chip, busy, pc, True)

    # -- groups ------------------------------------------------------------
    def working_set(self, g: GroupView) -> tuple[np.ndarray, np.ndarray]:
        """Per-core NRAM and WRAM bytes (at every core number) of the group
        kept on chip, buffer by buffer as `lower-to-accel` allocates them for
        a fused group (every buffer lives for the whole kernel):

        - a layer's output: its channel range (a convolution or matrix
          product splits channels in MAC lanes, a vector layer in vector
          lanes or as the layer it reads); an element-wise layer writes in
          place over its first operand when that operand is loaded for it or
          read by nobody else;
        - an input from outside: the whole map (with its padding) for a
          layer that needs every channel, else its channel range;
        - an input from inside: for a windowed layer, a padded copy of the
          producer's range; for a layer that needs every channel, the
          gathered whole map (and, in WRAM, the selection matrix that places
          each core's range);
        - weights and bias: the output channel range's.

        An element-wise layer whose operands from inside the group are split
        differently (a convolution's MAC-lane ranges against a vector
        layer's) cannot be kept on chip: the working set is infinite there.
        A padded copy and a gathered map are made once per map and padding,
        however many layers read them."""
        n = self.cores
        nn_ = len(n)
        ws = np.zeros(nn_)
        wt = np.zeros(nn_)
        chunk_of: list[np.ndarray] = []  # channels per core of each layer's output
        share_of: list[np.ndarray] = []
        loaded: set = set()
        copies: set = set()
        for i, info in enumerate(g.infos):
            if info.kind == "data" and info.ops == 0:  # a view: the producer's buffer
                p = g.preds[i][0] if g.preds[i] else None
                chunk_of.append(chunk_of[p] if p is not None else np.full(nn_, float(max(1, info.cout))))
                share_of.append(share_of[p] if p is not None else np.ones(nn_))
                continue
            dense = info.kind in DENSE_KINDS
            c = max(1, info.cout)
            if info.kind in MAC_KINDS or not g.preds[i]:
                chunks = self._chunks(c, self.lanes(info.kind))
                share = self._share(c, self.lanes(info.kind))
            else:
                chunks, share = chunk_of[g.preds[i][0]], share_of[g.preds[i][0]]
                if info.kind == "eltwise":
                    for p in g.preds[i][1:]:
                        ws = np.where(chunk_of[p] != chunks, np.inf, ws)
            chunk_of.append(chunks)
            share_of.append(share)
            in_hw = info.ifm / max(1, info.cin * self.eb * info.inputs)
            side = math.sqrt(max(in_hw, 1.0))
            pad = info.padding() if any(info.padding()) else None
            grow = info.grow(side)
            inner = sum(g.infos[p].ofm for p in g.preds[i])
            sources = g.sources[i] if g.sources else [(("own", i), max(0.0, info.ifm - inner))]
            if dense:
                for key, size in sources:  # loaded whole, once per map and padding
                    if (key, pad) not in loaded:
                        loaded.add((key, pad))
                        ws += size * grow
                if inner:
                    p = g.preds[i][0]
                    if pad and ("pad", p, pad) not in copies:
                        copies.add(("pad", p, pad))
                        ws += inner * grow * np.minimum(share_of[p], 1.0)
                    if ("gather", p, pad) not in copies:
                        copies.add(("gather", p, pad))
                        ws += inner * grow
                        # the selection matrix: every channel x the producer's range
                        wt += float(max(1, g.infos[p].cout)) * chunk_of[p] * self.eb
            else:
                ws += sum(size for _, size in sources) * grow * share
                if inner and pad and ("pad", g.preds[i][0], pad) not in copies:
                    copies.add(("pad", g.preds[i][0], pad))
                    ws += inner * grow * share
            in_place = (info.kind == "eltwise" or info.op == "nn.batch_norm") and (
                not g.preds[i] or g.uses[g.preds[i][0]] <= 1)
            if not in_place:
                ws += info.ofm * share
            wt += info.wbytes * share
        return ws, wt

    def fits(self, g: GroupView) -> np.ndarray:
        """Whether the group is kept on chip at each core number: every
        layer is one the lowering fuses on chip, and the working set fits."""
        if not all(on_chip_capable(i) for i in g.infos):
            return np.zeros(len(self.cores), bool)
        ws, wt = self.working_set(g)
        return (ws <= self.nram) & (wt <= self.wram)

    def _features(self, g: GroupView):
        """(fits, on-chip base, spilled base, on-chip features, spilled
        features), per core number.

        The base follows the kernel's time line: the launch; then the cores
        run the layers up to the first synchronization without waiting for
        each other, so that stretch ends with the later of the last core's
        dispatch and the busiest core's dispatch plus its work; after a
        synchronization (all cores), every layer's work adds up. On chip, a
        layer synchronizes when it needs every channel of a map computed in
        the group (the exchange); spilled, every layer that reads a map the
        group wrote to DRAM waits at a barrier."""
        n = self.cores.astype(float)
        zero = np.zeros(len(n))
        idx = [i for i, t in enumerate(g.terms) if t.kernel]
        m = max(0, len(idx) - 1)
        dense_in = [bool(g.preds[i]) and g.infos[i].kind in DENSE_KINDS for i in range(len(g.infos))]
        reads_in = [bool(g.preds[i]) for i in range(len(g.infos))]

        def timeline(work_of, busy_of, syncs, moved) -> tuple[np.ndarray, int]:
            first, rest, busy, synced, count = zero.copy(), zero.copy(), np.ones(len(n)), False, 0
            for i in idx:
                if syncs[i]:
                    synced, count = True, count + 1
                if synced:  # all cores start together: no dispatch hides the DRAM time
                    rest = rest + np.maximum(work_of(g.terms[i]), moved[i] / self.dram_bw)
                else:
                    first = first + work_of(g.terms[i])
                    busy = np.maximum(busy, busy_of(g.terms[i]))
            start = np.maximum((n - 1) * self.dispatch, (busy - 1) * self.dispatch + first)
            return self.launch + start + rest, count

        # DRAM bytes per layer (per core number): on chip, its weights, the
        # maps it loads from outside (whole, by each of its busy cores, for a
        # layer that needs every channel) and what it stores for outside;
        # spilled, all it reads and writes
        on_moved = []
        for i, info in enumerate(g.infos):
            outside = sum(size for _, size in (g.sources[i] if g.sources else ()))
            per = g.terms[i].pc if info.kind in DENSE_KINDS and g.terms[i].kernel else 1.0
            on_moved.append(float(info.wbytes) + outside * per + (float(info.ofm) if g.external[i] else 0.0))
        off_moved = [float(info.wbytes + info.ifm + info.ofm) * np.ones(len(n)) for info in g.infos]
        on_base, exchanges = timeline(lambda t: t.chip, lambda t: t.pc, dense_in, on_moved)
        off_base, barriers = timeline(lambda t: t.solo, lambda t: t.busy, reads_in, off_moved)
        # and no kernel streams its bytes faster than the DRAM allows
        on_base = np.maximum(on_base, self.launch + sum(on_moved[i] for i in idx) / self.dram_bw)
        off_base = np.maximum(off_base, self.launch + sum(off_moved[i] for i in idx) / self.dram_bw)
        saved = sum(i.ofm * (1 if ext else 2) for i, x, ext in zip(g.infos, g.internal, g.external) if x)
        xch = sum(i.ofm for i, x in zip(g.infos, g.dense_readers()) if x)
        fits = self.fits(g)
        reread, tiles, slower = self._sharing(g, idx)
        pad_steps, select_cycles = self._on_chip_copies(g)
        on_chip = np.array([
            np.full(len(n), saved / 1e3),        # DRAM round trips saved (KB)
            pad_steps / 1e3,                     # padded copies on the vector unit (k steps)
            select_cycles / 1e3,                 # gathers: selection products on the MAC array (k cycles)
            np.full(len(n), float(exchanges)),   # an exchange's barrier ...
            exchanges * n,                       # ... over all the group's cores
            xch / 1e3 * (1.0 - 1.0 / n),         # exchanged to dense consumers (KB) ...
            xch / 1e3 * n,                       # ... all-gathered by every core (KB x cores)
            np.full(len(n), float(m)),           # whatever else a merge costs or saves
            *np.eye(len(n)),                     # what the time line misses at each core number
        ])
        spilled = np.array([
            np.full(len(n), float(barriers)),    # a barrier ...
            barriers * n,                        # ... over all the group's cores
            reread / 1e3,                        # shared WRAM: inputs re-read per weight block (KB)
            tiles,                               # shared NRAM: more, smaller tiles ...
            slower,                              # ... each layer's work the slower (us)
            np.full(len(n), float(m)),           # whatever else a merge costs or saves
            *np.eye(len(n)),                     # what the time line misses at each core number
        ])
        return fits, on_base, off_base, on_chip, spilled

    def _on_chip_copies(self, g: GroupView) -> tuple[np.ndarray, np.ndarray]:
        """Per core number, the busiest core's share of the copies a group
        kept on chip makes: a windowed layer reading a map of the group pads
        it into a new buffer (vector steps: elements / vector lanes), and a
        layer that needs every channel of such a map gathers it (a selection
        product on the MAC array: the whole map's positions x its channels
        over the output lanes x the core's channels over the input lanes)."""
        n = self.cores
        pad_steps = np.zeros(len(n))
        select = np.zeros(len(n))
        for i, info in enumerate(g.infos):
            if not g.preds[i] or not g.terms[i].kernel:
                continue
            p = g.preds[i][0]
            src = g.infos[p]
            c = max(1, src.cout)
            elems = src.ofm / self.eb
            if any(info.padding()):
                grow = info.grow(math.sqrt(max(src.hw, 1)))
                pad_steps += elems * grow * self._share(c, self.lanes(src.kind)) / self.vector_lanes
            if info.kind in DENSE_KINDS:
                positions = max(1.0, elems / c)
                select += positions * math.ceil(c / self.mac_lanes) * np.ceil(
                    self._chunks(c, self.lanes(src.kind)) / self.mac_lanes_in)
        return pad_steps, select

    def _sharing(self, g: GroupView, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What a spilled group pays for sharing the memories: every layer
        gets a share of NRAM and WRAM in proportion to its need, so a layer
        whose weights fitted alone is cut into more weight blocks (each
        re-reading its input: the extra input bytes), and its maps into more
        tiles (the extra tiles, summed over the layers)."""
        n = self.cores
        need_n, need_w, dense_in = [], [], []
        for i in idx:
            info = g.infos[i]
            c = max(1, info.cout)
            share = self._share(c, self.lanes(info.kind))
            dense = info.kind in DENSE_KINDS
            need_n.append(info.ofm * share + (info.ifm if dense else info.ifm * share))
            need_w.append(info.wbytes * share)
            dense_in.append(info.ifm if dense else 0.0)
        total_n = sum(need_n, np.zeros(len(n)))
        total_w = sum(need_w, np.zeros(len(n)))
        reread = np.zeros(len(n))
        tiles = np.zeros(len(n))
        slower = np.zeros(len(n))
        for i, nn_, ww, x in zip(idx, need_n, need_w, dense_in):
            blocks = np.maximum(1.0, total_w / self.wram) / np.maximum(1.0, ww / self.wram)
            reread += x * (np.maximum(blocks, 1.0) - 1.0)
            more = np.maximum(np.maximum(1.0, total_n / self.nram) / np.maximum(1.0, nn_ / self.nram), 1.0) - 1.0
            tiles += more
            slower += g.terms[i].solo * np.log2(1.0 + more)
        return reread, tiles, slower

    def group_curve(self, g: GroupView) -> np.ndarray:
        """Predicted latency of a group as one kernel, at each table core
        number. A kernel pays the floor (launch, dispatch) once; each layer
        adds its work above the floor — on chip, the work at the cores its
        channels keep busy (channels are the only split there), spilled, its
        own work — and the group's mechanics add or save, with coefficients
        fitted to the table's chains: DRAM round trips of intermediates kept
        on chip, a barrier per merge growing with the cores, exchanges to
        layers that need every channel, smaller tiles when spilled. A spilled
        group deeper than the deepest chain the table measured spilled is not
        characterized: infinite."""
        if sum(1 for t in g.terms if t.kernel) <= 1:
            return sum((t.curve for t in g.terms), np.zeros(len(self.cores)))
        fits, on_base, off_base, on_f, off_f = self._features(g)
        on = on_base + self.coef_chip @ on_f
        off = off_base + self.coef_spill @ off_f
        if kernels(g.infos) > self.max_spilled_depth:
            off = np.full(len(self.cores), np.inf)
        return np.maximum(np.where(fits, on, off), self.floor)

    def _fit_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """Least squares, relative to the measured fused latency, of what the
        floor plus the layers' work leaves unexplained in the table's chains,
        on chip and spilled separately."""
        rows = {True: [], False: []}
        for ch in self.table.get("chains", []):
            infos = [self._info_of_record(r) for r in ch["layers"]]
            k = len(infos)
            g = GroupView.chain(infos, [self.terms(i) for i in infos])
            fits, on_base, off_base, on_f, off_f = self._features(g)
            fused = np.array(ch["fused_us"], float)
            for j in range(len(self.cores)):
                w = 1.0 / max(fused[j], 1e-6)
                if fits[j]:
                    rows[True].append((on_f[:, j] * w, (fused[j] - on_base[j]) * w))
                else:
                    rows[False].append((off_f[:, j] * w, (fused[j] - off_base[j]) * w))
                    self.max_spilled_depth = max(self.max_spilled_depth, kernels(infos))

        def solve(items, signs):
            """Least squares with the signs the mechanics fix (a saved DRAM
            round trip is a gain; a barrier, an exchange, a re-read or a tile
            a cost): a coefficient the data would give the other sign is
            dropped and the rest refitted."""
            signs = np.array(signs)
            coef = np.zeros(len(signs))
            if not items:
                return coef
            X = np.array([r for r, _ in items])
            y = np.array([v for _, v in items])
            keep = np.ones(len(signs), bool)
            while keep.any():
                Xk = X[:, keep]
                ridge = 1e-6 * max(1.0, float(np.trace(Xk.T @ Xk)) / Xk.shape[1])
                coef = np.zeros(len(signs))
                coef[keep] = np.linalg.solve(Xk.T @ Xk + ridge * np.eye(Xk.shape[1]), Xk.T @ y)
                wrong = keep & (signs * coef < 0)
                if not wrong.any():
                    break
                keep &= ~wrong
            return coef

        k = len(self.cores)
        return solve(rows[True], [-1, 1, 1, 1, 1, 1, 1, 1] + [0] * k), solve(rows[False], [1, 1, 1, 1, 1, 0] + [0] * k)

    def _info_of_record(self, r: dict) -> LayerInfo:
        from dlfusion.tuning.characterize import CLASSES, pad_of

        kind = CLASSES[r["class"]][0]
        info = LayerInfo(kind, float(r["ops"]), int(r["cin"]), int(r["cout"]), int(r["hw"]),
                         int(r["ifm_bytes"]), int(r["ofm_bytes"]), int(r["weight_bytes"]))
        info.kernel = float(r["kernel"]) or 1.0
        if r.get("kernel_hw"):
            info.window = (int(r["kernel_hw"][0]), int(r["kernel_hw"][1]))
        info.stride = float(r["stride"])
        info.inputs = 2 if r["class"] in ("add", "concat") else 1
        info.op = {"BatchNormalization": "nn.batch_norm", "Concat": "nn.concat",
                   "AveragePool": "nn.avg_pool", "MaxPool": "nn.max_pool"}.get(CLASSES[r["class"]][3], "")
        if kind in ("conv", "depthwise", "pool"):  # as synthesized
            ph, pw = pad_of(r["class"])
            info.pads = (float(ph), float(pw), float(ph), float(pw))
        return info


# -------------------------------------------------------------------------
# the table of a target
# -------------------------------------------------------------------------

_MODELS: dict[tuple[str, float], Characterization] = {}


def characterization_for(sctx: StrategyContext) -> Characterization:
    """The target's table: `options["table"]` (a dict or a path), else the
    cached table of the target (characterize.table_path), else an error that
    says how to make it."""
    from dlfusion.tuning import characterize as chz

    opt = sctx.options.get("table")
    if isinstance(opt, dict):
        key = (f"dict:{id(opt)}", 0.0)
        if key not in _MODELS:
            _MODELS[key] = Characterization(chz.check_table(opt, "<table>"))
        return _MODELS[key]
    if opt:
        path = Path(str(opt))
    else:
        path = chz.find_table(sctx.target, sctx.options.get("cache_dir"))
        if path is None:
            raise DlfusionError(
                f"no characterization table for target '{sctx.target.name}' "
                f"(looked in {chz.default_cache_dir() if not sctx.options.get('cache_dir') else sctx.options['cache_dir']} "
                f"and in the tables shipped with dlfusion)",
                hint=f"run dlfusion-characterize --target {sctx.target.name} first",
            )
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    key = (str(path), mtime)
    if key not in _MODELS:
        doc = chz.load_table(path)
        if not chz.is_current(doc, sctx.target):
            what = ("another version of target '%s' (digest %s, the target file is %s)"
                    % (doc["target"], doc["target_digest"], sctx.target.digest)
                    if doc["target_digest"] != sctx.target.digest
                    else "another version of the lowering or the simulator (cost model %s)" % doc.get("cost_model"))
            raise DlfusionError(
                f"the characterization table was measured for {what}",
                where=str(path),
                hint=f"run dlfusion-characterize --target {sctx.target.name} again",
            )
        _MODELS[key] = Characterization(doc)
    return _MODELS[key]


# -------------------------------------------------------------------------
# planning
# -------------------------------------------------------------------------


@dataclass
class HeuristicPlan:
    groups: list[tuple[list[int], int]]  # (layer indices in program order, core number)
    predicted_us: float
    stats: dict = field(default_factory=dict)


class PredictedCosts:
    """The predicted best core number and latency of sets of layers (bit
    masks), memoized: the `dp` search's cost oracle, answered by the model
    instead of the simulator."""

    def __init__(self, graph: LayerGraph, model: Characterization, element_bytes: int,
                 choices: Sequence[int] | None):
        self.graph = graph
        self.model = model
        self.infos = layer_infos(graph, element_bytes)
        self.terms = [model.terms(i) for i in self.infos]
        self.allowed = np.array([choices is None or int(c) in choices for c in model.cores])
        if not self.allowed.any():
            raise DlfusionError(
                f"none of the core choices {sorted(choices or [])} was characterized "
                f"(the table has {[int(c) for c in model.cores]})",
                hint="characterize the target with those core numbers",
            )
        self._best: dict[int, tuple[int, float]] = {}

    def best(self, mask: int) -> tuple[int, float]:
        got = self._best.get(mask)
        if got is None:
            got = self._best[mask] = self._predict(mask)
        return got

    def _predict(self, mask: int) -> tuple[int, float]:
        from dlfusion.tuning.search import _bits

        ids = _bits(mask)
        view = GroupView.of(self.graph, self.infos, self.terms, ids)
        total = np.where(self.allowed, self.model.group_curve(view), np.inf)
        j = int(np.argmin(total + 1e-9 * np.arange(len(total))))  # ties: fewer cores
        return int(self.model.cores[j]), float(total[j])


def plan_layers(graph: LayerGraph, model: Characterization, element_bytes: int,
                max_group: int = MAX_GROUP, choices: Sequence[int] | None = None,
                max_groups: int = DP_MAX_GROUPS) -> HeuristicPlan:
    """The plan of least predicted latency: the `dp` search's recursion over
    the same groupings (ideals of the graph: every valid partition into
    groups of at most `max_group` layers; segments of the program order when
    the graph has more than `max_groups` candidate groups), every group's
    cost predicted instead of measured, each on its predicted best core
    number."""
    from dlfusion.tuning.search import IdealSpace, OrderSpace, _bits, explore, solve

    costs = PredictedCosts(graph, model, element_bytes, choices)
    if not len(graph):
        return HeuristicPlan([], 0.0, {"space": "ideals", "groups": 0})
    space = IdealSpace(graph, max_group)
    sg = explore(space, max_groups)
    if sg is None:
        space = OrderSpace(graph, max_group)
        sg = explore(space)
    assert sg is not None
    total, masks = solve(sg, costs, space.full)
    groups = [(_bits(m), costs.best(m)[0]) for m in masks]
    return HeuristicPlan(groups, total, {"space": space.name, "groups": len(sg.groups)})


def _plan(graph: LayerGraph, sctx: StrategyContext, one_core: bool) -> list[Group]:
    model = characterization_for(sctx)
    max_group = int(sctx.options.get("max_group", MAX_GROUP))
    max_groups = int(sctx.options.get("dp_max_groups", DP_MAX_GROUPS))
    plan = plan_layers(graph, model, sctx.target.element_bytes, max_group, set(sctx.core_choices()), max_groups)
    if isinstance(getattr(sctx, "stats", None), dict):
        sctx.stats["predicted_us"] = round(plan.predicted_us, 3)
        sctx.stats.update(plan.stats)
    return [Group([graph.names[i] for i in ids], 1 if one_core else cores) for ids, cores in plan.groups]


@register("dlfusion")
def dlfusion_strategy(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """Joint fusion and core-number heuristic from the characterization
    table (no measurement)."""
    return _plan(graph, sctx, one_core=False)


@register("fusion-only")
def fusion_only(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """The dlfusion heuristic's groups, every one on 1 core."""
    return _plan(graph, sctx, one_core=True)
