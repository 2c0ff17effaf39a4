"""Re-characterize every shipped target and ship the tables.

    python -m dlfusion.tuning.tables.refresh [--jobs N] [--cache-dir DIR] [--check]

For each target in `dlfusion/targets/*.toml`, runs the characterization
study (the full grid, as `dlfusion-characterize --target NAME` does) and
copies its table into `dlfusion/tuning/tables/` under the name the cache
gives it (`<target>-<digest>-cm<N>.json`: target file digest, cost-model
version); tables there for no current target file or cost model (an old
digest, an old version, a removed target) are deleted.

The measurements start from nothing (a temporary cache folder) unless
`--cache-dir` is given: a shipped table should never carry a measurement
from an older simulator whose change kept the cost-model version.
`--check` changes nothing and exits 1 if a shipped target lacks its table
or a stale table is present.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dlfusion.errors import DlfusionError

PROG = "python -m dlfusion.tuning.tables.refresh"


def expected() -> dict[str, str]:
    """File name of the table every shipped target needs -> target name."""
    from dlfusion.targets import load_target, shipped_targets
    from dlfusion.tuning.tables import table_name

    return {table_name(load_target(n)): n for n in shipped_targets()}


def stale() -> list[Path]:
    from dlfusion.tuning.tables import packaged_tables

    want = expected()
    return [p for p in packaged_tables() if p.name not in want]


def missing() -> list[str]:
    from dlfusion.tuning.tables import tables_dir

    return [n for f, n in expected().items() if not (tables_dir() / f).is_file()]


def refresh(jobs: int = 1, cache_dir: str | Path | None = None, progress: bool = True) -> list[Path]:
    """Characterize every shipped target, copy the tables in, drop stale
    ones; returns the tables written."""
    from dlfusion.targets import load_target
    from dlfusion.tuning.characterize import load_or_characterize
    from dlfusion.tuning.tables import table_name, tables_dir

    out = tables_dir()
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="dlfusion-tables-") as tmp:
        where = Path(cache_dir) if cache_dir else Path(tmp)
        for f, name in sorted(expected().items()):
            target = load_target(name)
            doc, path, _ = load_or_characterize(target, cache_dir=where, jobs=jobs, progress=progress)
            dest = out / table_name(target)
            shutil.copyfile(path, dest)
            written.append(dest)
            print(f"{name}: {len(doc['layers'])} layers, {len(doc['chains'])} chains, "
                  f"{len(doc['cores'])} core numbers -> {dest}")
    for p in stale():
        p.unlink()
        print(f"removed stale {p}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel measurements (default: 1)")
    ap.add_argument("--cache-dir", metavar="DIR",
                    help="reuse/keep the measurements in DIR (default: a fresh temporary folder)")
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if a table is missing or stale")
    args = ap.parse_args(argv)
    try:
        if args.check:
            bad = [f"no table for target '{n}'" for n in missing()] + [f"stale table {p.name}" for p in stale()]
            for line in bad:
                print(f"{PROG}: {line}", file=sys.stderr)
            return 1 if bad else 0
        if args.jobs < 1:
            raise DlfusionError(f"--jobs must be at least 1, got {args.jobs}")
        refresh(args.jobs, args.cache_dir)
    except DlfusionError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
