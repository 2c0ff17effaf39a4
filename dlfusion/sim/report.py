"""Reports of a simulation: JSON summary, Chrome trace, Gantt chart.

* `build_report(machine, target)`: the JSON-ready summary

      {"target": "mlu100", "total_us": ..., "instructions": N,
       "kernels": [{"name", "cores", "active", "start_us", "launch_us",
                    "dispatch_us", "end_us", "latency_us", "dram_bytes_read",
                    "dram_bytes_written", "dram_bytes", "interconnect_bytes",
                    "multicast_transfers", "multicast_bytes_saved",
                    "instructions"}, ...],
       "cores": [{"core", "busy_ns": {"dma", "mac", "vector", "interconnect"},
                  "busy_total_ns", "utilization"}, ...]}

  A kernel's `start_us` is when its launch begins (the end of the previous
  kernel), `dispatch_us` when its core 0 starts (after the launch cost), and
  `latency_us` = `end_us - start_us` includes the launch, so the kernels'
  latencies add up to `total_us`. Utilization is busy / total (waiting at a
  barrier or for the other cores of a multicast load is not busy).
  `dram_bytes_read` counts a multicast load's slice once;
  `multicast_transfers` is the number of loads delivered to two or more cores
  at once and `multicast_bytes_saved` the DRAM reads that loading them per
  core would have added.
  `instructions` counts executed instruction instances over all cores (an
  instruction run by 8 cores counts 8; a DMA of size 0 on a core, and the
  compute and DMA instructions that idle cores skip, do not count; a
  multicast load counts once per receiving core; `accel.alloc` is not an
  instruction).
* `write_report`, `write_trace` (Chrome trace-event JSON: one track per core,
  "X" events in µs, for Perfetto / chrome://tracing), `write_gantt` (a PNG,
  matplotlib's Agg backend). Every file appears only when complete.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence

from dlfusion.cli import AtomicOutput
from dlfusion.errors import DlfusionError
from dlfusion.sim.machine import SYNC, UNITS, Event, Machine
from dlfusion.targets import AcceleratorTarget

__all__ = ["build_report", "trace_json", "write_gantt", "write_report", "write_trace"]


def _us(ns: float) -> float:
    return ns / 1e3


def build_report(machine: Machine, target: AcceleratorTarget) -> dict:
    total = machine.total_ns
    kernels = []
    for k in machine.kernels:
        kernels.append(
            {
                "name": k.name,
                "cores": k.cores,
                "active": k.active,
                "start_us": _us(k.launch_start_ns),
                "launch_us": _us(k.start_ns - k.launch_start_ns),
                "dispatch_us": _us(k.start_ns),
                "end_us": _us(k.end_ns),
                "latency_us": _us(k.latency_ns),
                "dram_bytes_read": k.dram_bytes_read,
                "dram_bytes_written": k.dram_bytes_written,
                "dram_bytes": k.dram_bytes_read + k.dram_bytes_written,
                "interconnect_bytes": k.interconnect_bytes,
                "multicast_transfers": k.multicast_transfers,
                "multicast_bytes_saved": k.multicast_bytes_saved,
                "instructions": k.instructions,
            }
        )
    cores = []
    for c, busy in enumerate(machine.busy):
        total_busy = sum(busy[u] for u in UNITS)
        cores.append(
            {
                "core": c,
                "busy_ns": {u: busy[u] for u in UNITS},
                "busy_total_ns": total_busy,
                "utilization": total_busy / total if total > 0 else 0.0,
            }
        )
    return {
        "target": target.name,
        "total_us": _us(total),
        "instructions": machine.instructions,
        "kernels": kernels,
        "cores": cores,
    }


def _check_dir(path: str, what: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise DlfusionError(f"cannot write {what} '{path}': no such directory '{directory}'")


def _write_atomic(path: str, data: str | bytes, what: str) -> None:
    _check_dir(path, what)
    try:
        out = AtomicOutput(path, "wb" if isinstance(data, bytes) else "w")
    except OSError as exc:
        raise DlfusionError(f"cannot write {what} '{path}': {exc.strerror or exc}") from None
    try:
        out.write(data)
        out.commit()
    except BaseException as exc:
        out.discard()
        if isinstance(exc, OSError):
            raise DlfusionError(f"cannot write {what} '{path}': {exc.strerror or exc}") from None
        raise


def write_report(path: str, report: dict) -> None:
    _write_atomic(path, json.dumps(report, indent=1) + "\n", "report")


def trace_json(events: Sequence[Event], kernel_stats: Sequence[dict], target: str) -> dict:
    """Chrome trace-event format: process 0 = the accelerator, thread c = core
    c (plus one "kernels" track with each kernel's launch and run)."""
    cores = sorted({e.core for e in events})
    kernel_track = (max(cores) + 1) if cores else 0
    out: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": f"accelerator {target}"}},
        {"name": "thread_name", "ph": "M", "pid": 0, "tid": kernel_track, "args": {"name": "kernels"}},
        {"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": kernel_track, "args": {"sort_index": -1}},
    ]
    for c in cores:
        out.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": c, "args": {"name": f"core {c}"}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": c, "args": {"sort_index": c}})
    names = [k["name"] for k in kernel_stats]
    for k in kernel_stats:
        out.append(
            {"name": f"launch {k['name']}", "cat": "launch", "ph": "X", "pid": 0, "tid": kernel_track,
             "ts": k["start_us"], "dur": k["launch_us"]}
        )
        out.append(
            {"name": k["name"], "cat": "kernel", "ph": "X", "pid": 0, "tid": kernel_track,
             "ts": k["dispatch_us"], "dur": k["end_us"] - k["dispatch_us"],
             "args": {"cores": k["cores"], "active": k["active"], "dram_bytes": k["dram_bytes"]}}
        )
    for e in events:
        out.append(
            {"name": f"{e.label} [{names[e.kernel]}]", "cat": e.unit, "ph": "X", "pid": 0, "tid": e.core,
             "ts": e.start / 1e3, "dur": (e.end - e.start) / 1e3}
        )
    return {"traceEvents": out, "displayTimeUnit": "ns"}


def write_trace(path: str, result) -> None:
    """The Chrome trace of a `SimResult`."""
    doc = trace_json(result.events, result.report["kernels"], result.report["target"])
    _write_atomic(path, json.dumps(doc, separators=(",", ":")) + "\n", "trace")


_COLORS = {"dma": "#4c72b0", "mac": "#dd8452", "vector": "#55a868", "interconnect": "#c44e52", SYNC: "#d0d0d0"}
_LAUNCH = "#f3e9c6"


def gantt_png(result, title: str | None = None) -> bytes:
    """A per-core timeline (one row per core, colored by unit) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    report = result.report
    ncores = max((e.core for e in result.events), default=-1) + 1
    ncores = max(ncores, max((k["cores"] for k in report["kernels"]), default=1))
    # merge back-to-back events of one unit on one core (keeps big programs drawable)
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for e in sorted(result.events, key=lambda e: (e.core, e.unit, e.start)):
        spans = bars.setdefault((e.core, e.unit), [])
        s, d = e.start / 1e3, (e.end - e.start) / 1e3
        if spans and abs(spans[-1][0] + spans[-1][1] - s) < 1e-9:
            spans[-1] = (spans[-1][0], spans[-1][1] + d)
        else:
            spans.append((s, d))
    height = min(20.0, 1.5 + 0.25 * ncores)
    fig = Figure(figsize=(12, height), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for (core, unit), spans in bars.items():
        ax.broken_barh(spans, (core - 0.4, 0.8), facecolors=_COLORS.get(unit, "#888888"), linewidth=0)
    for k in report["kernels"]:
        ax.axvspan(k["start_us"], k["dispatch_us"], color=_LAUNCH, linewidth=0)
        ax.axvline(k["end_us"], color="black", linewidth=0.5, alpha=0.5)
    ax.set_xlim(0, max(report["total_us"], 1e-3))
    ax.set_ylim(ncores - 0.5, -0.5)
    ax.set_xlabel("time (µs)")
    ax.set_ylabel("core")
    if ncores <= 40:
        ax.set_yticks(range(ncores))
    ax.set_title(
        title
        or f"{report['target']}: {report['total_us']:.1f} µs, {len(report['kernels'])} kernel{'' if len(report['kernels']) == 1 else 's'}"
    )
    ax.legend(
        handles=[Patch(color=_COLORS[u], label=u) for u in (*UNITS, SYNC)]
        + [Patch(color=_LAUNCH, label="launch")],
        loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small",
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_gantt(path: str, result, title: str | None = None) -> None:
    _write_atomic(path, gantt_png(result, title), "Gantt chart")
