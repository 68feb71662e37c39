"""Cross-backend conformance suite for :mod:`subpix_xp`.

One catalogue of cases (:mod:`conformance.cases`) runs on every selected, installed array backend
and dtype, and each result is held against the float64 NumPy reference (and, where kornia is
installed, kornia 0.9.0 on torch tensors). Run it with ``python -m conformance`` (a table) or
``pytest conformance`` (one test per case, backend and dtype); see ``conformance/README.md``.
"""

from __future__ import annotations

__all__ = ["cases", "known_failures", "runner", "tolerances"]
