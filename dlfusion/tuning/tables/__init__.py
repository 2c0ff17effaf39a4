"""Characterization tables shipped with the package.

The `dlfusion` heuristic reads a target's characterization table
(`dlfusion.tuning.characterize`). A fresh machine has none in its cache, so
the package ships one per shipped target, in this folder, named as the
cache names them (`characterize.table_path`): the target's name, the digest
of the target file's bytes and the cost-model version of the lowering and
simulator, `<target>-<digest>-cm<N>.json`. So a table is found only for the
exact target file and simulator it was measured on: an edited target file
(or one of your own) has another digest and needs `dlfusion-characterize`.

    >>> from dlfusion.targets import load_target
    >>> packaged_table(load_target("mlu100"))       # doctest: +SKIP
    PosixPath('.../dlfusion/tuning/tables/mlu100-ce8291b33c06c4cd-cm1.json')

Regenerate the tables (after a change to a target file, the simulator, the
lowering or the characterization grid) with

    python -m dlfusion.tuning.tables.refresh
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dlfusion.targets import AcceleratorTarget

REFRESH_COMMAND = "python -m dlfusion.tuning.tables.refresh"


def tables_dir() -> Path:
    """The folder of the packaged tables."""
    return Path(str(resources.files(__name__)))


def table_name(target: AcceleratorTarget) -> str:
    """The file name of the (full-grid) table of `target`, as in the cache."""
    from dlfusion.tuning.characterize import table_path

    return table_path(target, tables_dir()).name


def packaged_tables() -> list[Path]:
    """Every table shipped in the package."""
    return sorted(p for p in tables_dir().glob("*.json") if p.is_file())


def packaged_table(target: AcceleratorTarget) -> Path | None:
    """The table shipped for exactly this target file and cost model, or
    None."""
    path = tables_dir() / table_name(target)
    return path if path.is_file() else None


__all__ = ["REFRESH_COMMAND", "packaged_table", "packaged_tables", "table_name", "tables_dir"]
