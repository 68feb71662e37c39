"""CuPy hooks: a fused window-extremum kernel, one-fill padding, copy-then-scatter, ``correlate1d`` filtering.

CuPy (and ``cupyx``) are imported inside the hooks, on first use, so importing this module never
needs CuPy; :func:`subpix_xp.backends.hooks_for` loads it only for a CuPy namespace. Every hook
runs under its input's device (``with x.device``) and launches on CuPy's current stream, so a call
made inside ``with cupy.cuda.Stream(): ...`` stays on that stream.

Why not ``cupyx.scipy.ndimage.maximum_filter`` for the window extrema: its separable path runs 1-D
filters whose running value is a C ``double`` updated with the device ``max``/``min`` functions
(``fmax``/``fmin`` for floating point), which return the other operand where the generic hook
(``xp.maximum``) returns NaN; and a ``double`` rounds 64-bit integers above 2**53. So the hook
below is a small elementwise kernel of its own: each output reads its "valid" window directly (no
border handling, no cropping, no origin to get right for even windows), keeps the input dtype,
and takes NaN whenever the window holds one, exactly as ``maximum`` does. Windows of more than
64 taps run as one pass per axis (max is separable).

Capabilities: reading a CuPy array's values synchronises with the device (``can_inspect`` False,
so temperature arrays are not value-checked); the dense, branch-free paths suit the GPU
(``prefers_static_shapes`` True, so operations that can choose pick their dense paths);
``nonzero`` works eagerly (``supports_dynamic_shapes`` True, so sparse paths stay available).

The CPU test-suite runs these hooks with NumPy standing in for CuPy, SciPy's ``ndimage`` for
``cupyx.scipy.ndimage``, and the kernel source compiled as C++ (see ``tests/test_gpu.py``):
:func:`_cupy`, :func:`_ndimage` and :func:`_window_kernel` are the seams it replaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from typing import Any

from . import GENERIC, _generic

# Dtypes the window kernel handles; anything else (float16, bool, ...) takes the generic hook.
_KERNEL_DTYPES = frozenset(
    ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
)
# Up to this many taps a window is read in one pass (3x3x3 = 27, 5x5 = 25); larger ones go one
# axis at a time, so the cost grows with the sum of the window's sides instead of their product.
_FUSED_TAPS = 64

# One output of a "valid" window reduction over the last three axes of a C-contiguous
# (lead, n0, n1, n2) array: output ``i`` of (lead, o0, o1, o2) covers ``k0 x k1 x k2`` inputs
# from the same position. ``{better}`` is ``>`` (max) or ``<`` (min). ``v != v`` is the NaN test
# (false for integers), so a NaN anywhere in the window wins and then stays, as with ``maximum``.
_WINDOW_BODY = """
long long r = i;
const long long c2 = r % o2; r /= o2;
const long long c1 = r % o1; r /= o1;
const long long c0 = r % o0; r /= o0;
const long long base = ((r * n0 + c0) * n1 + c1) * n2 + c2;
T acc = x[base];
for (int a = 0; a < k0; ++a) {{
    for (int b = 0; b < k1; ++b) {{
        const long long row = base + ((long long)a * n1 + b) * n2;
        for (int c = 0; c < k2; ++c) {{
            const T v = x[row + c];
            if (v {better} acc || v != v) {{
                acc = v;
            }}
        }}
    }}
}}
y = acc;
"""
_WINDOW_PARAMS = (
    "raw T x, int64 n0, int64 n1, int64 n2, int64 o0, int64 o1, int64 o2, int32 k0, int32 k1, int32 k2"
)


def window_kernel_source(which: str) -> str:
    """The body of the window kernel for ``which`` (``"max"`` or ``"min"``), as CuPy compiles it."""
    return _WINDOW_BODY.format(better=">" if which == "max" else "<")


def _cupy() -> Any:
    import cupy

    return cupy


def _ndimage() -> Any:
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage


@functools.cache
def _window_kernel(which: str) -> Any:
    """The ``cupy.ElementwiseKernel`` for ``which``; compiled per dtype on first launch (then cached on disk)."""
    cupy = _cupy()
    return cupy.ElementwiseKernel(
        _WINDOW_PARAMS, "T y", window_kernel_source(which), f"subpix_xp_window_{which}"
    )


def _on(x: Any) -> Any:
    """A context that makes ``x``'s device current (CuPy allocates and launches on the current device)."""
    dev = getattr(x, "device", None)
    return dev if hasattr(dev, "__enter__") else contextlib.nullcontext()


def _window_reduce(x: Any, window: tuple[int, ...], which: str, *, xp: Any) -> Any:
    nw = len(window)
    shape = tuple(x.shape)
    generic = _generic.window_max if which == "max" else _generic.window_min
    if (
        not 1 <= nw <= 3
        or nw > len(shape)
        or x.size == 0
        or x.dtype.name not in _KERNEL_DTYPES
        or any(n < k for n, k in zip(shape[-nw:], window))
    ):
        return generic(x, window, xp=xp)
    if all(k == 1 for k in window):
        return x  # as the generic hook: a window of one position is the input itself
    cupy = _cupy()
    kernel = _window_kernel(which)
    lead = math.prod(shape[: len(shape) - nw])
    sides = (1,) * (3 - nw) + shape[-nw:]
    win = (1,) * (3 - nw) + tuple(window)
    if math.prod(win) <= _FUSED_TAPS:
        passes = [win]
    else:
        passes = [tuple(k if a == j else 1 for a, k in enumerate(win)) for j in range(3) if win[j] > 1]
    with _on(x):
        flat = cupy.ascontiguousarray(x).reshape(-1)
        for step in passes:
            valid = tuple(n - k + 1 for n, k in zip(sides, step))
            out = cupy.empty(lead * math.prod(valid), dtype=x.dtype)
            kernel(flat, *sides, *valid, *step, out)
            flat, sides = out, valid
        return flat.reshape(shape[: len(shape) - nw] + sides[3 - nw :])


def window_max(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    return _window_reduce(x, window, "max", xp=xp)


def window_min(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    return _window_reduce(x, window, "min", xp=xp)


def pad(x: Any, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Any) -> Any:
    """One fill and one copy: ``full(padded_shape, value)``, then the input into its centre.

    ``cupy.pad`` gives the same result with a fill per padded side; this form is two kernels
    whatever the number of axes.
    """
    cupy = _cupy()
    lead = x.ndim - len(widths)
    shape = tuple(x.shape[:lead]) + tuple(n + a + b for n, (a, b) in zip(x.shape[lead:], widths))
    centre = (slice(None),) * lead + tuple(slice(a, a + n) for n, (a, _) in zip(x.shape[lead:], widths))
    with _on(x):
        out = cupy.full(shape, value, dtype=x.dtype)
        out[centre] = x
    return out


def expand(values: Any, index: Any, base: Any, *, xp: Any) -> Any:
    """Out of place: a copy of ``base``, then one scatter of ``values`` at the integer ``index``.

    CuPy has no read-only flag, and a broadcast ``base`` (stride 0) written in place would alias
    its entries; the copy is one device-to-device pass. Integer-array assignment needs no sync.
    """
    with _on(base):
        out = base.copy()
        out[index] = values
    return out


def softmax(x: Any, axis: int, *, xp: Any, normalize: bool = True, flush: float = 0.0) -> Any:
    """In place in one buffer: ``e = x - max``, ``exp(e, out=e)``, ``e /= sum``: four kernels instead of six.

    No clamp of the exponent: a GPU's ``exp`` has no slow subnormal path, so the tails stay exact
    (the generic hook's clamp changes a weight by at most ``smallest_normal``).
    """
    cupy = _cupy()
    if x.dtype.name not in ("float32", "float64") or x.size == 0:
        return _generic.softmax(x, axis, xp=xp, normalize=normalize, flush=flush)
    with _on(x):
        e = cupy.subtract(x, cupy.max(x, axis=axis, keepdims=True))
        cupy.exp(e, out=e)
        if normalize:
            e /= cupy.sum(e, axis=axis, keepdims=True)
            if flush > 0:
                cupy.copyto(e, 0, where=e <= flush)  # elementwise: no host synchronisation
    return e


def separable_filter(x: Any, kernel: tuple[float, ...], *, xp: Any) -> Any:
    """``cupyx.scipy.ndimage.correlate1d`` along the last axis, then the one before: one kernel per axis.

    Mode ``"mirror"`` is the generic hook's reflection (the edge sample is not repeated). Axes no
    longer than the kernel radius, where SciPy's mirror and the generic repeated reflection could
    part, and dtypes other than float32/float64 take the generic hook.
    """
    k, radius = len(kernel), len(kernel) // 2
    if (
        k % 2 != 1
        or x.ndim < 2
        or x.size == 0
        or x.dtype.name not in ("float32", "float64")
        or min(x.shape[-2:]) <= radius
    ):
        return _generic.separable_filter(x, kernel, xp=xp)
    cupy, ndimage = _cupy(), _ndimage()
    with _on(x):
        weights = cupy.asarray(kernel, dtype=x.dtype)
        out = ndimage.correlate1d(x, weights, axis=-1, mode="mirror")
        return ndimage.correlate1d(out, weights, axis=-2, mode="mirror")


def can_inspect(x: Any) -> bool:
    """Reading a device array's values synchronises with the GPU: never done implicitly."""
    return False


def prefers_static_shapes(x: Any) -> bool:
    return True


def supports_dynamic_shapes(x: Any) -> bool:
    return True


HOOKS = dataclasses.replace(
    GENERIC,
    name="cupy",
    window_max=window_max,
    window_min=window_min,
    pad=pad,
    expand=expand,
    softmax=softmax,
    separable_filter=separable_filter,
    can_inspect=can_inspect,
    prefers_static_shapes=prefers_static_shapes,
    supports_dynamic_shapes=supports_dynamic_shapes,
)
