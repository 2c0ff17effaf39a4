"""The simulator of the accelerator: numbers and time of an `accel.program`.

    from dlfusion.sim import simulate
    result = simulate(module, ctx, {"input": x})          # outputs and time
    result.outputs["output"], result.total_us, result.report
    simulate(module, ctx, None, timing_only=True).total_us   # time only

`simulate` interprets the program with xDSL's interpreter framework
(`AccelFunctions`, with `NNFunctions` for the numerics the instructions borrow
from the `nn` reference interpreter) and accounts time with the event-driven
`Machine` of `dlfusion.sim.machine`, following docs/accelerator.md. The time
account reads only shapes and attributes: `timing_only=True` skips every
tensor computation (weights need not have data) and gives the same latency.

Inputs and outputs are keyed by the program's `input_names` / `output_names`
(the ONNX graph's names). `dlfusion.sim.report` writes the JSON report, a
Chrome trace and a Gantt chart of a `SimResult`.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.interpreter import Interpreter
from xdsl.ir import Operation

from dlfusion.dialects import accel
from dlfusion.dialects.accel import mshape
from dlfusion.dialects.weights import weight_store
from dlfusion.errors import DlfusionError
from dlfusion.interpreter.nn_functions import NNFunctions
from dlfusion.sim.accel_functions import AccelFunctions
from dlfusion.sim.machine import Event, Machine, TimingModel
from dlfusion.targets import AcceleratorTarget, load_target

__all__ = [
    "AccelFunctions",
    "Event",
    "Machine",
    "SimResult",
    "TimingModel",
    "check_program_inputs",
    "find_program",
    "has_program",
    "program_input_signature",
    "random_program_inputs",
    "simulate",
]


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def has_program(module: Operation) -> bool:
    """Whether `module` is or holds (at top level) an `accel.program`."""
    if isinstance(module, accel.ProgramOp):
        return True
    return any(isinstance(op, accel.ProgramOp) for op in module.regions[0].ops) if module.regions else False


def find_program(module: Operation) -> accel.ProgramOp:
    """The `accel.program` of `module` (or `module` itself)."""
    if isinstance(module, accel.ProgramOp):
        return module
    programs = [op for op in module.regions[0].ops if isinstance(op, accel.ProgramOp)] if module.regions else []
    if len(programs) != 1:
        raise DlfusionError(
            "the module holds no accel.program" if not programs else f"the module holds {len(programs)} accel.programs",
            hint="lower a model with `-p lower-to-accel` first" if not programs else "simulate one program at a time",
        )
    return programs[0]


def program_input_signature(program: accel.ProgramOp) -> dict[str, tuple[int, ...]]:
    """Graph input name -> shape (float32), in the program's input order."""
    names = [a.data for a in program.input_names.data]
    return {name: mshape(op.result) for name, op in zip(names, program.inputs())}


def random_program_inputs(program: accel.ProgramOp, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal float32 inputs, as `dlfusion-run` makes for @main."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(shape, dtype=np.float32)
        for name, shape in program_input_signature(program).items()
    }


def check_program_inputs(
    program: accel.ProgramOp, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The input arrays by name, checked for presence, shape and dtype (float32)."""
    sig = program_input_signature(program)
    out = {}
    for name, shape in sig.items():
        if name not in inputs:
            have = ", ".join(repr(k) for k in inputs) or "none"
            raise DlfusionError(
                f"missing input tensor '{name}' (expected shape {_fmt_shape(shape)}, float32; given: {have})"
            )
        value = np.asarray(inputs[name])
        if value.shape != shape:
            raise DlfusionError(
                f"input tensor '{name}' has shape {_fmt_shape(value.shape)}, expected {_fmt_shape(shape)}"
            )
        if value.dtype != np.float32:
            raise DlfusionError(
                f"input tensor '{name}' has dtype {value.dtype}, expected float32 (shape {_fmt_shape(shape)})"
            )
        out[name] = value
    unknown = [k for k in inputs if k not in sig]
    if unknown:
        raise DlfusionError(
            f"unknown input tensor(s) {', '.join(repr(k) for k in unknown)}",
            hint=f"the program's inputs are {', '.join(repr(k) for k in sig) or 'none'}",
        )
    return out


@dataclass
class SimResult:
    """What a simulation gives: the outputs (empty if timing-only), the
    report (JSON-ready), the per-core timeline, and how long it took."""

    outputs: dict[str, np.ndarray]
    report: dict
    events: list[Event]
    target: AcceleratorTarget
    wall_s: float = 0.0
    kernel_names: list[str] = field(default_factory=list)

    @property
    def total_us(self) -> float:
        return self.report["total_us"]

    @property
    def instructions(self) -> int:
        return self.report["instructions"]

    @property
    def instructions_per_s(self) -> float:
        return self.instructions / self.wall_s if self.wall_s > 0 else float("inf")


_OPENBLAS_SETTERS: list | None = None


def _openblas_setter(lib: ctypes.CDLL):
    """A function setting the thread count of OpenBLAS `lib` and returning
    the previous one, or None."""
    local = getattr(lib, "openblas_set_num_threads_local", None)
    if local is not None:
        local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
        return local
    for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
        get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
        set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
        if get is not None and set_ is not None:
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]

            def setter(n: int, get=get, set_=set_) -> int:
                previous = get()
                set_(n)
                return previous

            return setter
    return None


def _openblas_setters() -> list:
    """For every OpenBLAS this process has loaded (numpy's; found on Linux),
    a function setting its thread count and returning the previous one;
    empty if there is none or it cannot be found."""
    global _OPENBLAS_SETTERS
    if _OPENBLAS_SETTERS is None:
        setters = []
        try:
            with open("/proc/self/maps") as maps:
                fields = [ln.split(None, 5) for ln in maps if "openblas" in ln.lower()]
            for path in sorted({f[5].strip() for f in fields if len(f) == 6}):
                fn = _openblas_setter(ctypes.CDLL(path))
                if fn is not None:
                    setters.append(fn)
        except OSError:
            setters = []
        _OPENBLAS_SETTERS = setters
    return _OPENBLAS_SETTERS


@contextmanager
def _blas_threads(n: int | None) -> Iterator[None]:
    """Run with `n` OpenBLAS threads (None: as configured), restored after.
    The results do not depend on it (a product's elements are split among
    threads, not its sums)."""
    setters = _openblas_setters() if n else []
    previous = [fn(n) for fn in setters]
    try:
        yield
    finally:
        for fn, p in zip(setters, previous):
            fn(p)


def _resolve_target(program: accel.ProgramOp, target) -> AcceleratorTarget:
    if target is None:
        return load_target(program.target.data)
    if isinstance(target, AcceleratorTarget):
        return target
    return load_target(str(target))


def simulate(
    module: Operation,
    ctx: Context,
    inputs: Mapping[str, np.ndarray] | None = None,
    timing_only: bool = False,
    target: AcceleratorTarget | str | None = None,
    record_events: bool = True,
    blas_threads: int | None = 1,
) -> SimResult:
    """Run the `accel.program` of `module` (parsed or built in `ctx`, whose
    weight store holds the weights) on the simulated accelerator.

    `inputs` by graph input name; None means seeded random inputs (seed 0)
    for a full run. `target` defaults to the program's `target` property.
    With `timing_only`, no tensor is computed and `outputs` is empty; the
    latency is the same as a full run's. `record_events=False` keeps no
    per-instruction timeline (faster, less memory; the report is unchanged).
    `blas_threads`: the OpenBLAS threads for the numbers (None: as
    configured); the simulator's products are many and small (per core and
    tile), where threads cost more than they give, above all on a busy
    machine.
    """
    from dlfusion.sim.report import build_report

    t0 = time.perf_counter()
    program = find_program(module)
    tgt = _resolve_target(program, target)
    for k in program.kernels():
        if k.num_cores > tgt.cores:
            raise DlfusionError(
                f"kernel '{k.sym_name.data}' uses {k.num_cores} cores; target '{tgt.name}' has {tgt.cores}"
            )
    store = weight_store(ctx)
    arrays: dict[Operation, np.ndarray] = {}
    if not timing_only:
        given = random_program_inputs(program) if inputs is None else check_program_inputs(program, inputs)
        names = [a.data for a in program.input_names.data]
        for name, op in zip(names, program.inputs()):
            arrays[op] = np.array(given[name], dtype=np.float32, order="C", copy=True)
        for op in program.block.ops:
            if isinstance(op, accel.DramOp) and op.kind.data == "weight" and not store.has_data(op.label.data):
                raise DlfusionError(
                    f"weight '{op.label.data}' has no data: the IR was printed with weights elided",
                    hint="re-print it with `dlfusion-opt --emit-weights`, or simulate with --timing-only",
                )
    elif inputs is not None:
        check_program_inputs(program, inputs)

    model = TimingModel(tgt, program.element_bytes.value.data)
    machine = Machine(model, record_events=record_events)
    functions = AccelFunctions(store, machine, model, timing_only=timing_only, input_arrays=arrays)
    root = program.parent_op()
    interpreter = Interpreter(root if isinstance(root, ModuleOp) else ModuleOp([]))
    interpreter.register_implementations(functions)
    interpreter.register_implementations(NNFunctions(store))
    with _blas_threads(None if timing_only else blas_threads):
        interpreter.run_op(program, ())

    outputs: dict[str, np.ndarray] = {}
    if not timing_only:
        names = [a.data for a in program.output_names.data]
        outputs = {name: np.array(v, order="C", copy=True) for name, v in zip(names, functions.outputs)}
    report = build_report(machine, tgt)
    return SimResult(
        outputs=outputs,
        report=report,
        events=machine.events,
        target=tgt,
        wall_s=time.perf_counter() - t0,
        kernel_names=[k.name for k in machine.kernels],
    )
