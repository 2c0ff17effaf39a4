"""The measurement layer: the simulated latency of one kernel configuration.

A *kernel configuration* is a set of layers run as one fused kernel on a
given number of cores. Its cost is measured, never estimated: the layers are
cut out into a module of their own (their feature-map inputs become graph
inputs), wrapped into one `nn.fusion_group` with the core number, lowered
with `lower-to-accel` for the target, and simulated `--timing-only`. The cost
is the kernel's latency including its launch, so the latency of a plan is the
sum of its kernels' costs (kernels run one after another; see
docs/accelerator.md) — which makes memoized searches exact.

Every measurement goes through a `Measurer`, which

- keys a configuration by a hash of its canonical text (layers with their
  shapes and attributes, weights anonymized), the core number and the target
  file's digest, so identical blocks (ResNet's repeated bottlenecks) are
  measured once;
- keeps a tuning-record cache on disk (`TuningLog`, one JSON object per line,
  like TVM's tuning logs), appended with a flush and fsync per record so a
  crash mid-write loses at most that record; a corrupted cache is reported
  and rebuilt, never a crash;
- runs the measurements of a batch through an `Executor`: in-process
  (`jobs=1`) or a process pool (`jobs=N`) that lives as long as the measurer
  (`close()` or a `with` block ends it); anything with a `map(fn, items)`
  can be plugged in (a distributed executor, for instance): the work item is
  plain text and the result a float;
- counts what it does: `measurements` (simulator runs) in total, and per
  block of work through `tally()` (distinct configurations asked for, and
  how many of them were simulated rather than found in the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue

from dlfusion.dialects import nn
from dlfusion.errors import DlfusionError
from dlfusion.targets import AcceleratorTarget, load_target
from dlfusion.tuning.cost_model import cost_model_digest

RECORD_VERSION = 1


# --------------------------------------------------------------------------
# kernel configurations as text
# --------------------------------------------------------------------------


def extract_kernel(layers: Sequence[Operation], cores: int) -> ModuleOp:
    """A module whose @main runs `layers` (in program order) as one fusion
    group on `cores` cores. Feature maps from outside become arguments;
    weights become fresh `nn.weight` ops named w0, w1, ... (anonymized: only
    their shapes matter to the time account); every result used outside the
    set (or by the function's return) is returned."""
    from dlfusion.grouping import wrap_layers

    inside = set(layers)
    args: list[SSAValue] = []
    weights: list[SSAValue] = []
    for op in layers:
        for v in op.operands:
            owner = v.owner
            if isinstance(owner, Operation) and owner in inside:
                continue
            if isinstance(owner, nn.WeightOp):
                if v not in weights:
                    weights.append(v)
            elif v not in args:
                args.append(v)
    outputs = [
        r
        for op in layers
        for r in op.results
        if not r.uses or any(u.operation not in inside for u in r.uses)
    ]
    block = Block(arg_types=[v.type for v in args])
    mapping: dict[SSAValue, SSAValue] = dict(zip(args, block.args))
    for i, w in enumerate(weights):
        op = nn.WeightOp(f"w{i}", w.type)
        block.add_op(op)
        mapping[w] = op.result
    clones = []
    for op in layers:
        clone = op.clone(value_mapper=mapping)
        for key in [k for k in clone.attributes if k.startswith("nn.")]:
            del clone.attributes[key]
        for r in clone.results:
            r.name_hint = None
        block.add_op(clone)
        clones.append(clone)
    results = [mapping[r] for r in outputs]
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp("main", ([a.type for a in args], [r.type for r in results]), Region(block))
    fn.attributes["nn.input_names"] = ArrayAttr([StringAttr(f"in{i}") for i in range(len(args))])
    fn.attributes["nn.output_names"] = ArrayAttr([StringAttr(f"out{i}") for i in range(len(results))])
    module = ModuleOp([fn])
    wrap_layers(clones, "k", cores)
    return module


def kernel_text(layers: Sequence[Operation], cores: int) -> str:
    """The canonical text of a kernel configuration (weights elided)."""
    from dlfusion.context import make_context
    from dlfusion.ir_io import print_module

    return print_module(extract_kernel(layers, cores), make_context())


def measure_kernel(text: str, target: str) -> tuple[float, int]:
    """Lower and simulate (timing only) one kernel configuration given as
    text; returns its latency in microseconds and its busy cores (the most
    cores with work of any of its kernels: a layer whose channels and rows
    split over fewer cores than the kernel has leaves the others idle). Runs
    in a worker process too: it needs nothing but its arguments."""
    from dlfusion.context import make_context
    from dlfusion.dialects.weights import weight_store
    from dlfusion.ir_io import parse_module
    from dlfusion.passes.lower_to_accel import LowerToAccelPass
    from dlfusion.sim import simulate

    ctx = make_context()
    module = parse_module(text, ctx, "<kernel>")
    store = weight_store(ctx)
    for op in module.walk():
        if isinstance(op, nn.WeightOp) and not store.has_data(op.key):
            # timing reads shapes only; values are needed by compile-time
            # folds such as batch norm's scale (zeros keep them finite)
            store._arrays[op.key] = np.zeros(nn.shape_of(op.result), np.float32)
    LowerToAccelPass(target=target).apply(ctx, module)
    result = simulate(module, ctx, None, timing_only=True, record_events=False)
    busy = max((int(k["active"]) for k in result.report["kernels"]), default=0)
    return result.total_us, busy


def measure_text(text: str, target: str) -> float:
    """The latency (us) of one kernel configuration given as text."""
    return measure_kernel(text, target)[0]


# --------------------------------------------------------------------------
# the tuning-record cache
# --------------------------------------------------------------------------


class TuningLog:
    """Tuning records on disk, one JSON object per line:

        {"version": 1, "target": "mlu100", "target_digest": "...", "key": "...",
         "cost_model": "cm1", "cores": 4, "layers": ["conv", "relu"],
         "latency_us": 12.5, "active": 4, "time": 1.7e9}

    Lines that do not parse, or lack a field, are reported once on stderr
    and dropped; the file is then rewritten from the good records. Records
    of another cost model (`dlfusion.tuning.cost_model`: the lowering or the
    simulator changed since) are stale: dropped the same way, with their own
    note. A record without `cost_model` is of cost model cm1; one without
    `active` (older) serves latencies but not busy cores.
    """

    FIELDS = ("version", "target", "target_digest", "key", "cores", "latency_us")

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.records: dict[str, float] = {}
        self.active: dict[str, int] = {}
        self.dropped = 0
        self.stale = 0
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        good: list[str] = []
        try:
            lines = self.path.read_bytes().decode("utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise DlfusionError(f"cannot read the tuning-record cache: {exc.strerror}", where=str(self.path)) from None
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or any(f not in rec for f in self.FIELDS):
                    raise ValueError("missing fields")
                if rec["version"] != RECORD_VERSION:
                    raise ValueError(f"record version {rec['version']}")
                latency = float(rec["latency_us"])
                if not latency >= 0:
                    raise ValueError("bad latency")
                active = rec.get("active")
                if active is not None and not (isinstance(active, int) and active >= 0):
                    raise ValueError("bad active")
            except (ValueError, TypeError):
                self.dropped += 1
                continue
            if rec.get("cost_model", "cm1") != cost_model_digest():
                self.stale += 1
                continue
            self.records[rec["key"]] = latency
            if active is not None:
                self.active[rec["key"]] = active
            good.append(json.dumps(rec, sort_keys=True))
        if self.dropped:
            print(
                f"dlfusion: {self.path}: dropped {self.dropped} corrupted tuning record(s); "
                "rewriting the cache from the good ones",
                file=sys.stderr,
            )
        if self.stale:
            print(
                f"dlfusion: {self.path}: dropped {self.stale} tuning record(s) of another cost model "
                f"(the lowering or the simulator changed; now {cost_model_digest()}); they will be measured again",
                file=sys.stderr,
            )
        if self.dropped or self.stale:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(g + "\n" for g in good))
            os.replace(tmp, self.path)

    def get(self, key: str) -> float | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        self.records[record["key"]] = float(record["latency_us"])
        if record.get("active") is not None:
            self.active[record["key"]] = int(record["active"])
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


# --------------------------------------------------------------------------
# executors and the measurer
# --------------------------------------------------------------------------


class Executor(Protocol):
    """Where measurements run: anything with `map(fn, items)` that returns
    the results in the order of the items (`concurrent.futures` executors
    qualify). The work item is `(kernel text, target reference)`, plain
    strings, and the result a float, so a distributed executor only has to
    ship text."""

    def map(self, fn: Callable, *iterables: Iterable) -> Iterable: ...


class InlineExecutor:
    """Measures in this process, one after another."""

    def map(self, fn, *iterables):
        return map(fn, *iterables)


def target_ref(target: str | AcceleratorTarget) -> str:
    """How passes and worker processes name a target: a shipped target by
    its name, one read from a file by that file's absolute path."""
    if isinstance(target, str):
        return target
    path = Path(target.source)
    return str(path.resolve()) if path.is_file() else path.stem


def _measure_item(item: tuple[str, str]) -> tuple[float, int]:
    text, target = item
    return measure_kernel(text, target)


@dataclass
class Tally:
    """What the measurer did while a tally was open (`Measurer.tally()`):
    the distinct configurations asked for (cached or not) and how many of
    them were simulated."""

    keys: set[str] = field(default_factory=set)
    simulated: int = 0

    @property
    def configurations(self) -> int:
        return len(self.keys)


@dataclass
class Measurer:
    """Memoized, cached, optionally parallel kernel measurements for one
    target. `measurements` counts simulator runs actually made (cache hits
    and repeated configurations are free).

    With `jobs > 1` (and no `executor` given) the measurer owns a process
    pool, started on the first batch that needs it and kept until `close()`
    (or the end of a `with` block, or the measurer's collection), so the
    workers' imports are paid once. `progress(done, total)`, when set, is
    called after each configuration simulated in a batch."""

    target: AcceleratorTarget
    cache: TuningLog
    jobs: int = 1
    executor: Executor | None = None
    measurements: int = 0
    lookups: int = 0
    progress: Callable[[int, int], None] | None = None
    _pool: ProcessPoolExecutor | None = field(default=None, repr=False)
    _tallies: list[Tally] = field(default_factory=list, repr=False)

    @staticmethod
    def create(
        target: str | AcceleratorTarget = "mlu100",
        cache: str | Path | None = None,
        jobs: int = 1,
        executor: Executor | None = None,
    ) -> Measurer:
        t = load_target(target) if isinstance(target, str) else target
        if jobs < 1:
            raise DlfusionError(f"--jobs must be at least 1, got {jobs}")
        return Measurer(t, TuningLog(cache), jobs, executor)

    # -- lifetime of the pool ------------------------------------------------

    def _executor_for(self, items: int) -> Executor:
        if self.executor is not None:
            return self.executor
        if self.jobs == 1 or items == 1:
            return InlineExecutor()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs)
            weakref.finalize(self, self._pool.shutdown)
        return self._pool

    def close(self) -> None:
        """Stop the measurer's own worker processes (a given executor is the
        caller's to close)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> Measurer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- counting ------------------------------------------------------------

    @contextmanager
    def tally(self) -> Iterator[Tally]:
        """Count the configurations asked for, and simulated, in a block."""
        t = Tally()
        self._tallies.append(t)
        try:
            yield t
        finally:
            self._tallies.remove(t)

    # -- measuring -----------------------------------------------------------

    def _target_ref(self) -> str:
        return target_ref(self.target)

    def key(self, text: str, cores: int) -> str:
        h = hashlib.sha256()
        h.update(f"{RECORD_VERSION}|{self.target.digest}|{cores}|".encode())
        h.update(text.encode())
        return h.hexdigest()[:32]

    def cost(self, layers: Sequence[Operation], cores: int) -> float:
        return self.costs([(layers, cores)])[0]

    def costs(self, configs: Sequence[tuple[Sequence[Operation], int]]) -> list[float]:
        """Latency (us) of each (layers, cores) configuration."""
        return [lat for lat, _ in self._lookup(configs, need_active=False)]

    def details(self, configs: Sequence[tuple[Sequence[Operation], int]]) -> list[tuple[float, int]]:
        """Latency (us) and busy cores of each configuration (a cached record
        without busy cores is measured again)."""
        return self._lookup(configs, need_active=True)  # type: ignore[return-value]

    def _lookup(self, configs, need_active: bool) -> list[tuple[float, int | None]]:
        keys: list[str] = []
        todo: dict[str, tuple[str, int, list[str]]] = {}
        for layers, cores in configs:
            if cores > self.target.cores:
                raise DlfusionError(
                    f"core number {cores} exceeds the {self.target.cores} cores of target '{self.target.name}'"
                )
            text = kernel_text(layers, cores)
            k = self.key(text, cores)
            keys.append(k)
            self.lookups += 1
            for t in self._tallies:
                t.keys.add(k)
            missing = self.cache.get(k) is None or (need_active and k not in self.cache.active)
            if missing and k not in todo:
                kinds = [op.name.removeprefix("nn.") for op in layers]
                todo[k] = (text, cores, kinds)
        if todo:
            self._simulate(todo)
        return [(self.cache.get(k), self.cache.active.get(k)) for k in keys]  # type: ignore[misc]

    def _simulate(self, todo: dict[str, tuple[str, int, list[str]]]) -> None:
        """Simulate the configurations of `todo` (key -> text, cores, layer
        kinds); each record is appended to the cache as soon as its result
        arrives, so an interrupted batch keeps what it measured."""
        ref = self._target_ref()
        items = [(text, ref) for text, _, _ in todo.values()]
        results = self._executor_for(len(items)).map(_measure_item, items)
        for done, ((k, (_, cores, kinds)), (latency, active)) in enumerate(zip(todo.items(), results), 1):
            self.measurements += 1
            for t in self._tallies:
                t.simulated += 1
            self.cache.add(
                {
                    "version": RECORD_VERSION,
                    "target": self.target.name,
                    "target_digest": self.target.digest,
                    "cost_model": cost_model_digest(),
                    "key": k,
                    "cores": cores,
                    "layers": kinds,
                    "latency_us": latency,
                    "active": active,
                    "time": time.time(),
                }
            )
            if self.progress is not None:
                self.progress(done, len(items))
