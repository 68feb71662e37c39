"""Dask hooks: one generic halo engine that runs each operation's kernel block by block.

:func:`blockwise` reads only the operation's :class:`~subpix_xp.backends.Blockwise` declaration: it
rechunks the arrays (blocks at least as long as their halo, or cut where strided windows start),
extends the blocks with ``dask.array.overlap.overlap``, runs the kernel on every block on its
chunk's own library (NumPy, or CuPy for CuPy-backed arrays) and crops the outputs to the block's
core; one task per block computes every output (``dask.array.map_overlap`` would run the kernel
once per output). Kernels place their block with the same arithmetic as an in-memory call, so the
chunked result is bitwise the in-memory one (except where a kernel's rounding depends on its batch
size, as matrix products over a batch may). Nothing is computed while the graph is built.
``can_inspect`` and ``supports_dynamic_shapes`` are the generic capabilities (False on lazy arrays).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

from . import GENERIC, Blockwise, Output, _force_generic, hooks_for, use_generic_hooks
from ._helpers import broadcast_shape


def prefers_static_shapes(x: Any) -> bool:
    # Each chunk runs on its own library, so ask that library (CuPy chunks: True; NumPy: False).
    import array_api_compat

    meta = getattr(x, "_meta", None)
    return meta is not None and hooks_for(array_api_compat.array_namespace(meta)).prefers_static_shapes(meta)


def kth_largest(x: Any, k: int, *, xp: Any) -> Any:
    import dask.array as da

    # ``topk`` reduces chunk by chunk (a sort would gather each row in one chunk).
    return da.topk(x, k, axis=-1)[..., k - 1 : k]


# ---------------------------------------------------------------------------------------------
# The grid: per axis, the input chunks, the overlap they borrow and the output chunks.


@dataclasses.dataclass(frozen=True)
class _Axis:
    chunks: tuple[int, ...]  # input chunks
    core: tuple[int, ...]  # output chunks
    depth: tuple[int, int] = (0, 0)  # entries borrowed from the neighbouring blocks
    pad: int = 0  # windows: the padding of the first and the last block

    def starts(self) -> tuple[int, ...]:
        return tuple(itertools.accumulate((0, *self.chunks[:-1])))

    def padding(self, j: int) -> tuple[int, int]:
        """Windows: the padding of block ``j`` (the first and the last take the array's)."""
        return (self.pad if j == 0 else 0, self.pad if j == len(self.chunks) - 1 else 0)


def _sizes(bounds: Sequence[int]) -> tuple[int, ...]:
    return tuple(b - a for a, b in itertools.pairwise(bounds))


def _halo_axis(chunks: tuple[int, ...], n: int, halo: int, minimum: int) -> _Axis:
    """Chunks of at least ``max(halo, minimum)`` entries (or the whole axis), borrowing ``halo`` each side."""
    from dask.array.overlap import ensure_minimum_chunksize

    out = ensure_minimum_chunksize(min(max(halo, minimum), n), chunks)
    return _Axis(out, out, (halo, halo) if halo and len(out) > 1 else (0, 0))


def _window_axis(chunks: Sequence[int], n: int, k: int, s: int, p: int) -> _Axis:
    """Windows of size ``k``, stride ``s``, padding ``p`` on both sides: input cut where a window starts.

    Output ``o`` reads input ``[o s - p, o s - p + k)``, so a block cut at ``o_j s - p`` and extended
    by the next block's first ``k - s`` entries holds every window of outputs ``[o_j, o_{j+1})``.
    """
    count, right = (n + 2 * p - k) // s + 1, max(k - s, 1)
    outs, cuts = [0], [0]
    for b in itertools.accumulate(chunks[:-1]):
        o = -(-(b + p) // s)  # the first window starting at or after input position b
        if 0 < o < count and o * s - p - cuts[-1] >= right and n - (o * s - p) >= right:
            outs.append(o)
            cuts.append(o * s - p)
    depth = (0, max(k - s, 0)) if len(cuts) > 1 else (0, 0)
    return _Axis(_sizes([*cuts, n]), _sizes([*outs, count]), depth, p)


def _grid(plan: Blockwise, arrays: Sequence[Any], params: dict[str, Any]) -> tuple[list[_Axis], int]:
    """The axes of the broadcast grid, and the first declared (trailing) axis."""
    shape = broadcast_shape(*(tuple(a.shape) for a in arrays))
    assert shape is not None  # the operation validated its arguments
    nd = len(shape)
    chunks = [
        next(tuple(a.chunks[ax - nd]) for a in arrays if a.ndim >= nd - ax and a.shape[ax - nd] == n)
        for ax, n in enumerate(shape)
    ]
    axes = [_Axis(c, c) for c in chunks]
    halo = plan.halo(params) if plan.halo else ()
    windows = plan.windows(params) if plan.windows else ()
    first = nd - max(len(halo), len(windows), plan.whole)
    for ax in range(first, nd):
        if plan.whole:
            axes[ax] = _Axis((shape[ax],), (shape[ax],))
        elif halo:
            axes[ax] = _halo_axis(chunks[ax], shape[ax], halo[ax - first], plan.minimum)
        else:
            axes[ax] = _window_axis(chunks[ax], shape[ax], *windows[ax - first])
    return axes, first


def _extend(a: Any, axes: list[_Axis]) -> Any:
    """``a`` rechunked to the grid (size-1 axes broadcast as one chunk) and extended by the overlap."""
    import dask.array as da

    own = axes[len(axes) - a.ndim :]
    full = [n == sum(ax.chunks) for n, ax in zip(a.shape, own)]
    a = a.rechunk(tuple(ax.chunks if f else (n,) for n, ax, f in zip(a.shape, own, full)))
    depth = {i: ax.depth for i, (ax, f) in enumerate(zip(own, full)) if f and ax.depth != (0, 0)}
    if not depth:
        return a
    return da.overlap.overlap(a, depth=depth, boundary=dict.fromkeys(depth, "none"), allow_rechunk=False)


# ---------------------------------------------------------------------------------------------
# The engine.


def blockwise(func: str, plan: Blockwise, /, *arrays: Any, xp: Any, **params: Any) -> Any:
    """Run ``plan``'s kernel lazily, block by block (see the module docstring); ``func`` names the caller.

    The blocks run on the hooks chosen *now*, when the graph is built: a graph built inside
    :func:`~subpix_xp.backends.use_generic_hooks` runs the generic kernels wherever and whenever it
    is computed (the choice travels with each task), and one built outside runs the native kernels.
    """
    import dask.array as da
    import numpy as np

    present = [a for a in arrays if hasattr(a, "chunks")]
    if any(math.isnan(n) for a in present for n in a.shape):
        msg = (
            f"{func}: Dask arrays of unknown shape or chunk sizes (NaN) cannot be split into windows; "
            f"call `.compute_chunk_sizes()` on them first; got shapes {[tuple(a.shape) for a in present]}"
        )
        raise ValueError(msg)
    if plan.prepare is not None:
        arrays, params = plan.prepare(*arrays, xp=xp, **params)
        present = [a for a in arrays if hasattr(a, "chunks")]
    axes, first = _grid(plan, present, params)
    outputs = plan.outputs(len(axes), params)
    slots = [(hasattr(a, "chunks"), None if hasattr(a, "chunks") else a) for a in arrays]  # (lazy, value)
    task = _Task(plan, axes, first, slots, params, outputs, _force_generic.get())
    tuples = da.map_blocks(
        task,
        *(_extend(a, axes) for a in present),
        chunks=tuple(ax.core for ax in axes),
        meta=np.empty((0,) * len(axes), dtype=object),
        token="subpix_xp-blocks",
    )
    results = [_output(tuples, i, out, present[0]) for i, out in enumerate(outputs)]
    return results[0] if len(results) == 1 else tuple(results)


@dataclasses.dataclass(frozen=True)
class _Task:
    """One block's task: the kernel on its extended blocks, each output cropped to the block's core."""

    plan: Blockwise
    axes: list[_Axis]
    first: int  # the first declared (trailing) axis
    slots: list[tuple[bool, Any]]  # per kernel argument: from the blocks, or this value
    params: dict[str, Any]
    outputs: tuple[Output, ...]
    generic: bool  # the generic hooks were forced when the graph was built

    def __call__(self, *blocks: Any, block_id: tuple[int, ...]) -> tuple[Any, ...]:
        import array_api_compat

        it, axes, trailing = iter(blocks), self.axes, range(self.first, len(self.axes))
        args = [next(it) if lazy else value for lazy, value in self.slots]
        before = [ax.depth[0] if j else 0 for ax, j in zip(axes, block_id)]
        start = [ax.starts()[j] - b for ax, j, b in zip(axes, block_id, before)]  # of the extended block
        extra = dict(self.params)
        if self.plan.origin:
            extra["origin"] = tuple(start[i] for i in trailing)
        if self.plan.windows:
            pads = tuple(axes[i].padding(block_id[i]) for i in trailing)
            extra["widths"] = pads
            extra["first"] = tuple(start[i] - w for i, (w, _) in zip(trailing, pads))
        data = next(a for a in args if hasattr(a, "shape"))
        with use_generic_hooks(self.generic):
            result = self.plan.kernel(*args, xp=array_api_compat.array_namespace(data), **extra)
        core = [slice(b, b + ax.core[j]) for ax, b, j in zip(axes, before, block_id)]
        results = result if isinstance(result, tuple) else (result,)
        return tuple(r[_crop(core, out)] for r, out in zip(results, self.outputs))


def _crop(core: list[slice], out: Output) -> tuple[slice, ...]:
    index = core[: len(core) - out.drop]
    at = len(index) if out.at is None else out.at
    return (*index[:at], *(slice(None),) * len(out.new), *index[at:])


def _output(tuples: Any, i: int, out: Output, like: Any) -> Any:
    """Output ``i`` of the blocks' tuples as a Dask array: the grid's axes less ``out.drop``, plus ``out.new``."""
    import dask.array as da
    import numpy as np
    from dask.array.utils import meta_from_array

    nd = tuples.ndim
    labels = list(range(nd - out.drop))
    at = len(labels) if out.at is None else out.at
    labels[at:at] = [nd + j for j in range(len(out.new))]
    dtype = np.dtype(bool) if out.boolean else like.dtype
    return da.blockwise(
        functools.partial(_pick, i, out.drop),
        labels,
        tuples,
        tuple(range(nd)),
        new_axes={nd + j: n for j, n in enumerate(out.new)},
        concatenate=False,
        dtype=dtype,
        meta=meta_from_array(like._meta, ndim=len(labels), dtype=dtype),
        token=f"subpix_xp-out{i}",
    )


def _pick(i: int, dropped: int, results: Any) -> Any:
    """Output ``i`` of a block's tuple (inside one single-entry list per dropped axis)."""
    for _ in range(dropped):
        (results,) = results
    return results[i]


HOOKS = dataclasses.replace(
    GENERIC,
    name="dask",
    prefers_static_shapes=prefers_static_shapes,
    kth_largest=kth_largest,
    blockwise=blockwise,
)
