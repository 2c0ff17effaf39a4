"""The accel assembly listing: `-t accel-asm` and its loader (`.s` frontend).

Round trips (module -> listing -> module -> listing), the layout, the value
syntax, one-line errors at line:column for bad listings, and, once
lower-to-accel and the simulator exist, a zoo model run from its listing with
the same outputs and latency as from its module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import (
    ArrayAttr,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    i32,
    i64,
)
from xdsl.ir import Block, Region

from dlfusion.asm import compute_layout, load_listing, print_listing
from dlfusion.asm.loader import AsmError, parse_tree
from dlfusion.asm.printer import fmt_float32, fmt_table
from dlfusion.context import make_context, weight_store
from dlfusion.dialects import accel
from dlfusion.dialects.nn import f32, ints
from dlfusion.ir_io import print_module
from dlfusion.targets import load_target

BIN = Path(sys.executable).parent


def tool(name: str) -> list[str]:
    exe = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if exe:
        return [exe]
    module = {"dlfusion-run": "dlfusion.run", "dlfusion-opt": "dlfusion.opt"}[name]
    return [sys.executable, "-m", module]


def run(name: str, *args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("DLFUSION_DEBUG", None)
    return subprocess.run(
        [*tool(name), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


# --------------------------------------------------------------------------
# hand-built programs
# --------------------------------------------------------------------------


def conv_program(ctx, with_data: bool = True) -> ModuleOp:
    """conv3x3 + relu of a 1x3x8x8 input on 2 cores (the docstring example)."""
    target = load_target("mlu100")
    store = weight_store(ctx)
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    key = store.add("w0", w) if with_data else store.declare_resource("w0")
    block = Block()
    x = accel.DramOp("input", "x", (1, 3, 8, 8))
    wt = accel.DramOp("weight", key, (4, 3, 3, 3))
    y = accel.DramOp("temp", "conv1", (1, 4, 8, 8))
    for op, name in ((x, "x"), (wt, "w"), (y, "y")):
        op.result.name_hint = name
        block.add_op(op)
    kb = Block(arg_types=[x.result.type, wt.result.type, y.result.type])
    for arg, name in zip(kb.args, ("in", "wt", "out")):
        arg.name_hint = name
    i = accel.AllocOp((1, 3, 10, 10), "nram")
    k = accel.AllocOp((2, 3, 3, 3), "wram")
    o = accel.AllocOp((1, 2, 8, 8), "nram")
    for op, name in ((i, "i"), (k, "k"), (o, "o")):
        op.result.name_hint = name
    kb.add_ops(
        [
            i,
            k,
            o,
            accel.FillOp(i.result, 0.0),
            accel.LoadOp(i.result, kb.args[0], [(0, 0, 0, 0)], [(1, 3, 8, 8)], [(0, 0, 1, 1)]),
            accel.LoadOp(k.result, kb.args[1], [(0, 0, 0, 0), (2, 0, 0, 0)], [(2, 3, 3, 3)], [(0, 0, 0, 0)]),
            accel.ConvOp(o.result, i.result, k.result, None, (1, 1), (1, 1), 1),
            accel.EltwiseOp(o.result, [o.result], "relu"),
            accel.StoreOp(kb.args[2], o.result, [(0, 0, 0, 0)], [(1, 2, 8, 8)], [(0, 0, 0, 0), (0, 2, 0, 0)]),
            accel.BarrierOp(),
        ]
    )
    block.add_op(accel.KernelOp("conv1", 2, 2, [x.result, wt.result, y.result], Region(kb)))
    block.add_op(accel.ReturnOp(y.result))
    module = ModuleOp([accel.ProgramOp(target, ["x"], ["y"], Region(block))])
    module.verify()
    return module


def rich_program(ctx) -> ModuleOp:
    """Every instruction, views (program level and in a kernel), unnamed
    values, a name used in two kernels, per-core tables of several shapes,
    params and discardable attributes of several types."""
    target = load_target("mlu100")
    store = weight_store(ctx)
    rng = np.random.default_rng(1)
    wk = store.add("fc.weight", rng.standard_normal((10, 64)).astype(np.float32))
    bk = store.add("fc.bias", rng.standard_normal((10,)).astype(np.float32))
    block = Block()
    x = accel.DramOp("input", "image in", (1, 16, 4, 4))
    x.result.name_hint = "x"
    fw = accel.DramOp("weight", wk, (10, 64))
    fb = accel.DramOp("weight", bk, (10,))  # unnamed
    t = accel.DramOp("temp", "pool", (1, 16, 2, 2))
    t.result.name_hint = "t"
    t.attributes["layer"] = StringAttr("maxpool1")
    out = accel.DramOp("temp", "logits", (1, 10))
    out.result.name_hint = "y"
    block.add_ops([x, fw, fb, t, out])

    # kernel 1: pool + sigmoid on 4 cores (4 channels each), exchange, store
    k1 = Block(arg_types=[x.result.type, t.result.type])
    k1.args[0].name_hint = "in"
    k1.args[1].name_hint = "out"
    a = accel.AllocOp((1, 16, 4, 4), "nram")
    a.result.name_hint = "a"
    p = accel.AllocOp((1, 16, 2, 2), "nram")
    p.result.name_hint = "a"  # same hint twice: printed %a, %a_1
    s = accel.AllocOp((1, 16, 2, 2), "nram")  # unnamed
    k1.add_ops(
        [
            a,
            p,
            s,
            accel.FillOp(a.result, float("-inf")),
            accel.LoadOp(
                a.result,
                k1.args[0],
                [(0, 4 * c, 0, 0) for c in range(4)],
                [(1, 4, 4, 4)],
                [(0, 4 * c, 0, 0) for c in range(4)],
            ),
            accel.PoolOp(p.result, a.result, "max", (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), False),
            accel.EltwiseOp(s.result, [p.result], "clip", {"min": f32(0.0), "max": f32(6.0)}),
            accel.EltwiseOp(s.result, [s.result, p.result], "add"),
            accel.EltwiseOp(
                s.result, [s.result], "leaky_relu", {"alpha": FloatAttr(0.1, Float64Type())}
            ),
            accel.ExchangeOp(s.result, 1, [(4 * c, 4 * c + 4) for c in range(4)]),
            accel.StoreOp(
                k1.args[1],
                s.result,
                [(0, 0, 0, 0)],
                [(1, 16, 2, 2), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)],
                [(0, 0, 0, 0)],
            ),
        ]
    )
    kern1 = accel.KernelOp("pool", 4, 4, [x.result, t.result], Region(k1))
    kern1.attributes["layers"] = ArrayAttr([StringAttr("pool1"), StringAttr("relu1")])
    block.add_op(kern1)

    flat = accel.ViewOp(t.result, (1, 64))
    flat.result.name_hint = "flat"
    block.add_op(flat)

    # kernel 2: gemm on 3 cores (an uneven split), a view inside the kernel,
    # softmax on core 0 only
    k2 = Block(arg_types=[flat.result.type, fw.result.type, fb.result.type, out.result.type, t.result.type])
    # `y` repeats the program-level name of its tensor (`.arg %y = %y`); `t`
    # cannot, as the kernel also reads the program-level %t directly
    for arg, name in zip(k2.args, ("in", "w", None, "y", "t")):
        arg.name_hint = name
    inner_view = accel.ViewOp(k2.args[4], (64,))
    ai = accel.AllocOp((1, 64), "nram")
    ai.result.name_hint = "a"
    wb = accel.AllocOp((4, 64), "wram")
    wb.result.name_hint = "wb"
    bb = accel.AllocOp((4,), "wram")
    bb.result.name_hint = "bb"
    ob = accel.AllocOp((1, 4), "nram")
    ob.result.name_hint = "o"
    full = accel.AllocOp((1, 10), "nram")
    full.result.name_hint = "full"
    sm = accel.AllocOp((1, 10), "nram")
    sm.result.name_hint = "sm"
    tb = accel.AllocOp((1, 16, 2, 2), "nram")
    tb.result.name_hint = "t"
    k2.add_ops(
        [
            inner_view,
            ai,
            wb,
            bb,
            ob,
            full,
            sm,
            tb,
            accel.LoadOp(ai.result, k2.args[0], [(0, 0)], [(1, 64)], [(0, 0)]),
            accel.LoadOp(wb.result, k2.args[1], [(0, 0), (4, 0), (8, 0)], [(4, 64), (4, 64), (2, 64)], [(0, 0)]),
            accel.LoadOp(bb.result, k2.args[2], [(0,), (4,), (8,)], [(4,), (4,), (2,)], [(0,)]),
            accel.LoadOp(tb.result, t.result, [(0, 0, 0, 0)], [(1, 16, 2, 2)], [(0, 0, 0, 0)]),
            accel.MatMulOp(ob.result, ai.result, wb.result, bb.result, True),
            accel.StoreOp(k2.args[3], ob.result, [(0, 0)], [(1, 4), (1, 4), (1, 2)], [(0, 0), (0, 4), (0, 8)]),
            accel.BarrierOp(),
            accel.LoadOp(full.result, k2.args[3], [(0, 0)], [(1, 10), (0, 0), (0, 0)], [(0, 0)]),
            accel.VectorOp(
                sm.result,
                [full.result],
                "softmax",
                {"axis": IntegerAttr(1, i64), "note": StringAttr('say "hi"'), "perm": ints([1, 0])},
            ),
            accel.VectorOp(
                sm.result,
                [sm.result],
                "odd layer",
                {"count": IntegerAttr(3, i32), "attrs": StringAttr("a param named attrs")},
            ),
            accel.StoreOp(k2.args[3], sm.result, [(0, 0)], [(1, 10), (0, 0), (0, 0)], [(0, 0)]),
        ]
    )
    block.add_op(
        accel.KernelOp(
            "fc", 3, 3, [flat.result, fw.result, fb.result, out.result, t.result], Region(k2)
        )
    )
    block.add_op(accel.ReturnOp(out.result, t.result))
    program = accel.ProgramOp(target, ["image in"], ["logits", "pool"], Region(block))
    module = ModuleOp([program])
    module.verify()
    return module


def mlir_text(module, ctx) -> str:
    return print_module(module, ctx)


# --------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------


@pytest.mark.parametrize("build", [conv_program, rich_program])
def test_round_trip(build):
    ctx = make_context()
    module = build(ctx)
    text = print_listing(module, ctx)
    ctx2 = make_context()
    loaded = load_listing(text, ctx2, "p.s")
    # asm -> module -> asm is the identity
    assert print_listing(loaded, ctx2) == text
    # and the module is the same as the original: same ops, properties,
    # attributes and names, so the same MLIR text
    assert mlir_text(loaded, ctx2) == mlir_text(module, ctx)
    assert loaded.is_structurally_equivalent(module)


def test_round_trip_with_weights():
    ctx = make_context()
    module = rich_program(ctx)
    text = print_listing(module, ctx, emit_weights=True)
    assert "\n.data" in text and text.count("\n.blob ") == 2
    ctx2 = make_context()
    loaded = load_listing(text, ctx2, "p.s")
    assert print_listing(loaded, ctx2, emit_weights=True) == text
    src, dst = weight_store(ctx), weight_store(ctx2)
    for key in ("fc.weight", "fc.bias"):
        a = src.get(key)
        b = dst.get(key, np.dtype(np.float32), a.shape)
        assert a.tobytes() == b.tobytes()
    # printing without weights leaves only the handles
    plain = print_listing(loaded, ctx2)
    assert ".blob" not in plain and "weight fc.weight 10x64" in plain


def test_listing_excerpt():
    ctx = make_context()
    text = print_listing(conv_program(ctx), ctx)
    lines = [l.split(";")[0].rstrip() for l in text.splitlines()]
    assert '.program "mlu100" cores=32 nram_bytes=524288 wram_bytes=1048576 element_bytes=2' in lines
    assert '.dram %w weight w0 4x3x3x3 @0x00000180' in lines
    assert "  load     %k[0,0,0,0], %wt[c0-1: 2c,0,0,0] sizes=[2,3,3,3]" in lines
    assert "  store    %out[c0-1: 0,2c,0,0], %o[0,0,0,0] sizes=[1,2,8,8]" in lines
    assert "  .buf %o nram 1x2x8x8 @0x00280" in lines


def test_layout():
    ctx = make_context()
    module = rich_program(ctx)
    program = module.body.block.first_op
    layout = compute_layout(program)
    drams = [op for op in program.block.ops if isinstance(op, accel.DramOp)]
    # x 512 B, fc.weight 1,280 B, fc.bias 20 B (-> 64), t 128 B, y
    assert [layout.address[d.result] for d in drams] == [0, 512, 1792, 1856, 1984]
    view = next(op for op in program.block.ops if isinstance(op, accel.ViewOp))
    assert layout.address[view.result] == layout.address[drams[3].result]
    fc = program.kernels()[1]
    assert layout.address[fc.block.args[0]] == layout.address[drams[3].result]
    allocs = [op for op in fc.block.ops if isinstance(op, accel.AllocOp)]
    offsets = [(op.space, layout.address[op.result]) for op in allocs]
    # nram: a 128 B, o 8 B -> 64, full 20 B -> 64, sm 20 B -> 64, t; wram: wb 512 B, bb
    assert offsets == [("nram", 0), ("wram", 0), ("wram", 512), ("nram", 128), ("nram", 192), ("nram", 256), ("nram", 320)]
    assert all(a % 64 == 0 for a in layout.address.values())


@pytest.mark.parametrize(
    "rows, text",
    [
        ([(1, 2)], "[1,2]"),
        ([(0, 0), (2, 0)], "[c0-1: 2c,0]"),
        ([(1, 2), (1, 2), (1, 2)], "[c0-2: 1,2]"),
        ([(0, 4), (4, 4), (8, 4), (12, 4)], "[c0-3: 4c,4]"),
        ([(4, 8), (8, 12), (12, 16)], "[c0-2: 4+4c,8+4c]"),
        ([(9,), (6,), (3,), (0,)], "[c0: 9 | c1: 6 | c2: 3 | c3: 0]"),
        ([(0, 0), (2, 0), (0, 0), (0, 0)], "[c0-1: 2c,0 | c2-3: 0,0]"),
        ([(1,), (2,), (2,)], "[c0: 1 | c1-2: 2]"),
        ([(1, 1), (0, 0)], "[c0: 1,1 | c1: 0,0]"),
        ([(1,), (2,), (2,), (2,)], "[c0: 1 | c1-3: 2]"),
        ([(4,), (4,), (2,), (0,), (0,)], "[c0-1: 4 | c2: 2 | c3-4: 0]"),
        ([(), ()], "[c0-1:]"),
    ],
)
def test_tables(rows, text):
    assert fmt_table(rows) == text
    tree = parse_tree(f'.program "t"\n.dram %x input "x" 1\n.kernel "k"\n  load %b[0], %x{text}\n.end\n')
    from dlfusion.asm.loader import _Builder

    slice_ = list(tree.find_data("operand"))[1].children[1]
    got, shared = _Builder(make_context(), "t.s").table(slice_)
    assert got == [tuple(r) for r in rows] and shared == (len(rows) == 1)


@pytest.mark.parametrize("value", [0.0, -0.0, 0.1, 1e-5, 6.0, 3.4e38, 1.17549435e-38, float("inf"), float("-inf"), 123456.789])
def test_float32_text_is_exact(value):
    attr = f32(value)
    text = fmt_float32(attr.value.data)
    assert f32(float(text)).value.data == attr.value.data or (value != value)
    assert str(np.float32(value)) in (text, text.removesuffix(".0"))


# --------------------------------------------------------------------------
# errors in hand-edited listings
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listing() -> str:
    ctx = make_context()
    return print_listing(conv_program(ctx), ctx)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, l in enumerate(text.splitlines(), 1) if needle in l)


def _load_error(text: str) -> str:
    with pytest.raises(AsmError) as info:
        load_listing(text, make_context(), "p.s")
    return str(info.value)


def test_error_syntax(listing):
    bad = listing.replace("conv     %o, %i, %k", "conv     %o, %i %k")
    line = _line_of(bad, "conv     %o")
    msg = _load_error(bad)
    assert re.fullmatch(rf"p\.s:{line}:19: error: unexpected '%k'; expected .*", msg), msg
    assert "\n" not in msg


def test_error_unexpected_character(listing):
    bad = listing.replace("barrier", "barrier !")
    line = _line_of(bad, "barrier !")
    assert _load_error(bad).startswith(f"p.s:{line}:11: error: unexpected '!'")


def test_error_missing_end(listing):
    bad = listing.replace(".end\n", "")
    msg = _load_error(bad)
    assert "error: unexpected" in msg and "'.end'" in msg


def test_error_undefined_buffer(listing):
    bad = listing.replace("eltwise.relu %o, %o", "eltwise.relu %o, %q")
    line = _line_of(bad, "eltwise.relu")
    assert _load_error(bad).startswith(f"p.s:{line}:20: error: undefined buffer %q")


def test_error_undefined_dram(listing):
    bad = listing.replace(".arg %in = %x", ".arg %in = %nope")
    line = _line_of(bad, ".arg %in")
    assert _load_error(bad).startswith(f"p.s:{line}:14: error: undefined DRAM tensor %nope")
    bad = listing.replace("%in[0,0,0,0]", "%inn[0,0,0,0]")
    line = _line_of(bad, "%inn")
    assert _load_error(bad).startswith(f"p.s:{line}:25: error: undefined DRAM tensor %inn")


def test_error_wrong_rank_slice(listing):
    bad = listing.replace("%in[0,0,0,0]", "%in[0,0,0]")
    line = _line_of(bad, "%in[0,0,0]")
    msg = _load_error(bad)
    assert msg.startswith(f"p.s:{line}:28: error: slice of %in has rank 3, %in is 1x3x8x8 (rank 4)"), msg


def test_error_address(listing):
    bad = listing.replace("@0x00000180", "@0x00000100")
    line = _line_of(bad, "@0x00000100")
    msg = _load_error(bad)
    assert msg.startswith(f"p.s:{line}:28: error: address @0x00000100 of %w disagrees with the computed @0x180")
    # addresses are optional
    stripped = re.sub(r" @0x[0-9a-f]+", "", listing)
    ctx = make_context()
    assert print_listing(load_listing(stripped, ctx), ctx) == listing


def test_error_verifier(listing):
    bad = listing.replace("groups=1", "groups=2")
    line = _line_of(bad, "groups=2")
    msg = _load_error(bad)
    assert msg.startswith(f"p.s:{line}:3: error: accel.conv: 3 input channels"), msg


def test_error_unknown_field_and_instruction(listing):
    bad = listing.replace("groups=1", "groups=1 pad=1")
    assert "error: unknown field 'pad' for conv (its fields are strides, dilations, groups)" in _load_error(bad)
    bad = listing.replace("barrier", "halt")
    assert "error: unknown instruction 'halt'" in _load_error(bad)
    bad = listing.replace(" groups=1", "")
    assert "error: conv needs groups=..." in _load_error(bad)


def test_error_blob_size(listing):
    bad = listing + ".data\n.blob w0 0x0400000000000000\n"
    line = len(bad.splitlines())
    msg = _load_error(bad)
    assert msg.startswith(f"p.s:{line}:10: error: blob 'w0' holds 4 bytes; its weight tensor needs 432")


# --------------------------------------------------------------------------
# the tools
# --------------------------------------------------------------------------


def test_opt_round_trip_cli(tmp_path):
    ctx = make_context()
    module = conv_program(ctx)
    mlir = tmp_path / "p.mlir"
    mlir.write_text(print_module(module, ctx, emit_weights=True))
    s = tmp_path / "p.s"
    r = run("dlfusion-opt", mlir, "-t", "accel-asm", "--emit-weights", "-o", s)
    assert r.returncode == 0, r.stderr
    text = s.read_text()
    assert ".blob w0 0x04000000" in text
    r = run("dlfusion-opt", s, "-t", "accel-asm", "--emit-weights")
    assert r.returncode == 0 and r.stdout == text
    r = run("dlfusion-opt", s, "--emit-weights")
    direct = run("dlfusion-opt", mlir, "--emit-weights")
    assert r.returncode == 0 and direct.returncode == 0
    assert r.stdout == direct.stdout


def test_not_a_program(tmp_path):
    f = tmp_path / "m.mlir"
    f.write_text('func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n  func.return %x : tensor<2xf32>\n}\n')
    r = run("dlfusion-opt", f, "-t", "accel-asm")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "the accel-asm target needs a program lowered with lower-to-accel" in lines[0]


@pytest.mark.parametrize(
    "edit, message",
    [
        (("conv     %o, %i, %k", "conv     %o, %i %k"), "error: unexpected '%k'"),
        (("eltwise.relu %o, %o", "eltwise.relu %o, %q"), "error: undefined buffer %q"),
        ((".arg %in = %x", ".arg %in = %nope"), "error: undefined DRAM tensor %nope"),
    ],
)
@pytest.mark.parametrize("name", ["dlfusion-opt", "dlfusion-run"])
def test_bad_listing_cli(tmp_path, listing, edit, message, name):
    f = tmp_path / "bad.s"
    f.write_text(listing.replace(*edit))
    r = run(name, f)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert re.match(rf"{name}: .*bad\.s:\d+:\d+: {re.escape(message)}", lines[0]), lines[0]


# --------------------------------------------------------------------------
# running a listing (needs lower-to-accel and the simulator)
# --------------------------------------------------------------------------


def _have_sim() -> bool:
    try:
        import dlfusion.sim  # noqa: F401

        return True
    except ImportError:
        return False


def _have_lowering() -> bool:
    try:
        from dlfusion.passes import get_all_passes

        import dlfusion.sim  # noqa: F401

        return "lower-to-accel" in get_all_passes()
    except ImportError:
        return False


needs_lowering = pytest.mark.skipif(not _have_lowering(), reason="lower-to-accel or dlfusion.sim not there yet")


@pytest.fixture(scope="module")
def hand_program_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand")
    ctx = make_context()
    module = conv_program(ctx)
    (d / "p.mlir").write_text(print_module(module, ctx, emit_weights=True))
    (d / "p.s").write_text(print_listing(module, ctx, emit_weights=True))
    (d / "p_noweights.s").write_text(print_listing(module, ctx))
    return d


def _simulate(module, ctx, inputs, timing_only=False):
    from dlfusion.sim import simulate

    return simulate(module, ctx, inputs, timing_only=timing_only)


@pytest.mark.skipif(not _have_sim(), reason="dlfusion.sim not there yet")
def test_hand_program_listing_runs_like_module():
    ctx = make_context()
    module = conv_program(ctx)
    text = print_listing(module, ctx, emit_weights=True)
    ctx2 = make_context()
    loaded = load_listing(text, ctx2, "p.s")
    x = {"x": np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    a = _simulate(module, ctx, x)
    b = _simulate(loaded, ctx2, x)
    assert a.outputs.keys() == b.outputs.keys()
    for k in a.outputs:
        assert a.outputs[k].tobytes() == b.outputs[k].tobytes()
    assert a.report["total_us"] == b.report["total_us"]


def group_layers(module: ModuleOp, cores: int) -> None:
    """Wrap the layers of @main in `nn.fusion_group`s of `cores` cores: a
    layer with its single-use relu/clip successor, or a layer alone (until
    fuse-layers and assign-cores exist, this gives the lowering multicore
    kernels and fused groups to emit)."""
    from xdsl.dialects import func

    from dlfusion.dialects import nn

    fn = next(op for op in module.walk() if isinstance(op, func.FuncOp))
    block = fn.body.block
    ops = [op for op in block.ops if not isinstance(op, (nn.WeightOp, func.ReturnOp))]
    chunks, i = [], 0
    while i < len(ops):
        op, nxt = ops[i], ops[i + 1] if i + 1 < len(ops) else None
        if (
            nxt is not None
            and len(op.results) == 1
            and isinstance(nxt, (nn.ReluOp, nn.ClipOp))
            and nxt.operands[0] is op.results[0]
            and op.results[0].has_one_use()
        ):
            chunks.append([op, nxt])
            i += 2
        else:
            chunks.append([op])
            i += 1
    for n, chunk in enumerate(chunks):
        inside = {r for op in chunk for r in op.results}
        inputs: list = []
        for op in chunk:
            inputs += [v for v in op.operands if v not in inside and v not in inputs]
        outs = [r for op in chunk for r in op.results if any(u.operation not in chunk for u in r.uses)]
        body = Block(arg_types=[v.type for v in inputs])
        mapping = dict(zip(inputs, body.args))
        for op in chunk:
            clone = op.clone(value_mapper=mapping)
            body.add_op(clone)
            mapping.update(zip(op.results, clone.results))
        body.add_op(nn.YieldOp(*[mapping[r] for r in outs]))
        group = nn.FusionGroupOp(f"g{n}", inputs, [r.type for r in outs], Region(body), cores=cores)
        block.insert_op_before(group, chunk[0])
        for r, gr in zip(outs, group.outputs):
            r.replace_all_uses_with(gr)
            gr.name_hint = r.name_hint
        for op in reversed(chunk):
            op.detach()
            op.erase()
    module.verify()


def lowered_zoo_model(model: str, cores: int | None):
    """`model` from the zoo, imported, batchnorm folded, (grouped on
    `cores` cores,) lowered to accel: (module, ctx)."""
    import io

    from dlfusion import zoo
    from dlfusion.frontend import import_onnx_stream
    from dlfusion.passes import get_all_passes

    passes = get_all_passes()
    ctx = make_context()
    module = import_onnx_stream(io.BytesIO(zoo.build(model, seed=0).SerializeToString()), ctx, text=False, source=model)
    for name in ("fold-batchnorm", "nn-canonicalize"):
        passes[name]()().apply(ctx, module)
    if cores is not None:
        group_layers(module, cores)
    passes["lower-to-accel"]()().apply(ctx, module)
    module.verify()
    return module, ctx


@needs_lowering
@pytest.mark.parametrize("model, cores", [("squeezenet1_0", None), ("mobilenet_v2", 8)])
def test_zoo_model_listing_runs_like_module(tmp_path, model, cores):
    """A zoo model lowered to accel, printed as a listing with its weights,
    loaded back and simulated: bit-identical outputs, identical latency."""
    from dlfusion.ir_io import parse_module
    from dlfusion.sim import find_program, random_program_inputs

    module, ctx = lowered_zoo_model(model, cores)
    mlir = tmp_path / f"{model}.mlir"
    asm = tmp_path / f"{model}.s"
    mlir.write_text(print_module(module, ctx, emit_weights=True))
    r = run("dlfusion-opt", mlir, "-t", "accel-asm", "--emit-weights", "-o", asm)
    assert r.returncode == 0, r.stderr
    text = asm.read_text()
    assert text == print_listing(module, ctx, emit_weights=True)
    if cores is not None:
        assert f"cores={cores}" in text and re.search(r"\[c0-\d+: ", text)

    # the listing reads back to the same module, and prints the same listing
    ctx_m, ctx_s = make_context(), make_context()
    from_mlir = parse_module(mlir.read_text(), ctx_m, str(mlir))
    from_asm = load_listing(text, ctx_s, str(asm))
    assert from_asm.is_structurally_equivalent(from_mlir)
    assert print_listing(from_asm, ctx_s, emit_weights=True) == text

    # the same numbers and the same time from both
    inputs = random_program_inputs(find_program(from_mlir), seed=0)
    a = _simulate(from_mlir, ctx_m, inputs)
    b = _simulate(from_asm, ctx_s, inputs)
    assert a.outputs.keys() == b.outputs.keys()
    for k in a.outputs:
        assert a.outputs[k].tobytes() == b.outputs[k].tobytes(), k
    assert a.report["total_us"] == b.report["total_us"]

    # and from the command line: the same summary (CRC-32 of every output, latency)
    ra, rb = run("dlfusion-run", mlir), run("dlfusion-run", asm)
    assert ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr
    assert ra.stdout == rb.stdout and "latency" in ra.stdout


@pytest.mark.skipif(not _have_sim(), reason="dlfusion.sim not there yet")
def test_listing_without_weights(hand_program_files):
    d = hand_program_files
    r = run("dlfusion-run", d / "p_noweights.s")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "elided" in r.stderr
    timed = run("dlfusion-run", d / "p_noweights.s", "--timing-only")
    full = run("dlfusion-run", d / "p.mlir", "--timing-only")
    assert timed.returncode == 0, timed.stderr
    assert timed.stdout == full.stdout
