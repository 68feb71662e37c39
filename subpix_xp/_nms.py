"""Strict non-maxima suppression in 2-D and 3-D."""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from . import _validation as v
from .backends import Hooks, hooks_for

Array = Any

__all__ = ["nms2d", "nms3d", "nms3d_minmax"]


def _split(k: int) -> tuple[int, int]:
    """Positions of a length-``k`` window before and after its centre."""
    before = (k - 1) // 2
    return before, k - 1 - before


def _slice_axis(x: Array, axis: int, start: int, length: int) -> Array:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + length)
    return x[tuple(index)]


def _neighbourhood(x: Array, window: tuple[int, ...], reduce: Any, *, xp: Any) -> list[Array]:
    """The window minus its centre, as boxes reduced with ``reduce``, aligned on the "valid" region.

    On the first axis the window splits into the slab before the centre, the slab after it (both
    spanning the full window on the other axes) and the centre slice, which recurses on the
    remaining axes. Every part has shape ``n - k + 1`` on each windowed axis.
    """
    k, rest = window[0], window[1:]
    axis = x.ndim - len(window)
    before, after = _split(k)
    out_len = x.shape[axis] - k + 1
    parts = []
    if before or after:
        full = reduce(x, (1, *rest), xp=xp) if any(r > 1 for r in rest) else x
        if before:
            slab = reduce(_slice_axis(full, axis, 0, out_len + before - 1), (before,) + (1,) * len(rest), xp=xp)
            parts.append(slab)
        if after:
            slab = reduce(_slice_axis(full, axis, before + 1, out_len + after - 1), (after,) + (1,) * len(rest), xp=xp)
            parts.append(slab)
    if rest:
        centre = _slice_axis(x, axis, before, out_len)
        parts.extend(_neighbourhood(centre, rest, reduce, xp=xp))
    return parts


def _valid_region(x: Array, window: tuple[int, ...]) -> tuple[slice, ...]:
    lead = (slice(None),) * (x.ndim - len(window))
    return lead + tuple(slice(_split(k)[0], n - _split(k)[1]) for k, n in zip(window, x.shape[-len(window) :]))


def _embed(interior: Array, x: Array, window: tuple[int, ...], hooks: Hooks, *, xp: Any) -> Array:
    """Place a mask computed on the valid region into a full-size mask, ``False`` on the border."""
    widths = tuple(_split(k) for k in window)
    as_int = xp.astype(interior, xp.uint8)
    return xp.astype(hooks.pad(as_int, widths, 0, xp=xp), xp.bool)


def _strict_extrema(x: Array, window: tuple[int, ...], which: tuple[str, ...], hooks: Hooks, *, xp: Any) -> list[Array]:
    """Masks of strict maxima and/or minima (``which`` holds ``"max"``/``"min"``), full size."""
    shape = tuple(x.shape)
    if any(n < k for n, k in zip(shape[-len(window) :], window)) or x.size == 0:
        return [xp.zeros(shape, dtype=xp.bool, device=device(x)) for _ in which]
    if all(k == 1 for k in window):
        return [xp.ones(shape, dtype=xp.bool, device=device(x)) for _ in which]
    if x.dtype == xp.bool:
        x = xp.astype(x, xp.uint8)
    centre = x[_valid_region(x, window)]
    masks = []
    for kind in which:
        reduce, beats = (hooks.window_max, xp.greater) if kind == "max" else (hooks.window_min, xp.less)
        parts = _neighbourhood(x, window, reduce, xp=xp)
        combine = xp.maximum if kind == "max" else xp.minimum
        other = parts[0]
        for part in parts[1:]:
            other = combine(other, part)
        masks.append(_embed(beats(centre, other), x, window, hooks, xp=xp))
    return masks


def _nms(func: str, input: Array, kernel_size: Any, mask_only: bool, n: int, layout: str) -> Array:
    xp = v.namespace(func, input=input)
    v.check_ndim(func, "input", input, n + 2, layout)
    v.check_real(func, "input", input, xp)
    window = v.int_tuple(func, "kernel_size", kernel_size, n, minimum=1, allow_int=False)
    v.check_bool(func, "mask_only", mask_only)
    (mask,) = _strict_extrema(input, window, ("max",), hooks_for(xp), xp=xp)
    if mask_only:
        return mask
    return xp.where(mask, input, xp.zeros_like(input))


def nms2d(input: Array, kernel_size: tuple[int, int], mask_only: bool = False) -> Array:
    """Keep the strict local maxima of each ``(H, W)`` map.

    A position is kept when it is greater than every other value of its ``kernel_size`` window,
    which spans ``(k - 1) // 2`` positions before it and ``k // 2`` after it on each axis. Positions
    whose full window does not fit inside the map are never maxima; plateaus are suppressed; NaN
    is never a maximum and suppresses every window it is in. Any real dtype works.

    Parameters
    ----------
    input : array
        Response of shape ``(B, C, H, W)``.
    kernel_size : tuple of 2 ints
        Window size ``(kh, kw)``, each at least 1. ``(1, 1)`` keeps every position.
    mask_only : bool, optional
        Return the boolean mask instead of ``where(mask, input, 0)``.

    Returns
    -------
    array
        Boolean mask, or the input with non-maxima set to zero; same shape as ``input``.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import nms2d
    >>> x = np.array([[[[0., 1., 0.], [1., 3., 1.], [0., 1., 0.]]]])
    >>> nms2d(x, (3, 3), mask_only=True)[0, 0].astype(int)
    array([[0, 0, 0],
           [0, 1, 0],
           [0, 0, 0]])
    """
    return _nms("nms2d", input, kernel_size, mask_only, 2, "(B, C, H, W)")


def nms3d(input: Array, kernel_size: tuple[int, int, int], mask_only: bool = False) -> Array:
    """Keep the strict local maxima of each ``(D, H, W)`` volume.

    The rule of :func:`nms2d` over depth, height and width.

    Parameters
    ----------
    input : array
        Response of shape ``(B, C, D, H, W)``.
    kernel_size : tuple of 3 ints
        Window size ``(kd, kh, kw)``, each at least 1.
    mask_only : bool, optional
        Return the boolean mask instead of ``where(mask, input, 0)``.

    Returns
    -------
    array
        Boolean mask, or the input with non-maxima set to zero; same shape as ``input``.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import nms3d
    >>> x = np.zeros((1, 1, 3, 3, 3)); x[0, 0, 1, 1, 1] = 1.0
    >>> int(nms3d(x, (3, 3, 3), mask_only=True).sum())
    1
    """
    return _nms("nms3d", input, kernel_size, mask_only, 3, "(B, C, D, H, W)")


def nms3d_minmax(input: Array) -> tuple[Array, Array]:
    """Strict 3x3x3 maxima and minima of each ``(D, H, W)`` volume in one call.

    Equal to ``(nms3d(input, (3, 3, 3), True), nms3d(-input, (3, 3, 3), True))`` (without the
    overflow of negating an integer input).

    Parameters
    ----------
    input : array
        Response of shape ``(B, C, D, H, W)``.

    Returns
    -------
    tuple of arrays
        ``(max_mask, min_mask)``, boolean, of the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import nms3d_minmax
    >>> x = np.zeros((1, 1, 3, 3, 3)); x[0, 0, 1, 1, 1] = -1.0
    >>> max_mask, min_mask = nms3d_minmax(x)
    >>> int(max_mask.sum()), int(min_mask.sum())
    (0, 1)
    """
    func = "nms3d_minmax"
    xp = v.namespace(func, input=input)
    v.check_ndim(func, "input", input, 5, "(B, C, D, H, W)")
    v.check_real(func, "input", input, xp)
    max_mask, min_mask = _strict_extrema(input, (3, 3, 3), ("max", "min"), hooks_for(xp), xp=xp)
    return max_mask, min_mask
