"""The joint fusion / core-number heuristic (`strategy=dlfusion`).

It plans from two things only: each layer's characteristics (the
`annotate-layers` figures: kind, operation count, channel sizes, bytes) and
the target's characterization table (`dlfusion.tuning.characterize`), plus
the capacities and lane counts of the target file. It never measures: no
simulator call at plan time. The rule (docs/heuristic.md has the equations
and why each step follows from the characterization):

1. **A layer's latency curve** `T_i(n)` over core numbers `n` is read from the
   table: the synthesized layers of its class (convolution by kernel size and
   stride, depthwise, fully-connected, pooling, global pooling, unary or
   binary element-wise) form a grid over operation count x channel size; the
   curve is interpolated log-log along the operation count (taken as the MAC
   array spends it: input channels padded to whole lanes) and along the
   channel size, at the same core number.
2. **The gain of fusing** a group `G` on `n` cores is a linear function of
   the group's merges, core number, on-chip working set (against the NRAM
   of the target) and intermediate bytes, with coefficients fitted, per
   target, to the table's fused-versus-unfused chains (least squares, in
   relative terms). The predicted latency of the group is
   `F(G, n) = sum_i T_i(n) - gain(G, n)`.
3. **Groups and core numbers** minimize the predicted latency: the layers are
   taken in topological order (contiguous runs of it are convex) and split
   into runs by dynamic programming over `F`, each run on its predicted best
   core number. No measurement: 0.1-2.6 s of array arithmetic per zoo
   model in Python, against minutes for `dp`.

`fusion-only` is the same groups on one core each.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group, LayerGraph
from dlfusion.tuning.strategies import StrategyContext, register

DENSE_KINDS = ("conv", "gemm", "matmul")  # consumers that read every input channel
MAC_KINDS = ("conv", "depthwise", "gemm", "matmul")  # channels split in MAC lanes
MAX_GROUP = 8  # the longest run the planner considers (dp's default too)


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
        if kind == "eltwise" and ofm:
            info.inputs = max(1, round(ifm / ofm))
        return info


def kernels(infos: Sequence[LayerInfo]) -> int:
    """Layers that are work of their own (a reshape is a view, no kernel)."""
    return sum(1 for i in infos if i.ops > 0 or i.kind != "data")


def layer_infos(graph: LayerGraph, element_bytes: int) -> list[LayerInfo]:
    """Characteristics of every layer: the `nn.*` attributes when
    annotate-layers has run, else computed the same way."""
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
        out.append(LayerInfo.of(ch, element_bytes))
    return out


def table_class(info: LayerInfo, classes: Sequence[str]) -> str | None:
    """The characterized class a layer is read from (None: no kernel)."""
    k = info.kind

    def pick(prefs: list[str]) -> str | None:
        for p in prefs:
            if p in classes:
                return p
        return None

    if k == "conv":
        conv = [c for c in classes if c.startswith("conv")]
        if not conv:
            return pick(["relu"])

        def dist(c: str) -> tuple[float, float]:
            kk = int(c[4 : c.index("x")])
            ss = int(c[c.index("s") + 1 :])
            return (abs(math.log(info.kernel / kk)), abs(math.log(info.stride / ss)))

        return min(conv, key=dist)
    if k == "depthwise":
        return pick(["dw3x3s2", "dw3x3s1"] if info.stride > 1.4 else ["dw3x3s1", "dw3x3s2"]) or pick(["relu"])
    if k in ("gemm", "matmul"):
        return pick(["fc", "conv1x1s1"])
    if k == "pool":
        if info.hw == 1:
            return pick(["gap", "maxpool3x3s2", "relu"])
        return pick(["maxpool3x3s2", "relu"])
    if k == "data" and info.ops == 0:
        return None  # a view (reshape, flatten): no kernel
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
    lx = math.log(x)
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


class Characterization:
    """A target's characterization table as a latency model."""

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
        # class -> channel -> (ops array, latency rows)
        self.grid: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        from dlfusion.tuning.characterize import CLASSES

        by: dict[str, dict[int, list]] = {}
        for r in table["layers"]:
            by.setdefault(r["class"], {}).setdefault(int(r["cout"]), []).append(r)
        for cls, chans in by.items():
            self.grid[cls] = {}
            for c, recs in chans.items():
                recs.sort(key=lambda r: r["ops"])
                ops = np.array([self.eff_ops(CLASSES[cls][0], r["ops"], r["cin"]) for r in recs])
                lat = np.array([r["latency_us"] for r in recs], dtype=float)
                self.grid[cls][c] = (ops, lat)
        self.classes = list(self.grid)
        self.coef = self._fit_fusion()
        # the deepest chain the table measured spilled: deeper spilled groups
        # would be extrapolation
        self.max_spilled_depth = max([len(ch["layers"]) for ch in table.get("chains", [])] or [1])

    # -- per-layer curves ------------------------------------------------
    def eff_ops(self, kind: str, ops: float, cin: int) -> float:
        """The operation count the MAC array really spends: input channels
        of a dense layer are padded to whole input lanes."""
        if kind in ("conv", "gemm", "matmul") and cin > 0:
            li = self.mac_lanes_in
            return max(1.0, float(ops) * (-(-cin // li) * li) / cin)
        return max(1.0, float(ops))

    def lanes(self, kind: str) -> int:
        return self.mac_lanes if kind in MAC_KINDS else self.vector_lanes

    def _class_kind(self, cls: str) -> str:
        from dlfusion.tuning.characterize import CLASSES

        return CLASSES[cls][0] if cls in CLASSES else "eltwise"

    def _channel_curve(self, cls: str, c: int, ops: float) -> np.ndarray:
        """Latency of class `cls` at grid channel `c` and operation count
        `ops`, at every table core number (log-log in the operation count)."""
        opsv, lat = self.grid[cls][c]
        return _interp_loglog(ops, opsv, lat)

    def curve(self, info: LayerInfo) -> np.ndarray:
        """Predicted latency (us) of the layer as a kernel of its own, at each
        table core number."""
        cls = table_class(info, self.classes)
        if cls is None:
            return np.zeros(len(self.cores))
        c = max(1, info.cout)
        chans = sorted(self.grid[cls])
        ops = self.eff_ops(self._class_kind(cls), info.ops, info.cin)
        if c <= chans[0]:
            lo = hi = chans[0]
        elif c >= chans[-1]:
            lo = hi = chans[-1]
        else:
            hi = next(x for x in chans if x >= c)
            lo = max(x for x in chans if x <= c)
        a = self._channel_curve(cls, lo, ops)
        if hi == lo:
            return a
        b = self._channel_curve(cls, hi, ops)
        t = (math.log(c) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return np.exp(np.log(a) * (1 - t) + np.log(b) * t)

    # -- fusion ------------------------------------------------------------
    def working_set(self, infos: Sequence[LayerInfo]) -> tuple[np.ndarray, np.ndarray]:
        """Per-core NRAM and WRAM bytes (at every core number) of the group
        kept on chip untiled: each layer's output channel range, its input
        (whole for a layer that needs every channel, else its range) and its
        weights' range."""
        n = self.cores
        ws = np.zeros(len(n))
        wt = np.zeros(len(n))
        for info in infos:
            lanes = self.lanes(info.kind)
            c = max(1, info.cout)
            share = np.minimum([chunk(c, int(x), lanes) / max(c, lanes) for x in n], 1.0)
            ws += info.ofm * share
            ws += info.ifm if info.kind in DENSE_KINDS else info.ifm * share
            wt += info.wbytes * share
        return ws, wt

    def fits(self, infos: Sequence[LayerInfo]) -> np.ndarray:
        ws, wt = self.working_set(infos)
        return (ws <= self.nram) & (wt <= self.wram)

    def group_features(self, infos: Sequence[LayerInfo], internal: Sequence[bool],
                       dense_internal: Sequence[bool], unfused: np.ndarray) -> np.ndarray:
        """Features of a group at every core number (rows: features, columns:
        core numbers). `internal[i]`: layer i's output is read inside the
        group; `dense_internal[i]`: by a layer that needs every channel;
        `unfused`: the latency of the group's layers as kernels of their own."""
        n = self.cores.astype(float)
        m = max(0, kernels(infos) - 1)
        ws, wt = self.working_set(infos)
        fits = ((ws <= self.nram) & (wt <= self.wram)).astype(float)
        spill = 1.0 - fits
        over = np.log2(np.maximum(ws / self.nram, 1.0))
        wover = np.log2(np.maximum(wt / self.wram, 1.0))
        inter = sum(i.ofm for i, x in zip(infos, internal) if x)
        xch = sum(i.ofm for i, x in zip(infos, dense_internal) if x)
        # cores with work in each layer: unfused, each kernel dispatches its
        # own; fused, one dispatch, but every barrier spans all n cores
        act = np.array([[active(max(1, i.cout), int(x), self.lanes(i.kind)) for x in n]
                        for i in infos if i.ops > 0 or i.kind != "data"] or [np.zeros(len(n))])
        return np.array([
            np.full(len(n), m),                  # kernel launches saved
            act.sum(axis=0) - act.max(axis=0),   # core dispatches saved
            m * n,                               # barriers over all the group's cores
            fits * inter / 1e3,                  # DRAM round trips saved (KB)
            fits * xch * np.log2(n + 1) / 1e3,   # exchanges for dense consumers (KB)
            fits * (m > 0) * unfused,            # on chip: relative change of the work
            spill * m,                           # spilled: shared memories...
            spill * (m > 0) * unfused,           # ... smaller tiles for every layer,
            spill * (m > 0) * unfused * over,    # ... the more so the more NRAM overflows
            spill * (m > 0) * unfused * wover,   # ... and the more WRAM overflows
        ])

    def _fit_fusion(self) -> np.ndarray:
        """Least-squares fit of the fusion gain (unfused - fused, relative to
        unfused) on the table's chains at every core number."""
        rows, ys, ws = [], [], []
        for ch in self.table.get("chains", []):
            recs = ch["layers"]
            infos = [self._info_of_record(r) for r in recs]
            internal = [True] * (len(recs) - 1) + [False]
            dense = [i + 1 < len(infos) and infos[i + 1].kind in DENSE_KINDS for i in range(len(infos))]
            fused = np.array(ch["fused_us"], float)
            unfused = np.array(ch["unfused_us"], float)
            f = self.group_features(infos, internal, dense, unfused)
            for j in range(len(self.cores)):
                rows.append(f[:, j])
                ys.append(unfused[j] - fused[j])
                ws.append(1.0 / max(unfused[j], 1e-6))
        nfeat = 10
        if not rows:
            return np.zeros(nfeat)
        X = np.array(rows) * np.array(ws)[:, None]
        y = np.array(ys) * np.array(ws)
        # signs the mechanics fix: a saved launch or dispatch is a gain, a
        # barrier over more cores a loss; a coefficient that the data would
        # give the wrong sign is dropped (set to zero) and the rest refitted
        signs = np.array([1, 1, -1, 0, 0, 0, 0, 0, 0, 0])
        keep = np.ones(nfeat, bool)
        coef = np.zeros(nfeat)
        while keep.any():
            Xk = X[:, keep]
            # a little ridge keeps unsupported directions at zero
            A = Xk.T @ Xk + 1e-9 * np.eye(Xk.shape[1]) * max(1.0, float(np.trace(Xk.T @ Xk)) / Xk.shape[1])
            coef = np.zeros(nfeat)
            coef[keep] = np.linalg.solve(A, Xk.T @ y)
            wrong = keep & (signs * coef < 0)
            if not wrong.any():
                break
            keep &= ~wrong
        return coef

    def _info_of_record(self, r: dict) -> LayerInfo:
        from dlfusion.tuning.characterize import CLASSES

        kind = CLASSES[r["class"]][0]
        info = LayerInfo(kind, float(r["ops"]), int(r["cin"]), int(r["cout"]), int(r["hw"]),
                         int(r["ifm_bytes"]), int(r["ofm_bytes"]), int(r["weight_bytes"]))
        info.kernel = float(r["kernel"]) or 1.0
        info.stride = float(r["stride"])
        info.inputs = 2 if r["class"] == "add" else 1
        return info

    def gain(self, infos, internal, dense_internal, unfused) -> np.ndarray:
        return self.coef @ self.group_features(infos, internal, dense_internal, unfused)


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
                f"(looked in {chz.default_cache_dir() if not sctx.options.get('cache_dir') else sctx.options['cache_dir']})",
                hint=f"run dlfusion-characterize --target {sctx.target.name} first",
            )
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    key = (str(path), mtime)
    if key not in _MODELS:
        doc = chz.load_table(path)
        if doc["target_digest"] != sctx.target.digest:
            raise DlfusionError(
                f"the characterization table was measured for another version of target "
                f"'{doc['target']}' (digest {doc['target_digest']}, the target file is {sctx.target.digest})",
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
    groups: list[tuple[int, int, int]]  # (first, end, core number)
    predicted_us: float
    stats: dict = field(default_factory=dict)


def plan_layers(graph: LayerGraph, model: Characterization, element_bytes: int,
                max_group: int = MAX_GROUP, choices: Sequence[int] | None = None) -> HeuristicPlan:
    """Split the layers (in topological order) into runs minimizing the
    predicted latency; each run's core number is its predicted best."""
    infos = layer_infos(graph, element_bytes)
    n = len(infos)
    curves = np.array([model.curve(i) for i in infos]) if n else np.zeros((0, len(model.cores)))
    prefix = np.vstack([np.zeros(len(model.cores)), np.cumsum(curves, axis=0)]) if n else None
    consumers = [sorted(graph.succs[i]) for i in range(n)]
    allowed = np.array([choices is None or int(c) in choices for c in model.cores])
    if not allowed.any():
        raise DlfusionError(
            f"none of the core choices {sorted(choices or [])} was characterized "
            f"(the table has {[int(c) for c in model.cores]})",
            hint="characterize the target with those core numbers",
        )
    best = [0.0] + [math.inf] * n
    arg: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end - 1, max(0, end - max_group) - 1, -1):  # ties: shorter groups
            members = infos[start:end]
            internal = [any(start <= s < end for s in consumers[i]) for i in range(start, end)]
            dense = [any(start <= s < end and infos[s].kind in DENSE_KINDS for s in consumers[i])
                     for i in range(start, end)]
            total = prefix[end] - prefix[start]
            if end - start > 1:
                # a fused kernel takes at least as long as its longest layer
                floor = curves[start:end].max(axis=0)
                total = np.maximum(total - model.gain(members, internal, dense, total), floor)
                if kernels(members) > model.max_spilled_depth:
                    # spilled groups deeper than the table's chains: not characterized
                    total = np.where(model.fits(members), total, np.inf)
            total = np.where(allowed, total, np.inf)
            j = int(np.argmin(total + 1e-9 * np.arange(len(total))))
            cost = best[start] + float(total[j])
            if cost < best[end] - 1e-6 * (1.0 + abs(best[end]) if best[end] < math.inf else 0.0):
                best[end] = cost
                arg[end] = (start, int(model.cores[j]))
    groups = []
    end = n
    while end > 0:
        start, cores = arg[end]
        groups.append((start, end, cores))
        end = start
    groups.reverse()
    return HeuristicPlan(groups, best[n] if n else 0.0)


def _plan(graph: LayerGraph, sctx: StrategyContext, one_core: bool) -> list[Group]:
    model = characterization_for(sctx)
    max_group = int(sctx.options.get("max_group", MAX_GROUP))
    plan = plan_layers(graph, model, sctx.target.element_bytes, max_group, set(sctx.core_choices()))
    if isinstance(getattr(sctx, "stats", None), dict):
        sctx.stats["predicted_us"] = round(plan.predicted_us, 3)
    out = []
    for start, end, cores in plan.groups:
        c = 1 if one_core else cores
        out.append(Group(list(graph.names[start:end]), c))
    return out


@register("dlfusion")
def dlfusion_strategy(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """Joint fusion and core-number heuristic from the characterization
    table (no measurement)."""
    return _plan(graph, sctx, one_core=False)


@register("fusion-only")
def fusion_only(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """The dlfusion heuristic's groups, every one on 1 core."""
    return _plan(graph, sctx, one_core=True)
