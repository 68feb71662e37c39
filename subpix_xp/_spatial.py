"""DSNT: spatial softmax, spatial expectation, spatial soft-argmax and Gaussian heatmap rendering."""

from __future__ import annotations

import math
from typing import Any

from . import _common as c
from . import _validation as v
from ._common import device
from .backends import Blockwise, Output, hooks_for

Array = Any

__all__ = ["render_gaussian2d", "spatial_expectation2d", "spatial_soft_argmax2d", "spatial_softmax2d"]

_LAYOUT = "(B, N, H, W)"


def _heatmaps(func: str, input: Array) -> tuple[Any, Array]:
    """The namespace, and ``input`` checked (4-D, real floating) in its native byte order."""
    xp = v.namespace(func, input=input)
    v.check_ndim(func, "input", input, 4, _LAYOUT)
    return xp, v.check_floating(func, "input", input, xp)


def _temperature(func: str, input: Array, temperature: Any, *, xp: Any) -> Array | float:
    b, n = input.shape[:2]
    temp = v.temperature(func, temperature, input, (b, n, 1), xp, hooks_for(xp))
    if isinstance(temp, float):
        return temp
    # One value per map, shaped (B, N, 1, 1) so that it broadcasts against the maps (and a chunked
    # executor blocks it with them).
    return xp.reshape(xp.broadcast_to(temp, (b, n, 1)), (b, n, 1, 1))


def _softmax(input: Array, temp: Array | float, *, xp: Any) -> Array:
    """The softmax of each map over its ``H * W`` positions, in the compute dtype, flattened."""
    b, n, h, w = input.shape
    dtype = c.compute_dtype(input.dtype, xp=xp)
    flat = xp.reshape(xp.astype(input, dtype), (b, n, h * w))
    if not isinstance(temp, float):
        # (B, N, 1, 1), or 0-d where JAX traces a float temperature.
        temp = xp.reshape(xp.broadcast_to(xp.astype(temp, dtype), (b, n, 1, 1)), (b, n, 1))
    if not c.is_constant(temp, 1.0):
        flat = _scaled_logits(flat, temp, xp=xp)
    return c.softmax(flat, -1, xp=xp)


def _scaled_logits(flat: Array, temp: Array | float, *, xp: Any) -> Array:
    """``(x - max x) / T`` along the last axis: the softmax's logits ``x / T``, already shifted.

    Shifted before the division, so every entry is at most 0, and exactly 0 at the maximum, however a
    compiler rounds it. ``x / T - max(x / T)`` lets XLA evaluate ``x / T`` twice, in the maximum and as
    a fused multiply-add in the difference: at ``|x / T| ~ 1e10`` in float32 the two differ by 1024,
    so ``exp`` overflowed (NaN) or every weight sank to the floor (a uniform map).
    """
    return (flat - xp.max(flat, axis=-1, keepdims=True)) / temp


def spatial_softmax2d(input: Array, temperature: Array | float | None = None) -> Array:
    """Softmax over the ``H * W`` positions of each map (not over channels).

    The input is divided by the temperature: ``softmax(input / T)``. kornia before 0.9.0 multiplied.

    Parameters
    ----------
    input : array
        Heatmaps of shape ``(B, N, H, W)``, real floating dtype.
    temperature : float or array, optional
        Positive; ``None`` means 1. An array must broadcast against ``(B, N, 1)``.

    Returns
    -------
    array
        A probability distribution per map, shape ``(B, N, H, W)``, in the input's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import spatial_softmax2d
    >>> heatmaps = np.array([[[[0., 0., 0.], [0., 0., 0.], [0., 1., 2.]]]])
    >>> spatial_softmax2d(heatmaps).round(4)
    array([[[[0.0585, 0.0585, 0.0585],
             [0.0585, 0.0585, 0.0585],
             [0.0585, 0.1589, 0.4319]]]])
    """
    func = "spatial_softmax2d"
    xp, input = _heatmaps(func, input)
    temp = _temperature(func, input, temperature, xp=xp)
    return hooks_for(xp).blockwise(func, _SOFTMAX_BLOCKS, input, temp, xp=xp)


def _softmax_kernel(input: Array, temp: Array | float, *, xp: Any) -> Array:
    soft = _softmax(input, temp, xp=xp)
    return xp.astype(xp.reshape(soft, tuple(input.shape)), input.dtype)


def _expectation(probs: Array, h: int, w: int, normalized: bool, *, xp: Any) -> Array:
    """Expected ``(x, y)`` of flattened ``(B, N, H * W)`` probabilities, shape ``(B, N, 2)``."""
    b, n = probs.shape[0], probs.shape[1]
    grid = xp.reshape(probs, (b, n, h, w))
    xs = c.axis_coordinates(w, normalized, dtype=probs.dtype, like=probs, xp=xp)
    ys = c.axis_coordinates(h, normalized, dtype=probs.dtype, like=probs, xp=xp)
    expected_x = xp.sum(xp.sum(grid, axis=-2) * xs, axis=-1)
    expected_y = xp.sum(xp.sum(grid, axis=-1) * ys, axis=-1)
    return xp.stack([expected_x, expected_y], axis=-1)


def spatial_expectation2d(input: Array, normalized_coordinates: bool = True) -> Array:
    """Expected ``(x, y)`` coordinate of each map, using the map as given (no renormalisation).

    Parameters
    ----------
    input : array
        Spatial probabilities of shape ``(B, N, H, W)``; a map summing to ``s`` scales its result by ``s``.
    normalized_coordinates : bool, optional
        Corner-aligned coordinates in ``[-1, 1]`` if True, pixel indices otherwise.

    Returns
    -------
    array
        Shape ``(B, N, 2)``, ordered ``(x, y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import spatial_expectation2d
    >>> heatmaps = np.array([[[[0., 0., 0.], [0., 0., 0.], [0., 1., 0.]]]])
    >>> spatial_expectation2d(heatmaps, False)
    array([[[1., 2.]]])
    """
    func = "spatial_expectation2d"
    xp, input = _heatmaps(func, input)
    v.check_bool(func, "normalized_coordinates", normalized_coordinates)
    return hooks_for(xp).blockwise(func, _EXPECTATION_BLOCKS, input, xp=xp, normalized=normalized_coordinates)


def _expectation_kernel(input: Array, *, normalized: bool, xp: Any) -> Array:
    b, n, h, w = input.shape
    dtype = c.compute_dtype(input.dtype, xp=xp)
    probs = xp.reshape(xp.astype(input, dtype), (b, n, h * w))
    return xp.astype(_expectation(probs, h, w, normalized, xp=xp), input.dtype)


def spatial_soft_argmax2d(
    input: Array, temperature: Array | float | None = None, normalized_coordinates: bool = True
) -> Array:
    """Soft-argmax of each map: ``spatial_expectation2d(spatial_softmax2d(input, temperature))``.

    Parameters
    ----------
    input : array
        Heatmaps of shape ``(B, N, H, W)``.
    temperature : float or array, optional
        Positive softmax temperature (the input is divided by it); ``None`` means 1.
    normalized_coordinates : bool, optional
        Corner-aligned coordinates in ``[-1, 1]`` if True, pixel indices otherwise.

    Returns
    -------
    array
        Shape ``(B, N, 2)``, ordered ``(x, y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import spatial_soft_argmax2d
    >>> x = np.array([[[[0., 0., 0.], [0., 10., 0.], [0., 0., 0.]]]])
    >>> spatial_soft_argmax2d(x, normalized_coordinates=False).round(4)
    array([[[1., 1.]]])
    """
    func = "spatial_soft_argmax2d"
    xp, input = _heatmaps(func, input)
    v.check_bool(func, "normalized_coordinates", normalized_coordinates)
    temp = _temperature(func, input, temperature, xp=xp)
    return hooks_for(xp).blockwise(
        func, _SOFT_ARGMAX_BLOCKS, input, temp, xp=xp, normalized=normalized_coordinates
    )


def _soft_argmax_kernel(input: Array, temp: Array | float, *, normalized: bool, xp: Any) -> Array:
    """Expected ``(x, y)`` under each map's softmax.

    Per map: weights ``w`` proportional to the softmax (the ``softmax`` hook, unnormalised where
    that saves a pass); each row's ``sum w`` and ``sum w x`` come from one matrix-vector product
    each (short, accurate dot products), and the rows then give ``(sum w x, sum w y) / sum w``.
    Maps go in groups of about ``4 * hooks.block_elements`` elements (one temporary per group).
    """
    b, n, h, w = input.shape
    hooks = hooks_for(xp)
    dtype = c.compute_dtype(input.dtype, xp=xp)
    flat = xp.reshape(xp.astype(input, dtype, copy=False), (b * n, h * w))
    if c.is_constant(temp, 1.0):
        scale = None
    elif isinstance(temp, float):
        scale = temp
    else:
        scale = xp.reshape(xp.broadcast_to(xp.astype(temp, dtype), (b, n, 1, 1)), (b * n, 1))
    xs = c.axis_coordinates(w, normalized, dtype=dtype, like=input, xp=xp)
    ys = c.axis_coordinates(h, normalized, dtype=dtype, like=input, xp=xp)
    ones = xp.ones((w,), dtype=dtype, device=device(input))
    out = []
    for (l0, l1), _ in c.block_plan(b * n, 1, h * w, 4 * hooks.block_elements(input)):
        logits = flat[l0:l1, ...]
        if scale is not None:
            logits = _scaled_logits(logits, scale if isinstance(scale, float) else scale[l0:l1, ...], xp=xp)
        weights = xp.reshape(hooks.softmax(logits, -1, xp=xp, normalize=False), (l1 - l0, h, w))
        rows = xp.matmul(weights, ones)
        total = xp.sum(rows, axis=-1)
        sum_x = xp.sum(xp.matmul(weights, xs), axis=-1)
        sum_y = xp.matmul(rows, ys)
        out.append(xp.stack([sum_x / total, sum_y / total], axis=-1))
    coords = out[0] if len(out) == 1 else xp.concat(out, axis=0)
    return xp.astype(xp.reshape(coords, (b, n, 2)), input.dtype, copy=False)


def render_gaussian2d(
    mean: Array, std: Array, size: tuple[int, int], normalized_coordinates: bool = True
) -> Array:
    """Render the PDF of a 2-D Gaussian on an ``(H, W)`` grid, normalised to sum to one.

    Each axis is a softmax of ``-(t - mu)**2 / (2 sigma**2)`` over the grid, so a mean far off the
    grid still gives a finite heatmap (its mass on the nearest border) and finite gradients.
    Per-axis weights at or below ``sqrt(finfo.smallest_normal)`` of the compute dtype (float32:
    1.1e-19; float64: 1.5e-154) are set to 0, so no product is a subnormal number (kornia's heatmap
    may hold them; the values differ by at most that floor). Half-precision inputs are computed in
    float32 and the heatmap cast back.

    Parameters
    ----------
    mean : array
        ``(mu_x, mu_y)``, shape ``(*, 2)``, real floating.
    std : array
        ``(sigma_x, sigma_y)``, shape ``(*, 2)``, broadcastable with ``mean``; same dtype and device.
    size : tuple of 2 ints
        ``(height, width)`` of the output.
    normalized_coordinates : bool, optional
        Whether ``mean`` and ``std`` are in corner-aligned ``[-1, 1]`` units (else pixels).

    Returns
    -------
    array
        Shape ``(*, H, W)``.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import render_gaussian2d
    >>> heat = render_gaussian2d(np.array([2.0, 1.0]), np.array([0.5, 0.5]), (3, 5), False)
    >>> heat.shape, np.unravel_index(heat.argmax(), heat.shape)
    ((3, 5), (np.int64(1), np.int64(2)))
    """
    func = "render_gaussian2d"
    xp = v.namespace(func, mean=mean, std=std)
    mean, std = v.check_floating(func, "mean", mean, xp), v.check_floating(func, "std", std, xp)
    for name, a in (("mean", mean), ("std", std)):
        if a.ndim < 1 or a.shape[-1] != 2:
            msg = f"{func}: expected `{name}` of shape (*, 2); got shape {tuple(a.shape)}"
            raise ValueError(msg)
    if mean.dtype != std.dtype:
        msg = f"{func}: expected `mean` and `std` of one dtype; got {mean.dtype} and {std.dtype}"
        raise TypeError(msg)
    if c.broadcast_shape(tuple(mean.shape), tuple(std.shape)) is None:
        msg = f"{func}: `std` of shape {tuple(std.shape)} does not broadcast with `mean` of shape {tuple(mean.shape)}"
        raise ValueError(msg)
    height, width = v.int_tuple(func, "size", size, 2, minimum=1, allow_int=False)
    v.check_bool(func, "normalized_coordinates", normalized_coordinates)
    return hooks_for(xp).blockwise(
        func, _GAUSSIAN_BLOCKS, mean, std, xp=xp, size=(height, width), normalized=normalized_coordinates
    )


def _gaussian_kernel(mean: Array, std: Array, *, size: tuple[int, int], normalized: bool, xp: Any) -> Array:
    height, width = size
    hooks = hooks_for(xp)
    dtype = c.compute_dtype(mean.dtype, xp=xp)
    mean_c = mean if mean.dtype == dtype else xp.astype(mean, dtype)
    std_c = std if std.dtype == dtype else xp.astype(std, dtype)
    xs = c.axis_coordinates(width, normalized, dtype=dtype, like=mean, xp=xp)
    ys = c.axis_coordinates(height, normalized, dtype=dtype, like=mean, xp=xp)
    scale = std_c * std_c * -2.0  # -2 sigma**2, both axes at once
    # Weights at or below sqrt(smallest normal) (float32: 1.1e-19) become 0, so that every product below
    # is 0 or a normal number: products with a subnormal result are several times slower on x86
    # CPUs (the outer product of workload W7 in benchmarks/bench_kornia.py, NumPy: 0.73 ms, 0.45 ms
    # flushed). A heatmap value changes by at most the floor (its other factor is at most 1).
    floor = math.sqrt(float(xp.finfo(dtype).smallest_normal))
    gauss_x = _gaussian_axis(xs, mean_c[..., 0:1], scale[..., 0:1], floor, hooks, xp=xp)
    gauss_y = _gaussian_axis(ys, mean_c[..., 1:2], scale[..., 1:2], floor, hooks, xp=xp)
    heat = hooks.outer(gauss_y, gauss_x, xp=xp)
    return heat if heat.dtype == mean.dtype else xp.astype(heat, mean.dtype)


def _gaussian_axis(t: Array, mu: Array, scale: Array, floor: float, hooks: Any, *, xp: Any) -> Array:
    """One axis of the Gaussian (``scale`` is ``-2 sigma**2``), normalised to sum to one over the grid ``t``,
    with weights at or below ``floor`` set to 0."""
    d = t - mu
    return hooks.softmax((d * d) / scale, -1, xp=xp, flush=floor)


# Blockwise: each map is read whole (H and W never split); the leading axes are blocked freely.
_SOFTMAX_BLOCKS = Blockwise(_softmax_kernel, whole=2)
_EXPECTATION_BLOCKS = Blockwise(
    _expectation_kernel, whole=2, outputs=lambda ndim, params: (Output(drop=2, new=(2,)),)
)
_SOFT_ARGMAX_BLOCKS = Blockwise(
    _soft_argmax_kernel, whole=2, outputs=lambda ndim, params: (Output(drop=2, new=(2,)),)
)
_GAUSSIAN_BLOCKS = Blockwise(
    _gaussian_kernel, whole=1, outputs=lambda ndim, params: (Output(drop=1, new=params["size"]),)
)
