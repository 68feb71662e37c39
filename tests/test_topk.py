"""The three forms of the per-row top-k (subpix_xp._topk) agree with each other and with a NumPy
reference, ties included (the earlier entry wins)."""

from __future__ import annotations

import array_api_compat.numpy as cnp
import numpy as np
import pytest

from subpix_xp._topk import top_k, top_k_mask, top_k_sparse


def _case(seed):
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 5, size=(4, 30)).astype(np.float64)  # many ties
    valid = rng.random((4, 30)) < 0.5
    valid[2] = False
    return score, valid


def _reference(score, valid, k):
    """Per row: the valid positions by value, largest first, ties by position; the first ``k``."""
    return [
        [int(i) for i in sorted(np.flatnonzero(v), key=lambda i: (-s[i], i))[:k]]
        for s, v in zip(score, valid)
    ]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [0, 1, 3, 20, 40])
def test_forms_agree(seed, k):
    score, valid = _case(seed)
    ref = _reference(score, valid, k)

    dense = top_k(np.where(valid, score, -np.inf), k, xp=cnp)
    assert dense.shape == (4, min(k, 30))
    assert [row[: len(r)].tolist() for row, r in zip(dense, ref)] == ref

    rows, cols = np.nonzero(valid)
    entry, row, rank = top_k_sparse(rows, score[rows, cols], k, xp=cnp)
    got = [[] for _ in range(4)]
    for e, o, n in zip(entry, row, rank):
        assert rows[e] == o and n == len(got[o])
        got[o].append(int(cols[e]))
    assert got == ref

    mask = top_k_mask(score, valid, k, xp=cnp)
    want = np.zeros_like(valid)
    for i, r in enumerate(ref):
        want[i, r] = True
    np.testing.assert_array_equal(mask, want)
