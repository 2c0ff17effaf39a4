"""Every zoo model compiled for the simulated accelerator under three plans,
against onnxruntime.

Plans: every layer its own kernel on 1 core; every layer its own kernel on
all cores of the target; a random valid plan (seeded: runs of 1-4
consecutive layers fused, random core numbers). For each: lower-to-accel,
simulate with numbers (outputs vs onnxruntime on the same input, max abs error
over the largest reference magnitude, limit 1e-4) and timing-only (its
latency must equal the full run's).

    python benchmarks/zoo_accel.py [--models a,b] [--target mlu100] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np


def random_groups(graph, seed: int, max_cores: int, max_len: int = 4):
    from dlfusion.grouping import Group

    rng = random.Random(seed)
    groups, i = [], 0
    while i < len(graph):
        n = rng.randint(1, max_len)
        groups.append(Group(graph.names[i : i + n], rng.randint(1, max_cores)))
        i += n
    return groups


def main() -> int:
    import onnxruntime as ort

    from dlfusion import zoo
    from dlfusion.context import make_context
    from dlfusion.frontend import import_model
    from dlfusion.grouping import Group, LayerGraph, apply_groups
    from dlfusion.interpreter import random_inputs
    from dlfusion.passes.lower_to_accel import LowerToAccelPass
    from dlfusion.sim import simulate
    from dlfusion.targets import load_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(zoo.MODELS))
    ap.add_argument("--target", default="mlu100")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    target = load_target(args.target)
    print(f"target {target.name}; plan: latency us (rel err vs onnxruntime, timing-only equal?)")
    print(f"{'model':<14} {'1 core':>28} {f'{target.cores} cores':>28} {'random plan':>28} {'wall s':>7}")
    worst, all_equal = 0.0, True
    for name in args.models.split(","):
        t0 = time.perf_counter()
        model = zoo.build(name)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        cells = []
        for plan in ("one", "all", "random"):
            ctx = make_context()
            module = import_model(model, ctx)
            graph = LayerGraph.of(module)
            if plan == "one":
                groups = [Group([n], 1) for n in graph.names]
            elif plan == "all":
                groups = [Group([n], target.cores) for n in graph.names]
            else:
                groups = random_groups(graph, args.seed, target.cores)
            inputs = random_inputs(module, seed=1)
            apply_groups(module, groups)
            LowerToAccelPass(target=args.target).apply(ctx, module)
            full = simulate(module, ctx, inputs, record_events=False)
            timing = simulate(module, ctx, None, timing_only=True, record_events=False)
            ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
            err = max(
                float(np.max(np.abs(full.outputs[k] - v))) / float(np.max(np.abs(v))) for k, v in ref.items()
            )
            equal = timing.total_us == full.total_us
            worst = max(worst, err)
            all_equal &= equal
            cells.append(f"{full.total_us:>10.1f} ({err:.1e}, {'yes' if equal else 'NO'})")
        print(f"{name:<14} {cells[0]:>28} {cells[1]:>28} {cells[2]:>28} {time.perf_counter() - t0:>7.1f}", flush=True)
    print(f"worst relative error {worst:.2e} (limit 1e-4); timing-only equal to full: {all_equal}")
    return 0 if worst <= 1e-4 and all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
