"""Input checks shared by the public functions: early, clear errors that name the function and parameter.

Nothing here reads array values unless the backend says that costs no synchronisation
(:attr:`Hooks.can_inspect`), so the checks are safe under ``jax.jit`` and on Dask arrays.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from array_api_compat import array_namespace, is_array_api_obj

from . import _common as c
from ._common import broadcast_shape, device
from .backends import Hooks

Array = Any

# Array parameters that may be None (absent).
_OPTIONAL_ARRAYS = frozenset({"precomputed_nms_mask"})

# NumPy and PyTorch array types -> their namespace (which ``array_namespace`` derives from the type).
_NAMESPACE_BY_TYPE: dict[type, Any] = {}


def namespace(func: str, **arrays: Array | None) -> Any:
    """Return the namespace shared by the given arrays (``None`` entries are skipped).

    Raises ``TypeError`` for a non-array, for arrays of two libraries and for two devices.
    """
    for name, a in arrays.items():
        if a is None and name not in _OPTIONAL_ARRAYS:
            msg = f"{func}: expected an array for `{name}`; got None"
            raise TypeError(msg)
    present = {name: a for name, a in arrays.items() if a is not None}
    # The common case, NumPy or PyTorch arrays of one type: the namespace by type, and (for more
    # than one array) one device; anything else takes the full checks below.
    kinds = {type(a) for a in present.values()}
    xp = _NAMESPACE_BY_TYPE.get(kinds.pop()) if len(kinds) == 1 else None
    if xp is not None and (
        len(present) == 1 or len({getattr(a, "device", None) for a in present.values()}) == 1
    ):
        return xp
    for name, a in present.items():
        if not is_array_api_obj(a):
            msg = f"{func}: expected an array for `{name}`; got {type(a).__name__}"
            raise TypeError(msg)
    try:
        xp = array_namespace(*present.values())
        kinds = {type(a) for a in present.values()}
        if len(kinds) == 1 and next(iter(kinds)).__module__.partition(".")[0] in ("numpy", "torch"):
            _NAMESPACE_BY_TYPE[next(iter(kinds))] = xp
    except TypeError:
        libraries = ", ".join(
            f"`{name}` is {type(a).__module__}.{type(a).__name__}" for name, a in present.items()
        )
        msg = f"{func}: expected arrays of one array library; got {libraries}"
        raise TypeError(msg) from None
    # A traced JAX array has no device (``None``): it takes the device of the arrays it meets.
    devices = {name: d for name, a in present.items() if (d := device(a)) is not None}
    first = next(iter(devices.values()), None)
    if any(d != first for d in devices.values()):
        where = ", ".join(f"`{name}` on {d}" for name, d in devices.items())
        msg = f"{func}: expected arrays on one device; got {where}"
        raise TypeError(msg)
    return xp


def check_ndim(func: str, name: str, x: Array, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        msg = f"{func}: expected a {ndim}-D array {layout} for `{name}`; got shape {tuple(x.shape)}"
        raise ValueError(msg)


def check_floating(func: str, name: str, x: Array, xp: Any) -> Array:
    """``x`` if it is real floating (else ``TypeError``), in its native byte order (see :func:`native_order`)."""
    if x.dtype == xp.float32 or x.dtype == xp.float64:  # the common case, without isdtype's kind parsing
        return x
    if not xp.isdtype(x.dtype, "real floating"):
        msg = f"{func}: expected a real floating-point array for `{name}`; got dtype {x.dtype}"
        raise TypeError(msg)
    return native_order(x, xp)


def check_real(func: str, name: str, x: Array, xp: Any) -> Array:
    """``x`` if it is real (floating, integer or bool; else ``TypeError``), in its native byte order."""
    if x.dtype == xp.float32 or x.dtype == xp.float64:
        return x
    if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "integral") or x.dtype == xp.bool):
        msg = f"{func}: expected a real (floating, integer or bool) array for `{name}`; got dtype {x.dtype}"
        raise TypeError(msg)
    return native_order(x, xp)


def native_order(x: Array, xp: Any) -> Array:
    """``x``, or a copy in the namespace's own dtype of its precision if its byte order is not native.

    Only NumPy arrays (and Dask arrays of NumPy chunks) can be byte-swapped: FITS files hold ``>f8``
    data. Converting once here makes every computation run in the input's own precision and every
    output come out in the native dtype of that precision (``>f8`` in, float64 out).
    """
    own = c.native_dtype(x.dtype, xp=xp)
    return x if own == x.dtype else xp.astype(x, own)


def int_tuple(
    func: str, name: str, value: Any, n: int, *, minimum: int, allow_int: bool = True
) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ``n`` Python ints, each at least ``minimum``, else ``ValueError``."""
    if type(value) is tuple and len(value) == n and all(type(v) is int and v >= minimum for v in value):
        return value  # the common case, without the generic checks' isinstance calls
    if allow_int and _is_int(value):
        value = (value,) * n
    if (
        not isinstance(value, Sequence)
        or len(value) != n
        or not all(_is_int(v) for v in value)
        or any(v < minimum for v in value)
    ):
        what = f"a tuple of {n} ints >= {minimum}" + (" (or one int)" if allow_int else "")
        msg = f"{func}: expected {what} for `{name}`; got {value!r}"
        raise ValueError(msg)
    return tuple(int(v) for v in value)


def check_int(func: str, name: str, value: Any, *, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:
        msg = f"{func}: expected an int >= {minimum} for `{name}`; got {value!r}"
        raise ValueError(msg)
    return int(value)


def check_number(func: str, name: str, value: Any, *, minimum: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= minimum:
        msg = f"{func}: expected a real number >= {minimum} for `{name}`; got {value!r}"
        raise ValueError(msg)
    return float(value)


def check_bool(func: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        msg = f"{func}: expected a bool for `{name}`; got {value!r}"
        raise TypeError(msg)
    return value


def temperature(
    func: str, value: Any, x: Array, layout: tuple[int, ...], xp: Any, hooks: Hooks
) -> Array | float:
    """Validate a temperature: ``None`` (means 1), a positive number, or a positive real array.

    An array must broadcast against ``layout``; it comes back in ``x``'s dtype. Its values are
    checked only where the backend can read them without synchronising.
    """
    if value is None:
        return 1.0
    if not is_array_api_obj(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            msg = f"{func}: expected a positive number or array for `temperature`; got {type(value).__name__}"
            raise TypeError(msg)
        if not float(value) > 0:
            msg = f"{func}: expected a positive `temperature`; got {value!r}"
            raise ValueError(msg)
        return float(value)
    namespace(func, input=x, temperature=value)
    check_real(func, "temperature", value, xp)
    if value.dtype == xp.bool:
        msg = f"{func}: expected a real, non-bool array for `temperature`; got dtype {value.dtype}"
        raise TypeError(msg)
    if broadcast_shape(tuple(value.shape), layout) != layout:
        msg = f"{func}: `temperature` of shape {tuple(value.shape)} does not broadcast to one value per map {layout}"
        raise ValueError(msg)
    value = xp.astype(value, x.dtype)
    if hooks.can_inspect(value) and not bool(xp.all(value > 0)):
        msg = f"{func}: expected a positive `temperature`; got an array with zero, negative or NaN entries"
        raise ValueError(msg)
    return value


def _is_int(v: Any) -> bool:
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))
