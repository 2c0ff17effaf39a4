"""The simulator's speed on ResNet-50, against onnxruntime in the same run.

1. Full numeric run: the zoo's ResNet-50, every layer its own kernel on all
   cores of the target, lowered and simulated with numbers, as a ratio to
   onnxruntime on the same input, like for like:

   * threads: 1 thread is onnxruntime with `intra_op_num_threads = 1` (one
     inter-op thread, sequential execution) against the simulation with one
     OpenBLAS thread (`simulate`'s default); with `--threads 1,all` also
     one intra-op thread per CPU against as many OpenBLAS threads;
   * layers: the simulation of the imported graph (batch norms, ReLUs and
     additions their own kernels) against onnxruntime executing that graph
     (ORT_DISABLE_ALL); the simulation of the graph after dlfusion's
     `fold-batchnorm` against onnxruntime with its default graph
     optimizations (ORT_ENABLE_ALL: batch norms folded, activations fused
     into convolutions, its own convolution layouts); and, crosswise, the
     imported graph against onnxruntime's defaults.

   The goal (at most 3x in time) is judged on 1 thread against 1, on the
   same layers: the simulator computes the program it is given, layer by
   layer and core by core, and its numeric run is single-threaded by design
   (see `simulate`'s `blas_threads`). The other ratios are shown beside it.
   Every configuration runs once to warm up, then the configurations of a
   thread setting take turns `--repeat` times (the settings one after the
   other); shown are medians of the wall and CPU times and the median of the
   per-turn ratios (neighbouring runs see the same load; the load average
   before and after is printed). Also end to end
   (onnxruntime session creation + run vs lowering + simulation, 1 thread).
2. Peak memory of each (1 thread, imported graph, onnxruntime's defaults),
   in a fresh process (VmHWM above the baseline after imports), as a ratio.
   Goal: at most 2x.
3. `--timing-only` on the same program: wall time and simulated instructions
   per second; the `nn` reference interpreter on the same input (no
   accelerator, whole layers, one OpenBLAS thread), for scale.

    python benchmarks/accel_resnet50.py [--model resnet50] [--target mlu100] [--repeat 9]
                                        [--threads 1|1,all]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(model_name, target, fold: bool = False):
    from dlfusion import zoo
    from dlfusion.context import make_context
    from dlfusion.frontend import import_model
    from dlfusion.grouping import Group, LayerGraph, apply_groups
    from dlfusion.interpreter import random_inputs
    from dlfusion.passes.fold_batchnorm import FoldBatchNormPass
    from dlfusion.targets import load_target

    model = zoo.build(model_name)
    ctx = make_context()
    module = import_model(model, ctx)
    inputs = random_inputs(module, seed=1)
    if fold:
        FoldBatchNormPass().apply(ctx, module)
    cores = load_target(target).cores
    apply_groups(module, [Group([n], cores) for n in LayerGraph.of(module).names])
    return model, ctx, module, inputs


def _session(data: bytes, threads: int, optimize: bool = True):
    """An onnxruntime CPU session with `threads` intra-op threads (one
    inter-op thread, sequential), graph optimizations all or none."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def child(kind: str, model_name: str, target: str) -> None:
    """Peak memory of one run (1 thread) in this fresh process, printed as JSON."""
    import numpy as np  # noqa: F401

    from dlfusion.passes.lower_to_accel import LowerToAccelPass
    from dlfusion.sim import simulate

    model, ctx, module, inputs = _build(model_name, target)
    data = model.SerializeToString()
    del model
    base = _rss()
    if kind == "ort":
        _session(data, 1).run(None, inputs)
    else:
        LowerToAccelPass(target=target).apply(ctx, module)
        simulate(module, ctx, inputs, record_events=False, blas_threads=1)
    print(json.dumps({"base": base, "peak": _hwm()}))


def _timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--target", default="mlu100")
    ap.add_argument("--repeat", type=int, default=9, help="turns of every configuration (medians)")
    ap.add_argument(
        "--threads", default="1",
        help="thread settings to compare: '1', or '1,all' for all threads too (slow on a busy machine)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.model, args.target)
        return 0

    import numpy as np
    import onnxruntime as ort

    from dlfusion.interpreter import run_module
    from dlfusion.passes.lower_to_accel import LowerToAccelPass
    from dlfusion.sim import _blas_threads, simulate

    ncpu = os.cpu_count() or 1
    settings = {"1": 1, "all": ncpu}
    threads = [t.strip() for t in args.threads.split(",") if t.strip()]
    if not threads or any(t not in settings for t in threads):
        ap.error("--threads takes '1' or '1,all'")
    if "1" not in threads:
        threads.insert(0, "1")  # the goal's reference, and the end-to-end figure
    load_before = os.getloadavg()
    model, ctx, module, inputs = _build(args.model, args.target)
    _, fctx, folded, _ = _build(args.model, args.target, fold=True)
    data = model.SerializeToString()
    with _blas_threads(1):
        run_module(module, ctx, inputs)
        nn_t = [_timed(lambda: run_module(module, ctx, inputs))[1] for _ in range(3)]

    _, ort_create, _ = _timed(lambda: _session(data, 1))
    _, lower_s, _ = _timed(lambda: LowerToAccelPass(target=args.target).apply(ctx, module))
    LowerToAccelPass(target=args.target).apply(fctx, folded)

    # the configurations, per thread setting in the order they take turns;
    # the settings one after the other (threads left spinning by one
    # setting's runs would slow the other's)
    runs = {}
    first = {}
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for t in threads:
        n = settings[t]
        sess = _session(data, n)
        phase = {f"ort {t}": lambda sess=sess: sess.run(None, inputs)}
        if t == "1":
            plain = _session(data, 1, optimize=False)
            phase["ort 1 no-opt"] = lambda plain=plain: plain.run(None, inputs)
            phase["sim 1 folded"] = lambda: simulate(folded, fctx, inputs, record_events=False, blas_threads=1)
        phase[f"sim {t}"] = lambda n=n: simulate(module, ctx, inputs, record_events=False, blas_threads=n)
        first.update({k: fn() for k, fn in phase.items()})  # warm-up
        for k in phase:
            wall[k], cpu[k] = [], []
        for _ in range(args.repeat):
            for k, fn in phase.items():
                _, w, c = _timed(fn)
                wall[k].append(w)
                cpu[k].append(c)
        runs.update(phase)
    timing, tim_s, _ = _timed(lambda: simulate(module, ctx, None, timing_only=True, record_events=False))
    load_after = os.getloadavg()

    ref = first["ort 1"][0]
    scale = float(np.max(np.abs(ref)))
    errs = {
        k: float(np.max(np.abs(list(first[k].outputs.values())[0] - ref))) / scale for k in runs if k.startswith("sim")
    }
    mem = {}
    for kind in ("ort", "sim"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--model", args.model, "--target", args.target],
            check=True, capture_output=True, text=True,
        ).stdout
        m = json.loads(out.strip().splitlines()[-1])
        mem[kind] = m["peak"] - m["base"]

    def med(xs):
        return statistics.median(xs)

    def ratio(a, b):
        return (f"{med([x / y for x, y in zip(wall[a], wall[b])]):.2f}x wall, "
                f"{med([x / y for x, y in zip(cpu[a], cpu[b])]):.2f}x CPU")

    result = first["sim 1"]
    print(
        f"{args.model} on {args.target}, every layer its own kernel on all cores; {ncpu} CPUs; "
        f"numpy {np.__version__}, onnxruntime {ort.__version__}"
    )
    print(f"load average (1/5/15 min): before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}")
    print("relative error vs onnxruntime: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    print(f"medians of {args.repeat} turns (wall s / CPU s):")
    for k in runs:
        print(f"  {k:<14} {med(wall[k]):.3f} / {med(cpu[k]):.3f}")
    print(f"time ratio, 1 thread, same layers (sim vs ort no-opt): {ratio('sim 1', 'ort 1 no-opt')} (goal <= 3x)")
    print(f"time ratio, 1 thread, both graphs optimized (sim folded vs ort): {ratio('sim 1 folded', 'ort 1')}")
    print(f"time ratio, 1 thread, imported graph vs ort's defaults (sim vs ort): {ratio('sim 1', 'ort 1')}")
    if "all" in threads:
        print(f"time ratio, {ncpu} threads vs {ncpu} (sim vs ort): {ratio('sim all', 'ort all')}")
    print(
        f"time ratio, end to end (lowering {lower_s:.3f} s + simulate vs session creation {ort_create:.3f} s "
        f"+ run, 1 thread): {(lower_s + med(wall['sim 1'])) / (ort_create + med(wall['ort 1'])):.2f}x"
    )
    print(
        f"peak memory above baseline (1 thread): onnxruntime {mem['ort'] / 2**20:.0f} MiB, "
        f"dlfusion {mem['sim'] / 2**20:.0f} MiB, ratio {mem['sim'] / max(mem['ort'], 1):.2f}x (goal <= 2x)"
    )
    print(
        f"timing-only: {tim_s:.3f} s, {timing.instructions} instructions, "
        f"{timing.instructions / tim_s:,.0f} instructions/s, latency {timing.total_us:.1f} us "
        f"(full run {result.total_us:.1f} us)"
    )
    print(f"nn reference interpreter (1 BLAS thread): median {med(nn_t):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
