"""NumPy hooks: in-place scatter, ``np.pad``, a separable filter (OpenCV, else banded matrix products); window reductions stay generic.

The window reductions stay generic: the generic hook is already a few vectorised passes, and
``scipy.ndimage.maximum_filter`` lets NaN lose (``fmax``) where ``maximum`` propagates it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from . import GENERIC, _generic
from ._helpers import axis_slice


def pad(x: Any, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Any) -> Any:
    """``np.pad``'s result without its per-call overhead (2-3 times faster on NMS's mask blocks):
    one uninitialised buffer, the input copied into its centre, and only the padded slabs filled.

    Not ``array_api_extra.pad``: it calls ``np.pad`` and measured 1.5-3.5 times slower here (11 vs
    38 us on a 16x16 map, 92 vs 142 us on a 32x128x128 volume)."""
    import numpy as np

    lead = x.ndim - len(widths)
    sides = x.shape[lead:]
    out = np.empty(x.shape[:lead] + tuple(n + a + b for n, (a, b) in zip(sides, widths)), dtype=x.dtype)
    centre: tuple[slice, ...] = tuple(slice(a, a + n) for n, (a, _) in zip(sides, widths))
    out[(slice(None),) * lead + centre] = x
    for axis, (n, (a, b)) in enumerate(zip(sides, widths), start=lead):
        for slab, width in ((slice(0, a), a), (slice(a + n, None), b)):
            if width:
                out[(slice(None),) * axis + (slab,)] = value
    return out


def expand(values: Any, index: Any, base: Any, *, xp: Any) -> Any:
    # ``base`` is the caller's scratch array (see the generic hook): scatter into it, unless it is a
    # read-only view (a broadcast, a frozen array), which is copied first.
    out = base if base.flags.writeable else base.copy()
    out[index] = values
    return out


def softmax(x: Any, axis: int, *, xp: Any, normalize: bool = True, flush: float = 0.0) -> Any:
    """In place in one buffer; NumPy's ``exp`` has no slow path, so no clamp (exact tails)."""
    import numpy as np

    if x.dtype.kind != "f" or x.size == 0:
        return _generic.softmax(x, axis, xp=xp, normalize=normalize, flush=flush)
    e = np.subtract(x, np.max(x, axis=axis, keepdims=True))
    np.exp(e, out=e)
    if normalize:
        e /= np.sum(e, axis=axis, keepdims=True)
        if flush > 0:
            np.copyto(e, 0, where=e <= flush)
    return e


def outer(a: Any, b: Any, *, xp: Any) -> Any:
    """``einsum``: one product per element like the generic broadcast, 1.4-1.6x faster on float rows of
    tens to hundreds of elements (fewer per-row dispatches than the broadcasting ``multiply``)."""
    import numpy as np

    if a.dtype != b.dtype or a.dtype.kind != "f":
        return _generic.outer(a, b, xp=xp)
    return np.einsum("...i,...j->...ij", a, b)


# Output samples per matrix product of the separable filter: large enough that a product runs at
# BLAS speed, small enough that the band (``chunk + k - 1`` taps per output) wastes few flops.
_FILTER_CHUNK = 16


@functools.lru_cache(maxsize=64)
def _band(kernel: tuple[float, ...], chunk: int, dtype: str) -> Any:
    """The ``(chunk + k - 1, chunk)`` matrix whose column ``i`` holds ``kernel`` from row ``i`` (read-only)."""
    import numpy as np

    k = len(kernel)
    band = np.zeros((chunk + k - 1, chunk), dtype=dtype)
    cols = np.arange(chunk)
    for j, weight in enumerate(kernel):
        band[cols + j, cols] = weight
    band.flags.writeable = False
    return band


@functools.lru_cache(maxsize=256)
def _border_indices(n: int, radius: int) -> tuple[Any, Any]:
    """The source positions of the ``radius`` reflected samples before and after an axis of length ``n``."""
    import numpy as np

    source = np.array(_generic.reflect_tuple(n, radius, radius), dtype=np.intp)
    source.flags.writeable = False
    return source[:radius], source[radius + n :]


def _reflect_into(buffer: Any, axis: int, radius: int, n: int) -> None:
    """Fill ``buffer``'s reflected borders along ``axis`` from its samples ``radius .. radius + n - 1``,
    and zero whatever lies past them (the round-up to whole chunks).

    A border that reflects once (``radius < n``) is a reversed slice of the samples (``x[r] .. x[1]``
    before, ``x[n - 2] .. x[n - 1 - r]`` after): a strided copy, several times faster than a gather
    across the rows of a wide buffer. Longer borders gather :func:`_border_indices`.
    """
    import numpy as np

    def part(start: int, stop: int, step: int = 1) -> tuple[slice, ...]:
        return axis_slice(buffer.ndim, axis, start, stop, step)

    if radius < n:
        # Reversed slices of the buffer itself: samples ``radius + 1 .. 2 radius`` and ``n - 1 .. n + radius - 2``.
        buffer[part(0, radius)] = buffer[part(2 * radius, radius, -1)]
        buffer[part(radius + n, n + 2 * radius)] = buffer[part(n + radius - 2, n - 2, -1)]
    else:
        inner = buffer[part(radius, radius + n)]
        before, after = _border_indices(n, radius)
        buffer[part(0, radius)] = np.take(inner, before, axis=axis)
        buffer[part(radius + n, n + 2 * radius)] = np.take(inner, after, axis=axis)
    buffer[part(n + 2 * radius, buffer.shape[axis])] = 0


def separable_filter(x: Any, kernel: tuple[float, ...], *, xp: Any) -> Any:
    """The generic hook's filter: OpenCV's ``sepFilter2D`` where installed (:func:`finite_filter`), else
    banded matrix products (BLAS), one batched product per axis.

    The reflect-padded axis, rounded up to whole chunks of ``c = 16`` outputs and seen as
    overlapping windows of ``c + k - 1`` samples (a strided view, no copy), times the
    ``(c + k - 1, c)`` matrix whose column ``i`` holds the kernel from row ``i``. On a 1024x1024
    float32 image with an 11 to 25-tap Gaussian: 3-4 times faster than the generic taps and than
    ``scipy.ndimage.correlate1d`` (a 1-D loop in double precision, no faster than the taps here).
    The result is the generic hook's sums in another order (BLAS, with fused multiply-adds), in the
    input dtype: within a few units in the last place of the generic result. A product multiplies
    every sample of a window by the band, zeros included, so an input with infinities or NaN
    (``0 * inf`` would spread NaN across a chunk) takes the generic hook, as do other dtypes and
    even kernels.
    """
    import numpy as np

    k = len(kernel)
    if (
        k % 2 != 1
        or x.dtype not in (np.float32, np.float64)
        or x.ndim < 2
        or x.size == 0
        or not np.isfinite(np.sum(x))  # one fast pass; an overflowing sum only costs the generic path
    ):
        return _generic.separable_filter(x, kernel, xp=xp)
    return finite_filter(x, kernel)


def finite_filter(x: Any, kernel: tuple[float, ...]) -> Any:
    """:func:`separable_filter` of a finite float32 or float64 array of at least two axes, ``kernel``
    of odd length, unchecked (the PyTorch hook runs CPU tensors through it).

    OpenCV's ``sepFilter2D`` where OpenCV is installed and both axes are longer than the kernel's
    radius (one reflection: ``BORDER_REFLECT_101`` is this reflect), else the banded products of
    :func:`band_filter`. On a 1024x1024 float32 image with the pyramid's 11 to 25-tap Gaussians,
    one thread: OpenCV 1.7-6.4 ms, the banded products 6.7-9.6 ms, ``scipy.ndimage.correlate1d``
    23-31 ms. OpenCV sums in another order again (pairs of symmetric taps first), within a few
    units in the last place of the generic result, and runs on its own threads
    (``cv2.setNumThreads``).
    """
    cv2 = _opencv()
    if cv2 is None or len(kernel) // 2 >= min(x.shape[-2:]):
        return band_filter(x, kernel)
    import numpy as np

    h, w = x.shape[-2:]
    flat = np.ascontiguousarray(x).reshape(-1, h, w)
    out = np.empty(flat.shape, dtype=x.dtype)
    taps = np.asarray(kernel, dtype=x.dtype)
    for plane, into in zip(flat, out):
        got = cv2.sepFilter2D(plane, -1, taps, taps, dst=into, borderType=cv2.BORDER_REFLECT_101)
        if not np.shares_memory(got, into):  # an OpenCV that did not write into ``dst``
            into[...] = got
    return out.reshape(x.shape)


@functools.cache
def _opencv() -> Any:
    """The ``cv2`` module, or ``None`` where OpenCV is not installed or does not load."""
    try:
        import cv2
    except (ImportError, OSError):  # OSError: a system library of a non-headless build is missing
        return None
    return cv2


def band_filter(x: Any, kernel: tuple[float, ...]) -> Any:
    """:func:`separable_filter`'s banded products, unchecked, as :func:`finite_filter` takes them."""
    import numpy as np

    radius = len(kernel) // 2
    h, w = x.shape[-2:]
    flat = x.reshape(-1, h, w)
    lead = flat.shape[0]
    chunk = min(_FILTER_CHUNK, max(h, w))
    band = _band(tuple(float(v) for v in kernel), chunk, x.dtype.name)
    span = chunk + 2 * radius
    wide, tall = -(-w // chunk) * chunk, -(-h // chunk) * chunk
    # The chunks' windows as strided views (``sliding_window_view`` checks cost 40 us a call).
    strided = np.lib.stride_tricks.as_strided
    # Along y's padded buffer: (lead, tall + 2 radius, wide), its rows ``radius .. radius + h - 1`` filled
    # along x in place: (chunks, lead, h, chunk) = windows (chunks, lead, h, span) @ band, the product
    # written straight through a transposed view (BLAS takes its row stride; no permuting copy).
    padded = np.empty((lead, h, wide + 2 * radius), dtype=x.dtype)
    padded[:, :, radius : radius + w] = flat
    _reflect_into(padded, 2, radius, w)
    s0, s1, s2 = padded.strides
    along_x = strided(padded, (wide // chunk, lead, h, span), (s2 * chunk, s0, s1, s2), writeable=False)
    rows = np.empty((lead, tall + 2 * radius, wide), dtype=x.dtype)
    inner = rows[:, radius : radius + h].reshape(lead, h, wide // chunk, chunk).transpose(2, 0, 1, 3)
    np.matmul(along_x, band, out=inner)
    _reflect_into(rows, 1, radius, h)
    s0, s1, s2 = rows.strides
    along_y = strided(rows, (lead, tall // chunk, span, wide), (s0, s1 * chunk, s1, s2), writeable=False)
    out = np.matmul(band.T, along_y).reshape(lead, tall, wide)
    if tall != h or wide != w:
        out = np.ascontiguousarray(out[:, :h, :w])
    return out.reshape(x.shape)


# Entries per block of the stencil-extremum test: its few bool buffers stay in the L2 cache.
_EXTREMA_BLOCK = 1 << 16
# Steps compared densely over a block; the others only at the entries that pass those.
_DENSE_STEPS = 2


def stencil_extrema(x: Any, floor: Any, steps: tuple[int, ...], *, xp: Any) -> Any:
    """The generic test block by block: per row, blocks of :data:`_EXTREMA_BLOCK` entries compared
    with the floor and the first :data:`_DENSE_STEPS` steps into two reused bool buffers (``out=``
    and in-place ``&=``: no large temporaries), then, at the few entries that pass
    (``flatnonzero``), with the other steps (a minimum negated, which is exact). On a 3x1024x1024
    DoG octave with its face neighbours (1, row, level) about twice as fast as the generic hook's
    whole-array masks; the same comparisons (a NumPy scalar floor promotes as the generic
    broadcast does), so the same positions. Non-float inputs take the generic hook."""
    import numpy as np

    n, m = x.shape[-1], max(steps)
    if n <= 2 * m or x.dtype.kind != "f" or np.asarray(floor).dtype.kind != "f":
        return _generic.stencil_extrema(x, floor, steps, xp=xp)
    rows = x.reshape(-1, n)
    floors = np.broadcast_to(floor, (*x.shape[:-1], 1)).reshape(-1)
    size = min(_EXTREMA_BLOCK, n - 2 * m)
    above, below = np.empty(size, dtype=bool), np.empty(size, dtype=bool)
    found = [np.zeros((0,), dtype=np.intp)]
    for i in range(rows.shape[0]):
        row, limit = rows[i], floors[i]
        for start in range(m, n - m, size):
            k = min(size, n - m - start)
            c, a, b = row[start : start + k], above[:k], below[:k]
            np.greater(c, limit, out=a)
            np.less(c, -limit, out=b)
            for step in steps[:_DENSE_STEPS]:
                before, after = row[start - step : start - step + k], row[start + step : start + step + k]
                a &= c > before
                a &= c > after
                b &= c < before
                b &= c < after
            a |= b
            at = np.flatnonzero(a) + start
            if len(steps) > _DENSE_STEPS:
                value = row[at]
                sign, beat = np.sign(value), np.abs(value)  # neither 0 nor NaN here
                for step in steps[_DENSE_STEPS:]:
                    keep = (beat > sign * row[at - step]) & (beat > sign * row[at + step])
                    at, sign, beat = at[keep], sign[keep], beat[keep]
            found.append(at + i * n)
    return np.concatenate(found)


def blockwise(func: str, plan: Any, /, *arrays: Any, xp: Any, **params: Any) -> Any:
    """Run the kernel with NumPy's floating-point warnings silenced.

    Non-finite inputs give non-finite outputs confined to their windows (``inf - inf`` in a
    max-shifted softmax, a solve on an infinite patch): that is the documented result, not an
    accident to warn about, and the other backends do not warn either.
    """
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        return plan.kernel(*arrays, xp=xp, **params)


# About 1 MiB of float32 per temporary: a block's few live temporaries stay in the L2/L3 caches.
_BLOCK_ELEMENTS = 1 << 18


def block_elements(x: Any) -> int:
    return _BLOCK_ELEMENTS


HOOKS = dataclasses.replace(
    GENERIC,
    name="numpy",
    pad=pad,
    expand=expand,
    block_elements=block_elements,
    softmax=softmax,
    outer=outer,
    blockwise=blockwise,
    separable_filter=separable_filter,
    stencil_extrema=stencil_extrema,
)
