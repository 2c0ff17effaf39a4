"""``dlfusion-zoo``: write a zoo model to an ONNX file, or list the zoo.

Usage::

    dlfusion-zoo NAME [-o NAME.onnx] [--seed S] [--batch B]
    dlfusion-zoo --list
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import onnx

from .registry import INPUT_SHAPES, MODELS, PUBLISHED_MACS, build, count_macs, count_params


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlfusion-zoo",
        description="Build a classic ImageNet CNN (torchvision architecture, "
        "seeded random weights) as an ONNX model.",
    )
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="model name (see --list)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="output file (default: NAME.onnx)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default: 0)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    p.add_argument("--list", action="store_true",
                   help="list the available models with their MACs and parameter counts")
    return p


def _list(out) -> None:
    print(f"{'name':<15} {'input':<14} {'GMACs':>8} {'published':>10} {'params':>13}", file=out)
    for name in MODELS:
        skeleton = build(name, materialize=False)
        c, h, w = INPUT_SHAPES[name]
        print(
            f"{name:<15} {f'1x{c}x{h}x{w}':<14} {count_macs(skeleton) / 1e9:>8.3f} "
            f"{PUBLISHED_MACS[name] / 1e9:>10.3f} {count_params(skeleton):>13,}",
            file=out,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        _list(sys.stdout)
        return 0
    prog = "dlfusion-zoo"
    if args.name is None:
        print(f"{prog}: error: give a model NAME or --list; valid names: {', '.join(MODELS)}",
              file=sys.stderr)
        return 1
    if args.name not in MODELS:
        print(f"{prog}: error: unknown model {args.name!r}; valid names: {', '.join(MODELS)}",
              file=sys.stderr)
        return 1
    if args.batch < 1:
        print(f"{prog}: error: --batch must be >= 1, got {args.batch}", file=sys.stderr)
        return 1
    path = args.output or f"{args.name}.onnx"
    model = build(args.name, seed=args.seed, batch=args.batch)
    # write to a temporary name first so that a failed write leaves no
    # truncated model behind
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        print(f"{prog}: error: cannot write {path!r}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(
        f"wrote {path}: {args.name}, batch {args.batch}, seed {args.seed}, "
        f"{count_macs(model) / 1e9:.3f} GMACs, {count_params(model):,} params, "
        f"{os.path.getsize(path) / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
