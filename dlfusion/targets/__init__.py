"""Target descriptions: the simulated accelerators, as data.

One TOML file per target (read with `tomllib`); the default is `mlu100`.
`load_target("mlu100")` reads a shipped target by name, `load_target(path)`
any file. Every number in a target file carries its source in a comment; how
each one enters the timing model is in docs/accelerator.md.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

from dlfusion.errors import DlfusionError

DEFAULT_TARGET = "mlu100"


@dataclass(frozen=True)
class AcceleratorTarget:
    name: str
    description: str
    # [chip]
    cores: int
    clock_ghz: float
    dtype: str
    element_bytes: int
    # [core]
    mac_lanes_out: int
    mac_lanes_in: int
    vector_lanes: int
    nram_kib: int
    wram_kib: int
    instruction_overhead_cycles: int
    # [dram]
    dram_bandwidth_gbps: float
    dma_latency_ns: float
    # [interconnect]
    interconnect_bandwidth_gbps: float
    interconnect_latency_ns: float
    # [costs]
    kernel_launch_us: float
    core_dispatch_us: float
    barrier_base_us: float
    barrier_per_core_us: float
    # where it came from, and a hash of the file's bytes (for caches)
    source: str = ""
    digest: str = ""
    # [chip] core_choices (optional): the core numbers a tuner tries; empty
    # means 1..cores
    core_choices: tuple[int, ...] = ()

    @property
    def nram_bytes(self) -> int:
        return self.nram_kib * 1024

    @property
    def wram_bytes(self) -> int:
        return self.wram_kib * 1024

    @property
    def macs_per_cycle(self) -> int:
        return self.mac_lanes_out * self.mac_lanes_in


# (section, key in the file) -> field name
_LAYOUT: dict[tuple[str | None, str], str] = {
    (None, "name"): "name",
    (None, "description"): "description",
    ("chip", "cores"): "cores",
    ("chip", "clock_ghz"): "clock_ghz",
    ("chip", "dtype"): "dtype",
    ("chip", "element_bytes"): "element_bytes",
    ("core", "mac_lanes_out"): "mac_lanes_out",
    ("core", "mac_lanes_in"): "mac_lanes_in",
    ("core", "vector_lanes"): "vector_lanes",
    ("core", "nram_kib"): "nram_kib",
    ("core", "wram_kib"): "wram_kib",
    ("core", "instruction_overhead_cycles"): "instruction_overhead_cycles",
    ("dram", "bandwidth_gbps"): "dram_bandwidth_gbps",
    ("dram", "dma_latency_ns"): "dma_latency_ns",
    ("interconnect", "bandwidth_gbps"): "interconnect_bandwidth_gbps",
    ("interconnect", "latency_ns"): "interconnect_latency_ns",
    ("costs", "kernel_launch_us"): "kernel_launch_us",
    ("costs", "core_dispatch_us"): "core_dispatch_us",
    ("costs", "barrier_base_us"): "barrier_base_us",
    ("costs", "barrier_per_core_us"): "barrier_per_core_us",
}
_TYPES = {f.name: f.type for f in fields(AcceleratorTarget)}


def shipped_targets() -> list[str]:
    """Names of the targets shipped in the package."""
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".toml")
    )


def _read(name_or_path: str) -> tuple[bytes, str]:
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        try:
            return path.read_bytes(), str(path)
        except OSError as exc:
            raise DlfusionError(
                f"cannot read target file '{path}': {exc.strerror}",
                hint=f"give a target name ({', '.join(shipped_targets())}) or a readable .toml file",
            ) from None
    res = resources.files(__name__) / f"{name_or_path}.toml"
    if not res.is_file():
        raise DlfusionError(
            f"unknown target '{name_or_path}'",
            hint=f"choose one of {', '.join(shipped_targets())}, or give a path to a .toml file",
        )
    return res.read_bytes(), f"{name_or_path}.toml"


@lru_cache(maxsize=32)
def load_target(name_or_path: str = DEFAULT_TARGET) -> AcceleratorTarget:
    """Read and validate a target description; errors are one-line."""
    data, source = _read(name_or_path)
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DlfusionError(
            f"malformed target file: {exc}", where=source, hint="fix the TOML syntax"
        ) from None
    values: dict[str, object] = {}
    for (section, key), field in _LAYOUT.items():
        table = doc if section is None else doc.get(section)
        qualified = key if section is None else f"[{section}] {key}"
        if not isinstance(table, dict) or key not in table:
            raise DlfusionError(
                f"target file lacks {qualified}", where=source,
                hint="every target needs the keys of dlfusion/targets/mlu100.toml",
            )
        value = table[key]
        want = _TYPES[field]
        if want in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, float),
            "str": isinstance(value, str),
        }[want if isinstance(want, str) else want.__name__]
        if not ok:
            raise DlfusionError(
                f"{qualified} must be a {want if isinstance(want, str) else want.__name__}, got {value!r}",
                where=source,
            )
        if isinstance(value, (int, float)) and value <= 0:
            raise DlfusionError(f"{qualified} must be positive, got {value}", where=source)
        values[field] = value
    choices = _core_choices(doc, values["cores"], source)  # type: ignore[arg-type]
    known = {k for k, _ in _LAYOUT} | {None}
    for section in doc:
        if isinstance(doc[section], dict) and section not in known:
            raise DlfusionError(f"unknown section [{section}]", where=source)
    for (section, key) in [(s, k) for s in doc if isinstance(doc[s], dict) for k in doc[s]]:
        if (section, key) not in _LAYOUT:
            raise DlfusionError(f"unknown key [{section}] {key}", where=source)
    return AcceleratorTarget(
        **values, source=source, digest=hashlib.sha256(data).hexdigest()[:16],
        core_choices=choices,
    )


def _core_choices(doc: dict, cores: int, source: str) -> tuple[int, ...]:
    """The optional `[chip] core_choices` list (taken out of `doc`)."""
    chip = doc.get("chip")
    if not isinstance(chip, dict) or "core_choices" not in chip:
        return ()
    value = chip.pop("core_choices")
    if not isinstance(value, list) or not value or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in value
    ):
        raise DlfusionError(
            f"[chip] core_choices must be a nonempty list of integers, got {value!r}", where=source
        )
    bad = [c for c in value if not 1 <= c <= cores]
    if bad:
        raise DlfusionError(
            f"[chip] core_choices has {bad[0]}, outside 1..{cores} (the chip's cores)", where=source
        )
    return tuple(sorted(set(value)))
