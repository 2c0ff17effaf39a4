"""The `accel` dialect: the simulated accelerator's instructions.

A compiled model is one `accel.program`. Its body declares the DRAM tensors
(`accel.dram`: graph inputs, weights, feature maps between kernels), reshaped
views of them (`accel.view`), and runs `accel.kernel`s in order; `accel.return`
names the DRAM tensors that are the model's outputs.

A kernel is one fusion group (or one layer) on `cores` cores. Its body is SPMD:
every core executes every instruction, on its own on-chip buffers. What
differs between cores is only which slice of DRAM each one moves: `accel.load`
and `accel.store` carry one (offsets, sizes) entry per core (a single entry
means "the same for every core"; a size of 0 moves nothing). Cores numbered
`active` and above have no work and only take part in the kernel's
collectives (`accel.exchange`, `accel.barrier`).

    %x = accel.dram input "input" : memref<1x3x32x32xf32>
    %w = accel.dram weight dense_resource<conv1_w> : memref<16x3x3x3xf32>
    %y = accel.dram temp "conv1" : memref<1x16x32x32xf32>
    accel.kernel "conv1" cores 2 active 2 ins(%x, %w, %y : ...) {
    ^bb0(%in: memref<..>, %wt: memref<..>, %out: memref<..>):
      %i = accel.alloc : memref<1x3x34x34xf32, "nram">
      %k = accel.alloc : memref<8x3x3x3xf32, "wram">
      %o = accel.alloc : memref<1x8x32x32xf32, "nram">
      accel.fill %i {value = 0.0 : f32} : memref<1x3x34x34xf32, "nram">
      accel.load %i, %in {src_offsets = [array<i64: 0, 0, 0, 0>], sizes = [...],
                          dst_offsets = [array<i64: 0, 0, 1, 1>]} : ...
      accel.load %k, %wt {src_offsets = [array<i64: 0, 0, 0, 0>, array<i64: 8, 0, 0, 0>], ...}
      accel.conv %o, %i, %k {strides = array<i64: 1, 1>, ...} : ...
      accel.store %out, %o {...}
    }

Numbers are float32; the time account uses the program's `element_bytes`
(the target's datatype, FP16 on the MLU100). Buffers are sized in that
datatype, and a kernel whose buffers exceed the target's on-chip memory, as
recorded on the program, does not verify.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    I64,
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    NoneAttr,
    StringAttr,
    i64,
)
from xdsl.ir import Attribute, Block, Dialect, Operation, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsTerminator, NoTerminator
from xdsl.utils.exceptions import VerifyException

from dlfusion.dialects.nn import conv_out_dim, ints, pool_out_dim

SPACES = ("nram", "wram")

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def dram_type(shape: Sequence[int]) -> MemRefType:
    return MemRefType(Float32Type(), list(shape))


def buffer_type(shape: Sequence[int], space: str) -> MemRefType:
    return MemRefType(Float32Type(), list(shape), NoneAttr(), StringAttr(space))


def space_of(value: SSAValue) -> str | None:
    """"nram"/"wram" for an on-chip buffer, None for a DRAM tensor."""
    typ = value.type
    if not isinstance(typ, MemRefType):
        raise VerifyException(f"expected a memref, got {typ}")
    ms = typ.memory_space
    return ms.data if isinstance(ms, StringAttr) else None


def mshape(value: SSAValue) -> tuple[int, ...]:
    typ = value.type
    if not isinstance(typ, MemRefType):
        raise VerifyException(f"expected a memref, got {typ}")
    return tuple(typ.get_shape())


def per_core(table: Sequence[Sequence[int]]) -> ArrayAttr:
    """A per-core table: one `array<i64: ...>` per core (or one for all)."""
    return ArrayAttr([ints(row) for row in table])


def table_rows(attr: ArrayAttr) -> list[tuple[int, ...]]:
    return [tuple(a.get_values()) for a in attr.data]


def row_for(attr: ArrayAttr, core: int) -> tuple[int, ...]:
    """The entry of `core` in a per-core table (a single entry is shared)."""
    rows = attr.data
    return tuple((rows[0] if len(rows) == 1 else rows[core]).get_values())


def parent_kernel(op: Operation) -> KernelOp | None:
    p = op.parent_op()
    while p is not None and not isinstance(p, KernelOp):
        p = p.parent_op()
    return p


def _need_space(value: SSAValue, what: str, spaces=SPACES):
    space = space_of(value)
    if space not in spaces:
        where = "DRAM" if space is None else f'"{space}"'
        raise VerifyException(f"{what} must be an on-chip buffer in {' or '.join(spaces)}, got {where}")


def _need_dram(value: SSAValue, what: str):
    if space_of(value) is not None:
        raise VerifyException(f"{what} must be a DRAM tensor, got an on-chip buffer")


# --------------------------------------------------------------------------
# program structure
# --------------------------------------------------------------------------


@irdl_op_definition
class ProgramOp(IRDLOperation):
    """A compiled model for one target. Properties record the target's name
    and the numbers the verifier needs (core count, on-chip capacities, the
    timing datatype's size), so that the IR checks itself."""

    name = "accel.program"
    target = prop_def(StringAttr)
    cores = prop_def(IntegerAttr[I64])
    nram_bytes = prop_def(IntegerAttr[I64])
    wram_bytes = prop_def(IntegerAttr[I64])
    element_bytes = prop_def(IntegerAttr[I64])
    input_names = prop_def(ArrayAttr[StringAttr])
    output_names = prop_def(ArrayAttr[StringAttr])
    body = region_def("single_block")
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "attr-dict-with-keyword $body"

    def __init__(self, target, input_names: Sequence[str], output_names: Sequence[str], body: Region):
        super().__init__(
            properties={
                # a shipped target by name, any other by its file's path
                "target": StringAttr(target.source if "/" in target.source else target.name),
                "cores": IntegerAttr(target.cores, i64),
                "nram_bytes": IntegerAttr(target.nram_bytes, i64),
                "wram_bytes": IntegerAttr(target.wram_bytes, i64),
                "element_bytes": IntegerAttr(target.element_bytes, i64),
                "input_names": ArrayAttr([StringAttr(n) for n in input_names]),
                "output_names": ArrayAttr([StringAttr(n) for n in output_names]),
            },
            regions=[body],
        )

    @property
    def block(self) -> Block:
        return self.body.block

    def kernels(self) -> list[KernelOp]:
        return [op for op in self.block.ops if isinstance(op, KernelOp)]

    def inputs(self) -> list[DramOp]:
        return [op for op in self.block.ops if isinstance(op, DramOp) and op.kind.data == "input"]

    def verify_(self):
        ret = self.block.last_op
        if not isinstance(ret, ReturnOp):
            raise VerifyException("accel.program must end with accel.return")
        if len(ret.values) != len(self.output_names.data):
            raise VerifyException(
                f"accel.return has {len(ret.values)} values for {len(self.output_names.data)} output names"
            )
        if len(self.inputs()) != len(self.input_names.data):
            raise VerifyException(
                f"{len(self.inputs())} input tensors for {len(self.input_names.data)} input names"
            )


@irdl_op_definition
class ReturnOp(IRDLOperation):
    """The DRAM tensors holding the program's outputs, in output order."""

    name = "accel.return"
    values = var_operand_def(MemRefType)
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(ProgramOp)))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, *values: SSAValue):
        super().__init__(operands=[list(values)])


@irdl_op_definition
class DramOp(IRDLOperation):
    """A tensor in DRAM: a graph input, a weight (a handle into the context's
    weight store, as `nn.weight`) or a temporary feature map.

        %x = accel.dram input "input" : memref<1x3x224x224xf32>
        %w = accel.dram weight dense_resource<conv1_w> : memref<64x3x7x7xf32>
        %t = accel.dram temp "conv1" : memref<1x64x112x112xf32>
    """

    name = "accel.dram"
    kind = prop_def(StringAttr)
    label = prop_def(StringAttr)
    result = result_def(MemRefType)
    traits = lazy_traits_def(lambda: (HasParent(ProgramOp),))
    KINDS: ClassVar[tuple[str, ...]] = ("input", "weight", "temp")

    def __init__(self, kind: str, label: str, shape: Sequence[int]):
        super().__init__(
            properties={"kind": StringAttr(kind), "label": StringAttr(label)},
            result_types=[dram_type(shape)],
        )

    def print(self, printer: Printer):
        printer.print_string(f" {self.kind.data} ")
        if self.kind.data == "weight":
            printer.print_string("dense_resource<")
            printer.print_resource_handle("nn", self.label.data)
            printer.print_string(">")
        else:
            printer.print_string_literal(self.label.data)
        if self.attributes:
            printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser) -> DramOp:
        kind = parser.parse_identifier(" (input, weight or temp)")
        if kind not in cls.KINDS:
            parser.raise_error(f"DRAM tensor kind must be one of {', '.join(cls.KINDS)}, got '{kind}'")
        if kind == "weight":
            parser.parse_keyword("dense_resource")
            parser.parse_punctuation("<")
            label = parser.parse_identifier(" for weight handle")
            parser.parse_punctuation(">")
            from dlfusion.dialects.weights import WeightStore

            store = parser.ctx.get_dialect("nn").get_interface(WeightStore)
            if store is not None:
                store.declare_resource(label)
        else:
            label = parser.parse_str_literal()
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        start = parser.pos
        typ = parser.parse_type()
        if not isinstance(typ, MemRefType) or isinstance(typ.memory_space, StringAttr):
            parser.raise_error(f"accel.dram needs a DRAM memref type, got {typ}", start, parser.pos)
        op = cls(kind, label, typ.get_shape())
        op.attributes.update(attrs)
        return op

    def verify_(self):
        if self.kind.data not in self.KINDS:
            raise VerifyException(f"DRAM tensor kind must be one of {', '.join(self.KINDS)}")
        _need_dram(self.result, "accel.dram")


@irdl_op_definition
class ViewOp(IRDLOperation):
    """The same DRAM bytes seen with another shape (reshape, flatten)."""

    name = "accel.view"
    source = operand_def(MemRefType)
    result = result_def(MemRefType)
    assembly_format = "$source attr-dict `:` type($source) `to` type($result)"

    def __init__(self, source: SSAValue, shape: Sequence[int]):
        super().__init__(operands=[source], result_types=[dram_type(shape)])

    def verify_(self):
        _need_dram(self.source, "view source")
        _need_dram(self.result, "view result")
        a, b = mshape(self.source), mshape(self.result)
        if math.prod(a) != math.prod(b):
            raise VerifyException(f"view from {list(a)} to {list(b)} changes the element count")


@irdl_op_definition
class KernelOp(IRDLOperation):
    """One kernel launch: `cores` cores run the SPMD body, with the DRAM
    tensors it reads and writes as operands (bound to the block arguments)."""

    name = "accel.kernel"
    tensors = var_operand_def(MemRefType)
    sym_name = prop_def(StringAttr)
    cores = prop_def(IntegerAttr[I64])
    active = prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = (
        "$sym_name `cores` $cores `active` $active "
        "(`ins` `(` $tensors^ `:` type($tensors) `)`)? attr-dict-with-keyword $body"
    )

    def __init__(self, name: str, cores: int, active: int, tensors: Sequence[SSAValue], body: Region):
        super().__init__(
            operands=[list(tensors)],
            properties={
                "sym_name": StringAttr(name),
                "cores": IntegerAttr(cores, i64),
                "active": IntegerAttr(active, i64),
            },
            regions=[body],
        )

    @property
    def block(self) -> Block:
        return self.body.block

    @property
    def num_cores(self) -> int:
        return self.cores.value.data

    @property
    def num_active(self) -> int:
        return self.active.value.data

    def buffer_bytes(self, element_bytes: int) -> dict[str, list[tuple[AllocOp, int]]]:
        out: dict[str, list[tuple[AllocOp, int]]] = {s: [] for s in SPACES}
        for op in self.block.ops:
            if isinstance(op, AllocOp):
                out[op.space].append((op, math.prod(mshape(op.result)) * element_bytes))
        return out

    def verify_(self):
        name = self.sym_name.data
        n, active = self.num_cores, self.num_active
        if n < 1:
            raise VerifyException(f"kernel '{name}': core number must be positive, got {n}")
        if not 0 <= active <= n:
            raise VerifyException(f"kernel '{name}': {active} active cores out of {n}")
        if len(self.block.args) != len(self.tensors):
            raise VerifyException(f"kernel '{name}': body takes {len(self.block.args)} arguments for {len(self.tensors)} tensors")
        for arg, t in zip(self.block.args, self.tensors):
            if arg.type != t.type:
                raise VerifyException(f"kernel '{name}': block argument type {arg.type} differs from operand {t.type}")
            _need_dram(t, f"kernel '{name}' operand")
        program = self.parent_op()
        if not isinstance(program, ProgramOp):
            return
        target = program.target.data
        if n > program.cores.value.data:
            raise VerifyException(
                f"kernel '{name}' uses {n} cores; target '{target}' has {program.cores.value.data}"
            )
        eb = program.element_bytes.value.data
        capacity = {"nram": program.nram_bytes.value.data, "wram": program.wram_bytes.value.data}
        for space, allocs in self.buffer_bytes(eb).items():
            total = 0
            for alloc, size in allocs:
                total += size
                if total > capacity[space]:
                    label = alloc.result.name_hint or f"#{allocs.index((alloc, size))}"
                    raise VerifyException(
                        f"kernel '{name}' does not fit on chip: buffer '{label}' "
                        f"({size} bytes) brings its {space} use to {total} bytes, "
                        f"target '{target}' has {capacity[space]} bytes of {space} per core"
                    )


# --------------------------------------------------------------------------
# on-chip buffers and data movement
# --------------------------------------------------------------------------


class KernelInstruction(IRDLOperation):
    traits = lazy_traits_def(lambda: (HasParent(KernelOp),))
    irdl_options = (ParsePropInAttrDict(),)


@irdl_op_definition
class AllocOp(KernelInstruction):
    """A per-core on-chip buffer in "nram" (feature maps) or "wram" (weights)."""

    name = "accel.alloc"
    result = result_def(MemRefType)
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, shape: Sequence[int], space: str):
        super().__init__(result_types=[buffer_type(shape, space)])

    @property
    def space(self) -> str:
        return space_of(self.result)

    def verify_(self):
        _need_space(self.result, "accel.alloc")


@irdl_op_definition
class FillOp(KernelInstruction):
    """Set every element of a buffer (padding borders before a load)."""

    name = "accel.fill"
    buffer = operand_def(MemRefType)
    value = prop_def(FloatAttr)
    assembly_format = "$buffer attr-dict `:` type($buffer)"

    def __init__(self, buffer: SSAValue, value: float):
        super().__init__(operands=[buffer], properties={"value": FloatAttr(value, Float32Type())})

    def verify_(self):
        _need_space(self.buffer, "fill target")


class DmaOp(KernelInstruction):
    """A DMA between DRAM and an on-chip buffer; one entry per core (or one
    shared entry) of src_offsets, sizes and dst_offsets."""

    src_offsets = prop_def(ArrayAttr)
    sizes = prop_def(ArrayAttr)
    dst_offsets = prop_def(ArrayAttr)

    def dram(self) -> SSAValue:
        raise NotImplementedError

    def buffer(self) -> SSAValue:
        raise NotImplementedError

    def src_dst_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        raise NotImplementedError

    def verify_(self):
        _need_dram(self.dram(), f"{self.name} DRAM operand")
        _need_space(self.buffer(), f"{self.name} buffer operand")
        src_shape, dst_shape = self.src_dst_shapes()
        kernel = parent_kernel(self)
        n = kernel.num_cores if kernel is not None else None
        tables = {"src_offsets": self.src_offsets, "sizes": self.sizes, "dst_offsets": self.dst_offsets}
        for key, table in tables.items():
            rows = table.data
            if not rows or (n is not None and len(rows) not in (1, n)):
                raise VerifyException(f"{self.name} {key} needs 1 or {n} entries, got {len(rows)}")
            for row in rows:
                if not isinstance(row, DenseArrayBase) or len(row.get_values()) != len(src_shape):
                    raise VerifyException(f"{self.name} {key} entries must be array<i64> of rank {len(src_shape)}")
        cores = max(len(t.data) for t in tables.values())
        for c in range(cores):
            so, sz, do = (row_for(t, c) for t in tables.values())
            if min(sz) < 0 or min(so) < 0 or min(do) < 0:
                raise VerifyException(f"{self.name}: negative offset or size for core {c}")
            if math.prod(sz) == 0:
                continue
            for what, off, shape in (("source", so, src_shape), ("destination", do, dst_shape)):
                if any(o + s > d for o, s, d in zip(off, sz, shape)):
                    raise VerifyException(
                        f"{self.name}: core {c}'s {what} slice offsets {list(off)} sizes {list(sz)} "
                        f"exceed shape {list(shape)}"
                    )


@irdl_op_definition
class LoadOp(DmaOp):
    """DRAM -> on-chip: buffer[dst_offsets + i] = dram[src_offsets + i], i < sizes."""

    name = "accel.load"
    dst = operand_def(MemRefType)
    src = operand_def(MemRefType)
    assembly_format = "$dst `,` $src attr-dict `:` type($dst) `,` type($src)"

    def __init__(self, dst, src, src_offsets, sizes, dst_offsets):
        super().__init__(
            operands=[dst, src],
            properties={
                "src_offsets": per_core(src_offsets),
                "sizes": per_core(sizes),
                "dst_offsets": per_core(dst_offsets),
            },
        )

    def dram(self):
        return self.src

    def buffer(self):
        return self.dst

    def src_dst_shapes(self):
        return mshape(self.src), mshape(self.dst)


@irdl_op_definition
class StoreOp(DmaOp):
    """on-chip -> DRAM: dram[dst_offsets + i] = buffer[src_offsets + i], i < sizes."""

    name = "accel.store"
    dst = operand_def(MemRefType)
    src = operand_def(MemRefType)
    assembly_format = "$dst `,` $src attr-dict `:` type($dst) `,` type($src)"

    def __init__(self, dst, src, src_offsets, sizes, dst_offsets):
        super().__init__(
            operands=[dst, src],
            properties={
                "src_offsets": per_core(src_offsets),
                "sizes": per_core(sizes),
                "dst_offsets": per_core(dst_offsets),
            },
        )

    def dram(self):
        return self.dst

    def buffer(self):
        return self.src

    def src_dst_shapes(self):
        return mshape(self.src), mshape(self.dst)


@irdl_op_definition
class ExchangeOp(KernelInstruction):
    """Collective all-gather along `axis`: core c contributes the range
    `ranges[c]` = [lo, hi) of its buffer; afterwards every core's buffer holds
    every contribution. Waits for all cores of the kernel (a barrier)."""

    name = "accel.exchange"
    buffer = operand_def(MemRefType)
    axis = prop_def(IntegerAttr[I64])
    ranges = prop_def(ArrayAttr)
    assembly_format = "$buffer attr-dict `:` type($buffer)"

    def __init__(self, buffer: SSAValue, axis: int, ranges: Sequence[tuple[int, int]]):
        super().__init__(
            operands=[buffer],
            properties={"axis": IntegerAttr(axis, i64), "ranges": per_core(ranges)},
        )

    def verify_(self):
        _need_space(self.buffer, "exchange buffer", ("nram",))
        shape = mshape(self.buffer)
        axis = self.axis.value.data
        if not 0 <= axis < len(shape):
            raise VerifyException(f"exchange axis {axis} out of range for rank {len(shape)}")
        kernel = parent_kernel(self)
        rows = table_rows(self.ranges)
        if kernel is not None and len(rows) != kernel.num_cores:
            raise VerifyException(f"exchange needs one range per core ({kernel.num_cores}), got {len(rows)}")
        for c, row in enumerate(rows):
            if len(row) != 2 or not 0 <= row[0] <= row[1] <= shape[axis]:
                raise VerifyException(f"exchange range {list(row)} of core {c} is not within [0, {shape[axis]}]")


@irdl_op_definition
class BarrierOp(KernelInstruction):
    """Every core of the kernel waits until all have arrived."""

    name = "accel.barrier"
    assembly_format = "attr-dict"


# --------------------------------------------------------------------------
# compute
# --------------------------------------------------------------------------


class ComputeOp(KernelInstruction):
    """Reads on-chip buffers, writes the whole `out` buffer (the first
    operand, declared first by every subclass)."""

    def inputs(self) -> list[SSAValue]:
        return list(self.operands[1:])

    def verify_(self):
        _need_space(self.out, f"{self.name} output", ("nram",))
        for v in self.inputs():
            _need_space(v, f"{self.name} input")


@irdl_op_definition
class ConvOp(ComputeOp):
    """out = conv2d(in, w) + bias on the MAC array; `in` is already padded
    (borders filled before the load), so the instruction has no pads."""

    name = "accel.conv"
    out = operand_def(MemRefType)
    input = operand_def(MemRefType)
    weight = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    strides = prop_def(DenseArrayBase[I64])
    dilations = prop_def(DenseArrayBase[I64])
    groups = prop_def(IntegerAttr[I64])
    assembly_format = "operands attr-dict `:` type(operands)"

    def __init__(self, out, x, w, b, strides, dilations, groups):
        super().__init__(
            operands=[out, x, w, [b] if b is not None else []],
            properties={"strides": ints(strides), "dilations": ints(dilations), "groups": IntegerAttr(groups, i64)},
        )

    def verify_(self):
        super().verify_()
        n, c, h, w = mshape(self.input)
        co, ci, kh, kw = mshape(self.weight)
        s, d = self.strides.get_values(), self.dilations.get_values()
        g = self.groups.value.data
        if ci * g != c or co % g:
            raise VerifyException(f"accel.conv: {c} input channels, weight {[co, ci, kh, kw]}, groups {g}")
        want = (n, co, conv_out_dim(h, kh, s[0], 0, 0, d[0]), conv_out_dim(w, kw, s[1], 0, 0, d[1]))
        if mshape(self.out) != want:
            raise VerifyException(f"accel.conv output buffer {list(mshape(self.out))}, expected {list(want)}")
        if self.bias is not None and mshape(self.bias) != (co,):
            raise VerifyException(f"accel.conv bias must be [{co}], got {list(mshape(self.bias))}")


@irdl_op_definition
class MatMulOp(ComputeOp):
    """out[M, N] = a[M, K] @ b[K, N] (b is [N, K] if trans_b) + bias[N]."""

    name = "accel.matmul"
    out = operand_def(MemRefType)
    a = operand_def(MemRefType)
    b = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    trans_b = prop_def(IntegerAttr[I64])
    assembly_format = "operands attr-dict `:` type(operands)"

    def __init__(self, out, a, b, bias, trans_b: bool):
        super().__init__(operands=[out, a, b, [bias] if bias is not None else []],
                         properties={"trans_b": IntegerAttr(int(trans_b), i64)})

    def verify_(self):
        super().verify_()
        m, k = mshape(self.a)
        sb = mshape(self.b)
        k2, n = (sb[1], sb[0]) if self.trans_b.value.data else sb
        if k != k2:
            raise VerifyException(f"accel.matmul inner dimensions differ: {k} and {k2}")
        if mshape(self.out) != (m, n):
            raise VerifyException(f"accel.matmul output buffer {list(mshape(self.out))}, expected {[m, n]}")
        if self.bias is not None and mshape(self.bias) != (n,):
            raise VerifyException(f"accel.matmul bias must be [{n}], got {list(mshape(self.bias))}")


@irdl_op_definition
class PoolOp(ComputeOp):
    """max or average pooling on the vector unit. `pads` [t, l, b, r] tell
    which border of `in` is padding (already filled), for the divisor of an
    average without count_include_pad."""

    name = "accel.pool"
    out = operand_def(MemRefType)
    input = operand_def(MemRefType)
    kind = prop_def(StringAttr)
    kernel = prop_def(DenseArrayBase[I64])
    strides = prop_def(DenseArrayBase[I64])
    dilations = prop_def(DenseArrayBase[I64])
    pads = prop_def(DenseArrayBase[I64])
    count_include_pad = prop_def(IntegerAttr[I64])
    assembly_format = "operands attr-dict `:` type(operands)"

    def __init__(self, out, x, kind, kernel, strides, dilations, pads, count_include_pad):
        super().__init__(
            operands=[out, x],
            properties={
                "kind": StringAttr(kind),
                "kernel": ints(kernel),
                "strides": ints(strides),
                "dilations": ints(dilations),
                "pads": ints(pads),
                "count_include_pad": IntegerAttr(int(count_include_pad), i64),
            },
        )

    def verify_(self):
        super().verify_()
        if self.kind.data not in ("max", "avg"):
            raise VerifyException(f"accel.pool kind must be max or avg, got {self.kind.data}")
        n, c, h, w = mshape(self.input)
        k, s, d = (a.get_values() for a in (self.kernel, self.strides, self.dilations))
        want = (n, c, pool_out_dim(h, k[0], s[0], 0, 0, d[0], False), pool_out_dim(w, k[1], s[1], 0, 0, d[1], False))
        got = mshape(self.out)
        # ceil_mode windows may hang past the buffer: allow one more output
        if got[:2] != want[:2] or not (want[2] <= got[2] <= want[2] + 1 and want[3] <= got[3] <= want[3] + 1):
            raise VerifyException(f"accel.pool output buffer {list(got)}, expected {list(want)}")


ELTWISE_KINDS = {
    # kind -> number of operands after `out`
    "relu": 1, "sigmoid": 1, "hard_swish": 1, "leaky_relu": 1, "clip": 1, "hard_sigmoid": 1,
    "add": 2, "sub": 2, "mul": 2, "div": 2,
}


@irdl_op_definition
class EltwiseOp(ComputeOp):
    """Element-wise operation on the vector unit, with numpy broadcasting of
    the inputs to `out`'s shape; `params` holds alpha/beta/min/max."""

    name = "accel.eltwise"
    out = operand_def(MemRefType)
    args = var_operand_def(MemRefType)
    kind = prop_def(StringAttr)
    params = prop_def(DictionaryAttr)
    assembly_format = "$out `,` $args attr-dict `:` type($out) `,` type($args)"

    def __init__(self, out, args: Sequence[SSAValue], kind: str, params: dict[str, Attribute] | None = None):
        super().__init__(
            operands=[out, list(args)],
            properties={"kind": StringAttr(kind), "params": DictionaryAttr(params or {})},
        )

    def verify_(self):
        super().verify_()
        kind = self.kind.data
        if kind not in ELTWISE_KINDS:
            raise VerifyException(f"accel.eltwise kind '{kind}' is not one of {', '.join(ELTWISE_KINDS)}")
        if len(self.args) != ELTWISE_KINDS[kind]:
            raise VerifyException(f"accel.eltwise {kind} takes {ELTWISE_KINDS[kind]} input(s), got {len(self.args)}")
        from dlfusion.dialects.nn import broadcast_shapes

        out = mshape(self.out)
        if broadcast_shapes(out, *[mshape(a) for a in self.args]) != out:
            raise VerifyException(f"accel.eltwise inputs do not broadcast to the output {list(out)}")


@irdl_op_definition
class VectorOp(ComputeOp):
    """Any other layer, whole-tensor on one core's vector unit: `layer` names
    the `nn` op whose semantics it has, `params` its properties (softmax,
    LRN, transpose, slice, pad, reduce_mean, ...)."""

    name = "accel.vector"
    out = operand_def(MemRefType)
    args = var_operand_def(MemRefType)
    layer = prop_def(StringAttr)
    params = prop_def(DictionaryAttr)
    assembly_format = "$layer $out `,` $args attr-dict `:` type($out) `,` type($args)"

    def __init__(self, out, args: Sequence[SSAValue], layer: str, params: dict[str, Attribute]):
        super().__init__(
            operands=[out, list(args)],
            properties={"layer": StringAttr(layer), "params": DictionaryAttr(params)},
        )


ACCEL_OPS = [
    ProgramOp,
    ReturnOp,
    DramOp,
    ViewOp,
    KernelOp,
    AllocOp,
    FillOp,
    LoadOp,
    StoreOp,
    ExchangeOp,
    BarrierOp,
    ConvOp,
    MatMulOp,
    PoolOp,
    EltwiseOp,
    VectorOp,
]

Accel = Dialect("accel", ACCEL_OPS, [])
