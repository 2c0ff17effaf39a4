"""The xDSL context with dlfusion's dialects, one weight store per context."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.func import Func

from dlfusion.dialects.accel import Accel
from dlfusion.dialects.nn import make_nn_dialect
from dlfusion.dialects.weights import WeightStore, weight_store

# name -> factory; each factory builds a fresh Dialect so that per-dialect
# state (the nn weight store) belongs to one Context.
DIALECT_FACTORIES = {
    "nn": make_nn_dialect,
    "accel": lambda: Accel,
}


def make_context() -> Context:
    """A context with builtin, func, arith and all dlfusion dialects loaded."""
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(Func)
    ctx.load_dialect(Arith)
    for name, factory in DIALECT_FACTORIES.items():
        ctx.register_dialect(name, factory)
        ctx.load_registered_dialect(name)
    return ctx


__all__ = ["DIALECT_FACTORIES", "make_context", "weight_store", "WeightStore"]
