"""The heuristic's on-chip call (`Characterization.fits`) against the
lowering's: for groups where the two used to disagree, the model must say
"on chip" at exactly the core numbers where `lower-to-accel` keeps the group
on chip. The lowering is the ground truth: the test lowers each group and
records whether it took the spilled path."""

from __future__ import annotations

import numpy as np
import pytest

from dlfusion.context import make_context
from dlfusion.frontend import import_model
from dlfusion.grouping import LayerGraph, wrap_layers
from dlfusion.passes import lower_to_accel as L
from dlfusion.targets import load_target
from dlfusion.tuning import heuristic as H
from dlfusion.tuning.characterize import load_table
from dlfusion.tuning.tables import packaged_table
from dlfusion.zoo import GraphBuilder

MLU100 = load_target("mlu100")


@pytest.fixture(scope="module")
def model():
    return H.Characterization(load_table(packaged_table(MLU100)))


def lowered_on_chip(make, cores: int, monkeypatch) -> bool:
    """Whether lower-to-accel keeps all the layers of the module `make()`
    imports, as one group on `cores` cores, on chip."""
    spilled = []
    orig = L.Lowering.lower_spilled

    def record(self, name, n, layers):
        spilled.append(name)
        return orig(self, name, n, layers)

    monkeypatch.setattr(L.Lowering, "lower_spilled", record)
    ctx, module = make()
    wrap_layers(LayerGraph.of(module).layers, "k", cores)
    L.LowerToAccelPass(target="mlu100").apply(ctx, module)
    monkeypatch.setattr(L.Lowering, "lower_spilled", orig)
    return not spilled


def build(shape, body):
    """A function that builds and imports the model `body` writes."""
    def make():
        b = GraphBuilder("g", shape, seed=0)
        y = body(b)
        ctx = make_context()
        return ctx, import_model(b.build(y, num_classes=0), ctx)
    return make


def check(model, make, monkeypatch):
    graph = LayerGraph.of(make()[1])
    infos = H.layer_infos(graph, MLU100.element_bytes)
    view = H.GroupView.of(graph, infos, [model.terms(i) for i in infos], range(len(infos)))
    said = [bool(x) for x in model.fits(view)]
    real = [lowered_on_chip(make, int(n), monkeypatch) for n in model.cores]
    assert said == real, f"model {said} lowering {real} at cores {list(model.cores)}"
    return real


def test_batch_norm_works_in_place(model, monkeypatch):
    """Batch norm then ReLU on a 56x56 map of 192 channels: both write over
    their input, so the pair fits from 4 cores up."""
    real = check(model, build((1, 192, 56, 56), lambda b: b.relu(b.bn("input", "bn"), "relu")), monkeypatch)
    assert real == [False, False, True, True, True, True]


def test_residual_add_of_differently_split_operands_spills(model, monkeypatch):
    """A basic residual block that starts with the ReLU its shortcut reads:
    from 8 cores up the convolution's channel ranges (MAC lanes) and the
    ReLU's (vector lanes) differ, and the add cannot be kept on chip."""
    def body(b):
        x = b.relu("input", "r0")
        y = b.relu(b.conv(x, "c1", 256, 3, padding=1), "r1")
        y = b.conv(y, "c2", 256, 3, padding=1)
        return b.relu(b.add(y, x, "add"), "r2")

    real = check(model, build((1, 256, 14, 14), body), monkeypatch)
    assert True in real and False in real


def test_gather_selection_matrix_counts_in_wram(model, monkeypatch):
    """A 1x1 convolution reading a wide map computed in the group gathers
    it with a selection matrix of all channels x the producer's range: at
    one core that alone passes WRAM."""
    def body(b):
        return b.relu(b.conv(b.relu("input", "r0"), "c1", 128, 1), "r1")

    real = check(model, build((1, 896, 7, 7), body), monkeypatch)
    assert real[0] is False and True in real


def test_channels_past_the_grid_count_as_work(model):
    """A dense layer with more input channels than the grid's largest reads
    the largest's line with the extra channels as spatial work."""
    recs = [r for r in model.table["layers"] if r["class"] == "conv1x1s1"]
    top = max(r["cin"] for r in recs)
    rec = max((r for r in recs if r["cin"] == top and r["hw"] == 49), key=lambda r: r["cout"])
    info = model._info_of_record(rec)
    wide = model._info_of_record(rec)
    wide.cin, wide.ops, wide.ifm, wide.wbytes = 2 * info.cin, 2 * info.ops, 2 * info.ifm, 2 * info.wbytes
    more = model._info_of_record(rec)
    more.ops = 2 * info.ops  # the same channels, twice the work per channel pair
    assert np.all(model.curve(wide) >= model.curve(info))
    assert model.curve(wide)[0] > 1.5 * model.curve(info)[0]  # one core: no floor hides the work
    np.testing.assert_allclose(model.curve(wide), model.curve(more))


def test_layers_are_read_from_the_class_of_their_window(model):
    """A layer is read from the characterized class of its stride (how much
    input a position reads), then its window: Inception's 1x7 and 7x1 from
    the 1x7 class, a 5x5 from the 3x3 of its stride, ResNet's strided 1x1
    shortcut, stride-1 and average pools from their own classes."""
    def body(b):
        x = b.conv("input", "c17", 32, (1, 7), padding=(0, 3))
        x = b.conv(x, "c71", 32, (7, 1), padding=(3, 0))
        x = b.conv(x, "c55", 32, 5, padding=2)
        x = b.conv(x, "c11s2", 64, 1, stride=2)
        x = b.maxpool(x, "mp", 3, 1, padding=1)
        x = b.avgpool(x, "ap", 2, 2)
        return b.maxpool(x, "mp2", 3, 2)

    graph = LayerGraph.of(build((1, 32, 32, 32), body)()[1])
    infos = H.layer_infos(graph, MLU100.element_bytes)
    got = [H.table_class(i, model.classes) for i in infos]
    assert got == ["conv1x7s1", "conv1x7s1", "conv3x3s1", "conv1x1s2", "maxpool3x3s1", "avgpool2x2s2",
                   "maxpool3x3s2"]
    assert infos[0].padding() == (0.0, 3.0, 0.0, 3.0) and infos[0].grow(32) == pytest.approx(38 / 32)
