"""JAX hooks: ``lax.reduce_window`` window extrema, ``jnp.pad``, ``.at[].set`` scatter, tracer-aware capabilities.

Under ``jax.jit`` (or ``jax.grad``, ``jax.vmap``) the arrays an operation sees are tracers: their
values cannot be read (``can_inspect`` is False, so temperature arrays are not value-checked) and no
shape may depend on them (``supports_dynamic_shapes`` is False, so ``iterative_quad_interp3d`` takes
the static-shape path). Concrete arrays keep the sparse path. ``prefers_static_shapes`` is True:
XLA compiles the dense, branch-free path well, so ``AdaptiveQuadInterp3d(mode="auto")`` picks
``conv_quad_interp3d`` for JAX arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from . import GENERIC, _generic


def _is_tracer(x: Any) -> bool:
    import jax

    return isinstance(x, jax.core.Tracer)


def _lowest(dtype: Any, *, highest: bool = False) -> Any:
    # A concrete NumPy scalar, so JAX recognises the max/min monoid (and its reverse-mode rule).
    import jax.numpy as jnp
    import numpy as np

    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(np.inf if highest else -np.inf, dtype=dtype)
    info = jnp.iinfo(dtype)
    return np.array(info.max if highest else info.min, dtype=dtype)


def _reduce_window(x: Any, window: tuple[int, ...], which: str) -> Any:
    from jax import lax

    lead = x.ndim - len(window)
    dims = (1,) * lead + tuple(window)
    op = lax.max if which == "max" else lax.min
    init = _lowest(x.dtype, highest=which == "min")
    return lax.reduce_window(x, init, op, dims, (1,) * x.ndim, "VALID")


def _reducible(x: Any, window: tuple[int, ...]) -> bool:
    import jax.numpy as jnp

    return x.size > 0 and (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer))


def window_max(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    if not _reducible(x, window):
        return _generic.window_max(x, window, xp=xp)
    return _reduce_window(x, window, "max")


def window_min(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    if not _reducible(x, window):
        return _generic.window_min(x, window, xp=xp)
    return _reduce_window(x, window, "min")


def pad(x: Any, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Any) -> Any:
    import jax.numpy as jnp

    full = [(0, 0)] * (x.ndim - len(widths)) + [tuple(w) for w in widths]
    return jnp.pad(x, full, constant_values=value)


def expand(values: Any, index: Any, base: Any, *, xp: Any) -> Any:
    # Out of place (JAX arrays are immutable) and differentiable in ``values`` and ``base``.
    return base.at[index].set(values, unique_indices=True, indices_are_sorted=True)


def blockwise(op: str, kernel: Any, /, *arrays: Any, xp: Any, **params: Any) -> Any:
    """Run the whole operation as one XLA computation (``jax.jit``), static parameters baked in.

    Eager calls then cost one compilation per shape and parameter set instead of hundreds of
    op-by-op dispatches; inside an outer ``jit``/``grad`` the inner ``jit`` is simply inlined.
    Compiled, ``iterative_quad_interp3d`` takes its static-shape path, which gives the same result.
    """
    import jax

    positions = tuple(i for i, a in enumerate(arrays) if isinstance(a, jax.Array))
    fixed = tuple(None if i in positions else a for i, a in enumerate(arrays))
    run = _compiled(kernel, xp, tuple(sorted(params.items())), fixed, positions)
    return run(*(arrays[i] for i in positions))


@functools.lru_cache(maxsize=512)
def _compiled(kernel: Any, xp: Any, params: tuple[tuple[str, Any], ...], fixed: tuple[Any, ...],
              positions: tuple[int, ...]) -> Any:
    import jax

    keywords = dict(params)

    def run(*traced: Any) -> Any:
        args = list(fixed)
        for i, a in zip(positions, traced):
            args[i] = a
        return kernel(*args, xp=xp, **keywords)

    return jax.jit(run)


def can_inspect(x: Any) -> bool:
    return not _is_tracer(x)


def supports_dynamic_shapes(x: Any) -> bool:
    return not _is_tracer(x)


def prefers_static_shapes(x: Any) -> bool:
    return True


def fori_loop(n: int, body: Any, carry: Any, *, xp: Any) -> Any:
    """``lax.fori_loop``: ``body`` is traced once (it must keep the carry's shapes and dtypes)."""
    from jax import lax

    return lax.fori_loop(0, n, body, carry)


# Planes of at least this many pixels take the taps (see ``separable_filter``).
_TAPS_PLANE = 2**19


def separable_filter(x: Any, kernel: tuple[float, ...], *, xp: Any) -> Any:
    """The generic hook's filter, with a materialised reflect pad on large planes and a convolution on small ones.

    Under ``jax.jit`` the generic hook's reflect gather fuses into every tap that reads it, so XLA
    recomputes it per tap (about 7 times slower on a 1024x1024 plane), and its slice per tap makes a
    pyramid's graph large (seconds of compilation). Here, on planes of at least ``2**19`` pixels
    (where the run time is), the reflect pad is ``jnp.pad`` materialised behind an optimisation
    barrier and the taps are the generic hook's arithmetic; on smaller planes each axis is one
    ``lax.conv_general_dilated`` along the last axis (``Precision.HIGHEST``: no TF32 or bfloat16
    passes on accelerators), a few operations instead of a few dozen. Both sum only the kernel's
    taps, so non-finite samples spread exactly as far as in the generic hook; sums may round
    differently, within a few units in the last place. Non-floating inputs and even-length kernels
    take the generic hook.
    """
    import jax.numpy as jnp

    k = len(kernel)
    if k % 2 != 1 or x.ndim < 2 or x.size == 0 or not jnp.issubdtype(x.dtype, jnp.floating):
        return _generic.separable_filter(x, kernel, xp=xp)
    if x.shape[-1] * x.shape[-2] >= _TAPS_PLANE:
        return _tap_filter(x, tuple(kernel))
    return _conv_filter(x, tuple(kernel))


def _tap_filter(x: Any, kernel: tuple[float, ...]) -> Any:
    import jax.numpy as jnp
    from jax import lax

    k, radius = len(kernel), len(kernel) // 2
    symmetric = kernel == kernel[::-1]
    for axis in (x.ndim - 1, x.ndim - 2):
        n = x.shape[axis]
        widths = [(0, 0)] * x.ndim
        widths[axis] = (radius, radius)
        padded = lax.optimization_barrier(jnp.pad(x, widths, mode="reflect"))

        def tap(start: int, padded: Any = padded, axis: int = axis, n: int = n) -> Any:
            return lax.slice_in_dim(padded, start, start + n, axis=axis)

        if symmetric:
            out = tap(radius) * kernel[radius]
            for j in range(radius):
                out = out + (tap(j) + tap(k - 1 - j)) * kernel[j]
        else:
            out = tap(0) * kernel[0]
            for j in range(1, k):
                out = out + tap(j) * kernel[j]
        x = out
    return x


def _conv_filter(x: Any, kernel: tuple[float, ...]) -> Any:
    import jax.numpy as jnp
    from jax import lax

    radius = len(kernel) // 2
    *lead, h, w = x.shape
    taps = jnp.reshape(jnp.asarray(kernel, dtype=x.dtype), (1, 1, 1, len(kernel)))
    y = jnp.reshape(x, (-1, 1, h, w))
    # The last axis, then the other one moved last: XLA's CPU convolution along the second-to-last
    # axis runs about ten times slower than a transpose and a convolution along the last.
    for _ in range(2):
        index = jnp.asarray(_generic.reflect_tuple(y.shape[3], radius, radius))
        y = lax.conv_general_dilated(jnp.take(y, index, axis=3), taps, (1, 1), "VALID",
                                     precision=lax.Precision.HIGHEST)
        y = jnp.swapaxes(y, 2, 3)
    return jnp.reshape(y, (*lead, h, w))

HOOKS = dataclasses.replace(
    GENERIC,
    name="jax",
    window_max=window_max,
    window_min=window_min,
    pad=pad,
    expand=expand,
    fori_loop=fori_loop,
    separable_filter=separable_filter,
    can_inspect=can_inspect,
    supports_dynamic_shapes=supports_dynamic_shapes,
    prefers_static_shapes=prefers_static_shapes,
    blockwise=blockwise,
)
