"""Generic hooks: the reference implementations, written against the Array API standard only.

Every backend module starts from these and overrides only what its library does faster. The
test-suite holds each override against the function here.
"""

from __future__ import annotations

from typing import Any

Array = Any
Namespace = Any


def _window_reduce(x: Array, window: tuple[int, ...], reduce: Any) -> Array:
    """Slide ``reduce`` (``maximum`` or ``minimum``) over the trailing ``len(window)`` axes.

    Separable: one axis at a time, combining shifted slices by doubling the covered length, so a
    window of length ``k`` costs ``O(log k)`` passes per axis.
    """
    ndim = x.ndim
    for offset, k in enumerate(window):
        axis = ndim - len(window) + offset
        x = _axis_window_reduce(x, axis, k, reduce)
    return x


def _axis_window_reduce(x: Array, axis: int, k: int, reduce: Any) -> Array:
    n = x.shape[axis]
    out_len = n - k + 1

    def take(a: Array, start: int, length: int) -> Array:
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, start + length)
        return a[tuple(index)]

    covered, acc = 1, x
    while covered * 2 <= k:
        length = acc.shape[axis] - covered
        acc = reduce(take(acc, 0, length), take(acc, covered, length))
        covered *= 2
    if covered == k:
        return acc
    # acc[i] covers [i, i + covered); two overlapping windows cover [i, i + k).
    return reduce(take(acc, 0, out_len), take(acc, k - covered, out_len))


def window_max(x: Array, window: tuple[int, ...], *, xp: Namespace) -> Array:
    """Maximum over every full window of size ``window`` on the trailing axes ("valid" mode).

    Entry ``i`` of an axis of length ``n`` covers positions ``i .. i + k - 1``, so the result has
    ``n - k + 1`` entries there. NaN propagates, as ``maximum`` does.
    """
    return _window_reduce(x, window, xp.maximum)


def window_min(x: Array, window: tuple[int, ...], *, xp: Namespace) -> Array:
    """Minimum over every full window on the trailing axes; see :func:`window_max`."""
    return _window_reduce(x, window, xp.minimum)


def pad(x: Array, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Namespace) -> Array:
    """Pad the trailing ``len(widths)`` axes with ``value`` (``widths`` holds ``(before, after)``)."""
    ndim = x.ndim
    for offset, (before, after) in enumerate(widths):
        axis = ndim - len(widths) + offset
        parts = []
        for width in (before, after):
            shape = list(x.shape)
            shape[axis] = width
            parts.append(xp.full(tuple(shape), value, dtype=x.dtype, device=_device(x)))
        if before or after:
            x = xp.concat([parts[0], x, parts[1]], axis=axis)
    return x


def expand(values: Array, index: Array, base: Array, *, xp: Namespace) -> Array:
    """Write ``values`` at the strictly increasing flat positions ``index`` of the 1-D ``base``.

    Scatter-free: every position looks up its rank among ``index`` with ``searchsorted``, so the
    result is differentiable in ``values`` and ``base`` and ``base`` is never modified.
    """
    n = index.shape[0]
    if n == 0:
        return base
    positions = xp.arange(base.shape[0], dtype=index.dtype, device=_device(base))
    rank = xp.clip(xp.searchsorted(index, positions), 0, n - 1)
    hit = xp.take(index, rank) == positions
    return xp.where(hit, xp.take(values, rank), base)


def can_inspect(x: Array) -> bool:
    """Whether reading an array's values costs no device synchronisation and no tracing error."""
    return True


def prefers_static_shapes(x: Array) -> bool:
    """Whether the static-shape (dense) algorithms are the better choice for this array."""
    return False


def supports_dynamic_shapes(x: Array) -> bool:
    """Whether data-dependent shapes (``nonzero``) are allowed on this array (not traced, not lazy)."""
    return True


def _device(x: Array) -> Any:
    from array_api_compat import device

    return device(x)
