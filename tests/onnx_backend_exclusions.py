"""ONNX backend node tests excluded from the conformance run, with the reason.

Every entry is a case of an operator dlfusion supports (see `OPERATOR_TESTS` in
`tests/test_onnx_backend.py`) that uses a feature dlfusion does not compile: a
data type other than float32, a 3-D window, an attribute or output that the
`nn` dialect has no form for, training mode, or (for the `*_expanded` cases,
which spell an operator as its ONNX function body) an operator outside the
supported set. None of them is a bug: `test_excluded_cases_fail_clearly` checks
that each one fails with the frontend's one-line `DlfusionError` containing the
fragment given here, so an exclusion that starts to pass, or that fails for
another reason, is noticed.

    EXCLUSIONS[case name] = (reason, fragment of the expected error message)
"""

from __future__ import annotations

EXCLUSIONS: dict[str, tuple[str, str]] = {}


def _exclude(reason: str, fragment: str, *names: str) -> None:
    for name in names:
        assert name not in EXCLUSIONS, name
        EXCLUSIONS[name] = (reason, fragment)


# -- data types ------------------------------------------------------------------
# dlfusion compiles float32 feature maps; a graph input of another element type
# is accepted only where it carries a compile-time value (shape, axes, pads, ...).

for _dtype, _names in {
    "INT8": (
        "test_add_int8", "test_sub_int8", "test_mul_int8", "test_div_int8",
        "test_clip_default_int8_inbounds", "test_clip_default_int8_inbounds_expanded",
        "test_clip_default_int8_max", "test_clip_default_int8_max_expanded",
        "test_clip_default_int8_min", "test_clip_default_int8_min_expanded",
    ),
    "INT16": ("test_add_int16", "test_sub_int16", "test_mul_int16", "test_div_int16"),
    "INT32": ("test_div_int32_trunc", "test_edge_pad", "test_reflect_pad"),
    "UINT8": (
        "test_add_uint8", "test_sub_uint8", "test_mul_uint8", "test_div_uint8",
        "test_maxpool_2d_uint8",
    ),
    "UINT16": ("test_add_uint16", "test_sub_uint16", "test_mul_uint16", "test_div_uint16"),
    "UINT32": ("test_add_uint32", "test_sub_uint32", "test_mul_uint32", "test_div_uint32"),
    "UINT64": ("test_add_uint64", "test_sub_uint64", "test_mul_uint64", "test_div_uint64"),
    "DOUBLE": ("test_cast_DOUBLE_to_FLOAT", "test_cast_DOUBLE_to_FLOAT16"),
    "FLOAT16": (
        "test_cast_FLOAT16_to_DOUBLE", "test_cast_FLOAT16_to_FLOAT",
        "test_cast_FLOAT16_to_FLOAT4E2M1", "test_cast_FLOAT16_to_FLOAT8E4M3FN",
        "test_cast_FLOAT16_to_FLOAT8E4M3FNUZ", "test_cast_FLOAT16_to_FLOAT8E5M2",
        "test_cast_FLOAT16_to_FLOAT8E5M2FNUZ", "test_cast_FLOAT16_to_INT2",
        "test_cast_FLOAT16_to_INT4", "test_cast_FLOAT16_to_UINT2", "test_cast_FLOAT16_to_UINT4",
        "test_cast_e8m0_FLOAT16_to_FLOAT8E8M0",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FN",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FNUZ",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2FNUZ",
    ),
    "BFLOAT16": ("test_cast_BFLOAT16_to_FLOAT",),
    "FLOAT4E2M1": ("test_cast_FLOAT4E2M1_to_FLOAT", "test_cast_FLOAT4E2M1_to_FLOAT16"),
    "FLOAT8E4M3FN": ("test_cast_FLOAT8E4M3FN_to_FLOAT", "test_cast_FLOAT8E4M3FN_to_FLOAT16"),
    "FLOAT8E4M3FNUZ": ("test_cast_FLOAT8E4M3FNUZ_to_FLOAT", "test_cast_FLOAT8E4M3FNUZ_to_FLOAT16"),
    "FLOAT8E5M2": ("test_cast_FLOAT8E5M2_to_FLOAT", "test_cast_FLOAT8E5M2_to_FLOAT16"),
    "FLOAT8E5M2FNUZ": ("test_cast_FLOAT8E5M2FNUZ_to_FLOAT", "test_cast_FLOAT8E5M2FNUZ_to_FLOAT16"),
    "FLOAT8E8M0": ("test_cast_e8m0_FLOAT8E8M0_to_FLOAT", "test_cast_e8m0_FLOAT8E8M0_to_FLOAT16"),
    "INT2": ("test_cast_INT2_to_FLOAT", "test_cast_INT2_to_FLOAT16", "test_cast_INT2_to_INT8"),
    "INT4": ("test_cast_INT4_to_FLOAT", "test_cast_INT4_to_FLOAT16", "test_cast_INT4_to_INT8"),
    "UINT2": ("test_cast_UINT2_to_FLOAT", "test_cast_UINT2_to_FLOAT16", "test_cast_UINT2_to_UINT8"),
    "UINT4": ("test_cast_UINT4_to_FLOAT", "test_cast_UINT4_to_FLOAT16", "test_cast_UINT4_to_UINT8"),
}.items():
    _exclude(f"data type {_dtype} (dlfusion compiles float32 feature maps)",
             f"has element type {_dtype} and is used as data", *_names)

_exclude("data type INT32 (and Pad mode 'wrap' is not supported either)",
         "has element type INT32 and is used as data", "test_wrap_pad")

for _dtype, _names in {
    "DOUBLE": ("test_cast_FLOAT_to_DOUBLE",),
    "FLOAT16": ("test_cast_FLOAT_to_FLOAT16",),
    "BFLOAT16": ("test_cast_FLOAT_to_BFLOAT16",),
    "FLOAT4E2M1": ("test_cast_FLOAT_to_FLOAT4E2M1",),
    "FLOAT8E4M3FN": ("test_cast_FLOAT_to_FLOAT8E4M3FN", "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN"),
    "FLOAT8E4M3FNUZ": (
        "test_cast_FLOAT_to_FLOAT8E4M3FNUZ", "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FNUZ",
    ),
    "FLOAT8E5M2": ("test_cast_FLOAT_to_FLOAT8E5M2", "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2"),
    "FLOAT8E5M2FNUZ": (
        "test_cast_FLOAT_to_FLOAT8E5M2FNUZ", "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2FNUZ",
    ),
    "FLOAT8E8M0": ("test_cast_e8m0_FLOAT_to_FLOAT8E8M0",),
    "INT2": ("test_cast_FLOAT_to_INT2",),
    "INT4": ("test_cast_FLOAT_to_INT4",),
    "UINT2": ("test_cast_FLOAT_to_UINT2",),
    "UINT4": ("test_cast_FLOAT_to_UINT4",),
}.items():
    _exclude(f"data type {_dtype}: a float32 feature map cast to {_dtype}",
             f"Cast of a float32 feature map to {_dtype} is not supported", *_names)

_exclude("data type: sequence input (dlfusion compiles tensors)", "is a sequence, not a tensor",
         "test_identity_sequence")
_exclude("data type: optional(sequence) input (dlfusion compiles tensors)",
         "is an optional, not a tensor", "test_identity_opt")

# -- windows and attributes ------------------------------------------------------------

_exclude("3-D (NCDHW) pooling: dlfusion compiles 1-D and 2-D windows",
         "rank-5 input (3-D spatial) is not supported",
         "test_averagepool_3d_default",
         "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False",
         "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True",
         "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False",
         "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True",
         "test_averagepool_3d_dilations_small",
         "test_maxpool_3d_default",
         "test_maxpool_3d_dilations",
         "test_maxpool_3d_dilations_use_ref_impl",
         "test_maxpool_3d_dilations_use_ref_impl_large")
_exclude("unsupported attribute: AveragePool dilations (nn.avg_pool has none)",
         "AveragePool with dilations is not supported", "test_averagepool_2d_dilations")
_exclude("unsupported output: MaxPool Indices (argmax; storage_order)",
         "output(s) z of MaxPool are not supported",
         "test_maxpool_with_argmax_2d_precomputed_pads",
         "test_maxpool_with_argmax_2d_precomputed_strides")

# -- training mode -------------------------------------------------------------------

_exclude("training mode: BatchNormalization training_mode=1 (batch statistics)",
         "BatchNormalization in training mode is not supported",
         "test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode")
_exclude("training mode: random Dropout (training_mode=true, ratio > 0)",
         "Dropout in training mode",
         "test_training_dropout", "test_training_dropout_default",
         "test_training_dropout_default_mask", "test_training_dropout_mask")

# -- function-expanded cases that use operators outside the supported set ---------------

_exclude("expanded form uses unsupported operators Less, Where",
         "unsupported operator Less",
         "test_clip_default_max_expanded", "test_clip_default_min_expanded",
         "test_clip_example_expanded", "test_clip_expanded", "test_clip_inbounds_expanded",
         "test_clip_min_greater_than_max_expanded", "test_clip_outbounds_expanded",
         "test_clip_splitbounds_expanded")
_exclude("expanded form uses unsupported operators CastLike, Less, Where",
         "unsupported operator CastLike",
         "test_leakyrelu_default_expanded", "test_leakyrelu_example_expanded",
         "test_leakyrelu_expanded")
_exclude("expanded form uses unsupported operators CastLike, Min, Max",
         "unsupported operator CastLike",
         "test_hardsigmoid_default_expanded_ver18", "test_hardsigmoid_example_expanded_ver18",
         "test_hardsigmoid_expanded_ver18")
_exclude("expanded form uses unsupported operators CastLike, Max",
         "unsupported operator CastLike", "test_relu_expanded_ver18")
_exclude("expanded form uses unsupported operators ReduceMax, Exp, ReduceSum",
         "unsupported operator ReduceMax",
         *(f"test_softmax_{case}_expanded{ver}"
           for case in ("axis_0", "axis_1", "axis_2", "default_axis", "example",
                        "large_number", "negative_axis")
           for ver in ("", "_ver18")))
