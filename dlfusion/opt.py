"""`dlfusion-opt`: xDSL's optimizer driver with dlfusion's dialects, passes and
ONNX frontends.

    dlfusion-opt model.onnx -p fold-batchnorm,nn-canonicalize -o model.mlir
    dlfusion-opt model.onnxtxt --input-shape x=1x3x32x32
    dlfusion-opt model.mlir --emit-weights     # include the weight blobs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO

from xdsl.xdsl_opt_main import xDSLOptMain

from dlfusion.cli import AtomicOutput, parse_input_shapes, run_cli
from dlfusion.context import DIALECT_FACTORIES
from dlfusion.dialects.weights import WeightStore
from dlfusion.errors import DlfusionError
from dlfusion.ir_io import NNMLIRTarget


class DlfusionOptMain(xDSLOptMain):
    """xdsl-opt with dlfusion's dialects, passes and frontends registered."""

    version_format = "dlfusion-opt built on xdsl {xdsl_version}"
    _output: AtomicOutput | None = None

    def register_all_dialects(self):
        super().register_all_dialects()
        for name, factory in DIALECT_FACTORIES.items():
            self.ctx.register_dialect(name, factory)

    def register_all_passes(self):
        super().register_all_passes()
        from dlfusion.passes import get_all_passes

        for name, factory in get_all_passes().items():
            self.register_pass(name, factory)

    def register_all_frontends(self):
        super().register_all_frontends()
        from dlfusion.frontend import import_onnx_stream

        def onnx_frontend(text: bool):
            def parse(io: IO[bytes]):
                return import_onnx_stream(
                    io,
                    self.ctx,
                    text=text,
                    input_shapes=parse_input_shapes(self.args.input_shape),
                    source=self.get_input_name(),
                )

            return parse

        self.available_frontends["onnx"] = onnx_frontend(False)
        self.available_frontends["onnxtxt"] = onnx_frontend(True)

        def asm_frontend(io: IO[bytes]):
            from dlfusion.asm.loader import load_listing

            return load_listing(io.read().decode("utf-8", errors="replace"), self.ctx, self.get_input_name())

        self.available_frontends["s"] = asm_frontend

    def register_all_targets(self):
        super().register_all_targets()
        from dlfusion.summary import SummaryTarget

        self.available_targets[SummaryTarget.name] = lambda: SummaryTarget
        self.available_targets[NNMLIRTarget.name] = lambda: NNMLIRTarget

        def accel_asm():
            from dlfusion.asm.printer import AccelAsmTarget

            return AccelAsmTarget

        self.available_targets["accel-asm"] = accel_asm

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser):
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument(
            "--input-shape",
            action="append",
            default=[],
            metavar="NAME=DxDx...",
            help="fix the shape of an ONNX graph input, e.g. input=1x3x224x224",
        )
        arg_parser.add_argument(
            "--emit-weights",
            action="store_true",
            help="print the weight blobs in the file's dialect_resources section",
        )

    def setup_pipeline(self):
        try:
            super().setup_pipeline()
        except ValueError as exc:
            raise DlfusionError(
                f"bad pass pipeline '{self.args.passes}': {' '.join(str(exc).split())}",
                hint="run with --help for the available passes",
            ) from None

    def prepare_output(self) -> IO[str]:
        if self.args.output_file is None:
            return sys.stdout
        self._output = AtomicOutput(self.args.output_file)
        return self._output

    def output_resulting_program(self, prog) -> str:
        store = self.ctx.get_dialect("nn").get_interface(WeightStore)
        if store is not None:
            store.emit_blobs = self.args.emit_weights
        return super().output_resulting_program(prog)


def run_tool(cls: type[DlfusionOptMain], tool: str, description: str, argv: Sequence[str] | None) -> int:
    """Run a driver class as command `tool`: one-line errors, exit codes, and
    an output file that appears only when the run succeeded."""
    holder: list[DlfusionOptMain] = []

    def body() -> None:
        driver = cls(description=description, args=argv)
        holder.append(driver)
        driver.run()
        if driver._output is not None:
            driver._output.commit()

    def cleanup() -> None:
        if holder and holder[0]._output is not None:
            holder[0]._output.discard()

    return run_cli(tool, body, cleanup)


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(DlfusionOptMain, "dlfusion-opt", "dlfusion modular optimizer driver", argv)


if __name__ == "__main__":
    sys.exit(main())
