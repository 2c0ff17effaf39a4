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
    from dlfusion import zoo
    from dlfusion.grouping import Group, LayerGraph
    from dlfusion.models import compile_plan, load_model, verify
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
        loaded = load_model(name, fold_bn=False)
        graph = LayerGraph.of(loaded.module)
        plans = (
            [Group([n], 1) for n in graph.names],
            [Group([n], target.cores) for n in graph.names],
            random_groups(graph, args.seed, target.cores),
        )
        cells = []
        for groups in plans:
            module = compile_plan(loaded, groups, args.target)
            check = verify(loaded, module, loaded.ctx, seed=1)
            timing = simulate(module, loaded.ctx, None, timing_only=True, record_events=False)
            equal = timing.total_us == check.latency_us
            worst = max(worst, check.max_rel_error)
            all_equal &= equal
            cells.append(f"{check.latency_us:>10.1f} ({check.max_rel_error:.1e}, {'yes' if equal else 'NO'})")
        print(f"{name:<14} {cells[0]:>28} {cells[1]:>28} {cells[2]:>28} {time.perf_counter() - t0:>7.1f}", flush=True)
    print(f"worst relative error {worst:.2e} (limit 1e-4); timing-only equal to full: {all_equal}")
    return 0 if worst <= 1e-4 and all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
