"""Run the catalogue on the selected backends and dtypes; compare with the float64 NumPy reference.

One run is one (case, backend, dtype). It converts the case's NumPy inputs to the backend in that
dtype, calls the operation (on Dask with computation forbidden during the call), and checks that

- every output is an array of the input's library (``array_api_compat.array_namespace``), in the
  expected dtype (the input's; ``bool`` for masks), on the input's device, and lazy if the input is;
- every output agrees with the reference: NumPy float64 on the same dtype-rounded inputs, run on
  NumPy's own hooks (also under ``--generic-hooks``, so the generic path of every backend is held
  against the native NumPy path), within :mod:`subpix_xp.conformance.tolerances`;
- the inputs are unchanged, and no RuntimeWarning came from subpix_xp.

The ``kornia`` column (the oracle) runs kornia 0.9.0 on torch CPU tensors against the same
reference, with ``strict_maxima_bonus=0`` on our side where kornia ignores the bonus.

``python -m subpix_xp.conformance --help`` lists the options; :func:`main` is the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import functools
import importlib
import json
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import array_api_compat
import numpy as np

import subpix_xp
from subpix_xp.backends import use_generic_hooks
from subpix_xp.testing import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    get_backend,
    selected_backend_names,
    to_numpy,
)

from . import known_failures
from .cases import CASES, FLOAT_DTYPES, OPERATIONS, Case, get_case, select
from .tolerances import compare

__all__ = [
    "ORACLE",
    "Result",
    "case_inputs",
    "main",
    "reference",
    "run_one",
    "stale_known_failures",
]

#: The name of the oracle column: kornia 0.9.0 on torch CPU tensors.
ORACLE = "kornia"
_GENERIC_ENV = "SUBPIX_XP_GENERIC_HOOKS"
_ORACLE_ENV = "SUBPIX_XP_ORACLE"


@dataclasses.dataclass
class Result:
    """The outcome of one run: ``status`` is pass, fail, xfail, xpass or skip."""

    case: str
    op: str
    backend: str
    dtype: str
    hooks: str
    status: str
    error: float | None = None
    message: str = ""
    snippet: str = ""
    known: str | None = None
    seconds: float = 0.0
    tags: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def report(self) -> str:
        """The failure report: what, what came back and what was expected, and how to reproduce it."""
        head = f"{self.case} on {self.backend} {self.dtype} ({self.hooks} hooks)"
        body = f"{head}: {self.message}"
        if self.snippet:
            body += "\nReproduce:\n" + "\n".join("    " + line for line in self.snippet.splitlines())
        return body


# ---------------------------------------------------------------------------------------------
# Hooks, warnings and laziness around a call.


def generic_forced() -> bool:
    """Whether ``SUBPIX_XP_GENERIC_HOOKS`` asks for the generic hooks."""
    return os.environ.get(_GENERIC_ENV, "") not in ("", "0")


@contextlib.contextmanager
def _hooks(generic: bool) -> Iterator[None]:
    """Generic hooks if ``generic``; else each backend's own, whatever the environment says."""
    saved = os.environ.pop(_GENERIC_ENV, None) if not generic else None
    try:
        with use_generic_hooks(generic):
            yield
    finally:
        if saved is not None:
            os.environ[_GENERIC_ENV] = saved


@contextlib.contextmanager
def _warnings_policy() -> Iterator[None]:
    """A RuntimeWarning raised from subpix_xp is an error (as in the project's pytest settings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("error", category=RuntimeWarning, module=r"subpix_xp(\.|$)")
        yield


class ComputedDuringCall(RuntimeError):
    """A lazy backend computed during the call: the result should have stayed lazy."""


def _forbidden_scheduler(*args: Any, **kwargs: Any) -> Any:
    raise ComputedDuringCall(
        "the call computed a Dask graph (bool(), float(), .compute() or a "
        "data-dependent shape); a lazy input must give lazy outputs"
    )


@contextlib.contextmanager
def _no_compute(backend: Backend) -> Iterator[None]:
    """On Dask, forbid computation while the operation builds its graph."""
    if not (backend.lazy and array_api_compat.is_dask_namespace(backend.xp)):
        yield
        return
    import dask

    with dask.config.set(scheduler=_forbidden_scheduler):
        yield


# ---------------------------------------------------------------------------------------------
# Inputs and the reference.


def _cast(a: np.ndarray, dtype: str) -> np.ndarray:
    """A generated array in ``dtype`` (booleans stay boolean)."""
    return a if a.dtype == bool else a.astype(dtype)


def case_inputs(case: Case | str, backend: str, dtype: str) -> dict[str, Any]:
    """The case's inputs as arrays of ``backend`` in ``dtype`` (masks stay boolean)."""
    case = get_case(case) if isinstance(case, str) else case
    b = get_backend(backend)
    return {name: b.asarray(_cast(a, dtype)) for name, a in case.inputs().items()}


@functools.cache
def reference(case_id: str, dtype: str, oracle: bool = False) -> tuple[np.ndarray, ...]:
    """NumPy float64 outputs of the case on its inputs rounded to ``dtype`` (NumPy's own hooks).

    Integer dtypes run on the integers themselves. ``oracle=True`` gives the reference the kornia
    column is held against (``strict_maxima_bonus=0`` where kornia ignores the bonus).
    """
    case = get_case(case_id)
    if oracle:
        case = case.for_oracle()[0]
    floating = dtype in FLOAT_DTYPES
    arrays = {
        name: a if a.dtype == bool else (_cast(a, dtype).astype(np.float64) if floating else _cast(a, dtype))
        for name, a in case.inputs().items()
    }
    with _hooks(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(np.asarray(o) for o in case.call(subpix_xp, arrays))


@functools.cache
def _reference_problem(case_id: str) -> str | None:
    """Why the float64 reference itself is wrong, where the case knows the answer."""
    case = get_case(case_id)
    if case.expect is None:
        return None
    try:
        case.expect(reference(case_id, "float64"))
    except AssertionError as exc:
        return f"the NumPy float64 reference misses the case's known answer: {exc}"
    return None


def snippet(case: Case, backend: str, dtype: str, generic: bool) -> str:
    """Python source that reproduces one run (from any directory)."""
    oracle = backend == ORACLE
    lines = ["import subpix_xp"]
    if oracle:
        lines.append("import kornia.geometry.subpix as K")
    lines.append("from subpix_xp.conformance.runner import case_inputs, reference")
    lines.append(f'x = case_inputs("{case.id}", "{"torch" if oracle else backend}", "{dtype}")')
    call = case.for_oracle()[1].source("K") if oracle else case.source()
    if generic and not oracle:
        lines += [
            "from subpix_xp.backends import use_generic_hooks",
            "with use_generic_hooks():",
            f"    out = {call}",
        ]
    else:
        lines.append(f"out = {call}")
    lines.append(
        f'ref = reference("{case.id}", "{dtype}"{", oracle=True" if oracle else ""})'
        f"  # NumPy float64 on the same {dtype} inputs"
    )
    flag = " --generic-hooks" if generic and not oracle else ""
    lines.append(
        f"# or: python -m subpix_xp.conformance --cases '{case.id}' --backends {backend} --dtypes {dtype}{flag}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# One run.


def _oracle_module() -> Any:
    try:
        return importlib.import_module("kornia.geometry.subpix")
    except ImportError as exc:
        raise BackendUnavailable(f"kornia is not installed ({exc})") from None


def _dtype_matches(dt: Any, name: str, xp: Any) -> bool:
    try:
        return dt == getattr(xp, name)
    except Exception:
        return False


def _type_problems(out: Any, kind: str, like: Any, backend: Backend, dtype: str) -> list[str]:
    """Library, dtype, device and laziness of one output, against the first input ``like``."""
    if not array_api_compat.is_array_api_obj(out):
        return [f"returned {type(out).__module__}.{type(out).__name__}, not an array"]
    problems = []
    want_xp = array_api_compat.array_namespace(like)
    got_xp: Any
    try:
        got_xp = array_api_compat.array_namespace(out)
    except TypeError as exc:
        got_xp = f"<unknown: {exc}>"
    if got_xp is not want_xp:
        problems.append(f"library {getattr(got_xp, '__name__', got_xp)}, expected {want_xp.__name__}")
    want_dtype = "bool" if kind == "mask" else dtype
    if not _dtype_matches(out.dtype, want_dtype, want_xp):
        problems.append(f"dtype {out.dtype}, expected {want_dtype}")
    got_dev, want_dev = array_api_compat.device(out), array_api_compat.device(like)
    if got_dev != want_dev:
        problems.append(f"device {got_dev}, expected {want_dev}")
    if backend.lazy and not array_api_compat.is_lazy_array(out):
        problems.append(f"an eager {type(out).__name__} from a lazy input, expected a lazy array")
    return problems


def _exception_text(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = next((f for f in reversed(frames) if "subpix_xp" in f.filename or "kornia" in f.filename), None)
    at = f" (at {os.path.basename(where.filename)}:{where.lineno} in {where.name})" if where else ""
    return f"raised {type(exc).__name__}: {exc}{at}"


def _execute(
    case: Case, backend_name: str, dtype: str, generic: bool
) -> tuple[float | None, str, tuple[str, ...]]:
    """Run and check; returns ``(largest error of a non-mask output, message, failure tags)``.

    No tags means the run passed. The tags (``raised``, ``err``, ``mask``, ``type``, ``shape``,
    ``modified``, ``reference``) summarise what went wrong for the table.
    """
    oracle = backend_name == ORACLE
    backend = get_backend("torch" if oracle else backend_name)
    module = _oracle_module() if oracle else subpix_xp
    call_case = case.for_oracle()[1] if oracle else case
    try:
        problem = _reference_problem(case.id)
        want = reference(case.id, dtype, oracle)
    except Exception as exc:
        return None, f"the NumPy float64 reference {_exception_text(exc)}", ("reference",)
    if problem:
        return None, problem, ("reference",)
    try:
        arrays = case_inputs(case, "torch" if oracle else backend_name, dtype)
        before = {name: np.array(to_numpy(a), copy=True) for name, a in arrays.items()}
    except Exception as exc:
        return None, f"converting the inputs to {backend.name} {_exception_text(exc)}", ("raised",)
    try:
        with _hooks(generic and not oracle), _warnings_policy(), _no_compute(backend):
            outputs = call_case.call(module, arrays)
    except Exception as exc:
        return None, _exception_text(exc), ("raised",)

    fn = case.source("K" if oracle else "subpix_xp").split("(")[0]
    if len(outputs) != len(case.outputs):
        return None, f"{fn} returned {len(outputs)} outputs, expected {len(case.outputs)}", ("shape",)
    like = next(iter(arrays.values()))
    messages: list[str] = []
    tags: set[str] = set()
    worst = None
    for i, (out, kind) in enumerate(zip(outputs, case.outputs)):
        label = f"output {i} ({kind})" if len(outputs) > 1 else f"the output ({kind})"
        problems = _type_problems(out, kind, like, backend, dtype)
        messages += [f"{label}: {p}" for p in problems]
        tags.update(["type"] if problems else [])
        try:
            with warnings.catch_warnings():  # a lazy backend computes here, in its own threads
                warnings.simplefilter("ignore")
                got = np.asarray(to_numpy(out))
        except Exception as exc:
            messages.append(f"{label}: converting to NumPy {_exception_text(exc)}")
            tags.add("raised")
            continue
        result = compare(got, want[i], kind, dtype)
        if kind != "mask":
            worst = result.error if worst is None else max(worst, result.error)
        if not result.ok:
            messages.append(f"{label}: {result.detail}")
            tags.add(result.tag)
    for name, a in arrays.items():
        after = np.asarray(to_numpy(a))
        if not np.array_equal(after, before[name], equal_nan=after.dtype.kind == "f"):
            messages.append(f"the input `{name}` was modified")
            tags.add("modified")
    if messages:
        return worst, f"{fn}: " + "; ".join(messages), tuple(sorted(tags))
    return worst, "", ()


def hooks_label(generic: bool, backend: str) -> str:
    return "native" if backend == ORACLE or not generic else "generic"


def run_one(case: Case | str, backend: str, dtype: str, *, generic_hooks: bool | None = None) -> Result:
    """Run one (case, backend, dtype) and apply the known failures.

    ``generic_hooks=None`` follows ``SUBPIX_XP_GENERIC_HOOKS``. An unavailable backend raises
    :class:`~subpix_xp.testing.BackendUnavailable` (the caller decides: skip, or an error).
    """
    case = get_case(case) if isinstance(case, str) else case
    generic = generic_forced() if generic_hooks is None else generic_hooks
    hooks = hooks_label(generic, backend)
    base: dict[str, Any] = dict(case=case.id, op=case.op, backend=backend, dtype=dtype, hooks=hooks)
    if backend == ORACLE and case.oracle:
        return Result(**base, status="skip", message=f"not compared with kornia: {case.oracle}")
    start = time.perf_counter()
    error, message, tags = _execute(case, backend, dtype, generic)
    ok = not tags
    seconds = time.perf_counter() - start
    entry = known_failures.match(case.id, backend, dtype, hooks)
    known = entry.reason if entry else None
    if ok:
        status = "xpass" if entry else "pass"
        if entry:
            message = f"passes, but is listed as a known failure: {entry.describe()}"
        return Result(**base, status=status, error=error, known=known, message=message, seconds=seconds)
    return Result(
        **base,
        status="xfail" if entry else "fail",
        error=error,
        message=message,
        snippet=snippet(case, backend, dtype, generic),
        known=known,
        seconds=seconds,
        tags=tags,
    )


def stale_known_failures(results: Sequence[Result]) -> list[str]:
    """Known-failure entries that match no catalogue case or backend, or whose matching runs all passed."""
    stale = []
    names = (*BACKEND_NAMES, ORACLE)
    for entry in known_failures.KNOWN_FAILURES:
        unmatched = [p for p in entry.case_patterns if not any(fnmatch.fnmatchcase(c.id, p) for c in CASES)]
        if unmatched or not any(fnmatch.fnmatchcase(n, entry.backend) for n in names):
            what = f"case pattern(s) {unmatched}" if unmatched else f"backend {entry.backend!r}"
            stale.append(f"{entry.describe()} -- {what} match(es) nothing in the catalogue")
            continue
        ran = [
            r for r in results if r.status != "skip" and entry.matches(r.case, r.backend, r.dtype, r.hooks)
        ]
        passed = [r for r in ran if r.status == "xpass"]
        if ran and len(passed) == len(ran):
            stale.append(f"{entry.describe()} -- all {len(ran)} matching runs pass now")
        elif passed:
            stale.append(
                f"{entry.describe()} -- {len(passed)} of {len(ran)} matching runs pass now, e.g. "
                f"{passed[0].case} on {passed[0].backend} {passed[0].dtype}: narrow the entry"
            )
    return stale


# ---------------------------------------------------------------------------------------------
# Planning: which backends and dtypes run.


@dataclasses.dataclass
class Plan:
    ops: list[str]
    columns: list[str]
    unavailable: dict[str, str]
    runs: list[tuple[Case, str, str]]
    skipped: list[Result]


def select_columns(backend_spec: str | None = None, *, oracle: bool = True) -> tuple[list[str], bool, bool]:
    """The columns to run, whether they were named explicitly, and whether the oracle was named.

    ``backend_spec`` (comma-separated) wins over ``SUBPIX_XP_BACKENDS``; neither means every
    registered backend. The ``kornia`` column joins when ``torch`` is a column (unless ``oracle``
    is False or ``SUBPIX_XP_ORACLE=0``), or when it is named.
    """
    spec = backend_spec if backend_spec is not None else os.environ.get("SUBPIX_XP_BACKENDS", "")
    spec_names = [n.strip() for n in spec.split(",") if n.strip()]
    named_oracle = ORACLE in spec_names
    rest = [n for n in spec_names if n != ORACLE]
    names: Sequence[str]
    if named_oracle and not rest:
        names, explicit = (), True
    else:
        names, explicit = selected_backend_names(",".join(rest))
    columns = list(names)
    wanted = oracle and os.environ.get(_ORACLE_ENV, "1") not in ("0", "")
    if named_oracle or (wanted and "torch" in names):
        columns.append(ORACLE)
    return columns, explicit, named_oracle


def load_column(name: str) -> Backend:
    """The backend behind a column (torch for the oracle); raises ``BackendUnavailable``."""
    if name == ORACLE:
        _oracle_module()
        return get_backend("torch")
    return get_backend(name)


def dtype_skip_reason(name: str, backend: Backend, dtype: str) -> str | None:
    """Why ``backend`` cannot run ``dtype``, if it cannot."""
    if dtype == "float64" and not backend.float64:
        return f"{name} has no float64"
    if not hasattr(backend.xp, dtype):
        return f"{name} has no {dtype}"
    return None


def make_plan(
    backend_spec: str | None,
    cases: Sequence[Case],
    dtypes: Sequence[str] | None,
    *,
    oracle: bool = True,
    generic: bool = False,
) -> Plan:
    """Load the backends; an explicitly named backend that cannot load raises ``BackendUnavailable``."""
    columns, explicit, named_oracle = select_columns(backend_spec, oracle=oracle)
    unavailable: dict[str, str] = {}
    loaded: dict[str, Backend] = {}
    for name in columns:
        try:
            loaded[name] = load_column(name)
        except BackendUnavailable as exc:
            if explicit and (name != ORACLE or named_oracle):
                raise BackendUnavailable(
                    f"backend {name!r} was named explicitly but is unavailable: {exc}"
                ) from None
            unavailable[name] = str(exc)
    runs, skipped = [], []
    for case in cases:
        for name in columns:
            if name in unavailable:
                continue
            for dtype in case.dtypes:
                if dtypes and dtype not in dtypes:
                    continue
                reason = dtype_skip_reason(name, loaded[name], dtype)
                if reason:
                    skipped.append(
                        Result(
                            case.id, case.op, name, dtype, hooks_label(generic, name), "skip", message=reason
                        )
                    )
                else:
                    runs.append((case, name, dtype))
    return Plan(sorted({c.op for c in cases}), columns, unavailable, runs, skipped)


# ---------------------------------------------------------------------------------------------
# The table.


def _cell(results: list[Result], footnote: Any) -> str:
    if not results:
        return "-"
    by = {s: [r for r in results if r.status == s] for s in ("pass", "fail", "xfail", "xpass", "skip")}
    ran = len(results) - len(by["skip"])
    parts = []
    if by["fail"]:
        errors = [r.error for r in by["fail"] if "err" in r.tags and r.error is not None]
        what = [f"err {max(errors):.1e}"] if errors else []
        what += sorted({t for r in by["fail"] for t in r.tags} - {"err"})
        parts.append(f"FAIL {len(by['fail'])}/{ran}" + (f" ({', '.join(what)})" if what else ""))
    elif by["pass"] or by["xpass"]:
        parts.append(f"pass {len(by['pass']) + len(by['xpass'])}")
    if by["xfail"]:
        parts.append(f"xfail {len(by['xfail'])}")
    if by["xpass"]:
        parts.append(f"XPASS {len(by['xpass'])}")
    if by["skip"]:
        reasons = sorted({r.message for r in by["skip"]})
        marks = "".join(f"[{footnote(m)}]" for m in reasons)
        parts.append(f"skip {len(by['skip'])}{marks}" if ran else f"skip{marks}")
    return " ".join(parts)


def render_table(plan: Plan, results: Sequence[Result]) -> tuple[str, dict[str, dict[str, str]], list[str]]:
    notes: list[str] = []

    def footnote(reason: str) -> int:
        if reason not in notes:
            notes.append(reason)
        return notes.index(reason) + 1

    present_ops = {r.op for r in results} | {c.op for c, _, _ in plan.runs} | set(plan.ops)
    ops = [op for op in OPERATIONS if op in present_ops]
    table: dict[str, dict[str, str]] = {}
    for op in ops:
        row = {}
        for col in plan.columns:
            if col in plan.unavailable:
                row[col] = f"skip[{footnote(f'{col}: {plan.unavailable[col]}')}]"
            else:
                row[col] = _cell([r for r in results if r.op == op and r.backend == col], footnote)
        table[op] = row
    header = ["operation", *plan.columns]
    widths = [max(len(header[0]), *(len(op) for op in ops))] if ops else [len(header[0])]
    widths += [
        max(len(col), *(len(table[op][col]) for op in ops)) if ops else len(col) for col in plan.columns
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    for op in ops:
        lines.append(
            "  ".join(
                [op.ljust(widths[0]), *(table[op][c].ljust(w) for c, w in zip(plan.columns, widths[1:]))]
            )
        )
    notes_text = [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(line.rstrip() for line in lines), table, notes_text


# ---------------------------------------------------------------------------------------------
# Command line.


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "python -m subpix_xp.conformance",
        description="Run the subpix_xp conformance catalogue on every selected, installed backend and dtype, "
        "against the float64 NumPy reference (and kornia 0.9.0 on torch, where installed).",
    )
    p.add_argument(
        "--backends",
        help="comma-separated backends: registered names (numpy, array_api_strict, torch, "
        "torch_cuda, cupy, jax, dask), importable module paths (pkg.mod or pkg.mod:factory) and "
        f"'{ORACLE}' (the oracle column). Default: SUBPIX_XP_BACKENDS, else all; a backend named "
        "explicitly that is unavailable is an error.",
    )
    p.add_argument(
        "--ops", help="comma-separated operations (shell patterns), e.g. 'nms*,conv_quad_interp3d'"
    )
    p.add_argument("--cases", help="comma-separated case ids (shell patterns), e.g. 'nms2d:k3-*'")
    p.add_argument(
        "--dtypes",
        help="comma-separated dtypes (default: each case's own: float32,float64; "
        "int32,int64 for the integer NMS cases)",
    )
    p.add_argument(
        "--generic-hooks",
        action="store_true",
        help="force the generic (standard-only) hooks on every backend (also SUBPIX_XP_GENERIC_HOOKS=1)",
    )
    p.add_argument("--no-oracle", action="store_true", help=f"leave out the {ORACLE} column")
    p.add_argument(
        "--json", metavar="PATH", help="write every result, the table and the stale entries as JSON"
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument(
        "--max-failures",
        type=int,
        default=25,
        metavar="N",
        help="print the report of at most N failures (all are in --json); default 25",
    )
    p.add_argument("--strict", action="store_true", help="exit non-zero on stale known-failure entries too")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print known failures (xfail) in full as well"
    )
    return p


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """The command line; returns the exit status (0 passed, 1 a failure, 2 a usage error).

    ``argv`` defaults to ``sys.argv[1:]``; ``prog`` is the program name in the usage text (default
    ``python -m subpix_xp.conformance``). ``--help`` and argument errors return 0 and 2 instead of
    exiting, so a caller such as ``subpix-xp conformance`` can pass the status on.
    """
    saved = os.environ.get(_GENERIC_ENV)
    try:
        try:
            args = _parser(prog).parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error that argparse has already printed
            return exc.code if isinstance(exc.code, int) else 2
        return _main(args)
    finally:  # --generic-hooks sets the variable (for Dask's worker threads too); leave it as found
        if saved is None:
            os.environ.pop(_GENERIC_ENV, None)
        else:
            os.environ[_GENERIC_ENV] = saved


def _main(args: argparse.Namespace) -> int:
    cases = select(_split(args.ops), _split(args.cases))
    if args.list:
        for c in cases:
            note = "; ".join(n for n in (c.doc, c.oracle and f"no oracle: {c.oracle}") if n)
            print(f"{c.id:50s} {','.join(c.dtypes):15s} {c.source()}" + (f"  # {note}" if note else ""))
        return 0
    if not cases:
        print("error: no case matches --ops/--cases; see --list", file=sys.stderr)
        return 2
    generic = args.generic_hooks or generic_forced()
    if generic:
        os.environ[_GENERIC_ENV] = "1"
    try:
        plan = make_plan(
            args.backends, cases, _split(args.dtypes), oracle=not args.no_oracle, generic=generic
        )
    except (BackendUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not plan.runs and not plan.skipped:
        print("error: nothing to run (no installed backend supports the selected dtypes)", file=sys.stderr)
        return 2

    start = time.perf_counter()
    results = list(plan.skipped)
    for case, backend, dtype in plan.runs:
        results.append(run_one(case, backend, dtype, generic_hooks=generic))
    seconds = time.perf_counter() - start

    table_text, table, notes = render_table(plan, results)
    stale = stale_known_failures(results)
    failures = [r for r in results if r.failed]
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "xfail", "xpass", "skip")}

    print(
        f"subpix_xp {subpix_xp.__version__} conformance -- hooks: {'generic (forced)' if generic else 'native'}; "
        f"reference: NumPy float64; {len(cases)} cases"
    )
    print()
    print(table_text)
    if notes:
        print()
        print("\n".join(notes))
    shown = failures[: args.max_failures]
    if shown:
        print(f"\n{len(failures)} failure(s):")
        for r in shown:
            print("\nFAIL " + r.report())
        if len(failures) > len(shown):
            print(f"\n... and {len(failures) - len(shown)} more (see --json)")
    xfails = [r for r in results if r.status == "xfail"]
    if xfails:
        print(f"\n{len(xfails)} known failure(s) (subpix_xp/conformance/known_failures.py):")
        seen = set()
        for r in xfails:
            if args.verbose:
                print("\nxfail " + r.report() + f"\n  known: {r.known}")
            elif r.known not in seen:
                seen.add(r.known)
                n = sum(x.known == r.known for x in xfails)
                print(f"  {n} run(s), e.g. {r.case} on {r.backend} {r.dtype}: {r.known}")
    if stale:
        print(
            f"\n{len(stale)} stale known-failure entr{'y' if len(stale) == 1 else 'ies'} "
            "(remove or narrow them in subpix_xp/conformance/known_failures.py):"
        )
        for s in stale:
            print(f"  {s}")
    print(
        f"\n{len(results)} runs: {counts['pass']} passed, {counts['fail']} failed, {counts['xfail']} known failures, "
        f"{counts['xpass']} unexpectedly passed, {counts['skip']} skipped in {seconds:.1f} s"
    )

    if args.json:
        payload = {
            "subpix_xp": subpix_xp.__version__,
            "python": platform.python_version(),
            "hooks": "generic" if generic else "native",
            "columns": plan.columns,
            "unavailable": plan.unavailable,
            "seconds": round(seconds, 3),
            "counts": counts,
            "table": table,
            "notes": notes,
            "stale_known_failures": stale,
            "results": [dataclasses.asdict(r) for r in results],
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1, default=str)
        print(f"results written to {args.json}")
    if failures:
        return 1
    if stale and args.strict:
        return 1
    return 0
