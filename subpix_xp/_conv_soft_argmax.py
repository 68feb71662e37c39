"""Convolutional (windowed) soft-argmax in 2-D and 3-D."""

from __future__ import annotations

import itertools
import math
from typing import Any

from array_api_compat import device

from . import _common as c
from . import _validation as v
from ._nms import _strict_extrema
from .backends import Hooks, hooks_for

Array = Any

__all__ = ["conv_soft_argmax2d", "conv_soft_argmax3d"]


def _strided(start: tuple[int, ...], stride: tuple[int, ...], count: tuple[int, ...]) -> tuple[slice, ...]:
    lead = (slice(None), slice(None))
    return lead + tuple(slice(a, a + s * (o - 1) + 1, s) for a, s, o in zip(start, stride, count))


def _window_softmax_moments(
    logits: Array, values: Array | None, window: tuple[int, ...], stride: tuple[int, ...], count: tuple[int, ...],
    hooks: Hooks, *, xp: Any,
) -> tuple[Array, list[Array], Array | None]:
    """Per-window softmax moments of padded ``logits``: total weight, offset sums per axis, value sum.

    Each window is shifted by its own maximum, so its total weight is at least 1 and it never
    depends on other windows. The window's positions are visited one offset at a time, so no
    ``prod(window)``-times larger unfolded array is ever built.
    """
    shift = hooks.window_max(logits, window, xp=xp)[_strided((0,) * len(window), stride, count)]
    total = xp.zeros_like(shift)
    moments = [xp.zeros_like(shift) for _ in window]
    value_sum = None if values is None else xp.zeros_like(shift)
    for offset in itertools.product(*(range(k) for k in window)):
        index = _strided(offset, stride, count)
        weight = xp.exp(logits[index] - shift)
        total = total + weight
        for axis, off in enumerate(offset):
            if off:
                moments[axis] = moments[axis] + weight * float(off)
        if values is not None:
            value_sum = value_sum + weight * values[index]
    return total, moments, value_sum


def _conv_soft_argmax(
    func: str, input: Array, kernel_size: Any, stride: Any, padding: Any, temperature: Any,
    normalized_coordinates: bool, eps: float, output_value: bool, strict_maxima_bonus: float, ndim: int,
) -> Array | tuple[Array, Array]:
    layout = "(B, C, H, W)" if ndim == 2 else "(B, C, D, H, W)"
    xp = v.namespace(func, input=input)
    v.check_ndim(func, "input", input, ndim + 2, layout)
    v.check_floating(func, "input", input, xp)
    window = v.int_tuple(func, "kernel_size", kernel_size, ndim, minimum=1, allow_int=False)
    strides = v.int_tuple(func, "stride", stride, ndim, minimum=1)
    pads = v.int_tuple(func, "padding", padding, ndim, minimum=0)
    if any(2 * p > k for p, k in zip(pads, window)):
        msg = f"{func}: expected 0 <= 2 * padding <= kernel_size on every axis; got padding {pads} for kernel_size {window}"
        raise ValueError(msg)
    v.check_bool(func, "normalized_coordinates", normalized_coordinates)
    v.check_number(func, "eps", eps)
    v.check_bool(func, "output_value", output_value)
    bonus = v.check_number(func, "strict_maxima_bonus", strict_maxima_bonus, minimum=0.0)
    if bonus > 0 and any(k % 2 == 0 for k in window):
        msg = f"{func}: `strict_maxima_bonus` > 0 needs an odd kernel_size (a window with a centre voxel); got {window}"
        raise ValueError(msg)
    shape = tuple(input.shape)
    spatial = shape[2:]
    count = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in zip(spatial, pads, window, strides))
    if any(o < 1 for o in count):
        msg = f"{func}: `input` of spatial shape {spatial} is smaller than kernel_size {window} with padding {pads}"
        raise ValueError(msg)

    hooks = hooks_for(xp)
    temp = v.temperature(func, temperature, input, shape[:2] + (1,) * ndim, xp, hooks)
    dtype = c.compute_dtype(input.dtype, xp=xp)
    x = xp.astype(input, dtype)
    logits = x if isinstance(temp, float) and temp == 1.0 else x / (temp if isinstance(temp, float) else xp.astype(temp, dtype))
    widths = tuple((p, p) for p in pads)
    padded_logits = hooks.pad(logits, widths, -math.inf, xp=xp)
    padded_values = hooks.pad(x, widths, 0.0, xp=xp) if output_value else None
    total, moments, value_sum = _window_softmax_moments(
        padded_logits, padded_values, window, strides, count, hooks, xp=xp
    )

    coords = []
    for axis, (n, p, s, o) in enumerate(zip(spatial, pads, strides, count)):
        start = xp.arange(o, dtype=dtype, device=device(input)) * float(s) - float(p)
        start = xp.reshape(start, (o,) + (1,) * (ndim - 1 - axis))
        coord = start + moments[axis] / total
        coords.append(c.normalize(coord, n) if normalized_coordinates else coord)
    # Output order: (x, y) in 2-D and (depth, x, y) in 3-D, i.e. width before height.
    order = [1, 0] if ndim == 2 else [0, 2, 1]
    coords_out = xp.astype(xp.stack([coords[i] for i in order], axis=2), input.dtype)
    if not output_value:
        return coords_out
    value = value_sum / total
    if bonus > 0:
        (strict,) = _strict_extrema(x, window, ("max",), hooks, xp=xp)
        centre = tuple((k - 1) // 2 - p for k, p in zip(window, pads))
        value = value * (1.0 + bonus * xp.astype(strict[_strided(centre, strides, count)], dtype))
    return coords_out, xp.astype(value, input.dtype)


def conv_soft_argmax2d(
    input: Array,
    kernel_size: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (1, 1),
    temperature: Array | float = 1.0,
    normalized_coordinates: bool = True,
    eps: float = 1e-8,
    output_value: bool = False,
) -> Array | tuple[Array, Array]:
    """Soft-argmax over every window of each ``(H, W)`` heatmap.

    For a window ``X``: ``xy(X) = sum_p (x_p, y_p) exp(v_p / T) / sum_p exp(v_p / T)`` and
    ``val(X) = sum_p v_p exp(v_p / T) / sum_p exp(v_p / T)``, with true pixel coordinates for odd
    and even kernels alike. Each window is shifted by its own maximum, so a window never depends on
    the rest of the map. Padded positions carry zero weight.

    Parameters
    ----------
    input : array
        Heatmaps of shape ``(B, C, H, W)``.
    kernel_size, stride, padding : tuple of 2 ints
        Window geometry; ``0 <= 2 * padding <= kernel_size`` on each axis.
    temperature : float or array, optional
        Positive; the input is divided by it. An array broadcasts against ``(B, C, 1, 1)``.
    normalized_coordinates : bool, optional
        Corner-aligned ``[-1, 1]`` coordinates if True, pixel indices otherwise.
    eps : float, optional
        Accepted for compatibility; every softmax denominator is already at least 1.
    output_value : bool, optional
        Also return the soft-pooled values.

    Returns
    -------
    array or tuple of arrays
        Coordinates ``(B, C, 2, H_out, W_out)`` ordered ``(x, y)``, and with ``output_value`` the
        values ``(B, C, H_out, W_out)``, where ``H_out = (H + 2 padding - kernel) // stride + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import conv_soft_argmax2d
    >>> x = np.zeros((1, 1, 4, 4)); x[0, 0, 1, 2] = 20.0
    >>> coords, val = conv_soft_argmax2d(x, (3, 3), (1, 1), (1, 1), normalized_coordinates=False, output_value=True)
    >>> coords[0, 0, :, 1, 2].round(3), round(float(val[0, 0, 1, 2]), 3)
    (array([2., 1.]), 20.0)
    """
    return _conv_soft_argmax(
        "conv_soft_argmax2d", input, kernel_size, stride, padding, temperature,
        normalized_coordinates, eps, output_value, 0.0, 2,
    )


def conv_soft_argmax3d(
    input: Array,
    kernel_size: tuple[int, int, int] = (3, 3, 3),
    stride: tuple[int, int, int] = (1, 1, 1),
    padding: tuple[int, int, int] = (1, 1, 1),
    temperature: Array | float = 1.0,
    normalized_coordinates: bool = False,
    eps: float = 1e-8,
    output_value: bool = True,
    strict_maxima_bonus: float = 0.0,
) -> Array | tuple[Array, Array]:
    """Soft-argmax over every window of each ``(D, H, W)`` volume.

    The 3-D form of :func:`conv_soft_argmax2d`, with ``strict_maxima_bonus``: the value of a
    window whose centre voxel is a strict maximum of its ``kernel_size`` neighbourhood (the
    :func:`nms3d` rule) is multiplied by ``1 + strict_maxima_bonus``.

    Parameters
    ----------
    input : array
        Volumes of shape ``(B, C, D, H, W)``.
    kernel_size, stride, padding : tuple of 3 ints
        Window geometry; ``0 <= 2 * padding <= kernel_size`` on each axis.
    temperature : float or array, optional
        Positive; the input is divided by it. An array broadcasts against ``(B, C, 1, 1, 1)``.
    normalized_coordinates : bool, optional
        Corner-aligned ``[-1, 1]`` coordinates if True, voxel indices otherwise.
    eps : float, optional
        Accepted for compatibility; unused.
    output_value : bool, optional
        Also return the soft-pooled values.
    strict_maxima_bonus : float, optional
        At least 0; a value above 0 needs an odd kernel on every axis.

    Returns
    -------
    array or tuple of arrays
        Coordinates ``(B, C, 3, D_out, H_out, W_out)`` ordered ``(depth, x, y)``, and with
        ``output_value`` the values ``(B, C, D_out, H_out, W_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import conv_soft_argmax3d
    >>> x = np.zeros((1, 1, 3, 4, 4)); x[0, 0, 1, 2, 1] = 30.0
    >>> coords, val = conv_soft_argmax3d(x)
    >>> coords[0, 0, :, 1, 2, 1].round(3)
    array([1., 1., 2.])
    """
    return _conv_soft_argmax(
        "conv_soft_argmax3d", input, kernel_size, stride, padding, temperature,
        normalized_coordinates, eps, output_value, strict_maxima_bonus, 3,
    )
