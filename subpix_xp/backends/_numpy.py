"""NumPy hooks: in-place scatter and ``np.pad``; window reductions stay generic (already vectorised)."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import GENERIC


def pad(x: Any, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Any) -> Any:
    import numpy as np

    full = [(0, 0)] * (x.ndim - len(widths)) + list(widths)
    return np.pad(x, full, constant_values=value)


def expand(values: Any, index: Any, base: Any, *, xp: Any) -> Any:
    out = base.copy()
    out[index] = values
    return out


HOOKS = dataclasses.replace(GENERIC, name="numpy", pad=pad, expand=expand)
