"""The checkout's entry point to the conformance suite, which ships in :mod:`subpix_xp.conformance`.

``python -m conformance`` is ``python -m subpix_xp.conformance`` (kept for a checkout), and
``python -m pytest conformance`` runs the same catalogue as tests (``test_conformance.py``, with
its pytest plumbing in ``conftest.py``). The catalogue, runner, tolerances and known failures live
in the package, so an installed wheel runs the suite from any directory.
"""

from __future__ import annotations
