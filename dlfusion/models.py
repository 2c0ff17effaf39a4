"""Models as the tools take them: load, compile a plan, check the numbers.

    loaded = load_model("resnet50")                # a zoo name, or a .onnx path
    accel_module = compile_plan(loaded, groups, "mlu100")
    check = verify(loaded, accel_module, loaded.ctx, seed=0)
    check.max_rel_error, check.latency_us, check.report

`load_model` imports the model into the `nn` dialect (after `fold-batchnorm`
unless asked not to); `compile_plan` applies a plan's groups and core numbers
to a copy of that module and lowers it to the accelerator (the on-chip
capacity of every kernel is verified); `verify` runs the compiled program on
the simulator with numbers, on seeded random inputs, and compares the outputs
with onnxruntime's on the original ONNX model.

The relative error of an output is max|simulated - reference| over
max|reference|; `verify` reports the largest over the outputs.
`dlfusion-compile`, `dlfusion-tune --verify` and `benchmarks/zoo_accel.py`
share these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import VerifyException

from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group
from dlfusion.targets import AcceleratorTarget
from dlfusion.tuning.measure import target_ref

ONNX_SUFFIXES = (".onnx", ".onnxtxt")


@dataclass
class LoadedModel:
    """A model imported into the `nn` dialect. `module` is never planned in
    place: `compile_plan` works on a copy, so one load serves many plans."""

    name: str
    onnx: onnx.ModelProto
    module: ModuleOp
    ctx: Context
    source: str


def _zoo_names() -> list[str]:
    from dlfusion import zoo

    return list(zoo.MODELS)


def read_onnx(spec: str, seed: int = 0) -> tuple[str, onnx.ModelProto]:
    """The model of a zoo name (weights from `seed`) or an ONNX file, and
    its short name (the zoo name, or the file's stem)."""
    from dlfusion import zoo
    from dlfusion.frontend import load_onnx

    if spec in zoo.MODELS:
        return spec, zoo.build(spec, seed=seed)
    path = Path(spec)
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DlfusionError(f"cannot read the model: {exc.strerror}", where=spec) from None
        return path.stem, load_onnx(data, text=path.suffix == ".onnxtxt", source=spec)
    if path.suffix in ONNX_SUFFIXES or path.parent != Path("."):
        raise DlfusionError(f"model file '{spec}' does not exist", hint="give a path to an .onnx file or a zoo name")
    raise DlfusionError(
        f"unknown model '{spec}'",
        hint=f"give a path to an .onnx file or one of the zoo's models: {', '.join(_zoo_names())}",
    )


def load_model(spec: str, fold_bn: bool = True, seed: int = 0) -> LoadedModel:
    """Import a zoo model (built with weights from `seed`) or an ONNX file
    (`.onnx`, or `.onnxtxt` in ONNX's text syntax) into a fresh context,
    folding batch norms into their convolutions when `fold_bn`."""
    from dlfusion.context import make_context
    from dlfusion.frontend import import_model
    from dlfusion.passes.fold_batchnorm import FoldBatchNormPass

    name, model = read_onnx(spec, seed)
    ctx = make_context()
    module = import_model(model, ctx, source=spec)
    if fold_bn:
        FoldBatchNormPass().apply(ctx, module)
    return LoadedModel(name, model, module, ctx, spec)


def compile_plan(loaded: LoadedModel, groups: Sequence[Group], target: str | AcceleratorTarget) -> ModuleOp:
    """A copy of the model's module with `groups` applied (named g0, g1, ...
    in an order they can run in) and lowered to `target`'s `accel` program.
    A kernel that does not fit on chip is a DlfusionError naming it."""
    from dlfusion.grouping import LayerGraph, apply_groups
    from dlfusion.passes.fuse_layers import check_cover, run_order
    from dlfusion.passes.lower_to_accel import LowerToAccelPass

    module = loaded.module.clone()
    graph = LayerGraph.of(module)
    check_cover(graph, groups, "the plan")
    ordered = run_order(graph, groups, "the plan")
    apply_groups(module, [Group(list(g.layers), g.cores, f"g{i}") for i, g in enumerate(ordered)])
    LowerToAccelPass(target=target_ref(target)).apply(loaded.ctx, module)
    try:
        module.verify()
    except VerifyException as exc:
        raise DlfusionError(f"the compiled program is invalid: {' '.join(str(exc).split())}") from None
    return module


@dataclass
class Verification:
    """The outcome of `verify`: the largest relative error over the outputs
    (and which output it is), the simulated latency of the full run and the
    simulator's report (`dlfusion.sim.report`: per-kernel figures)."""

    max_rel_error: float
    worst_output: str
    latency_us: float
    report: dict


def reference_outputs(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs computed by onnxruntime (CPU)."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        raise DlfusionError(
            "verification needs onnxruntime, which is not installed",
            hint="pip install onnxruntime, or skip verification",
        ) from None
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs)))


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max|got - ref| / max|ref| (the absolute error when ref is all zeros)."""
    diff = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


def verify(loaded: LoadedModel, accel_module: ModuleOp, ctx: Context, seed: int = 0) -> Verification:
    """Simulate `accel_module` with numbers on seeded standard-normal inputs
    and compare every output with onnxruntime on the original model."""
    from dlfusion.interpreter import random_inputs
    from dlfusion.sim import simulate

    inputs = random_inputs(loaded.module, seed=seed)
    result = simulate(accel_module, ctx, inputs, record_events=False)
    reference = reference_outputs(loaded.onnx, inputs)
    errors = {}
    for name, ref in reference.items():
        if name not in result.outputs:
            raise DlfusionError(f"the compiled program has no output '{name}'")
        errors[name] = relative_error(result.outputs[name], ref)
    worst = max(errors, key=errors.__getitem__)
    return Verification(errors[worst], worst, result.total_us, result.report)
