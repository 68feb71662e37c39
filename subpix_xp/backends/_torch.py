"""PyTorch hooks: native max pooling, ``F.pad`` and out-of-place ``index_put`` (autograd-friendly)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from . import GENERIC, _generic

_POOLABLE = ("float16", "bfloat16", "float32", "float64")


def _poolable(x: Any, window: tuple[int, ...]) -> bool:
    return 1 <= len(window) <= 3 and str(x.dtype).removeprefix("torch.") in _POOLABLE


def _max_pool(x: Any, window: tuple[int, ...]) -> Any:
    import torch.nn.functional as F

    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(window) - 1]
    lead, spatial = x.shape[: x.ndim - len(window)], x.shape[x.ndim - len(window) :]
    flat = x.reshape(math.prod(lead), 1, *spatial)
    out = pool(flat, window, stride=1)
    return out.reshape(*lead, *out.shape[2:])


def window_max(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    if not _poolable(x, window) or x.numel() == 0:
        return _generic.window_max(x, window, xp=xp)
    return _max_pool(x, window)


def window_min(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    if not _poolable(x, window) or x.numel() == 0:
        return _generic.window_min(x, window, xp=xp)
    return -_max_pool(-x, window)


def pad(x: Any, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Any) -> Any:
    import torch.nn.functional as F

    if x.dtype.is_floating_point is False and x.dtype.is_complex is False:
        return _generic.pad(x, widths, value, xp=xp)
    flat = [w for pair in reversed(widths) for w in pair]
    return F.pad(x, flat, value=value)


def expand(values: Any, index: Any, base: Any, *, xp: Any) -> Any:
    return base.index_put((index,), values)


def can_inspect(x: Any) -> bool:
    import torch

    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def prefers_static_shapes(x: Any) -> bool:
    return x.device.type != "cpu"


HOOKS = dataclasses.replace(
    GENERIC,
    name="torch",
    window_max=window_max,
    window_min=window_min,
    pad=pad,
    expand=expand,
    can_inspect=can_inspect,
    prefers_static_shapes=prefers_static_shapes,
)
