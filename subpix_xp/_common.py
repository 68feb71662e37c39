"""Small array helpers shared by the operations; each takes the namespace as ``xp``."""

from __future__ import annotations

import itertools
from typing import Any

from .backends._helpers import axis_slice, broadcast_shape, device

__all__ = ["axis_slice", "broadcast_shape", "device"]  # re-exported: the helpers shared with the backends

Array = Any


def compute_dtype(dtype: Any, *, xp: Any) -> Any:
    """The dtype to compute in, one of the namespace's own: float32, or float64 for a 64-bit float.

    Half-precision floats (float16, bfloat16) are promoted to float32. A byte-swapped float (NumPy's
    ``>f8`` on a little-endian machine, as FITS files hold) computes in its own precision, in the
    native dtype (``>f8``: float64).
    """
    if dtype == xp.float32 or dtype == xp.float64:
        return dtype
    return xp.float64 if native_dtype(dtype, xp=xp) == xp.float64 else xp.float32


# (kind for ``isdtype``, the standard dtypes of that kind): where a dtype's native equivalent is looked up.
_FAMILIES = (
    ("real floating", ("float32", "float64", "float16")),
    ("signed integer", ("int64", "int32", "int16", "int8")),
    ("unsigned integer", ("uint8", "uint16", "uint32", "uint64")),
    ("complex floating", ("complex64", "complex128")),
)
_NATIVE: dict[tuple[int, Any], Any] = {}


def native_dtype(dtype: Any, *, xp: Any) -> Any:
    """The namespace's own dtype equal to ``dtype`` in kind and precision: ``dtype`` itself, except for
    a non-native byte order (NumPy's ``>f8`` on a little-endian machine -> float64, ``>i4`` -> int32).

    Found with the standard alone: ``isdtype`` for the kind, ``finfo``/``iinfo`` for the precision (so
    bfloat16, whose range differs from float16's, stays itself).
    """
    try:
        return _NATIVE[(id(xp), dtype)]
    except KeyError:
        pass
    except TypeError:  # an unhashable dtype object
        return _find_native(dtype, xp)
    own = _NATIVE[(id(xp), dtype)] = _find_native(dtype, xp)
    return own


def _find_native(dtype: Any, xp: Any) -> Any:
    if dtype == xp.bool:
        return dtype
    for kind, names in _FAMILIES:
        if not xp.isdtype(dtype, kind):
            continue
        candidates = [d for d in (getattr(xp, name, None) for name in names) if d is not None]
        if any(d == dtype for d in candidates):
            return dtype
        info = xp.iinfo if "integer" in kind else xp.finfo
        want = _limits(info(dtype))
        return next((d for d in candidates if _limits(info(d)) == want), dtype)
    return dtype


def _limits(info: Any) -> tuple[Any, ...]:
    return tuple(getattr(info, field, None) for field in ("bits", "min", "max", "eps", "smallest_normal"))


def is_constant(value: Any, constant: float) -> bool:
    """Whether ``value`` is the Python number ``constant``: a kernel may skip work for it (a temperature
    of 1, a bonus of 0). A traced scalar (JAX traces float parameters) never is: it takes the arithmetic."""
    return isinstance(value, (int, float)) and value == constant


def index_dtype(*, xp: Any) -> Any:
    """The namespace's default index dtype: int64, but int32 for JAX without ``jax_enable_x64``."""
    import array_api_extra as xpx

    return xpx.default_dtype(xp, "indexing")


def normalize(coords: Array, size: int) -> Array:
    """Corner-aligned normalisation ``2 x / (n - 1) - 1``; an axis of length 1 maps to 0."""
    if size <= 1:
        return coords * 0.0
    return coords * (2.0 / (size - 1)) - 1.0


def axis_coordinates(n: int, normalized: bool, *, dtype: Any, like: Array, xp: Any) -> Array:
    """The coordinates of the ``n`` positions of an axis: indices, or normalised to ``[-1, 1]`` (``linspace``)."""
    if normalized and n > 1:
        return xp.linspace(-1.0, 1.0, n, dtype=dtype, device=device(like))
    coords = xp.arange(n, dtype=dtype, device=device(like))
    return normalize(coords, n) if normalized else coords


def softmax(x: Array, axis: int, *, xp: Any) -> Array:
    """Softmax along ``axis``, shifted by the maximum so the denominator is at least 1 (the ``softmax`` hook)."""
    from .backends import hooks_for

    return hooks_for(xp).softmax(x, axis, xp=xp)


def block_plan(
    lead: int, rows: int, row_elements: int, budget: int
) -> list[tuple[tuple[int, int], list[tuple[int, int]]]]:
    """Split ``lead`` independent maps of ``rows`` rows (``row_elements`` each) into blocks of about ``budget``.

    Returns ``[((lead_start, lead_stop), [(row_start, row_stop), ...]), ...]``: whole maps grouped
    while a map fits the budget, else one map at a time cut into row ranges of near-equal size.
    ``budget`` 0 (or a problem that fits) gives a single block. Rows are output rows; the caller
    adds the halo its windows read.
    """
    image = rows * max(row_elements, 1)
    if budget <= 0 or lead * image <= budget or lead == 0 or rows == 0:
        return [((0, lead), [(0, rows)])]
    if image <= budget:
        per = max(1, budget // image)
        return [((s, min(lead, s + per)), [(0, rows)]) for s in range(0, lead, per)]
    count = -(-image // budget)
    bounds = [rows * i // count for i in range(count + 1)]
    ranges = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    return [((i, i + 1), ranges) for i in range(lead)]


def concat_blocks(results: list[list[Array]], row_axis: int, *, xp: Any) -> Array:
    """Join the per-block results of :func:`block_plan`: rows within each map group, then the groups (axis 0)."""
    groups = [parts[0] if len(parts) == 1 else xp.concat(parts, axis=row_axis) for parts in results]
    return groups[0] if len(groups) == 1 else xp.concat(groups, axis=0)


def copy(x: Array) -> Array:
    """A new array equal to ``x`` (differentiable; ``asarray(copy=True)`` warns on torch leaves)."""
    return x * 1
