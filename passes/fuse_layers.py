"""`fuse-layers`: regroup a model's layers into `nn.fusion_group`s with core
numbers, by a strategy or from a saved plan.

    dlfusion-opt model.mlir -p 'fuse-layers{strategy=dp cache=tune.jsonl jobs=2 save=plan.json}'
    dlfusion-opt model.mlir -p 'fuse-layers{plan=plan.json},lower-to-accel'

Every layer of `@main` ends up in a group named `g0`, `g1`, ... (in an order
the groups can run in) with its `cores`; `lower-to-accel` makes one kernel of
each. The strategies (`dlfusion.tuning.strategies`):

| strategy | what it does |
|---|---|
| `baseline` | every layer alone on 1 core (the paper's unoptimized baseline) |
| `cores-only` | every layer alone on its measured best core number |
| `dlfusion` | the joint heuristic (characterization table, no measurement) |
| `fusion-only` | the heuristic's groups on 1 core |
| `dp` | exact DP over the valid groupings, every group measured |
| `exhaustive` | every valid grouping x every core number, with a guard |

Options:

- `strategy` (default `dlfusion`), `target` (a shipped target or a .toml);
- `plan=path`: apply a plan JSON instead of searching (rejected, naming the
  first mismatch, when it was written for another model or target);
- `save=path`: write the plan (with its measured latency and the strategy's
  statistics) as JSON, after the IR is rewritten;
- `cache=path`: the tuning-record cache of the measurements; `jobs=N`:
  measure in N processes;
- `max-group` (8): the longest group `dp` and `exhaustive` consider;
  `max-configs` (20000): the guard on the groupings `exhaustive` enumerates;
  `space` (`auto`, `ideals`, `order`) and `dp-max-groups` (4000): which
  groupings `dp` searches (see `dlfusion.tuning.search`);
- `core-choices=1,2,4`: the core numbers to try (default: the target's
  `core_choices`, else 1..cores);
- `set-cores=false`: write the groups without core numbers, for
  `assign-cores` to decide;
- `table=path`: the characterization table of the `dlfusion` heuristic.

Errors are one line and leave the module untouched: an unknown strategy
(naming the valid ones), a plan for another model, an exhaustive search past
its guard, a module that already has fusion groups. A corrupted tuning-record
cache is reported on stderr and rebuilt; the pass goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from dlfusion.errors import DlfusionError


@dataclass(frozen=True)
class FuseLayersPass(ModulePass):
    """Group the layers into `nn.fusion_group`s with core numbers, by a
    strategy or from a plan file."""

    name = "fuse-layers"

    strategy: str = "dlfusion"
    target: str = "mlu100"
    plan: str = ""
    save: str = ""
    cache: str = ""
    jobs: int = 1
    max_group: int = 8
    max_configs: int = 20000
    space: str = "auto"
    dp_max_groups: int = 4000
    core_choices: tuple[int, ...] = ()
    set_cores: bool = True
    table: str = ""

    def options(self) -> dict:
        opts: dict = {
            "max_group": self.max_group,
            "max_configs": self.max_configs,
            "space": self.space,
            "dp_max_groups": self.dp_max_groups,
        }
        if self.core_choices:
            opts["core_choices"] = list(self.core_choices)
        if self.table:
            opts["table"] = self.table
        return opts

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        measurers: list = []
        try:
            self._apply(op, measurers)
        finally:
            for m in measurers:  # their worker processes end with the pass
                m.close()

    def _apply(self, op: ModuleOp, measurers: list) -> None:
        from dlfusion.grouping import Group, LayerGraph, apply_groups
        from dlfusion.targets import load_target
        from dlfusion.tuning.plan import Plan

        target = load_target(self.target)
        graph = LayerGraph.of(op)
        measurer = None
        stats: dict = {}
        latency = None
        if self.plan:
            plan = load_plan_for(self.plan, graph, target)
            groups, strategy, latency, stats = plan.groups, plan.strategy, plan.latency_us, plan.stats
        else:
            from dlfusion.tuning.measure import Measurer
            from dlfusion.tuning.strategies import StrategyContext, get_strategy

            run = get_strategy(self.strategy)
            measurer = Measurer.create(target, cache=self.cache or None, jobs=self.jobs)
            measurers.append(measurer)
            sctx = StrategyContext(target, measurer, self.options())
            sctx.core_choices()  # a bad core-choices option fails before any search
            groups = run(graph, sctx)
            strategy, stats = self.strategy, sctx.stats
            latency = stats.get("latency_us")
        source = self.plan or f"strategy '{strategy}'"
        check_cover(graph, groups, source)
        groups = [
            Group(list(g.layers), g.cores if self.set_cores else None, f"g{i}")
            for i, g in enumerate(run_order(graph, groups, source))
        ]
        plan_out = None
        if self.save:
            if not self.set_cores:
                latency = None  # the core numbers are left to assign-cores
            elif latency is None:
                latency = plan_latency(graph, groups, target, measurer, self.cache, self.jobs, measurers)
            plan_out = Plan.for_graph(
                graph, [Group(g.layers, g.cores) for g in groups], target.name, strategy,
                latency_us=latency, stats={k: v for k, v in stats.items() if _jsonable(v)},
            )
        apply_groups(op, groups)
        if plan_out is not None:
            try:
                plan_out.save(self.save)
            except OSError as exc:
                raise DlfusionError(f"cannot write the plan: {exc.strerror}", where=self.save) from None


def load_plan_for(path: str, graph, target):
    """Read a plan and check it against the model and the target."""
    from dlfusion.tuning.plan import Plan

    plan = Plan.load(path)
    plan.check_matches(graph, source=path)
    if plan.target and plan.target != target.name:
        raise DlfusionError(
            f"the plan was made for target '{plan.target}', not '{target.name}'",
            where=path,
            hint=f"pass target={plan.target} or plan again for {target.name}",
        )
    for i, g in enumerate(plan.groups):
        if g.cores is not None and not 1 <= g.cores <= target.cores:
            raise DlfusionError(
                f"group {i} has core number {g.cores}; target '{target.name}' has "
                f"{target.cores} cores",
                where=path,
            )
    return plan


def check_cover(graph, groups, source: str) -> None:
    """Every layer in exactly one group (apply_groups checks the rest)."""
    seen: set[str] = set()
    for g in groups:
        seen.update(g.layers)
    missing = [n for n in graph.names if n not in seen]
    if missing:
        raise DlfusionError(
            f"{source} leaves layer '{missing[0]}' out of every group"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            hint="a plan must put every layer of the model in a group",
        )


def run_order(graph, groups, source: str) -> list:
    """The groups in an order they can run in (earliest first layer first),
    so that g0, g1, ... read in program order; a plan whose groups form a
    cycle is an error here, before the module is touched."""
    import heapq

    owner: dict[int, int] = {}
    ids = []
    for gi, g in enumerate(groups):
        mine = graph.ids(g.layers)
        if any(i in owner for i in mine):
            return list(groups)  # a layer in two groups: apply_groups names it
        owner.update({i: gi for i in mine})
        ids.append(mine)
    for gi, mine in enumerate(ids):
        if not graph.is_convex(mine):
            raise DlfusionError(
                f"{source}: group {gi} ({', '.join(graph.names[i] for i in sorted(mine))}) is not "
                "convex: a path leaves it and comes back",
                hint="add the layers on that path to the group or split it",
            )
    succ: list[set[int]] = [set() for _ in groups]
    need = [0] * len(groups)
    for gi, mine in enumerate(ids):
        for v in mine:
            for p in graph.preds[v]:
                src = owner.get(p)
                if src is not None and src != gi and gi not in succ[src]:
                    succ[src].add(gi)
                    need[gi] += 1
    ready = [(min(mine), gi) for gi, mine in enumerate(ids) if need[gi] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, gi = heapq.heappop(ready)
        out.append(groups[gi])
        for nxt in succ[gi]:
            need[nxt] -= 1
            if need[nxt] == 0:
                heapq.heappush(ready, (min(ids[nxt]), nxt))
    if len(out) != len(groups):
        stuck = [gi for gi in range(len(groups)) if need[gi] > 0]
        names = ", ".join(groups[stuck[0]].layers)
        raise DlfusionError(
            f"{source}: the groups cannot run one after another: group {stuck[0]} ({names}) "
            "is on a cycle of groups",
            hint="every group must be convex and the groups must not depend on each other in a circle",
        )
    return out


def plan_latency(graph, groups, target, measurer, cache: str, jobs: int, made: list | None = None) -> float:
    """The plan's latency: the sum of its groups' measured costs (a measurer
    made here is appended to `made`, for the caller to close)."""
    if measurer is None:
        from dlfusion.tuning.measure import Measurer

        measurer = Measurer.create(target, cache=cache or None, jobs=jobs)
        if made is not None:
            made.append(measurer)
    configs = [([graph.layers[i] for i in sorted(graph.ids(g.layers))], g.cores or 1) for g in groups]
    return float(sum(measurer.costs(configs)))


def _jsonable(value) -> bool:
    import json

    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
