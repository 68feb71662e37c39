"""JAX hooks: ``lax.reduce_window`` window extrema, ``jnp.pad``, ``.at[].set`` scatter, tracer-aware capabilities.

Under ``jax.jit`` (or ``jax.grad``, ``jax.vmap``) the arrays an operation sees are tracers: their
values cannot be read (``can_inspect`` is False, so temperature arrays are not value-checked) and no
shape may depend on them (``supports_dynamic_shapes`` is False, so operations take their
static-shape paths). Concrete arrays keep the sparse paths. ``prefers_static_shapes`` is True:
XLA compiles the dense, branch-free paths well, so operations that can choose pick them for JAX
arrays. ``blockwise`` runs each operation as one compiled program
from a bounded cache, with its float parameters traced (see :func:`blockwise`).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any

from . import GENERIC, _generic


def _is_tracer(x: Any) -> bool:
    import jax

    return isinstance(x, jax.core.Tracer)


def _identity(dtype: Any, which: str) -> Any:
    """The identity of the ``which`` (``"max"`` or ``"min"``) reduction: the dtype's lowest or highest value.

    A concrete NumPy scalar, so JAX recognises the max/min monoid (and its reverse-mode rule).
    """
    import jax.numpy as jnp
    import numpy as np

    highest = which == "min"
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(np.inf if highest else -np.inf, dtype=dtype)
    info = jnp.iinfo(dtype)
    return np.array(info.max if highest else info.min, dtype=dtype)


def _reduce_window(x: Any, window: tuple[int, ...], which: str) -> Any:
    from jax import lax

    lead = x.ndim - len(window)
    dims = (1,) * lead + tuple(window)
    op = lax.max if which == "max" else lax.min
    init = _identity(x.dtype, which)
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


def blockwise(func: str, plan: Any, /, *arrays: Any, xp: Any, **params: Any) -> Any:
    """Run the whole operation as one XLA computation (``jax.jit``), from a bounded cache of programs.

    Eager calls then cost one compilation per program instead of hundreds of op-by-op dispatches;
    inside an outer ``jit``/``grad`` the inner ``jit`` is simply inlined. Compiled, a kernel takes
    its static-shape path, which gives the same result.

    What is traced and what is baked in: the arrays are traced, and so are the Python floats that
    only enter arithmetic (temperatures, bonuses, thresholds), as weakly typed scalars, so an
    operation called with ``temperature=0.5 + 1e-3 * i`` in a loop compiles once. The
    exceptions are 0.0 and 1.0, which stay static because kernels skip work for them (a temperature
    of 1 divides by nothing, a bonus of 0 needs no maxima mask): at most three programs per float.
    Ints, bools, tuples and ``None`` are static (they fix shapes and branches). So is the hook set
    (native or generic, see :func:`~subpix_xp.backends.use_generic_hooks`), chosen when a program is
    traced: a program traced under ``use_generic_hooks()`` is never reused outside it, and back.

    See :class:`_Programs` for the bound on the cache.
    """
    import jax

    from . import _generic_forced

    kernel = plan.kernel
    positions = tuple(i for i, a in enumerate(arrays) if isinstance(a, jax.Array) or _traced_float(a))
    fixed = tuple(None if i in positions else a for i, a in enumerate(arrays))
    floats = tuple(sorted(k for k, v in params.items() if _traced_float(v)))
    static = tuple(sorted((k, v) for k, v in params.items() if k not in floats))
    values = [arrays[i] for i in positions] + [params[k] for k in floats]
    signature = tuple(float if type(a) is float else (a.shape, a.dtype, a.weak_type) for a in values)
    key = (
        kernel,
        xp,
        static,
        fixed,
        positions,
        floats,
        signature,
        _generic_forced(),
        jax.config.read("jax_enable_x64"),
    )
    run = PROGRAMS.get(key, lambda: _jit(kernel, xp, dict(static), fixed, positions, floats))
    return run(*values)


def _traced_float(value: Any) -> bool:
    """A Python float other than 0.0 and 1.0 (the values kernels specialise on); not a bool or an int."""
    return type(value) is float and value != 0.0 and value != 1.0


def _jit(
    kernel: Any,
    xp: Any,
    keywords: dict[str, Any],
    fixed: tuple[Any, ...],
    positions: tuple[int, ...],
    floats: tuple[str, ...],
) -> Any:
    import jax

    def run(*traced: Any) -> Any:
        args = list(fixed)
        for i, a in zip(positions, traced):
            args[i] = a
        scalars = dict(zip(floats, traced[len(positions) :]))
        return kernel(*args, xp=xp, **keywords, **scalars)

    return jax.jit(run)


class _Programs:
    """The compiled programs of :func:`blockwise`: at most ``size``, least recently used dropped first.

    A key is everything a program is specialised on (kernel, static parameters, the shape, dtype and
    weak type of each traced value, the hook set, ``jax_enable_x64``), so each entry holds one
    ``jax.jit`` wrapper that compiles one XLA executable (per device): the cache holds at most
    ``size`` executables, not ``size`` wrappers of unbounded executables each. Measured on CPU, a
    program holds 2.5-6 MiB (``docs/dask_and_jax.md``), so the default of 32 keeps this cache under
    about 200 MiB. ``clear()`` empties it; JAX's own tracing caches are JAX's (``jax.clear_caches()``).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.misses = 0
        self._entries: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Any) -> Any:
        with self._lock:
            run = self._entries.get(key)
            if run is not None:
                self._entries.move_to_end(key)
                return run
        run = make()
        with self._lock:
            self.misses += 1
            run = self._entries.setdefault(key, run)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return run

    def __len__(self) -> int:
        return len(self._entries)

    def programs(self) -> list[Any]:
        """The cached ``jax.jit`` wrappers, least recently used first."""
        with self._lock:
            return list(self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


PROGRAMS = _Programs(32)


def can_inspect(x: Any) -> bool:
    # Under a trace even a concrete array's comparisons are traced (a temperature closed over by a
    # jitted function), so nothing is read while any trace is active.
    return not _is_tracer(x) and not _tracing()


def _tracing() -> bool:
    """Whether a JAX trace (``jit``, ``grad``, ``vmap``) is active; False if this JAX cannot say."""
    try:
        from jax._src.core import trace_state_clean
    except ImportError:  # pragma: no cover - a JAX without it: tracers are still recognised
        return False
    return not trace_state_clean()


def supports_dynamic_shapes(x: Any) -> bool:
    return not _is_tracer(x)


def prefers_static_shapes(x: Any) -> bool:
    return True


def fori_loop(n: int, body: Any, carry: Any, *, xp: Any) -> Any:
    """``lax.fori_loop``: ``body`` is traced once (it must keep the carry's shapes and dtypes)."""
    from jax import lax

    return lax.fori_loop(0, n, body, carry)


def top_k(x: Any, k: int, *, xp: Any) -> Any:
    """``lax.top_k`` (a partial sort: XLA's CPU runtime selects ``k`` of a row of millions in
    milliseconds where a full sort takes hundreds), with the generic hook's order: ``-0.0`` and NaN
    are made ``0.0`` and one NaN first, so ties and NaN fall as in a stable descending sort (and
    a zero value comes back as ``+0.0``). Its values come with the indices: no gather, which under
    ``jax.jit`` would re-compute ``x`` once more. Non-numeric (bool) arrays take the generic hook."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    n = x.shape[-1]
    k = min(k, n)
    if (
        k == 0
        or x.ndim == 0
        or not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer))
    ):
        return _generic.top_k(x, k, xp=xp)
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = jnp.where(x == 0, jnp.zeros_like(x), jnp.where(jnp.isnan(x), jnp.full_like(x, jnp.nan), x))
    values, index = lax.top_k(x, k)
    return values, index.astype(jax.dtypes.canonicalize_dtype(jnp.int64))


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
        y = lax.conv_general_dilated(
            jnp.take(y, index, axis=3), taps, (1, 1), "VALID", precision=lax.Precision.HIGHEST
        )
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
    top_k=top_k,
    separable_filter=separable_filter,
    can_inspect=can_inspect,
    supports_dynamic_shapes=supports_dynamic_shapes,
    prefers_static_shapes=prefers_static_shapes,
    blockwise=blockwise,
)
