"""`annotate-layers`: attach each layer's characteristics as attributes.

Every layer op (inside fusion groups too) gets discardable attributes that
the fusion/core heuristic reads, computed from shapes alone:

| attribute | meaning |
|---|---|
| `nn.kind` | conv, depthwise, gemm, matmul, pool, eltwise, norm, data (movement), other |
| `nn.macs` | multiply-accumulates on the MAC array (conv, gemm, matmul); 0 otherwise |
| `nn.vector_ops` | element operations on the vector unit: output elements x work per element (pool: window size) |
| `nn.ops` | the operation count: `nn.macs` for MAC layers, else `nn.vector_ops` |
| `nn.cin`, `nn.cout` | channel sizes (axis 1) of the first input and of the output |
| `nn.hw` | output spatial size (H x W; 1 for 2-D outputs) |
| `nn.ifm_bytes`, `nn.ofm_bytes`, `nn.weight_bytes` | bytes of the feature-map inputs, outputs and constant operands, in the target's datatype |
| `nn.intensity` | `nn.ops` / (ifm + ofm + weight bytes): operations per DRAM byte if nothing stays on chip |

Convention: an operation count is in MACs (one multiply plus one add); a
figure in FLOPs would be 2 x MACs. `target` (a target name or .toml path)
gives the element size; `element-bytes` overrides it.

    %conv1 = nn.conv2d ... {nn.cin = 3 : i64, nn.cout = 64 : i64, nn.hw = 12544 : i64,
        nn.ifm_bytes = 301056 : i64, nn.intensity = 3.9e+02 : f32, nn.kind = "conv",
        nn.macs = 118013952 : i64, nn.ofm_bytes = 1605632 : i64, nn.ops = 118013952 : i64,
        nn.vector_ops = 0 : i64, nn.weight_bytes = 18816 : i64, ...}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import FloatAttr, Float32Type, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass

from dlfusion.dialects import nn
from dlfusion.layer_stats import is_layer, macs

ATTRS = (
    "nn.kind", "nn.macs", "nn.vector_ops", "nn.ops", "nn.cin", "nn.cout", "nn.hw",
    "nn.ifm_bytes", "nn.ofm_bytes", "nn.weight_bytes", "nn.intensity",
)


def is_constant(value: SSAValue) -> bool:
    """A weight: an `nn.weight` result, or a fusion group argument bound to one."""
    owner = value.owner
    if isinstance(owner, nn.WeightOp):
        return True
    if isinstance(owner, Block):
        group = owner.parent_op()
        if isinstance(group, nn.FusionGroupOp):
            return is_constant(group.inputs[value.index])
    return False


def kind_of(op: Operation) -> str:
    if isinstance(op, nn.Conv2DOp):
        _, ci, _, _ = nn.shape_of(op.weight)
        return "depthwise" if ci == 1 and op.groups.value.data > 1 else "conv"
    if isinstance(op, nn.GemmOp):
        return "gemm"
    if isinstance(op, nn.MatMulOp):
        return "matmul"
    if isinstance(op, (nn.MaxPoolOp, nn.AvgPoolOp, nn.GlobalAvgPoolOp, nn.ReduceMeanOp)):
        return "pool"
    if isinstance(op, (nn.UnaryLayer, nn.BinaryLayer)):
        return "eltwise"
    if isinstance(op, (nn.BatchNormOp, nn.LRNOp, nn.SoftmaxOp)):
        return "norm"
    if isinstance(op, (nn.ConcatOp, nn.SplitOp, nn.SliceOp, nn.ReshapeOp, nn.TransposeOp, nn.PadOp)):
        return "data"
    return "other"


def vector_ops(op: Operation) -> int:
    """Element operations on the vector unit (0 for MAC-array layers)."""
    if macs(op) or isinstance(op, (nn.Conv2DOp, nn.GemmOp, nn.MatMulOp)):
        return 0
    out = sum(math.prod(nn.shape_of(r)) for r in op.results)
    if isinstance(op, (nn.MaxPoolOp, nn.AvgPoolOp)):
        return out * math.prod(op.kernel.get_values())
    if isinstance(op, (nn.GlobalAvgPoolOp, nn.ReduceMeanOp)):
        return math.prod(nn.shape_of(op.operands[0]))
    if isinstance(op, nn.ReshapeOp):
        return 0
    return out


def characteristics(op: Operation, element_bytes: int) -> dict[str, int | float | str]:
    """The annotate-layers figures of one layer, as plain Python values."""
    m = macs(op)
    v = vector_ops(op)
    feature_inputs = [x for x in op.operands if not is_constant(x)]
    first = nn.shape_of(feature_inputs[0]) if feature_inputs else nn.shape_of(op.operands[0])
    out = nn.shape_of(op.results[0])
    ifm = sum(math.prod(nn.shape_of(x)) for x in feature_inputs) * element_bytes
    ofm = sum(math.prod(nn.shape_of(r)) for r in op.results) * element_bytes
    wb = sum(math.prod(nn.shape_of(x)) for x in op.operands if is_constant(x)) * element_bytes
    ops = m or v
    return {
        "nn.kind": kind_of(op),
        "nn.macs": m,
        "nn.vector_ops": v,
        "nn.ops": ops,
        "nn.cin": first[1] if len(first) > 1 else 1,
        "nn.cout": out[1] if len(out) > 1 else 1,
        "nn.hw": math.prod(out[2:]) if len(out) > 2 else 1,
        "nn.ifm_bytes": ifm,
        "nn.ofm_bytes": ofm,
        "nn.weight_bytes": wb,
        "nn.intensity": ops / max(ifm + ofm + wb, 1),
    }


@dataclass(frozen=True)
class AnnotateLayersPass(ModulePass):
    """Attach layer characteristics (operation count, channels, bytes) as attributes."""

    name = "annotate-layers"

    target: str = "mlu100"
    element_bytes: int = 0

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        eb = self.element_bytes
        if eb < 0:
            from dlfusion.errors import DlfusionError

            raise DlfusionError(f"annotate-layers: element-bytes must be positive, got {eb}")
        if eb == 0:
            from dlfusion.targets import load_target

            eb = load_target(self.target).element_bytes
        for layer in op.walk():
            if not is_layer(layer):
                continue
            for key, value in characteristics(layer, eb).items():
                if isinstance(value, str):
                    attr = StringAttr(value)
                elif isinstance(value, float):
                    attr = FloatAttr(value, Float32Type())
                else:
                    attr = IntegerAttr(value, i64)
                layer.attributes[key] = attr
