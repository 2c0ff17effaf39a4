"""xDSL interpreter functions for the `accel` dialect.

`AccelFunctions` gives every `accel` op an `@impl`. Interpreting an
`accel.program` does two things at once, kept strictly apart:

* the time account: each instruction appends an `Instr` (duration, or bytes
  per core) to the current kernel's `KernelProgram`, computed from shapes and
  attributes only; at the end of each `accel.kernel` the `Machine` simulates
  the kernel on all its cores (see `dlfusion.sim.machine`);
* the numbers (skipped when `timing_only`): DRAM tensors are float32 numpy
  arrays, on-chip buffers are one numpy array per core; every core `< active`
  executes every instruction on its own buffers with the numpy kernels of the
  `nn` reference interpreter (`accel.conv` is the nn convolution without pads,
  `accel.eltwise` and `accel.vector` run the `nn` op they name through
  `NNFunctions`).

An `accel.load` whose (src_offsets, sizes) entry is the same on several
active cores (a single shared entry, or identical per-core entries) is a
multicast: the time account moves that DRAM slice once for all of them (see
`dlfusion.sim.machine`); the numbers are unchanged (every core gets the data
in its own buffer).

A core numbered `active` or above executes only the collectives: it receives
its share of an `accel.exchange` (all-gather along `axis`) like every core.
Cores run an instruction one after another in core order (SPMD lock-step), so
stores and loads of different cores of one kernel see each other in program
order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects.builtin import DictionaryAttr, Float32Type, TensorType
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.ir import Block, Operation

from dlfusion.dialects import accel, nn
from dlfusion.dialects.accel import mshape, table_rows
from dlfusion.dialects.weights import MissingWeightError, WeightStore
from dlfusion.errors import DlfusionError
from dlfusion.interpreter import kernels as K
from dlfusion.sim.machine import ELTWISE_WORK, KernelProgram, Machine, TimingModel

_NN_OPS: dict[str, type[Operation]] = {op.name: op for op in nn.NN_OPS}

#: vector-unit work per output element of `accel.vector` layers (docs/accelerator.md);
#: reductions use the reduced extent, every other layer is data movement (1)
VECTOR_WORK = {"softmax": 4}
_REDUCTIONS = ("reduce_mean", "global_avg_pool")


def _ints(attr) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


def _int(attr) -> int:
    return int(attr.value.data)


def _layer_name(name: str) -> str:
    """'softmax' or 'nn.softmax' -> 'softmax'."""
    return name[3:] if name.startswith("nn.") else name


def vector_work(layer: str, params: DictionaryAttr, in_shapes, out_shape) -> int:
    """w of the vector-unit equation for an `accel.vector` layer."""
    name = _layer_name(layer)
    if name == "lrn":
        return _int(params.data["size"]) + 4
    if name in _REDUCTIONS and in_shapes:
        return max(1, math.prod(in_shapes[0]) // max(1, math.prod(out_shape)))
    if name in VECTOR_WORK:
        return VECTOR_WORK[name]
    return ELTWISE_WORK.get(name, 1)


def _box(offsets, sizes) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(offsets, sizes))


@register_impls
@dataclass
class AccelFunctions(InterpreterFunctions):
    """Numbers and time of the `accel` instructions (see the module doc)."""

    store: WeightStore
    machine: Machine
    model: TimingModel
    timing_only: bool = False
    #: the arrays of the program's input tensors, by their `accel.dram` op
    input_arrays: dict[Operation, np.ndarray] = field(default_factory=dict)
    #: the values of `accel.return` (DRAM arrays), set by the program
    outputs: tuple[Any, ...] = ()
    _kernel: KernelProgram | None = None
    _nn_ops: dict[Operation, Operation] = field(default_factory=dict)

    # -- program structure -------------------------------------------------
    @impl(accel.ProgramOp)
    def run_program(self, interpreter: Interpreter, op: accel.ProgramOp, args: PythonValues):
        with np.errstate(all="ignore"):
            self.outputs = interpreter.run_ssacfg_region(op.body, (), "accel.program")
        return ()

    @impl_terminator(accel.ReturnOp)
    def run_return(
        self, interpreter: Interpreter, op: accel.ReturnOp, args: tuple[Any, ...]
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()

    @impl(accel.DramOp)
    def run_dram(self, interpreter: Interpreter, op: accel.DramOp, args: PythonValues):
        if self.timing_only:
            return (None,)
        shape = mshape(op.result)
        kind = op.kind.data
        if kind == "input":
            return (self.input_arrays[op],)
        if kind == "weight":
            try:
                arr = self.store.get(op.label.data, np.dtype(np.float32), shape)
            except MissingWeightError as exc:
                raise DlfusionError(str(exc)) from None
            if arr.size != math.prod(shape):
                raise DlfusionError(
                    f"weight '{op.label.data}' holds {list(arr.shape)}, the program declares {list(shape)}"
                )
            return (np.ascontiguousarray(arr, dtype=np.float32).reshape(shape),)
        return (np.zeros(shape, dtype=np.float32),)

    @impl(accel.ViewOp)
    def run_view(self, interpreter: Interpreter, op: accel.ViewOp, args: PythonValues):
        src = args[0]
        if src is None:
            return (None,)
        view = src.reshape(mshape(op.result))
        assert view.base is not None or view is src  # the same bytes, never a copy
        return (view,)

    @impl(accel.KernelOp)
    def run_kernel(self, interpreter: Interpreter, op: accel.KernelOp, args: PythonValues):
        self._kernel = KernelProgram(op.sym_name.data, op.num_cores, op.num_active)
        interpreter.run_ssacfg_region(op.body, args, op.sym_name.data)
        self.machine.run_kernel(self._kernel)
        self._kernel = None
        return ()

    # -- on-chip buffers and data movement -----------------------------------
    @impl(accel.AllocOp)
    def run_alloc(self, interpreter: Interpreter, op: accel.AllocOp, args: PythonValues):
        if self.timing_only:
            return (None,)
        shape = mshape(op.result)
        return ([np.zeros(shape, dtype=np.float32) for _ in range(self._kernel.cores)],)

    @impl(accel.FillOp)
    def run_fill(self, interpreter: Interpreter, op: accel.FillOp, args: PythonValues):
        kp = self._kernel
        n = math.prod(mshape(op.buffer))
        kp.compute("fill", "vector", self.model.compute_ns(self.model.vector_cycles(n, ELTWISE_WORK["fill"])))
        if not self.timing_only:
            value = np.float32(op.value.value.data)
            for buf in args[0][: kp.active]:
                buf.fill(value)
        return ()

    def _dma(self, op: accel.DmaOp, label: str) -> list[tuple[tuple[int, ...], ...] | None]:
        """Record the DMA's bytes per core (for a load, with each core's
        source slice, so that cores reading the same slice multicast it);
        return each active core's (src_offsets, sizes, dst_offsets) or None
        if it moves nothing."""
        kp = self._kernel
        so, sz, do = (table_rows(t) for t in (op.src_offsets, op.sizes, op.dst_offsets))
        eb = self.model.element_bytes
        per_core: list[tuple[tuple[int, ...], ...] | None] = []
        nbytes = [0] * kp.cores
        shared = len(sz) == 1
        shared_elems = math.prod(sz[0]) if shared else 0
        for c in range(kp.active):
            elems = shared_elems if shared else math.prod(sz[c])
            if elems:
                nbytes[c] = elems * eb
                per_core.append(
                    (so[0 if len(so) == 1 else c], sz[0 if shared else c], do[0 if len(do) == 1 else c])
                )
            else:
                per_core.append(None)
        slices = None
        if label == "load":  # the multicast key: (src_offsets, sizes)
            slices = [None if mv is None else (mv[0], mv[1]) for mv in per_core]
        kp.dma(label, tuple(nbytes), slices)
        return per_core

    @impl(accel.LoadOp)
    def run_load(self, interpreter: Interpreter, op: accel.LoadOp, args: PythonValues):
        moves = self._dma(op, "load")
        if not self.timing_only:
            bufs, dram = args
            for c, mv in enumerate(moves):
                if mv is not None:
                    src, size, dst = mv
                    bufs[c][_box(dst, size)] = dram[_box(src, size)]
        return ()

    @impl(accel.StoreOp)
    def run_store(self, interpreter: Interpreter, op: accel.StoreOp, args: PythonValues):
        moves = self._dma(op, "store")
        if not self.timing_only:
            dram, bufs = args
            for c, mv in enumerate(moves):
                if mv is not None:
                    src, size, dst = mv
                    dram[_box(dst, size)] = bufs[c][_box(src, size)]
        return ()

    @impl(accel.BarrierOp)
    def run_barrier(self, interpreter: Interpreter, op: accel.BarrierOp, args: PythonValues):
        self._kernel.barrier()
        return ()

    @impl(accel.ExchangeOp)
    def run_exchange(self, interpreter: Interpreter, op: accel.ExchangeOp, args: PythonValues):
        kp = self._kernel
        shape = mshape(op.buffer)
        axis = _int(op.axis)
        ranges = table_rows(op.ranges)
        inner = math.prod(shape) // shape[axis] if shape[axis] else 0
        contrib = [(hi - lo) * inner for lo, hi in ranges]
        total = sum(contrib)
        eb = self.model.element_bytes
        kp.exchange(tuple((total - contrib[c]) * eb for c in range(kp.cores)))
        if not self.timing_only:
            bufs = args[0]
            pre = (slice(None),) * axis
            parts = [bufs[c][pre + (slice(lo, hi),)].copy() for c, (lo, hi) in enumerate(ranges)]
            for c in range(kp.cores):
                for c2, (lo, hi) in enumerate(ranges):
                    if c2 != c and hi > lo:
                        bufs[c][pre + (slice(lo, hi),)] = parts[c2]
        return ()

    # -- compute ---------------------------------------------------------------
    @impl(accel.ConvOp)
    def run_conv(self, interpreter: Interpreter, op: accel.ConvOp, args: PythonValues):
        kp = self._kernel
        n, co, ho, wo = mshape(op.out)
        _, ci_g, kh, kw = mshape(op.weight)
        groups = _int(op.groups)
        m = self.model
        kp.compute("conv", "mac", m.compute_ns(m.conv_cycles(n, ho, wo, kh, kw, co, ci_g, groups)))
        if not self.timing_only:
            strides, dilations = _ints(op.strides), _ints(op.dilations)
            out, x, w = args[0], args[1], args[2]
            b = args[3] if len(args) > 3 else None
            for c in range(kp.active):
                out[c][...] = K.conv2d(
                    x[c], w[c], None if b is None else b[c], strides, (0, 0, 0, 0), dilations, groups
                )
        return ()

    @impl(accel.MatMulOp)
    def run_matmul(self, interpreter: Interpreter, op: accel.MatMulOp, args: PythonValues):
        kp = self._kernel
        mm, kk = mshape(op.a)
        nn_ = mshape(op.out)[1]
        m = self.model
        kp.compute("matmul", "mac", m.compute_ns(m.matmul_cycles(mm, nn_, kk)))
        if not self.timing_only:
            trans_b = bool(_int(op.trans_b))
            out, a, b = args[0], args[1], args[2]
            bias = args[3] if len(args) > 3 else None
            for c in range(kp.active):
                out[c][...] = K.gemm(a[c], b[c], None if bias is None else bias[c], False, trans_b)
        return ()

    @impl(accel.PoolOp)
    def run_pool(self, interpreter: Interpreter, op: accel.PoolOp, args: PythonValues):
        kp = self._kernel
        kind = op.kind.data
        kernel = _ints(op.kernel)
        out_shape = mshape(op.out)
        m = self.model
        kp.compute(
            f"pool.{kind}", "vector",
            m.compute_ns(m.vector_cycles(math.prod(out_shape), kernel[0] * kernel[1])),
        )
        if not self.timing_only:
            strides, dilations, pads = _ints(op.strides), _ints(op.dilations), _ints(op.pads)
            cip = bool(_int(op.count_include_pad))
            t, l, b, r = pads
            _, _, h, w = mshape(op.input)
            oh, ow = out_shape[2], out_shape[3]
            # the padding borders are already in the buffer: pool the interior
            # with the layer's pads, so the kernel knows which border is padding
            floor_h = nn.pool_out_dim(h - t - b, kernel[0], strides[0], t, b, dilations[0], False)
            floor_w = nn.pool_out_dim(w - l - r, kernel[1], strides[1], l, r, dilations[1], False)
            ceil_mode = oh > floor_h or ow > floor_w
            for c in range(kp.active):
                x = args[1][c][:, :, t : h - b, l : w - r]
                if kind == "max":
                    y = K.max_pool(x, kernel, strides, pads, ceil_mode, dilations)
                else:
                    y = K.avg_pool(x, kernel, strides, pads, ceil_mode, cip)
                if y.shape[2] < oh or y.shape[3] < ow:
                    raise DlfusionError(
                        f"internal error: accel.pool computed {list(y.shape)} for an output buffer {list(out_shape)}"
                    )
                args[0][c][...] = y[:, :, :oh, :ow]
        return ()

    def _nn_op(self, op: Operation, name: str, params: DictionaryAttr, args) -> Operation:
        """The `nn` op `name` with `params` as properties, on detached
        operands of the argument buffers' shapes (built once per op)."""
        built = self._nn_ops.get(op)
        if built is not None:
            return built
        full = name if name.startswith("nn.") else f"nn.{name}"
        cls = _NN_OPS.get(full)
        if cls is None or full in ("nn.weight", "nn.yield", "nn.fusion_group"):
            raise DlfusionError(f"{op.name}: '{name}' is not an nn layer")
        f32 = Float32Type()
        block = Block(arg_types=[TensorType(f32, list(mshape(a))) for a in args])
        try:
            built = cls.create(
                operands=list(block.args),
                result_types=[TensorType(f32, list(mshape(op.out)))],
                properties=dict(params.data),
            )
        except Exception as exc:  # noqa: BLE001 - a malformed params dictionary
            raise DlfusionError(f"{op.name} '{name}': cannot build the nn layer from params: {exc}") from None
        block.add_op(built)
        self._nn_ops[op] = built
        return built

    def _run_nn(self, interpreter: Interpreter, op, name: str, params: DictionaryAttr, args):
        kp = self._kernel
        nn_op = self._nn_op(op, name, params, op.args)
        out = args[0]
        for c in range(kp.active):
            try:
                (y,) = interpreter.run_op(nn_op, tuple(a[c] for a in args[1:]))
            except DlfusionError:
                raise
            except Exception as exc:  # noqa: BLE001
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DlfusionError(f"{op.name} '{name}' failed: {first}") from None
            if y.shape != out[c].shape and y.size == out[c].size:
                y = y.reshape(out[c].shape)
            out[c][...] = y

    @impl(accel.EltwiseOp)
    def run_eltwise(self, interpreter: Interpreter, op: accel.EltwiseOp, args: PythonValues):
        kp = self._kernel
        kind = op.kind.data
        m = self.model
        n = math.prod(mshape(op.out))
        kp.compute(f"eltwise.{kind}", "vector", m.compute_ns(m.vector_cycles(n, ELTWISE_WORK[kind])))
        if not self.timing_only:
            self._run_nn(interpreter, op, kind, op.params, args)
        return ()

    @impl(accel.VectorOp)
    def run_vector(self, interpreter: Interpreter, op: accel.VectorOp, args: PythonValues):
        kp = self._kernel
        layer = op.layer.data
        out_shape = mshape(op.out)
        m = self.model
        w = vector_work(layer, op.params, [mshape(a) for a in op.args], out_shape)
        kp.compute(f"vector.{_layer_name(layer)}", "vector", m.compute_ns(m.vector_cycles(math.prod(out_shape), w)))
        if not self.timing_only:
            self._run_nn(interpreter, op, layer, op.params, args)
        return ()
