"""The simulator's speed on ResNet-50, against onnxruntime in the same run.

1. Full numeric run: the zoo's ResNet-50, every layer its own kernel on all
   cores of the target, lowered and simulated with numbers, as a ratio to
   onnxruntime on the same input (both: best of N after one warm-up; also
   end to end: onnxruntime session creation + run vs lowering + simulation).
   Peak memory of each, in a fresh process (VmHWM above the baseline after
   imports), as a ratio. Goals: at most 3x in time, 2x in memory.
2. `--timing-only` on the same program: wall time and simulated instructions
   per second.
3. For reference: the `nn` reference interpreter on the same input (no
   accelerator, whole tensors), and the simulation's CPU time (the machine's
   load average is printed: on a busy machine wall times vary a lot).

    python benchmarks/accel_resnet50.py [--model resnet50] [--target mlu100] [--repeat 3]
                                        [--blas-threads N|none]
"""

from __future__ import annotations

import argparse
import json
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
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(model_name, target):
    from dlfusion import zoo
    from dlfusion.context import make_context
    from dlfusion.frontend import import_model
    from dlfusion.grouping import Group, LayerGraph, apply_groups
    from dlfusion.interpreter import random_inputs
    from dlfusion.targets import load_target

    model = zoo.build(model_name)
    ctx = make_context()
    module = import_model(model, ctx)
    inputs = random_inputs(module, seed=1)
    cores = load_target(target).cores
    apply_groups(module, [Group([n], cores) for n in LayerGraph.of(module).names])
    return model, ctx, module, inputs


def _blas_threads(arg: str) -> int | None:
    return None if arg == "none" else int(arg)


def child(kind: str, model_name: str, target: str, blas_threads: int | None = 1) -> None:
    import numpy as np  # noqa: F401
    import onnxruntime as ort

    from dlfusion.passes.lower_to_accel import LowerToAccelPass
    from dlfusion.sim import simulate

    model, ctx, module, inputs = _build(model_name, target)
    data = model.SerializeToString()
    del model
    base = _rss()
    if kind == "ort":
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        sess.run(None, inputs)
    else:
        LowerToAccelPass(target=target).apply(ctx, module)
        simulate(module, ctx, inputs, record_events=False, blas_threads=blas_threads)
    print(json.dumps({"base": base, "peak": _hwm()}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--target", default="mlu100")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--blas-threads", default="1", type=str,
        help="OpenBLAS threads for the simulation's numbers ('none': as configured; default 1)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    blas = _blas_threads(args.blas_threads)
    if args.child:
        child(args.child, args.model, args.target, blas)
        return 0
    import os

    import numpy as np
    import onnxruntime as ort

    from dlfusion.interpreter import run_module
    from dlfusion.passes.lower_to_accel import LowerToAccelPass
    from dlfusion.sim import simulate

    load_before = os.getloadavg()[0]
    model, ctx, module, inputs = _build(args.model, args.target)
    run_module(module, ctx, inputs)
    nn_t = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        run_module(module, ctx, inputs)
        nn_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_create = time.perf_counter() - t0
    t0 = time.perf_counter()
    LowerToAccelPass(target=args.target).apply(ctx, module)
    lower_s = time.perf_counter() - t0
    ref = sess.run(None, inputs)
    result = simulate(module, ctx, inputs, record_events=False, blas_threads=blas)
    ort_t, sim_t, tim_t, sim_cpu = [], [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ref = sess.run(None, inputs)
        t1 = time.perf_counter()
        c1 = time.process_time()
        result = simulate(module, ctx, inputs, record_events=False, blas_threads=blas)
        c2 = time.process_time()
        t2 = time.perf_counter()
        timing = simulate(module, ctx, None, timing_only=True, record_events=False)
        t3 = time.perf_counter()
        ort_t.append(t1 - t0)
        sim_t.append(t2 - t1)
        tim_t.append(t3 - t2)
        sim_cpu.append(c2 - c1)
    err = float(np.max(np.abs(list(result.outputs.values())[0] - ref[0]))) / float(np.max(np.abs(ref[0])))
    mem = {}
    for kind in ("ort", "sim"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--model", args.model, "--target", args.target,
         "--blas-threads", args.blas_threads],
            check=True, capture_output=True, text=True,
        ).stdout
        m = json.loads(out.strip().splitlines()[-1])
        mem[kind] = m["peak"] - m["base"]
    print(f"{args.model} on {args.target}, every layer its own kernel on all cores; rel err {err:.1e}")
    print(f"onnxruntime run: best {min(ort_t):.3f} s; session creation {ort_create:.3f} s")
    print(
        f"dlfusion simulate (numbers + time): best {min(sim_t):.3f} s (CPU {min(sim_cpu):.3f} s, "
        f"BLAS threads {args.blas_threads}); lowering {lower_s:.3f} s"
    )
    print(f"nn reference interpreter: best {min(nn_t):.3f} s")
    print(f"time ratio, run vs run: {min(sim_t) / min(ort_t):.1f}x (goal <= 3x)")
    print(
        f"time ratio, end to end (lowering + simulate vs session + run): "
        f"{(lower_s + min(sim_t)) / (ort_create + min(ort_t)):.1f}x"
    )
    print(
        f"peak memory above baseline: onnxruntime {mem['ort'] / 2**20:.0f} MiB, dlfusion {mem['sim'] / 2**20:.0f} MiB, "
        f"ratio {mem['sim'] / max(mem['ort'], 1):.2f}x (goal <= 2x)"
    )
    print(
        f"timing-only: best {min(tim_t):.3f} s, {timing.instructions} instructions, "
        f"{timing.instructions / min(tim_t):,.0f} instructions/s, latency {timing.total_us:.1f} us "
        f"(full run {result.total_us:.1f} us)"
    )
    print(f"load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
