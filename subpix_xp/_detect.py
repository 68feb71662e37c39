"""Multi-scale blob detection: a difference-of-Gaussians scale space refined by :mod:`subpix_xp`.

The pipeline is kornia's ``ScaleSpaceDetector`` with a ``BlobDoG`` response, as the seed page
configures it (``ScalePyramid(3, 1.6, 32, double_image=True)``, ``minima_are_also_good=True``,
sub-pixel refinement without a strict-maxima bonus), built from this package's own operations:

1. :func:`~subpix_xp._pyramid.scale_pyramid`: Gaussian octaves (the separable blur is the
   :attr:`Hooks.separable_filter` hook);
2. per octave, the DoG response ``L(k sigma) - L(sigma)`` over ``n_levels + 2`` levels, its strict
   3x3x3 maxima and minima (:func:`nms3d_minmax`) and their quadratic sub-voxel refinement
   (:class:`AdaptiveQuadInterp3d`, maxima and negated minima in one stacked call);
3. a minimum is a candidate when its refined negated response beats the response at that voxel
   (kornia's rule); candidates whose ``border_sigmas``-sigma disc does not stay ``border`` octave
   pixels inside the octave are dropped, *before* ranking (kornia ranks first, kornia#5741);
4. optionally (``spatial_refit``, the default) a 2-D re-fit of each kept centre at its refined
   scale, which removes the bias the 3-D fit's scale coupling leaves (kornia has no such step);
5. the ``num_features`` strongest candidates of each image over all octaves, in a fixed-size
   result: the static-shape selection (``argsort``) runs under ``jax.jit``, the sparse one
   (``nonzero``) where the backend allows data-dependent shapes; both give the same answer.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from array_api_compat import device

from . import _common as c
from . import _validation as v
from ._modules import AdaptiveQuadInterp3d
from ._nms import nms3d_minmax
from ._pyramid import scale_pyramid
from .backends import Hooks, hooks_for

Array = Any

__all__ = ["Blobs", "detect_blobs"]

_FUNC = "detect_blobs"
_EXTRA_LEVELS = 3  # a DoG octave searching n_levels levels needs n_levels + 3 Gaussian levels
_EDGE_RATIO = 10.0  # the re-fit's edge test: principal curvature ratio below 10 (SIFT's)
_EDGE_LIMIT = (_EDGE_RATIO + 1.0) ** 2
_REFIT_STEP = 0.6
_NEEDS = ("argsort", "take_along_axis", "searchsorted", "cumulative_sum")  # beyond what the subpix operations use  # the nearest pixel is within 0.5 of a true peak; a longer step is not one


class Blobs(NamedTuple):
    """Blob keypoints of a batch: every field is ``(B, num_features)``, strongest first.

    A ``NamedTuple``, so it unpacks, indexes and passes through ``jax.jit`` as a pytree.

    Attributes
    ----------
    x, y : array
        Sub-pixel centre in input pixels (column, row; pixel centres at integer indices).
    scale : array
        Detection scale: the Gaussian sigma of the refined DoG level, in input pixels
        (kornia's convention: ``sigma0 * 2 ** (level / n_levels)``; about 0.9 times the sigma of
        a Gaussian blob).
    response : array
        Refined DoG response (negated for bright blobs), the ranking score.
    bright : array
        Bool: a bright blob on a darker surround (a DoG minimum) rather than a dark one.
    valid : array
        Bool: the slot holds a detection. Unfilled slots (fewer candidates than
        ``num_features``) come last, with NaN coordinates and scale, response ``-inf``.
    """

    x: Array
    y: Array
    scale: Array
    response: Array
    bright: Array
    valid: Array


def detect_blobs(
    image: Array,
    num_features: int = 500,
    *,
    n_levels: int = 3,
    init_sigma: float = 1.6,
    min_size: int = 32,
    double_image: bool = True,
    minima_are_also_good: bool = True,
    threshold: float | None = None,
    border: float = 5.0,
    border_sigmas: float = 3.0,
    spatial_refit: bool = True,
    subpix_mode: str = "auto",
    n_iters: int = 5,
    max_subpixel_shift: float = 0.6,
    dilation_radius: int = 1,
) -> Blobs:
    """Detect the ``num_features`` strongest blobs of each image with sub-pixel centres and scales.

    A multi-scale difference-of-Gaussians detector (SIFT's keypoint stage without orientation or
    descriptor), equal to kornia's ``ScaleSpaceDetector(resp_module=BlobDoG(),
    scale_pyr_module=ScalePyramid(n_levels, init_sigma, min_size, double_image=double_image),
    scale_space_response=True, minima_are_also_good=True)`` with a bonus-free quadratic refiner
    (with ``spatial_refit=False``), for any Array API library. See the module notes for the
    pipeline.

    Parameters
    ----------
    image : array
        ``(B, C, H, W)``, real floating; the channels are averaged to one grey image. Intensity
        scale does not matter to the positions (only to ``threshold`` and ``response``).
    num_features : int, optional
        Number of keypoint slots per image (at least 0).
    n_levels : int, optional
        Scale levels searched per octave (scale step ``2 ** (1 / n_levels)``).
    init_sigma : float, optional
        Blur of the first level, in pixels of the first octave.
    min_size : int, optional
        No octave is added once the next one would be ``min_size`` pixels or smaller.
    double_image : bool, optional
        Start from the image upsampled two times (finds blobs down to sigma ~1 px).
    minima_are_also_good : bool, optional
        Detect bright blobs (DoG minima) as well as dark ones (DoG maxima).
    threshold : float, optional
        Keep only candidates whose response exceeds it (``None``: no threshold, as kornia).
    border, border_sigmas : float, optional
        Keep a blob when the disc of radius ``border_sigmas * sigma`` around it lies ``border``
        octave pixels inside its octave (kornia: ``mr_size / 2 = 3`` and 5).
    spatial_refit : bool, optional
        Re-fit each centre with a 2-D quadratic on the DoG interpolated at the refined scale. The
        3-D fit's scale-position coupling biases centres by 0.01 to 0.05 octave pixels; the re-fit
        removes most of it (see ``subpix-xp demo``). ``False`` reproduces kornia's centres.
    subpix_mode : {"auto", "patch", "conv"}, optional
        Refinement path of :class:`AdaptiveQuadInterp3d`.
    n_iters, max_subpixel_shift, dilation_radius : optional
        Passed to the refiner.

    Returns
    -------
    Blobs
        ``(x, y, scale, response, bright, valid)``, each ``(B, num_features)``, arrays of the
        caller's library on its device; floating fields in the image's dtype (float32 for a
        half-precision image, as kornia returns its frames).

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import detect_blobs
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> img = np.exp(-((xx - 30.3) ** 2 + (yy - 33.6) ** 2) / (2 * 3.0**2))[None, None]
    >>> blobs = detect_blobs(img, num_features=1)
    >>> [round(float(blobs.x[0, 0]), 2), round(float(blobs.y[0, 0]), 2), bool(blobs.bright[0, 0])]
    [30.3, 33.6, True]
    """
    xp = v.namespace(_FUNC, image=image)
    missing = [name for name in _NEEDS if not hasattr(xp, name)]
    if missing:
        msg = (f"{_FUNC}: the array library of `image` ({type(image).__module__}) lacks {', '.join(missing)}, "
               "which the keypoint selection needs; convert the image first (a Dask array: `.compute()`)")
        raise TypeError(msg)
    v.check_ndim(_FUNC, "image", image, 4, "(B, C, H, W)")
    v.check_floating(_FUNC, "image", image, xp)
    k = v.check_int(_FUNC, "num_features", num_features, minimum=0)
    n_levels = v.check_int(_FUNC, "n_levels", n_levels, minimum=1)
    init_sigma = v.check_number(_FUNC, "init_sigma", init_sigma, minimum=0.0)
    min_size = v.check_int(_FUNC, "min_size", min_size, minimum=1)
    v.check_bool(_FUNC, "double_image", double_image)
    v.check_bool(_FUNC, "minima_are_also_good", minima_are_also_good)
    v.check_bool(_FUNC, "spatial_refit", spatial_refit)
    if threshold is not None:
        threshold = v.check_number(_FUNC, "threshold", threshold)
    border = v.check_number(_FUNC, "border", border, minimum=0.0)
    border_sigmas = v.check_number(_FUNC, "border_sigmas", border_sigmas, minimum=0.0)
    if subpix_mode not in AdaptiveQuadInterp3d.MODES:
        msg = f"{_FUNC}: expected `subpix_mode` in {AdaptiveQuadInterp3d.MODES}; got {subpix_mode!r}"
        raise ValueError(msg)
    subpix = AdaptiveQuadInterp3d(
        mode=subpix_mode,
        n_iters=v.check_int(_FUNC, "n_iters", n_iters, minimum=0),
        strict_maxima_bonus=0.0,
        max_subpixel_shift=v.check_number(_FUNC, "max_subpixel_shift", max_subpixel_shift, minimum=0.0),
        dilation_radius=v.check_int(_FUNC, "dilation_radius", dilation_radius, minimum=0),
        allow_scale_steps=True,
    )
    b, ch, h, w = image.shape
    if min(h, w) < 1:
        msg = f"{_FUNC}: expected an image of at least 1x1 pixels; got shape {tuple(image.shape)}"
        raise ValueError(msg)

    dtype = c.compute_dtype(image.dtype, xp=xp)
    if b == 0 or ch == 0 or k == 0:
        return _empty(b, k, dtype, image, xp=xp)
    hooks = hooks_for(xp)
    gray = xp.astype(image, dtype)
    if ch > 1:
        gray = xp.mean(gray, axis=1, keepdims=True)

    octaves = scale_pyramid(gray, n_levels, init_sigma, min_size, double_image, _EXTRA_LEVELS, hooks, xp=xp)
    parts = [
        _octave_candidates(o.levels, o.sigma0, o.to_input, n_levels, k, minima_are_also_good, threshold, border,
                           border_sigmas, spatial_refit, subpix, hooks, xp=xp)
        for o in octaves
    ]
    fields = [xp.concat([p[i] for p in parts], axis=1) for i in range(len(parts[0]))]
    return _select(fields, k, xp=xp)


def _empty(b: int, k: int, dtype: Any, like: Array, *, xp: Any) -> Blobs:
    dev = device(like)
    nan = xp.full((b, k), math.nan, dtype=dtype, device=dev)
    no = xp.zeros((b, k), dtype=xp.bool, device=dev)
    return Blobs(nan, nan, nan, xp.full((b, k), -math.inf, dtype=dtype, device=dev), no, no)


def _octave_candidates(
    levels: Array, sigma0: float, to_input: tuple[float, float], n_levels: int, k: int, minima: bool,
    threshold: float | None, border: float, border_sigmas: float, spatial_refit: bool, subpix: AdaptiveQuadInterp3d,
    hooks: Hooks, *, xp: Any,
) -> tuple[Array, ...]:
    """The octave's ``min(k, volume)`` best candidates per image: ``(score, x, y, scale, bright, valid)``."""
    b = levels.shape[0]
    resp = levels[:, :, 1 : n_levels + 3, ...] - levels[:, :, : n_levels + 2, ...]
    _, _, d, h, w = resp.shape
    volume = d * h * w
    max_mask, min_mask = nms3d_minmax(resp)
    if minima:
        coords, values = subpix(xp.concat([resp, -resp], axis=0),
                                precomputed_nms_mask=xp.concat([max_mask, min_mask], axis=0))
        is_min = xp.reshape(min_mask, (b, volume))
    else:
        coords, values = subpix(resp, precomputed_nms_mask=max_mask)
        coords, values = xp.concat([coords, coords], axis=0), xp.concat([values, values], axis=0)
        is_min = xp.zeros((b, volume), dtype=xp.bool, device=device(resp))
    coords = xp.reshape(coords, (2 * b, 3, volume))
    values = xp.reshape(values, (2 * b, volume))
    # Per sign (max, min): value, level, x, y; then the extremum masks.
    inputs = [values[:b, ...], values[b:, ...]] + [coords[i * b : (i + 1) * b, c, ...] for c in range(3) for i in (0, 1)]
    inputs += [xp.reshape(max_mask, (b, volume)), is_min]

    def assess(arrays: list[Array]) -> list[Array]:
        return _assess(arrays, sigma0, n_levels, threshold, border, border_sigmas, (h, w), xp=xp)

    per_image = min(k, volume)
    if hooks.supports_dynamic_shapes(resp):
        where = xp.nonzero(xp.reshape(inputs[-2] | inputs[-1], (b * volume,)))[0]
        fields = assess([xp.take(xp.reshape(a, (b * volume,)), where) for a in inputs])
        select, kept = _top_sparse(fields[0], fields[5], where // volume, b, per_image, hooks, xp=xp)
        if where.shape[0] == 0:
            fields = [xp.zeros((1,), dtype=f.dtype, device=device(resp)) for f in fields]
        fields = [xp.reshape(xp.take(f, xp.reshape(select, (-1,))), (b, per_image)) for f in fields[:5]]
    else:
        # Strict extrema are never neighbours, so each sign has at most one per 2x2x2 block of the
        # searched levels 1..n_levels: a static bound on the candidates to sort.
        cap = 2 * math.ceil(n_levels / 2) * math.ceil(h / 2) * math.ceil(w / 2)
        fields = assess(inputs)
        order, kept = _top_static(fields[0], fields[5], per_image, cap, xp=xp)
        fields = [xp.take_along_axis(f, order, axis=1) for f in fields[:5]]
    score_k, level_k, x_k, y_k, bright_k = fields
    if spatial_refit:
        index_dtype = xp.asarray(0, device=device(resp)).dtype
        x_k, y_k = _refit_xy(xp.reshape(resp, (b, volume)), (d, h, w), level_k, x_k, y_k, index_dtype, xp=xp)
    fx, fy = to_input
    sigma_k = sigma0 * xp.exp(level_k * (math.log(2.0) / n_levels))
    return (
        xp.where(kept, score_k, xp.full_like(score_k, -math.inf)),
        x_k * fx,
        y_k * fy,
        sigma_k * math.sqrt(fx * fy),
        bright_k & kept,
        kept,
    )


def _assess(
    arrays: list[Array], sigma0: float, n_levels: int, threshold: float | None, border: float, border_sigmas: float,
    size: tuple[int, int], *, xp: Any,
) -> list[Array]:
    """Candidates from the refined extrema: ``[score, level, x, y, bright, valid]``, elementwise.

    ``arrays`` holds, per voxel, the refined value of the maximum and of the negated minimum, their
    ``(level, x, y)`` in that order (maximum first), and the masks of maxima and of minima. A
    minimum is kept when its refined negated response beats the maxima pass's value there (which
    is the sampled response, the voxel not being a maximum): kornia's rule. Works on any shape, so
    the sparse path runs it on the extrema alone and the static path on whole volumes.
    """
    v_max, v_min, l_max, l_min, x_max, x_min, y_max, y_min, is_max, is_min = arrays
    h, w = size
    bright = is_min & (v_min > v_max)
    score = xp.where(bright, v_min, v_max)
    level, x, y = (xp.where(bright, b, a) for a, b in ((l_max, l_min), (x_max, x_min), (y_max, y_min)))
    half = border_sigmas * sigma0 * xp.exp(level * (math.log(2.0) / n_levels))
    valid = (
        (is_max | bright)
        & xp.isfinite(score)
        & (x - half >= border) & (x + half <= (w - 1) - border)
        & (y - half >= border) & (y + half <= (h - 1) - border)
    )
    if threshold is not None:
        valid = valid & (score > threshold)
    return [xp.where(valid, score, xp.full_like(score, -math.inf)), level, x, y, bright, valid]


def _refit_xy(
    resp: Array, size: tuple[int, int, int], level: Array, x: Array, y: Array, index_dtype: Any, *, xp: Any,
) -> tuple[Array, Array]:
    """Re-fit each centre with a 2-D quadratic on the response interpolated at its refined level.

    The 3-D fit extrapolates the spatial gradient along scale through the cross derivatives
    ``d2R/dx ds``, which the coarse scale sampling gets wrong: its centres carry a bias of 0.01 to
    0.05 octave pixels that depends on the blob's scale and position. At a fixed scale a blob's
    response is symmetric about its centre, so one Newton step on ``(1 - t) R[l0] + t R[l0 + 1]``
    around the nearest pixel removes most of it. Where the step is not a peak's (a Hessian that is
    not definite, or elongated as on an edge: principal curvature ratio of 10 or more, SIFT's edge
    test) or is longer than 0.6 pixel, the 3-D result stays.
    """
    d, h, w = size
    if d < 2 or h < 3 or w < 3:
        return x, y
    l0 = xp.clip(xp.floor(level), 0.0, float(d - 2))
    t = xp.clip(level - l0, 0.0, 1.0)
    row = xp.clip(xp.round(y), 1.0, float(h - 2))
    col = xp.clip(xp.round(x), 1.0, float(w - 2))
    index = [xp.astype(a, index_dtype) for a in (l0, row, col)]
    centre = (index[0] * h + index[1]) * w + index[2]

    def at(dy: int, dx: int) -> Array:
        offset = dy * w + dx
        lower = xp.take_along_axis(resp, centre + offset, axis=1)
        upper = xp.take_along_axis(resp, centre + (h * w + offset), axis=1)
        return lower + t * (upper - lower)

    c = at(0, 0)
    east, west, south, north = at(0, 1), at(0, -1), at(1, 0), at(-1, 0)
    gx, gy = 0.5 * (east - west), 0.5 * (south - north)
    dxx, dyy = east - 2.0 * c + west, south - 2.0 * c + north
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    m = xp.maximum(xp.maximum(xp.abs(dxx), xp.abs(dyy)), xp.abs(dxy))
    trace = dxx + dyy
    # A blob-like peak: a definite Hessian, not elongated (SIFT's edge test, ratio 10).
    solved = xp.isfinite(det) & (det > 1e-6 * m * m) & (m > 0) & (trace * trace * _EDGE_RATIO < _EDGE_LIMIT * det)
    safe = xp.where(solved, det, xp.ones_like(det))
    sx = -(dyy * gx - dxy * gy) / safe
    sy = -(dxx * gy - dxy * gx) / safe
    ok = solved & (xp.abs(sx) <= _REFIT_STEP) & (xp.abs(sy) <= _REFIT_STEP)
    return xp.where(ok, col + sx, x), xp.where(ok, row + sy, y)


def _top_sparse(
    score: Array, valid: Array, image: Array, b: int, k: int, hooks: Hooks, *, xp: Any,
) -> tuple[Array, Array]:
    """``(select, kept)`` ``(B, k)``: the ``k`` best valid entries per image of 1-D candidate lists.

    ``image`` is each entry's image (ascending, entries in volume order). Ranks as a stable
    descending ``argsort`` of each image's volume would (ties: the earlier voxel), found with
    ``nonzero``. ``select`` indexes the lists; slots past an image's last valid entry hold 0 and
    ``kept`` False.
    """
    dev = device(score)
    where = xp.nonzero(valid)[0]
    select = xp.zeros(b * k, dtype=where.dtype, device=dev)
    kept = xp.zeros(b * k, dtype=xp.bool, device=dev)
    if where.shape[0] > 0 and k > 0:
        by_value = xp.argsort(xp.take(score, where), descending=True, stable=True)
        grouped = xp.take(by_value, xp.argsort(xp.take(image, xp.take(where, by_value)), stable=True))
        owner = xp.astype(xp.take(image, xp.take(where, grouped)), where.dtype)
        rank = xp.arange(grouped.shape[0], dtype=where.dtype, device=dev) - xp.searchsorted(owner, owner, side="left")
        keep = xp.nonzero(rank < k)[0]
        slot = xp.take(owner, keep) * k + xp.take(rank, keep)  # strictly increasing
        select = hooks.expand(xp.take(where, xp.take(grouped, keep)), slot, select, xp=xp)
        kept = hooks.expand(xp.ones(slot.shape, dtype=xp.bool, device=dev), slot, kept, xp=xp)
    return xp.reshape(select, (b, k)), xp.reshape(kept, (b, k))


def _top_static(score: Array, valid: Array, k: int, cap: int, *, xp: Any) -> tuple[Array, Array]:
    """The same as :func:`_top_sparse` with static shapes (``jax.jit``): no ``nonzero``.

    The valid positions of each row, at most ``cap`` of them, are packed in order into ``cap``
    slots (a running count and ``searchsorted``), and only those slots are sorted. ``cap`` must
    bound the valid count of every row; a sort of the whole row is the fallback when it does not
    save anything.
    """
    b, n = score.shape
    if cap >= n:
        order = xp.argsort(score, axis=1, descending=True, stable=True)[:, :k]
        return order, xp.take_along_axis(valid, order, axis=1)
    dev = device(score)
    count = xp.cumulative_sum(xp.astype(valid, xp.int32), axis=1)
    index = xp.astype(count, xp.asarray(0, device=dev).dtype)  # the default integer dtype
    rows = xp.reshape(xp.arange(b, dtype=index.dtype, device=dev), (b, 1))
    keys = xp.reshape(index + rows * (n + 1), (b * n,))  # non-decreasing over the whole batch
    slot = xp.reshape(xp.arange(1, cap + 1, dtype=index.dtype, device=dev), (1, cap))
    where = xp.searchsorted(keys, xp.reshape(rows * (n + 1) + slot, (b * cap,)), side="left")
    position = xp.reshape(where, (b, cap)) - rows * n
    filled = slot <= index[:, n - 1 :]
    position = xp.where(filled, position, xp.zeros_like(position))
    packed = xp.where(filled, xp.take_along_axis(score, position, axis=1), xp.full(filled.shape, -math.inf,
                                                                                     dtype=score.dtype, device=dev))
    best = xp.argsort(packed, axis=1, descending=True, stable=True)[:, :k]
    return xp.take_along_axis(position, best, axis=1), xp.take_along_axis(filled, best, axis=1)


def _select(fields: list[Array], k: int, *, xp: Any) -> Blobs:
    """The ``k`` best of the concatenated per-octave candidates, padded to exactly ``k`` slots."""
    score, x, y, sigma, bright, kept = fields
    b, total = score.shape
    order = xp.argsort(score, axis=1, descending=True, stable=True)[:, :k]
    score, x, y, sigma, bright, kept = (xp.take_along_axis(a, order, axis=1) for a in fields)
    if total < k:
        pad = k - total
        dev = device(score)

        def padded(a: Array, value: Any) -> Array:
            return xp.concat([a, xp.full((b, pad), value, dtype=a.dtype, device=dev)], axis=1)

        score = padded(score, -math.inf)
        x, y, sigma = (padded(a, math.nan) for a in (x, y, sigma))
        bright, kept = padded(bright, False), padded(kept, False)
    nan = xp.full_like(x, math.nan)
    return Blobs(
        x=xp.where(kept, x, nan),
        y=xp.where(kept, y, nan),
        scale=xp.where(kept, sigma, nan),
        response=xp.where(kept, score, xp.full_like(score, -math.inf)),
        bright=bright & kept,
        valid=kept,
    )
