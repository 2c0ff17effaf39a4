"""Print and parse `nn` modules with their out-of-line weights."""

from __future__ import annotations

from io import StringIO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer

from dlfusion.dialects.weights import weight_store


def print_module(module: ModuleOp, ctx: Context, emit_weights: bool = False) -> str:
    """The module's text as dlfusion-opt prints it; weight blobs are written
    in the file's `dialect_resources` section only if `emit_weights`."""
    store = weight_store(ctx)
    previous, store.emit_blobs = store.emit_blobs, emit_weights
    try:
        out = StringIO()
        printer = Printer(stream=out)
        printer.print_op(module)
        printer.print_metadata(ctx.loaded_dialects)
        out.write("\n")
        return out.getvalue()
    finally:
        store.emit_blobs = previous


def parse_module(text: str, ctx: Context, name: str = "<string>") -> ModuleOp:
    """Parse textual IR (with or without a weights section) into `ctx`."""
    module = Parser(ctx, text, name).parse_module()
    module.verify()
    return module
