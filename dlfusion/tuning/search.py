"""Measured searches over fusion groupings and core numbers: `dp` and `exhaustive`.

Both search the same space: every partition of the layers into fusion groups
of at most `max_group` layers that can run as kernels one after another,
each group on any core number of `StrategyContext.core_choices()`. Every
group's cost is *measured* (cut out, lowered, simulated; see
`dlfusion.tuning.measure`); a plan's latency is the sum of its groups' costs,
so the best core number of a group does not depend on the other groups and
both searches take, per group, the measured minimum over the core numbers.

Valid groupings
---------------
A partition is valid when its groups can run one after another: the graph
whose nodes are the groups (an edge where a feature map goes from one group
to another) is acyclic. That implies every group is *convex* (a path that
left a group and came back would be a cycle G -> ... -> G); the converse does
not hold (two convex groups {a, d}, {b, c} with edges a->b, c->d form a
cycle), so both searches check the partition, not only its groups.

Equivalently, a partition is valid iff some topological order of the layers
makes every group contiguous. Hence:

`dp` (`space=ideals`) — dynamic programming over the *ideals* of the DAG (the
sets of layers closed under predecessors; they are exactly the prefixes of
all topological orders). From an ideal A a step takes any nonempty group G of
at most `max_group` layers with A ∪ G an ideal (G is then convex and ready),
and

    best(A) = min over G of  cost(G) + best(A ∪ G),      best(all layers) = 0.

Every valid partition is a path from the empty ideal to the full one (order
its groups topologically) and every path is a valid partition, so the DP is
exact over the whole space: it equals `exhaustive` wherever both run (the
tests check it). It is polynomial for graphs of bounded *width* (the number
of layers that can be pending at once): a chain has n + 1 ideals and
n * max_group groups; a residual block adds a factor of the shortcut's
length; an inception block with four branches multiplies the groups by the
ways to take a few layers off each branch. Measured counts with max_group=8
(after fold-batchnorm): ResNet-50 has 143 ideals and 1,178 groups (948
segments of the program order), DenseNet-121 369 ideals, 2,916 groups;
GoogLeNet 2,714 ideals and 63,820 groups, Inception-v3 far more.

How branches are handled:
- residual blocks: a group may hold the shortcut's layers together with any
  part of the main branch that is ready, e.g. the projection conv with the
  block's first conv (two kernels reading the same input become one), or the
  last conv, the projection and the add (the join fused with both tails);
- inception branches: a group may take a few layers from each branch (a
  group with several inputs and outputs; `apply_groups` wires them), or the
  branches' tails together with the concat;
- dense connections (DenseNet): a layer reads the concatenation of all the
  earlier ones; a group's inputs are every feature map it reads from outside,
  however far back it was produced, and the width stays small (ideals ~ n).
Nothing valid is skipped; what the space leaves out is only what cannot run
as consecutive kernels (cyclic partitions) and groups over `max_group`.

`dp` (`space=order`) — the cheaper variant: ideals restricted to the prefixes
of the program's own topological order, i.e. groups are contiguous segments
[j, i) of the program order (always convex and acyclic): n * max_group
groups for any graph. It cannot express groups that are valid but not
contiguous in that order (a group taking the head of two parallel branches
while their tails go elsewhere). It equals exhaustive on chains; on
branching graphs it can be worse. Measured on mlu100 (max_group 8, core
choices 1..32 by powers of two): equal to exhaustive on a ResNet-18 basic
block, a ResNet-50 bottleneck, a DenseNet-121 dense-block window and
GoogLeNet's inception3a without branch 3; 1.3% worse on inception3a's
branches 2 and 3 with the concat (the optimum fuses branch 3's first conv
with branch 2's head; `test_search.py` keeps this case); on whole models
0.3% worse on ResNet-18 (999.3 us against 996.4 us) and 1.2% on ResNet-50
(2,834.1 us against 2,801.6 us), in about half (ResNet-18) and a third
(ResNet-50) of the search time.

`space=auto` (the default) searches ideals unless they have more than
`dp-max-groups` distinct groups (default 4000; GoogLeNet and Inception-v3
pass it) and the graph has more groupings than `exhaustive` would enumerate
(`max-configs`), in which case it searches the program order and says so on
stderr and in the plan's stats. So with the same options dp equals
exhaustive wherever exhaustive finishes.

`exhaustive` enumerates every valid partition honestly (block by block, the
block holding the lowest unassigned layer next, pruning a partial partition
as soon as its group graph — unassigned layers as their own nodes — has a
cycle, which no completion can break), measures every group on every core
number and takes the minimum over partitions of the sum of group minima. It
stops with a one-line error past `max-configs` groupings (default 20,000).

Work: measurements are batched per chunk of groups through the measurer (in
parallel with `jobs`), and memoized by structure twice: the measurer keys
configurations by their canonical text (ResNet's repeated bottlenecks are
measured once; the tuning-record cache makes a second search free), and the
search keys a group by the text of its kernel so that repeated groups skip
even the text of their other core numbers.

`window(graph, layers)` cuts a sub-graph out of a model (edges from outside
become inputs) to search, or to compare dp with exhaustive, on a part of a
model too large for exhaustive.

Core numbers: `StrategyContext.core_choices()` — the `core-choices` option,
else the target's `core_choices` list when it has one, else 1..cores.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group, LayerGraph
from dlfusion.tuning.strategies import StrategyContext, register

DEFAULT_MAX_GROUP = 8
DEFAULT_MAX_CONFIGS = 20_000
DEFAULT_DP_MAX_GROUPS = 4_000
SPACES = ("auto", "ideals", "order")


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def window(graph: LayerGraph, layers) -> LayerGraph:
    """The sub-graph of some layers (names or indices) of a model, for
    searching a window of a large model: edges from outside the window
    become inputs. Its layers are the model's own ops (measured as they are)."""
    ids = sorted(graph.ids(layers) if all(isinstance(x, str) for x in layers) else set(layers))
    pos = {old: new for new, old in enumerate(ids)}
    sub = LayerGraph(
        [graph.layers[i] for i in ids],
        [graph.names[i] for i in ids],
        [{pos[p] for p in graph.preds[i] if p in pos} for i in ids],
        [{pos[s] for s in graph.succs[i] if s in pos} for i in ids],
    )
    sub.index = {op: i for i, op in enumerate(sub.layers)}
    sub.by_name = {n: i for i, n in enumerate(sub.names)}
    return sub


# --------------------------------------------------------------------------
# group costs: measured, memoized by structure
# --------------------------------------------------------------------------


class GroupCosts:
    """The best core number and its latency for sets of layers (bit masks of
    layer indices), measured through a `Measurer` and memoized."""

    def __init__(self, graph: LayerGraph, measurer, choices: Sequence[int], chunk: int = 256,
                 progress: Callable[[int, int], None] | None = None):
        if not choices:
            raise DlfusionError("no core numbers to choose from")
        self.graph = graph
        self.measurer = measurer
        self.choices = list(choices)
        self.chunk = max(chunk, len(self.choices))
        self.progress = progress
        self._best: dict[int, tuple[int, float]] = {}
        self._key: dict[int, str] = {}
        self._by_key: dict[str, tuple[int, float]] = {}
        self.groups = 0  # distinct layer sets asked for
        self.unique = 0  # distinct structures among them

    def layers(self, mask: int):
        return [self.graph.layers[i] for i in _bits(mask)]

    def _structure(self, mask: int) -> str:
        key = self._key.get(mask)
        if key is None:
            from dlfusion.tuning.measure import kernel_text

            text = kernel_text(self.layers(mask), self.choices[0])
            key = hashlib.sha256(text.encode()).hexdigest()
            self._key[mask] = key
        return key

    def measure(self, masks: Iterable[int]) -> None:
        """Measure every group not known yet, in batches of `chunk` configurations."""
        new = [m for m in dict.fromkeys(masks) if m not in self._best]
        todo: dict[str, int] = {}
        for mask in new:
            key = self._structure(mask)
            if key not in self._by_key and key not in todo:
                todo[key] = mask
        items = list(todo.items())
        k = len(self.choices)
        per_chunk = max(1, self.chunk // k)
        for start in range(0, len(items), per_chunk):
            part = items[start : start + per_chunk]
            costs = self.measurer.costs([(self.layers(m), c) for _, m in part for c in self.choices])
            for j, (key, _) in enumerate(part):
                row = costs[j * k : (j + 1) * k]
                best = min(range(k), key=lambda i: (row[i], self.choices[i]))
                self._by_key[key] = (self.choices[best], float(row[best]))
            self.unique += len(part)
            if self.progress is not None:
                self.progress(start + len(part), len(items))
        for mask in new:
            self._best[mask] = self._by_key[self._key[mask]]
        self.groups += len(new)

    def best(self, mask: int) -> tuple[int, float]:
        if mask not in self._best:
            self.measure([mask])
        return self._best[mask]


# --------------------------------------------------------------------------
# the spaces: ideals of the DAG, or prefixes of the program order
# --------------------------------------------------------------------------


class Space:
    def __init__(self, graph: LayerGraph, max_group: int):
        if max_group < 1:
            raise DlfusionError(f"max-group must be at least 1, got {max_group}")
        self.n = len(graph)
        self.max_group = max_group
        self.pred_mask = [sum(1 << p for p in graph.preds[v]) for v in range(self.n)]
        self.succs = [sorted(s) for s in graph.succs]
        self.full = (1 << self.n) - 1

    def steps(self, done: int) -> list[int]:
        raise NotImplementedError


class OrderSpace(Space):
    """Groups are segments [i, i+k) of the program order (k <= max_group)."""

    name = "order"

    def steps(self, done: int) -> list[int]:
        i = done.bit_length()
        out, mask = [], 0
        for v in range(i, min(self.n, i + self.max_group)):
            mask |= 1 << v
            out.append(mask)
        return out


class IdealSpace(Space):
    """Groups G with done ∪ G an ideal (closed under predecessors), |G| <= max_group."""

    name = "ideals"

    def steps(self, done: int) -> list[int]:
        out: list[int] = []
        pred = self.pred_mask
        n = self.n
        # layers whose predecessors are all done: the start of the frontier
        first = [v for v in range(n) if not (done >> v) & 1 and pred[v] & ~done == 0]

        def ready_after(group: int, cands: list[int], v: int) -> list[int]:
            """cands plus successors of v that became ready once v joined."""
            have = done | group
            new = [s for s in self.succs[v] if not (have >> s) & 1 and pred[s] & ~have == 0]
            return sorted(set(cands) | set(new)) if new else cands

        def rec(group: int, size: int, cands: list[int], excluded: int) -> None:
            # each ideal of the remainder is reached once: the lowest ready
            # candidate is either taken or excluded for good (and with it
            # everything after it, which can never become ready)
            live = [c for c in cands if not (excluded >> c) & 1]
            if not live:
                if group:
                    out.append(group)
                return
            r = live[0]
            if size < self.max_group:
                g2 = group | (1 << r)
                rec(g2, size + 1, ready_after(g2, live[1:], r), excluded)
            rec(group, size, live[1:], excluded | (1 << r))

        rec(0, 0, first, 0)
        return out


@dataclass
class SpaceGraph:
    """The states (done sets) reachable from nothing, and their steps."""

    states: list[int]
    steps: dict[int, list[int]]

    @property
    def groups(self) -> set[int]:
        return {g for gs in self.steps.values() for g in gs}

    @property
    def transitions(self) -> int:
        return sum(len(gs) for gs in self.steps.values())


def explore(space: Space, limit: int | None = None) -> SpaceGraph | None:
    """Every reachable state and its steps; None once more than `limit`
    distinct groups turn up."""
    steps: dict[int, list[int]] = {}
    stack = [0]
    seen = {0}
    groups: set[int] = set()
    while stack:
        done = stack.pop()
        if done == space.full:
            steps[done] = []
            continue
        gs = space.steps(done)
        steps[done] = gs
        if limit is not None:
            groups.update(gs)
            if len(groups) > limit:
                return None
        for g in gs:
            nxt = done | g
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    states = sorted(seen, key=lambda s: (s.bit_count(), s))
    return SpaceGraph(states, steps)


def solve(sg: SpaceGraph, costs: GroupCosts, full: int) -> tuple[float, list[int]]:
    """Shortest path from the empty state to `full` (ties: fewer groups)."""
    best: dict[int, tuple[float, int, int, int]] = {0: (0.0, 0, -1, 0)}
    for state in sg.states:  # by increasing size: every step grows the state
        here = best.get(state)
        if here is None:
            continue
        for g in sg.steps[state]:
            _, c = costs.best(g)
            cand = (here[0] + c, here[1] + 1, state, g)
            nxt = state | g
            old = best.get(nxt)
            if old is None or cand[:2] < old[:2]:
                best[nxt] = cand
    if full not in best:  # pragma: no cover - every space reaches the full set
        raise DlfusionError("internal error: the search found no plan")
    groups = []
    state = full
    while state:
        _, _, prev, g = best[state]
        groups.append(g)
        state = prev
    groups.reverse()
    return best[full][0], groups


def _groups(graph: LayerGraph, masks: Sequence[int], costs: GroupCosts) -> list[Group]:
    out = []
    for m in masks:
        cores, _ = costs.best(m)
        out.append(Group([graph.names[i] for i in _bits(m)], cores))
    return out


def _int_option(sctx: StrategyContext, name: str, default: int) -> int:
    value = sctx.options.get(name, default)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DlfusionError(f"option {name.replace('_', '-')} must be an integer, got {value!r}") from None


def _costs_for(graph: LayerGraph, sctx: StrategyContext, strategy: str) -> GroupCosts:
    m = sctx.need_measurer(strategy)
    return GroupCosts(graph, m, sctx.core_choices(), progress=sctx.options.get("progress"))


def _note(sctx: StrategyContext, text: str) -> None:
    log = sctx.options.get("log")
    if log is None:
        print(f"dlfusion: {text}", file=sys.stderr)
    elif callable(log):
        log(text)


# --------------------------------------------------------------------------
# dp
# --------------------------------------------------------------------------


def pick_space(graph: LayerGraph, sctx: StrategyContext) -> tuple[Space, SpaceGraph]:
    space_name = str(sctx.options.get("space", "auto") or "auto")
    if space_name not in SPACES:
        raise DlfusionError(f"unknown dp space '{space_name}'", hint=f"choose one of {', '.join(SPACES)}")
    k = _int_option(sctx, "max_group", DEFAULT_MAX_GROUP)
    if space_name == "order":
        space = OrderSpace(graph, k)
        return space, explore(space)  # type: ignore[return-value]
    space = IdealSpace(graph, k)
    if space_name == "ideals":
        return space, explore(space)  # type: ignore[return-value]
    limit = _int_option(sctx, "dp_max_groups", DEFAULT_DP_MAX_GROUPS)
    sg = explore(space, limit)
    if sg is not None:
        return space, sg
    guard = _int_option(sctx, "max_configs", DEFAULT_MAX_CONFIGS)
    if compositions(len(graph), k) <= guard and count_groupings(graph, k, guard) is not None:
        # exhaustive would finish here: stay exact, whatever it costs
        return space, explore(space)  # type: ignore[return-value]
    order = OrderSpace(graph, k)
    _note(
        sctx,
        f"dp: the graph's convex groupings need more than {limit} distinct groups "
        f"(dp-max-groups); searching segments of the program order instead "
        f"(space=ideals forces the full space)",
    )
    return order, explore(order)  # type: ignore[return-value]


@register("dp")
def dp(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """Exact DP over the valid groupings (see the module docstring), each
    group on its measured best core number."""
    t0 = time.perf_counter()
    costs = _costs_for(graph, sctx, "dp")
    m0 = costs.measurer.measurements
    space, sg = pick_space(graph, sctx)
    groups = sg.groups
    costs.measure(sorted(groups, key=lambda g: (g & -g, g)))
    latency, masks = solve(sg, costs, space.full)
    sctx.stats.update(
        {
            "space": space.name,
            "max_group": space.max_group,
            "core_choices": costs.choices,
            "states": len(sg.states),
            "transitions": sg.transitions,
            "groups": len(groups),
            "distinct_groups": costs.unique,
            "configurations": costs.unique * len(costs.choices),
            "measurements": costs.measurer.measurements - m0,
            "latency_us": latency,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return _groups(graph, masks, costs)


# --------------------------------------------------------------------------
# exhaustive
# --------------------------------------------------------------------------


class TooManyGroupings(Exception):
    pass


def _acyclic(n: int, blocks: Sequence[int], pred_mask: Sequence[int]) -> bool:
    """Is the graph of `blocks` (plus every other layer as its own node) acyclic?"""
    node = list(range(len(blocks), len(blocks) + n))
    for b, mask in enumerate(blocks):
        for v in _bits(mask):
            node[v] = b
    total = len(blocks) + n
    succ: list[set[int]] = [set() for _ in range(total)]
    indeg = [0] * total
    for v in range(n):
        for p in _bits(pred_mask[v]):
            a, b = node[p], node[v]
            if a != b and b not in succ[a]:
                succ[a].add(b)
                indeg[b] += 1
    used = set(node)
    ready = [x for x in used if indeg[x] == 0]
    seen = 0
    while ready:
        x = ready.pop()
        seen += 1
        for y in succ[x]:
            indeg[y] -= 1
            if indeg[y] == 0:
                ready.append(y)
    return seen == len(used)


def groupings(graph: LayerGraph, max_group: int, limit: int | None = None) -> Iterator[list[int]]:
    """Every valid partition of the layers into groups of at most `max_group`
    (bit masks, each partition once); raises TooManyGroupings past `limit`."""
    from itertools import combinations

    n = len(graph)
    if max_group < 1:
        raise DlfusionError(f"max-group must be at least 1, got {max_group}")
    pred_mask = [sum(1 << p for p in graph.preds[v]) for v in range(n)]
    count = 0
    blocks: list[int] = []

    def rec(free: int) -> Iterator[list[int]]:
        nonlocal count
        if not free:
            count += 1
            if limit is not None and count > limit:
                raise TooManyGroupings(count)
            yield list(blocks)
            return
        low = free & -free
        rest = _bits(free ^ low)
        for k in range(0, min(max_group, len(rest) + 1)):
            for extra in combinations(rest, k):
                block = low | sum(1 << v for v in extra)
                blocks.append(block)
                if _acyclic(n, blocks, pred_mask):
                    yield from rec(free ^ block)
                blocks.pop()

    yield from rec((1 << n) - 1)


def compositions(n: int, k: int) -> int:
    """The number of ways to cut a chain of n layers into segments of at
    most k: a lower bound on the valid groupings of any n-layer graph."""
    ways = [1] + [0] * n
    for i in range(1, n + 1):
        ways[i] = sum(ways[i - j] for j in range(1, min(k, i) + 1))
    return ways[n]


def count_groupings(graph: LayerGraph, max_group: int, limit: int) -> int | None:
    """The number of valid groupings, or None past `limit`."""
    try:
        return sum(1 for _ in groupings(graph, max_group, limit))
    except TooManyGroupings:
        return None


@register("exhaustive")
def exhaustive(graph: LayerGraph, sctx: StrategyContext) -> list[Group]:
    """Every valid grouping x every core number, with a guard on the number
    of groupings (`max-configs`)."""
    t0 = time.perf_counter()
    k = _int_option(sctx, "max_group", DEFAULT_MAX_GROUP)
    guard = _int_option(sctx, "max_configs", DEFAULT_MAX_CONFIGS)
    # the segments of the program order alone are compositions of n with
    # parts <= k: a lower bound that needs no enumeration
    at_least = compositions(len(graph), k)
    try:
        if at_least > guard:
            raise TooManyGroupings(at_least)
        parts = list(groupings(graph, k, guard))
    except TooManyGroupings as exc:
        raise DlfusionError(
            f"exhaustive search space has at least {exc.args[0]:,} groupings of {len(graph)} layers "
            f"(> guard max-configs={guard})",
            hint="use strategy=dp or raise max-configs",
        ) from None
    costs = _costs_for(graph, sctx, "exhaustive")
    m0 = costs.measurer.measurements
    blocks = sorted({b for p in parts for b in p}, key=lambda g: (g & -g, g))
    costs.measure(blocks)
    best: tuple[float, int] | None = None
    best_part: list[int] = []
    for p in parts:
        total = sum(costs.best(b)[1] for b in p)
        if best is None or (total, len(p)) < best:
            best, best_part = (total, len(p)), p
    assert best is not None
    ordered = _topological_blocks(graph, best_part)
    sctx.stats.update(
        {
            "space": "all",
            "max_group": k,
            "core_choices": costs.choices,
            "groupings": len(parts),
            "groups": len(blocks),
            "distinct_groups": costs.unique,
            "configurations": len(blocks) * len(costs.choices),
            "measurements": costs.measurer.measurements - m0,
            "latency_us": best[0],
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return _groups(graph, ordered, costs)


def _topological_blocks(graph: LayerGraph, blocks: Sequence[int]) -> list[int]:
    """The blocks of a valid partition in an order they can run in."""
    n = len(graph)
    pred_mask = [sum(1 << p for p in graph.preds[v]) for v in range(n)]
    left = sorted(blocks, key=lambda b: b & -b)
    done = 0
    out = []
    while left:
        for b in left:
            need = 0
            for v in _bits(b):
                need |= pred_mask[v]
            if need & ~b & ~done == 0:
                out.append(b)
                done |= b
                left.remove(b)
                break
        else:  # pragma: no cover - groupings() yields acyclic partitions only
            raise DlfusionError("internal error: cyclic grouping")
    return out
