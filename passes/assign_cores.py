"""`assign-cores`: set the core number of every `nn.fusion_group`.

    dlfusion-opt model.mlir -p 'fuse-layers{strategy=dp set-cores=false},assign-cores'
    dlfusion-opt model.mlir -p 'assign-cores{cores=4 override=true}'

- `strategy=measured` (the default): each group runs on the core number with
  the lowest measured latency among the core choices (the `core-choices`
  option, else the target's `core_choices`, else 1..cores; ties go to fewer
  cores). The groups are measured as kernels of their own, through the same
  measurement layer and tuning-record cache (`cache=path`, `jobs=N`) as the
  searches of `fuse-layers`, so identical groups are measured once.
- `cores=N`: every group gets N cores (1 <= N <= the target's cores).

A group that already has a core number keeps it unless `override=true`.
Layers outside any group stay single-core kernels. A module without fusion
groups is an error (run `fuse-layers` first).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from dlfusion.dialects import nn
from dlfusion.errors import DlfusionError

CORE_STRATEGIES = ("measured",)


def _groups_of(module: ModuleOp) -> list[nn.FusionGroupOp]:
    from dlfusion.grouping import main_function

    return [op for op in main_function(module).body.block.ops if isinstance(op, nn.FusionGroupOp)]


def standalone_layers(group: nn.FusionGroupOp) -> tuple[list[Operation], list[Operation]]:
    """Clones of the group's layers that use the group's operands directly (so
    weights are `nn.weight` results again) and an unattached op that uses what
    the group yields (so those values count as the kernel's outputs). The
    clones are attached nowhere; `release` drops them."""
    mapping: dict[SSAValue, SSAValue] = dict(zip(group.block.args, group.inputs))
    clones = [layer.clone(value_mapper=mapping) for layer in group.layers()]
    term = group.block.last_op
    assert isinstance(term, nn.YieldOp)
    sink = nn.YieldOp(*[mapping[v] for v in term.values])
    return clones, [sink]


def release(ops: list[Operation]) -> None:
    for op in reversed(ops):
        op.erase(safe_erase=False)


@dataclass(frozen=True)
class AssignCoresPass(ModulePass):
    """Set each fusion group's core number: measured best, or a fixed number."""

    name = "assign-cores"

    strategy: str = "measured"
    cores: int = 0
    override: bool = False
    target: str = "mlu100"
    cache: str = ""
    jobs: int = 1
    core_choices: tuple[int, ...] = ()

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from dlfusion.targets import load_target
        from dlfusion.tuning.strategies import StrategyContext

        target = load_target(self.target)
        if self.strategy not in CORE_STRATEGIES:
            raise DlfusionError(
                f"assign-cores: unknown strategy '{self.strategy}'",
                hint=f"choose one of {', '.join(CORE_STRATEGIES)}, or give cores=N",
            )
        if self.cores < 0 or self.cores > target.cores:
            raise DlfusionError(
                f"assign-cores: cores={self.cores} is not within 1..{target.cores} "
                f"(the cores of target '{target.name}')"
            )
        groups = _groups_of(op)
        if not groups:
            raise DlfusionError(
                "assign-cores: the module has no nn.fusion_group ops",
                hint="run fuse-layers first (fuse-layers{strategy=baseline} puts every layer in a group)",
            )
        todo = [g for g in groups if g.cores is None or self.override]
        if not todo:
            return
        if self.cores:
            chosen = [self.cores] * len(todo)
        else:
            options = {"core_choices": list(self.core_choices)} if self.core_choices else {}
            choices = StrategyContext(target, None, options).core_choices()
            chosen = self._measure(todo, target, choices)
        for g, n in zip(todo, chosen):
            g.properties["cores"] = IntegerAttr(n, i64)

    def _measure(self, groups: list[nn.FusionGroupOp], target, choices: list[int]) -> list[int]:
        from dlfusion.tuning.measure import Measurer

        measurer = Measurer.create(target, cache=self.cache or None, jobs=self.jobs)
        made: list[Operation] = []
        configs = []
        try:
            for g in groups:
                layers, extra = standalone_layers(g)
                made += layers + extra
                configs += [(layers, c) for c in choices]
            costs = measurer.costs(configs)
        finally:
            release(made)
            measurer.close()
        k = len(choices)
        out = []
        for i in range(len(groups)):
            row = costs[i * k : (i + 1) * k]
            out.append(choices[min(range(k), key=lambda j: (row[j], choices[j]))])
        return out
