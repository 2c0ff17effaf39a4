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
| `dp` | exact DP over the valid groupings (ideals of the DAG; or segments of the program order), measured and memoized | measured best per group |
| `exhaustive` | every valid grouping x every core number (size guard) | measured |

`dp` and `exhaustive` live in `dlfusion.tuning.search`, `dlfusion` and
`fusion-only` in `dlfusion.tuning.heuristic`; `get_strategy` imports those
modules on first need, so the registry fills itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group, LayerGraph
from dlfusion.targets import AcceleratorTarget


@dataclass
class StrategyContext:
    """What a strategy gets besides the graph. `options` are the strategy's
    knobs (`max_group`, `max_configs`, `space`, `core_choices`, ...: the pass
    options of `fuse-layers`, with underscores); a strategy reports what it
    did (counts, times, the space it searched) in `stats`, which plans keep."""

    target: AcceleratorTarget
    measurer: object | None = None  # dlfusion.tuning.measure.Measurer
    options: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def core_choices(self) -> list[int]:
        """Core numbers a strategy may choose: the `core_choices` option, else
        the target's `core_choices` list if its file has one, else 1..cores."""
        given = self.options.get("core_choices")
        if not given:
            given = getattr(self.target, "core_choices", None)
        if not given:
            return list(range(1, self.target.cores + 1))
        choices = sorted({int(c) for c in given})
        bad = [c for c in choices if c < 1 or c > self.target.cores]
        if bad:
            raise DlfusionError(
                f"core choice {bad[0]} is not within 1..{self.target.cores} "
                f"(the cores of target '{self.target.name}')"
            )
        return choices

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


# modules that register strategies when imported (the registry fills itself)
STRATEGY_MODULES = ("dlfusion.tuning.search", "dlfusion.tuning.heuristic")


def load_strategies() -> None:
    """Import every module that registers strategies (a missing one is skipped)."""
    import importlib

    for mod in STRATEGY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def strategy_names() -> list[str]:
    load_strategies()
    return sorted(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        load_strategies()
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
    k = len(choices)
    before = getattr(m, "measurements", 0)
    # one batch for the whole model (parallel with jobs; repeated layers are
    # measured once by the measurer)
    costs = m.costs([([op], c) for op in graph.layers for c in choices])
    groups = []
    total = 0.0
    for i, name in enumerate(graph.names):
        row = costs[i * k : (i + 1) * k]
        best = min(range(k), key=lambda j: (row[j], choices[j]))
        groups.append(Group([name], choices[best]))
        total += row[best]
    sctx.stats.update({"core_choices": choices, "latency_us": total,
                       "measurements": getattr(m, "measurements", 0) - before})
    return groups
