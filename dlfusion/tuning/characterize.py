"""The characterization study: synthesized layers measured on a target.

Following the DLFusion study, layers are *synthesized* over a grid of
operation counts and channel sizes, for every layer class the zoo uses
(convolutions of several kernel sizes and strides, depthwise convolutions,
fully-connected, pooling, element-wise), together with short chains of them
(depth 2..4, some whose layers prefer different core numbers). Each one is
built as an ONNX model with `onnx.helper`, imported with the frontend
(`dlfusion.frontend.import_model`), and measured through the one measurement
layer (`dlfusion.tuning.measure.Measurer`: cut out, lowered with
`lower-to-accel`, simulated timing-only) at every core number the target
allows; chains are measured fused (one kernel) and unfused (a kernel per
layer).

The result is the *characterization table* of a target, one JSON file:

    {
      "version": 2, "target": "mlu100", "target_digest": "...", "cost_model": "...",
      "grid": "full",
      "cores": [1, 2, ..., 32],
      "machine": {"cores": 32, "mac_lanes": 32, "vector_lanes": 64,
                  "nram_bytes": ..., "wram_bytes": ..., "element_bytes": 2},
      "layers": [{"class": "conv3x3s1", "kind": "conv", "kernel": 3, "stride": 1,
                  "cin": 64, "cout": 64, "h": 56, "hw": 3136, "ops": ...,
                  "ifm_bytes": ..., "ofm_bytes": ..., "weight_bytes": ...,
                  "latency_us": [one per core number], "active": [busy cores, one
                  per core number], "best_cores": 2}, ...],
      "chains": [{"pattern": "conv-relu", "depth": 2, "layers": [<layer records>],
                  "fused_us": [per core number], "unfused_us": [per core number],
                  "best_each_us": ..., "best_fused_us": ..., "best_fused_cores": ...,
                  "best_each_cores": [...], "mismatch": ..., "working_set_bytes": [...]},
                 ...],
      "seconds": 123.4, "measurements": 9876
    }

`layers[*].latency_us[i]` is the latency of that layer as a kernel of its own
on `cores[i]` cores (launch included), `active[i]` how many of those cores
had work (channel groups x row blocks, as `lower-to-accel` split it); a chain's `unfused_us[i]` is the sum of
its layers' latencies on `cores[i]` cores, `best_each_us` the sum of their
best latencies (each on its own best core number), `mismatch` the spread of
those best core numbers (log2 of max / min).

The table is cached per target: `<cache dir>/<target>-<digest>-cm<N>.json`,
where the digest is the hash of the target file's bytes and `N` the version of
the lowering and simulator (`dlfusion.tuning.cost_model.COST_MODEL_VERSION`),
so it is rebuilt when either changes and never otherwise. The cache dir is `--cache-dir`, else `$DLFUSION_CACHE`
(its `characterization/` folder), else `~/.cache/dlfusion/characterization`.
The measurements themselves go to a tuning-record log beside the table, so an
interrupted characterization resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlfusion.errors import DlfusionError
from dlfusion.targets import AcceleratorTarget, load_target

TABLE_VERSION = 3  # 3: stride-1 and average pools, dense channels to 64 lane groups, DenseNet chains

# -------------------------------------------------------------------------
# layer classes and the grid
# -------------------------------------------------------------------------

# class name -> (annotate-layers kind, kernel, stride, op); op is what the
# ONNX node is
CLASSES: dict[str, tuple[str, int, int, str]] = {
    "conv1x1s1": ("conv", 1, 1, "Conv"),
    "conv3x3s1": ("conv", 3, 1, "Conv"),
    "conv3x3s2": ("conv", 3, 2, "Conv"),
    "conv1x1s2": ("conv", 1, 2, "Conv"),  # ResNet's downsampling shortcut
    "conv1x7s1": ("conv", 7, 1, "Conv"),  # Inception-v3's factorized 7x7 (and 7x1; the name gives the shape)
    "conv7x7s2": ("conv", 7, 2, "Conv"),
    "dw3x3s1": ("depthwise", 3, 1, "Conv"),
    "dw3x3s2": ("depthwise", 3, 2, "Conv"),
    "fc": ("gemm", 1, 1, "Gemm"),
    "maxpool3x3s2": ("pool", 3, 2, "MaxPool"),
    "maxpool3x3s1": ("pool", 3, 1, "MaxPool"),  # 'same' (GoogLeNet's, Inception's branch pools)
    "avgpool2x2s2": ("pool", 2, 2, "AveragePool"),  # DenseNet's transition
    "gap": ("pool", 0, 1, "GlobalAveragePool"),
    "relu": ("eltwise", 1, 1, "Relu"),
    "add": ("eltwise", 1, 1, "Add"),
    "bn": ("norm", 1, 1, "BatchNormalization"),  # a batch norm no convolution absorbs
    "concat": ("data", 1, 1, "Concat"),  # cin channels + (cout - cin) from outside
}



def kernel_hw(cls: str) -> tuple[int, int]:
    """A class's window (rows, columns): from its name ('conv1x7s1') when
    it gives one, else square."""
    m = re.search(r"(\d+)x(\d+)s\d+$", cls)
    if m:
        return int(m.group(1)), int(m.group(2))
    k = CLASSES[cls][1]
    return k, k


def pad_of(cls: str) -> tuple[int, int]:
    """The synthesized layer's border (rows, columns) on each side: 'same'
    for convolutions and stride-1 pools, none for strided pools."""
    _, _, s, op = CLASSES[cls]
    kh, kw = kernel_hw(cls)
    if op == "Conv" or (op in ("MaxPool", "AveragePool") and s == 1):
        return kh // 2, kw // 2
    return 0, 0


@dataclass(frozen=True)
class LayerSpec:
    """One synthesized layer: class, channels in/out and input spatial side
    (for fc: cin input features)."""

    cls: str
    cin: int
    cout: int
    h: int

    @property
    def kind(self) -> str:
        return CLASSES[self.cls][0]

    @property
    def kernel(self) -> float:
        """The window's side, or the side of a square of its area."""
        kh, kw = kernel_hw(self.cls)
        return kh if kh == kw else math.sqrt(kh * kw)

    @property
    def stride(self) -> int:
        return CLASSES[self.cls][2]

    def out_h(self) -> int:
        if self.cls == "fc":
            return 1
        if self.cls == "gap":
            return 1
        (kh, _), (ph, _) = kernel_hw(self.cls), pad_of(self.cls)
        return (self.h + 2 * ph - kh) // self.stride + 1

    def in_shape(self) -> list[int]:
        return [1, self.cin] if self.cls == "fc" else [1, self.cin, self.h, self.h]


@dataclass(frozen=True)
class ChainSpec:
    """A chain of layers, each consuming the previous one's output ("add"
    also reads the chain's input, a residual)."""

    pattern: str
    layers: tuple[LayerSpec, ...]


@dataclass(frozen=True)
class Grid:
    name: str
    cores: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    chains: tuple[ChainSpec, ...]


DENSE_CLASSES = tuple(c for c, (kind, *_) in CLASSES.items() if kind in ("conv", "gemm"))
SIDES = (1, 7, 14, 28, 56, 112, 224)  # output sides of the synthesized maps
IMAGE_CHANNELS = 3  # the input channels of a network's first convolution (RGB)
MAX_MACS = 2e9  # the largest synthesized MAC layer (a VGG-16 conv: 1.85e9)
MAX_VECTOR_OPS = 2.6e7  # the largest synthesized vector layer


def channel_grid(lanes: int, cores: int, quick: bool, top_factor: int = 64, between: bool = True) -> list[int]:
    """Channel sizes in multiples of the target's lanes: from half a lane
    group to `top_factor` lane groups (enough for every core twice over),
    doubling, with (`between`) the size half-way up each step from one
    lane group on (3 x 2^k lane groups: 96, 192, 384 channels for 32 lanes),
    where the lanes split over the cores unevenly."""
    if quick:
        return [lanes, 4 * lanes]
    out, c = [], max(8, lanes // 2)
    while c <= top_factor * lanes:
        out.append(c)
        if between and c >= lanes and 3 * c // 2 <= top_factor * lanes:
            out.append(3 * c // 2)
        c *= 2
    return out


def _dense_specs(cls: str, chans: Sequence[int], fc_chans: Sequence[int], sides: Sequence[int]) -> list[LayerSpec]:
    """A dense class over input channels (and the image's 3) x output
    channels x output side (fc: input x output features), up to MAX_MACS."""
    _, _, s, _ = CLASSES[cls]
    kh, kw = kernel_hw(cls)
    out = []
    if cls == "fc":
        for cin in fc_chans:
            for cout in fc_chans:
                if cin * cout <= MAX_MACS / 10:
                    out.append(LayerSpec(cls, cin, cout, 1))
        return out
    for cin in (IMAGE_CHANNELS, *chans):  # a network's first convolution reads the image
        for cout in chans:
            for ho in sides:
                if ho >= 2 and ho * ho * cin * cout * kh * kw <= MAX_MACS:
                    out.append(LayerSpec(cls, cin, cout, ho * s))
    return out


def _vector_specs(cls: str, chans: Sequence[int], sides: Sequence[int]) -> list[LayerSpec]:
    """A vector-unit class (cin = cout) over channels x output side."""
    _, _, s, _ = CLASSES[cls]
    k = kernel_hw(cls)[0]
    out = []
    for c in chans:
        for ho in sides:
            if cls == "gap":
                h = ho  # the input side; the output is 1x1
                if 2 <= h <= 56 and c * h * h <= MAX_VECTOR_OPS:
                    out.append(LayerSpec(cls, c, c, h))
                continue
            if c * ho * ho * k * k > MAX_VECTOR_OPS:
                continue
            if CLASSES[cls][3] in ("MaxPool", "AveragePool"):
                if ho >= 2:
                    out.append(LayerSpec(cls, c, c, (ho - 1) * s + k - 2 * pad_of(cls)[0]))
            elif cls.startswith("dw"):
                if ho >= 2:
                    out.append(LayerSpec(cls, c, c, ho * s))
            elif cls == "concat":
                out.append(LayerSpec(cls, c // 2, c, ho))  # two halves
            else:
                out.append(LayerSpec(cls, c, c, ho))
    return out


def make_grid(target: AcceleratorTarget, quick: bool = False) -> Grid:
    """The synthesized layers and chains for a target (derived from its lane
    counts and core numbers only: the same code for every target). The core
    numbers are those the target allows: its `core_choices`, else 1..cores.

    Dense classes (convolutions, fully-connected) span input channels x
    output channels x output side, so a layer whose channels differ (a 1x1
    projection 960 -> 160) is read from records like it; vector classes
    (depthwise, pooling, element-wise) span channels x side. The operation
    count follows from those (`ops = side^2 x cin x cout x k^2` for a
    convolution): the grid covers the study's operation count x channel
    size plane with the channel asymmetry real networks have."""
    L = target.mac_lanes_out
    cores = tuple(getattr(target, "core_choices", ()) or range(1, target.cores + 1))
    if quick:
        cores = tuple(sorted({1, 2, max(1, target.cores // 2), target.cores} & set(cores)))
    chans = channel_grid(L, target.cores, quick)
    if quick:
        classes, sides, fc_chans, vec_chans = ["conv3x3s1", "fc", "relu"], (1, 4, 8), chans, chans
    else:
        classes, sides = list(CLASSES), SIDES
        fc_chans = channel_grid(L, target.cores, quick, top_factor=1024, between=False)
        vec_chans = channel_grid(L, target.cores, quick, top_factor=128)
    layers: list[LayerSpec] = []
    for cls in classes:
        specs = (_dense_specs(cls, chans, fc_chans, sides) if cls in DENSE_CLASSES
                 else _vector_specs(cls, vec_chans, sides))
        for spec in specs:
            if spec not in layers:
                layers.append(spec)
    chains = tuple(_chains(L, quick))
    return Grid("quick" if quick else "full", cores, tuple(layers), chains)


def _chains(L: int, quick: bool) -> list[ChainSpec]:
    """Chains of depth 2..4 over sizes along the usual CNN diagonal (channels
    double as the side halves) and off it (maps that fit on chip and maps
    that do not); two patterns join layers with different best core numbers
    (a wide layer and a narrow one); and the blocks deep CNNs repeat, at
    depths 6..8 (inverted residual, bottleneck, two separable convolutions,
    a VGG block, a DenseNet dense layer, two dense layers joined by their
    concatenation, a DenseNet transition)."""
    def S(cls, c, h, cout=None):
        return LayerSpec(cls, c, c if cout is None else cout, h)

    sizes = [(2 * L, 56), (4 * L, 28), (8 * L, 14), (16 * L, 7), (32 * L, 7), (2 * L, 14), (16 * L, 28)]
    if quick:
        sizes = [(L, 8)]
    out: list[ChainSpec] = []
    for c, h in sizes:
        out.append(ChainSpec("conv-relu", (S("conv3x3s1", c, h), S("relu", c, h))))
        out.append(ChainSpec("conv-add-relu", (S("conv3x3s1", c, h), S("add", c, h), S("relu", c, h))))
        out.append(ChainSpec(
            "conv1-relu-conv3-relu",
            (S("conv1x1s1", c, h), S("relu", c, h), S("conv3x3s1", c, h), S("relu", c, h)),
        ))
        if quick:
            continue
        out.append(ChainSpec("conv-relu-maxpool", (S("conv3x3s1", c, h), S("relu", c, h), S("maxpool3x3s2", c, h))))
        out.append(ChainSpec("dw-relu-conv1", (S("dw3x3s1", c, h), S("relu", c, h), S("conv1x1s1", c, h))))
        # core mismatch: a wide layer feeding a narrow one and back
        n = max(L // 2, c // 8)
        out.append(ChainSpec("wide-narrow", (S("conv1x1s1", c, h, n), S("relu", n, h), S("conv3x3s1", n, h))))
        out.append(ChainSpec("narrow-wide", (S("conv3x3s1", n, h), S("relu", n, h), S("conv1x1s1", n, h, c))))
    if not quick:
        # the blocks deep CNNs repeat, at the depths the searches fuse
        for c, h in [(L, 56), (2 * L, 28), (3 * L, 14), (5 * L, 7)]:
            e = 6 * c  # MobileNet-v2's inverted residual, expansion 6
            out.append(ChainSpec("inverted-residual", (
                S("conv1x1s1", c, h, e), S("relu", e, h), S("dw3x3s1", e, h), S("relu", e, h),
                S("conv1x1s1", e, h, c), S("add", c, h))))
        for c, h in [(2 * L, 56), (4 * L, 28), (8 * L, 14), (16 * L, 7)]:
            out.append(ChainSpec("bottleneck", (  # ResNet-50's, expansion 4
                S("conv1x1s1", 4 * c, h, c), S("relu", c, h), S("conv3x3s1", c, h), S("relu", c, h),
                S("conv1x1s1", c, h, 4 * c), S("add", 4 * c, h), S("relu", 4 * c, h))))
        for c, h in [(2 * L, 56), (4 * L, 28), (8 * L, 14), (16 * L, 7), (32 * L, 7)]:
            out.append(ChainSpec("separable", (  # MobileNet-v1's, twice
                S("dw3x3s1", c, h), S("relu", c, h), S("conv1x1s1", c, h), S("relu", c, h),
                S("dw3x3s1", c, h), S("relu", c, h), S("conv1x1s1", c, h), S("relu", c, h))))
        for c, h in [(2 * L, 56), (4 * L, 28), (8 * L, 14), (16 * L, 7)]:
            g = L  # DenseNet's dense layer, growth one lane group: its batch norms stay layers
            out.append(ChainSpec("dense-layer", (
                S("bn", c, h), S("relu", c, h), S("conv1x1s1", c, h, 4 * g), S("bn", 4 * g, h),
                S("relu", 4 * g, h), S("conv3x3s1", 4 * g, h, g), S("concat", g, h, c + g))))
        for c, h in [(2 * L, 224), (4 * L, 112), (8 * L, 56), (16 * L, 28), (16 * L, 14)]:
            out.append(ChainSpec("plain-block", (  # VGG's: large maps and weights, spilled
                S("conv3x3s1", c, h), S("relu", c, h), S("conv3x3s1", c, h), S("relu", c, h),
                S("conv3x3s1", c, h), S("relu", c, h), S("maxpool3x3s2", c, h))))
        for c, h in [(4 * L, 28), (8 * L, 14), (16 * L, 7)]:
            g = L  # two dense layers joined by the concatenation, as the searches group them
            out.append(ChainSpec("dense-join", (
                S("conv3x3s1", 4 * g, h, g), S("concat", g, h, c + g), S("bn", c + g, h), S("relu", c + g, h),
                S("conv1x1s1", c + g, h, 4 * g), S("bn", 4 * g, h), S("relu", 4 * g, h), S("conv3x3s1", 4 * g, h, g))))
        for c, h in [(8 * L, 56), (16 * L, 28), (32 * L, 14)]:
            out.append(ChainSpec("transition", (  # DenseNet's, into the next block's first batch norm
                S("bn", c, h), S("relu", c, h), S("conv1x1s1", c, h, c // 2), S("avgpool2x2s2", c // 2, h),
                S("bn", c // 2, h // 2), S("relu", c // 2, h // 2))))
        for cin, cout in [(4 * L, 32 * L), (64 * L, 32 * L), (16 * L, 4 * L)]:
            out.append(ChainSpec("fc-relu-fc", (S("fc", cin, 1, cout), S("relu", cout, 1), S("fc", cout, 1, cout))))
    return out


# -------------------------------------------------------------------------
# synthesis: ONNX -> nn through the frontend
# -------------------------------------------------------------------------


def _onnx_model(layers: Sequence[LayerSpec]):
    """An ONNX model computing the chain `layers` (one layer: a single node).
    Weights are zero initializers (only their shapes matter to the time
    account)."""
    from onnx import TensorProto, helper

    nodes, inits = [], []
    x0 = layers[0].in_shape()
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x0)]
    cur = "x"
    shape = list(x0)

    def weight(name: str, dims: list[int]):
        n = int(np.prod(dims))
        inits.append(helper.make_tensor(name, TensorProto.FLOAT, dims, vals=bytes(4 * n), raw=True))
        return name

    for i, spec in enumerate(layers):
        _, _, s, op = CLASSES[spec.cls]
        (kh, kw), (ph, pw) = kernel_hw(spec.cls), pad_of(spec.cls)
        out = f"y{i}"
        c = shape[1]
        if op == "Conv":
            dw = spec.cls.startswith("dw")
            w = weight(f"w{i}", [spec.cout, 1 if dw else c, kh, kw])
            b = weight(f"b{i}", [spec.cout])
            nodes.append(helper.make_node(
                "Conv", [cur, w, b], [out], kernel_shape=[kh, kw], strides=[s, s],
                pads=[ph, pw, ph, pw], group=c if dw else 1,
            ))
            ho = (shape[2] + 2 * ph - kh) // s + 1
            shape = [1, spec.cout, ho, ho]
        elif op == "Gemm":
            if len(shape) != 2:
                raise ValueError("fc needs a 2-D input")
            w = weight(f"w{i}", [spec.cout, c])
            b = weight(f"b{i}", [spec.cout])
            nodes.append(helper.make_node("Gemm", [cur, w, b], [out], transB=1))
            shape = [1, spec.cout]
        elif op in ("MaxPool", "AveragePool"):
            nodes.append(helper.make_node(op, [cur], [out], kernel_shape=[kh, kw], strides=[s, s],
                                          pads=[ph, pw, ph, pw]))
            ho = (shape[2] + 2 * ph - kh) // s + 1
            shape = [1, c, ho, ho]
        elif op == "GlobalAveragePool":
            nodes.append(helper.make_node("GlobalAveragePool", [cur], [out]))
            shape = [1, c, 1, 1]
        elif op == "Relu":
            nodes.append(helper.make_node("Relu", [cur], [out]))
        elif op == "Add":
            other = f"r{i}"
            inputs.append(helper.make_tensor_value_info(other, TensorProto.FLOAT, shape))
            nodes.append(helper.make_node("Add", [cur, other], [out]))
        elif op == "BatchNormalization":
            params = [weight(f"{n}{i}", [c]) for n in ("s", "b", "m", "v")]
            nodes.append(helper.make_node("BatchNormalization", [cur, *params], [out]))
        elif op == "Concat":
            other = f"r{i}"
            extra = [shape[0], spec.cout - c, *shape[2:]]
            inputs.append(helper.make_tensor_value_info(other, TensorProto.FLOAT, extra))
            nodes.append(helper.make_node("Concat", [cur, other], [out], axis=1))
            shape = [shape[0], spec.cout, *shape[2:]]
        else:  # pragma: no cover - CLASSES is closed
            raise ValueError(op)
        cur = out
    graph = helper.make_graph(
        nodes, "synth", inputs, [helper.make_tensor_value_info(cur, TensorProto.FLOAT, shape)], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def build_layers(layers: Sequence[LayerSpec]):
    """Import the synthesized chain into `nn`; returns (ctx, module, layer ops
    in program order)."""
    from dlfusion.context import make_context
    from dlfusion.frontend import import_model
    from dlfusion.grouping import LayerGraph

    ctx = make_context()
    module = import_model(_onnx_model(layers), ctx, source="<characterization>")
    graph = LayerGraph.of(module)
    return ctx, module, graph.layers


def layer_record(spec: LayerSpec, op, element_bytes: int) -> dict:
    from dlfusion.passes.annotate_layers import characteristics

    ch = characteristics(op, element_bytes)
    return {
        "class": spec.cls,
        "kind": ch["nn.kind"],
        "kernel": spec.kernel,
        "kernel_hw": list(kernel_hw(spec.cls)),
        "stride": spec.stride,
        "cin": int(ch["nn.cin"]),
        "cout": int(ch["nn.cout"]),
        "h": spec.h,
        "hw": int(ch["nn.hw"]),
        "ops": int(ch["nn.ops"]),
        "ifm_bytes": int(ch["nn.ifm_bytes"]),
        "ofm_bytes": int(ch["nn.ofm_bytes"]),
        "weight_bytes": int(ch["nn.weight_bytes"]),
    }


# -------------------------------------------------------------------------
# measuring
# -------------------------------------------------------------------------


def default_cache_dir() -> Path:
    env = os.environ.get("DLFUSION_CACHE")
    if env:
        return Path(env) / "characterization"
    return Path.home() / ".cache" / "dlfusion" / "characterization"


def table_path(target: AcceleratorTarget, cache_dir: str | Path | None = None, quick: bool = False) -> Path:
    d = Path(cache_dir) if cache_dir else default_cache_dir()
    from dlfusion.tuning.cost_model import cost_model_digest

    suffix = "-quick" if quick else ""
    return d / f"{target.name}-{target.digest}-{cost_model_digest()}{suffix}.json"


def _best(values: Sequence[float], cores: Sequence[int]) -> tuple[int, float]:
    i = min(range(len(values)), key=lambda j: (values[j], cores[j]))
    return cores[i], values[i]


def characterize(
    target: str | AcceleratorTarget,
    jobs: int = 1,
    quick: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    executor=None,
) -> dict:
    """Measure the grid of synthesized layers and chains on `target` and
    return the table (not cached: see `load_or_characterize`)."""
    from dlfusion.tuning.cost_model import cost_model_digest
    from dlfusion.tuning.measure import Measurer

    t = load_target(target) if isinstance(target, str) else target
    grid = make_grid(t, quick)
    records = table_path(t, cache_dir, quick).with_suffix(".records.jsonl") if cache_dir is not False else None
    pool = None
    if executor is None and jobs > 1:
        # one pool for the whole run (a pool per batch would re-spawn workers)
        from concurrent.futures import ProcessPoolExecutor

        pool = executor = ProcessPoolExecutor(max_workers=jobs)
    measurer = Measurer.create(t, cache=records, jobs=jobs, executor=executor)
    eb = t.element_bytes
    start = time.time()

    # build every layer and chain (cheap), then measure in batches
    single: list[tuple[dict, object]] = []
    for spec in grid.layers:
        _, _, ops = build_layers([spec])
        (op,) = ops
        single.append((layer_record(spec, op, eb), op))
    chains: list[tuple[ChainSpec, list[dict], list]] = []
    for ch in grid.chains:
        _, _, ops = build_layers(ch.layers)
        assert len(ops) == len(ch.layers)
        chains.append((ch, [layer_record(s, o, eb) for s, o in zip(ch.layers, ops)], ops))

    configs: list[tuple[list, int]] = []
    for _, op in single:
        configs += [([op], c) for c in grid.cores]
    for _, _, ops in chains:
        configs += [(list(ops), c) for c in grid.cores]
        for op in ops:
            configs += [([op], c) for c in grid.cores]

    results: list[tuple[float, int]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(configs), desc=f"characterizing {t.name}", unit="kernel", dynamic_ncols=True)
    batch = 64 * max(1, jobs)
    try:
        for i in range(0, len(configs), batch):
            part = configs[i : i + batch]
            results += measurer.details(part)
            if bar is not None:
                bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown()

    n = len(grid.cores)
    cores = list(grid.cores)
    pos = 0

    def take() -> tuple[list[float], list[int]]:
        nonlocal pos
        part = results[pos : pos + n]
        pos += n
        return [lat for lat, _ in part], [busy for _, busy in part]

    layers_out = []
    for rec, _ in single:
        lat, busy = take()
        rec["latency_us"] = [round(x, 4) for x in lat]
        rec["active"] = busy
        rec["best_cores"] = _best(lat, cores)[0]
        layers_out.append(rec)
    chains_out = []
    for ch, recs, ops in chains:
        fused, _ = take()
        per = []
        for rec in recs:
            lat, busy = take()
            rec = dict(rec, latency_us=[round(x, 4) for x in lat], active=busy, best_cores=_best(lat, cores)[0])
            per.append(rec)
        unfused = [sum(r["latency_us"][i] for r in per) for i in range(n)]
        best_each = [_best(r["latency_us"], cores) for r in per]
        bc, bf = _best(fused, cores)
        bests = [b for b, _ in best_each]
        chains_out.append({
            "pattern": ch.pattern,
            "depth": len(recs),
            "layers": per,
            "fused_us": [round(x, 4) for x in fused],
            "unfused_us": [round(x, 4) for x in unfused],
            "best_each_us": round(sum(v for _, v in best_each), 4),
            "best_each_cores": bests,
            "best_fused_us": round(bf, 4),
            "best_fused_cores": bc,
            "mismatch": round(math.log2(max(bests) / min(bests)), 4),
        })
    return {
        "version": TABLE_VERSION,
        "target": t.name,
        "target_digest": t.digest,
        "cost_model": cost_model_digest(),
        "grid": grid.name,
        "cores": cores,
        "machine": machine_of(t),
        "layers": layers_out,
        "chains": chains_out,
        "seconds": round(time.time() - start, 2),
        "measurements": measurer.measurements,
    }


def machine_of(t: AcceleratorTarget) -> dict:
    """The target-file figures the heuristic may use beside the table."""
    return {
        "cores": t.cores,
        "mac_lanes": t.mac_lanes_out,
        "mac_lanes_in": t.mac_lanes_in,
        "vector_lanes": t.vector_lanes,
        "nram_bytes": t.nram_bytes,
        "wram_bytes": t.wram_bytes,
        "element_bytes": t.element_bytes,
    }


def check_table(doc: object, where: str) -> dict:
    """Validate a table read from disk (a one-line error otherwise)."""
    if not isinstance(doc, dict):
        raise DlfusionError("the characterization table is not a JSON object", where=where)
    if doc.get("version") != TABLE_VERSION:
        raise DlfusionError(
            f"characterization table version {doc.get('version')!r}, expected {TABLE_VERSION}",
            where=where, hint="run dlfusion-characterize again",
        )
    for key in ("target", "target_digest", "cost_model", "cores", "machine", "layers", "chains"):
        if key not in doc:
            raise DlfusionError(f"the characterization table lacks '{key}'", where=where,
                                hint="run dlfusion-characterize again")
    n = len(doc["cores"])
    for rec in doc["layers"]:
        if not isinstance(rec, dict) or len(rec.get("latency_us", ())) != n:
            raise DlfusionError("malformed layer record in the characterization table", where=where,
                                hint="run dlfusion-characterize again")
    return doc


def load_table(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise DlfusionError(f"cannot read the characterization table: {exc.strerror}", where=str(path)) from None
    except json.JSONDecodeError as exc:
        raise DlfusionError(f"the characterization table is not JSON: {exc.msg} at line {exc.lineno}",
                            where=str(path), hint="delete it and run dlfusion-characterize again") from None
    return check_table(doc, str(path))


def is_current(doc: dict, target: AcceleratorTarget) -> bool:
    """Whether a table was measured on this target file with this lowering
    and simulator (see `dlfusion.tuning.cost_model`)."""
    from dlfusion.tuning.cost_model import cost_model_digest

    return doc.get("target_digest") == target.digest and doc.get("cost_model") == cost_model_digest()


def save_table(doc: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def load_or_characterize(
    target: str | AcceleratorTarget,
    cache_dir: str | Path | None = None,
    jobs: int = 1,
    quick: bool = False,
    progress: bool = False,
    rebuild: bool = False,
) -> tuple[dict, Path, bool]:
    """The cached table of `target` (keyed by the target file's digest), or a
    fresh characterization written to the cache. Returns (table, path,
    whether it was measured now)."""
    t = load_target(target) if isinstance(target, str) else target
    path = table_path(t, cache_dir, quick)
    if path.exists() and not rebuild:
        try:
            doc = load_table(path)
            if is_current(doc, t):
                return doc, path, False
        except DlfusionError as exc:
            import sys

            print(f"dlfusion: {exc}; measuring the table again", file=sys.stderr)
    doc = characterize(t, jobs=jobs, quick=quick, cache_dir=path.parent, progress=progress)
    save_table(doc, path)
    return doc, path, True


def find_table(target: AcceleratorTarget, cache_dir: str | Path | None = None) -> Path | None:
    """The cached full table of a target if there is one, else the table
    shipped with the package for exactly this target file and cost model
    (`dlfusion.tuning.tables`), else the cached quick one."""
    from dlfusion.tuning.tables import packaged_table

    def usable(path: Path) -> bool:  # an older table version or target in the cache is passed over
        try:
            return path.exists() and is_current(load_table(path), target)
        except DlfusionError:
            return False

    full = table_path(target, cache_dir, False)
    if usable(full):
        return full
    shipped = packaged_table(target)
    if shipped is not None:
        return shipped
    quick = table_path(target, cache_dir, True)
    return quick if quick.exists() else None


# -------------------------------------------------------------------------
# plots
# -------------------------------------------------------------------------


def plot_table(doc: dict, out_dir: str | Path, dpi: int = 90) -> list[Path]:
    """The study's findings for one target, as PNGs in `out_dir`:

    - `<target>-latency-vs-cores.png`: latency against core number per layer
      class (one panel per class, one curve per operation count at a middle
      channel size);
    - `<target>-best-cores.png`: the best core number as a map over operation
      count x channel size, one panel per class;
    - `<target>-fusion-gain.png`: the gain of fusion (unfused on each layer's
      best core number / fused on the group's best) against group depth, coloured
      by core mismatch.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = doc["target"]
    cores = doc["cores"]
    by_class: dict[str, list[dict]] = {}
    for r in doc["layers"]:
        # the study's plane: a convolution's input channels equal its
        # output channels (the grid's other pairs serve the heuristic)
        if r["class"] == "fc" or r["cin"] == r["cout"]:
            by_class.setdefault(r["class"], []).append(r)
    classes = [c for c in CLASSES if c in by_class]
    paths = []

    # 1. latency vs cores
    ncol = 4
    nrow = math.ceil(len(classes) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, cls in zip(axes.flat, classes):
        recs = by_class[cls]
        chans = sorted({r["cout"] for r in recs})
        mid = chans[len(chans) // 2]
        sel = sorted((r for r in recs if r["cout"] == mid), key=lambda r: r["ops"])
        if len(sel) < 2:
            sel = sorted(recs, key=lambda r: r["ops"])[:: max(1, len(recs) // 4)]
        for r in sel:
            lat = np.array(r["latency_us"])
            ax.plot(cores, lat / lat.min(), marker=".", ms=3, lw=1, label=f"{r['ops']:.1e}, C={r['cout']}")
        ax.set_title(cls, fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=5, title="ops, channels", title_fontsize=5)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    fig.supxlabel("core number")
    fig.supylabel("latency / best latency")
    fig.suptitle(f"{name}: latency against core number per layer class", fontsize=10)
    fig.tight_layout()
    p = out_dir / f"{name}-latency-vs-cores.png"
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    paths.append(p)

    # 2. best core number over ops x channels
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    maxc = max(cores)
    for ax, cls in zip(axes.flat, classes):
        recs = by_class[cls]
        x = np.log10([r["ops"] for r in recs])
        y = np.log2([r["cout"] for r in recs])
        b = np.array([r["best_cores"] for r in recs])
        sc = ax.scatter(x, y, c=np.log2(b), cmap="viridis", vmin=0, vmax=math.log2(maxc), s=60, marker="s")
        for xi, yi, bi in zip(x, y, b):
            ax.annotate(str(bi), (xi, yi), fontsize=5, ha="center", va="center", color="white")
        ax.set_title(cls, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    fig.supxlabel("log10 operation count (MACs or vector ops)")
    fig.supylabel("log2 channel size")
    fig.suptitle(f"{name}: best core number over operation count x channel size", fontsize=10)
    fig.tight_layout()
    cb = fig.colorbar(sc, ax=axes, shrink=0.6)
    cb.set_label("log2 best core number", fontsize=8)
    p = out_dir / f"{name}-best-cores.png"
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    paths.append(p)

    # 3. fusion gain
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ch = doc["chains"]
    if ch:
        depth = np.array([c["depth"] for c in ch], float)
        gain = np.array([c["best_each_us"] / c["best_fused_us"] for c in ch])
        mism = np.array([c["mismatch"] for c in ch])
        jitter = (np.arange(len(ch)) % 5 - 2) * 0.06
        sc = axes[0].scatter(depth + jitter, gain, c=mism, cmap="plasma", s=18)
        axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
        axes[0].set_xlabel("group depth (layers)")
        axes[0].set_ylabel("unfused (each layer best) / fused (group best)")
        axes[0].set_title("fusion gain against depth", fontsize=9)
        cb = fig.colorbar(sc, ax=axes[0])
        cb.set_label("core mismatch (log2 max/min best cores)", fontsize=7)
        # gain at a fixed core number against the working set
        ws = []
        g2 = []
        for c in ch:
            i = cores.index(c["best_fused_cores"])
            ws.append(sum(r["ifm_bytes"] + r["ofm_bytes"] for r in c["layers"]) / doc["machine"]["nram_bytes"])
            g2.append(c["unfused_us"][i] / c["fused_us"][i])
        axes[1].scatter(ws, g2, c=depth, cmap="viridis", s=18)
        axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("feature-map bytes of the group / NRAM per core")
        axes[1].set_ylabel("unfused / fused (same core number)")
        axes[1].set_title("fusion gain against the on-chip working set", fontsize=9)
    fig.suptitle(f"{name}: the gain of fusion", fontsize=10)
    fig.tight_layout()
    p = out_dir / f"{name}-fusion-gain.png"
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    paths.append(p)
    return paths
