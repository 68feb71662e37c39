"""Strict non-maxima suppression in 2-D and 3-D."""

from __future__ import annotations

import math
from typing import Any

from . import _common as c
from . import _validation as v
from ._common import device
from .backends import Blockwise, Hooks, Output, hooks_for

Array = Any

__all__ = ["nms2d", "nms3d", "nms3d_minmax"]


def _split(k: int) -> tuple[int, int]:
    """Positions of a length-``k`` window before and after its centre."""
    before = (k - 1) // 2
    return before, k - 1 - before


def _exclusive(
    x: Array, window: tuple[int, ...], reduce: Any, combine: Any, *, xp: Any
) -> tuple[Array, Array | None]:
    """Each full window's centre value and the reduction (max or min) of the rest of the window.

    Both come on the "valid" region (``n - k + 1`` positions on each windowed axis); the rest is
    ``None`` for a window of one position. Separable, from the last axis inward: ``rest`` (the
    window minus its centre) and ``full`` (the whole window) over the axes done so far are kept for
    every position of the axes still to do; the next axis adds, to the centre slab of ``rest``, the
    slabs before and after the centre, read from ``full``. A slab of ``h`` positions is one window
    reduction of ``full``; with an odd kernel the slabs before and after are the same reduction read
    at two offsets. A 3x3 window costs 4 elementwise passes, 3x3x3 costs 7.
    """
    nw = len(window)
    full, rest, centre = x, None, x
    for j in reversed(range(nw)):
        axis = x.ndim - nw + j
        k = window[j]
        before, after = _split(k)
        out = full.shape[axis] - k + 1
        parts = []
        reduced: dict[int, Array] = {}
        for h, start in ((before, 0), (after, before + 1)):
            if h == 0:
                continue
            if h not in reduced:
                reduced[h] = full if h == 1 else reduce(full, (h,) + (1,) * (nw - 1 - j), xp=xp)
            parts.append(reduced[h][c.axis_slice(reduced[h].ndim, axis, start, start + out)])
        centre = centre[c.axis_slice(centre.ndim, axis, before, before + out)]
        if rest is not None:
            parts.append(rest[c.axis_slice(rest.ndim, axis, before, before + out)])
        rest = parts[0] if parts else None
        for part in parts[1:]:
            rest = combine(rest, part)
        if j > 0:
            full = centre if rest is None else combine(rest, centre)
    return centre, rest


def _row_axis(spatial: tuple[int, ...]) -> int:
    """The windowed axis to cut into blocks: the longest one other than the last (rows stay contiguous)."""
    if len(spatial) == 1:
        return 0
    return max(range(len(spatial) - 1), key=lambda a: spatial[a])


def _strict_extrema(
    x: Array, window: tuple[int, ...], which: tuple[str, ...], hooks: Hooks, *, xp: Any
) -> list[Array]:
    """Masks of strict maxima and/or minima (``which`` holds ``"max"``/``"min"``), full size.

    Large arrays are cut into blocks of about ``hooks.block_elements`` elements (with the window's
    halo), so the temporaries stay in the cache and the peak memory is the masks'; each block's
    masks are padded with ``False`` for its share of the border and the blocks concatenated.
    """
    shape = tuple(x.shape)
    nw = len(window)
    spatial = shape[-nw:]
    if any(n < k for n, k in zip(spatial, window)) or math.prod(shape) == 0:
        return [xp.zeros(shape, dtype=xp.bool, device=device(x)) for _ in which]
    if all(k == 1 for k in window):
        return [xp.ones(shape, dtype=xp.bool, device=device(x)) for _ in which]
    if x.dtype == xp.bool:
        x = xp.astype(x, xp.uint8)
    floating = xp.isdtype(x.dtype, "real floating")
    lead = math.prod(shape[:-nw])
    flat = xp.reshape(x, (lead, *spatial))
    valid = tuple(n - k + 1 for n, k in zip(spatial, window))
    r = _row_axis(spatial)
    row_elements = math.prod(n for a, n in enumerate(spatial) if a != r)
    widths = [_split(k) for k in window]
    plan = c.block_plan(lead, valid[r], row_elements, hooks.block_elements(x))
    results: list[list[list[Array]]] = [[] for _ in which]
    for (l0, l1), rows in plan:
        per_kind: list[list[Array]] = [[] for _ in which]
        for r0, r1 in rows:
            index = [slice(l0, l1)] + [slice(None)] * nw
            index[1 + r] = slice(r0, r1 + window[r] - 1)
            block = flat[tuple(index)]
            pads = list(widths)
            pads[r] = (widths[r][0] if r0 == 0 else 0, widths[r][1] if r1 == valid[r] else 0)
            for i, kind in enumerate(which):
                # docs/semantics.md (NaN and infinity): an infinite value is never a strict extremum (NaN never compares true, and
                # only +inf can beat its neighbours as a maximum, -inf as a minimum).
                if kind == "max":
                    centre, rest = _exclusive(block, window, hooks.window_max, xp.maximum, xp=xp)
                    mask = xp.greater(centre, rest)
                    if floating:
                        mask = mask & (centre < math.inf)
                else:
                    centre, rest = _exclusive(block, window, hooks.window_min, xp.minimum, xp=xp)
                    mask = xp.less(centre, rest)
                    if floating:
                        mask = mask & (centre > -math.inf)
                if any(p for pair in pads for p in pair):
                    mask = hooks.pad(mask, tuple(pads), False, xp=xp)
                per_kind[i].append(mask)
        for i in range(len(which)):
            results[i].append(per_kind[i])
    return [xp.reshape(c.concat_blocks(res, 1 + r, xp=xp), shape) for res in results]


def _nms(func: str, input: Array, kernel_size: Any, mask_only: bool, n: int, layout: str) -> Array:
    xp = v.namespace(func, input=input)
    v.check_ndim(func, "input", input, n + 2, layout)
    input = v.check_real(func, "input", input, xp)
    window = v.int_tuple(func, "kernel_size", kernel_size, n, minimum=1, allow_int=False)
    v.check_bool(func, "mask_only", mask_only)
    return hooks_for(xp).blockwise(func, _NMS_BLOCKS, input, xp=xp, window=window, mask_only=mask_only)


def _nms_kernel(input: Array, *, window: tuple[int, ...], mask_only: bool, xp: Any) -> Array:
    """The strict-maxima mask (or the masked input) of a whole array, or of one halo-extended block."""
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
    input = v.check_real(func, "input", input, xp)
    return hooks_for(xp).blockwise(func, _MINMAX_BLOCKS, input, xp=xp)


def _minmax_kernel(input: Array, *, xp: Any) -> tuple[Array, Array]:
    max_mask, min_mask = _strict_extrema(input, (3, 3, 3), ("max", "min"), hooks_for(xp), xp=xp)
    return max_mask, min_mask


# Blockwise: a strict maximum needs its full window, so a block is extended by ``k // 2`` per axis.
_NMS_BLOCKS = Blockwise(
    _nms_kernel,
    halo=lambda params: tuple(k // 2 for k in params["window"]),
    outputs=lambda ndim, params: (Output(boolean=params["mask_only"]),),
)
_MINMAX_BLOCKS = Blockwise(
    _minmax_kernel, halo=lambda params: (1, 1, 1), outputs=lambda ndim, params: (Output(True), Output(True))
)
