"""Test helpers: build `accel` programs in Python.

    b = Builder("mlu100")
    x = b.input("x", (1, 4, 8, 8))
    k = b.kernel("conv", cores=2, active=2, tensors=[x, w, y])
    k.load(...); k.conv(...); k.store(...)
    module = b.finish({"y": y})

Weights live in the builder's context's weight store.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import Float32Type, FloatAttr, ModuleOp
from xdsl.ir import Attribute, Block, Region, SSAValue

from dlfusion.context import make_context
from dlfusion.dialects import accel
from dlfusion.dialects.weights import weight_store
from dlfusion.targets import load_target


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class Builder:
    """Builds an `accel.program`, weights in the context's store."""

    def __init__(self, target: str = "mlu100", ctx=None):
        self.ctx = ctx or make_context()
        self.target = load_target(target)
        self.block = Block()
        self.input_names: list[str] = []

    def _add(self, op):
        self.block.add_op(op)
        return op

    def input(self, name: str, shape) -> SSAValue:
        self.input_names.append(name)
        return self._add(accel.DramOp("input", name, shape)).result

    def weight(self, name: str, array: np.ndarray) -> SSAValue:
        key = weight_store(self.ctx).add(name, array)
        return self._add(accel.DramOp("weight", key, array.shape)).result

    def temp(self, name: str, shape) -> SSAValue:
        return self._add(accel.DramOp("temp", name, shape)).result

    def view(self, src: SSAValue, shape) -> SSAValue:
        return self._add(accel.ViewOp(src, shape)).result

    def kernel(self, name: str, cores: int, active: int, tensors) -> Kernel:
        body = Block(arg_types=[t.type for t in tensors])
        self._add(accel.KernelOp(name, cores, active, tensors, Region([body])))
        return Kernel(body)

    def finish(self, outputs: dict[str, SSAValue]) -> ModuleOp:
        self._add(accel.ReturnOp(*outputs.values()))
        prog = accel.ProgramOp(self.target, self.input_names, list(outputs), Region([self.block]))
        module = ModuleOp([prog])
        module.verify()
        return module


class Kernel:
    """The body of one `accel.kernel`, instruction by instruction."""

    def __init__(self, body: Block):
        self.body = body
        self.args = list(body.args)

    def add(self, op):
        self.body.add_op(op)
        return op

    def alloc(self, shape, space="nram") -> SSAValue:
        return self.add(accel.AllocOp(shape, space)).result

    def fill(self, buf, value=0.0):
        self.add(accel.FillOp(buf, value))

    def load(self, buf, dram, src_offsets, sizes, dst_offsets):
        self.add(accel.LoadOp(buf, dram, src_offsets, sizes, dst_offsets))

    def store(self, dram, buf, src_offsets, sizes, dst_offsets):
        self.add(accel.StoreOp(dram, buf, src_offsets, sizes, dst_offsets))

    def conv(self, out, x, w, b=None, strides=(1, 1), dilations=(1, 1), groups=1):
        self.add(accel.ConvOp(out, x, w, b, strides, dilations, groups))

    def matmul(self, out, a, b, bias=None, trans_b=False):
        self.add(accel.MatMulOp(out, a, b, bias, trans_b))

    def pool(self, out, x, kind, kernel, strides, pads, count_include_pad=False, dilations=(1, 1)):
        self.add(accel.PoolOp(out, x, kind, kernel, strides, dilations, pads, count_include_pad))

    def eltwise(self, out, args, kind, **params):
        """Parameters as attributes or plain floats (made f32 attributes)."""
        attrs = {k: v if isinstance(v, Attribute) else FloatAttr(v, Float32Type()) for k, v in params.items()}
        self.add(accel.EltwiseOp(out, args, kind, attrs))

    def vector(self, out, args, layer, **params):
        self.add(accel.VectorOp(out, args, layer, params))

    def exchange(self, buf, axis, ranges):
        self.add(accel.ExchangeOp(buf, axis, ranges))

    def barrier(self):
        self.add(accel.BarrierOp())
