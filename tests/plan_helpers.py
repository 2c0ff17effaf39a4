"""Test helpers: put the layers of an nn module into `nn.fusion_group`s.

    plan_all(module, cores=4)            # every layer its own group, 4 cores
    random_plan(module, seed=1, max_cores=8)

Groups are runs of consecutive layers of `@main` (program order is a
topological order, so a run is convex: no path leaves it and comes back).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue

from dlfusion.dialects import nn
from dlfusion.grouping import wrap_layers


def main_block(module: ModuleOp) -> Block:
    for op in module.body.block.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == "main":
            return op.body.block
    raise ValueError("no @main")


def layers_of(module: ModuleOp) -> list[Operation]:
    return [
        op
        for op in main_block(module).ops
        if not isinstance(op, (nn.WeightOp, func.ReturnOp, nn.FusionGroupOp))
    ]


def wrap(ops: Sequence[Operation], name: str, cores: int | None) -> nn.FusionGroupOp:
    """Replace consecutive `ops` of one block by an nn.fusion_group."""
    return wrap_layers(ops, name, cores)


def plan_all(module: ModuleOp, cores: int | None) -> ModuleOp:
    """Every layer in a group of its own with `cores` cores."""
    for i, op in enumerate(layers_of(module)):
        wrap([op], f"g{i}", cores)
    return module


def random_plan(module: ModuleOp, seed: int, max_cores: int, max_len: int = 4) -> ModuleOp:
    """Runs of 1..max_len consecutive layers as groups with random core
    numbers in 1..max_cores (now and then a layer is left outside any group,
    or a group without a core number)."""
    rng = random.Random(seed)
    layers = layers_of(module)
    i = g = 0
    while i < len(layers):
        n = rng.randint(1, max_len)
        run = layers[i : i + n]
        i += n
        roll = rng.random()
        if roll < 0.1 and len(run) == 1:
            continue  # left alone: one kernel on one core
        cores = None if roll < 0.15 else rng.randint(1, max_cores)
        wrap(run, f"g{g}", cores)
        g += 1
    return module
