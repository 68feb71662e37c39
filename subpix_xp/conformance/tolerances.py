"""Tolerances, per dtype, in one place, and the comparison of one output with its reference.

The reference is NumPy float64 on the *same* inputs rounded to the dtype under test, so a float32
run is judged on its arithmetic, not on the rounding of its inputs.

- ``coords``: absolute error, in pixels (or normalised units): float64 1e-9, float32 1e-4.
- ``values``: error relative to the largest finite magnitude of the reference output
  (``max |got - want| / max |want|``): float64 1e-9, float32 1e-5. Integer outputs are exact.
- ``mask``: identical.

Everywhere: NaN where the reference has NaN and nowhere else, and infinities equal, sign included.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["TOLERANCES", "Comparison", "compare", "tolerance"]

#: ``{dtype: {kind: tolerance}}``; the float64 row holds for the kornia oracle in float64 too. The
#: project's tests use the same table (``tests/_helpers.py``: ``coords`` as the absolute tolerance,
#: ``values`` as the relative one); the half-precision rows serve those tests.
TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"coords": 1e-9, "values": 1e-9},
    "float32": {"coords": 1e-4, "values": 1e-5},
    "float16": {"coords": 2e-2, "values": 1e-2},
    "bfloat16": {"coords": 1e-1, "values": 5e-2},
    "int32": {"coords": 0.0, "values": 0.0},
    "int64": {"coords": 0.0, "values": 0.0},
}


def tolerance(dtype: str, kind: str) -> float:
    """The tolerance for an output of ``kind`` computed in ``dtype`` (0 for masks)."""
    return 0.0 if kind == "mask" else TOLERANCES[dtype][kind]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How one output compares: ``error`` in the kind's own measure, and a description if it fails."""

    ok: bool
    error: float
    tolerance: float
    detail: str = ""
    tag: str = "err"  # what a failure is, for the table: "err", "mask" or "shape"


def compare(got: np.ndarray, want: np.ndarray, kind: str, dtype: str) -> Comparison:
    """Compare ``got`` (any dtype, as NumPy) with the float64 (or bool/int) reference ``want``."""
    tol = tolerance(dtype, kind)
    if got.shape != want.shape:
        return Comparison(False, np.inf, tol, f"shape {got.shape}, expected {want.shape}", "shape")
    if kind == "mask" or want.dtype == bool:
        differ = np.argwhere(got != want)
        if differ.size:
            first = tuple(differ[0].tolist())
            return Comparison(
                False,
                float(len(differ)),
                0.0,
                f"{len(differ)} of {want.size} entries differ, first at {first}: "
                f"got {got[first]!r}, expected {want[first]!r}",
                "mask",
            )
        return Comparison(True, 0.0, 0.0)
    g, w = got.astype(np.float64), want.astype(np.float64)
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    if (nan_g != nan_w).any():
        where = tuple(np.argwhere(nan_g != nan_w)[0].tolist())
        n = int((nan_g != nan_w).sum())
        return Comparison(
            False,
            np.inf,
            tol,
            f"NaN pattern differs at {n} entries, first at {where}: got {g[where]!r}, expected {w[where]!r}",
        )
    inf_w = np.isinf(w) | np.isinf(g)
    if (g[inf_w] != w[inf_w]).any():
        where = tuple(np.argwhere(inf_w & (g != w))[0].tolist())
        return Comparison(
            False, np.inf, tol, f"infinity differs at {where}: got {g[where]!r}, expected {w[where]!r}"
        )
    finite = ~(nan_w | inf_w)
    if not finite.any():
        return Comparison(True, 0.0, tol)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(finite, np.abs(g - w), 0.0)
    scale = 1.0
    if kind == "values":
        scale = float(np.abs(w[finite]).max()) or 1.0
    error = float(diff.max()) / scale
    if error <= tol:
        return Comparison(True, error, tol)
    where = tuple(np.unravel_index(int(diff.argmax()), diff.shape))
    n = int((diff > tol * scale).sum())
    measure = "absolute" if kind == "coords" else f"relative to max |expected| = {scale:.3g}"
    return Comparison(
        False,
        error,
        tol,
        f"{kind} error {error:.3g} ({measure}) > {tol:g} at {n} of {w.size} entries; worst at "
        f"{where}: got {g[where]!r}, expected {w[where]!r}",
    )
