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


HOOKS = dataclasses.replace(
    GENERIC,
    name="jax",
    window_max=window_max,
    window_min=window_min,
    pad=pad,
    expand=expand,
    fori_loop=fori_loop,
    can_inspect=can_inspect,
    supports_dynamic_shapes=supports_dynamic_shapes,
    prefers_static_shapes=prefers_static_shapes,
    blockwise=blockwise,
)
