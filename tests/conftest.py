"""Fixtures: ``xp_backend`` over the installed backends, ``dtype_name``, and tolerances in one place.

``SUBPIX_XP_BACKENDS=numpy,torch`` restricts the run; a backend named there that cannot be loaded
fails the run instead of being skipped. ``SUBPIX_XP_GENERIC_HOOKS=1`` forces the generic hooks.
"""

from __future__ import annotations

import pytest

from subpix_xp.testing import BackendUnavailable, get_backend, selected_backend_names

_NAMES, _EXPLICIT = selected_backend_names()


def pytest_report_header(config):
    from subpix_xp.backends import _generic_forced

    return [f"subpix_xp backends: {', '.join(_NAMES)} ({'named' if _EXPLICIT else 'all known'}); "
            f"generic hooks forced: {_generic_forced()}"]


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
