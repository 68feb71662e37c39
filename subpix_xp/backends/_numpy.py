"""NumPy hooks: in-place scatter and ``np.pad``; window reductions and filtering stay generic (already vectorised)."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import GENERIC


def pad(x: Any, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Any) -> Any:
    import numpy as np

    full = [(0, 0)] * (x.ndim - len(widths)) + list(widths)
    return np.pad(x, full, constant_values=value)


def expand(values: Any, index: Any, base: Any, *, xp: Any) -> Any:
    # ``base`` is the caller's scratch array (see the generic hook): scatter into it, unless it is a
    # read-only view (a broadcast, a frozen array), which is copied first.
    out = base if base.flags.writeable else base.copy()
    out[index] = values
    return out


# About 512 KiB of float32 per temporary: a block's few live temporaries stay in a core's L2/L3 cache.
_BLOCK_ELEMENTS = 1 << 17


def block_elements(x: Any) -> int:
    return _BLOCK_ELEMENTS


HOOKS = dataclasses.replace(
    GENERIC, name="numpy", pad=pad, expand=expand, block_elements=block_elements
)
