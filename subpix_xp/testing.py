"""Backends under test: one declaration that the test-suite and the conformance suite share.

Each backend (a :class:`subpix_xp._libraries.Library`, loaded through that module) knows how to
turn a NumPy array into its own array and back. Two differ from the command line's: JAX runs with
``jax_enable_x64`` switched on (process-wide) and Dask arrays are split into small chunks so that
windows straddle chunk borders. The backends to run are
chosen with the ``SUBPIX_XP_BACKENDS`` environment variable (comma-separated names); naming a
backend that cannot be loaded is an error, while the default (all known backends) skips the
missing ones with the reason.

Besides the registered names, a backend may be named by an importable module path: ``pkg.mod``
(an Array API namespace, or a module whose arrays array-api-compat recognises) or ``pkg.mod:attr``
(a :class:`Backend`, or a callable returning one, for custom conversion or a device of its own).
:func:`register_backend` adds a name to the registry at run time.

>>> from subpix_xp.testing import get_backend
>>> b = get_backend("numpy")
>>> b.name, b.to_numpy(b.asarray([1.0, 2.0])).tolist()
('numpy', [1.0, 2.0])
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ._libraries import _LOADERS as _LIBRARY_LOADERS
from ._libraries import Library as Backend
from ._libraries import LibraryUnavailable as BackendUnavailable
from ._libraries import _import, to_numpy

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendUnavailable",
    "get_backend",
    "register_backend",
    "selected_backend_names",
    "to_numpy",
]

ENV_VAR = "SUBPIX_XP_BACKENDS"


def _jax() -> Backend:
    """JAX with float64 enabled (``jax_enable_x64``, process-wide): the suite checks both dtypes.

    Only the test scaffolding switches it on; :mod:`subpix_xp._libraries` (the command line) never does.
    """
    _import("jax").config.update("jax_enable_x64", True)
    return _LIBRARY_LOADERS["jax"]()


def _dask() -> Backend:
    da = _import("dask.array")

    def chunked(a: Any) -> Any:
        a = np.asarray(a)
        # Split every axis of length > 2 in about two, so windows straddle chunk borders.
        chunks = tuple(max(1, (n + 1) // 2) if n > 2 else n for n in a.shape)
        return da.from_array(a, chunks=chunks)

    return dataclasses.replace(_LIBRARY_LOADERS["dask"](), asarray=chunked)


_LOADERS: dict[str, Callable[[], Backend]] = {
    "numpy": _LIBRARY_LOADERS["numpy"],
    "array_api_strict": _LIBRARY_LOADERS["array_api_strict"],
    "torch": _LIBRARY_LOADERS["torch"],
    "torch_cuda": _LIBRARY_LOADERS["torch_cuda"],
    "cupy": _LIBRARY_LOADERS["cupy"],
    "jax": _jax,
    "dask": _dask,
}
BACKEND_NAMES = tuple(_LOADERS)
_CACHE: dict[str, Backend] = {}


def register_backend(name: str, loader: Callable[[], Backend]) -> None:
    """Add (or replace) a named backend; ``loader`` raises :class:`BackendUnavailable` if it cannot load."""
    _LOADERS[name] = loader
    _CACHE.pop(name, None)


def _is_module_spec(name: str) -> bool:
    """Whether an unregistered ``name`` reads as an importable module path (``pkg.mod`` or ``pkg.mod:attr``)."""
    if "." in name or ":" in name:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _module_backend(spec: str) -> Backend:
    """A backend from ``pkg.mod`` (an array namespace) or ``pkg.mod:attr`` (a Backend or a factory of one)."""
    module_name, _, attr = spec.partition(":")
    module = _import(module_name)
    if attr:
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise BackendUnavailable(f"{module_name} has no attribute {attr!r}") from None
        backend = obj if isinstance(obj, Backend) else obj()
        if not isinstance(backend, Backend):
            msg = f"{spec} gave {type(backend).__name__}; expected a subpix_xp.testing.Backend"
            raise TypeError(msg)
        return dataclasses.replace(backend, name=spec)
    import array_api_compat

    def asarray(a: Any) -> Any:
        a = np.asarray(a)
        try:
            return module.asarray(a)
        except (TypeError, ValueError):
            return module.from_dlpack(a)

    try:
        probe = asarray(np.asarray([1.0, 2.0], dtype=np.float32))
        xp = array_api_compat.array_namespace(probe)
    except Exception as exc:
        raise BackendUnavailable(f"{module_name} does not work as an array namespace here ({exc})") from None
    return Backend(
        spec,
        xp,
        asarray,
        to_numpy,
        lazy=array_api_compat.is_lazy_array(probe),
        float64=hasattr(xp, "float64"),
    )


def get_backend(name: str) -> Backend:
    """Load a backend by name; raises :class:`BackendUnavailable` with the reason if it cannot."""
    if name not in _LOADERS and not _is_module_spec(name):
        msg = f"unknown backend {name!r}; known: {', '.join(_LOADERS)}, or an importable module path"
        raise ValueError(msg)
    if name not in _CACHE:
        loader = _LOADERS.get(name)
        _CACHE[name] = loader() if loader is not None else _module_backend(name)
    return _CACHE[name]


def selected_backend_names(explicit: str | None = None) -> tuple[tuple[str, ...], bool]:
    """The backends to run and whether they were named explicitly (then a missing one is an error).

    ``explicit`` (a comma-separated list) wins over ``SUBPIX_XP_BACKENDS``; neither means all
    registered backends. A name may also be an importable module path (see :func:`get_backend`).
    """
    spec = explicit if explicit is not None else os.environ.get(ENV_VAR, "")
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if not names:
        return tuple(_LOADERS), False
    unknown = [n for n in names if n not in _LOADERS and not _is_module_spec(n)]
    if unknown:
        msg = f"unknown backend(s) {unknown}; known: {', '.join(_LOADERS)}, or an importable module path"
        raise ValueError(msg)
    return names, True
