"""`dlfusion-tune`: compare fusion / core-number strategies on one model.

    dlfusion-tune MODEL [--target mlu100] [--strategies baseline,cores-only,fusion-only,dlfusion,dp]
                  [--jobs N] [--cache PATH] [--out DIR] [--max-group 8] [--max-configs N]
                  [--space auto|ideals|order] [--core-choices 1,2,4] [--table PATH]
                  [--verify] [--seed 0] [--no-plot] [--progress] [--quiet]

MODEL is a zoo name (`dlfusion-zoo --list`) or an ONNX file; it is imported
and its batch norms folded. Every strategy plans it with one shared measurer
(tuning-record cache `--cache`, default `<out>/tuning-records.jsonl`;
`--jobs` worker processes); the table of results is printed and written as
`<out>/<model>-<target>.json` and `.md`, with a bar chart `.png` and each
plan as `<out>/plans/<model>-<target>-<strategy>.json` (reapply it with
`dlfusion-opt -p 'fold-batchnorm,fuse-layers{plan=...}'`). See
docs/tuning.md for the columns.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dlfusion.cli import run_cli
from dlfusion.errors import DlfusionError

PROG = "dlfusion-tune"


def parser() -> argparse.ArgumentParser:
    from dlfusion.tuning.search import SPACES
    from dlfusion.tuning.tune import DEFAULT_STRATEGIES

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Plan a model with several fusion / core-number strategies, measure every "
        "plan on the simulated target and compare them.",
    )
    p.add_argument("model", metavar="MODEL", help="a zoo model name or an .onnx file")
    p.add_argument("--target", default="mlu100", metavar="NAME|PATH",
                   help="a shipped target name or a target .toml file (default: mlu100)")
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), metavar="A,B,...",
                   help=f"comma-separated strategies (default: {','.join(DEFAULT_STRATEGIES)}); "
                   "baseline is always measured for the speedup column")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel measurements (default: 1)")
    p.add_argument("--cache", metavar="PATH",
                   help="tuning-record cache (default: <out>/tuning-records.jsonl)")
    p.add_argument("--out", default="tune", metavar="DIR", help="output folder (default: tune/)")
    p.add_argument("--max-group", type=int, default=8, metavar="N",
                   help="the most layers dp and exhaustive put in one kernel (default: 8)")
    p.add_argument("--max-configs", type=int, default=20_000, metavar="N",
                   help="exhaustive's guard on the groupings it enumerates (default: 20000)")
    p.add_argument("--space", default="auto", choices=SPACES, help="the groupings dp searches (default: auto)")
    p.add_argument("--core-choices", metavar="1,2,4",
                   help="core numbers to try (default: the target's core_choices)")
    p.add_argument("--table", metavar="PATH",
                   help="characterization table for dlfusion / fusion-only (default: the target's cached one)")
    p.add_argument("--verify", action="store_true",
                   help="compile every plan, check it fits on chip and compare its outputs with onnxruntime")
    p.add_argument("--seed", type=int, default=0, help="zoo weights and verification inputs (default: 0)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the bar chart")
    p.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-strategy lines on stderr")
    return p


def parse_list(text: str | None, what: str, convert=str) -> list:
    """`"a,b"` -> ["a", "b"] (converted); a bad item is a one-line error."""
    if text is None:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [convert(t) for t in items]
    except ValueError:
        raise DlfusionError(f"bad {what} '{text}'", hint="give a comma-separated list, e.g. 1,2,4") from None


def options_from(args: argparse.Namespace):
    """The TuneOptions of the command line."""
    from dlfusion.tuning.tune import TuneOptions

    if args.jobs < 1:
        raise DlfusionError(f"--jobs must be at least 1, got {args.jobs}")
    show = not args.quiet and (args.progress or sys.stderr.isatty())
    return TuneOptions(
        model=args.model,
        strategies=parse_list(args.strategies, "--strategies"),
        target=args.target,
        jobs=args.jobs,
        cache=args.cache or str(Path(args.out) / "tuning-records.jsonl"),
        max_group=args.max_group,
        max_configs=args.max_configs,
        space=args.space,
        core_choices=parse_list(args.core_choices, "--core-choices", int) or None,
        table=args.table,
        verify=args.verify,
        seed=args.seed,
        progress=show,
        log=None if args.quiet else _log,
    )


def _log(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"{PROG}: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> None:
    from dlfusion.tuning.tune import tune, write_outputs

    report = tune(options_from(args))  # checks the strategies before reading or writing anything
    paths = write_outputs(report, args.out, plot=not args.no_plot)
    sys.stdout.write(report.text())
    print()
    for path in paths:
        print(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> None:
        run(parser().parse_args(argv))

    return run_cli(PROG, body, lambda: None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
