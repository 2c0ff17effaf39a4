"""Parse an accel assembly listing (`-t accel-asm`) back into an `accel` module.

    from dlfusion.asm.loader import load_listing
    module = load_listing(text, ctx, name="model.s")

The grammar is `grammar.lark` (lark, LALR, positions propagated). The module
has the listing's ops, properties, attributes and value names; it is verified
op by op, and the addresses written in the listing (`@0x...`, optional) must
be the ones the layout computes. Every error is one line that points at the
listing, `model.s:12:5: error: ...` (an `AsmError`, a `DlfusionError`).
Weight blobs of a `.data` section go to `ctx`'s weight store.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from xdsl.context import Context
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.irdl import OptPropertyDef
from xdsl.irdl.constraints import VerificationContext
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

from dlfusion.asm.printer import KIND_PROP, PARAMS_OPS, TABLE_PROPS, compute_layout
from dlfusion.dialects import accel
from dlfusion.dialects.nn import ints
from dlfusion.errors import DlfusionError

INSTRUCTIONS: dict[str, type[Operation]] = {
    "fill": accel.FillOp,
    "load": accel.LoadOp,
    "store": accel.StoreOp,
    "exchange": accel.ExchangeOp,
    "barrier": accel.BarrierOp,
    "conv": accel.ConvOp,
    "matmul": accel.MatMulOp,
    "pool": accel.PoolOp,
    "eltwise": accel.EltwiseOp,
    "vector": accel.VectorOp,
}

# what each operand position must be: "buffer" (on chip) or "dram"
_DMA_ROLES = {"load": ("buffer", "dram"), "store": ("dram", "buffer")}

_TERMINAL_NAMES = {
    "VALUE": "%name",
    "IDENT": "identifier",
    "STRING": "string",
    "MLIR": '#mlir"..."',
    "SHAPE": "shape (e.g. 1x3x8x8)",
    "ADDRESS": "@address",
    "HEX": "0x hex blob",
    "CORES": "cores (c0, c2-5)",
    "CTERM": "core term (32c)",
    "FLOAT": "float",
    "INT": "integer",
    "_NL": "end of line",
    "$END": "end of file",
}


class AsmError(DlfusionError):
    """An error in an assembly listing, at a line and column."""

    def __init__(self, source: str, line: int, column: int, message: str):
        self.line = line
        self.column = column
        super().__init__(f"error: {message}", where=f"{source}:{line}:{column}")


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("dlfusion.asm").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True)


def _shape(tok: Token) -> list[int]:
    return [] if tok == "scalar" else [int(d) for d in tok.split("x")]


def _pos(node) -> tuple[int, int]:
    if isinstance(node, Token):
        return node.line or 1, node.column or 1
    meta = node.meta
    return getattr(meta, "line", 1), getattr(meta, "column", 1)


def _fmt_shape(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) else "scalar"


class _Scope:
    def __init__(self) -> None:
        self.values: dict[str, SSAValue] = {}
        self.defined_at: dict[str, tuple[int, int]] = {}


class _Builder:
    def __init__(self, ctx: Context, source: str):
        self.ctx = ctx
        self.source = source
        self.globals = _Scope()
        self.local: _Scope | None = None
        self.locs: dict[Operation, tuple[int, int]] = {}
        self.addresses: list[tuple[SSAValue, Token, str]] = []
        self.program: accel.ProgramOp | None = None
        self.module_fields: dict = {}
        self.inputs: list[str] | None = None
        self.outputs: list[str] | None = None
        self.blobs: dict[str, Token] = {}

    # -- errors ------------------------------------------------------------------
    def error(self, node, message: str) -> AsmError:
        line, col = _pos(node)
        return AsmError(self.source, line, col, message)

    # -- names -------------------------------------------------------------------
    def define(self, tok: Token, value: SSAValue) -> None:
        scope = self.local if self.local is not None else self.globals
        name = tok[1:]
        if name in scope.values:
            line, _ = scope.defined_at[name]
            raise self.error(tok, f"redefinition of {tok} (first defined on line {line})")
        scope.values[name] = value
        scope.defined_at[name] = _pos(tok)
        if SSAValue.is_valid_name(name) and not name[0].isdigit():
            value.name_hint = name

    def lookup(self, tok: Token, role: str = "value") -> SSAValue:
        name = tok[1:]
        if self.local is not None and name in self.local.values:
            return self.local.values[name]
        if name in self.globals.values:
            return self.globals.values[name]
        if role == "buffer":
            raise self.error(tok, f"undefined buffer {tok} (declare it with .buf in this kernel)")
        if role == "dram":
            where = "bind it with .arg, or declare it" if self.local is not None else "declare it"
            raise self.error(tok, f"undefined DRAM tensor {tok} ({where} with .dram or .view)")
        raise self.error(tok, f"undefined value {tok}")

    def lookup_global(self, tok: Token) -> SSAValue:
        """A program-level DRAM tensor (the right side of `.arg`)."""
        value = self.globals.values.get(tok[1:])
        if value is None:
            raise self.error(tok, f"undefined DRAM tensor {tok} (.arg binds a tensor declared with .dram or .view)")
        return value

    # -- values ------------------------------------------------------------------
    def attr(self, node) -> Attribute:
        if isinstance(node, Token):
            if node.type == "INT":
                return IntegerAttr(int(node), i64)
            if node.type == "FLOAT":
                return FloatAttr(float(node), Float32Type())
            if node.type == "STRING":
                return StringAttr(self.string(node))
            if node.type == "MLIR":
                return self.mlir(node)
        if isinstance(node, Tree) and node.data == "list":
            rows, shared = self.table(node)
            if not shared:
                raise self.error(node, "a per-core table is only allowed for sizes, offsets and ranges")
            return ints(rows[0])
        if isinstance(node, Tree) and node.data == "dict":
            return DictionaryAttr(self.fields(node.children))
        raise self.error(node, "unexpected value")

    def string(self, tok: Token) -> str:
        try:
            return json.loads(tok)
        except ValueError as exc:
            raise self.error(tok, f"bad string literal: {exc.msg}") from None

    def mlir(self, tok: Token) -> Attribute:
        text = self.string(Token("STRING", tok[len("#mlir"):], line=tok.line, column=tok.column))
        try:
            parser = Parser(self.ctx, text, "<attribute>")
            attr = parser.parse_attribute()
            if parser.pos < len(text.rstrip()):
                parser.raise_error("unexpected text after the attribute")
        except ParseError as exc:
            raise self.error(tok, f"bad MLIR attribute {text!r}: {' '.join(exc.msg.split())}") from None
        return attr

    def table(self, node: Tree) -> tuple[list[tuple[int, ...]], bool]:
        """A list node as per-core rows; `shared` if it is one plain entry."""
        if not node.children:
            return [()], True
        table = node.children[0]
        first = table.children[0] if table.children else None
        if isinstance(first, Tree) and first.data == "group":
            rows: list[tuple[int, ...]] = []
            for group in table.children:
                cores_tok = group.children[0]
                lo, _, hi = cores_tok[1:].partition("-")
                lo_i, hi_i = int(lo), int(hi or lo)
                if lo_i != len(rows):
                    raise self.error(
                        cores_tok,
                        f"per-core groups must list the cores in order from c0: expected c{len(rows)}, got {cores_tok}",
                    )
                if hi_i < lo_i:
                    raise self.error(cores_tok, f"empty core range {cores_tok}")
                terms = [self.term(item.children[0]) for item in group.children[1:]]
                for c in range(lo_i, hi_i + 1):
                    rows.append(tuple(a + b * c for a, b in terms))
            return rows, False
        row = []
        for item in table.children:
            base, step = self.term(item.children[0])
            if step:
                raise self.error(item, f"'{item.children[0]}' depends on the core number: write it in a per-core group such as [c0-3: ...]")
            row.append(base)
        return [tuple(row)], True

    def term(self, tok: Token) -> tuple[int, int]:
        if tok.type == "INT":
            return int(tok), 0
        text = tok[:-1]  # CTERM: drop the trailing "c"
        for i in range(len(text) - 1, 0, -1):
            if text[i] in "+-":
                return int(text[:i]), int(text[i:])
        return 0, int(text)

    def fields(self, nodes) -> dict[str, Attribute]:
        out: dict[str, Attribute] = {}
        for f in nodes:
            key, value = f.children
            if str(key) in out:
                raise self.error(key, f"duplicate field '{key}'")
            out[str(key)] = self.attr(value)
        return out

    def field_nodes(self, nodes, allowed: tuple[str, ...], what: str) -> dict[str, tuple[Token, object]]:
        out: dict[str, tuple[Token, object]] = {}
        for f in nodes:
            key, value = f.children
            name = str(key)
            if name not in allowed:
                raise self.error(key, f"unknown field '{name}' for {what} (expected {', '.join(allowed)})")
            if name in out:
                raise self.error(key, f"duplicate field '{name}'")
            out[name] = (key, value)
        return out

    def int_field(self, fields, name: str, node, what: str) -> IntegerAttr:
        if name not in fields:
            raise self.error(node, f"{what} needs {name}=<integer>")
        key, value = fields[name]
        if not (isinstance(value, Token) and value.type == "INT"):
            raise self.error(key, f"{name} must be an integer")
        return IntegerAttr(int(value), i64)

    def attrs_field(self, fields, op: Operation) -> None:
        if "attrs" in fields:
            key, value = fields["attrs"]
            attr = self.attr(value)
            if not isinstance(attr, DictionaryAttr):
                raise self.error(key, "attrs must be a dictionary {key=value, ...}")
            op.attributes.update(attr.data)

    # -- statements -----------------------------------------------------------------
    def build(self, tree: Tree) -> ModuleOp:
        for stmt in tree.children:
            getattr(self, "stmt_" + stmt.data)(stmt)
        if self.program is None:
            raise AsmError(self.source, 1, 1, "no .program directive: this is not an accel assembly listing")
        program = self.program
        program.properties["input_names"] = ArrayAttr([StringAttr(s) for s in self.inputs or []])
        program.properties["output_names"] = ArrayAttr([StringAttr(s) for s in self.outputs or []])
        module = ModuleOp([program])
        if "name" in self.module_fields:
            module.sym_name = self.module_fields["name"]
        module.attributes.update(self.module_fields.get("attrs", {}))
        self.verify(module)
        self.check_addresses(program)
        self.load_blobs(program)
        return module

    def need_program(self, node) -> accel.ProgramOp:
        if self.program is None:
            raise self.error(node, "the listing must start with a .program directive")
        return self.program

    def stmt_module(self, node: Tree) -> None:
        if self.program is not None:
            raise self.error(node, ".module must come before .program")
        fields = self.field_nodes(node.children, ("name", "attrs"), ".module")
        if "name" in fields:
            key, value = fields["name"]
            if not (isinstance(value, Token) and value.type == "STRING"):
                raise self.error(key, "the module name must be a string")
            self.module_fields["name"] = StringAttr(self.string(value))
        if "attrs" in fields:
            key, value = fields["attrs"]
            attr = self.attr(value)
            if not isinstance(attr, DictionaryAttr):
                raise self.error(key, "attrs must be a dictionary {key=value, ...}")
            self.module_fields["attrs"] = dict(attr.data)

    def stmt_program(self, node: Tree) -> None:
        if self.program is not None:
            raise self.error(node, "a listing holds one .program")
        target, *rest = node.children
        keys = ("cores", "nram_bytes", "wram_bytes", "element_bytes", "attrs")
        fields = self.field_nodes(rest, keys, ".program")
        props: dict[str, Attribute] = {"target": StringAttr(self.string(target))}
        for key in keys[:-1]:
            props[key] = self.int_field(fields, key, node, ".program")
        props["input_names"] = ArrayAttr([])
        props["output_names"] = ArrayAttr([])
        self.program = accel.ProgramOp.create(properties=props, regions=[Region(Block())])
        self.attrs_field(fields, self.program)
        self.locs[self.program] = _pos(node)

    def _names(self, node: Tree, which: str) -> list[str]:
        self.need_program(node)
        if getattr(self, which) is not None:
            raise self.error(node, f"duplicate .{which}")
        return [self.string(t) for t in node.children]

    def stmt_inputs(self, node: Tree) -> None:
        self.inputs = self._names(node, "inputs")

    def stmt_outputs(self, node: Tree) -> None:
        self.outputs = self._names(node, "outputs")

    def add(self, op: Operation, node, block: Block | None = None) -> None:
        (block or self.need_program(node).block).add_op(op)
        self.locs[op] = _pos(node)

    def stmt_dram(self, node: Tree) -> None:
        program = self.need_program(node)
        name, kind, label_node, shape, *rest = node.children
        if kind not in accel.DramOp.KINDS:
            raise self.error(kind, f"DRAM tensor kind must be one of {', '.join(accel.DramOp.KINDS)}, got '{kind}'")
        label_tok = label_node.children[0]
        if label_tok.type == "IDENT" and kind != "weight":
            raise self.error(label_tok, f"the label of an {kind} tensor is a string, e.g. \"{label_tok}\"")
        label = str(label_tok) if label_tok.type == "IDENT" else self.string(label_tok)
        addr, fields = self._addr_and_fields(rest, ".dram")
        op = accel.DramOp(str(kind), label, _shape(shape))
        self.attrs_field(fields, op)
        self.add(op, node, program.block)
        self.define(name, op.result)
        if addr is not None:
            self.addresses.append((op.result, addr, str(name)))
        if kind == "weight":
            from dlfusion.dialects.weights import weight_store

            weight_store(self.ctx).declare_resource(label)

    def _addr_and_fields(self, rest, what: str):
        addr = None
        if rest and isinstance(rest[0], Token) and rest[0].type == "ADDRESS":
            addr, rest = rest[0], rest[1:]
        return addr, self.field_nodes(rest, ("attrs",), what)

    def stmt_view(self, node: Tree, block: Block | None = None) -> None:
        self.need_program(node)
        name, source_tok, shape, *rest = node.children
        source = self.lookup(source_tok, "dram")
        addr, fields = self._addr_and_fields(rest, ".view")
        op = accel.ViewOp(source, _shape(shape))
        self.attrs_field(fields, op)
        self.add(op, node, block)
        self.define(name, op.result)
        if addr is not None:
            self.addresses.append((op.result, addr, str(name)))

    def stmt_ret(self, node: Tree) -> None:
        self.need_program(node)
        values = [c for c in node.children if isinstance(c, Token)]
        fields = self.field_nodes([c for c in node.children if isinstance(c, Tree)], ("attrs",), ".return")
        op = accel.ReturnOp(*[self.lookup(v, "dram") for v in values])
        self.attrs_field(fields, op)
        self.add(op, node)

    def stmt_data(self, node: Tree) -> None:
        self.need_program(node)

    def stmt_blob(self, node: Tree) -> None:
        key_tok, hex_tok = node.children
        key = str(key_tok) if key_tok.type == "IDENT" else self.string(key_tok)
        if key in self.blobs:
            raise self.error(key_tok, f"duplicate blob '{key}' (first on line {self.blobs[key].line})")
        digits = len(hex_tok) - 2
        if digits % 2 or digits < 8:
            raise self.error(
                hex_tok,
                f"blob '{key}' is not a whole number of bytes after its 4-byte alignment header",
            )
        self.blobs[key] = hex_tok

    # -- kernels ------------------------------------------------------------------------
    def stmt_kernel(self, node: Tree) -> None:
        program = self.need_program(node)
        name_tok, *rest = node.children
        field_trees = [c for c in rest if isinstance(c, Tree) and c.data == "field"]
        body = [c for c in rest if not (isinstance(c, Tree) and c.data == "field")]
        fields = self.field_nodes(field_trees, ("cores", "active", "attrs"), ".kernel")
        props = {
            "sym_name": StringAttr(self.string(name_tok)),
            "cores": self.int_field(fields, "cores", node, ".kernel"),
            "active": self.int_field(fields, "active", node, ".kernel"),
        }
        block = Block()
        tensors: list[SSAValue] = []
        self.local = _Scope()
        try:
            for stmt in body:
                if stmt.data == "arg":
                    arg_tok, tensor_tok = stmt.children
                    tensor = self.lookup_global(tensor_tok)
                    tensors.append(tensor)
                    arg = block.insert_arg(tensor.type, len(block.args))
                    self.define(arg_tok, arg)
                elif stmt.data == "buf":
                    self.kernel_buf(stmt, block)
                elif stmt.data == "view":
                    self.stmt_view(stmt, block)
                else:
                    self.kernel_instr(stmt, block)
        finally:
            self.local = None
        op = accel.KernelOp.create(operands=tensors, properties=props, regions=[Region(block)])
        self.attrs_field(fields, op)
        program.block.add_op(op)
        self.locs[op] = _pos(node)

    def kernel_buf(self, node: Tree, block: Block) -> None:
        name, space, shape, *rest = node.children
        if space not in accel.SPACES:
            raise self.error(space, f"on-chip memory must be one of {', '.join(accel.SPACES)}, got '{space}'")
        addr, fields = self._addr_and_fields(rest, ".buf")
        op = accel.AllocOp(_shape(shape), str(space))
        self.attrs_field(fields, op)
        self.add(op, node, block)
        self.define(name, op.result)
        if addr is not None:
            self.addresses.append((op.result, addr, str(name)))

    def kernel_instr(self, node: Tree, block: Block) -> None:
        mnemonic, *rest = node.children
        base, dot, suffix = str(mnemonic).partition(".")
        cls = INSTRUCTIONS.get(base)
        if cls is None:
            raise self.error(mnemonic, f"unknown instruction '{mnemonic}' (expected one of {', '.join(INSTRUCTIONS)})")
        op_name = cls.name
        kind_prop = KIND_PROP.get(op_name)
        if dot and kind_prop is None:
            raise self.error(mnemonic, f"'{base}' takes no '.kind' suffix")
        operands = [c for c in rest if c.data == "operand"]
        field_trees = [c for c in rest if c.data == "field"]

        roles = _DMA_ROLES.get(base)
        values: list[SSAValue] = []
        slices: list[tuple[Tree, list[tuple[int, ...]], bool] | None] = []
        for i, operand in enumerate(operands):
            tok = operand.children[0]
            role = roles[i] if roles is not None and i < len(roles) else ("buffer" if roles is None else "value")
            value = self.lookup(tok, role)
            space = accel.space_of(value) if _is_memref(value) else None
            if role == "buffer" and space is None:
                raise self.error(tok, f"{tok} is a DRAM tensor; {base} operand {i + 1} must be an on-chip buffer (.buf)")
            if role == "dram" and space is not None:
                raise self.error(tok, f"{tok} is an on-chip buffer; {base} operand {i + 1} must be a DRAM tensor")
            values.append(value)
            if len(operand.children) > 1:
                if roles is None:
                    raise self.error(operand.children[0], f"{base} takes no slices: only load and store do")
                lst = operand.children[1]
                rows, shared = self.table(lst)
                rank = len(accel.mshape(value))
                for row in rows:
                    if len(row) != rank:
                        raise self.error(
                            lst,
                            f"slice of {tok} has rank {len(row)}, {tok} is {_fmt_shape(accel.mshape(value))} (rank {rank})",
                        )
                slices.append((operand, rows, shared))
            else:
                slices.append(None)

        props: dict[str, Attribute] = {}
        attrs: dict[str, Attribute] = {}
        params: dict[str, Attribute] = {}
        explicit_params = None
        definition = cls.get_irdl_definition()
        known = list(definition.properties)
        seen: set[str] = set()
        for f in field_trees:
            key, value = f.children
            k = str(key)
            if k in seen:
                raise self.error(key, f"duplicate field '{k}'")
            seen.add(k)
            if k == "attrs":
                attr = self.attr(value)
                if not isinstance(attr, DictionaryAttr):
                    raise self.error(key, "attrs must be a dictionary {key=value, ...}")
                attrs.update(attr.data)
            elif op_name in PARAMS_OPS and k == "params":
                explicit_params = (key, self.attr(value))
                if not isinstance(explicit_params[1], DictionaryAttr):
                    raise self.error(key, "params must be a dictionary {key=value, ...}")
            elif k in known and k not in ("params",) and not (roles and k in ("src_offsets", "dst_offsets")):
                props[k] = self.table_prop(key, value) if k in TABLE_PROPS else self.attr(value)
                try:
                    definition.properties[k].constr.verify(props[k], VerificationContext())
                except VerifyException as exc:
                    raise self.error(key, f"bad value for {k}: {' '.join(str(exc).split())}") from None
            elif op_name in PARAMS_OPS:
                params[k] = self.attr(value)
            else:
                fixed = [p for p in known if p not in ("src_offsets", "dst_offsets")] if roles else known
                raise self.error(
                    key, f"unknown field '{k}' for {base} (its fields are {', '.join(fixed) or 'none'})"
                )
        if explicit_params is not None:
            if params:
                raise self.error(explicit_params[0], "give the params either as params={...} or as key=value fields, not both")
            props["params"] = explicit_params[1]
        elif op_name in PARAMS_OPS:
            props["params"] = DictionaryAttr(params)
        if dot:
            if kind_prop in props:
                raise self.error(mnemonic, f"'{kind_prop}' given both as the suffix of '{mnemonic}' and as a field")
            props[kind_prop] = StringAttr(suffix)
        if roles is not None:
            if len(values) != 2:
                raise self.error(mnemonic, f"{base} takes 2 operands (buffer and DRAM tensor), got {len(values)}")
            if slices[0] is None or slices[1] is None:
                missing = operands[0] if slices[0] is None else operands[1]
                raise self.error(missing, f"{base} needs the offsets of both operands, e.g. {missing.children[0]}[0,0,0,0]")
            props["dst_offsets"] = accel.per_core(slices[0][1])
            props["src_offsets"] = accel.per_core(slices[1][1])
        missing = [
            p for p, d in definition.properties.items() if p not in props and not isinstance(d, OptPropertyDef)
        ]
        if missing:
            raise self.error(mnemonic, f"{mnemonic} needs {', '.join(m + '=...' for m in missing)}")
        order = {p: i for i, p in enumerate(known)}
        props = dict(sorted(props.items(), key=lambda kv: order.get(kv[0], len(order))))
        op = cls.create(operands=values, properties=props, attributes=attrs)
        self.add(op, node, block)

    def table_prop(self, key: Token, value) -> Attribute:
        if not (isinstance(value, Tree) and value.data == "list"):
            raise self.error(key, f"{key} must be a table: [1,2,...] for every core, or [c0: ...; c1: ...]")
        rows, _ = self.table(value)
        return accel.per_core(rows)

    # -- checks ------------------------------------------------------------------------
    def verify(self, module: ModuleOp) -> None:
        """Verify the module; on failure, find the op and point at its line."""
        try:
            module.verify()
            return
        except Exception as exc:  # noqa: BLE001 - located below
            whole = exc
        for op in module.walk():
            if op is module:
                continue
            try:
                op.verify_()
            except VerifyException as exc:
                line, col = self.locs.get(op, (1, 1))
                raise AsmError(self.source, line, col, str(exc)) from None
        first = next((l.strip() for l in str(whole).splitlines() if l.strip()), type(whole).__name__)
        line, col = self.locs.get(self.program, (1, 1))
        raise AsmError(self.source, line, col, first) from None

    def check_addresses(self, program: accel.ProgramOp) -> None:
        layout = compute_layout(program)
        for value, tok, name in self.addresses:
            want = layout.address.get(value)
            got = int(tok[1:], 16)
            if want is not None and got != want:
                raise self.error(
                    tok,
                    f"address {tok} of {name} disagrees with the computed @0x{want:x} "
                    "(addresses follow from the declarations above it: fix it, or leave it out)",
                )

    def load_blobs(self, program: accel.ProgramOp) -> None:
        if not self.blobs:
            return
        from dlfusion.dialects.weights import weight_store

        sizes: dict[str, int] = {}
        for op in program.block.ops:
            if isinstance(op, accel.DramOp) and op.kind.data == "weight":
                sizes.setdefault(op.label.data, math.prod(accel.mshape(op.result)) * 4)
        for key, tok in self.blobs.items():
            got = (len(tok) - 2) // 2 - 4
            if key in sizes and got != sizes[key]:
                raise self.error(
                    tok, f"blob '{key}' holds {got:,} bytes; its weight tensor needs {sizes[key]:,} (float32)"
                )
        store = weight_store(self.ctx)
        for key, tok in self.blobs.items():
            store.parse_resource(key, str(tok))


def _is_memref(value: SSAValue) -> bool:
    from xdsl.dialects.builtin import MemRefType

    return isinstance(value.type, MemRefType)


def _expected(exc: UnexpectedInput, parser: Lark) -> str:
    names = getattr(exc, "expected", None) or getattr(exc, "allowed", None) or set()
    shown = []
    for name in sorted(names):
        readable = _TERMINAL_NAMES.get(name)
        if readable is None:
            try:
                pattern = parser.get_terminal(name).pattern
                readable = f"'{pattern.value}'" if pattern.type == "str" else name
            except KeyError:
                readable = name
        if readable not in shown:
            shown.append(readable)
    if not shown:
        return ""
    more = f", ... ({len(shown) - 8} more)" if len(shown) > 8 else ""
    return "; expected " + (shown[0] if len(shown) == 1 else "one of " + ", ".join(shown[:8]) + more)


def _syntax_error(exc: UnexpectedInput, text: str, source: str, parser: Lark) -> AsmError:
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            return AsmError(source, len(lines), len(lines[-1]) + 1, "unexpected end of file" + _expected(exc, parser))
        what = "end of line" if tok.type == "_NL" else f"'{tok}'"
        return AsmError(source, tok.line, tok.column, f"unexpected {what}" + _expected(exc, parser))
    if isinstance(exc, UnexpectedCharacters):
        line_text = text.splitlines()[exc.line - 1] if exc.line >= 1 else ""
        word = line_text[exc.column - 1 :].split()[0] if line_text[exc.column - 1 :].split() else exc.char
        return AsmError(source, exc.line, exc.column, f"unexpected '{word[:30]}'" + _expected(exc, parser))
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return AsmError(source, len(lines), len(lines[-1]) + 1, "unexpected end of file" + _expected(exc, parser))
    return AsmError(source, getattr(exc, "line", 1), getattr(exc, "column", 1), str(exc).splitlines()[0])


def parse_tree(text: str, source: str = "<listing>") -> Tree:
    """The listing's lark parse tree; syntax errors as AsmError."""
    parser = _parser()
    try:
        return parser.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, source, parser) from None


def load_listing(text: str, ctx: Context, name: str = "<listing>") -> ModuleOp:
    """The verified accel module of a listing; weight blobs go to `ctx`'s store."""
    tree = parse_tree(text, name)
    return _Builder(ctx, name).build(tree)
