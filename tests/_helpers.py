"""Tolerances (one place) and comparison helpers for the tests."""

from __future__ import annotations

import numpy as np

from subpix_xp.conformance.tolerances import TOLERANCES
from subpix_xp.testing import to_numpy

# Coordinates and values against a float64 reference (docs/semantics.md, Accuracy): float64 within
# 1e-9, float32 1e-4. One table for the tests and the conformance suite.
ATOL = {dtype: row["coords"] for dtype, row in TOLERANCES.items() if dtype.startswith(("float", "bfloat"))}
RTOL = {dtype: row["values"] for dtype, row in TOLERANCES.items() if dtype.startswith(("float", "bfloat"))}


def assert_close(actual, expected, dtype_name: str, *, what: str = "", scale: float = 1.0) -> None:
    """``actual`` (any backend) equals ``expected`` within the dtype's tolerance; masks exactly."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    if e.dtype == bool or a.dtype == bool:
        assert a.dtype == e.dtype == bool, f"{what}: dtypes {a.dtype} / {e.dtype}"
        diff = np.argwhere(a != e)
        assert diff.size == 0, f"{what}: masks differ at {len(diff)} positions, first {diff[:5].tolist()}"
        return
    np.testing.assert_allclose(
        a.astype(np.float64),
        e.astype(np.float64),
        atol=ATOL[dtype_name] * scale,
        rtol=RTOL[dtype_name],
        equal_nan=True,
        err_msg=what,
    )


def max_abs_diff(actual, expected) -> float:
    a, e = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(e)
    d = np.abs(np.where(both_nan, 0.0, a - e))
    return float(np.max(d)) if d.size else 0.0


def dog_stack(shape=(1, 1, 6, 48, 64), seed=0, dtype=np.float64) -> np.ndarray:
    """A difference-of-Gaussians stack of a smooth synthetic image: real-looking scale-space input."""
    b, c, d, h, w = shape
    rng = np.random.default_rng(seed)
    out = np.empty(shape)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for i in range(b * c):
        image = np.zeros((h, w))
        for _ in range(max(4, h * w // 150)):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            s = rng.uniform(1.0, 4.0)
            image += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        levels = [_blur(image, 1.2 * 1.4**k) for k in range(d + 1)]
        out.reshape(b * c, d, h, w)[i] = np.stack([levels[k + 1] - levels[k] for k in range(d)])
    return out.astype(dtype)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(3 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-t * t / (2 * sigma * sigma))
    k /= k.sum()
    pad = np.pad(image, radius, mode="reflect")
    rows = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 1, pad)
    return np.apply_along_axis(lambda col: np.convolve(col, k, mode="valid"), 0, rows)
