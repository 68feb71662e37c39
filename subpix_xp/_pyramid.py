"""Gaussian scale pyramid (the levels of kornia's ``ScalePyramid``), written against the Array API.

An octave is a stack of ``n_levels + extra_levels`` images, each the previous one blurred so that
level ``i`` carries a blur of ``sigma0 * 2 ** (i / n_levels)`` octave pixels. The first octave
starts from the input (bilinearly doubled with ``double_image``) blurred from the assumed camera
blur (0.5 input pixels) to ``init_sigma``; each further octave starts from the level of blur
``2 * sigma0`` of the previous one, resized to half its size. Resizes are bilinear with corners
aligned, so octave pixel ``(u, v)`` is input pixel ``(u (W - 1) / (W_o - 1), v (H - 1) / (H_o - 1))``.

Blurs are separable Gaussians (:attr:`Hooks.separable_filter`, reflect padding) with kornia's
kernel sizes: ``int(8 sigma + 1)`` rounded up to odd, clamped to the image on tiny levels.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from ._common import device
from .backends import Hooks

Array = Any

__all__ = ["Octave", "blur", "gaussian_kernel1d", "kernel_size", "octave_levels", "scale_pyramid"]


@dataclasses.dataclass(frozen=True)
class Octave:
    """One octave: its ``images``, the ``L`` levels ``(B, C, H_o, W_o)`` (:attr:`levels` stacks them),
    the blur ``sigma0`` of level 0 in octave pixels, and the factors that map octave pixels to input
    pixels along x and y."""

    images: tuple[Array, ...]
    sigma0: float
    to_input: tuple[float, float]
    xp: Any = dataclasses.field(repr=False, compare=False, default=None)

    @property
    def levels(self) -> Array:
        """The levels stacked, ``(B, C, L, H_o, W_o)`` (a new array: the detector reads :attr:`images`)."""
        return self.xp.stack(self.images, axis=2)


def kernel_size(sigma: float) -> int:
    """kornia's (and OpenCV's) Gaussian kernel size: ``int(8 sigma + 1)``, rounded up to odd."""
    size = int(2.0 * 4.0 * sigma + 1.0)
    return size + 1 if size % 2 == 0 else size


def gaussian_kernel1d(sigma: float, size: int) -> tuple[float, ...]:
    """A normalised, symmetric 1-D Gaussian of odd length ``size`` as Python floats."""
    half = size // 2
    taps = [math.exp(-0.5 * (i - half) ** 2 / (sigma * sigma)) for i in range(size)]
    total = math.fsum(taps)
    weights = [t / total for t in taps]
    # Mirror exactly, so the filter hooks may rely on the symmetry.
    return tuple(weights[min(i, size - 1 - i)] for i in range(size))


def octave_levels(x: Array, sigma0: float, step: float, count: int, hooks: Hooks, *, xp: Any) -> list[Array]:
    """The ``count`` levels of an octave from its level 0 ``x`` (blur ``sigma0``): level ``i`` is
    level ``i - 1`` blurred incrementally to ``sigma0 * step ** i``."""
    levels, sigma = [x], sigma0
    for _ in range(1, count):
        levels.append(blur(levels[-1], sigma * math.sqrt(step * step - 1.0), hooks, xp=xp))
        sigma *= step
    return levels


def blur(x: Array, sigma: float, hooks: Hooks, *, xp: Any) -> Array:
    """``x`` blurred over its last two axes by a Gaussian of ``sigma`` (kornia's kernel size), reflect-padded."""
    size = kernel_size(sigma)
    smallest = min(x.shape[-2:])
    if size > smallest:  # tiny level: clamp the kernel to the image, as kornia does
        size = smallest if smallest % 2 == 1 else smallest - 1
    if size <= 1:
        return x
    return hooks.separable_filter(x, gaussian_kernel1d(sigma, size), xp=xp)


@functools.lru_cache(maxsize=64)
def _resize_plan(n: int, size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]:
    """Source samples (lower, upper) and the weight of the upper one for each of ``size`` outputs."""
    step = (n - 1) / (size - 1) if size > 1 else 0.0
    lower = tuple(min(math.floor(i * step), n - 1) for i in range(size))
    upper = tuple(min(i0 + 1, n - 1) for i0 in lower)
    frac = tuple(i * step - i0 for i, i0 in enumerate(lower))
    return lower, upper, frac


def _resize_axis(x: Array, axis: int, size: int, hooks: Hooks, *, xp: Any) -> Array:
    """Linear interpolation of ``axis`` onto ``size`` samples, first and last sample centres aligned."""
    n = x.shape[axis]
    if n == size:
        return x
    lower, _, frac = _resize_plan(n, size)
    dev = device(x)
    shape = [1] * x.ndim
    shape[axis] = size
    w = xp.reshape(xp.asarray(frac, dtype=x.dtype, device=dev), tuple(shape))
    index = xp.asarray(lower, device=dev)  # one list converted (PyTorch: ~90 us per 1000 integers)
    a = hooks.take(x, index, axis, xp=xp)
    b = hooks.take(x, xp.minimum(index + 1, xp.full_like(index, n - 1)), axis, xp=xp)
    # ``a * (1 - w) + b * w`` in place: the gathers are fresh arrays, and a fresh result would cost
    # the page faults of a large new allocation (a library without in-place operators rebinds).
    a *= 1.0 - w
    b *= w
    a += b
    return a


def resize_bilinear(x: Array, size: tuple[int, int], hooks: Hooks, *, xp: Any) -> Array:
    """Bilinear resize of the last two axes to ``size`` ``(H, W)`` with ``align_corners=True``."""
    x = _resize_axis(x, x.ndim - 1, size[1], hooks, xp=xp)
    return _resize_axis(x, x.ndim - 2, size[0], hooks, xp=xp)


def scale_pyramid(
    image: Array,
    n_levels: int,
    init_sigma: float,
    min_size: int,
    double_image: bool,
    extra_levels: int,
    hooks: Hooks,
    *,
    xp: Any,
) -> list[Octave]:
    """The octaves of ``image`` ``(B, C, H, W)`` (real floating); see the module notes.

    Octaves are added while the seed of the next one would be larger than ``min_size`` on both
    axes (the first octave is always built).
    """
    height, width = image.shape[-2:]
    camera_sigma = 1.0 if double_image else 0.5
    x = image
    if double_image:
        x = resize_bilinear(x, (2 * height, 2 * width), hooks, xp=xp)
    if init_sigma > camera_sigma:
        x = blur(x, max(math.sqrt(init_sigma**2 - camera_sigma**2), 0.01), hooks, xp=xp)
    sigma0 = max(init_sigma, camera_sigma)
    step = 2.0 ** (1.0 / n_levels)
    count = n_levels + extra_levels

    octaves = []
    while True:
        levels = octave_levels(x, sigma0, step, count, hooks, xp=xp)
        h, w = x.shape[-2:]
        fx = (width - 1) / (w - 1) if w > 1 else 1.0
        fy = (height - 1) / (h - 1) if h > 1 else 1.0
        octaves.append(Octave(tuple(levels), sigma0, (fx, fy), xp))
        seed = levels[count - extra_levels]  # the level blurred by 2 * sigma0 when extra_levels >= 1
        sh, sw = seed.shape[-2:]
        if min(sh // 2, sw // 2) <= min_size:
            return octaves
        x = resize_bilinear(seed, (sh // 2, sw // 2), hooks, xp=xp)
