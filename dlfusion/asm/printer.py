"""`-t accel-asm`: a compiled program as an address-resolved assembly listing.

    dlfusion-opt model.onnx -p '...,lower-to-accel' -t accel-asm -o model.s
    dlfusion-opt model.onnx -p '...,lower-to-accel' -t accel-asm --emit-weights -o model.s
    dlfusion-run model.s

The listing format is described in `dlfusion.asm`; `dlfusion.asm.loader`
parses it back. The DRAM and on-chip layout (`Layout`) is computed here and
checked by the loader.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from io import StringIO
from typing import IO

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    NoneAttr,
    StringAttr,
)
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue
from xdsl.printer import Printer
from xdsl.utils.target import Target

from dlfusion.dialects import accel
from dlfusion.errors import DlfusionError

DRAM_ALIGN = 64
"""DRAM base addresses are multiples of this many bytes."""
ONCHIP_ALIGN = 64
"""On-chip buffer offsets are multiples of this many bytes."""

TABLE_PROPS = frozenset({"src_offsets", "sizes", "dst_offsets", "ranges"})
"""Properties holding per-core tables (one array<i64> per core, or one shared)."""

KIND_PROP = {"accel.pool": "kind", "accel.eltwise": "kind", "accel.vector": "layer"}
"""Properties printed as the mnemonic's suffix: `pool.max`, `vector.softmax`."""

PARAMS_OPS = frozenset({"accel.eltwise", "accel.vector"})
"""Ops whose `params` dictionary is printed as key=value fields."""


RESERVED_KEYS = frozenset({"attrs", "params"})
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*")
HANDLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*")
SUFFIX_RE = re.compile(r"[A-Za-z0-9_.]+")

NOT_A_PROGRAM = "the accel-asm target needs a program lowered with lower-to-accel"


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def program_of(module: ModuleOp) -> accel.ProgramOp:
    """The module's one `accel.program`; a one-line error for anything else."""
    ops = list(module.body.block.ops) if module.body.blocks else []
    programs = [op for op in ops if isinstance(op, accel.ProgramOp)]
    if len(programs) == 1 and len(ops) == 1:
        return programs[0]
    if not programs:
        found = sorted({op.name for op in ops})
        what = f"this module holds {', '.join(found)}" if found else "this module is empty"
    elif len(programs) > 1:
        what = f"this module holds {len(programs)} programs"
    else:
        others = sorted({op.name for op in ops if not isinstance(op, accel.ProgramOp)})
        what = f"this module also holds {', '.join(others)}"
    raise DlfusionError(NOT_A_PROGRAM, hint=what)


# --------------------------------------------------------------------------
# the memory layout
# --------------------------------------------------------------------------


def _elements(value: SSAValue) -> int:
    return math.prod(accel.mshape(value))


@dataclass
class Layout:
    """Byte addresses of the DRAM tensors and on-chip offsets of the buffers.

    DRAM: every `accel.dram` in program order gets the next base address
    aligned to DRAM_ALIGN, sized `elements * element_bytes`; views and kernel
    block arguments alias their source. On chip: in each kernel, every
    `accel.alloc` gets the next offset in its space, aligned to ONCHIP_ALIGN
    (no reuse: the verifier's capacity check also adds every buffer up)."""

    element_bytes: int
    address: dict[SSAValue, int] = field(default_factory=dict)
    dram_end: int = 0
    # kernel -> space -> aligned bytes used
    onchip_end: dict[accel.KernelOp, dict[str, int]] = field(default_factory=dict)

    def nbytes(self, value: SSAValue) -> int:
        return _elements(value) * self.element_bytes


def compute_layout(program: accel.ProgramOp) -> Layout:
    eb = program.element_bytes.value.data
    layout = Layout(eb)
    addr = layout.address

    def alias(value: SSAValue, source: SSAValue) -> None:
        if source in addr:
            addr[value] = addr[source]

    def visit_view(op: accel.ViewOp) -> None:
        alias(op.result, op.source)

    for op in program.block.ops:
        if isinstance(op, accel.DramOp):
            addr[op.result] = layout.dram_end
            layout.dram_end = _align(layout.dram_end + layout.nbytes(op.result), DRAM_ALIGN)
        elif isinstance(op, accel.ViewOp):
            visit_view(op)
        elif isinstance(op, accel.KernelOp):
            for arg, tensor in zip(op.block.args, op.tensors):
                alias(arg, tensor)
            ends = {space: 0 for space in accel.SPACES}
            for inner in op.block.ops:
                if isinstance(inner, accel.AllocOp):
                    space = accel.space_of(inner.result)
                    if space in ends:
                        addr[inner.result] = ends[space]
                        ends[space] = _align(ends[space] + layout.nbytes(inner.result), ONCHIP_ALIGN)
                elif isinstance(inner, accel.ViewOp):
                    visit_view(inner)
            layout.onchip_end[op] = ends
    return layout


# --------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------


class Namer:
    """SSA names as xDSL's printer makes them (`x`, `x_1`, ...; `0`, `1`, ...
    for values without a name hint), with one scope per kernel. A kernel's
    names may repeat program-level names (`.arg %x = %x`), except the names of
    the program-level values its instructions use directly."""

    def __init__(self) -> None:
        self.names: dict[SSAValue, str] = {}
        self._global_counts: dict[str, int] = {}
        self._next_number = 0
        self._local: dict[SSAValue, str] | None = None
        self._local_counts: dict[str, int] = {}
        self._taken: set[str] = set()

    def define(self, value: SSAValue) -> str:
        hint = value.name_hint
        if not hint:
            name = str(self._next_number)
            self._next_number += 1
        elif self._local is None:
            n = self._global_counts.get(hint, 0)
            name = hint if n == 0 else f"{hint}_{n}"
            self._global_counts[hint] = n + 1
        else:
            n = self._local_counts.get(hint, 0)
            while True:
                name = hint if n == 0 else f"{hint}_{n}"
                n += 1
                if name not in self._taken:
                    break
            self._local_counts[hint] = n
        if self._local is not None:
            self._local[value] = name
            self._taken.add(name)
        else:
            self.names[value] = name
        return "%" + name

    def __getitem__(self, value: SSAValue) -> str:
        if self._local is not None and value in self._local:
            return "%" + self._local[value]
        if value not in self.names:
            raise DlfusionError(
                f"internal error: accel-asm printer met a value used before its definition ({value})"
            )
        return "%" + self.names[value]

    def enter(self, reserved: Iterable[SSAValue] = ()) -> None:
        """Open a kernel scope; `reserved`: program-level values used inside."""
        self._local = {}
        self._local_counts = {}
        self._taken = {self.names[v] for v in reserved if v in self.names}

    def leave(self) -> None:
        self._local = None
        self._local_counts = {}
        self._taken = set()


# --------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------


def fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


def fmt_float32(value: float) -> str:
    """The shortest text that reads back as the same f32 FloatAttr."""
    if math.isnan(value):
        return "nan"
    text = str(np.float32(value))
    if "." not in text and "e" not in text and "inf" not in text:
        text += ".0"
    if float(np.float32(float(text))) != value:
        text = repr(float(value))
    return text


def fmt_mlir(attr: Attribute) -> str:
    """Any attribute, as MLIR text in a `#mlir"..."` escape."""
    if isinstance(attr, FloatAttr) and math.isfinite(attr.value.data):
        text = f"{float(attr.value.data)!r} : {_mlir_text(attr.type)}"
    else:
        text = _mlir_text(attr)
    return "#mlir" + json.dumps(text)


def _mlir_text(attr: Attribute) -> str:
    out = StringIO()
    Printer(stream=out).print_attribute(attr)
    return out.getvalue()


def _is_i64(typ: Attribute) -> bool:
    return isinstance(typ, IntegerType) and typ.width.data == 64 and typ.signedness.data.name == "SIGNLESS"


def fmt_ints(values: Iterable[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def fmt_attr(attr: Attribute) -> str:
    """An attribute in the listing's value syntax."""
    if isinstance(attr, IntegerAttr) and _is_i64(attr.type):
        return str(attr.value.data)
    if isinstance(attr, FloatAttr) and isinstance(attr.type, Float32Type):
        return fmt_float32(attr.value.data)
    if isinstance(attr, StringAttr):
        return json.dumps(attr.data)
    if isinstance(attr, DenseArrayBase) and _is_i64(attr.elt_type):
        return fmt_ints(attr.get_values())
    if isinstance(attr, DictionaryAttr) and all(_plain_key(k) for k in attr.data):
        return "{" + ", ".join(f"{k}={fmt_attr(v)}" for k, v in attr.data.items()) + "}"
    return fmt_mlir(attr)


def _plain_key(key: str) -> bool:
    return bool(IDENT_RE.fullmatch(key))


def _component(base: int, step: int) -> str:
    if step == 0:
        return str(base)
    if base == 0:
        return f"{step}c"
    return f"{base}{'+' if step > 0 else '-'}{abs(step)}c"


def fmt_table(rows: Sequence[Sequence[int]]) -> str:
    """A per-core table: `[1,2]` for one shared entry; otherwise groups of
    cores, `[c0-3: 0,32c,0,0 | c4-7: 0,0,0,0]`, where a range of cores shares
    one entry or follows `base + step*c` (c the core number, steps >= 0)."""
    if len(rows) == 1:
        return fmt_ints(rows[0])
    rows = [tuple(int(v) for v in r) for r in rows]
    n = len(rows)
    groups = []
    i = 0
    while i < n:
        j = i
        while j + 1 < n and rows[j + 1] == rows[i]:
            j += 1
        prog_end = i
        if i + 1 < n and rows[i + 1] != rows[i] and len(rows[i + 1]) == len(rows[i]):
            step = tuple(b - a for a, b in zip(rows[i], rows[i + 1]))
            k = i + 1
            while (
                k + 1 < n
                and len(rows[k + 1]) == len(rows[k])
                and tuple(b - a for a, b in zip(rows[k], rows[k + 1])) == step
            ):
                k += 1
            prog_end = k
        length = prog_end - i + 1
        rising = prog_end > i and all(b >= a for a, b in zip(rows[i], rows[i + 1]))
        # a progression of two entries only when the second does not start a run
        alone = i + 2 >= n or rows[i + 2] != rows[i + 1]
        if prog_end > j and rising and (length >= 3 or alone):
            step = tuple(b - a for a, b in zip(rows[i], rows[i + 1]))
            items = [_component(v - s * i, s) for v, s in zip(rows[i], step)]
            end = prog_end
        else:
            items = [str(v) for v in rows[i]]
            end = j
        cores = f"c{i}" if end == i else f"c{i}-{end}"
        groups.append(f"{cores}: {','.join(items)}" if items else f"{cores}:")
        i = end + 1
    return "[" + " | ".join(groups) + "]"


def table_attr_rows(attr: Attribute) -> list[tuple[int, ...]] | None:
    if not isinstance(attr, ArrayAttr) or not attr.data:
        return None
    rows = []
    for row in attr.data:
        if not isinstance(row, DenseArrayBase) or not _is_i64(row.elt_type):
            return None
        rows.append(tuple(row.get_values()))
    return rows


def fmt_prop(name: str, attr: Attribute) -> str:
    if name in TABLE_PROPS:
        rows = table_attr_rows(attr)
        if rows is not None:
            return fmt_table(rows)
        return fmt_mlir(attr)
    if isinstance(attr, ArrayAttr) and table_attr_rows(attr) is not None:
        # a table-like array outside TABLE_PROPS would read back as an array<i64>
        return fmt_mlir(attr)
    return fmt_attr(attr)


def fmt_attrs_field(op: Operation) -> str:
    if not op.attributes:
        return ""
    return " attrs=" + fmt_attr(DictionaryAttr(dict(op.attributes)))


def fmt_bytes(n: int) -> str:
    return f"{n:,} B"


def fmt_size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return fmt_bytes(n)


# --------------------------------------------------------------------------
# the listing
# --------------------------------------------------------------------------


def _check_memref(value: SSAValue, where: str) -> None:
    typ = value.type
    if (
        not isinstance(typ, MemRefType)
        or not isinstance(typ.element_type, Float32Type)
        or not isinstance(typ.layout, NoneAttr)
        or any(d < 0 for d in typ.get_shape())
    ):
        raise DlfusionError(
            f"the accel-asm target cannot print {where} of type {typ}",
            hint="accel tensors and buffers are static float32 memrefs",
        )


class _Writer:
    def __init__(self, program: accel.ProgramOp, module: ModuleOp, blobs: dict[str, str]):
        self.program = program
        self.module = module
        self.blobs = blobs
        self.layout = compute_layout(program)
        self.namer = Namer()
        self.lines: list[str] = []
        dram_bytes = self.layout.dram_end
        self.addr_digits = max(8, len(f"{max(dram_bytes - 1, 0):x}"))
        cap = max(program.nram_bytes.value.data, program.wram_bytes.value.data)
        self.onchip_digits = max(5, len(f"{max(cap - 1, 0):x}"))

    def line(self, text: str, comment: str = "") -> None:
        if comment:
            text = f"{text:<55} ; {comment}" if len(text) < 55 else f"{text}  ; {comment}"
        self.lines.append(text.rstrip())

    def dram_addr(self, value: SSAValue) -> str:
        a = self.layout.address.get(value)
        return "" if a is None else f" @0x{a:0{self.addr_digits}x}"

    def onchip_addr(self, value: SSAValue) -> str:
        a = self.layout.address.get(value)
        return "" if a is None else f" @0x{a:0{self.onchip_digits}x}"

    # -- header --------------------------------------------------------------
    def header(self) -> None:
        p = self.program
        eb = p.element_bytes.value.data
        kernels = p.kernels()
        drams = [op for op in p.block.ops if isinstance(op, accel.DramOp)]
        self.line("; dlfusion accel assembly listing (dlfusion-opt -t accel-asm)")
        self.line(
            f"; {len(kernels)} kernel(s), {len(drams)} DRAM tensor(s), "
            f"{fmt_bytes(self.layout.dram_end)} of DRAM at {eb} B/element"
        )
        self.line(
            f"; DRAM addresses {DRAM_ALIGN}-byte aligned; on-chip offsets per kernel and memory, "
            f"{ONCHIP_ALIGN}-byte aligned"
        )
        if self.module.attributes or self.module.sym_name is not None:
            fields = ""
            if self.module.sym_name is not None:
                fields += f" name={json.dumps(self.module.sym_name.data)}"
            fields += fmt_attrs_field(self.module)
            self.line(".module" + fields)
        self.line(
            f".program {json.dumps(p.target.data)} cores={p.cores.value.data} "
            f"nram_bytes={p.nram_bytes.value.data} wram_bytes={p.wram_bytes.value.data} "
            f"element_bytes={eb}{fmt_attrs_field(p)}",
            f"{fmt_size(p.nram_bytes.value.data)} nram, {fmt_size(p.wram_bytes.value.data)} wram per core",
        )
        self.line(".inputs " + ", ".join(json.dumps(s.data) for s in p.input_names.data))
        self.line(".outputs " + ", ".join(json.dumps(s.data) for s in p.output_names.data))

    # -- program body ----------------------------------------------------------
    def body(self) -> None:
        previous = None
        for op in self.program.block.ops:
            if previous is None or isinstance(op, accel.KernelOp) or isinstance(previous, accel.KernelOp):
                self.line("")
            previous = op
            if isinstance(op, accel.DramOp):
                self.dram(op)
            elif isinstance(op, accel.ViewOp):
                self.view(op)
            elif isinstance(op, accel.KernelOp):
                self.kernel(op)
            elif isinstance(op, accel.ReturnOp):
                self.ret(op)
            else:
                raise DlfusionError(
                    f"the accel-asm target cannot print '{op.name}' in an accel.program"
                )

    def dram(self, op: accel.DramOp) -> None:
        _check_memref(op.result, "an accel.dram")
        kind = op.kind.data
        label = op.label.data
        if kind == "weight" and HANDLE_RE.fullmatch(label):
            text_label = label
        else:
            text_label = json.dumps(label)
        if not IDENT_RE.fullmatch(kind):
            raise DlfusionError(f"the accel-asm target cannot print DRAM tensor kind {kind!r}")
        name = self.namer.define(op.result)
        self.line(
            f".dram {name} {kind} {text_label} {fmt_shape(accel.mshape(op.result))}"
            f"{self.dram_addr(op.result)}{fmt_attrs_field(op)}",
            fmt_bytes(self.layout.nbytes(op.result)),
        )

    def view(self, op: accel.ViewOp, indent: str = "") -> None:
        _check_memref(op.result, "an accel.view")
        src = self.namer[op.source]
        name = self.namer.define(op.result)
        self.line(
            f"{indent}.view {name} = {src} {fmt_shape(accel.mshape(op.result))}"
            f"{self.dram_addr(op.result)}{fmt_attrs_field(op)}",
            f"alias of {src}, {fmt_bytes(self.layout.nbytes(op.result))}",
        )

    def ret(self, op: accel.ReturnOp) -> None:
        values = ", ".join(self.namer[v] for v in op.values)
        self.line((f".return {values}" if values else ".return") + fmt_attrs_field(op))

    def kernel(self, op: accel.KernelOp) -> None:
        ends = self.layout.onchip_end.get(op, {})
        p = self.program
        usage = ", ".join(
            f"{space} {fmt_bytes(ends.get(space, 0))} of {fmt_bytes(cap)}"
            for space, cap in (("nram", p.nram_bytes.value.data), ("wram", p.wram_bytes.value.data))
        )
        tensors = [self.namer[t] for t in op.tensors]
        self.line(
            f".kernel {json.dumps(op.sym_name.data)} cores={op.num_cores} active={op.num_active}"
            f"{fmt_attrs_field(op)}",
            usage,
        )
        local = set(op.block.args)
        for inner in op.block.ops:
            local.update(inner.results)
        direct = {v for inner in op.block.walk() for v in inner.operands if v not in local}
        self.namer.enter(direct)
        indent = "  "
        for arg, tensor in zip(op.block.args, tensors):
            _check_memref(arg, "a kernel argument")
            name = self.namer.define(arg)
            self.line(f"{indent}.arg {name} = {tensor}", self._arg_comment(arg))
        for inner in op.block.ops:
            if isinstance(inner, accel.AllocOp):
                self.buf(inner, indent)
            elif isinstance(inner, accel.ViewOp):
                self.view(inner, indent)
            else:
                self.instr(inner, op, indent)
        self.namer.leave()
        self.line(".end")

    def _arg_comment(self, arg: BlockArgument) -> str:
        a = self.layout.address.get(arg)
        where = "" if a is None else f"@0x{a:0{self.addr_digits}x}, "
        return f"{where}{fmt_shape(accel.mshape(arg))}, {fmt_bytes(self.layout.nbytes(arg))}"

    def buf(self, op: accel.AllocOp, indent: str) -> None:
        _check_memref(op.result, "an accel.alloc")
        space = accel.space_of(op.result)
        if space is None or not IDENT_RE.fullmatch(space):
            raise DlfusionError(f"the accel-asm target cannot print an accel.alloc in memory space {space!r}")
        name = self.namer.define(op.result)
        self.line(
            f"{indent}.buf {name} {space} {fmt_shape(accel.mshape(op.result))}"
            f"{self.onchip_addr(op.result)}{fmt_attrs_field(op)}",
            fmt_bytes(self.layout.nbytes(op.result)),
        )

    def instr(self, op: Operation, kernel: accel.KernelOp, indent: str) -> None:
        if op.results or op.regions or op.successors or not op.name.startswith("accel."):
            raise DlfusionError(f"the accel-asm target cannot print '{op.name}' in an accel.kernel")
        mnemonic = op.name.removeprefix("accel.")
        props = dict(op.properties)
        fields: list[str] = []
        kind_prop = KIND_PROP.get(op.name)
        if kind_prop is not None and isinstance(props.get(kind_prop), StringAttr):
            kind = props[kind_prop].data
            if SUFFIX_RE.fullmatch(kind):
                mnemonic += "." + kind
                del props[kind_prop]
        operands = [self.namer[v] for v in op.operands]
        if isinstance(op, (accel.LoadOp, accel.StoreOp)) and len(operands) == 2:
            dst = props.pop("dst_offsets", None)
            src = props.pop("src_offsets", None)
            if dst is not None and src is not None:
                operands[0] += fmt_prop("dst_offsets", dst)
                operands[1] += fmt_prop("src_offsets", src)
            else:  # malformed: keep whatever is there as fields
                for key, val in (("dst_offsets", dst), ("src_offsets", src)):
                    if val is not None:
                        props[key] = val
        params = props.pop("params", None) if op.name in PARAMS_OPS else None
        order = list(type(op).get_irdl_definition().properties) if hasattr(type(op), "get_irdl_definition") else []
        for key in sorted(props, key=lambda k: (order.index(k) if k in order else len(order), k)):
            fields.append(f"{key}={fmt_prop(key, props[key])}")
        if params is not None:
            if (
                isinstance(params, DictionaryAttr)
                and all(_plain_key(k) and k not in RESERVED_KEYS for k in params.data)
            ):
                fields += [f"{k}={fmt_attr(v)}" for k, v in params.data.items()]
            else:
                fields.append(f"params={fmt_attr(params)}")
        text = f"{indent}{mnemonic:<8}"
        if operands:
            text += " " + ", ".join(operands)
        if fields:
            text += " " + " ".join(fields)
        text += fmt_attrs_field(op)
        self.line(text.rstrip(), self._instr_comment(op, kernel))

    def _instr_comment(self, op: Operation, kernel: accel.KernelOp) -> str:
        eb = self.layout.element_bytes
        try:
            if isinstance(op, accel.DmaOp):
                total = 0
                moving = 0
                for c in range(min(kernel.num_active, kernel.num_cores)):  # idle cores move nothing
                    n = math.prod(accel.row_for(op.sizes, c))
                    total += n
                    moving += n > 0
                return f"{fmt_bytes(total * eb)} over {moving} core(s)"
            if isinstance(op, accel.ConvOp):
                n, co, ho, wo = accel.mshape(op.out)
                _, ci, kh, kw = accel.mshape(op.weight)
                return f"{n * co * ho * wo * ci * kh * kw:,} MACs per core"
            if isinstance(op, accel.MatMulOp):
                m, k = accel.mshape(op.a)
                nn_ = accel.mshape(op.out)[1]
                return f"{m * k * nn_:,} MACs per core"
            if isinstance(op, accel.ExchangeOp):
                rows = accel.table_rows(op.ranges)
                shape = accel.mshape(op.buffer)
                axis = op.axis.value.data
                per = math.prod(shape) // max(shape[axis], 1)
                moved = sum(
                    (sum(hi - lo for lo, hi in rows) - (hi - lo)) * per
                    for lo, hi in rows
                )
                return f"{fmt_bytes(moved * eb)} over the interconnect"
        except Exception:  # noqa: BLE001 - comments are best effort on malformed IR
            return ""
        return ""

    # -- weights ---------------------------------------------------------------
    def data(self) -> None:
        if not self.blobs:
            return
        self.line("")
        self.line(".data", "weight blobs, MLIR format: 0x, uint32 alignment (little-endian), raw bytes")
        for key, blob in self.blobs.items():
            label = key if HANDLE_RE.fullmatch(key) else json.dumps(key)
            self.line(f"; {label}: {fmt_bytes((len(blob) - 2) // 2 - 4)}")
            self.line(f".blob {label} {blob}")

    def text(self) -> str:
        self.header()
        self.body()
        self.data()
        return "\n".join(self.lines) + "\n"


def weight_handles(program: accel.ProgramOp) -> list[str]:
    seen: dict[str, None] = {}
    for op in program.walk():
        if isinstance(op, accel.DramOp) and op.kind.data == "weight":
            seen.setdefault(op.label.data, None)
    return list(seen)


def print_listing(module: ModuleOp, ctx: Context | None = None, emit_weights: bool = False) -> str:
    """The assembly listing of `module` (one `accel.program`). With
    `emit_weights`, the blobs of the weights that `ctx`'s store holds data for
    go to a `.data` section, so the listing runs on its own."""
    program = program_of(module)
    blobs: dict[str, str] = {}
    if emit_weights and ctx is not None:
        from dlfusion.dialects.weights import WeightStore

        store = _store(ctx)
        if store is not None:
            for key in weight_handles(program):
                blob = store.lookup(key) if isinstance(store, WeightStore) else None
                if blob is not None:
                    blobs[key] = blob
    return _Writer(program, module, blobs).text()


def _store(ctx: Context):
    from dlfusion.dialects.weights import WeightStore

    try:
        return ctx.get_dialect("nn").get_interface(WeightStore)
    except Exception:  # noqa: BLE001 - a context without the nn dialect has no weights
        return None


@dataclass(frozen=True)
class AccelAsmTarget(Target):
    """Print an `accel.program` as an address-resolved assembly listing;
    `dlfusion-opt --emit-weights` adds the weight blobs (`.data` section)."""

    name = "accel-asm"

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        store = _store(ctx)
        emit = bool(store is not None and store.emit_blobs)
        output.write(print_listing(module, ctx, emit_weights=emit))
