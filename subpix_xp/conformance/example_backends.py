"""Example backend factories for ``--backends pkg.mod:factory`` (see docs/conformance.md).

``python -m subpix_xp.conformance --backends subpix_xp.conformance.example_backends:numpy_readonly`` runs the
catalogue on read-only NumPy arrays: an operation that writes into its input raises there.
"""

from __future__ import annotations

import importlib

import numpy as np

from subpix_xp.testing import Backend


def numpy_readonly() -> Backend:
    """NumPy arrays with ``writeable=False`` (as array-api-extra's ``numpy:readonly``)."""

    def asarray(a: np.ndarray) -> np.ndarray:
        out = np.array(a, copy=True)
        out.flags.writeable = False
        return out

    return Backend("numpy_readonly", importlib.import_module("array_api_compat.numpy"), asarray, np.asarray)
