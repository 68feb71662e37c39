"""Per-row top-k: the ``k`` largest values of each row (image), ties broken by the earlier entry.

One rule in three forms, for the three kinds of caller:

* :func:`top_k`: dense and static-shaped, the indices of each row's ``k`` largest entries, largest
  first (a stable descending sort: the :attr:`Hooks.top_k` hook);
* :func:`top_k_sparse`: over listed entries only (the output of ``nonzero``), where shapes may
  depend on data: which entries are kept, their row and their rank in it;
* :func:`top_k_mask`: static-shaped and lazy-friendly, the mask of each row's ``k`` largest valid
  entries, from one ``kth_largest`` hook call per row (a chunk-wise ``topk`` on Dask).
"""

from __future__ import annotations

import math
from typing import Any

from ._common import device, index_dtype
from .backends import hooks_for

Array = Any

__all__ = ["top_k", "top_k_mask", "top_k_sparse", "top_k_values"]


def top_k(score: Array, k: int, *, xp: Any) -> Array:
    """The indices of the ``k`` largest entries of each row of ``score`` (last axis), largest first.

    Ties: the earlier entry first. Fewer than ``k`` columns when the rows are shorter.

    >>> import array_api_compat.numpy as xp
    >>> top_k(xp.asarray([[1.0, 3.0, 2.0, 3.0]]), 3, xp=xp)
    array([[1, 3, 2]])
    """
    return hooks_for(xp).top_k(score, k, xp=xp)[1]


def top_k_values(score: Array, k: int, *, xp: Any) -> tuple[Array, Array]:
    """``(values, indices)``: :func:`top_k` and the entries there (a zero may come back as ``+0.0``).

    >>> import array_api_compat.numpy as xp
    >>> top_k_values(xp.asarray([[1.0, 3.0, 2.0, 3.0]]), 2, xp=xp)
    (array([[3., 3.]]), array([[1, 3]]))
    """
    return hooks_for(xp).top_k(score, k, xp=xp)


def top_k_sparse(row: Array, value: Array, k: int, *, xp: Any) -> tuple[Array, Array, Array]:
    """``(entry, row, rank)`` of the ``k`` largest ``value`` of each row, over entries listed by ``row``.

    ``row`` (non-decreasing, as ``nonzero`` gives) and ``value`` are 1-D and list the candidate
    entries. The kept entries are returned grouped by row, largest first within a row (ties: the
    earlier entry), with their row and their rank (0, 1, ...) in it.

    >>> import array_api_compat.numpy as xp
    >>> top_k_sparse(xp.asarray([0, 0, 0, 1]), xp.asarray([1.0, 3.0, 3.0, 5.0]), 2, xp=xp)
    (array([1, 2, 3]), array([0, 0, 1]), array([0, 1, 0]))
    """
    by_value = xp.argsort(value, descending=True, stable=True)
    grouped = xp.take(by_value, xp.argsort(xp.take(row, by_value), stable=True))
    owner = xp.take(row, grouped)
    first = xp.astype(xp.searchsorted(owner, owner, side="left"), row.dtype)
    rank = xp.arange(grouped.shape[0], dtype=row.dtype, device=device(row)) - first
    kept = xp.nonzero(rank < k)[0]
    return xp.take(grouped, kept), xp.take(owner, kept), xp.take(rank, kept)


def top_k_mask(value: Array, valid: Array, k: int, *, xp: Any) -> Array:
    """The mask of the ``k`` largest ``value`` among the ``valid`` entries of each row (last axis).

    Keeps the valid entries above the row's ``k``-th largest valid value and, of those equal to it,
    the first ones (a cumulative count), so ties go to the earlier entry as in :func:`top_k`.

    >>> import array_api_compat.numpy as xp
    >>> top_k_mask(xp.asarray([[1.0, 3.0, 2.0, 3.0]]), xp.asarray([[True, False, True, True]]), 1, xp=xp)
    array([[False, False, False,  True]])
    """
    n = value.shape[-1]
    if k >= n:
        return valid
    if k == 0:
        return xp.zeros_like(valid)
    value = xp.where(valid, value, xp.asarray(-math.inf, dtype=value.dtype))
    kth = hooks_for(xp).kth_largest(value, k, xp=xp)
    above = valid & (value > kth)
    tied = valid & (value == kth)
    count = xp.astype(tied, index_dtype(xp=xp))
    room = k - xp.sum(xp.astype(above, count.dtype), axis=-1, keepdims=True)
    return above | (tied & (xp.cumulative_sum(count, axis=-1) <= room))
