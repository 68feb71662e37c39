"""Small array helpers shared by the operations; each takes the namespace as ``xp``."""

from __future__ import annotations

from typing import Any

from array_api_compat import device

Array = Any


def compute_dtype(dtype: Any, *, xp: Any) -> Any:
    """The dtype to compute in: half-precision floats (float16, bfloat16) are promoted to float32."""
    if dtype in (xp.float32, xp.float64):
        return dtype
    return xp.float32


def normalize(coords: Array, size: int) -> Array:
    """Corner-aligned normalisation ``2 x / (n - 1) - 1``; an axis of length 1 maps to 0."""
    if size <= 1:
        return coords * 0.0
    return coords * (2.0 / (size - 1)) - 1.0


def axis_coordinates(n: int, normalized: bool, *, dtype: Any, like: Array, xp: Any) -> Array:
    """The coordinates of the ``n`` positions of an axis: indices, or normalised to ``[-1, 1]``."""
    coords = xp.arange(n, dtype=dtype, device=device(like))
    return normalize(coords, n) if normalized else coords


def softmax(x: Array, axis: int, *, xp: Any) -> Array:
    """Softmax along ``axis``, shifted by the maximum so the denominator is at least 1."""
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=axis, keepdims=True)
