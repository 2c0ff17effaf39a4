"""dlfusion model zoo: classic ImageNet CNNs as ONNX models with seeded weights.

>>> from dlfusion import zoo
>>> model = zoo.build("resnet50", seed=0)          # onnx.ModelProto
>>> zoo.count_macs(model)                           # ~4.09e9

Architectures follow torchvision (eval mode, 1000 classes); MobileNet v1,
which torchvision lacks, follows the paper.  See :mod:`dlfusion.zoo.registry`
for the published reference figures and :mod:`dlfusion.zoo.builder` for the
naming and weight-initialisation conventions.  Command line: ``dlfusion-zoo``
(:func:`dlfusion.zoo.cli.main`).
"""

from .builder import IR_VERSION, OPSET, GraphBuilder
from .registry import (
    INPUT_SHAPES,
    MODELS,
    PUBLISHED_MACS,
    PUBLISHED_PARAMS,
    build,
    count_macs,
    count_params,
)

__all__ = [
    "GraphBuilder",
    "INPUT_SHAPES",
    "IR_VERSION",
    "MODELS",
    "OPSET",
    "PUBLISHED_MACS",
    "PUBLISHED_PARAMS",
    "build",
    "count_macs",
    "count_params",
]
