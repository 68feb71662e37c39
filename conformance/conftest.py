"""pytest plumbing for ``pytest conformance``: the report header and the stale known failures.

Backends: ``SUBPIX_XP_BACKENDS`` (a backend named there that is unavailable fails its tests instead
of skipping them); generic hooks: ``SUBPIX_XP_GENERIC_HOOKS=1``; the kornia column: on whenever
torch runs, off with ``SUBPIX_XP_ORACLE=0``.
"""

from __future__ import annotations

import pytest

from subpix_xp.conformance import runner

_RESULTS = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[_RESULTS] = []


@pytest.fixture
def record_result(request):
    """Keep a :class:`subpix_xp.conformance.runner.Result` for the end-of-session stale known-failure report."""
    return request.config.stash[_RESULTS].append


def pytest_report_header(config):
    columns, explicit, _ = runner.select_columns()
    return [
        f"conformance columns: {', '.join(columns)} ({'named' if explicit else 'all known'}); "
        f"hooks: {'generic (forced)' if runner.generic_forced() else 'native'}"
    ]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    stale = runner.stale_known_failures(results)
    if stale:
        terminalreporter.section("stale known failures (subpix_xp/conformance/known_failures.py)")
        for line in stale:
            terminalreporter.line(line)
