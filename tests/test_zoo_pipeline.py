"""Every zoo model through the whole foundation: import, verify, round trip,
and the nn interpreter against onnxruntime, with and without fold-batchnorm."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from dlfusion import zoo
from dlfusion.context import make_context
from dlfusion.frontend import import_model
from dlfusion.interpreter import random_inputs, run_module
from dlfusion.ir_io import parse_module, print_module
from dlfusion.passes.fold_batchnorm import FoldBatchNormPass

MODELS = list(zoo.MODELS)
# blobs of the large models are hundreds of MB of hex: round-trip those elided
SMALL = {"mobilenet_v1", "mobilenet_v2", "squeezenet1_0", "resnet18", "googlenet"}


@pytest.fixture(scope="module", params=MODELS)
def zoo_case(request):
    model = zoo.build(request.param)
    ctx = make_context()
    module = import_model(model, ctx)
    inputs = random_inputs(module, seed=1)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
    return request.param, model, ctx, module, inputs, reference


def assert_close(got: dict, reference: dict):
    assert got.keys() == reference.keys()
    for name, ref in reference.items():
        assert got[name].shape == ref.shape, name
        scale = float(np.max(np.abs(ref)))
        err = float(np.max(np.abs(got[name] - ref)))
        assert err <= 1e-4 * scale + 1e-6, f"{name}: max abs error {err:.3g}, max |ref| {scale:.3g}"


def test_matches_onnxruntime(zoo_case):
    _, _, ctx, module, inputs, reference = zoo_case
    assert_close(run_module(module, ctx, inputs), reference)


def test_fold_batchnorm_matches_onnxruntime(zoo_case):
    _, _, ctx, module, inputs, reference = zoo_case
    folded = module.clone()
    FoldBatchNormPass().apply(ctx, folded)
    folded.verify()
    has_bn = any(op.name == "nn.batch_norm" for op in module.walk())
    if has_bn:
        remaining = sum(op.name == "nn.batch_norm" for op in folded.walk())
        assert remaining < sum(op.name == "nn.batch_norm" for op in module.walk())
    assert_close(run_module(folded, ctx, inputs), reference)


def test_round_trip(zoo_case):
    name, _, ctx, module, inputs, reference = zoo_case
    text = print_module(module, ctx)
    again = parse_module(text, ctx)
    assert print_module(again, ctx) == text
    if name in SMALL:
        blob_text = print_module(module, ctx, emit_weights=True)
        fresh = make_context()
        parsed = parse_module(blob_text, fresh)
        assert print_module(parsed, fresh, emit_weights=True) == blob_text
        assert_close(run_module(parsed, fresh, inputs), reference)
