"""Per-backend hooks: the few kernels the Array API standard lacks or runs slowly.

The contract (:class:`Hooks`), by role:

* **kernels** (``KERNELS``): what a library computes faster than the standard. Each takes its arrays
  positionally, static parameters after them, and the namespace as the keyword ``xp``; it returns
  what the generic one in :mod:`._generic` returns (values, shape, dtype; ``ROUNDING`` in
  ``tests/test_hooks.py`` says where summation order may differ).
* **capabilities** (``CAPABILITIES``): what an array *is* (traced, lazy, inspectable, on an
  accelerator), each a function of the array alone. The generic ones ask the standard's
  inspection API and ``array_api_compat.is_lazy_array``.
* **executor** (``blockwise``): runs an operation's kernel as its :class:`Blockwise` declaration
  allows: whole (the default), compiled (JAX), or block by block (Dask).

A backend is one module ``_<name>.py`` with ``HOOKS = dataclasses.replace(GENERIC, ...)``
overriding only what its library does better, importing that library lazily, and one line in
``_BACKENDS``; ``tests/test_hooks.py`` holds every kernel override against the generic one.
Operations live outside this package: nothing here imports or names one.
:func:`hooks_for` picks the hooks for a namespace; :func:`use_generic_hooks` (or
``SUBPIX_XP_GENERIC_HOOKS=1``) forces the generic kernels (capabilities and executor stay the
backend's), so the whole suite can run on the reference path.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from . import _generic

__all__ = ["GENERIC", "Blockwise", "Hooks", "Output", "backend_name", "hooks_for", "use_generic_hooks"]


@dataclasses.dataclass(frozen=True)
class Output:
    """One output of a :class:`Blockwise` kernel, laid out from the input grid's axes.

    Its axes are the grid's axes less the trailing ``drop`` ones (which must be whole, see
    :attr:`Blockwise.whole`), with new axes of sizes ``new`` inserted at axis ``at`` (``None``: at
    the end). ``boolean``: a mask; otherwise the dtype of the first array.
    """

    boolean: bool = False
    drop: int = 0
    new: tuple[int, ...] = ()
    at: int | None = None


@dataclasses.dataclass(frozen=True)
class Blockwise:
    """How an operation's kernel runs on one block of a larger array (declared next to the kernel).

    ``kernel(*arrays, xp=, **params)`` computes the operation on whole in-memory arrays. The
    *grid* is the broadcast shape of the array arguments; its leading axes are batch axes, which a
    chunked executor may split anywhere. The trailing axes are declared by exactly one of:

    * ``halo(params)``: per trailing axis, how many neighbours one output entry reads on each side;
      the kernel runs on a block extended by them and its outputs are cropped to the block's core.
      With ``origin`` the kernel gets ``origin=`` (the extended block's start on those axes).
      Blocks are at least ``minimum`` entries long on them.
    * ``windows(params)``: per trailing axis ``(size, stride, padding)`` of strided windows (the
      same padding on both sides); the kernel gets the input its windows read (from the first
      window's start, maybe with unread entries at the end), with ``widths=`` (its padding per axis)
      and ``first=`` (the first window's first position in the whole, padded-free array).
    * ``whole``: that many trailing axes are never split.

    An array argument of size 1 on an axis broadcasts there (a temperature). ``outputs(ndim,
    params)`` describes the results (one: returned as is; several: a tuple). ``prepare(*arrays,
    xp=, **params) -> (arrays, params)``, if given, is run by a chunked executor on the whole lazy
    arrays first (a selection over whole images), so the blocks are independent.
    """

    kernel: Callable[..., Any]
    halo: Callable[[dict[str, Any]], tuple[int, ...]] | None = None
    windows: Callable[[dict[str, Any]], tuple[tuple[int, int, int], ...]] | None = None
    whole: int = 0
    origin: bool = False
    minimum: int = 1
    outputs: Callable[[int, dict[str, Any]], tuple[Output, ...]] = lambda ndim, params: (Output(),)
    prepare: Callable[..., tuple[tuple[Any, ...], dict[str, Any]]] | None = None


@dataclasses.dataclass(frozen=True)
class Hooks:
    """What an operation may delegate to its array library: kernels, capabilities, executor (see the module).

    See :mod:`subpix_xp.backends._generic` for the reference semantics of each.
    """

    name: str
    # Kernels.
    window_max: Callable[..., Any]
    window_min: Callable[..., Any]
    pad: Callable[..., Any]
    expand: Callable[..., Any]
    separable_filter: Callable[..., Any]
    softmax: Callable[..., Any]
    outer: Callable[..., Any]
    kth_largest: Callable[..., Any]
    fori_loop: Callable[..., Any]
    top_k: Callable[..., Any]
    take: Callable[..., Any]
    stencil_extrema: Callable[..., Any]
    # Capabilities.
    can_inspect: Callable[[Any], bool]
    prefers_static_shapes: Callable[[Any], bool]
    supports_dynamic_shapes: Callable[[Any], bool]
    block_elements: Callable[[Any], int]
    # Executor.
    blockwise: Callable[..., Any]


GENERIC = Hooks(
    name="generic",
    window_max=_generic.window_max,
    window_min=_generic.window_min,
    pad=_generic.pad,
    expand=_generic.expand,
    can_inspect=_generic.can_inspect,
    prefers_static_shapes=_generic.prefers_static_shapes,
    supports_dynamic_shapes=_generic.supports_dynamic_shapes,
    separable_filter=_generic.separable_filter,
    blockwise=_generic.blockwise,
    block_elements=_generic.block_elements,
    softmax=_generic.softmax,
    outer=_generic.outer,
    kth_largest=_generic.kth_largest,
    fori_loop=_generic.fori_loop,
    top_k=_generic.top_k,
    take=_generic.take,
    stencil_extrema=_generic.stencil_extrema,
)

CAPABILITIES = ("can_inspect", "prefers_static_shapes", "supports_dynamic_shapes", "block_elements")
EXECUTOR = ("blockwise",)
KERNELS = tuple(f.name for f in dataclasses.fields(Hooks) if f.name not in ("name", *CAPABILITIES, *EXECUTOR))
# What stays the backend's own when the generic kernels are forced, so the reference path still
# runs under ``jax.jit`` and on Dask arrays.
_CAPABILITIES = (*CAPABILITIES, *EXECUTOR)

_ENV_VAR = "SUBPIX_XP_GENERIC_HOOKS"
_force_generic: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "subpix_xp_force_generic", default=False
)

# array-api-compat's namespace checks, in order, and the backend module that serves each.
_BACKENDS = (
    ("is_numpy_namespace", "_numpy"),
    ("is_torch_namespace", "_torch"),
    ("is_cupy_namespace", "_cupy"),
    ("is_jax_namespace", "_jax"),
    ("is_dask_namespace", "_dask"),
)


def backend_name(xp: Any) -> str:
    """The short name of the backend module that serves ``xp`` (``"generic"`` if none does)."""
    import array_api_compat

    for check, module in _BACKENDS:
        if getattr(array_api_compat, check)(xp):
            return module.lstrip("_")
    return "generic"


@functools.cache
def _native_hooks(name: str) -> Hooks:
    if name == "generic":
        return GENERIC
    try:
        module = importlib.import_module(f"{__name__}._{name}")
    except ModuleNotFoundError:
        return GENERIC
    return module.HOOKS


def _generic_forced() -> bool:
    return _force_generic.get() or os.environ.get(_ENV_VAR, "") not in ("", "0")


# Namespace -> its backend's hooks: a namespace is a module (or a module-like object) that lives as
# long as the process, so one dictionary look-up replaces the five namespace checks per call.
_NATIVE_BY_NAMESPACE: dict[int, tuple[Any, Hooks]] = {}


def hooks_for(xp: Any) -> Hooks:
    """The hooks for namespace ``xp``: the backend's own, or the generic ones when forced."""
    cached = _NATIVE_BY_NAMESPACE.get(id(xp))
    if cached is not None and cached[0] is xp:
        native = cached[1]
    else:
        native = _native_hooks(backend_name(xp))
        _NATIVE_BY_NAMESPACE[id(xp)] = (xp, native)
    if _generic_forced():
        return _generic_kernels(native)
    return native


@functools.cache
def _generic_kernels(native: Hooks) -> Hooks:
    """The generic kernels with ``native``'s capabilities (see ``_CAPABILITIES``)."""
    return dataclasses.replace(GENERIC, **{field: getattr(native, field) for field in _CAPABILITIES})


@contextlib.contextmanager
def use_generic_hooks(enabled: bool = True) -> Iterator[None]:
    """Run the enclosed calls on the generic (standard-only) hooks.

    The choice is made where a computation is *prepared*, and it sticks to it:

    * eager calls (NumPy, PyTorch, CuPy, array-api-strict) run inside the context on its hooks;
    * JAX: the hook set is part of the key of each compiled program, so a call inside the context
      traces (or reuses) a program of the generic kernels even if a native one of the same shape and
      parameters exists, and the other way round outside it; under your own ``jax.jit`` the hooks are
      those in force while it traces;
    * Dask: the hooks are chosen when the graph is built. A graph built inside the context runs the
      generic kernels wherever and whenever it is computed (outside the context, on the scheduler's
      threads, on ``dask.distributed`` workers); one built outside runs the native kernels even if
      computed inside the context.

    ``enabled=False`` inside an enclosing context restores the native hooks. The environment
    variable ``SUBPIX_XP_GENERIC_HOOKS=1`` forces the generic hooks in every call of the process
    that has it (Dask workers included, where it is set), whatever the context says.

    >>> import array_api_compat.numpy as xp
    >>> from subpix_xp.backends import GENERIC, hooks_for, use_generic_hooks
    >>> hooks_for(xp).pad is GENERIC.pad
    False
    >>> with use_generic_hooks():
    ...     hooks_for(xp).pad is GENERIC.pad
    True
    """
    token = _force_generic.set(enabled)
    try:
        yield
    finally:
        _force_generic.reset(token)
