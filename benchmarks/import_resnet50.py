"""Import speed and peak memory of the ONNX frontend on the zoo's ResNet-50.

Speed: `dlfusion-opt`'s work (read the file, import into `nn` with all weights,
verify, print the IR) as a ratio to `onnx.load` + `onnx.shape_inference.
infer_shapes` of the same file, timed alternately in the same process (best
of N each). Goal: at most 5x.

Memory: in a fresh subprocess, peak resident memory of the import (VmHWM)
above the resident size just before it (all modules already imported), as a
ratio to the model's weight bytes. Goal: at most 2.5x.

    python benchmarks/import_resnet50.py [--model resnet50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """VmHWM: this process image's peak resident size. (ru_maxrss is not used:
    Linux carries the parent's peak into a child across fork + exec.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _import_and_print(path: str) -> int:
    from dlfusion.context import make_context
    from dlfusion.frontend import import_onnx_stream
    from dlfusion.ir_io import print_module

    ctx = make_context()
    with open(path, "rb") as f:
        module = import_onnx_stream(f, ctx, source=path)
    return len(print_module(module, ctx))


def _reference(path: str) -> int:
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    return len(model.graph.value_info)


def _memory_child(path: str) -> None:
    import numpy  # noqa: F401
    import onnx  # noqa: F401

    import dlfusion.frontend  # noqa: F401
    import dlfusion.ir_io  # noqa: F401

    base = _rss_bytes()
    _import_and_print(path)
    peak = _peak_rss_bytes()
    print(json.dumps({"base": base, "peak": peak}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _memory_child(args.child)
        return 0

    import numpy as np
    import onnx

    from dlfusion import zoo

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{args.model}.onnx")
        model = zoo.build(args.model)
        onnx.save(model, path)
        weight_bytes = sum(
            onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer
        )
        del model
        ref_t, ours_t = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            _reference(path)
            t1 = time.perf_counter()
            _import_and_print(path)
            t2 = time.perf_counter()
            ref_t.append(t1 - t0)
            ours_t.append(t2 - t1)
        out = subprocess.run(
            [sys.executable, __file__, "--child", path],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        mem = json.loads(out.strip().splitlines()[-1])
    ratio = min(ours_t) / min(ref_t)
    above = mem["peak"] - mem["base"]
    print(f"model: {args.model}, file weights: {weight_bytes / 2**20:.1f} MiB")
    print(f"onnx.load + infer_shapes: best {min(ref_t):.3f} s of {args.repeat}")
    print(f"dlfusion import + print:  best {min(ours_t):.3f} s of {args.repeat}")
    print(f"time ratio: {ratio:.2f}x (goal <= 5x)")
    print(
        f"peak memory above baseline: {above / 2**20:.1f} MiB = "
        f"{above / weight_bytes:.2f}x the weight bytes (goal <= 2.5x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
