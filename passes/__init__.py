"""dlfusion's passes (installed as `dlfusion.passes`).

`get_all_passes()` maps each pass name to a factory that imports its module
lazily, in the style of xDSL's own registry.
"""

from collections.abc import Callable

from xdsl.passes import ModulePass


def _fold_batchnorm():
    from dlfusion.passes.fold_batchnorm import FoldBatchNormPass

    return FoldBatchNormPass


def _canonicalize():
    from dlfusion.passes.canonicalize import CanonicalizePass

    return CanonicalizePass


def _annotate_layers():
    from dlfusion.passes.annotate_layers import AnnotateLayersPass

    return AnnotateLayersPass


def _lower_to_accel():
    from dlfusion.passes.lower_to_accel import LowerToAccelPass

    return LowerToAccelPass


def _fuse_layers():
    from dlfusion.passes.fuse_layers import FuseLayersPass

    return FuseLayersPass


def _assign_cores():
    from dlfusion.passes.assign_cores import AssignCoresPass

    return AssignCoresPass


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    return {
        "fold-batchnorm": _fold_batchnorm,
        "nn-canonicalize": _canonicalize,
        "lower-to-accel": _lower_to_accel,
        "annotate-layers": _annotate_layers,
        "fuse-layers": _fuse_layers,
        "assign-cores": _assign_cores,
    }
