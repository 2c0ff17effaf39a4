"""`dlfusion-compile`: a model to a checked program for the simulated accelerator.

    dlfusion-compile [MODEL=resnet50] [--target mlu100] [--strategy dlfusion]
                     [-o program.s|program.mlir] [--emit-weights] [--seed 0]
                     [--no-verify] [--report report.json]
                     [--table PATH] [--cache PATH] [--jobs N]

The whole pipeline in one command: import the model (a zoo name or an ONNX
file), fold its batch norms, plan the fusion groups and core numbers with
the strategy, lower to the target's `accel` program (every kernel's on-chip
buffers are verified against the target's capacity), run the program on the
simulator with numbers on seeded random inputs and compare the outputs with
onnxruntime (a max relative error above 1e-4 is an error), and simulate the
baseline plan (every layer alone on 1 core, timing only) for the speedup.

It prints the plan (one line per kernel: its layers, core number and
simulated latency), the total latency, the baseline's, the speedup, the
verification and the wall time. `-o` writes the program as an accel-asm
listing (`.s`) or as accel IR (`.mlir`), weights elided unless
`--emit-weights`; `--report` writes the same figures as JSON. Both appear
only when the whole run succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dlfusion.cli import AtomicOutput, run_cli
from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group

PROG = "dlfusion-compile"
MAX_REL_ERROR = 1e-4
PROGRAM_SUFFIXES = (".s", ".mlir")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compile a model for the simulated accelerator with a fusion / core-number "
        "strategy, check its outputs against onnxruntime and compare its latency with the baseline.",
    )
    p.add_argument("model", nargs="?", default="resnet50", metavar="MODEL",
                   help="a zoo model name or an .onnx file (default: resnet50)")
    p.add_argument("--target", default="mlu100", metavar="NAME|PATH",
                   help="a shipped target name or a target .toml file (default: mlu100)")
    p.add_argument("--strategy", default="dlfusion", help="the planning strategy (default: dlfusion)")
    p.add_argument("-o", "--output", metavar="PROGRAM.s|.mlir",
                   help="write the compiled program: an accel-asm listing (.s) or accel IR (.mlir)")
    p.add_argument("--emit-weights", action="store_true", help="include the weights in the -o file")
    p.add_argument("--seed", type=int, default=0, help="zoo weights and the verification inputs (default: 0)")
    p.add_argument("--no-verify", action="store_true", help="skip the numeric check against onnxruntime")
    p.add_argument("--report", metavar="REPORT.json", help="write the plan and the figures as JSON")
    p.add_argument("--table", metavar="PATH",
                   help="characterization table for dlfusion / fusion-only (default: the target's)")
    p.add_argument("--cache", metavar="PATH", help="tuning-record cache for strategies that measure")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel measurements (default: 1)")
    return p


@dataclass
class Compiled:
    """What one run found: the plan, its kernels' figures and the timings."""

    model: str
    target: str
    strategy: str
    layers: int
    groups: list[Group]
    kernels: list[dict]
    latency_us: float
    baseline_us: float
    verification: dict | None
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.baseline_us / self.latency_us

    def to_json(self) -> dict:
        return {
            "model": self.model, "target": self.target, "strategy": self.strategy,
            "layers": self.layers, "latency_us": self.latency_us, "baseline_us": self.baseline_us,
            "speedup": self.speedup, "verification": self.verification,
            "kernels": self.kernels, "seconds": self.seconds, "plan_stats": self.stats,
        }


def check_arguments(args: argparse.Namespace):
    """Fail fast, before any work: the target, the strategy, the options."""
    from dlfusion.targets import load_target
    from dlfusion.tuning.strategies import get_strategy

    target = load_target(args.target)
    get_strategy(args.strategy)
    if args.jobs < 1:
        raise DlfusionError(f"--jobs must be at least 1, got {args.jobs}")
    if args.output and Path(args.output).suffix not in PROGRAM_SUFFIXES:
        raise DlfusionError(f"cannot tell the format of '{args.output}'",
                            hint="-o takes a .s (accel-asm listing) or .mlir (accel IR) file")
    return target


def plan(loaded, args: argparse.Namespace, target) -> tuple[list[Group], dict]:
    """The strategy's groups for the model, in an order they can run in."""
    from dlfusion.grouping import LayerGraph
    from dlfusion.passes.fuse_layers import check_cover, run_order
    from dlfusion.tuning.measure import Measurer
    from dlfusion.tuning.strategies import StrategyContext, get_strategy

    graph = LayerGraph.of(loaded.module)
    options = {"table": args.table} if args.table else {}
    with Measurer.create(target, cache=args.cache, jobs=args.jobs) as measurer:
        sctx = StrategyContext(target, measurer, options)
        groups = get_strategy(args.strategy)(graph, sctx)
    source = f"strategy '{args.strategy}'"
    check_cover(graph, groups, source)
    return run_order(graph, groups, source), sctx.stats


def kernel_rows(groups: Sequence[Group], report: dict) -> list[dict]:
    """One row per group: its kernel's name, layers, cores and simulated
    latency (None for a group that lowers to no kernel, e.g. a lone reshape)."""
    by_name = {k["name"]: k for k in report["kernels"]}
    rows = []
    for i, g in enumerate(groups):
        k = by_name.get(f"g{i}")
        rows.append({
            "name": f"g{i}", "layers": list(g.layers), "cores": g.cores,
            "latency_us": None if k is None else k["latency_us"],
        })
    return rows


def baseline_latency(loaded, target) -> float:
    """The simulated latency of every layer alone on one core (timing only)."""
    from dlfusion.grouping import LayerGraph
    from dlfusion.models import compile_plan
    from dlfusion.sim import simulate

    graph = LayerGraph.of(loaded.module)
    module = compile_plan(loaded, [Group([n], 1) for n in graph.names], target)
    return simulate(module, loaded.ctx, None, timing_only=True, record_events=False).total_us


def check_numbers(loaded, module, seed: int) -> tuple[dict, dict]:
    """Verify against onnxruntime; an error above MAX_REL_ERROR stops the run."""
    from dlfusion.models import verify

    check = verify(loaded, module, loaded.ctx, seed)
    if not check.max_rel_error <= MAX_REL_ERROR:
        raise DlfusionError(
            f"the compiled program's output '{check.worst_output}' differs from onnxruntime's: "
            f"max relative error {check.max_rel_error:.2e} > {MAX_REL_ERROR:.0e}",
            hint="this is a compiler bug; please report it with the model",
        )
    verdict = {"max_rel_error": check.max_rel_error, "output": check.worst_output,
               "limit": MAX_REL_ERROR, "seed": seed}
    return verdict, check.report


def compile_model(args: argparse.Namespace, target) -> tuple[Compiled, object, object]:
    """Load, plan, compile, verify and time the model; returns the figures,
    the compiled module and the loaded model."""
    from dlfusion.models import compile_plan, load_model
    from dlfusion.sim import simulate

    seconds: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[name] = round(now - t, 3)
        t = now

    loaded = load_model(args.model, seed=args.seed)
    lap("load")
    groups, stats = plan(loaded, args, target)
    lap("plan")
    module = compile_plan(loaded, groups, target)
    lap("compile")
    verdict = None
    if args.no_verify:
        report = simulate(module, loaded.ctx, None, timing_only=True, record_events=False).report
    else:
        verdict, report = check_numbers(loaded, module, args.seed)
    lap("simulate")
    baseline = baseline_latency(loaded, target)
    lap("baseline")
    compiled = Compiled(
        model=loaded.name, target=target.name, strategy=args.strategy,
        layers=sum(len(g.layers) for g in groups), groups=groups,
        kernels=kernel_rows(groups, report), latency_us=report["total_us"], baseline_us=baseline,
        verification=verdict, seconds=seconds, stats=stats,
    )
    return compiled, module, loaded


def _layers_text(layers: Sequence[str]) -> str:
    return layers[0] if len(layers) == 1 else f"{layers[0]} .. {layers[-1]}"


def summary(c: Compiled) -> str:
    """The plan and the figures, as the command prints them."""
    rows = [(k["name"], _layers_text(k["layers"]), str(len(k["layers"])), str(k["cores"]),
             "-" if k["latency_us"] is None else f"{k['latency_us']:.1f}") for k in c.kernels]
    head = ("kernel", "layers", "count", "cores", "latency us")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells) -> str:
        return "  ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(cells, widths)))

    n = len(c.kernels)
    out = [f"{c.model} on {c.target}, strategy {c.strategy}: {n} kernel{'s' * (n != 1)} for {c.layers} layers",
           "", line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    if c.verification is None:
        check = "skipped (--no-verify)"
    else:
        v = c.verification
        check = (f"max relative error {v['max_rel_error']:.1e} against onnxruntime "
                 f"(limit {v['limit']:.0e}; output '{v['output']}', seed {v['seed']})")
    wall = sum(c.seconds.values())
    parts = ", ".join(f"{k} {v:.1f}" for k, v in c.seconds.items())
    out += [
        "",
        f"latency       {c.latency_us:10.1f} us (simulated, {c.target})",
        f"baseline      {c.baseline_us:10.1f} us (every layer alone on 1 core)",
        f"speedup       {c.speedup:10.2f}x",
        f"verification  {check}",
        f"wall time     {wall:10.1f} s ({parts})",
    ]
    return "\n".join(out) + "\n"


def program_text(module, ctx, path: str, emit_weights: bool) -> str:
    """The compiled program as an accel-asm listing (.s) or accel IR (.mlir)."""
    if Path(path).suffix == ".s":
        from dlfusion.asm import print_listing

        return print_listing(module, ctx, emit_weights=emit_weights)
    from dlfusion.ir_io import print_module

    return print_module(module, ctx, emit_weights=emit_weights)


def main(argv: Sequence[str] | None = None) -> int:
    outputs: list[AtomicOutput] = []

    def stage(path: str, text: str) -> None:
        try:
            out = AtomicOutput(path)
        except OSError as exc:
            raise DlfusionError(f"cannot write '{path}': {exc.strerror or exc}") from None
        outputs.append(out)
        out.write(text)

    def body() -> None:
        args = parser().parse_args(argv)
        target = check_arguments(args)
        compiled, module, loaded = compile_model(args, target)
        if args.output:
            stage(args.output, program_text(module, loaded.ctx, args.output, args.emit_weights))
        if args.report:
            stage(args.report, json.dumps(compiled.to_json(), indent=1, default=str) + "\n")
        for out in outputs:
            out.commit()
        sys.stdout.write(summary(compiled))
        for path in (args.output, args.report):
            if path:
                print(f"wrote {path}")

    def cleanup() -> None:
        for out in outputs:
            out.discard()

    return run_cli(PROG, body, cleanup)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
