"""Every zoo model through the command-line tools, against onnxruntime.

For each model: `dlfusion-zoo NAME -o NAME.onnx`; `dlfusion-opt NAME.onnx`
(verified nn IR) and its print -> parse -> print round trip; `dlfusion-run
NAME.onnx --inputs in.npz --outputs out.npz`, with and without
`-p fold-batchnorm`, compared with onnxruntime on the same input (max abs
error relative to the largest reference magnitude; the tests require 1e-4).

    python benchmarks/zoo_conformance.py [--models resnet50,vgg16] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def sh(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def main() -> int:
    from dlfusion import zoo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(zoo.MODELS))
    ap.add_argument("--workdir")
    args = ap.parse_args()
    import onnxruntime as ort

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dlfusion-zoo-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'model':<15} {'layers':>6} {'round trip':>10} {'rel err':>9} {'rel err (fold-bn)':>17} {'run s':>6}")
    worst = 0.0
    for name in args.models.split(","):
        onnx_path = work / f"{name}.onnx"
        sh(tool("dlfusion-zoo"), name, "-o", str(onnx_path))
        ir = sh(tool("dlfusion-opt"), str(onnx_path))
        (work / f"{name}.mlir").write_text(ir)
        again = sh(tool("dlfusion-opt"), str(work / f"{name}.mlir"))
        layers = sum(1 for line in ir.splitlines() if " = nn." in line and "nn.weight" not in line)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {
            i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in sess.get_inputs()
        }
        np.savez(work / "in.npz", **feeds)
        ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        errs = []
        t0 = time.perf_counter()
        for extra in ([], ["-p", "fold-batchnorm"]):
            out = work / "out.npz"
            sh(tool("dlfusion-run"), str(onnx_path), *extra, "--inputs", str(work / "in.npz"), "--outputs", str(out))
            got = np.load(out)
            errs.append(max(float(np.max(np.abs(got[k] - v))) / float(np.max(np.abs(v))) for k, v in ref.items()))
        secs = (time.perf_counter() - t0) / 2
        worst = max(worst, *errs)
        print(f"{name:<15} {layers:>6} {'identical' if again == ir else 'DIFFERS':>10} {errs[0]:>9.2e} {errs[1]:>17.2e} {secs:>6.1f}")
        onnx_path.unlink()
    print(f"worst relative error: {worst:.2e} (limit 1e-4)")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
