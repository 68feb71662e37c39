"""Cross-backend conformance suite for :mod:`subpix_xp`, shipped with the library.

One catalogue of cases (:mod:`subpix_xp.conformance.cases`) runs on every selected, installed array
backend and dtype, and each result is held against the float64 NumPy reference (and, where kornia
is installed, kornia 0.9.0 on torch tensors), within the tolerances of
:mod:`subpix_xp.conformance.tolerances`. It needs only the core dependencies for the NumPy row
(``array-api-strict`` for its row; any other library for its own).

Run it as ``python -m subpix_xp.conformance`` or ``subpix-xp conformance`` (a table; ``--help``
lists the options), or call :func:`main`:

>>> from subpix_xp.conformance import main
>>> main(["--backends", "numpy", "--cases", "nms2d:k3-mask", "--dtypes", "float64"])  # doctest: +ELLIPSIS
subpix_xp ... conformance -- hooks: native; reference: NumPy float64; 1 cases
<BLANKLINE>
operation  numpy
---------  ------
nms2d      pass 1
<BLANKLINE>
1 runs: 1 passed, 0 failed, 0 known failures, 0 unexpectedly passed, 0 skipped in ... s
0

A checkout also runs the catalogue as tests: ``python -m pytest conformance``.
"""

from __future__ import annotations

from .runner import main

__all__ = ["cases", "known_failures", "main", "runner", "tolerances"]
