"""Convolutional (windowed) soft-argmax in 2-D and 3-D."""

from __future__ import annotations

import math
from typing import Any

from . import _common as c
from . import _validation as v
from ._common import device
from ._nms import _strict_extrema
from .backends import Blockwise, Hooks, Output, hooks_for

Array = Any

__all__ = ["conv_soft_argmax2d", "conv_soft_argmax3d"]


def _strided(start: tuple[int, ...], stride: tuple[int, ...], count: tuple[int, ...]) -> tuple[slice, ...]:
    lead = (slice(None), slice(None))
    return lead + tuple(slice(a, a + s * (o - 1) + 1, s) for a, s, o in zip(start, stride, count))


def _window_softmax_moments(
    logits: Array,
    values: Array | None,
    window: tuple[int, ...],
    stride: tuple[int, ...],
    widths: tuple[tuple[int, int], ...],
    count: tuple[int, ...],
    hooks: Hooks,
    *,
    xp: Any,
) -> tuple[Array, list[Array], Array | None]:
    """Per-window softmax moments of ``(L, *spatial)`` ``logits``: total weight, offset sums per axis, value sum.

    ``widths`` pads each axis with zero-weight positions. Each window is shifted by its own
    maximum, so its total weight is at least 1 and it never depends on other windows. Separable,
    from the last axis inward: a stage reduces one axis, keeping for every window of the axes done
    so far its maximum ``m``, its weight sum ``S`` (relative to ``m``), its offset sums ``T`` and
    its value sum ``U``; the next stage combines ``k`` of them with the factors ``exp(m - M)``,
    ``M`` their maximum. So ``exp(v - M) = exp(v - m) exp(m - M)``: a window of ``k1 x k2`` costs
    ``k1 + k2`` exponentials, not ``k1 k2``, and its largest weight is still exactly 1. An axis is
    padded just before its stage (``-inf`` maxima, zero sums), so no all-padding row ever forms.
    """
    nw = len(window)
    nd = logits.ndim
    lowest = xp.full(
        (), -float(xp.finfo(logits.dtype).max), dtype=logits.dtype, device=device(logits)
    )  # a fill, not a host copy
    m = sums = u = None
    offsets: dict[int, Array] = {}
    for j in reversed(range(nw)):
        axis = nd - nw + j
        k, s, o = window[j], stride[j], count[j]
        pad = ((widths[j][0], widths[j][1]),) + ((0, 0),) * (nw - 1 - j)
        span = s * (o - 1) + 1

        def taps(a: Array, axis: int = axis, span: int = span, s: int = s, k: int = k) -> list[Array]:
            return [a[c.axis_slice(nd, axis, off, off + span, s)] for off in range(k)]

        def padded(a: Array, value: float, pad: tuple[tuple[int, int], ...] = pad) -> Array:
            return hooks.pad(a, pad, value, xp=xp) if pad[0] != (0, 0) else a

        if m is None:
            src_m = padded(logits, -math.inf)
            src = [None, None, None if values is None else padded(values, 0.0)]
        else:
            src_m = padded(m, -math.inf)
            src = [
                padded(sums, 0.0),
                {a: padded(t, 0.0) for a, t in offsets.items()},
                None if u is None else padded(u, 0.0),
            ]
        m_taps = taps(src_m)
        if s == 1 and k > 3:
            new_m = hooks.window_max(src_m, (k,) + (1,) * (nw - 1 - j), xp=xp)[c.axis_slice(nd, axis, 0, o)]
        else:
            new_m = m_taps[0]
            for t in m_taps[1:]:
                new_m = xp.maximum(new_m, t)
        # A window of -inf only (an input of -inf) weighs 0 instead of exp(-inf + inf) = NaN.
        shift = xp.maximum(new_m, lowest)
        s_taps = None if src[0] is None else taps(src[0])
        t_taps = {a: taps(t) for a, t in (src[1] or {}).items()}
        u_taps = None if src[2] is None else taps(src[2])
        new_sums = new_t = new_u = None
        new_offsets: dict[int, Array] = {}
        for off in range(k):
            factor = xp.exp(m_taps[off] - shift)
            weight = factor if s_taps is None else factor * s_taps[off]
            new_sums = weight if new_sums is None else new_sums + weight
            if off:
                term = weight if off == 1 else weight * float(off)
                new_t = term if new_t is None else new_t + term
            for a, tt in t_taps.items():
                term = factor * tt[off]
                new_offsets[a] = term if a not in new_offsets else new_offsets[a] + term
            if u_taps is not None:
                term = factor * u_taps[off]
                new_u = term if new_u is None else new_u + term
        new_offsets[j] = new_t if new_t is not None else xp.zeros_like(new_sums)
        m, sums, u, offsets = new_m, new_sums, new_u, new_offsets
    return sums, [offsets[j] for j in range(nw)], u


def _conv_soft_argmax(
    func: str,
    input: Array,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    temperature: Any,
    normalized_coordinates: bool,
    eps: float,
    output_value: bool,
    strict_maxima_bonus: float,
    ndim: int,
) -> Array | tuple[Array, Array]:
    layout = "(B, C, H, W)" if ndim == 2 else "(B, C, D, H, W)"
    xp = v.namespace(func, input=input)
    v.check_ndim(func, "input", input, ndim + 2, layout)
    input = v.check_floating(func, "input", input, xp)
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
    return hooks.blockwise(
        func,
        _CONV_BLOCKS,
        input,
        temp,
        xp=xp,
        window=window,
        strides=strides,
        widths=tuple((p, p) for p in pads),
        first=tuple(-p for p in pads),
        sizes=spatial,
        normalized=normalized_coordinates,
        output_value=output_value,
        bonus=bonus,
    )


def _conv_kernel(
    input: Array,
    temp: Array | float,
    *,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    widths: tuple[tuple[int, int], ...],
    first: tuple[int, ...],
    sizes: tuple[int, ...],
    normalized: bool,
    output_value: bool,
    bonus: float,
    xp: Any,
) -> Array | tuple[Array, Array]:
    """The windowed soft-argmax of ``input`` padded by ``widths`` (``(before, after)`` per axis).

    ``first`` is the coordinate, in the whole array, of the first window's first (padded) position,
    and ``sizes`` the whole array's spatial shape, so a block of a chunked array (starting at its
    first window) gives exactly its part of the whole result.
    """
    ndim = len(window)
    hooks = hooks_for(xp)
    dtype = c.compute_dtype(input.dtype, xp=xp)
    x = xp.astype(input, dtype, copy=False)
    logits = (
        x if c.is_constant(temp, 1.0) else x / (temp if isinstance(temp, float) else xp.astype(temp, dtype))
    )
    shape = tuple(input.shape)
    spatial = shape[2:]
    count = tuple((n + a + b - k) // s + 1 for n, (a, b), k, s in zip(spatial, widths, window, strides))
    lead = shape[0] * shape[1]
    flat_logits = xp.reshape(logits, (lead, *spatial))
    flat_x = xp.reshape(x, (lead, *spatial)) if output_value else None

    # Blocks of output rows along the longest axis but the last, each with the input rows its
    # windows read (and its share of the padding): cache-sized temporaries, identical values.
    r = max(range(ndim - 1), key=lambda a: count[a]) if ndim > 1 else 0
    row_elements = strides[r] * math.prod(n for a, n in enumerate(spatial) if a != r)
    plan = c.block_plan(lead, count[r], row_elements, hooks.block_elements(x))
    coords_blocks: list[list[Array]] = []
    value_blocks: list[list[Array]] = []
    (a_r, _), n_r, s_r, k_r = widths[r], spatial[r], strides[r], window[r]
    for (l0, l1), rows in plan:
        coords_row: list[Array] = []
        value_row: list[Array] = []
        for o0, o1 in rows:
            lo, hi = max(0, o0 * s_r - a_r), min(n_r, (o1 - 1) * s_r + k_r - a_r)
            index = [slice(l0, l1)] + [slice(None)] * ndim
            index[1 + r] = slice(lo, hi)
            block_widths = list(widths)
            block_widths[r] = (max(0, a_r - o0 * s_r), max(0, (o1 - 1) * s_r + k_r - a_r - n_r))
            block_count = list(count)
            block_count[r] = o1 - o0
            total, moments, value_sum = _window_softmax_moments(
                flat_logits[tuple(index)],
                None if flat_x is None else flat_x[tuple(index)],
                window,
                strides,
                tuple(block_widths),
                tuple(block_count),
                hooks,
                xp=xp,
            )
            coords = []
            for axis, (n, f, s, o) in enumerate(zip(sizes, first, strides, block_count)):
                o_first = o0 if axis == r else 0
                start = xp.arange(o_first, o_first + o, dtype=dtype, device=device(input)) * float(s) + float(
                    f
                )
                start = xp.reshape(start, (o,) + (1,) * (ndim - 1 - axis))
                coord = start + moments[axis] / total
                coords.append(c.normalize(coord, n) if normalized else coord)
            # Output order: (x, y) in 2-D and (depth, x, y) in 3-D, i.e. width before height.
            order = [1, 0] if ndim == 2 else [0, 2, 1]
            coords_row.append(xp.stack([coords[i] for i in order], axis=1))
            if output_value:
                value_row.append(value_sum / total)
        coords_blocks.append(coords_row)
        value_blocks.append(value_row)
    coords_out = c.concat_blocks(coords_blocks, 2 + r, xp=xp)
    coords_out = xp.astype(
        xp.reshape(coords_out, (shape[0], shape[1], ndim, *count)), input.dtype, copy=False
    )
    if not output_value:
        return coords_out
    value = xp.reshape(c.concat_blocks(value_blocks, 1 + r, xp=xp), (shape[0], shape[1], *count))
    if not c.is_constant(bonus, 0.0):
        (strict,) = _strict_extrema(x, window, ("max",), hooks, xp=xp)
        centre = tuple((k - 1) // 2 - a for k, (a, _) in zip(window, widths))
        value = value * (1.0 + bonus * xp.astype(strict[_strided(centre, strides, count)], dtype))
    return coords_out, xp.astype(value, input.dtype, copy=False)


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
        "conv_soft_argmax2d",
        input,
        kernel_size,
        stride,
        padding,
        temperature,
        normalized_coordinates,
        eps,
        output_value,
        0.0,
        2,
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
        "conv_soft_argmax3d",
        input,
        kernel_size,
        stride,
        padding,
        temperature,
        normalized_coordinates,
        eps,
        output_value,
        strict_maxima_bonus,
        3,
    )


def _conv_outputs(ndim: int, params: dict[str, Any]) -> tuple[Output, ...]:
    coords = Output(new=(len(params["window"]),), at=2)
    return (coords, Output()) if params["output_value"] else (coords,)


# Blockwise: strided windows; a block gets the input its windows read (``widths``, ``first``).
_CONV_BLOCKS = Blockwise(
    _conv_kernel,
    windows=lambda params: tuple(
        (k, s, a) for k, s, (a, _) in zip(params["window"], params["strides"], params["widths"])
    ),
    outputs=_conv_outputs,
)
