"""`lower-to-accel`: the `nn` dialect (with or without fusion groups and core
numbers) to the `accel` dialect of a target (docs/accelerator.md, "Lowering").

    dlfusion-opt model.mlir -p 'lower-to-accel{target=edge8}'

The module's body becomes one `accel.program` for the target:

- `accel.dram input` per graph input, `accel.dram weight` per weight used
  (the `nn.weight` handle; tensors derived at compile time, such as batch
  norm's per-channel scale and shift, are new handles in the weight store),
  `accel.dram temp` per feature map that crosses a kernel boundary, and
  `accel.view` for `nn.reshape` (no data movement);
- one `accel.kernel` per `nn.fusion_group` (its `cores`, or 1) and per layer
  outside any group (1 core), in program order; `accel.return` of the outputs.

Inside a kernel, work is split by output channels: each core gets
`chunk = ceil(C / cores)` channels rounded up to the MAC array's output lanes
(convolution, matmul) or the vector lanes (everything else); cores past
`ceil(C / chunk)` are idle. Layers are lowered by the rules of
`lower_to_accel_layers.py` (tiles of output rows with their halo when the
feature maps do not fit NRAM; sub-blocks of a core's channels when its
weights do not fit WRAM; padding filled on chip). A convolution, pooling or
element-wise layer lowered on its own (outside a group, or spilled) whose
channel split leaves cores idle may use them as channel groups x blocks of
output rows, the split of least estimated time (`Grid`, `grids`,
`estimate_ns` there; docs/accelerator.md, "Lowering").

A fusion group is lowered one of two ways:

- *on chip*, when the whole group fits in one go per core: every layer
  computes its whole channel range, intermediates stay in NRAM, only the
  group's inputs are loaded and its results stored. A consumer that works
  per channel (element-wise, pooling, depthwise convolution) uses the
  producer's channel split as is. A consumer that needs every channel (a
  dense convolution, a gemm) gets them with `accel.exchange`. The dialect has
  no on-chip copy with per-core offsets, so before the exchange each core
  places its channel range into a full-size buffer with a 1x1 convolution
  (a matmul for 2-D maps) by a 0/1 selection matrix, loaded from a small
  identity weight at the core's channel offset; padding for a consumer
  window is added on chip by `accel.vector "nn.pad"`.
- *spilled* otherwise: each layer is tiled on its own, as if it were a kernel
  of its own but with a share of the memories, intermediates go through DRAM
  temporaries, and a barrier separates a layer from the ones that read what
  it wrote (the group still saves kernel launches).

A plan that cannot fit even with the smallest tiles is a `DlfusionError`
naming the kernel, the buffer and both sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from dlfusion.dialects import accel, nn
from dlfusion.dialects.accel import mshape
from dlfusion.dialects.nn import f32, ints, shape_of
from dlfusion.dialects.weights import weight_store
from dlfusion.errors import DlfusionError
from dlfusion.passes.canonicalize import required_weight, weight_op_of
from dlfusion.passes.lower_to_accel_layers import (
    ELTWISE,
    NEG_INF,
    CopyRule,
    EltwiseRule,
    KernelBuilder,
    MatmulRule,
    NoPlan,
    Rule,
    Split,
    VectorRule,
    WindowRule,
    box_entry,
    eltwise_params,
    fval,
    gemm_epilogue,
    ival,
    legal_name,
    make_split,
    operand_box,
    split_axis,
    vals,
)
from dlfusion.targets import load_target


@dataclass(frozen=True)
class Derived:
    """A weight computed at compile time, stored under `key`."""

    key: str
    shape: tuple[int, ...]


# --------------------------------------------------------------------------
# the rule for each layer
# --------------------------------------------------------------------------


def rule_for(lw: Lowering, op: Operation, cores: int) -> Rule:
    if isinstance(op, nn.Conv2DOp):
        return WindowRule(lw, op, cores)
    if isinstance(op, (nn.MaxPoolOp, nn.AvgPoolOp)):
        return WindowRule(lw, op, cores)
    if isinstance(op, nn.GlobalAvgPoolOp) and len(shape_of(op.input)) == 4:
        return WindowRule(lw, op, cores)
    if type(op) in ELTWISE:
        return EltwiseRule(lw, op, cores)
    if isinstance(op, nn.BatchNormOp) and lw.bn_is_constant(op):
        return EltwiseRule(lw, op, cores)
    if isinstance(op, nn.GemmOp) and not ival(op.trans_a):
        return MatmulRule(lw, op, cores)
    if isinstance(op, nn.MatMulOp) and len(shape_of(op.lhs)) == 2 and len(shape_of(op.rhs)) == 2:
        return MatmulRule(lw, op, cores)
    if isinstance(op, (nn.ConcatOp, nn.SplitOp)):
        return CopyRule(lw, op, cores)
    if isinstance(op, nn.SliceOp) and all(s == 1 for s in vals(op.steps)):
        return CopyRule(lw, op, cores)
    return VectorRule(lw, op, cores)


# --------------------------------------------------------------------------
# the program
# --------------------------------------------------------------------------


def main_function(module: ModuleOp) -> func.FuncOp:
    for op in module.body.block.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == "main":
            if not op.body.blocks:
                break
            return op
    raise DlfusionError(
        "lower-to-accel: the module has no function @main to lower",
        hint="the ONNX frontend names the model's function @main",
    )


def _names(fn: func.FuncOp, attr: str, count: int, default: str, hints) -> list[str]:
    """The graph's input / output names (as `dlfusion.interpreter` reads them)."""
    value = fn.attributes.get(attr)
    if isinstance(value, ArrayAttr) and len(value) == count and all(isinstance(v, StringAttr) for v in value):
        return [v.data for v in value]
    names: list[str] = []
    for i in range(count):
        hint = hints[i] if hints is not None else None
        names.append(hint if hint and hint not in names else f"{default}{i}")
    return names


class Lowering:
    """Builds the `accel.program` for `@main`."""

    def __init__(self, ctx: Context, target, module: ModuleOp):
        self.ctx = ctx
        self.target = target
        self.store = weight_store(ctx)
        self.fn = main_function(module)
        args = self.fn.body.block.args
        self.input_names = _names(self.fn, "nn.input_names", len(args), "input", [a.name_hint for a in args])
        nout = len(self.fn.function_type.outputs.data)
        self.output_names = _names(self.fn, "nn.output_names", nout, "output", None)
        self.decls: list[Operation] = []
        self.kernels: list[accel.KernelOp] = []
        self.alias: dict[SSAValue, SSAValue] = {}
        self._dram: dict[object, SSAValue] = {}
        self._views: dict[tuple, SSAValue] = {}
        self._derived: dict[tuple, Derived] = {}
        self._labels: set[str] = set()
        self._kernel_names: set[str] = set()
        self._names: dict[SSAValue, str] = {}
        self._counter = 0
        self.preferred: dict[SSAValue, str] = {}

    # -- names --------------------------------------------------------------
    def value_name(self, v: SSAValue) -> str:
        if v in self._names:
            return self._names[v]
        name = v.name_hint
        if not name:
            owner = v.owner
            base = owner.name.split(".")[-1] if isinstance(owner, Operation) else "arg"
            self._counter += 1
            name = f"{base}{self._counter}"
        self._names[v] = name
        return name

    def _unique(self, name: str, taken: set[str]) -> str:
        out, i = name, 1
        while out in taken:
            out = f"{name}_{i}"
            i += 1
        taken.add(out)
        return out

    # -- values in DRAM -----------------------------------------------------
    def resolve(self, v: SSAValue) -> SSAValue:
        while v in self.alias:
            v = self.alias[v]
        return v

    def _decl(self, op: Operation, hint: str | None) -> SSAValue:
        if hint:
            op.results[0].name_hint = legal_name(hint)
        self.decls.append(op)
        return op.results[0]

    def dram(self, v) -> SSAValue:
        """The program-level DRAM tensor holding `v` (an nn value, a
        `Derived` weight, or ("view", value, shape)); declared on first use."""
        if isinstance(v, tuple) and v[0] == "view":
            return self.view(self.dram(v[1]), v[2])
        if isinstance(v, Derived):
            if v not in self._dram:
                self._dram[v] = self._decl(accel.DramOp("weight", v.key, v.shape), v.key)
            return self._dram[v]
        v = self.resolve(v)
        got = self._dram.get(v)
        if got is not None:
            return got
        owner = v.owner
        if isinstance(owner, nn.WeightOp):
            key = ("weight", owner.key)
            if key not in self._dram:
                self._dram[key] = self._decl(accel.DramOp("weight", owner.key, shape_of(v)), owner.key)
            got = self._dram[key]
        elif isinstance(owner, nn.ReshapeOp):
            got = self.view(self.dram(owner.input), shape_of(v))
        else:
            name = self.preferred.get(v) or self.value_name(v)
            label = self._unique(name, self._labels)
            got = self._decl(accel.DramOp("temp", label, shape_of(v)), name)
        self._dram[v] = got
        return got

    def view(self, src: SSAValue, shape: Sequence[int]) -> SSAValue:
        shape = tuple(shape)
        if mshape(src) == shape:
            return src
        key = (src, shape)
        if key not in self._views:
            op = accel.ViewOp(src, shape)
            self._views[key] = self._decl(op, (src.name_hint or "v") + "_view")
        return self._views[key]

    def dram_shape(self, v) -> tuple[int, ...]:
        if isinstance(v, Derived):
            return v.shape
        if isinstance(v, tuple) and v[0] == "view":
            return tuple(v[2])
        return shape_of(v)

    @staticmethod
    def root(dram: SSAValue) -> SSAValue:
        while isinstance(dram.owner, accel.ViewOp):
            dram = dram.owner.source
        return dram

    # -- weights ------------------------------------------------------------
    def is_weight(self, v) -> bool:
        if isinstance(v, Derived):
            return True
        if isinstance(v, tuple):
            return self.is_weight(v[1])
        return isinstance(self.resolve(v).owner, nn.WeightOp)

    def key_of(self, v: SSAValue) -> str:
        op = weight_op_of(self.resolve(v))
        return op.key if op is not None else str(id(v))

    def weight_array(self, v) -> np.ndarray | None:
        op = weight_op_of(self.resolve(v))
        if op is None:
            return None
        return required_weight(op.result, self.store, "lower-to-accel")

    def derived(self, cache_key: tuple, name: str, array: np.ndarray) -> Derived:
        got = self._derived.get(cache_key)
        if got is None:
            arr = np.ascontiguousarray(array, dtype=np.float32)
            key = self.store.add(name, arr)
            got = Derived(key, tuple(arr.shape))
            self._derived[cache_key] = got
        return got

    def scalar(self, value: float) -> Derived:
        return self.derived(("scalar", float(value)), f"scalar_{value:g}", np.full((1, 1), value))

    def identity(self, k: int, rank: int) -> Derived:
        """A k x k identity (as [k, k, 1, 1] for convolutions)."""
        arr = np.eye(k, dtype=np.float32)
        if rank == 4:
            arr = arr.reshape(k, k, 1, 1)
        return self.derived(("identity", k, rank), f"identity{k}", arr)

    def bn_is_constant(self, op: nn.BatchNormOp) -> bool:
        return len(shape_of(op.input)) >= 2 and all(
            self.is_weight(v) for v in (op.scale, op.bias, op.mean, op.var)
        )

    def bn_constants(self, op: nn.BatchNormOp) -> tuple[Derived, Derived]:
        """batch_norm(x) = s * x + t per channel, s and t shaped [1, C, 1, ...]."""
        rank = len(shape_of(op.input))
        keys = tuple(self.key_of(v) for v in (op.scale, op.bias, op.mean, op.var))
        eps = fval(op.epsilon)
        scale, bias, mean, var = (self.weight_array(v).astype(np.float32) for v in (op.scale, op.bias, op.mean, op.var))
        # the interpreter's float32 formula: (x - mean) * inv + bias
        inv = scale / np.sqrt(var + np.float32(eps))
        shift = bias - mean * inv
        shape = (1, scale.shape[0]) + (1,) * (rank - 2)
        name = self.value_name(op.output)
        s = self.derived(("bn_scale", keys, eps, rank), f"{name}_scale", inv.reshape(shape))
        t = self.derived(("bn_shift", keys, eps, rank), f"{name}_shift", shift.reshape(shape))
        return s, t

    # -- the whole program --------------------------------------------------
    def run(self) -> accel.ProgramOp:
        fn = self.fn
        block = fn.body.block
        for arg, name in zip(block.args, self.input_names):
            self._dram[arg] = self._decl(accel.DramOp("input", name, shape_of(arg)), name)
        ret = block.last_op
        assert isinstance(ret, func.ReturnOp)
        for v, name in zip(ret.arguments, self.output_names):
            self.preferred.setdefault(v, name)
        for op in block.ops:
            if isinstance(op, (nn.WeightOp, nn.ReshapeOp, func.ReturnOp)):
                continue
            if isinstance(op, nn.FusionGroupOp):
                self.lower_group(op)
            elif isinstance(op, (nn.YieldOp,)):
                continue
            elif op.name.startswith("nn."):
                name = self._unique(self.value_name(op.results[0]), self._kernel_names)
                self.lower_spilled(name, 1, [op])
            else:
                raise DlfusionError(
                    f"lower-to-accel: cannot lower '{op.name}' in @main",
                    hint="only nn layers, nn.fusion_group and func.return can be lowered",
                )
        outs = [self.dram(v) for v in ret.arguments]
        body = Block()
        self._prune(outs)
        body.add_ops(self.decls)
        body.add_ops(self.kernels)
        body.add_op(accel.ReturnOp(*outs))
        return accel.ProgramOp(self.target, self.input_names, self.output_names, Region(body))

    def _prune(self, outs: list[SSAValue]) -> None:
        """Drop DRAM tensors and views nothing uses (left by an on-chip
        attempt that did not fit); graph inputs always stay."""
        used: set[SSAValue] = set(outs)
        for k in self.kernels:
            used.update(k.tensors)
        keep: list[Operation] = []
        for op in reversed(self.decls):
            r = op.results[0]
            if r in used or (isinstance(op, accel.DramOp) and op.kind.data == "input"):
                keep.append(op)
                if isinstance(op, accel.ViewOp):
                    used.add(op.source)
            else:
                op.drop_all_references()
        self.decls = list(reversed(keep))

        def rank(op: Operation) -> float:
            if isinstance(op, accel.ViewOp):
                return rank(self.root(op.source).owner) + 0.5
            return ("input", "weight", "temp").index(op.kind.data)

        self.decls.sort(key=rank)  # stable: inputs, weights, temps; views after their kind

    # -- kernels ------------------------------------------------------------
    def lower_group(self, g: nn.FusionGroupOp) -> None:
        name = g.sym_name.data
        cores = g.cores.value.data if g.cores is not None else 1
        if cores > self.target.cores:
            raise DlfusionError(
                f"fusion group '{name}' asks for {cores} cores; target '{self.target.name}' has {self.target.cores}"
            )
        for arg, operand in zip(g.block.args, g.inputs):
            self.alias[arg] = operand
        term = g.block.last_op
        assert isinstance(term, nn.YieldOp)
        for r, y in zip(g.outputs, term.values):
            owner = y.owner
            if isinstance(owner, Operation) and owner.parent_block() is g.block and not isinstance(
                owner, (nn.ReshapeOp, nn.WeightOp)
            ) and y not in self.alias:
                self.alias[y] = r
            else:
                self.alias[r] = y
        layers = [op for op in g.layers() if not isinstance(op, nn.WeightOp)]
        kname = self._unique(name, self._kernel_names)
        compute = [op for op in layers if not isinstance(op, nn.ReshapeOp)]
        if not compute:
            return
        if len(compute) > 1:
            stored = {y for y in term.values}
            kb = FusedGroup(self, kname, cores, layers, stored).run()
            if kb is not None:
                self.kernels.append(kb.finish())
                return
        self.lower_spilled(kname, cores, layers)

    def lower_spilled(self, name: str, cores: int, layers: list[Operation]) -> None:
        rules = [rule_for(self, op, cores) for op in layers if not isinstance(op, nn.ReshapeOp)]
        plans = self._plans(name, rules)
        kb = KernelBuilder(name, cores, self.target, self)
        dirty: set[SSAValue] = set()
        for rule, plan in zip(rules, plans):
            reads = {self.root(self.dram(v)) for v in rule.op.operands if not self.is_weight(v)}
            if cores > 1 and reads & dirty:
                kb.add(accel.BarrierOp())
                dirty.clear()
            rule.emit(kb, plan)
            dirty.update(self.root(self.dram(r)) for r in rule.op.results)
        bad = kb.overflow()
        if bad is not None:  # pragma: no cover - the planner keeps within budget
            self._no_fit(name, bad[0], bad[1].result.name_hint, bad[2], bad[3])
        self.kernels.append(kb.finish())

    def _no_fit(self, kernel: str, space: str, buf: str, size: int, total: int, layers: int = 1):
        cap = self.target.nram_bytes if space == "nram" else self.target.wram_bytes
        raise DlfusionError(
            f"kernel '{kernel}' does not fit on chip even with the smallest tiles: buffer '{buf}' "
            f"({size} bytes) brings its {space} use to {total} bytes, target '{self.target.name}' "
            f"has {cap} bytes of {space} per core",
            hint="put fewer layers in the group or use a target with more on-chip memory"
            if layers > 1
            else "the layer needs a target with more on-chip memory",
        )

    def _plans(self, name: str, rules: list[Rule]) -> list:
        """A plan per rule, sharing the per-core memories: every layer gets its
        smallest tiles plus a share of the rest in proportion to what its
        untiled plan would need more."""
        eb = self.target.element_bytes
        caps = {"nram": self.target.nram_bytes, "wram": self.target.wram_bytes}
        ideal = [r.use(r.ideal_plan()) for r in rules]
        if all(sum(getattr(u, s) for u in ideal) * eb <= caps[s] for s in caps):
            return [r.ideal_plan() for r in rules]
        mins = [r.use(r.min_plan()) for r in rules]
        for space in caps:
            total = 0
            for u in mins:
                for bname, bspace, elems in u.buffers:
                    if bspace != space:
                        continue
                    total += elems * eb
                    if total > caps[space]:
                        self._no_fit(name, space, bname, elems * eb, total, len(rules))
            if sum(getattr(u, space) for u in mins) * eb > caps[space]:
                self._no_fit(name, space, mins[-1].buffers[-1][0], mins[-1].buffers[-1][2] * eb,
                             sum(getattr(u, space) for u in mins) * eb, len(rules))
        budgets = []
        for space in ("nram", "wram"):
            lo = [getattr(u, space) * eb for u in mins]
            hi = [max(getattr(u, space) * eb, getattr(i, space) * eb) for u, i in zip(mins, ideal)]
            spare = caps[space] - sum(lo)
            want = sum(h - l for h, l in zip(hi, lo))
            if want <= spare:
                budgets.append(hi)
            else:
                budgets.append([l + (spare * (h - l)) // want for h, l in zip(hi, lo)])
        plans = []
        for r, nb, wb in zip(rules, *budgets):
            try:
                plans.append(r.plan(nb, wb))
            except NoPlan:
                plans.append(r.min_plan())
        # what the plans left unused goes to the layers, in order, to grow
        uses = [r.use(p) for r, p in zip(rules, plans)]
        for i, r in enumerate(rules):
            spare_n = caps["nram"] - sum(u.nram for u in uses) * eb
            spare_w = caps["wram"] - sum(u.wram for u in uses) * eb
            if spare_n <= 0 and spare_w <= 0:
                break
            try:
                p = r.plan(uses[i].nram * eb + max(0, spare_n), uses[i].wram * eb + max(0, spare_w))
            except NoPlan:
                continue
            u = r.use(p)
            if u.nram * eb <= uses[i].nram * eb + max(0, spare_n) and u.wram * eb <= uses[i].wram * eb + max(0, spare_w):
                plans[i], uses[i] = p, u
        return plans


# --------------------------------------------------------------------------
# fusion groups kept on chip
# --------------------------------------------------------------------------


class NotOnChip(Exception):
    """The group cannot be (or does not fit when) kept on chip."""


@dataclass
class OnChip:
    """A feature map in NRAM: each core's `buf` holds its channel range of
    `split` (on axis 1, axis 0 for vectors), or the whole tensor if `split`
    is None; `pads` (4-D) is the spatial border around it."""

    buf: SSAValue
    shape: tuple[int, ...]
    split: Split | None
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)


class FusedGroup:
    def __init__(self, lw: Lowering, name: str, cores: int, layers: list[Operation], stored: set[SSAValue]):
        self.lw = lw
        self.name = name
        self.cores = cores
        self.layers = layers
        self.stored = stored
        self.t = lw.target
        self.kb = KernelBuilder(name, cores, lw.target, lw)
        self.vals: dict[SSAValue, OnChip] = {}
        self.cache: dict[tuple, OnChip] = {}
        self.uses: dict[SSAValue, int] = {}
        inside = set(layers)
        for op in layers:
            for v in op.operands:
                if isinstance(v.owner, Operation) and v.owner in inside:
                    self.uses[v] = self.uses.get(v, 0) + 1

    def run(self) -> KernelBuilder | None:
        try:
            for op in self.layers:
                self.layer(op)
                for v in op.operands:
                    if v in self.uses:
                        self.uses[v] -= 1
            if self.kb.overflow() is not None:
                raise NotOnChip
        except NotOnChip:
            return None
        return self.kb

    # -- helpers ------------------------------------------------------------
    def dram(self, v) -> SSAValue:
        """A layer's operand read from DRAM (weights, group inputs); one that
        this kernel computes on chip is not there."""
        if isinstance(v, SSAValue) and v in self.vals:
            raise NotOnChip
        return self.lw.dram(v)

    def readers(self, v: SSAValue) -> int:
        """How many cores need all of `v` (loaded whole from DRAM): the most
        active cores of the layers of the group that read every channel of it
        (dense convolutions, matrix products)."""
        most = 1
        for op in self.layers:
            if isinstance(op, nn.Conv2DOp) and op.input == v and ival(op.groups) == 1:
                most = max(most, make_split(shape_of(op.output)[1], self.cores, self.t.mac_lanes_out).active)
            elif isinstance(op, (nn.GemmOp, nn.MatMulOp)) and op.operands[0] == v and len(shape_of(op.results[0])) == 2:
                most = max(most, make_split(shape_of(op.results[0])[1], self.cores, self.t.mac_lanes_out).active)
        return most

    def ranges(self, split: Split | None) -> list[tuple[int, int]]:
        """The channels each core owns ((0, 0): none)."""
        if split is None:
            return [(0, 1) for _ in range(self.cores)]
        return [split.range(c) for c in range(self.cores)]

    def spans(self, split: Split) -> list[tuple[int, int]]:
        """The channels each core's buffer holds: a whole chunk, the last
        core's shifted back to end at the last channel, so that no buffer
        holds anything but real data (a selection matrix's zeros times
        garbage such as -inf would be NaN)."""
        out = []
        for c in range(self.cores):
            lo, hi = split.range(c)
            if hi <= lo:
                out.append((0, 0))
            else:
                base = min(lo, split.total - split.chunk)
                out.append((base, base + split.chunk))
        return out

    def produce(self, v: SSAValue, val: OnChip) -> None:
        self.vals[v] = val
        if v in self.stored:
            self.store(v, val)

    def store(self, v: SSAValue, val: OnChip) -> None:
        kb = self.kb
        y = self.lw.dram(v)
        rank = len(val.shape)
        zero = (0,) * rank
        if val.split is None:
            kb.store(y, val.buf, [box_entry(zero, val.shape, zero) if c == 0 else None for c in range(self.cores)])
            return
        ax = split_axis(rank)
        entries = []
        for (lo, hi), (base, _) in zip(self.ranges(val.split), self.spans(val.split)):
            if hi <= lo:
                entries.append(None)
                continue
            size = list(val.shape)
            size[ax] = hi - lo
            src, dst = [0] * rank, [0] * rank
            src[ax], dst[ax] = lo - base, lo
            entries.append(box_entry(src, size, dst))
        kb.store(y, val.buf, entries)

    def load_split(self, v, split: Split | None, pads=(0, 0, 0, 0), pad_value=0.0, whole_cores: int | None = None,
                   name: str | None = None) -> OnChip:
        """Load a DRAM feature map: each core its channel range of `split`
        (the whole tensor on cores < whole_cores if split is None), inside a
        border `pads` filled with `pad_value`."""
        kb, lw = self.kb, self.lw
        shape = tuple(lw.dram_shape(v))
        rank = len(shape)
        ax = split_axis(rank)
        bshape = list(shape)
        if split is not None:
            bshape[ax] = split.chunk
        off = [0] * rank
        if any(pads):
            assert rank == 4
            bshape[2] += pads[0] + pads[2]
            bshape[3] += pads[1] + pads[3]
            off[2], off[3] = pads[0], pads[1]
        buf = kb.alloc(bshape, "nram", name or f"{lw.value_name(v) if not isinstance(v, Derived) else v.key}_in")
        if any(pads):
            kb.fill(buf, pad_value)
        zero = (0,) * rank
        entries = []
        spans = self.spans(split) if split is not None else None
        for c in range(self.cores):
            if split is None:
                entries.append(box_entry(zero, shape, off) if c < (whole_cores or 1) else None)
                continue
            lo, hi = spans[c]
            if hi <= lo:
                entries.append(None)
                continue
            src = [0] * rank
            src[ax] = lo
            size = list(shape)
            size[ax] = hi - lo
            entries.append(box_entry(src, size, off))
        kb.load(buf, self.dram(v), entries)
        return OnChip(buf, shape, split, tuple(pads) if rank == 4 else (0, 0, 0, 0))

    def padded(self, val: OnChip, pads, pad_value: float, key) -> OnChip:
        """`val` inside a border `pads` of `pad_value` (accel.vector nn.pad)."""
        if tuple(pads) == val.pads:
            return val
        if any(val.pads):
            raise NotOnChip
        ck = ("pad", key, tuple(pads), pad_value)
        if ck in self.cache:
            return self.cache[ck]
        src = mshape(val.buf)
        out_shape = (src[0], src[1], src[2] + pads[0] + pads[2], src[3] + pads[1] + pads[3])
        buf = self.kb.alloc(out_shape, "nram", f"{val.buf.name_hint or 'x'}_pad")
        params = {
            "pads": ints([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]),
            "mode": StringAttr("constant"),
            "value": f32(pad_value),
        }
        self.kb.add(accel.VectorOp(buf, [val.buf], "nn.pad", params))
        out = OnChip(buf, val.shape, val.split, tuple(pads))
        self.cache[ck] = out
        return out

    def gathered(self, val: OnChip, key) -> OnChip:
        """Every core gets every channel: each places its range into a full
        buffer (selection conv / matmul), then `accel.exchange`."""
        if val.split is None:
            return val
        ck = ("gather", key, val.pads)
        if ck in self.cache:
            return self.cache[ck]
        kb, lw = self.kb, self.lw
        split = val.split
        k = split.chunk
        c_total = split.total
        src = mshape(val.buf)
        rank = len(src)
        ranges = self.ranges(split)
        offs = [lo - b for (lo, _), (b, _) in zip(ranges, self.spans(split))]
        base = val.buf.name_hint or "x"
        if rank == 4:
            sel = kb.alloc((c_total, k, 1, 1), "wram", f"{base}_sel")
            kb.fill(sel, 0.0)
            kb.load(sel, lw.dram(lw.identity(k, 4)),
                    [box_entry((o, 0, 0, 0), (hi - lo, k, 1, 1), (lo, 0, 0, 0)) for (lo, hi), o in zip(ranges, offs)])
            full = kb.alloc((src[0], c_total, src[2], src[3]), "nram", f"{base}_all")
            kb.add(accel.ConvOp(full, val.buf, sel, None, (1, 1), (1, 1), 1))
        elif rank == 2:
            sel = kb.alloc((k, c_total), "wram", f"{base}_sel")
            kb.fill(sel, 0.0)
            kb.load(sel, lw.dram(lw.identity(k, 2)),
                    [box_entry((0, o), (k, hi - lo), (0, lo)) for (lo, hi), o in zip(ranges, offs)])
            full = kb.alloc((src[0], c_total), "nram", f"{base}_all")
            kb.add(accel.MatMulOp(full, val.buf, sel, None, False))
        else:
            raise NotOnChip
        kb.add(accel.ExchangeOp(full, 1, [(lo, hi) if hi > lo else (0, 0) for lo, hi in ranges]))
        out = OnChip(full, val.shape, None, val.pads)
        self.cache[ck] = out
        return out

    # -- layers -------------------------------------------------------------
    def layer(self, op: Operation) -> None:
        if isinstance(op, nn.Conv2DOp):
            return self.conv(op)
        if isinstance(op, (nn.MaxPoolOp, nn.AvgPoolOp, nn.GlobalAvgPoolOp)):
            return self.pool(op)
        if type(op) in ELTWISE:
            return self.eltwise(op, ELTWISE[type(op)], list(op.operands), eltwise_params(op))
        if isinstance(op, nn.BatchNormOp) and self.lw.bn_is_constant(op):
            s, t = self.lw.bn_constants(op)
            return self.eltwise(op, None, [op.input, s, t], {})
        if isinstance(op, nn.ReshapeOp):
            return self.reshape(op)
        if isinstance(op, (nn.GemmOp, nn.MatMulOp)):
            return self.matmul(op)
        raise NotOnChip

    def conv(self, op: nn.Conv2DOp) -> None:
        kb, lw = self.kb, self.lw
        n, ci, h, w = shape_of(op.input)
        co, cig, kh, kw = shape_of(op.weight)
        g = ival(op.groups)
        cog = co // g
        pads = vals(op.pads)
        src = self.vals.get(op.input)
        if g == 1:
            split = make_split(co, self.cores, self.t.mac_lanes_out)
            if src is None:
                ck = ("full", op.input, pads)
                if ck not in self.cache:
                    self.cache[ck] = self.load_split(op.input, None, pads, 0.0, whole_cores=self.readers(op.input))
                x = self.cache[ck]
            else:
                x = self.gathered(self.padded(src, pads, 0.0, op.input), op.input)
        else:
            if src is not None:
                if src.split is None or src.split.chunk % cig:
                    raise NotOnChip
                split = Split(co, src.split.chunk // cig * cog, src.split.active)
                x = self.padded(src, pads, 0.0, op.input)
            else:
                split = make_split(co, self.cores, self.t.mac_lanes_out, cog)
                in_split = Split(ci, split.chunk // cog * cig, split.active)
                x = self.load_split(op.input, in_split, pads, 0.0)
        kb.note_active(split.active)
        name = lw.value_name(op.output)
        ranges = self.spans(split)
        wbuf = kb.alloc((split.chunk, cig, kh, kw), "wram", f"{name}_w")
        kb.load(wbuf, self.dram(op.weight),
                [box_entry((lo, 0, 0, 0), (hi - lo, cig, kh, kw), (0, 0, 0, 0)) for lo, hi in ranges])
        bbuf = None
        if op.bias is not None:
            bbuf = kb.alloc((split.chunk,), "wram", f"{name}_b")
            kb.load(bbuf, self.dram(op.bias), [box_entry((lo,), (hi - lo,), (0,)) for lo, hi in ranges])
        _, _, ho, wo = shape_of(op.output)
        out = kb.alloc((n, split.chunk, ho, wo), "nram", f"{name}_out")
        groups = mshape(x.buf)[1] // cig
        kb.add(accel.ConvOp(out, x.buf, wbuf, bbuf, vals(op.strides), vals(op.dilations), groups))
        self.produce(op.output, OnChip(out, shape_of(op.output), split))

    def pool(self, op: Operation) -> None:
        kb, lw = self.kb, self.lw
        n, c, h, w = shape_of(op.input)
        if isinstance(op, nn.GlobalAvgPoolOp):
            if len(shape_of(op.input)) != 4:
                raise NotOnChip
            kind, k, s, d, pads, cip = "avg", (h, w), (1, 1), (1, 1), (0, 0, 0, 0), False
        else:
            kind = "max" if isinstance(op, nn.MaxPoolOp) else "avg"
            k, s, d, pads = vals(op.kernel), vals(op.strides), op.dilation_values(), vals(op.pads)
            cip = kind == "avg" and bool(ival(op.count_include_pad))
        pad_value = NEG_INF if kind == "max" else 0.0
        src = self.vals.get(op.input)
        if src is not None:
            split = src.split
            x = self.padded(src, pads, pad_value, op.input)
        else:
            split = make_split(c, self.cores, self.t.vector_lanes)
            x = self.load_split(op.input, split, pads, pad_value)
        kb.note_active(split.active if split is not None else self.cores)
        _, _, ho, wo = shape_of(op.results[0])
        name = lw.value_name(op.results[0])
        out = kb.alloc((n, mshape(x.buf)[1], ho, wo), "nram", f"{name}_out")
        kb.add(accel.PoolOp(out, x.buf, kind, k, s, d, pads, cip))
        self.produce(op.results[0], OnChip(out, shape_of(op.results[0]), split))

    def eltwise(self, op: Operation, kind: str | None, args: list, params) -> None:
        kb, lw = self.kb, self.lw
        shape = shape_of(op.results[0])
        rank = len(shape)
        ax = split_axis(rank)
        lay = None
        for v in args:
            if isinstance(v, SSAValue) and v in self.vals:
                val = self.vals[v]
                if val.shape != shape or any(val.pads):
                    raise NotOnChip
                if lay is None:
                    lay = val
                elif (val.split is None) != (lay.split is None) or (
                    val.split is not None and val.split != lay.split
                ):
                    raise NotOnChip
        if lay is None:
            split = make_split(shape[ax], self.cores, self.t.vector_lanes) if ax is not None else None
        else:
            split = lay.split
        kb.note_active(split.active if split is not None else self.cores)
        name = lw.value_name(op.results[0])
        bufs = []
        ranges = self.spans(split) if split is not None else self.ranges(None)
        for i, v in enumerate(args):
            if isinstance(v, SSAValue) and v in self.vals:
                bufs.append(self.vals[v].buf)
                continue
            vshape = tuple(lw.dram_shape(v))
            # the operand's part of each core's output box
            entries, bshape = [], None
            for c, (lo, hi) in enumerate(ranges):
                off, size = [0] * rank, list(shape)
                if split is not None:
                    if hi <= lo:
                        entries.append(None)
                        continue
                    off[ax], size[ax] = lo, hi - lo
                o, s_ = operand_box(vshape, off, size)
                entries.append(box_entry(o, s_, (0,) * len(o)))
            full = list(shape)
            if split is not None:
                full[ax] = split.chunk
            _, bshape = operand_box(vshape, (0,) * rank, full)
            space = "wram" if lw.is_weight(v) else "nram"
            b = kb.alloc(bshape, space, f"{name}_{'in' if i == 0 else f'arg{i}'}")
            kb.load(b, self.dram(v), entries)
            bufs.append(b)
        full = list(shape)
        if split is not None:
            full[ax] = split.chunk
        first = args[0]
        fresh = not (isinstance(first, SSAValue) and first in self.vals)
        can_reuse = mshape(bufs[0]) == tuple(full) and accel.space_of(bufs[0]) == "nram" and (
            fresh or self.uses.get(first, 0) <= 1
        )
        out = bufs[0] if can_reuse else kb.alloc(full, "nram", f"{name}_out")
        if kind is None:  # batch norm: x * s + t
            kb.add(accel.EltwiseOp(out, [bufs[0], bufs[1]], "mul"))
            kb.add(accel.EltwiseOp(out, [out, bufs[2]], "add"))
        else:
            kb.add(accel.EltwiseOp(out, bufs, kind, params))
        self.produce(op.results[0], OnChip(out, shape, split))

    def reshape(self, op: nn.ReshapeOp) -> None:
        src = self.vals.get(op.input)
        if src is None:
            return  # a view of DRAM (lw.dram resolves it)
        a, b = shape_of(op.input), shape_of(op.output)
        if any(src.pads):
            raise NotOnChip
        if src.split is not None:
            if len(a) < 2 or len(b) < 2 or a[:2] != b[:2] or split_axis(len(a)) != 1:
                raise NotOnChip
            bshape = (b[0], src.split.chunk, *b[2:])
        else:
            bshape = b
        name = self.lw.value_name(op.output)
        buf = self.kb.alloc(bshape, "nram", f"{name}_out")
        self.kb.add(accel.VectorOp(buf, [src.buf], "nn.reshape", {}))
        self.produce(op.output, OnChip(buf, b, src.split))

    def matmul(self, op: Operation) -> None:
        kb, lw = self.kb, self.lw
        if isinstance(op, nn.GemmOp):
            if ival(op.trans_a):
                raise NotOnChip
            a, b, trans_b = op.a, op.b, bool(ival(op.trans_b))
        else:
            a, b, trans_b = op.lhs, op.rhs, False
            if len(shape_of(a)) != 2 or len(shape_of(b)) != 2:
                raise NotOnChip
        m, k = shape_of(a)
        n = shape_of(op.results[0])[1]
        ep = gemm_epilogue(lw, op)
        split = make_split(n, self.cores, self.t.mac_lanes_out)
        src = self.vals.get(a)
        if src is not None:
            x = self.gathered(src, a)
        else:
            ck = ("full", a, (0, 0, 0, 0))
            if ck not in self.cache:
                self.cache[ck] = self.load_split(a, None, whole_cores=self.readers(a))
            x = self.cache[ck]
        kb.note_active(split.active)
        name = lw.value_name(op.results[0])
        ranges = self.spans(split)
        if trans_b:
            wbuf = kb.alloc((split.chunk, k), "wram", f"{name}_w")
            kb.load(wbuf, self.dram(b), [box_entry((lo, 0), (hi - lo, k), (0, 0)) for lo, hi in ranges])
        else:
            wbuf = kb.alloc((k, split.chunk), "wram", f"{name}_w")
            kb.load(wbuf, self.dram(b), [box_entry((0, lo), (k, hi - lo), (0, 0)) for lo, hi in ranges])
        bbuf = None
        if ep.bias is not None:
            bbuf = kb.alloc((split.chunk,), "wram", f"{name}_b")
            self.dram(ep.bias[1] if isinstance(ep.bias, tuple) else ep.bias)  # not computed here
            kb.load(bbuf, lw.dram(ep.bias), [box_entry((lo,), (hi - lo,), (0,)) for lo, hi in ranges])
        out = kb.alloc((m, split.chunk), "nram", f"{name}_out")
        kb.add(accel.MatMulOp(out, x.buf, wbuf, bbuf, trans_b))
        every = [box_entry((0, 0), (1, 1), (0, 0)) for _ in range(self.cores)]
        if ep.alpha is not None:
            ab = kb.alloc((1, 1), "wram", f"{name}_alpha")
            kb.load(ab, lw.dram(ep.alpha), every)
            kb.add(accel.EltwiseOp(out, [out, ab], "mul"))
        if ep.c is not None:
            _, cs = operand_box(ep.c_shape, (0, 0), (m, split.chunk))
            cb = kb.alloc(cs, "nram", f"{name}_c")
            entries = []
            for lo, hi in ranges:
                if hi <= lo:
                    entries.append(None)
                    continue
                o, s_ = operand_box(ep.c_shape, (0, lo), (m, hi - lo))
                entries.append(box_entry(o, s_, (0,) * len(o)))
            kb.load(cb, self.dram(ep.c), entries)
            if ep.beta is not None:
                bb = kb.alloc((1, 1), "wram", f"{name}_beta")
                kb.load(bb, lw.dram(ep.beta), every)
                kb.add(accel.EltwiseOp(cb, [cb, bb], "mul"))
            kb.add(accel.EltwiseOp(out, [out, cb], "add"))
        self.produce(op.results[0], OnChip(out, shape_of(op.results[0]), split))


# --------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LowerToAccelPass(ModulePass):
    """Lower the nn module (fusion groups and core numbers included) to one
    `accel.program` for `target` (a shipped target's name or a .toml path)."""

    name = "lower-to-accel"
    target: str = "mlu100"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = load_target(self.target)
        program = Lowering(ctx, target, op).run()
        old = op.body.block
        op.body.detach_block(old)
        op.body.add_block(Block([program]))
        old.drop_all_references()
