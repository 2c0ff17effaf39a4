"""Layer graphs and fusion groups: the mechanics every fusion strategy shares.

A model's layers form a DAG (edges: a feature map produced by one layer and
read by another; weights are not layers). A fusion group is a set of layers
that is *convex*: no path leaves the set and comes back into it, so the group
can run as one kernel between its producers and its consumers.

    graph = LayerGraph.of(module)
    graph.is_convex({"conv1", "relu1"})
    apply_groups(module, [Group(["conv1", "relu1"], cores=4), ...])

Layers are named by their result's name hint (from the ONNX tensor names);
`LayerGraph` makes the names unique (`name`, `name#1`, ...) in program order,
so that a plan can refer to every layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue

from dlfusion.dialects import nn
from dlfusion.errors import DlfusionError
from dlfusion.layer_stats import is_layer


def main_function(module: ModuleOp) -> func.FuncOp:
    for op in module.body.block.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == "main":
            return op
    raise DlfusionError("the module has no func.func @main", hint="import an ONNX model first")


@dataclass
class LayerGraph:
    """The layer DAG of `@main` (layers at top level; groups are unpacked)."""

    layers: list[Operation]
    names: list[str]
    preds: list[set[int]]
    succs: list[set[int]]
    index: dict[Operation, int] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def of(module: ModuleOp) -> LayerGraph:
        block = main_function(module).body.block
        layers: list[Operation] = []
        for op in block.ops:
            if isinstance(op, nn.FusionGroupOp):
                raise DlfusionError(
                    "the module already has fusion groups",
                    hint="plan on a module without nn.fusion_group ops",
                )
            if is_layer(op):
                layers.append(op)
        index = {op: i for i, op in enumerate(layers)}
        names: list[str] = []
        seen: dict[str, int] = {}
        for op in layers:
            base = op.results[0].name_hint or op.name.removeprefix("nn.")
            n = seen.get(base, 0)
            seen[base] = n + 1
            names.append(base if n == 0 else f"{base}#{n}")
        preds = [set() for _ in layers]
        succs = [set() for _ in layers]
        for i, op in enumerate(layers):
            for v in op.operands:
                owner = v.owner
                if isinstance(owner, Operation) and owner in index:
                    preds[i].add(index[owner])
                    succs[index[owner]].add(i)
        graph = LayerGraph(layers, names, preds, succs, index)
        graph.by_name = {n: i for i, n in enumerate(names)}
        return graph

    def __len__(self) -> int:
        return len(self.layers)

    def ids(self, names: Iterable[str]) -> set[int]:
        out = set()
        for n in names:
            if n not in self.by_name:
                raise DlfusionError(f"the model has no layer '{n}'")
            out.add(self.by_name[n])
        return out

    def is_convex(self, members: Iterable[int]) -> bool:
        """No path from a member through a non-member back to a member."""
        inside = set(members)
        if not inside:
            return True
        lo, hi = min(inside), max(inside)  # layer order is topological
        # nodes reachable from the set by leaving it
        frontier = [s for m in inside for s in self.succs[m] if s not in inside and s < hi]
        seen = set(frontier)
        while frontier:
            x = frontier.pop()
            for s in self.succs[x]:
                if s in inside:
                    return False
                if s not in seen and s < hi:
                    seen.add(s)
                    frontier.append(s)
        return True


@dataclass
class Group:
    """A fusion group of a plan: layer names and a core number (None: unset)."""

    layers: list[str]
    cores: int | None = None
    name: str | None = None


def wrap_layers(ops: Sequence[Operation], name: str, cores: int | None) -> nn.FusionGroupOp:
    """Replace `ops` (layers of one block, in program order, forming a convex
    set) by an `nn.fusion_group`. The group's operands are the values the
    layers use from outside (feature maps and weights); its results are the
    layers' results used outside. The group takes the place of the last layer;
    the block must be re-sorted (`sort_block`) if other ops sat between them."""
    inside = set(ops)
    inputs: list[SSAValue] = []
    for op in ops:
        for v in op.operands:
            if (not isinstance(v.owner, Operation) or v.owner not in inside) and v not in inputs:
                inputs.append(v)
    outputs = [r for op in ops for r in op.results if any(u.operation not in inside for u in r.uses)]
    body = Block(arg_types=[v.type for v in inputs])
    for arg, v in zip(body.args, inputs):
        if v.name_hint:
            arg.name_hint = v.name_hint
    mapping: dict[SSAValue, SSAValue] = dict(zip(inputs, body.args))
    for op in ops:
        body.add_op(op.clone(value_mapper=mapping))
    body.add_op(nn.YieldOp(*[mapping[r] for r in outputs]))
    group = nn.FusionGroupOp(name, inputs, [r.type for r in outputs], Region(body), cores)
    block = ops[-1].parent_block()
    assert block is not None
    block.insert_op_after(group, ops[-1])
    for r, new in zip(outputs, group.outputs):
        new.name_hint = r.name_hint
        r.replace_all_uses_with(new)
    for op in reversed(ops):
        op.detach()
        op.erase()
    return group


def sort_block(block: Block) -> None:
    """Re-order a block's ops topologically (stable: program order where free),
    keeping the terminator last."""
    ops = list(block.ops)
    term = ops[-1] if ops and ops[-1].has_trait(_terminator()) else None
    body = [op for op in ops if op is not term]
    position = {op: i for i, op in enumerate(body)}
    deps: dict[Operation, set[Operation]] = {}
    for op in body:
        deps[op] = {
            v.owner for v in op.operands if isinstance(v.owner, Operation) and v.owner in position
        }
    import heapq

    users: dict[Operation, list[Operation]] = {op: [] for op in body}
    missing = {op: len(d) for op, d in deps.items()}
    for op, d in deps.items():
        for p in d:
            users[p].append(op)
    ready = [(position[op], id(op), op) for op in body if missing[op] == 0]
    heapq.heapify(ready)
    order: list[Operation] = []
    while ready:
        _, _, op = heapq.heappop(ready)
        order.append(op)
        for u in users[op]:
            missing[u] -= 1
            if missing[u] == 0:
                heapq.heappush(ready, (position[u], id(u), u))
    if len(order) != len(body):
        raise DlfusionError("the fusion groups form a cycle", hint="every group must be convex")
    for op in body:
        op.detach()
    anchor = term
    for op in order:
        if anchor is None:
            block.add_op(op)
        else:
            block.insert_op_before(op, anchor)


def _terminator():
    from xdsl.traits import IsTerminator

    return IsTerminator


def apply_groups(module: ModuleOp, groups: Sequence[Group]) -> list[nn.FusionGroupOp]:
    """Wrap each group's layers into an `nn.fusion_group` (named `g<i>` unless
    named). Groups must be disjoint and convex; layers in no group stay."""
    graph = LayerGraph.of(module)
    taken: dict[int, int] = {}
    sets: list[list[int]] = []
    for gi, g in enumerate(groups):
        if not g.layers:
            raise DlfusionError(f"group {gi} has no layers")
        ids = graph.ids(g.layers)
        for i in ids:
            if i in taken:
                raise DlfusionError(
                    f"layer '{graph.names[i]}' is in groups {taken[i]} and {gi}",
                    hint="a layer belongs to at most one fusion group",
                )
            taken[i] = gi
        if not graph.is_convex(ids):
            raise DlfusionError(
                f"group {gi} ({', '.join(graph.names[i] for i in sorted(ids))}) is not convex: "
                "a path leaves it and comes back",
                hint="add the layers on that path to the group or split it",
            )
        if g.cores is not None and g.cores < 1:
            raise DlfusionError(f"group {gi} has core number {g.cores}; it must be positive")
        sets.append(sorted(ids))
    made = []
    for gi, (g, ids) in enumerate(zip(groups, sets)):
        made.append(wrap_layers([graph.layers[i] for i in ids], g.name or f"g{gi}", g.cores))
    sort_block(main_function(module).body.block)
    return made
