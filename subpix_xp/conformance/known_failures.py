"""Known failures, per backend, in one file.

Each entry matches runs by shell patterns on the case id (``"<operation>:<label>"``), the backend
(``"kornia"`` is the oracle column), the dtype and the hooks (``"native"`` or ``"generic"``). A
matching run that fails is reported as ``xfail`` and does not fail the suite; a matching run that
passes is ``XPASS``, and the entry is reported as stale (``python -m subpix_xp.conformance --strict`` then
exits non-zero). An entry that matches no case or backend of the catalogue at all is stale too.

Reasons start with ``"BUG:"`` for a defect of subpix_xp (with the reproducer in the issue), or
name the missing piece (a pending hook, a library limitation) otherwise.
"""

from __future__ import annotations

import dataclasses
import fnmatch

__all__ = ["KNOWN_FAILURES", "KnownFailure", "match"]


@dataclasses.dataclass(frozen=True)
class KnownFailure:
    """Runs expected to fail: ``case`` is a shell pattern on case ids, or a tuple of them."""

    case: str | tuple[str, ...]
    backend: str
    reason: str
    dtype: str = "*"
    hooks: str = "*"

    @property
    def case_patterns(self) -> tuple[str, ...]:
        return (self.case,) if isinstance(self.case, str) else tuple(self.case)

    def matches_case(self, case_id: str) -> bool:
        return any(fnmatch.fnmatchcase(case_id, p) for p in self.case_patterns)

    def matches(self, case_id: str, backend: str, dtype: str, hooks: str) -> bool:
        return (
            self.matches_case(case_id)
            and fnmatch.fnmatchcase(backend, self.backend)
            and fnmatch.fnmatchcase(dtype, self.dtype)
            and fnmatch.fnmatchcase(hooks, self.hooks)
        )

    def describe(self) -> str:
        where = f"case={self.case!r} backend={self.backend!r}"
        if self.dtype != "*":
            where += f" dtype={self.dtype!r}"
        if self.hooks != "*":
            where += f" hooks={self.hooks!r}"
        return f"{where}: {self.reason}"


KNOWN_FAILURES: tuple[KnownFailure, ...] = (
    KnownFailure(
        case="detect_blobs:*",
        backend="dask",
        reason="missing piece: detect_blobs refuses Dask arrays with a TypeError (array_api_compat.dask.array has "
        "no take_along_axis, which its keypoint selection needs), although docs/semantics.md promises Dask arrays in, lazy Dask arrays out. "
        "Repro: subpix_xp.detect_blobs(dask.array.from_array(np.random.rand(1, 1, 64, 64)), 1)",
    ),
)


def match(case_id: str, backend: str, dtype: str, hooks: str) -> KnownFailure | None:
    """The first entry matching this run, if any."""
    for entry in KNOWN_FAILURES:
        if entry.matches(case_id, backend, dtype, hooks):
            return entry
    return None
