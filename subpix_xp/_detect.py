"""Multi-scale blob detection: a difference-of-Gaussians scale space refined by :mod:`subpix_xp`.

The pipeline is SIFT's keypoint stage (kornia's ``ScaleSpaceDetector`` with a ``BlobDoG``
response, as the seed page configures it: ``ScalePyramid(3, 1.6, 32, double_image=True)``,
``minima_are_also_good=True``, bonus-free quadratic refinement), built from this package's own
operations:

1. the image as one grey channel (integers divided by their dtype's largest value), scaled by a
   power of two to a peak in ``[0.5, 1)`` (exact, so only ``response`` changes, and every later
   product stays finite); NaN or infinite pixels are an error;
2. :func:`~subpix_xp._pyramid.scale_pyramid`: Gaussian octaves (the separable blur is the
   :attr:`Hooks.separable_filter` hook);
3. per octave, the DoG response ``L(k sigma) - L(sigma)`` over ``n_levels + 2`` levels and its
   strict 3x3x3 maxima and minima (:func:`nms3d_minmax`); with a ``threshold``, extrema below
   half of it are dropped (SIFT's pre-test), and where shapes may depend on data the same
   extrema are searched sparsely, at the voxels that pass the pre-test (:func:`_sparse_extrema`);
4. the ``max_candidates`` strongest extrema of each image over all octaves (a fixed budget, the
   same on every path: ``nonzero`` where shapes may depend on data, a top-k of the whole row
   under ``jax.jit``), refined by :func:`~subpix_xp._refine.refine` (the rule of
   :func:`iterative_quad_interp3d`, read with gathers); extrema whose refinement fails are dropped
   unless ``keep_unrefined``;
5. a minimum counts when its refined negated response beats the response at its voxel (kornia's
   rule); a keypoint whose ``border_sigmas``-sigma disc leaves the octave's ``border`` is dropped;
   then the contrast threshold on the refined response, SIFT's edge test on the 2-D Hessian of
   the DoG at the refined scale, and (``spatial_refit``) a 2-D re-fit of the centre there;
6. the ``num_features`` strongest per image, one per blob (``duplicate_radius``), in a fixed-size
   result.

Every step has static shapes after step 4's selection, so eager and compiled runs, and every
backend, evaluate the same arithmetic on the same candidates.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from . import _common as c
from . import _extent as e
from . import _refine as r
from . import _validation as v
from ._common import device
from ._nms import nms3d_minmax
from ._pyramid import scale_pyramid
from ._topk import top_k_values
from .backends import Hooks, hooks_for

Array = Any

__all__ = ["Blobs", "detect_blobs"]

_FUNC = "detect_blobs"
_EXTRA_LEVELS = 3  # a DoG octave searching n_levels levels needs n_levels + 3 Gaussian levels
_SAME_SCALE_LEVELS = 1.5  # duplicates: scales within 1.5 levels (half an octave with 3 levels)
_THRESHOLD = 0.04 / 3  # OpenCV SIFT's contrastThreshold / nOctaveLayers, relative to the image's range
_MAX_SENSITIVITY = 5000.0  # input pixels per intensity range: the least stable 1% of keypoints on photographs
# The default call's candidate budget (4 x 500): a call for fewer keypoints refines as many, so its
# keypoints are the leading rows of the default call's (most strong extrema of photographs are edges).
_MIN_BUDGET = 2000
# Beyond what the subpix operations use.
_NEEDS = ("argsort", "take_along_axis", "searchsorted", "cumulative_sum")


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
    threshold: float | None = _THRESHOLD,
    edge_ratio: float | None = 10.0,
    max_sensitivity: float | None = _MAX_SENSITIVITY,
    duplicate_radius: float | None = 0.75,
    border: float = 5.0,
    border_sigmas: float = 3.0,
    spatial_refit: bool = True,
    keep_unrefined: bool = False,
    max_candidates: int | None = None,
    n_iters: int = 5,
    max_subpixel_shift: float = 0.6,
) -> Blobs:
    """Detect the ``num_features`` strongest blobs of each image with sub-pixel centres and scales.

    A multi-scale difference-of-Gaussians detector (SIFT's keypoint stage without orientation or
    descriptor) for any Array API library: SIFT's contrast threshold and edge test, one keypoint
    per blob, a bound on how unstable a centre may be, and a 2-D re-fit of each centre at its
    refined scale. With ``threshold=None, edge_ratio=None, max_sensitivity=None,
    duplicate_radius=None, spatial_refit=False, keep_unrefined=True, max_candidates=0`` it is
    kornia's
    ``ScaleSpaceDetector(resp_module=BlobDoG(), scale_pyr_module=ScalePyramid(n_levels,
    init_sigma, min_size, double_image=double_image), scale_space_response=True,
    minima_are_also_good=True)`` with a bonus-free quadratic refiner. See the module notes.

    Parameters
    ----------
    image : array
        ``(H, W)`` (one grey image) or ``(B, C, H, W)`` (the channels are averaged to grey), real
        floating or integer (integers are divided by their dtype's largest value, in float32).
        Scaling the intensities by a constant changes nothing but ``response``.
    num_features : int, optional
        Number of keypoint slots per image (at least 0).
    n_levels : int, optional
        Scale levels searched per octave (scale step ``2 ** (1 / n_levels)``).
    init_sigma : float, optional
        Blur of the first level, in pixels of the first octave.
    min_size : int, optional
        No octave is added once the next one would be ``min_size`` pixels or smaller.
    double_image : bool, optional
        Start from the image upsampled two times (finds blobs down to a sigma of about 1 px).
    minima_are_also_good : bool, optional
        Detect bright blobs (DoG minima) as well as dark ones (DoG maxima).
    threshold : float or None, optional
        Contrast threshold, relative to each image's intensity range ``max - min``: a keypoint's
        refined ``|DoG|`` must exceed ``threshold * (max - min)`` (extrema below half of it are
        not refined, SIFT's pre-test). The default ``0.04 / 3`` is OpenCV SIFT's
        ``contrastThreshold / nOctaveLayers`` for an image spanning its full range. A constant
        image gives no keypoint. ``None``: no threshold (kornia).
    edge_ratio : float or None, optional
        SIFT's edge test on the 2-D Hessian ``H`` of the DoG at the refined scale: a keypoint is
        dropped when ``det(H) <= 0`` or ``tr(H)**2 / det(H) >= (r + 1)**2 / r``. ``None``: none.
    max_sensitivity : float or None, optional
        A refined keypoint is dropped when its centre is not determined by its fit: when an error
        of ``e`` times the image's intensity range in the fit's gradient could move it by more
        than ``max_sensitivity * e`` input pixels (the Frobenius norm of the position rows of the
        inverse 3-D Hessian, in input pixels per intensity range). The default drops about 1% of
        the keypoints on photographs, those with a weak curvature in some direction of space or
        scale: they repeat about half as often as the others and are about 10 times worse
        localised on photographs imaged twice, and float32
        rounding alone moves them by more than 1e-3 px between backends. ``None``: none.
    duplicate_radius : float or None, optional
        One keypoint per blob: a keypoint is dropped when a stronger one lies within
        ``duplicate_radius`` times the smaller of their two sigmas, at a scale within 1.5 levels
        (a factor ``2 ** (1.5 / n_levels)``). The rule runs over the ``2 * num_features``
        strongest keypoints. ``None``: keep duplicates (kornia).
    border, border_sigmas : float, optional
        Keep a blob when the disc of radius ``border_sigmas * sigma`` around it lies ``border``
        octave pixels inside its octave (kornia: ``mr_size / 2 = 3`` and 5).
    spatial_refit : bool, optional
        Re-fit each centre with a 2-D quadratic on the DoG interpolated at the refined scale. The
        3-D fit's scale-position coupling biases centres by 0.01 to 0.05 octave pixels; the re-fit
        removes most of it. ``False`` reproduces kornia's centres.
    keep_unrefined : bool, optional
        Keep extrema whose refinement fails (no convergence within ``n_iters``, a step onto the
        border, a singular fit) at their grid position, as kornia does. By default they are
        dropped, as SIFT does: on real photographs they are the worst-localised keypoints.
    max_candidates : int or None, optional
        Extrema refined per image, over all its octaves: the strongest by ``|DoG|`` at their voxel
        (ties: the earlier octave and voxel). ``None``: ``max(4 * num_features, 2000)`` (so a call
        for fewer than 500 keypoints returns the leading rows of the default call's: on photographs
        most strong extrema are edges, and a budget of ``4 * num_features`` left ``num_features=100``
        with 62 keypoints on ``camera``); ``0``: all of them (kornia). The budget is the same on
        every backend and path, so every path returns the same keypoints.
    n_iters, max_subpixel_shift : optional
        The quadratic refinement's iterations and step threshold (see
        :func:`iterative_quad_interp3d`).

    Returns
    -------
    Blobs
        ``(x, y, scale, response, bright, valid)``, each ``(B, num_features)`` (``(num_features,)``
        for an ``(H, W)`` image), arrays of the caller's library on its device; floating fields
        in the image's dtype (float32 for half-precision and integer images).

    Raises
    ------
    ValueError
        The image holds NaN or infinite pixels (checked where the values can be read without a
        device synchronisation; elsewhere, under ``jax.jit`` or on CUDA, such an image gets no
        valid keypoint).

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import detect_blobs
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> img = np.exp(-((xx - 30.3) ** 2 + (yy - 33.6) ** 2) / (2 * 3.0**2))
    >>> blobs = detect_blobs(img, num_features=5)
    >>> int(blobs.valid.sum()), round(float(blobs.x[0]), 2), round(float(blobs.y[0]), 2), bool(blobs.bright[0])
    (1, 30.3, 33.6, True)
    """
    xp = v.namespace(_FUNC, image=image)
    missing = [name for name in _NEEDS if not hasattr(xp, name)]
    if missing:
        msg = (
            f"{_FUNC}: the array library of `image` ({type(image).__module__}) lacks {', '.join(missing)}, "
            "which the keypoint selection needs; convert the image first (a Dask array: `.compute()`)"
        )
        raise TypeError(msg)
    single = image.ndim == 2
    if image.ndim not in (2, 4):
        msg = (
            f"{_FUNC}: expected `image` of shape (H, W) (one grey image) or (B, C, H, W); got shape "
            f"{tuple(image.shape)} (one (H, W, C) colour image: pass image.transpose(2, 0, 1)[None])"
        )
        raise ValueError(msg)
    if single:
        image = image[None, None, ...]
    k = v.check_int(_FUNC, "num_features", num_features, minimum=0)
    params = _Params(
        n_levels=v.check_int(_FUNC, "n_levels", n_levels, minimum=1),
        minima=v.check_bool(_FUNC, "minima_are_also_good", minima_are_also_good),
        threshold=_optional_number("threshold", threshold, 0.0),
        edge_ratio=_optional_number("edge_ratio", edge_ratio, 1.0),
        max_sensitivity=_optional_number("max_sensitivity", max_sensitivity, 0.0),
        border=v.check_number(_FUNC, "border", border, minimum=0.0),
        border_sigmas=v.check_number(_FUNC, "border_sigmas", border_sigmas, minimum=0.0),
        spatial_refit=v.check_bool(_FUNC, "spatial_refit", spatial_refit),
        keep_unrefined=v.check_bool(_FUNC, "keep_unrefined", keep_unrefined),
        budget=max(4 * k, _MIN_BUDGET)
        if max_candidates is None
        else v.check_int(_FUNC, "max_candidates", max_candidates, minimum=0),
        n_iters=v.check_int(_FUNC, "n_iters", n_iters, minimum=0),
        step=v.check_number(_FUNC, "max_subpixel_shift", max_subpixel_shift, minimum=0.0),
    )
    duplicate_radius = _optional_number("duplicate_radius", duplicate_radius, 0.0)
    init_sigma = v.check_number(_FUNC, "init_sigma", init_sigma, minimum=0.0)
    min_size = v.check_int(_FUNC, "min_size", min_size, minimum=1)
    v.check_bool(_FUNC, "double_image", double_image)
    b, ch, h, w = image.shape
    if min(h, w) < 1:
        msg = f"{_FUNC}: expected an image of at least 1x1 pixels; got shape {tuple(image.shape)}"
        raise ValueError(msg)

    hooks = hooks_for(xp)
    gray, dtype = _grey(image, hooks, xp=xp)
    if b == 0 or ch == 0 or k == 0:
        return _squeeze(_empty(b, k, dtype, image, xp=xp), single)
    extent = e.EXTENT.get()  # set by detect_blobs_within: the true size of a padded image
    if extent is not None:
        gray = e.crop_to_extent(gray, extent, xp=xp)
    gray, unit, span, usable = _normalise(gray, xp=xp)
    floor = None if params.threshold is None else params.threshold * span  # (B, 1)
    # The sensitivity bound in pixels per unit of the (scaled) response, (B, 1).
    steady = None
    if params.max_sensitivity is not None:
        steady = params.max_sensitivity / xp.where(span > 0, span, xp.ones_like(span))

    pyramid = (params.n_levels, init_sigma, min_size, double_image, _EXTRA_LEVELS, hooks)
    if extent is None:
        octaves, inside = scale_pyramid(gray, *pyramid, xp=xp), None
    else:
        octaves, inside = e.scale_pyramid_within(gray, extent, *pyramid, xp=xp)
    fields = _keypoints(octaves, params, (floor, steady), hooks, inside, xp=xp)
    if fields is None:
        return _squeeze(_empty(b, k, dtype, image, xp=xp), single)
    fields[0] = xp.where(usable, fields[0], xp.full_like(fields[0], -math.inf))
    same_scale = _SAME_SCALE_LEVELS * math.log(2.0) / params.n_levels
    blobs = _select(fields, k, duplicate_radius, same_scale, hooks, xp=xp)
    return _squeeze(blobs._replace(response=blobs.response / unit), single)


class _Params(NamedTuple):
    n_levels: int
    minima: bool
    threshold: float | None
    edge_ratio: float | None
    max_sensitivity: float | None
    border: float
    border_sigmas: float
    spatial_refit: bool
    keep_unrefined: bool
    budget: int
    n_iters: int
    step: float


def _optional_number(name: str, value: Any, minimum: float) -> float | None:
    if value is None:
        return None
    number = v.check_number(_FUNC, name, value, minimum=minimum)
    if not math.isfinite(number):
        msg = f"{_FUNC}: expected a finite number or None for `{name}`; got {value!r}"
        raise ValueError(msg)
    return number


def _grey(image: Array, hooks: Hooks, *, xp: Any) -> tuple[Array, Any]:
    """The image as one grey channel ``(B, 1, H, W)`` in the compute dtype, and that dtype.

    Integers are divided by their dtype's largest value (computed in float32); bool is 0 or 1.
    """
    if xp.isdtype(image.dtype, "real floating"):
        dtype = c.compute_dtype(image.dtype, xp=xp)
        gray = xp.astype(image, dtype)
    elif xp.isdtype(image.dtype, "integral") or image.dtype == xp.bool:
        dtype = xp.float32
        gray = xp.astype(image, dtype)
        if image.dtype != xp.bool:
            gray = gray / float(xp.iinfo(image.dtype).max)
    else:
        msg = (
            f"{_FUNC}: expected a real (floating, integer or bool) array for `image`; got dtype {image.dtype}"
        )
        raise TypeError(msg)
    if image.shape[1] > 1:
        gray = xp.mean(gray, axis=1, keepdims=True)
    return gray, dtype


def _normalise(gray: Array, *, xp: Any) -> tuple[Array, Array, Array, Array]:
    """``(scaled, unit, span, usable)``: the image scaled by a power of two to a peak in ``[0.5, 1)``.

    A power of two is exact, so the keypoints are those of the unscaled image; the scaling only
    keeps every later product finite (a float32 image near 1e38). ``unit`` ``(B, 1)`` is the
    factor, ``span`` ``(B, 1)`` the scaled image's ``max - min``, ``usable`` ``(B, 1)`` whether the
    image has only finite pixels. An image with a NaN or infinite pixel is an error where values
    can be read freely; elsewhere it is computed with those pixels at 0 and returns no keypoint.
    """
    b = gray.shape[0]
    finite = xp.isfinite(gray)
    usable = xp.all(xp.reshape(finite, (b, -1)), axis=1, keepdims=True)
    if hooks_for(xp).can_inspect(gray) and not bool(xp.all(usable)):
        msg = (
            f"{_FUNC}: `image` has NaN or infinite pixels; replace them first "
            "(for example with np.nan_to_num or the median of the finite pixels)"
        )
        raise ValueError(msg)
    gray = xp.where(finite, gray, xp.zeros_like(gray))
    flat = xp.reshape(gray, (b, -1))
    peak = xp.max(xp.abs(flat), axis=1, keepdims=True)
    positive = peak > 0
    exponent = xp.floor(xp.log2(xp.where(positive, peak, xp.ones_like(peak)))) + 1.0
    exponent = xp.clip(exponent, -100.0, 100.0)
    unit = xp.full_like(exponent, 2.0) ** (-exponent)
    gray = gray * xp.reshape(unit, (b, 1, 1, 1))
    flat = xp.reshape(gray, (b, -1))
    span = xp.max(flat, axis=1, keepdims=True) - xp.min(flat, axis=1, keepdims=True)
    return gray, unit, span, usable


def _squeeze(blobs: Blobs, single: bool) -> Blobs:
    return Blobs(*(f[0, ...] for f in blobs)) if single else blobs


def _empty(b: int, k: int, dtype: Any, like: Array, *, xp: Any) -> Blobs:
    dev = device(like)
    nan = xp.full((b, k), math.nan, dtype=dtype, device=dev)
    no = xp.zeros((b, k), dtype=xp.bool, device=dev)
    return Blobs(nan, nan, nan, xp.full((b, k), -math.inf, dtype=dtype, device=dev), no, no)


def _candidates(
    octaves: list[Any], p: _Params, floor: Array | None, hooks: Hooks, inside: list[Any] | None, *, xp: Any
) -> tuple[Any, ...] | None:
    """Every octave's DoG, laid end to end per image, with its strict extrema and their geometry.

    Returns ``(resp, is_min, score, candidate, cap, tables)`` with ``(B, T)`` arrays
    (``score``: ``|DoG|`` signed for the extremum's kind, exact at the candidates only;
    ``candidate``: the extrema worth refining; ``is_min``: the minima, ``None`` with a ``floor``,
    where a candidate's sign tells its kind), ``cap`` a static bound on the candidates of a row, and
    ``tables`` the per-octave ``(start, d, h, w, log sigma0, fx, fy, h_in, w_in)``: Python numbers,
    but with ``inside`` (the per-octave true ``(h, w, real)`` of a padded image, see
    :func:`~subpix_xp._extent.detect_blobs_within`) ``fx, fy, h_in, w_in`` are 0-d arrays and only
    extrema inside the true octave count; ``None`` when no octave can hold one.

    Few full-size arrays: the DoG is taken level by level straight into the one ``(B, T)`` row
    (a large temporary costs a fresh, page-faulting allocation). The extrema are :func:`nms3d_minmax`
    on each octave's view of that row, or, with a ``floor`` where shapes may depend on data (and
    the backend does not prefer static shapes: on an accelerator a few large passes beat many
    small ones), :func:`_sparse_extrema`: the same strict test at the voxels that pass SIFT's
    pre-test only.
    """
    kept, tables, cap, start = [], [], 0, 0
    for i, o in enumerate(octaves):
        h, w = o.images[0].shape[-2:]
        d = p.n_levels + 2
        if min(d, h, w) < 3:  # no strict 3x3x3 extremum fits
            continue
        kept.append(i)
        true = (h, w) if inside is None else inside[i][:2]
        tables.append((start, d, h, w, math.log(o.sigma0), *o.to_input, *true))
        start += d * h * w
        # Strict extrema are never neighbours: at most one of each kind per 2x2x2 block of the
        # searched levels 1..n_levels.
        cap += (2 if p.minima else 1) * math.ceil(p.n_levels / 2) * math.ceil(h / 2) * math.ceil(w / 2)
    if not kept:
        return None
    b = octaves[kept[0]].images[0].shape[0]
    resp = xp.concat([xp.reshape(g, (b, -1)) for i in kept for g in _dog(octaves[i].images, xp=xp)], axis=1)
    dynamic = hooks.supports_dynamic_shapes(resp) and not hooks.prefers_static_shapes(resp)
    if floor is not None and inside is None and dynamic:  # a padded image takes the dense path
        where, score, candidate = _sparse_extrema(resp, tables, 0.5 * floor, p.minima, hooks, xp=xp)
        return resp, None, score, candidate, cap, tables, where
    maxima, minima = [], []
    for i, (s, d, h, w, *_) in zip(kept, tables, strict=True):
        max_mask, min_mask = nms3d_minmax(xp.reshape(resp[:, s : s + d * h * w], (b, 1, d, h, w)))
        if inside is not None:
            within = _within(inside[i], h, w, xp=xp)
            max_mask, min_mask = max_mask & within, min_mask & within
        maxima.append(xp.reshape(max_mask, (b, -1)))
        minima.append(xp.reshape(min_mask, (b, -1)))
    is_max = maxima[0] if len(maxima) == 1 else xp.concat(maxima, axis=1)
    is_min = minima[0] if len(minima) == 1 else xp.concat(minima, axis=1)
    if not p.minima:
        is_min = xp.zeros_like(is_max)
    if floor is None:
        return resp, is_min, xp.where(is_min, -resp, resp), is_max | is_min, cap, tables, None
    # SIFT's pre-test, before refinement: the extremum beats half the floor (>= 0) in its own sign,
    # so a candidate's score is |DoG| and its sign tells its kind.
    half = 0.5 * floor
    candidate = is_max & (resp > half)
    if p.minima:
        candidate = candidate | (is_min & (resp < -half))
    return resp, None, xp.abs(resp), candidate, cap, tables, None


def _dog(levels: tuple[Array, ...], *, xp: Any) -> list[Array]:
    """The differences ``levels[j + 1] - levels[j]`` of an octave, taken in place in ``levels[1:]``
    (the pyramid's own arrays, which nothing reads after the DoG; a fresh array per level would cost
    its allocation): from the top down, so each level is subtracted before it changes. A level that
    is its predecessor (a blur too small to apply returns its input) is subtracted out of place."""
    out = list(levels)
    for j in range(len(out) - 1, 0, -1):
        if out[j] is out[j - 1]:
            out[j] = out[j] - out[j - 1]
        else:
            out[j] -= out[j - 1]  # a library without in-place operators rebinds
    return out[1:]


def _within(inside: tuple[Array, Array, Array], h: int, w: int, *, xp: Any) -> Array:
    """The ``(H_o, W_o)`` mask of a padded octave's true extent less its edge, where strict extrema
    can lie (so the 3x3x3 test read only true values); all false for an octave the image lacks."""
    true_h, true_w, real = inside
    rows = xp.reshape(xp.arange(h, dtype=true_h.dtype, device=device(true_h)), (h, 1))
    cols = xp.arange(w, dtype=true_w.dtype, device=device(true_w))
    return (rows <= true_h - 2) & (cols <= true_w - 2) & real


# The neighbours of a voxel, (level, row, column) steps, but its six face neighbours (compared
# densely first, :attr:`Hooks.stencil_extrema`).
_RING = tuple(
    (dl, dr, dc)
    for dl in (-1, 0, 1)
    for dr in (-1, 0, 1)
    for dc in (-1, 0, 1)
    if abs(dl) + abs(dr) + abs(dc) > 1
)


def _sparse_extrema(
    resp: Array, tables: list[tuple[Any, ...]], half: Array, minima: bool, hooks: Hooks, *, xp: Any
) -> tuple[Array, ...]:
    """The candidates of :func:`_candidates` with a floor, found mostly sparsely, compacted (:func:`_compact`).

    Each octave's volume, seen flat, goes through :attr:`Hooks.stencil_extrema` with the steps of
    its six face neighbours (one voxel, one row, one level: a few dense passes over the searched
    levels leave about 0.2% of them), which finds the voxels that beat ``half`` ``(B, 1)`` and
    those neighbours in a kind's sign; the border rows and columns (whose flat neighbours wrap
    around) are dropped, and the rest are compared with their 20 other neighbours at once. A
    minimum is compared negated (exact), so one pass serves both kinds: the same comparisons as
    :func:`nms3d_minmax`'s strict test, so the same extrema, at a fraction of its cost.
    """
    b, total = resp.shape
    flat = xp.reshape(resp, (-1,))
    found = []
    for s, d, h, w, *_ in tables:
        plane = h * w
        volume = d * plane
        # The searched levels 1 .. d - 2 are those with a level on either side.
        pos = hooks.stencil_extrema(resp[:, s : s + volume], half, (1, w, plane), xp=xp)
        image = pos // volume if b > 1 else xp.zeros_like(pos)
        local = pos - image * volume
        row, col = (local // w) % h, local % w
        inside = (row >= 1) & (row <= h - 2) & (col >= 1) & (col <= w - 2)
        pos = (image * total + s + local)[inside]
        found.append(_beat_ring(flat, pos, plane, w, minima, hooks, xp=xp))
    pos = found[0] if len(found) == 1 else xp.concat(found)
    return _compact(xp.sort(pos), b, total, flat, hooks, xp=xp)


def _beat_ring(flat: Array, pos: Array, plane: int, w: int, minima: bool, hooks: Hooks, *, xp: Any) -> Array:
    """The positions ``pos`` of one octave (``plane`` voxels a level, rows of ``w``) in ``flat`` whose
    value strictly beats its :data:`_RING` neighbours in its own sign (a maximum above 0 is larger, a
    minimum below 0 smaller; compared negated, which is exact), in their order."""
    value = hooks.take(flat, pos, 0, xp=xp)
    if not minima:
        pos, value = pos[value > 0], value[value > 0]
    sign, beat = xp.sign(value), xp.abs(value)  # a candidate's value is neither 0 nor NaN
    steps = [dl * plane + dr * w + dc for dl, dr, dc in _RING]
    at = pos[:, None] + xp.asarray(steps, dtype=pos.dtype, device=device(pos))
    near = xp.reshape(hooks.take(flat, xp.reshape(at, (-1,)), 0, xp=xp), at.shape)
    return pos[xp.all(beat[:, None] > sign[:, None] * near, axis=1)]


def _compact(pos: Array, b: int, total: int, flat: Array, hooks: Hooks, *, xp: Any) -> tuple[Array, ...]:
    """The candidates at the sorted flat positions ``pos`` of ``flat`` (``B`` rows of ``total``) as
    ``(where, score, filled)``, each ``(B, K)``: per row its candidates in position order (so a
    stable selection breaks ties as on the full row), padded to the longest row (``K >= 1``)."""
    dev = device(flat)
    image = pos // total
    rank = xp.arange(pos.shape[0], dtype=pos.dtype, device=dev) - xp.searchsorted(image, image, side="left")
    k = max(int(xp.max(rank)) + 1 if pos.shape[0] else 1, 1)
    slot = image * k + rank  # strictly increasing
    where = xp.zeros((b * k,), dtype=pos.dtype, device=dev)
    where = hooks.expand(pos - image * total, slot, where, xp=xp)
    score = xp.zeros((b * k,), dtype=flat.dtype, device=dev)
    score = hooks.expand(xp.abs(hooks.take(flat, pos, 0, xp=xp)), slot, score, xp=xp)
    filled = xp.zeros((b * k,), dtype=xp.bool, device=dev)
    filled = hooks.expand(xp.ones(pos.shape, dtype=xp.bool, device=dev), slot, filled, xp=xp)
    return tuple(xp.reshape(a, (b, k)) for a in (where, score, filled))


def _keypoints(
    octaves: list[Any],
    p: _Params,
    bounds: tuple[Array | None, Array | None],
    hooks: Hooks,
    inside: list[Any] | None,
    *,
    xp: Any,
) -> list[Array] | None:
    """The refined candidates of every octave: ``[score, x, y, log_sigma, bright]``, each ``(B, M)``.

    Coordinates and sigma in input pixels; ``score`` is finite where the candidate is valid and
    ``-inf`` elsewhere (so it alone carries the validity: one array, which a compiler computes once
    for every consumer, rather than a mask re-derived in each); ``bright`` holds where valid.
    ``bounds``: ``(floor, steady)``, the contrast floor and the largest sensitivity in input pixels
    per unit of the response (each ``(B, 1)`` or ``None``). ``inside``: see :func:`_candidates`.
    """
    floor, steady = bounds
    found = _candidates(octaves, p, floor, hooks, inside, xp=xp)
    if found is None:
        return None
    resp, is_min, score, candidate, cap, tables, where = found
    total = resp.shape[1]
    dev = device(resp)
    index_dtype = c.index_dtype(xp=xp)
    r.check_index_range(_FUNC, total + 1, index_dtype, xp=xp)
    m = min(cap if p.budget == 0 else p.budget, cap, total)
    if where is None:
        index, kept = r.select_candidates(score, candidate, m, hooks, xp=xp)
    else:  # the candidates come compacted (see _compact): select among them, then read their positions
        k = score.shape[1]
        index, kept = r.select_candidates(score, candidate, min(m, k), hooks, xp=xp)
        index = xp.where(kept, xp.take_along_axis(where, index, axis=1), xp.zeros_like(index))

    # Each candidate's octave geometry and scale: its octave's entry of a small table, chosen by
    # comparing its position with the octaves' starts (a few selects, no search, no gather).
    later = [index >= t[0] for t in tables[1:]]

    def table(column: int, dtype: Any) -> Array:
        # 0-d arrays, made in ``dtype`` (PyTorch would make a Python float float32 first).
        values = [xp.asarray(t[column], dtype=dtype, device=dev) for t in tables]
        out = xp.broadcast_to(values[0], index.shape)
        for beyond, value in zip(later, values[1:], strict=True):
            out = xp.where(beyond, value, out)
        return out

    geometry = tuple(table(i, index_dtype) for i in range(4))
    h, w = table(7, index_dtype), table(8, index_dtype)  # the true octave size (a padded image's)
    at_start = xp.take_along_axis(resp, index, axis=1)
    sign_min = at_start < 0 if is_min is None else xp.take_along_axis(is_min, index, axis=1)
    sign = xp.where(sign_min, -xp.ones_like(at_start), 1.0)
    level, x, y, value, refined, spread = r.refine(
        resp, index, sign, geometry, p.n_iters, p.step, hooks, xp=xp, bounds=(h, w)
    )
    if not p.keep_unrefined:
        kept = kept & refined
    # kornia's rule: a minimum counts when its refined negated response beats the response there.
    bright = sign_min & (value > at_start)
    log_sigma = table(4, resp.dtype) + level * (math.log(2.0) / p.n_levels)
    half = p.border_sigmas * xp.exp(log_sigma)
    right, bottom = xp.astype(w - 1, resp.dtype) - p.border, xp.astype(h - 1, resp.dtype) - p.border
    valid = (
        kept
        & (~sign_min | bright)
        & xp.isfinite(value)
        & (x - half >= p.border)
        & (x + half <= right)
        & (y - half >= p.border)
        & (y + half <= bottom)
    )
    if floor is not None:
        valid = valid & (value > floor) & (floor > 0)
    fx, fy = table(5, resp.dtype), table(6, resp.dtype)
    if steady is not None:  # an unrefined keypoint sits on its grid: nothing to be unsure of
        valid = valid & (~refined | (spread * xp.maximum(fx, fy) <= steady))
    if p.edge_ratio is not None or p.spatial_refit:
        fit = r.local_fit2d(resp, geometry, level, x, y, xp=xp, bounds=(h, w))
        if p.edge_ratio is not None:
            valid = valid & ~r.edge_like(fit[4], fit[5], fit[6], p.edge_ratio, xp=xp)
        if p.spatial_refit:
            x, y = r.refit_xy(fit, x, y, xp=xp)
    # An axis of one pixel maps with factor 0; no keypoint fits there, the floor keeps the log finite.
    log_area = 0.5 * xp.log(xp.maximum(fx * fy, xp.full_like(fx, 1e-30)))
    return [
        xp.where(valid, value, xp.full_like(value, -math.inf)),
        x * fx,
        y * fy,
        log_sigma + log_area,
        bright,
    ]


def _select(
    fields: list[Array], k: int, radius: float | None, scale_step: float, hooks: Hooks, *, xp: Any
) -> Blobs:
    """The ``k`` best of the concatenated per-octave candidates, one per blob, padded to ``k`` slots.

    ``fields`` as :func:`_keypoints` returns them (a candidate is valid where its score is above
    ``-inf``). Candidates are ordered by score (ties: octave, then the octave's own order); with
    ``radius`` the duplicates among the ``2 k`` strongest are dropped (:func:`duplicates`).
    """
    score = fields[0]
    b = score.shape[0]
    if radius is not None:
        score, order = top_k_values(score, 2 * k, xp=xp)
        fields = [score, *(xp.take_along_axis(a, order, axis=1) for a in fields[1:])]
        _, x, y, log_sigma, _ = fields
        valid, step = score > -math.inf, scale_step * (1.0 + 1e-6)
        block = hooks.block_elements(score)
        repeat = r.duplicates(x, y, log_sigma, valid, radius, step, xp=xp, block=block)
        score = xp.where(repeat, xp.full_like(score, -math.inf), score)
        fields[0] = score
    score, order = top_k_values(score, k, xp=xp)
    x, y, log_sigma, bright = (xp.take_along_axis(a, order, axis=1) for a in fields[1:])
    kept = score > -math.inf
    if order.shape[1] < k:
        pad = k - order.shape[1]
        dev = device(score)

        def padded(a: Array, value: Any) -> Array:
            return xp.concat([a, xp.full((b, pad), value, dtype=a.dtype, device=dev)], axis=1)

        score = padded(score, -math.inf)
        x, y, log_sigma = (padded(a, math.nan) for a in (x, y, log_sigma))
        bright, kept = padded(bright, False), padded(kept, False)
    nan = xp.full_like(x, math.nan)
    return Blobs(
        x=xp.where(kept, x, nan),
        y=xp.where(kept, y, nan),
        scale=xp.where(kept, xp.exp(log_sigma), nan),
        response=score,
        bright=bright & kept,
        valid=kept,
    )
