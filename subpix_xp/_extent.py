"""Blob detection in a padded image that gives the keypoints of the unpadded one (size buckets).

A compiler (``jax.jit``) compiles one program per input shape, so a folder of photographs of
different sizes compiles the detector once per size. :func:`detect_blobs_within` instead takes an
image padded at the bottom and right to a *bucket* shape (:func:`bucket_shape`) together with the
true image size as an integer array (``extent``, traced like the pixels), so every image of a
bucket runs the same compiled program, and returns the keypoints that :func:`detect_blobs` returns
on the unpadded image (the same arithmetic on the same values; only sums fused differently by a
compiler may round differently).

Padding alone would change the result: the bilinear resizes align corners, so their sampling grid
depends on the size; the blurs reflect at the image's edge; the border rule, the refinement's
volume bounds, the octave count and the octave-to-input scale factors all depend on the size. Here
each of them takes the true size from ``extent``:

- the pixels outside the extent are replaced by copies of the edge (so the intensity range and
  the finite check see the image's own pixels only);
- each resize gathers with the sampling plan of the true sizes (integer arithmetic on traced
  sizes), each blur reads its rows and columns reflected about the true edge (a gather) and keeps
  the interior of a blur of that extended array, so every level matches the unpadded pyramid on
  the extent;
- per octave, the true size, whether the unpadded image has that octave at all, and its scale
  factors go to the keypoint stage, which takes extrema only inside the true octave (strict
  extrema never lie on its edge, so the 3x3x3 test reads only true values), bounds the refinement
  and the border rule by it, and maps coordinates with the true factors.

The one condition (:func:`fits`): no Gaussian kernel of a real octave of the image may be clamped
to a small level (``min_size`` keeps octaves larger than the default kernels).
"""

from __future__ import annotations

import contextvars
import math
from typing import Any

from . import _validation as v
from ._common import device
from ._pyramid import Octave, blur, kernel_size, octave_levels
from .backends import Hooks, hooks_for

Array = Any

__all__ = ["bucket_shape", "detect_blobs_within", "fits", "octave_sizes"]

# The extent of the current ``detect_blobs_within`` call, read by ``detect_blobs`` (``None``: none).
EXTENT: contextvars.ContextVar[Any] = contextvars.ContextVar("subpix_xp_extent", default=None)

_BUCKET_STEPS = (4, 5, 6, 7)  # bucket sides m * 2**e: four per doubling, at most 25% larger
_SMALLEST_BUCKET = 64


def bucket_shape(height: int, width: int) -> tuple[int, int]:
    """The bucket of an image: each side rounded up to the next ``m * 2**e``, ``m`` in 4..7, at least 64.

    Four sizes per doubling (64, 80, 96, 112, 128, 160, ..., 512, 640, 768, 896, 1024, ...): a side
    grows by at most 25% (12% on average), and a folder of photographs of many sizes needs few
    programs. A bucket side is a multiple of a large power of two, so the octaves of its pyramid
    halve exactly.

    Examples
    --------
    >>> bucket_shape(512, 500), bucket_shape(303, 384), bucket_shape(1080, 1920)
    ((512, 512), (320, 384), (1280, 2048))
    """
    return _bucket_side(height), _bucket_side(width)


def _bucket_side(n: int) -> int:
    n = max(int(n), _SMALLEST_BUCKET)
    e = max(0, n.bit_length() - 3)
    while True:
        for m in _BUCKET_STEPS:
            if m << e >= n:
                return m << e
        e += 1


def octave_sizes(height: int, width: int, min_size: int, double_image: bool) -> list[tuple[int, int]]:
    """The ``(H_o, W_o)`` of every octave of the pyramid of an image of ``height x width`` (static)."""
    h, w = (2 * height, 2 * width) if double_image else (height, width)
    sizes = [(h, w)]
    while min(h // 2, w // 2) > min_size:
        h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


def _level_kernels(n_levels: int, init_sigma: float, double_image: bool, extra_levels: int) -> list[int]:
    camera_sigma = 1.0 if double_image else 0.5
    sizes = []
    if init_sigma > camera_sigma:
        sizes.append(kernel_size(max(math.sqrt(init_sigma**2 - camera_sigma**2), 0.01)))
    step = 2.0 ** (1.0 / n_levels)
    sigma = max(init_sigma, camera_sigma)
    for _ in range(1, n_levels + extra_levels):
        sizes.append(kernel_size(sigma * math.sqrt(step * step - 1.0)))
        sigma *= step
    return sizes


def fits(
    shape: tuple[int, int],
    padded: tuple[int, int],
    *,
    n_levels: int = 3,
    init_sigma: float = 1.6,
    min_size: int = 32,
    double_image: bool = True,
) -> bool:
    """Whether :func:`detect_blobs_within` on ``shape`` padded to ``padded`` gives ``detect_blobs``' keypoints.

    True when ``padded`` is at least ``shape`` and no blur kernel of an octave of ``shape`` is
    clamped to its level (every such octave at least as large as the longest kernel).

    Examples
    --------
    >>> fits((303, 384), (320, 384)), fits((10, 10), (64, 64))
    (True, False)
    """
    if shape[0] > padded[0] or shape[1] > padded[1] or min(shape) < 1:
        return False
    longest = max(_level_kernels(n_levels, init_sigma, double_image, 3), default=1)
    smallest = min(min(s) for s in octave_sizes(*shape, min_size, double_image))
    return smallest >= max(longest, 3)


def detect_blobs_within(image: Array, extent: Array, num_features: int = 500, **options: Any) -> Any:
    """:func:`~subpix_xp.detect_blobs` on the top-left ``extent`` part of ``image``, at any padded size.

    ``image`` is ``(B, C, Hp, Wp)`` or ``(Hp, Wp)``; ``extent`` an integer array ``(2,)`` holding
    the true ``(H, W)`` of every image of the batch (``1 <= H <= Hp``, ``1 <= W <= Wp``). The
    pixels outside it are ignored. Returns the keypoints of ``detect_blobs(image[..., :H, :W],
    num_features, **options)``, provided :func:`fits` holds; ``extent`` may be traced, so under
    ``jax.jit`` one program serves every size of a bucket.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import detect_blobs
    >>> yy, xx = np.mgrid[0:60, 0:70]
    >>> img = np.exp(-((xx - 30.3) ** 2 + (yy - 28.6) ** 2) / (2 * 3.0**2))
    >>> padded = np.pad(img, ((0, 20), (0, 10)))
    >>> a = detect_blobs(img, 5)
    >>> b = detect_blobs_within(padded, np.asarray([60, 70]), 5)
    >>> bool(abs(a.x[0] - b.x[0]) < 1e-6 and abs(a.y[0] - b.y[0]) < 1e-6), int(b.valid.sum())
    (True, 1)
    """
    from ._detect import detect_blobs

    extent = _check_extent(image, extent)
    token = EXTENT.set(extent)
    try:
        return detect_blobs(image, num_features, **options)
    finally:
        EXTENT.reset(token)


def _check_extent(image: Array, extent: Array) -> Array:
    func = "detect_blobs_within"
    xp = v.namespace(func, image=image)
    extent = xp.asarray(extent, device=device(image))
    if tuple(extent.shape) != (2,):
        msg = f"{func}: expected `extent` of shape (2,), the true (H, W); got shape {tuple(extent.shape)}"
        raise ValueError(msg)
    if not xp.isdtype(extent.dtype, "integral"):
        msg = f"{func}: expected an integer array for `extent`; got dtype {extent.dtype}"
        raise TypeError(msg)
    if image.ndim in (2, 4) and hooks_for(xp).can_inspect(extent):
        size = (int(extent[0]), int(extent[1]))
        if not (1 <= size[0] <= image.shape[-2] and 1 <= size[1] <= image.shape[-1]):
            msg = (
                f"{func}: expected `extent` (H, W) within the image's {tuple(image.shape[-2:])}, "
                f"at least 1; got {size}"
            )
            raise ValueError(msg)
    return extent


# ---------------------------------------------------------------------------------------------
# The pyramid of the extent


def crop_to_extent(gray: Array, extent: Array, *, xp: Any) -> Array:
    """``gray`` ``(B, 1, Hp, Wp)`` with every pixel outside ``extent`` replaced by the nearest edge pixel."""
    hp, wp = gray.shape[-2:]
    rows = xp.minimum(xp.arange(hp, dtype=extent.dtype, device=device(extent)), extent[0] - 1)
    cols = xp.minimum(xp.arange(wp, dtype=extent.dtype, device=device(extent)), extent[1] - 1)
    return xp.take(xp.take(gray, rows, axis=2), cols, axis=3)


def _reflect(p: Array, n: Array, *, xp: Any) -> Array:
    """Indices ``p`` reflected into ``[0, n)`` about both ends, the edge sample not repeated (any ``p``)."""
    period = xp.maximum(2 * (n - 1), xp.ones_like(n))
    j = xp.remainder(p, period)
    return xp.minimum(xp.where(j >= n, period - j, j), n - 1)


def _resize_axis(x: Array, axis: int, n: Array, size: Array, out: int, *, xp: Any) -> Array:
    """``_pyramid._resize_axis`` of the first ``n`` samples of ``axis`` onto ``size`` (traced), in ``out`` slots.

    Outputs ``i < size`` are the aligned-corners interpolation of the first ``n`` inputs (the plan
    of :func:`~subpix_xp._pyramid._resize_plan` in integer arithmetic); outputs past ``size`` are
    those outputs reflected about its edge, as a blur's reflect padding reads them.
    """
    i = _reflect(xp.arange(out, dtype=n.dtype, device=device(n)), size, xp=xp)
    den = xp.maximum(size - 1, xp.ones_like(size))
    num = i * (n - 1)
    lower = xp.minimum(num // den, n - 1)
    frac = xp.astype(num - lower * den, x.dtype) / xp.astype(den, x.dtype)
    upper = xp.minimum(lower + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = out
    w = xp.reshape(frac, tuple(shape))
    a = xp.take(x, lower, axis=axis)
    b = xp.take(x, upper, axis=axis)
    return a * (1.0 - w) + b * w


def _resize(
    x: Array, true: tuple[Array, Array], size: tuple[Array, Array], out: tuple[int, int], *, xp: Any
) -> Array:
    """Resize the ``true`` part of ``x``'s last two axes to ``size``, laid into ``out``-shaped buckets."""
    x = _resize_axis(x, x.ndim - 1, true[1], size[1], out[1], xp=xp)
    return _resize_axis(x, x.ndim - 2, true[0], size[0], out[0], xp=xp)


def scale_pyramid_within(
    image: Array,
    extent: Array,
    n_levels: int,
    init_sigma: float,
    min_size: int,
    double_image: bool,
    extra_levels: int,
    hooks: Hooks,
    *,
    xp: Any,
) -> tuple[list[Octave], list[tuple[Array, Array, Array]]]:
    """:func:`~subpix_xp._pyramid.scale_pyramid` of the ``extent`` part of ``image``, in static shapes.

    Each octave is laid out in the bucket's octave size (the padded image's) plus a margin, and
    starts as the reflection of its true part about the true edge (the resize writes it so). A
    symmetric blur of a reflected signal is the reflection of the blur with reflect padding, so
    past the true edge every level holds what the unpadded pyramid's padding reads there, except
    near the array's end, from where the filter hook's own padding spreads inwards by a kernel
    radius per blur: the margin is the sum of an octave's radii, so it never reaches the true part.
    Returns
    the octaves (``to_input`` holds the true factors as 0-d arrays) and, per octave, ``(h, w,
    real)``: the true octave size and whether the unpadded image has that octave (0-d arrays).
    """
    height, width = extent[0], extent[1]
    hp, wp = image.shape[-2:]
    margin = sum(k // 2 for k in _level_kernels(n_levels, init_sigma, double_image, extra_levels))
    camera_sigma = 1.0 if double_image else 0.5
    true = (height, width)
    bucket = (hp, wp)
    if double_image:
        true, bucket = (2 * height, 2 * width), (2 * hp, 2 * wp)
    x = _resize(image, (height, width), true, (bucket[0] + margin, bucket[1] + margin), xp=xp)
    if init_sigma > camera_sigma:
        x = blur(x, max(math.sqrt(init_sigma**2 - camera_sigma**2), 0.01), hooks, xp=xp)
    sigma0 = max(init_sigma, camera_sigma)
    step = 2.0 ** (1.0 / n_levels)
    count = n_levels + extra_levels
    real = xp.ones((), dtype=xp.bool, device=device(image))
    dtype = image.dtype

    def factor(n: Array, o: Array) -> Array:
        one = xp.ones_like(o)
        ratio = xp.astype(n - 1, dtype) / xp.astype(xp.maximum(o - 1, one), dtype)
        return xp.where(o > 1, ratio, xp.ones_like(ratio))

    octaves, inside = [], []
    while True:
        levels = octave_levels(x, sigma0, step, count, hooks, xp=xp)
        to_input = (factor(width, true[1]), factor(height, true[0]))
        octaves.append(Octave(tuple(levels), sigma0, to_input, xp))
        inside.append((true[0], true[1], real))
        if min(bucket[0] // 2, bucket[1] // 2) <= min_size:
            return octaves, inside
        one = xp.ones_like(true[0])
        half = (
            xp.maximum(true[0] // 2, one),
            xp.maximum(true[1] // 2, one),
        )  # >= 1 on octaves the image lacks
        real = real & (xp.minimum(half[0], half[1]) > min_size)
        bucket = (bucket[0] // 2, bucket[1] // 2)
        seed = levels[count - extra_levels]
        x = _resize(seed, true, half, (bucket[0] + margin, bucket[1] + margin), xp=xp)
        true = half
