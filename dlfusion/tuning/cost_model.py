"""The version of the machine model that measurements come from.

A simulated latency depends on three things: the target file, the lowering
that turns a kernel configuration into `accel` instructions
(`lower-to-accel`), and the simulator's time account. Cached measurements
(tuning records, characterization tables) are valid only while all three are
unchanged. The target file is covered by its digest; the lowering and the
simulator by `COST_MODEL_VERSION`, which every tuning record and every
characterization table carries: a record or table of another version is
stale and measured again, never reused.

`tests/test_cost_model.py` pins the latencies of a set of reference kernels:
a change to the lowering or the simulator that moves any of them fails that
test, whose message says to bump `COST_MODEL_VERSION` (and update the pinned
values). A change that keeps every latency (faster numerics, a refactoring)
keeps the version and so the caches.
"""

from __future__ import annotations

COST_MODEL_VERSION = 1


def cost_model_digest() -> str:
    """The version as the caches spell it."""
    return f"cm{COST_MODEL_VERSION}"
