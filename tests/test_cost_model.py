"""The machine model's version pins: tuning records and characterization
tables are reused only while the lowering and the simulator give the same
latencies (`dlfusion.tuning.cost_model`). These reference kernels pin them:
if one moves, the cached measurements of everybody are stale."""

from __future__ import annotations

import pytest

from dlfusion.tuning import characterize as chz
from dlfusion.tuning.cost_model import COST_MODEL_VERSION
from dlfusion.tuning.measure import kernel_text, measure_text

S = chz.LayerSpec
KERNELS = {
    "conv3x3s1 64->64 56x56": [S("conv3x3s1", 64, 64, 56)],
    "conv1x1s1 160->960 7x7": [S("conv1x1s1", 160, 960, 7)],
    "conv7x7s2 16->64 224": [S("conv7x7s2", 16, 64, 224)],
    "dw3x3s2 144 56x56": [S("dw3x3s2", 144, 144, 56)],
    "fc 4096->1000": [S("fc", 4096, 1000, 1)],
    "maxpool3x3s2 64 113": [S("maxpool3x3s2", 64, 64, 113)],
    "add 256 14x14": [S("add", 256, 256, 14)],
    "conv-relu-conv 64 28x28": [S("conv3x3s1", 64, 64, 28), S("relu", 64, 64, 28), S("conv1x1s1", 64, 64, 28)],
    "conv-relu-conv 256 56x56": [S("conv3x3s1", 256, 256, 56), S("relu", 256, 256, 56), S("conv1x1s1", 256, 256, 56)],
}
CORES = (1, 4, 8)

# latency (us) on 1, 4 and 8 cores, as one kernel, for COST_MODEL_VERSION 1
PINNED = {
    ("mlu100", "conv3x3s1 64->64 56x56"): [148.3332, 61.6213, 49.1486],
    ("mlu100", "conv1x1s1 160->960 7x7"): [33.5046, 28.1096, 27.8171],
    ("mlu100", "conv7x7s2 16->64 224"): [1296.5673, 365.8952, 214.6432],
    ("mlu100", "dw3x3s2 144 56x56"): [78.8761, 45.4251, 43.0061],
    ("mlu100", "fc 4096->1000"): [127.8471, 107.6212, 105.0913],
    ("mlu100", "maxpool3x3s2 64 113"): [72.785, 46.7783, 43.5666],
    ("mlu100", "add 256 14x14"): [25.288, 24.235, 24.235],
    ("mlu100", "conv-relu-conv 64 28x28"): [63.5705, 47.3285, 48.2185],
    ("mlu100", "conv-relu-conv 256 56x56"): [2254.026, 711.8167, 439.4087],
    ("edge8", "conv3x3s1 64->64 56x56"): [620.855, 204.8237, 120.83],
    ("edge8", "conv1x1s1 160->960 7x7"): [65.005, 35.1713, 30.8825],
    ("edge8", "conv7x7s2 16->64 224"): [3353.275, 981.5588, 537.1075],
    ("edge8", "dw3x3s2 144 56x56"): [148.4238, 79.7338, 66.8418],
    ("edge8", "fc 4096->1000"): [471.7962, 364.635, 346.3938],
    ("edge8", "maxpool3x3s2 64 113"): [173.22, 98.5485, 92.1303],
    ("edge8", "add 256 14x14"): [24.2, 20.16, 20.16],
    ("edge8", "conv-relu-conv 64 28x28"): [218.49, 89.8688, 64.9075],
    ("edge8", "conv-relu-conv 256 56x56"): [13786.6, 3777.9175, 1965.555],
}


@pytest.mark.parametrize("target,kernel", sorted(PINNED))
def test_reference_kernel_latency_is_pinned(target, kernel):
    _, _, ops = chz.build_layers(KERNELS[kernel])
    got = [round(measure_text(kernel_text(ops, c), target), 4) for c in CORES]
    assert got == pytest.approx(PINNED[target, kernel], rel=1e-9, abs=1e-4), (
        f"the lowering or the simulator changed the latency of '{kernel}' on {target} "
        f"(cost model version {COST_MODEL_VERSION}): cached tuning records and characterization "
        "tables are stale. Bump COST_MODEL_VERSION in dlfusion/tuning/cost_model.py, update "
        "PINNED here, and refresh the shipped tables (python -m dlfusion.tuning.tables.refresh)"
    )


def test_records_of_another_cost_model_are_stale(tmp_path, capsys):
    """A tuning record measured with another lowering or simulator is never
    reused: dropped with a note, the cache rewritten without it; a record
    from before the field existed counts as cost model cm1."""
    import json

    from dlfusion.tuning.cost_model import cost_model_digest
    from dlfusion.tuning.measure import RECORD_VERSION, TuningLog

    base = {"version": RECORD_VERSION, "target": "mlu100", "target_digest": "d", "cores": 1, "latency_us": 5.0}
    path = tmp_path / "records.jsonl"
    lines = [
        dict(base, key="current", cost_model=cost_model_digest(), active=1),
        dict(base, key="old", cost_model="cm0"),
        dict(base, key="unversioned"),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    log = TuningLog(path)
    assert log.get("current") == 5.0 and log.active["current"] == 1
    assert log.get("old") is None
    assert log.get("unversioned") == (5.0 if cost_model_digest() == "cm1" else None)
    assert "another cost model" in capsys.readouterr().err
    kept = [json.loads(x)["key"] for x in path.read_text().splitlines()]
    assert "old" not in kept and "current" in kept
