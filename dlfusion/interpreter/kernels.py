"""Pure numpy implementations of the `nn` dialect's layers.

Every kernel takes and returns numpy arrays; float32 in, float32 out (scalar
parameters are cast to float32 first so that numpy never promotes to float64).
Window operations are vectorized with `sliding_window_view`: convolution is
im2col + one (batched, for groups) matrix product in float32 BLAS, as
onnxruntime does; pooling reduces over the window axes of a strided view.

The semantics are ONNX's (see each op's docstring in `dlfusion.dialects.nn`):

* `pads` of 2-D windows are [top, left, bottom, right];
* max pooling pads with -inf; average pooling divides by the number of window
  elements inside the input (`count_include_pad=0`) or inside the explicitly
  padded input (`count_include_pad=1`); the extra room that `ceil_mode` adds
  past the end padding is never counted;
* LRN sums squares over channels [c - floor((size-1)/2), c + ceil((size-1)/2)].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

F32 = np.float32


def _f(v: float) -> np.float32:
    return F32(v)


# --------------------------------------------------------------------------
# element-wise
# --------------------------------------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _f(0.0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) without overflow for large |x|
    e = np.exp(-np.abs(x))
    pos = _f(1.0) / (_f(1.0) + e)
    return np.where(x >= 0, pos, e * pos).astype(x.dtype, copy=False)


def hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(_f(alpha) * x + _f(beta), _f(0.0), _f(1.0))


def hard_swish(x: np.ndarray) -> np.ndarray:
    return x * hard_sigmoid(x, 1.0 / 6.0, 0.5)


def leaky_relu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x >= 0, x, _f(alpha) * x)


def clip(x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    if lo is None and hi is None:
        return x.copy()
    return np.clip(x, None if lo is None else _f(lo), None if hi is None else _f(hi))


def add(a, b):
    return np.add(a, b)


def sub(a, b):
    return np.subtract(a, b)


def mul(a, b):
    return np.multiply(a, b)


def div(a, b):
    return np.divide(a, b)


# --------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------


def _taps(
    xp: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_hw: tuple[int, int],
):
    """For each kernel position (i, j): the (N, C, OH, OW) strided view of the
    (already padded) NCHW array that this tap reads."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    oh, ow = out_hw
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            yield i, j, xp[:, :, r : r + (oh - 1) * sh + 1 : sh, c : c + (ow - 1) * sw + 1 : sw]


def _windows(
    xp: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """A (N, C, OH, OW, KH, KW) view of the (already padded) NCHW array."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = sliding_window_view(xp, (eh, ew), axis=(2, 3))
    oh, ow = out_hw
    return v[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, ::dh, ::dw]


def _pad_hw(x: np.ndarray, top: int, left: int, bottom: int, right: int, value: float) -> np.ndarray:
    if not (top or left or bottom or right):
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[:, :, top : top + h, left : left + w] = x
    return out


def conv_out_dim(size: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    dilations: Sequence[int] = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """NCHW x OIHW convolution; `pads` = [top, left, bottom, right].

    groups == 1: im2col (one copy of the windows as a [C*KH*KW, N*OH*OW]
    matrix; none for an unpadded 1x1) and one float32 BLAS product.
    Depthwise (one input channel per group): multiply-accumulate of the KH*KW
    shifted views, vectorized over all channels. Other grouped convolutions:
    im2col with a group axis and one batched matmul over the groups.
    """
    n, c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    g = groups
    cog = co // g
    oh = conv_out_dim(h, kh, strides[0], pads[0], pads[2], dilations[0])
    ow = conv_out_dim(wd, kw, strides[1], pads[1], pads[3], dilations[1])
    xp = _pad_hw(x, pads[0], pads[1], pads[2], pads[3], 0.0)
    k = cig * kh * kw
    p = n * oh * ow

    if cig == 1 and g > 1:
        # depthwise (with any channel multiplier): y[n, g, m] += x_tap[n, g] * w[g, m, i, j]
        wg = w.reshape(g, cog, kh, kw)
        y = np.zeros((n, g, cog, oh, ow), dtype=x.dtype)
        for i, j, tap in _taps(xp, (kh, kw), strides, dilations, (oh, ow)):
            y += tap[:, :, None] * wg[None, :, :, i, j, None, None]
        y = y.reshape(n, co, oh, ow)
    else:
        if kh == kw == 1:
            cols = xp[:, :, :: strides[0], :: strides[1]][:, :, :oh, :ow]  # n c oh ow
            cols = cols.reshape(n, g, cig, 1, 1, oh, ow)
        else:
            v = _windows(xp, (kh, kw), strides, dilations, (oh, ow))  # n c oh ow kh kw
            cols = v.reshape(n, g, cig, oh, ow, kh, kw).transpose(0, 1, 2, 5, 6, 3, 4)
        # -> (g, k, n * P)
        if n == 1:
            cols = cols.reshape(g, k, p)
        else:
            cols = cols.transpose(1, 2, 3, 4, 0, 5, 6).reshape(g, k, p)
        wg = w.reshape(g, cog, k)
        if g == 1:
            y = np.matmul(wg[0], cols[0])[None]  # one BLAS call
        else:
            y = np.matmul(wg, cols)  # (g, cog, n * P), batched over the groups
        y = y.reshape(co, n, oh, ow)
        y = y[None] if n == 1 else y.transpose(1, 0, 2, 3)
        y = y.reshape(n, co, oh, ow)
    if b is not None:
        y = y + b.reshape(1, co, 1, 1)
    return np.ascontiguousarray(y, dtype=x.dtype)


def pool_out_dim(size: int, k: int, s: int, p0: int, p1: int, d: int, ceil_mode: bool) -> int:
    eff = d * (k - 1) + 1
    if not ceil_mode:
        return (size + p0 + p1 - eff) // s + 1
    out = -(-(size + p0 + p1 - eff) // s) + 1
    if (out - 1) * s >= size + p0:
        out -= 1
    return out


def _pool_geometry(x, kernel, strides, pads, dilations, ceil_mode):
    _, _, h, w = x.shape
    oh = pool_out_dim(h, kernel[0], strides[0], pads[0], pads[2], dilations[0], ceil_mode)
    ow = pool_out_dim(w, kernel[1], strides[1], pads[1], pads[3], dilations[1], ceil_mode)
    # room the last window needs past the end padding (ceil_mode)
    eh = dilations[0] * (kernel[0] - 1) + 1
    ew = dilations[1] * (kernel[1] - 1) + 1
    extra_h = max(0, (oh - 1) * strides[0] + eh - (h + pads[0] + pads[2]))
    extra_w = max(0, (ow - 1) * strides[1] + ew - (w + pads[1] + pads[3]))
    return oh, ow, extra_h, extra_w


def max_pool(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    ceil_mode: bool = False,
    dilations: Sequence[int] = (1, 1),
) -> np.ndarray:
    """Max over the window; padding (and ceil_mode's extra room) is -inf."""
    oh, ow, extra_h, extra_w = _pool_geometry(x, kernel, strides, pads, dilations, ceil_mode)
    xp = _pad_hw(x, pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w, -np.inf)
    out = None
    for _, _, tap in _taps(xp, kernel, strides, dilations, (oh, ow)):
        out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out


def _window_sums(a: np.ndarray, k: int, s: int, out: int) -> np.ndarray:
    """Sums of `k` consecutive entries of `a`, every `s` entries."""
    v = sliding_window_view(a, k)[: (out - 1) * s + 1 : s]
    return v.sum(axis=-1)


def avg_pool(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    ceil_mode: bool = False,
    count_include_pad: bool = False,
) -> np.ndarray:
    """Mean over the window. The divisor counts the window's elements inside
    the input (count_include_pad=0) or inside the input plus its explicit pads
    (count_include_pad=1); ceil_mode's extra room is never counted."""
    _, _, h, w = x.shape
    oh, ow, extra_h, extra_w = _pool_geometry(x, kernel, strides, pads, (1, 1), ceil_mode)
    xp = _pad_hw(x, pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w, 0.0)
    total = None
    for _, _, tap in _taps(xp, kernel, strides, (1, 1), (oh, ow)):
        total = tap.copy() if total is None else np.add(total, tap, out=total)
    # divisor per output position: separable in H and W
    counts = []
    for size, k, s, p0, p1, extra, out in (
        (h, kernel[0], strides[0], pads[0], pads[2], extra_h, oh),
        (w, kernel[1], strides[1], pads[1], pads[3], extra_w, ow),
    ):
        mask = np.zeros(size + p0 + p1 + extra, dtype=np.float32)
        if count_include_pad:
            mask[: size + p0 + p1] = 1
        else:
            mask[p0 : p0 + size] = 1
        counts.append(_window_sums(mask, k, s, out))
    divisor = np.outer(counts[0], counts[1]).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / divisor


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float32)


def reduce_mean(x: np.ndarray, axes: Sequence[int], keepdims: bool) -> np.ndarray:
    return np.asarray(x.mean(axis=tuple(axes), keepdims=keepdims, dtype=np.float32))


# --------------------------------------------------------------------------
# matrix products and normalization
# --------------------------------------------------------------------------


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None,
    trans_a: bool = False,
    trans_b: bool = False,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> np.ndarray:
    y = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
    if alpha != 1.0:
        y *= _f(alpha)
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else _f(beta) * c)
    return np.ascontiguousarray(y, dtype=a.dtype)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b)


def _channel(v: np.ndarray, rank: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (rank - 2))


def batch_norm(x, scale, bias, mean, var, epsilon: float) -> np.ndarray:
    r = x.ndim
    inv = scale / np.sqrt(var + _f(epsilon))
    return (x - _channel(mean, r)) * _channel(inv, r) + _channel(bias, r)


def lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX LRN: x / (bias + alpha / size * sum of squares over nearby channels) ** beta."""
    c = x.shape[1]
    before, after = (size - 1) // 2, -(-(size - 1) // 2)
    sq = np.square(x)
    widths = [(0, 0)] * x.ndim
    widths[1] = (before, after)
    sq = np.pad(sq, widths)
    sums = sliding_window_view(sq, size, axis=1)[:, :c].sum(axis=-1)
    return x / np.power(_f(bias) + _f(alpha / size) * sums, _f(beta))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --------------------------------------------------------------------------
# data movement
# --------------------------------------------------------------------------


def concat(xs: Sequence[np.ndarray], axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


def split(x: np.ndarray, axis: int, sizes: Sequence[int]) -> list[np.ndarray]:
    bounds = np.cumsum(sizes)[:-1]
    return [np.ascontiguousarray(p) for p in np.split(x, bounds, axis=axis)]


def _slice1(start: int, end: int, step: int) -> slice:
    """Python `range(start, end, step)` on absolute indices as a slice."""
    n = len(range(start, end, step))
    if n == 0:
        return slice(0, 0)
    last = start + (n - 1) * step
    stop = last + (1 if step > 0 else -1)
    return slice(start, None if stop < 0 else stop, step)


def slice_(x: np.ndarray, starts, ends, steps) -> np.ndarray:
    idx = tuple(_slice1(b, e, s) for b, e, s in zip(starts, ends, steps))
    return np.ascontiguousarray(x[idx])


def reshape(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    return x.reshape(tuple(shape))


def transpose(x: np.ndarray, perm: Sequence[int]) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(tuple(perm)))


def pad(x: np.ndarray, pads: Sequence[int], mode: str = "constant", value: float = 0.0) -> np.ndarray:
    r = x.ndim
    widths = [(int(pads[i]), int(pads[i + r])) for i in range(r)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=_f(value))
    if mode in ("reflect", "edge"):
        return np.pad(x, widths, mode=mode)
    raise ValueError(f"pad mode '{mode}' is not one of constant, reflect, edge")


def im2col(
    xp: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int] = (1, 1),
    dilations: Sequence[int] = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """The (groups, C_g * KH * KW, N * OH * OW) columns of the (already
    padded) NCHW array, exactly as `conv2d` makes them for its product (the
    same values and layout); for a grouped or depthwise convolution too (but
    `conv2d` sums the taps of a depthwise one instead)."""
    n, c, h, wd = xp.shape
    kh, kw = kernel
    g = groups
    cig = c // g
    oh = conv_out_dim(h, kh, strides[0], 0, 0, dilations[0])
    ow = conv_out_dim(wd, kw, strides[1], 0, 0, dilations[1])
    k = cig * kh * kw
    p = n * oh * ow
    if kh == kw == 1:
        cols = xp[:, :, :: strides[0], :: strides[1]][:, :, :oh, :ow]
        cols = cols.reshape(n, g, cig, 1, 1, oh, ow)
    else:
        v = _windows(xp, (kh, kw), strides, dilations, (oh, ow))
        cols = v.reshape(n, g, cig, oh, ow, kh, kw).transpose(0, 1, 2, 5, 6, 3, 4)
    if n == 1:
        return cols.reshape(g, k, p)
    return cols.transpose(1, 2, 3, 4, 0, 5, 6).reshape(g, k, p)

