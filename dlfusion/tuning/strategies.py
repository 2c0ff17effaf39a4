"""Fusion / core-number strategies.

A strategy maps a model's layer graph to a plan: a partition of the layers
into convex groups, each with a core number. All of them share one signature

    strategy(graph: LayerGraph, ctx: StrategyContext) -> list[Group]

and are registered in `STRATEGIES` by name (the `strategy=` option of
`fuse-layers` and of `dlfusion-tune`). `StrategyContext` carries the target,
the measurement layer (for strategies that search) and options.

| strategy | groups | cores |
|---|---|---|
| `baseline` | every layer alone | 1 (the paper's unoptimized baseline) |
| `cores-only` | every layer alone | the measured best per layer |
| `fusion-only` | the `dlfusion` heuristic's groups | 1 |
| `dlfusion` | joint heuristic from the characterization table (no measurement) | heuristic |
| `dp` | exact DP over segments of a topological order, measured and memoized | measured best per group |
| `exhaustive` | every convex grouping x every core number (size guard) | measured |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group, LayerGraph
from dlfusion.targets import AcceleratorTarget


@dataclass
class StrategyContext:
    target: AcceleratorTarget
    measurer: object | None = None  # dlfusion.tuning.measure.Measurer
    options: dict = field(default_factory=dict)

    def core_choices(self) -> list[int]:
        """Core numbers a strategy may choose: 1..cores of the target."""
        return list(range(1, self.target.cores + 1))

    def need_measurer(self, strategy: str):
        if self.measurer is None:
            raise DlfusionError(f"strategy '{strategy}' measures kernels but no measurer was given")
        return self.measurer


Strategy = Callable[[LayerGraph, StrategyContext], list[Group]]
STRATEGIES: dict[str, Callable[[], Strategy]] = {}


def register(name: str):
    def deco(fn):
        STRATEGIES[name] = lambda: fn
        return fn

    return deco


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise DlfusionError(
            f"unknown strategy '{name}'", hint=f"choose one of {', '.join(sorted(STRATEGIES))}"
        )
    return STRATEGIES[name]()


def best_cores(
    measurer, layers: Sequence, choices: Sequence[int]
) -> tuple[int, float]:
    """The measured best core number for one kernel configuration (ties go
    to fewer cores)."""
    costs = measurer.costs([(layers, c) for c in choices])
    best = min(range(len(choices)), key=lambda i: (costs[i], choices[i]))
    return choices[best], costs[best]


@register("baseline")
def baseline(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """Every layer its own kernel on one core."""
    return [Group([name], 1) for name in graph.names]


@register("cores-only")
def cores_only(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """No fusion; each layer on its measured best core number."""
    m = sctx.need_measurer("cores-only")
    choices = sctx.core_choices()
    groups = []
    for name, op in zip(graph.names, graph.layers):
        cores, _ = best_cores(m, [op], choices)
        groups.append(Group([name], cores))
    return groups
