"""`dlfusion-characterize`: the characterization study of one target.

    dlfusion-characterize --target mlu100 [--out DIR] [--jobs N] [--quick]
                          [--cache-dir DIR] [--rebuild] [--no-plots]

Synthesizes layers over a grid of operation counts and channel sizes (and
short chains of them), measures each on the simulated target at every core
number, fused and unfused, and writes the table to the cache
(`<cache dir>/<target>-<digest>.json`, reused while the target file is
unchanged). The table and the study's plots (latency against core number per
layer class, best core number over operation count x channel size, fusion
gain against depth and core mismatch) go to `--out` (default
`characterization/`). The `dlfusion` strategy reads the cached table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from dlfusion.errors import DlfusionError

PROG = "dlfusion-characterize"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Measure synthesized layers and chains on a target at every core number, "
        "fused and unfused; write the characterization table and its plots.",
    )
    p.add_argument("--target", default="mlu100", metavar="NAME|PATH",
                   help="a shipped target name or a target .toml file (default: mlu100)")
    p.add_argument("--out", default="characterization", metavar="DIR",
                   help="folder for the table copy and the plots (default: characterization/)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel measurements (default: 1)")
    p.add_argument("--quick", action="store_true", help="a tiny grid (seconds; for tests)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="table cache folder (default: $DLFUSION_CACHE/characterization or "
                   "~/.cache/dlfusion/characterization)")
    p.add_argument("--rebuild", action="store_true", help="measure again even if a cached table exists")
    p.add_argument("--no-plots", action="store_true", help="write the table only")
    return p


def run(args: argparse.Namespace) -> int:
    from dlfusion.targets import load_target
    from dlfusion.tuning.characterize import load_or_characterize, plot_table

    if args.jobs < 1:
        raise DlfusionError(f"--jobs must be at least 1, got {args.jobs}")
    target = load_target(args.target)
    doc, path, fresh = load_or_characterize(
        target, cache_dir=args.cache_dir, jobs=args.jobs, quick=args.quick,
        progress=True, rebuild=args.rebuild,
    )
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        copy = out / f"{target.name}.json"
        shutil.copyfile(path, copy)
        plots = [] if args.no_plots else plot_table(doc, out)
    except OSError as exc:
        raise DlfusionError(f"cannot write to the output folder: {exc.strerror}", where=str(out)) from None
    how = f"measured in {doc['seconds']:.0f} s ({doc['measurements']} measurements)" if fresh else "cached"
    print(f"{target.name}: {len(doc['layers'])} layers, {len(doc['chains'])} chains, "
          f"{len(doc['cores'])} core numbers; {how}")
    print(f"table: {path}")
    print(f"copy: {copy}")
    for p in plots:
        print(f"plot: {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except DlfusionError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (measurements so far are kept in the cache)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
