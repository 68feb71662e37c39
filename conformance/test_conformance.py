"""``pytest conformance``: one test per (case, backend, dtype) of the catalogue, plus its own checks.

A failing test prints what came back, what was expected and a snippet that reproduces it. Known
failures (``subpix_xp/conformance/known_failures.py``) are xfailed; one that passes warns and is listed as
stale at the end of the session.
"""

from __future__ import annotations

import fnmatch
import json
import warnings

import numpy as np
import pytest

import subpix_xp
from subpix_xp.conformance import known_failures, runner
from subpix_xp.conformance.cases import CASES, OPERATIONS, RESULT_TYPES, get_case
from subpix_xp.testing import BACKEND_NAMES, BackendUnavailable

_COLUMNS, _EXPLICIT, _NAMED_ORACLE = runner.select_columns()


class StaleKnownFailure(UserWarning):
    """A run listed in subpix_xp/conformance/known_failures.py passes."""


def _params():
    for case in CASES:
        for backend in _COLUMNS:
            for dtype in case.dtypes:
                yield pytest.param(case.id, backend, dtype, id=f"{case.id}-{backend}-{dtype}")


def _load(backend: str, dtype: str) -> None:
    """Skip (or fail, for a backend named explicitly) when the column or the dtype is unavailable."""
    try:
        loaded = runner.load_column(backend)
    except BackendUnavailable as exc:
        if _EXPLICIT and (backend != runner.ORACLE or _NAMED_ORACLE):
            pytest.fail(f"backend {backend!r} was named in SUBPIX_XP_BACKENDS but is unavailable: {exc}")
        pytest.skip(f"{backend} unavailable: {exc}")
    reason = runner.dtype_skip_reason(backend, loaded, dtype)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize(("case_id", "backend", "dtype"), list(_params()))
def test_conformance(case_id: str, backend: str, dtype: str, record_result) -> None:
    _load(backend, dtype)
    result = runner.run_one(case_id, backend, dtype)
    record_result(result)
    if result.status == "skip":
        pytest.skip(result.message)
    if result.status == "xfail":
        known = result.known or ""
        pytest.xfail(f"known failure: {known[:100]}{'...' if len(known) > 100 else ''}")
    if result.status == "xpass":
        warnings.warn(StaleKnownFailure(f"{case_id} on {backend} {dtype}: {result.message}"), stacklevel=1)
    if result.status == "fail":
        pytest.fail(result.report(), pytrace=False)


# ---------------------------------------------------------------------------------------------
# The catalogue's own checks.


def test_catalogue_covers_the_public_api():
    assert set(OPERATIONS) == set(subpix_xp.__all__) - RESULT_TYPES
    missing = [op for op in OPERATIONS if not any(c.op == op for c in CASES)]
    assert not missing, f"operations without a conformance case: {missing}"


def test_known_failures_name_real_cases_and_backends():
    names = (*BACKEND_NAMES, runner.ORACLE)
    for entry in known_failures.KNOWN_FAILURES:
        for pattern in entry.case_patterns:
            assert any(fnmatch.fnmatchcase(c.id, pattern) for c in CASES), (
                f"{pattern!r} matches no case: {entry}"
            )
        assert any(fnmatch.fnmatchcase(n, entry.backend) for n in names), (
            f"no backend matches {entry.describe()}"
        )
        assert entry.hooks in ("*", "native", "generic"), entry.describe()
        assert entry.reason.strip(), entry.describe()


def test_inputs_are_deterministic_and_read_only():
    for case in CASES:
        arrays = case.inputs()
        regenerated = case.make()
        assert arrays.keys() == regenerated.keys(), case.id
        for name, a in arrays.items():
            assert not a.flags.writeable, case.id
            assert a.dtype in (np.float64, np.bool_), f"{case.id}: input {name} is {a.dtype}"
            np.testing.assert_array_equal(a, regenerated[name], err_msg=case.id)


def test_reference_meets_the_known_answers():
    for case in CASES:
        if case.expect is not None:
            case.expect(runner.reference(case.id, "float64"))


def test_snippet_reproduces_a_run():
    case = get_case("conv_soft_argmax2d:values")
    source = runner.snippet(case, "numpy", "float32", generic=False)
    scope: dict = {}
    exec(compile(source, "<snippet>", "exec"), scope)
    for got, want in zip(scope["out"], scope["ref"]):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_command_line_table_and_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    code = runner.main(["--backends", "numpy", "--ops", "nms2d,render_gaussian2d", "--json", str(path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "nms2d" in printed and "render_gaussian2d" in printed
    payload = json.loads(path.read_text())
    assert payload["columns"] == ["numpy"]
    assert set(payload["table"]) == {"nms2d", "render_gaussian2d"}
    assert all(r["status"] in ("pass", "skip", "xfail") for r in payload["results"])


def test_command_line_rejects_a_named_backend_that_is_missing(capsys):
    code = runner.main(["--backends", "numpy,no_such_module_for_subpix.xp", "--ops", "nms2d"])
    assert code == 2
    assert "no_such_module_for_subpix.xp" in capsys.readouterr().err


def test_command_line_accepts_a_module_path_backend(capsys):
    code = runner.main(["--backends", "array_api_strict", "--cases", "nms2d:k3-mask", "--dtypes", "float32"])
    assert code == 0, capsys.readouterr().out


def test_known_failures_are_applied_and_stale_entries_reported(monkeypatch):
    failing = known_failures.KnownFailure("nms2d:k3-mask", "numpy", "listed although it passes")
    monkeypatch.setattr(known_failures, "KNOWN_FAILURES", (failing,))
    result = runner.run_one("nms2d:k3-mask", "numpy", "float32", generic_hooks=False)
    assert result.status == "xpass"
    stale = runner.stale_known_failures([result])
    assert len(stale) == 1 and "pass now" in stale[0]
    unknown = known_failures.KnownFailure("nms2d:no-such-case", "numpy", "typo")
    monkeypatch.setattr(known_failures, "KNOWN_FAILURES", (unknown,))
    assert "nothing in the catalogue" in runner.stale_known_failures([])[0]


def test_failure_report_names_the_function_the_values_and_the_snippet(monkeypatch):
    import subpix_xp.testing as testing

    def shifted() -> testing.Backend:  # a backend whose arrays come back off by 1e-3
        numpy = testing.get_backend("numpy")
        return testing.Backend("shifted", numpy.xp, lambda a: np.asarray(a) + 1e-3, np.asarray)

    monkeypatch.setitem(testing._LOADERS, "shifted", shifted)
    result = runner.run_one("spatial_expectation2d:pixels", "shifted", "float64", generic_hooks=False)
    assert result.status == "fail"
    assert "subpix_xp.spatial_expectation2d" in result.message and "expected" in result.message
    assert 'case_inputs("spatial_expectation2d:pixels", "shifted", "float64")' in result.snippet
    assert result.tags == ("err",)
    assert runner._cell([result], lambda reason: 1).startswith("FAIL 1/1 (err ")


def test_command_line_help_and_usage_errors_return_a_status(capsys):
    assert runner.main(["--help"], prog="subpix-xp conformance") == 0
    assert "usage: subpix-xp conformance" in capsys.readouterr().out
    assert runner.main(["--no-such-option"]) == 2
    assert "python -m subpix_xp.conformance" in capsys.readouterr().err


def test_module_runs_from_any_directory(tmp_path):
    """``python -m subpix_xp.conformance`` needs no checkout: run it from an empty directory."""
    import os
    import pathlib
    import subprocess
    import sys

    package_root = str(pathlib.Path(subpix_xp.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "subpix_xp.conformance",
            "--backends",
            "numpy",
            "--ops",
            "nms3d_minmax",
            "--dtypes",
            "float32",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nms3d_minmax" in done.stdout and " 0 failed" in done.stdout
