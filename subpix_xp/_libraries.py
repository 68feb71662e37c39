"""Array libraries by name: namespace, conversion from and to NumPy, device, sync and availability.

The command line (``subpix-xp --backend NAME``) and the test scaffolding (:mod:`subpix_xp.testing`)
load array libraries through :func:`load_library`. Loading changes no global setting of a library:
JAX keeps its default precision (float64 only where ``JAX_ENABLE_X64`` is set), which
:attr:`Library.float64` reports. A library that cannot be loaded raises
:class:`LibraryUnavailable` with the reason (not installed, no CUDA device, ...).

>>> from subpix_xp._libraries import load_library
>>> lib = load_library("numpy")
>>> lib.name, lib.to_numpy(lib.asarray([1.0, 2.0])).tolist()
('numpy', [1.0, 2.0])
>>> sorted(unavailable_libraries(["numpy"]))
[]
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = [
    "LIBRARY_NAMES",
    "Library",
    "LibraryUnavailable",
    "load_library",
    "to_numpy",
    "unavailable_libraries",
]


class LibraryUnavailable(RuntimeError):
    """An array library (or its device) is not available here; the message says why."""


def _no_sync(x: Any) -> Any:
    return x


@dataclasses.dataclass(frozen=True)
class Library:
    """One array library as the command line and the tests use it.

    ``asarray`` turns a NumPy array (or nested lists) into the library's array on ``device``;
    ``to_numpy`` turns the library's array back (computing lazy arrays); ``sync`` waits until the
    array has been computed (for timing: CUDA and JAX run asynchronously) and returns it;
    ``compile``, where the library has a compiler (JAX), turns ``fn`` and example arguments into a
    compiled function for arguments of the same shapes and dtypes; ``compiles_per_shape``: each
    new input shape compiles a new program (XLA), so padding inputs to a few shapes pays.
    """

    name: str
    xp: Any
    asarray: Callable[[Any], Any]
    to_numpy: Callable[[Any], np.ndarray]
    lazy: bool = False
    float64: bool = True
    device: Any = None
    sync: Callable[[Any], Any] = _no_sync
    compile: Callable[..., Callable[..., Any]] | None = None
    compiles_per_shape: bool = False


def to_numpy(x: Any) -> np.ndarray:
    """Any supported array as NumPy, computing lazy arrays and copying from devices."""
    if isinstance(x, np.ndarray | np.generic):
        return np.asarray(x)
    module = type(x).__module__
    if module.startswith("dask"):
        return to_numpy(x.compute())
    if module.startswith("torch"):
        return x.detach().cpu().numpy()
    if module.startswith("cupy"):
        return x.get()
    if module.startswith("array_api_strict"):
        return np.from_dlpack(x)
    return np.asarray(x)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise LibraryUnavailable(f"{name} is not installed ({exc})") from None


def _numpy() -> Library:
    return Library(
        "numpy", importlib.import_module("array_api_compat.numpy"), np.asarray, np.asarray, device="cpu"
    )


def _strict() -> Library:
    xps = _import("array_api_strict")
    return Library("array_api_strict", xps, lambda a: xps.asarray(np.asarray(a)), to_numpy)


def _torch(device: str) -> Callable[[], Library]:
    def load() -> Library:
        torch = _import("torch")
        if device == "cuda" and not torch.cuda.is_available():
            raise LibraryUnavailable("torch is installed but no CUDA device is available")
        xp = importlib.import_module("array_api_compat.torch")
        name = "torch" if device == "cpu" else "torch_cuda"

        def sync(x: Any) -> Any:
            if device == "cuda":
                torch.cuda.synchronize()
            return x

        return Library(
            name,
            xp,
            lambda a: torch.asarray(np.array(a), device=device),
            to_numpy,
            device=torch.device(device),
            sync=sync,
        )

    return load


def _cupy() -> Library:
    cupy = _import("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise LibraryUnavailable(f"cupy is installed but no CUDA device is usable ({exc})") from None

    def sync(x: Any) -> Any:
        cupy.cuda.get_current_stream().synchronize()
        return x

    return Library(
        "cupy",
        importlib.import_module("array_api_compat.cupy"),
        cupy.asarray,
        to_numpy,
        device=cupy.cuda.Device(),
        sync=sync,
    )


def _jax() -> Library:
    jax = _import("jax")
    jnp = importlib.import_module("jax.numpy")

    def sync(x: Any) -> Any:
        return jax.block_until_ready(x)

    def compile_(fn: Callable[..., Any], *args: Any) -> Callable[..., Any]:
        return jax.jit(fn).lower(*args).compile()

    return Library(
        "jax",
        jnp,
        jnp.asarray,
        to_numpy,
        float64=bool(jax.config.read("jax_enable_x64")),
        device=jax.devices()[0],
        sync=sync,
        compile=compile_,
        compiles_per_shape=True,
    )


def _dask() -> Library:
    da = _import("dask.array")
    xp = importlib.import_module("array_api_compat.dask.array")
    return Library("dask", xp, lambda a: da.from_array(np.asarray(a)), to_numpy, lazy=True)


_LOADERS: dict[str, Callable[[], Library]] = {
    "numpy": _numpy,
    "torch": _torch("cpu"),
    "torch_cuda": _torch("cuda"),
    "jax": _jax,
    "cupy": _cupy,
    "array_api_strict": _strict,
    "dask": _dask,
}
LIBRARY_NAMES = tuple(_LOADERS)
_CACHE: dict[str, Library] = {}


def load_library(name: str) -> Library:
    """The library called ``name`` (one of :data:`LIBRARY_NAMES`), loaded once.

    Raises :class:`LibraryUnavailable` with the reason when it cannot be loaded here, and
    ``ValueError`` for an unknown name.
    """
    if name not in _LOADERS:
        msg = f"load_library: expected one of {', '.join(LIBRARY_NAMES)}; got {name!r}"
        raise ValueError(msg)
    if name not in _CACHE:
        _CACHE[name] = _LOADERS[name]()
    return _CACHE[name]


def unavailable_libraries(names: Iterable[str] = LIBRARY_NAMES) -> dict[str, str]:
    """``{name: reason}`` for each of ``names`` that cannot be loaded here."""
    reasons = {}
    for name in names:
        try:
            load_library(name)
        except LibraryUnavailable as exc:
            reasons[name] = str(exc)
    return reasons
