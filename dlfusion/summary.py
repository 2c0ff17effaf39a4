"""`-t nn-summary`: a per-layer table of an `nn` module, with totals.

    dlfusion-opt resnet50.onnx -t nn-summary
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import IO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.target import Target

from dlfusion.dialects import nn
from dlfusion.layer_stats import is_layer, macs, output_elements, weight_elements


def _shape(op) -> str:
    return ",".join("x".join(map(str, nn.shape_of(r))) for r in op.results)


@dataclass(frozen=True)
class SummaryTarget(Target):
    """Print one line per layer (name, op, output shape, MACs, weights) and
    the totals; `layers=false` prints the totals only."""

    name = "nn-summary"
    layers: bool = True

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        rows = []
        kinds: Counter[str] = Counter()
        total_macs = total_w = 0
        groups = 0
        for op in module.walk():
            if isinstance(op, nn.FusionGroupOp):
                groups += 1
            if not is_layer(op):
                continue
            m, w = macs(op), weight_elements(op)
            total_macs += m
            total_w += w
            kinds[op.name.removeprefix("nn.")] += 1
            name = op.results[0].name_hint or "-"
            rows.append((name, op.name.removeprefix("nn."), _shape(op), m, w))
        weights = {
            op.key: op.result.type
            for op in module.walk()
            if isinstance(op, nn.WeightOp)
        }
        weight_bytes = sum(_bytes(t) for t in weights.values())
        if self.layers:
            width = max([len(r[0]) for r in rows] + [5])
            output.write(f"{'layer':<{width}}  {'op':<16} {'output':<20} {'MACs':>14} {'weights':>11}\n")
            for name, kind, shape, m, w in rows:
                output.write(f"{name:<{width}}  {kind:<16} {shape:<20} {m:>14,} {w:>11,}\n")
            output.write("\n")
        output.write(f"layers: {len(rows)} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})\n")
        if groups:
            output.write(f"fusion groups: {groups}\n")
        output.write(f"MACs: {total_macs:,} ({total_macs / 1e9:.3f} G)\n")
        output.write(f"weight elements used by layers: {total_w:,}\n")
        output.write(f"weight tensors: {len(weights)} ({weight_bytes / 2**20:.1f} MiB)\n")


def _bytes(t) -> int:
    import math

    width = t.get_element_type().bitwidth if hasattr(t.get_element_type(), "bitwidth") else 32
    return math.prod(t.get_shape()) * max(width, 8) // 8
