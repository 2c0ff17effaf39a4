"""`dlfusion-run`: interpret a model's `@main` with the reference interpreter.

    dlfusion-run model.mlir                      # seeded random inputs
    dlfusion-run model.onnx --inputs x.npz --outputs y.npz
    dlfusion-run model.onnxtxt -p fold-batchnorm --seed 3
    dlfusion-run model.onnx --input-shape input=1x3x224x224

The input is read exactly as `dlfusion-opt` reads it (textual IR printed with
`--emit-weights`, or an ONNX model), the `-p` pipeline is applied, and then,
instead of printing the program, `@main` is interpreted. One summary line per
output goes to stdout (or `-o`): name, dtype, shape, min, max, mean and a CRC-32
of the raw float32 bytes. `--outputs` writes the outputs, under the graph's
output names, as an .npz archive that appears only when complete.

A module holding an `accel.program` (a model lowered with `-p lower-to-accel`)
runs on the simulated accelerator instead (`dlfusion.sim`): the output lines
are followed by the simulated latency, and `--report`, `--trace`, `--gantt`
write the JSON report, a Chrome trace and a per-core timeline chart;
`--timing-only` accounts time without computing tensors.

    dlfusion-run model.onnx -p lower-to-accel --report r.json --trace t.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from dlfusion.errors import DlfusionError
from dlfusion.interpreter import check_inputs, random_inputs, run_module
from dlfusion.opt import DlfusionOptMain, run_tool


def load_npz(path: str, what: str = "inputs") -> dict[str, np.ndarray]:
    """All arrays of the .npz archive at `path`; one-line errors."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            is_zip = zipfile.is_zipfile(f)
    except OSError as exc:
        raise DlfusionError(f"cannot open {what} '{path}': {exc.strerror or exc}") from None
    if not is_zip:
        kind = "a single .npy array" if magic == b"\x93NUMPY" else "not a zip archive"
        raise DlfusionError(
            f"cannot read {what} '{path}': not an .npz archive ({kind})",
            hint="write it with numpy.savez(path, name=array, ...)",
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # noqa: BLE001 - numpy and zipfile raise many kinds
        raise DlfusionError(
            f"cannot read {what} '{path}': damaged .npz archive "
            f"({type(exc).__name__}: {' '.join(str(exc).split())})",
            hint="write it with numpy.savez(path, name=array, ...)",
        ) from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy returns a non-.npy member's bytes
            raise DlfusionError(
                f"cannot read {what} '{path}': damaged .npz archive "
                f"(member '{name}' is not a .npy array)",
                hint="write it with numpy.savez(path, name=array, ...)",
            )
    return arrays


def save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` as an .npz archive at exactly `path` (no suffix added),
    atomically: a temporary file next to it is renamed onto it when complete.
    Any name is allowed (numpy.savez would reject 'file')."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dlfusion-", suffix=".npz", dir=directory)
    except OSError as exc:
        raise DlfusionError(f"cannot write outputs '{path}': {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            for name, array in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise DlfusionError(
                f"cannot write outputs '{path}': {exc.strerror or exc}"
            ) from None
        raise


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"the seed must be a non-negative integer, got '{text}'")
    return value


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def summarize(outputs: Mapping[str, np.ndarray]) -> str:
    """One line per output: name, dtype, shape, min, max, mean, CRC-32."""
    lines = []
    for name, a in outputs.items():
        shape = "x".join(str(d) for d in a.shape) or "scalar"
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes()) & 0xFFFFFFFF
        if a.size:
            stats = (
                f"min={_fmt(float(a.min()))} max={_fmt(float(a.max()))} "
                f"mean={_fmt(float(a.mean(dtype=np.float64)))}"
            )
        else:
            stats = "empty"
        lines.append(f"{name}: {a.dtype} {shape} {stats} crc32={crc:08x}")
    return "\n".join(lines) + "\n"


class DlfusionRunMain(DlfusionOptMain):
    """dlfusion-opt's driver (input formats, frontends, -p pipelines) whose
    last step interprets the module instead of printing it."""

    version_format = "dlfusion-run built on xdsl {xdsl_version}"

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser):
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument(
            "--inputs",
            metavar="IN.npz",
            help="the graph inputs, by name, as an .npz archive "
            "(default: seeded standard-normal float32 inputs)",
        )
        arg_parser.add_argument(
            "--outputs",
            metavar="OUT.npz",
            help="write the graph outputs, by name, to this .npz archive",
        )
        arg_parser.add_argument(
            "--seed",
            type=_seed,
            default=0,
            help="seed of the random inputs used without --inputs (default 0)",
        )
        # -- accel programs: the simulated accelerator (dlfusion.sim) --------------
        arg_parser.add_argument(
            "--report",
            metavar="REPORT.json",
            help="accel programs: write the simulator's JSON report (latency per kernel, "
            "DRAM bytes, busy time per core and unit)",
        )
        arg_parser.add_argument(
            "--trace",
            metavar="TRACE.json",
            help="accel programs: write a Chrome trace-event timeline, one track per core "
            "(opens in Perfetto)",
        )
        arg_parser.add_argument(
            "--gantt",
            metavar="TIMELINE.png",
            help="accel programs: write a per-core timeline chart (PNG)",
        )
        arg_parser.add_argument(
            "--timing-only",
            action="store_true",
            help="accel programs: account time without computing tensors (same latency, "
            "no outputs; weights need no data)",
        )

    # -- the steps ----------------------------------------------------------------
    def run(self):
        self.results: list[dict[str, np.ndarray]] = []
        self._inputs: dict[str, np.ndarray] | None = None
        if self.args.outputs and self.args.split_input_file:
            raise DlfusionError(
                "--outputs takes the outputs of one module",
                hint="run the chunks of a --split-input-file separately",
            )
        if self.args.outputs:
            directory = os.path.dirname(os.path.abspath(self.args.outputs))
            if not os.path.isdir(directory):
                raise DlfusionError(
                    f"cannot write outputs '{self.args.outputs}': "
                    f"no such directory '{directory}'"
                )
        _check_sim_args(self.args)
        if self.args.inputs:
            self._inputs = load_npz(self.args.inputs)
        super().run()
        if self.args.outputs and self.results:
            save_npz(self.args.outputs, self.results[-1])

    def inputs_for(self, module: ModuleOp) -> dict[str, np.ndarray]:
        if self._inputs is None:
            return random_inputs(module, self.args.seed)
        try:
            check_inputs(module, self._inputs)
        except DlfusionError as exc:
            raise DlfusionError(exc.message, where=self.args.inputs, hint=exc.hint) from None
        return self._inputs

    def output_resulting_program(self, prog: ModuleOp) -> str:
        from dlfusion.sim import has_program

        if has_program(prog):
            return self.simulate_program(prog)
        flags = _sim_flags(self.args)
        if flags:
            raise DlfusionError(
                f"{', '.join(flags)} appl{'ies' if len(flags) == 1 else 'y'} to accel programs, and "
                f"'{self.get_input_name()}' holds none after the pipeline",
                hint="lower the model with `-p lower-to-accel`",
            )
        try:
            outputs = run_module(prog, self.ctx, self.inputs_for(prog))
        except DlfusionError as exc:
            if exc.where is None:
                exc = DlfusionError(exc.message, where=self.get_input_name(), hint=exc.hint)
            raise exc from None
        self.results.append(outputs)
        return summarize(outputs)

    def simulate_program(self, prog: ModuleOp) -> str:
        return _simulate_program(self, prog)


def _sim_flags(args: argparse.Namespace) -> list[str]:
    return [
        flag
        for flag, on in (
            ("--report", args.report),
            ("--trace", args.trace),
            ("--gantt", args.gantt),
            ("--timing-only", args.timing_only),
        )
        if on
    ]


def _check_sim_args(args: argparse.Namespace) -> None:
    files = [f for f in ("report", "trace", "gantt") if getattr(args, f)]
    if files and args.split_input_file:
        raise DlfusionError(
            f"--{files[0]} takes the report of one program",
            hint="run the chunks of a --split-input-file separately",
        )
    if args.timing_only and args.outputs:
        raise DlfusionError(
            "--outputs needs the computed outputs, which --timing-only skips",
            hint="drop one of the two options",
        )
    for what in files:
        path = getattr(args, what)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise DlfusionError(f"cannot write {what} '{path}': no such directory '{directory}'")


def _simulate_program(tool: DlfusionRunMain, prog: ModuleOp) -> str:
    """Run an accel program on the simulator; write --report/--trace/--gantt."""
    from dlfusion.sim import check_program_inputs, find_program, random_program_inputs, simulate
    from dlfusion.sim.report import write_gantt, write_report, write_trace

    args = tool.args
    try:
        program = find_program(prog)
        inputs = None
        if not args.timing_only:
            if tool._inputs is None:
                inputs = random_program_inputs(program, args.seed)
            else:
                try:
                    inputs = check_program_inputs(program, tool._inputs)
                except DlfusionError as exc:
                    raise DlfusionError(exc.message, where=args.inputs, hint=exc.hint) from None
        result = simulate(
            prog,
            tool.ctx,
            inputs,
            timing_only=args.timing_only,
            record_events=bool(args.trace or args.gantt),
        )
    except DlfusionError as exc:
        if exc.where is None:
            exc = DlfusionError(exc.message, where=tool.get_input_name(), hint=exc.hint)
        raise exc from None
    if args.report:
        write_report(args.report, result.report)
    if args.trace:
        write_trace(args.trace, result)
    if args.gantt:
        write_gantt(args.gantt, result)
    tool.results.append(result.outputs)
    report = result.report
    nk = len(report["kernels"])
    line = (
        f"latency: {report['total_us']:.3f} us on {report['target']} "
        f"({nk} kernel{'' if nk == 1 else 's'}, {report['instructions']} instructions)\n"
    )
    return (summarize(result.outputs) if result.outputs else "") + line


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(
        DlfusionRunMain, "dlfusion-run", "dlfusion reference interpreter: run a model's @main", argv
    )


if __name__ == "__main__":
    sys.exit(main())
