"""Array helpers shared by the hooks and the operations (re-exported by ``subpix_xp._common``).

They live here, below every operation, so that the backends need nothing from above them.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _compat_device

Array = Any

# Array types whose own ``.device`` is what ``array_api_compat.device`` returns (NumPy >= 2,
# PyTorch): read it directly, which skips the library checks of the generic helper.
_OWN_DEVICE: dict[type, bool] = {}


def device(x: Array) -> Any:
    """``array_api_compat.device(x)``, without its per-call library checks for NumPy and PyTorch arrays."""
    kind = type(x)
    own = _OWN_DEVICE.get(kind)
    if own is None:
        root = kind.__module__.partition(".")[0]
        own = _OWN_DEVICE[kind] = root in ("numpy", "torch") and _compat_device(x) == getattr(
            x, "device", None
        )
    return x.device if own else _compat_device(x)


def axis_slice(ndim: int, axis: int, start: int, stop: int, step: int = 1) -> tuple[slice, ...]:
    """The index that takes ``start:stop:step`` on ``axis`` of an ``ndim``-D array and everything elsewhere.

    >>> import numpy as np
    >>> np.arange(12).reshape(3, 4)[axis_slice(2, 1, 1, 3)]
    array([[ 1,  2],
           [ 5,  6],
           [ 9, 10]])
    """
    index = [slice(None)] * ndim
    index[axis] = slice(start, stop, step)
    return tuple(index)


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy broadcasting of shapes, or ``None`` if they do not broadcast.

    >>> broadcast_shape((3, 1), (4,)), broadcast_shape((2,), (3,))
    ((3, 4), None)
    """
    out: list[int] = []
    for i in range(1, max(map(len, shapes), default=0) + 1):
        sizes = {s[-i] for s in shapes if i <= len(s)} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(reversed(out))
