"""Fixtures: ``xp_backend`` over the installed backends, ``dtype_name``, and tolerances in one place.

``SUBPIX_XP_BACKENDS=numpy,torch`` restricts the run; a backend named there that cannot be loaded
fails the run instead of being skipped. ``SUBPIX_XP_GENERIC_HOOKS=1`` forces the generic hooks.

Hypothesis runs deterministically in CI: the ``ci`` profile (``derandomize=True``: the examples
follow from each test's source alone; no example database; the reproduction blob printed on a
failure) is loaded when the environment variable ``CI`` is set (CI services set ``CI=true``), so
a submission that changes nothing there cannot fail there. Local runs load ``dev``: random examples
and the example database, so they keep exploring (and replay what failed before).
``HYPOTHESIS_PROFILE=ci`` (or ``dev``) picks one explicitly.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from subpix_xp.testing import BackendUnavailable, get_backend, selected_backend_names

_NAMES, _EXPLICIT = selected_backend_names()

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
# Hypothesis's own defaults (its built-in ``ci`` profile, which it loads by itself when ``CI`` is
# merely present, would otherwise be the parent).
settings.register_profile("dev", parent=settings.get_profile("default"))
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "") not in ("", "0", "false") else "dev"
)
settings.load_profile(_PROFILE)


def pytest_report_header(config):
    from subpix_xp.backends import _generic_forced

    return [
        f"subpix_xp backends: {', '.join(_NAMES)} ({'named' if _EXPLICIT else 'all known'}); "
        f"generic hooks forced: {_generic_forced()}; hypothesis profile: {_PROFILE}"
    ]


def load_backend(name: str):
    """The backend, or a skip with the reason (a failure if the backend was named explicitly)."""
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        if _EXPLICIT:
            pytest.fail(f"backend {name!r} was named in SUBPIX_XP_BACKENDS but is unavailable: {exc}")
        pytest.skip(f"backend {name!r} unavailable: {exc}")


@pytest.fixture(params=_NAMES)
def xp_backend(request):
    """A :class:`subpix_xp.testing.Backend` for each selected backend."""
    return load_backend(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype_name(request):
    return request.param
