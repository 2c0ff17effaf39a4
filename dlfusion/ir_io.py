"""Print and parse `nn` modules with their out-of-line weights."""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO
from typing import IO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.targets.mlir import MLIRTarget

from dlfusion.dialects import nn
from dlfusion.dialects.weights import weight_store


def _declare_weight_handles(printer: Printer, module: ModuleOp) -> None:
    """Make the printer write the blobs of every `nn.weight` in `module`.

    The custom format of `nn.weight` declares its handle while printing; the
    generic format prints it as a plain string property, so declare the
    handles here (through the printer's public API, into a scratch stream)."""
    stream, printer.stream = printer.stream, StringIO()
    try:
        for op in module.walk():
            if isinstance(op, nn.WeightOp):
                printer.print_resource_handle("nn", op.key)
    finally:
        printer.stream = stream


@dataclass(frozen=True)
class NNMLIRTarget(MLIRTarget):
    """xDSL's `mlir` target, writing `nn.weight` blobs in the generic format too."""

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        printer = Printer(
            stream=output,
            print_generic_format=self.print_generic_format,
            print_properties_as_attributes=self.print_properties_as_attributes,
            print_debuginfo=self.print_debuginfo,
        )
        printer.print_op(module)
        _declare_weight_handles(printer, module)
        printer.print_metadata(ctx.loaded_dialects)
        print("\n", file=output)


def print_module(module: ModuleOp, ctx: Context, emit_weights: bool = False) -> str:
    """The module's text as dlfusion-opt prints it; weight blobs are written
    in the file's `dialect_resources` section only if `emit_weights`."""
    store = weight_store(ctx)
    previous, store.emit_blobs = store.emit_blobs, emit_weights
    try:
        out = StringIO()
        printer = Printer(stream=out)
        printer.print_op(module)
        _declare_weight_handles(printer, module)
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
