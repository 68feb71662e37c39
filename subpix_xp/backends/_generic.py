"""Generic hooks: the reference implementations, written against the Array API standard only.

Every backend module starts from these and overrides only what its library does faster. The
test-suite holds each override against the function here.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from ._helpers import axis_slice, device

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
        return a[axis_slice(a.ndim, axis, start, start + length)]

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
            parts.append(xp.full(tuple(shape), value, dtype=x.dtype, device=device(x)))
        if before or after:
            x = xp.concat([parts[0], x, parts[1]], axis=axis)
    return x


# Not ``array_api_extra.at(base)[index].set(values)``: that delegates to each library's scatter
# (NumPy in place, JAX ``.at``, a copy and ``__setitem__`` elsewhere), while this reference must stay
# scatter-free and differentiable on every standard library; the backends that scatter faster
# override ``expand`` with their native call.
def expand(values: Array, index: Array, base: Array, *, xp: Namespace) -> Array:
    """Write ``values`` at the strictly increasing flat positions ``index`` of the 1-D ``base``.

    ``base`` is the caller's scratch array: a backend may write into it and return it (NumPy does),
    so pass an array that nothing else reads afterwards. Here it is scatter-free: every position
    looks up its rank among ``index`` with ``searchsorted``, so the result is differentiable in
    ``values`` and ``base`` and ``base`` is left as it was.
    """
    n = index.shape[0]
    if n == 0:
        return base
    positions = xp.arange(base.shape[0], dtype=index.dtype, device=device(base))
    rank = xp.clip(xp.searchsorted(index, positions), 0, n - 1)
    hit = xp.take(index, rank) == positions
    return xp.where(hit, xp.take(values, rank), base)


def take(x: Array, index: Array, axis: int, *, xp: Namespace) -> Array:
    """``xp.take(x, index, axis=axis)`` for a 1-D integer ``index`` of non-negative, in-range positions.

    The contract leaves out negative positions, so a backend need not wrap them (array-api-compat's
    PyTorch ``take`` spends a full comparison pass on that) and may gather along the last axis with
    whatever kernel its library runs fastest there.
    """
    return xp.take(x, index, axis=axis)


def stencil_extrema(x: Array, floor: Array, steps: tuple[int, ...], *, xp: Namespace) -> Array:
    """Flat positions of the entries of ``x`` that strictly beat their neighbours ``steps`` away on the last axis, beyond ``floor``.

    With ``m = max(steps)`` (``steps``: positive integers), entry ``i`` of the last axis
    (``m <= i < n - m``, ``n = x.shape[-1]``) counts when ``x[..., i]`` is larger than
    ``x[..., i - s]`` and ``x[..., i + s]`` for every ``s`` in ``steps`` and than ``floor``, or
    smaller than all of them and than ``-floor``. ``floor`` (real, at least 0) broadcasts against
    ``x[..., :1]`` (one value per row). Returns the ascending positions of those entries in ``x``
    seen flat (row-major), a 1-D array of the default index dtype; NaN never counts. The sign of
    an entry tells its kind: a maximum is above ``floor >= 0``, a minimum below ``-floor``.
    A flat signal with ``steps = (1, w, w * h)`` is a volume's 3-D face-neighbour test.

    >>> import numpy as np
    >>> stencil_extrema(np.array([[0.0, 2.0, 1.0, -3.0, 0.5, 0.4]]), np.array([[1.0]]), (1,), xp=np)
    array([1, 3])
    """
    n, m = x.shape[-1], max(steps)
    if n <= 2 * m:  # no entry has all its neighbours
        return xp.nonzero(xp.zeros((0,), dtype=xp.bool, device=device(x)))[0]
    c = x[..., m : n - m]
    above, below = c > floor, c < -floor
    for step in steps:
        before, after = x[..., m - step : n - m - step], x[..., m + step : n - m + step]
        above = above & (c > before) & (c > after)
        below = below & (c < before) & (c < after)
    found = xp.nonzero(xp.reshape(above | below, (-1,)))[0]
    # Position j among the n - 2 m tested entries of each row is entry j % (n - 2 m) + m of that row.
    return found + 2 * m * (found // (n - 2 * m)) + m


def reflect_indices(n: int, before: int, after: int) -> list[int]:
    """Source positions of an axis of length ``n`` padded by reflection (``d c b | a b c d | c b a``).

    The edge sample is not repeated (NumPy's ``"reflect"``, PyTorch's ``"reflect"``, SciPy's
    ``"mirror"``); a pad wider than the axis keeps reflecting, and an axis of length 1 repeats.
    """
    return list(reflect_tuple(n, before, after))


@functools.lru_cache(maxsize=256)
def reflect_tuple(n: int, before: int, after: int) -> tuple[int, ...]:
    """:func:`reflect_indices` as a tuple, cached (a pyramid asks for the same few axes again and again)."""
    period = 2 * (n - 1)
    out = []
    for i in range(-before, n + after):
        j = i % period if period else 0
        out.append(period - j if j >= n else j)
    return tuple(out)


def separable_filter(x: Array, kernel: tuple[float, ...], *, xp: Namespace) -> Array:
    """Correlate each of the last two axes with the odd-length 1-D ``kernel``, reflect-padded.

    ``kernel`` is a tuple of Python floats (static, so a traced call sees constants); the output has
    ``x``'s shape and dtype. Padding reflects without repeating the edge sample (see
    :func:`reflect_indices`), so a constant image stays constant for a kernel summing to one. A
    symmetric kernel (a Gaussian) adds mirrored taps first, halving the multiplications.
    """
    k = len(kernel)
    if k % 2 != 1:
        msg = f"separable_filter: expected an odd-length kernel; got length {k}"
        raise ValueError(msg)
    radius = k // 2
    for axis in (x.ndim - 1, x.ndim - 2):
        n = x.shape[axis]
        if n == 0:
            continue
        index = xp.asarray(reflect_tuple(n, radius, radius), device=device(x))
        padded = xp.take(x, index, axis=axis)

        def tap(start: int, padded: Array = padded, axis: int = axis, n: int = n) -> Array:
            return padded[axis_slice(padded.ndim, axis, start, start + n)]

        if tuple(kernel) == tuple(reversed(kernel)):
            out = tap(radius) * kernel[radius]
            for j in range(radius):
                out = out + (tap(j) + tap(k - 1 - j)) * kernel[j]
        else:
            out = tap(0) * kernel[0]
            for j in range(1, k):
                out = out + tap(j) * kernel[j]
        x = out
    return x


def blockwise(func: str, plan: Any, /, *arrays: Array | None, xp: Namespace, **params: Any) -> Any:
    """Run the validated operation ``func``: here simply ``plan.kernel(*arrays, xp=xp, **params)``.

    ``plan`` is the operation's :class:`~subpix_xp.backends.Blockwise` declaration: its kernel
    computes the operation on whole in-memory arrays, and the declaration says how it can equally
    run on one block of a larger array. A chunked backend (Dask) overrides this hook to run the
    kernel block by block, on each chunk's own array library (see :mod:`subpix_xp.backends._dask`).
    """
    return plan.kernel(*arrays, xp=xp, **params)


def kth_largest(x: Array, k: int, *, xp: Namespace) -> Array:
    """The ``k``-th largest value along the last axis (``1 <= k <= x.shape[-1]``), kept as an axis of length 1."""
    return xp.sort(x, axis=-1, descending=True)[..., k - 1 : k]


def top_k(x: Array, k: int, *, xp: Namespace) -> tuple[Array, Array]:
    """``(values, indices)`` of the ``k`` largest entries along the last axis, largest first; ``min(k, n)`` of them.

    A stable descending sort: ties (``-0.0`` and ``0.0`` included) keep the earlier entry first;
    NaN counts as the largest value. ``values`` are the entries at ``indices`` (a backend may
    return a zero as ``+0.0`` and any NaN as NaN).

    >>> import array_api_compat.numpy as xp
    >>> top_k(xp.asarray([[1.0, 3.0, 2.0, 3.0]]), 3, xp=xp)
    (array([[3., 3., 2.]]), array([[1, 3, 2]]))
    """
    order = xp.argsort(x, axis=-1, descending=True, stable=True)[..., : min(k, x.shape[-1])]
    return xp.take_along_axis(x, order, axis=-1), order


def softmax(x: Array, axis: int, *, xp: Namespace, normalize: bool = True, flush: float = 0.0) -> Array:
    """Softmax of the real floating ``x`` along ``axis``: ``exp(x - max) / sum``, so the denominator is at least 1.

    With ``normalize=False`` the caller only needs weights *proportional* to the softmax along
    ``axis`` (it divides by their sum itself): a backend may then skip the division and return
    ``exp(x - max)``, as here, or return the softmax. The shifted exponent is clamped at the lowest
    one whose ``exp`` is a normal number (float32: about -86.8): a weight changes by at most that
    much (1.2e-38 in float32), and ``exp`` stays on its fast path (PyTorch's CPU ``exp`` is 10-30
    times slower where the result is subnormal or 0). With ``flush > 0`` (used with the default
    ``normalize=True``), weights at or below ``flush`` are returned as 0; NaN stays NaN.
    """
    floor = math.log(float(xp.finfo(x.dtype).smallest_normal)) + 0.5
    shifted = xp.maximum(
        x - xp.max(x, axis=axis, keepdims=True), xp.asarray(floor, dtype=x.dtype, device=device(x))
    )
    e = xp.exp(shifted)
    if not normalize:
        return e
    weights = e / xp.sum(e, axis=axis, keepdims=True)
    return xp.where(weights <= flush, 0.0, weights) if flush > 0 else weights


def outer(a: Array, b: Array, *, xp: Namespace) -> Array:
    """Batched outer product ``a[..., :, None] * b[..., None, :]`` (leading axes broadcast): shape ``(*, m, n)``."""
    return a[..., :, None] * b[..., None, :]


def fori_loop(n: int, body: Any, carry: Any, *, xp: Namespace) -> Any:
    """``carry = body(i, carry)`` for ``i`` in ``range(n)``; returns the final ``carry``.

    ``n`` is a Python integer; ``carry`` is an array or a (nested) tuple of arrays. ``body`` must
    return a carry of the same structure, shapes and dtypes, and must not branch in Python on array
    values (nor on ``i``, which a backend may pass as an array): a compiling backend (JAX's
    ``lax.fori_loop``) then traces it once instead of once per iteration. Here a plain Python loop,
    which also traces (unrolled) under ``jax.jit``.

    >>> import numpy as np
    >>> fori_loop(3, lambda i, c: (c[0] * 2, c[1] + 1), (np.ones(2), np.zeros(2)), xp=np)
    (array([8., 8.]), array([3., 3.]))
    """
    for i in range(n):
        carry = body(i, carry)
    return carry


def can_inspect(x: Array) -> bool:
    """Whether reading an array's values costs no device synchronisation and no tracing error: not lazy."""
    from array_api_compat import is_lazy_array

    return not is_lazy_array(x)


def prefers_static_shapes(x: Array) -> bool:
    """Whether the static-shape (dense) algorithms are the better choice for this array."""
    return False


def supports_dynamic_shapes(x: Array) -> bool:
    """Whether data-dependent shapes (``nonzero``) are allowed on this array (not traced, not lazy).

    Asks the library's inspection API (``capabilities()["data-dependent shapes"]``, once per array
    type) and ``array_api_compat.is_lazy_array``.
    """
    from array_api_compat import is_lazy_array

    return _data_dependent_shapes(type(x), x) and not is_lazy_array(x)


_SHAPES_BY_TYPE: dict[type, bool] = {}


def _data_dependent_shapes(kind: type, x: Array) -> bool:
    known = _SHAPES_BY_TYPE.get(kind)
    if known is None:
        from array_api_compat import array_namespace

        info = getattr(array_namespace(x), "__array_namespace_info__", None)
        known = True if info is None else bool(info().capabilities().get("data-dependent shapes", True))
        _SHAPES_BY_TYPE[kind] = known
    return known


def block_elements(x: Array) -> int:
    """How many elements the temporaries of one block of work should hold on this array; 0: no blocking.

    Window operations split a large array into blocks of about this many elements, with the halo each window needs, and concatenate
    the results: identical values, temporaries that stay in the CPU's cache, and a peak memory that
    no longer grows with the temporaries. Accelerators, tracers and lazy arrays work on whole arrays.
    """
    return 0
