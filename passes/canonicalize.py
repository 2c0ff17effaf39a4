"""`nn-canonicalize`: local simplifications of `nn` IR.

- dead layers are removed: pure ops whose results are unused, `nn.weight`
  included (xDSL's trivial dead-code elimination and `region_dce`);
- `nn.reshape` to its own type is dropped, and a chain of reshapes becomes one;
- `nn.transpose` with the identity perm is dropped, and two transposes compose;
- `nn.pad` with all-zero pads and `nn.slice` that takes everything are dropped;
- a float32 layer whose operands are all `nn.weight` constants is evaluated at
  compile time into a new weight (constant folding), by the reference
  interpreter's implementation of the op (`dlfusion.interpreter`), so every
  layer the interpreter runs can be folded.

    %t = nn.transpose %fc_w {perm = array<i64: 1, 0>} : (tensor<10x64xf32>) -> tensor<64x10xf32>
  becomes
    %t = nn.weight dense_resource<t> : tensor<64x10xf32>

Constant folding needs the weight data; a weight printed without
`--emit-weights` (no data) is simply not folded. `-p 'nn-canonicalize{fold-constants=false}'`
turns constant folding off.

This module also holds the small helpers passes share to read and create
`nn.weight` constants (`weight_op_of`, `weight_array`, `make_weight`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import (
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    ModuleOp,
    TensorType,
)
from xdsl.interpreter import Interpreter
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.dead_code_elimination import region_dce
from xdsl.utils.exceptions import InterpretationError

from dlfusion.dialects import nn
from dlfusion.dialects.weights import MissingWeightError, WeightStore, weight_store
from dlfusion.errors import DlfusionError

# --------------------------------------------------------------------------
# weight helpers (shared by the passes)
# --------------------------------------------------------------------------


def numpy_dtype(element_type: Attribute) -> np.dtype | None:
    """The numpy dtype of a builtin element type (None if it has none)."""
    if isinstance(element_type, Float32Type):
        return np.dtype(np.float32)
    if isinstance(element_type, Float64Type):
        return np.dtype(np.float64)
    if isinstance(element_type, Float16Type):
        return np.dtype(np.float16)
    if isinstance(element_type, IntegerType):
        width = element_type.width.data
        if width == 1:
            return np.dtype(np.bool_)
        if width in (8, 16, 32, 64):
            return np.dtype(f"int{width}")
    return None


def element_type_of(dtype: np.dtype) -> Attribute:
    """The builtin element type of a numpy dtype."""
    from xdsl.dialects.builtin import i1, i8, i16, i32, i64

    table = {
        np.dtype(np.float32): Float32Type(),
        np.dtype(np.float64): Float64Type(),
        np.dtype(np.float16): Float16Type(),
        np.dtype(np.bool_): i1,
        np.dtype(np.int8): i8,
        np.dtype(np.int16): i16,
        np.dtype(np.int32): i32,
        np.dtype(np.int64): i64,
    }
    if np.dtype(dtype) not in table:
        raise ValueError(f"no element type for numpy dtype {dtype}")
    return table[np.dtype(dtype)]


def weight_op_of(value: SSAValue | None) -> nn.WeightOp | None:
    """The `nn.weight` op defining `value`, if it is one."""
    if value is None:
        return None
    owner = value.owner
    return owner if isinstance(owner, nn.WeightOp) else None


def weight_array(value: SSAValue, store: WeightStore) -> np.ndarray | None:
    """The constant array behind `value`, or None if it is not a weight with data."""
    op = weight_op_of(value)
    if op is None or not store.has_data(op.key):
        return None
    typ = op.result.type
    assert isinstance(typ, TensorType)
    dtype = numpy_dtype(typ.get_element_type())
    if dtype is None:
        return None
    shape = tuple(typ.get_shape())
    arr = store.get(op.key, dtype, shape)
    if arr.shape != shape or arr.dtype != dtype:
        return None
    return arr


def required_weight(value: SSAValue, store: WeightStore, who: str) -> np.ndarray:
    """Like `weight_array`, but a missing blob is the user's error."""
    op = weight_op_of(value)
    assert op is not None
    try:
        arr = weight_array(value, store)
        if arr is None:
            store.get(op.key)  # raises the store's explanation
            raise DlfusionError(
                f"weight '{op.key}' does not match its type {op.result.type}", where=who
            )
    except MissingWeightError as exc:
        raise DlfusionError(str(exc), where=who) from None
    return arr


def make_weight(
    store: WeightStore, name: str, array: np.ndarray, typ: TensorType | None = None
) -> nn.WeightOp:
    """A new `nn.weight` op for `array`, stored under a fresh handle from `name`."""
    array = np.ascontiguousarray(array)
    if typ is None:
        typ = TensorType(element_type_of(array.dtype), list(array.shape))
    key = store.add(name, array)
    op = nn.WeightOp(key, typ)
    op.result.name_hint = key
    return op


def erase_dead_weights(rewriter: PatternRewriter, values: Iterable[SSAValue]) -> None:
    """Erase the `nn.weight` ops among `values`' owners that have no use left."""
    seen: set[int] = set()
    for value in values:
        op = weight_op_of(value)
        if op is None or id(op) in seen or op.parent is None:
            continue
        seen.add(id(op))
        if not op.result.uses:
            rewriter.erase(op)


# --------------------------------------------------------------------------
# identity folds
# --------------------------------------------------------------------------


def _forward(rewriter: PatternRewriter, op: Operation, value: SSAValue) -> None:
    rewriter.replace(op, [], [value])


class FoldIdentityReshape(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ReshapeOp, rewriter: PatternRewriter):
        if op.input.type == op.output.type:
            _forward(rewriter, op, op.input)


class FoldReshapeChain(RewritePattern):
    """reshape(reshape(x)) -> reshape(x)"""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ReshapeOp, rewriter: PatternRewriter):
        inner = op.input.owner
        if isinstance(inner, nn.ReshapeOp):
            new = nn.ReshapeOp(inner.input, nn.shape_of(op.output))
            rewriter.replace(op, new)


class FoldIdentityTranspose(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.TransposeOp, rewriter: PatternRewriter):
        if tuple(op.perm.get_values()) == tuple(range(len(op.perm.get_values()))):
            _forward(rewriter, op, op.input)


class FoldTransposeChain(RewritePattern):
    """transpose(transpose(x, p), q) -> transpose(x, p[q])"""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.TransposeOp, rewriter: PatternRewriter):
        inner = op.input.owner
        if isinstance(inner, nn.TransposeOp):
            p, q = inner.perm.get_values(), op.perm.get_values()
            rewriter.replace(op, nn.TransposeOp(inner.input, [p[i] for i in q]))


class FoldZeroPad(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.PadOp, rewriter: PatternRewriter):
        if not any(op.pads.get_values()) and op.input.type == op.output.type:
            _forward(rewriter, op, op.input)


class FoldFullSlice(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.SliceOp, rewriter: PatternRewriter):
        starts, steps = op.starts.get_values(), op.steps.get_values()
        if (
            all(s == 0 for s in starts)
            and all(s == 1 for s in steps)
            and op.input.type == op.output.type
        ):
            _forward(rewriter, op, op.input)


# --------------------------------------------------------------------------
# constant folding
# --------------------------------------------------------------------------

def _is_f32_tensor(typ: Attribute) -> bool:
    return isinstance(typ, TensorType) and isinstance(typ.get_element_type(), Float32Type)


@dataclass
class ConstantFold(RewritePattern):
    """A float32 layer whose operands are all weights becomes a weight.

    The layer is evaluated by the reference interpreter's implementation of
    the op (`dlfusion.interpreter.NNFunctions`), so a folded constant holds
    exactly what running the layer would have produced.
    """

    store: WeightStore
    module: ModuleOp
    _interpreter: Interpreter | None = None

    def interpreter(self) -> Interpreter:
        if self._interpreter is None:
            from dlfusion.interpreter.nn_functions import NNFunctions

            self._interpreter = Interpreter(self.module)
            self._interpreter.register_implementations(NNFunctions(self.store))
        return self._interpreter

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter):
        if not isinstance(op, nn.LAYER_OPS) or not op.operands:
            return
        if not all(_is_f32_tensor(v.type) for v in (*op.operands, *op.results)):
            return
        args = [weight_array(v, self.store) for v in op.operands]
        if any(a is None for a in args):
            return
        try:
            with np.errstate(all="ignore"):
                outs = self.interpreter().run_op(op, tuple(args))
        except (DlfusionError, InterpretationError, ValueError):
            return  # not evaluable: leave the layer in place
        new_ops: list[nn.WeightOp] = []
        first = weight_op_of(op.operands[0])
        assert first is not None
        for result, out in zip(op.results, outs, strict=True):
            typ = result.type
            assert isinstance(typ, TensorType)
            out = np.asarray(out, dtype=np.float32)
            if out.shape != tuple(typ.get_shape()):
                return
            name = result.name_hint or f"{first.key}_{op.name.split('.')[-1]}"
            new_ops.append(make_weight(self.store, name, out, typ))
        operands = list(op.operands)
        rewriter.replace(op, new_ops, [w.result for w in new_ops])
        erase_dead_weights(rewriter, operands)


# --------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------


def canonicalization_patterns(store: WeightStore, module: ModuleOp) -> list[RewritePattern]:
    return [
        FoldIdentityReshape(),
        FoldReshapeChain(),
        FoldIdentityTranspose(),
        FoldTransposeChain(),
        FoldZeroPad(),
        FoldFullSlice(),
        ConstantFold(store, module),
    ]


@dataclass(frozen=True)
class CanonicalizePass(ModulePass):
    """Dead-layer removal, identity folds and constant folding on `nn` IR."""

    name = "nn-canonicalize"

    fold_constants: bool = True
    """Evaluate layers whose operands are all weights (`fold-constants=false`
    keeps them as layers)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        patterns = canonicalization_patterns(weight_store(ctx), op)
        if not self.fold_constants:
            patterns = [p for p in patterns if not isinstance(p, ConstantFold)]
        pattern = GreedyRewritePatternApplier(patterns)
        PatternRewriteWalker(pattern, post_walk_func=region_dce).rewrite_module(op)
