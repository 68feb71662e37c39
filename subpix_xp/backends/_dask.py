"""Dask hooks: one generic halo engine that runs each operation's kernel block by block.

Each operation declares next to its kernel how it runs on one block (a
:class:`~subpix_xp.backends.Blockwise`: a halo per trailing axis, strided windows, or whole
trailing axes; its outputs; whether the kernel needs its block's origin). :func:`blockwise` reads
only that declaration: it rechunks the arrays (blocks at least as long as their halo), extends them
with ``dask.array.overlap``, runs the kernel on every block on its chunk's own library (NumPy, or
CuPy for CuPy-backed arrays) and crops the outputs to the block's core. Kernels compute coordinates
from their block's origin with the same arithmetic as an in-memory call, so the chunked result is
bitwise the in-memory result (except where a kernel's own rounding depends on its batch size, as
matrix products over a batch may).

Nothing is computed while the graph is built: chunk sizes are metadata, and every task is created
with an explicit ``meta`` of the chunks' library.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from . import GENERIC, Blockwise, Output, _force_generic, hooks_for, use_generic_hooks
from ._helpers import broadcast_shape

# ---------------------------------------------------------------------------------------------
# Capabilities and kernels.


def _chunk_namespace(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(x._meta)


def can_inspect(x: Any) -> bool:
    # Reading a Dask array's values would compute it.
    return False


def supports_dynamic_shapes(x: Any) -> bool:
    # ``nonzero`` on a Dask array gives unknown (NaN) chunk sizes that most operations refuse.
    return False


def prefers_static_shapes(x: Any) -> bool:
    # Each chunk runs on its own library, so ask that library (CuPy chunks: True; NumPy: False).
    meta = getattr(x, "_meta", None)
    return bool(meta is not None and hooks_for(_chunk_namespace(x)).prefers_static_shapes(meta))


def kth_largest(x: Any, k: int, *, xp: Any) -> Any:
    import dask.array as da

    # ``topk`` reduces chunk by chunk (a sort would gather each row in one chunk).
    return da.topk(x, k, axis=-1)[..., k - 1 : k]


# ---------------------------------------------------------------------------------------------
# The hook set of a graph: chosen when it is built.


def _pinned(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel``, to run on the hooks in force now (native, or generic inside ``use_generic_hooks()``).

    A task runs later, maybe on another thread (where a context variable set here is not seen) or in
    another process; so the choice travels with the task (a picklable ``partial``).
    """
    return functools.partial(_run_pinned, kernel, _force_generic.get())


def _run_pinned(kernel: Callable[..., Any], generic: bool, *args: Any, **kwargs: Any) -> Any:
    with use_generic_hooks(generic):
        return kernel(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Chunk layout of the grid.


def _starts(chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(itertools.accumulate((0, *chunks[:-1])))


def _merge_small(chunks: Sequence[int], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each holds at least ``minimum`` entries (or the axis is one chunk)."""
    out: list[int] = []
    for n in chunks:
        if out and out[-1] < minimum:
            out[-1] += n
        else:
            out.append(n)
    if len(out) > 1 and out[-1] < minimum:
        last = out.pop()
        out[-1] += last
    return tuple(out)


def _window_chunks(
    chunks: Sequence[int], n: int, k: int, s: int, p: int
) -> tuple[list[int], tuple[int, ...]]:
    """Output block bounds of strided windows ``(k, s, p)`` on an axis of ``n``, and the input chunks they read.

    Output block ``j`` covers outputs ``[o_j, o_{j+1})``, whose windows read input
    ``[o_j s - p, (o_{j+1} - 1) s - p + k)``: input blocks start at ``o_j s - p`` and lend their
    left neighbour ``k - s`` entries; the first and last blocks take the padding.
    """
    count = (n + 2 * p - k) // s + 1
    right = max(k - s, 0)
    bounds, cut = [0], 0
    for b0 in _starts(chunks)[1:]:
        o = -(-(b0 + p) // s)  # the first window starting at or after input position b0
        start = o * s - p
        if 0 < o < count and start - cut >= max(right, 1) and n - start >= max(right, 1):
            bounds.append(o)
            cut = start
    bounds.append(count)
    cuts = [0] + [o * s - p for o in bounds[1:-1]] + [n]
    return bounds, tuple(b1 - b0 for b0, b1 in itertools.pairwise(cuts))


@dataclasses.dataclass
class _Layout:
    """The grid's input chunks, the output (core) chunks, and the overlap depth per axis."""

    shape: tuple[int, ...]
    chunks: list[tuple[int, ...]]
    core: list[tuple[int, ...]]
    depth: dict[int, tuple[int, int]]
    first: int  # the first declared (trailing) axis
    windows: list[tuple[list[int], int, int, int]] | None = None  # per trailing axis: bounds, k, s, p


def _layout(plan: Blockwise, arrays: Sequence[Any], params: dict[str, Any]) -> _Layout:
    shape = broadcast_shape(*(tuple(a.shape) for a in arrays))
    assert shape is not None  # the operation validated its arguments
    nd = len(shape)
    chunks: list[tuple[int, ...]] = []
    for ax, n in enumerate(shape):
        owner = next(a for a in arrays if a.ndim >= nd - ax and a.shape[ax - nd] == n)
        chunks.append(tuple(owner.chunks[ax - nd]))
    halo = plan.halo(params) if plan.halo else ()
    windows = plan.windows(params) if plan.windows else ()
    first = nd - max(len(halo), len(windows), plan.whole)
    layout = _Layout(shape, chunks, chunks, {}, first)
    for ax in range(first, nd):
        if plan.whole:
            chunks[ax] = (shape[ax],)
        elif halo:
            h = halo[ax - first]
            chunks[ax] = _merge_small(chunks[ax], max(h, plan.minimum))
            if h > 0 and len(chunks[ax]) > 1:
                layout.depth[ax] = (h, h)
    if windows:
        layout.core, layout.windows = list(chunks), []
        for ax, (k, s, p) in zip(range(first, nd), windows):
            bounds, chunks[ax] = _window_chunks(chunks[ax], shape[ax], k, s, p)
            layout.core[ax] = tuple(b1 - b0 for b0, b1 in itertools.pairwise(bounds))
            layout.windows.append((bounds, k, s, p))
            if k > s and len(chunks[ax]) > 1:
                layout.depth[ax] = (0, k - s)
    layout.core = list(layout.core if windows else chunks)
    return layout


def _extend(a: Any, layout: _Layout) -> Any:
    """``a`` rechunked to the grid (size-1 axes broadcast as one chunk) and extended by the halo."""
    import dask.array as da

    lead = len(layout.shape) - a.ndim
    full = [a.shape[i] == layout.shape[lead + i] for i in range(a.ndim)]
    a = a.rechunk(tuple(layout.chunks[lead + i] if f else (a.shape[i],) for i, f in enumerate(full)))
    depth = {i: layout.depth[lead + i] for i, f in enumerate(full) if f and lead + i in layout.depth}
    if not depth:
        return a
    return da.overlap.overlap(a, depth=depth, boundary=dict.fromkeys(depth, "none"), allow_rechunk=False)


# ---------------------------------------------------------------------------------------------
# One block.

_LAZY = object()  # marks the kernel arguments that come from the task's blocks


def _block_call(
    plan: Blockwise,
    layout: _Layout,
    kernel: Callable[..., Any],
    arrays: Sequence[Any],
    slots: Sequence[Any],
    params: dict[str, Any],
    outputs: Sequence[Output],
) -> Callable[..., tuple[Any, ...]]:
    """The task of one block: the kernel on its (extended) blocks, outputs cropped to the core."""
    nd, first = len(layout.shape), layout.first
    starts = [_starts(c) for c in layout.chunks]
    # The array arguments that span the windowed axes (not broadcast along them).
    windowed = [
        slot is _LAZY and len(a.shape) == nd and tuple(a.shape[first:]) == layout.shape[first:]
        for slot, a in zip(slots, arrays)
    ]

    def block(*blocks: Any, block_id: tuple[int, ...]) -> tuple[Any, ...]:
        before = [layout.depth.get(ax, (0, 0))[0] if i > 0 else 0 for ax, i in enumerate(block_id)]
        it = iter(blocks)
        args = [next(it) if slot is _LAZY else slot for slot in slots]
        extra = dict(params)
        if plan.origin:
            extra["origin"] = tuple(starts[ax][block_id[ax]] - before[ax] for ax in range(first, nd))
        if layout.windows is not None:
            args, extra["widths"], extra["first"] = _window_slice(layout, starts, block_id, args, windowed)
        data = next(a for a in args if hasattr(a, "shape"))
        result = kernel(*args, xp=_namespace(data), **extra)
        result = result if isinstance(result, tuple) else (result,)
        if not layout.depth or layout.windows is not None:
            return tuple(result)
        core = [slice(b, b + layout.chunks[ax][i]) for ax, (b, i) in enumerate(zip(before, block_id))]
        return tuple(r[_crop(core, out, nd)] for r, out in zip(result, outputs))

    return block


def _window_slice(
    layout: _Layout,
    starts: list[tuple[int, ...]],
    block_id: tuple[int, ...],
    args: list[Any],
    windowed: list[bool],
) -> tuple[list[Any], tuple[tuple[int, int], ...], tuple[int, ...]]:
    """The input that a block's windows read, their padding, and the first window's position."""
    assert layout.windows is not None
    index: list[slice] = [slice(None)] * layout.first
    pads, firsts = [], []
    for ax, (bounds, k, s, p) in zip(range(layout.first, len(layout.shape)), layout.windows):
        j, n = block_id[ax], layout.shape[ax]
        lo, hi = bounds[j] * s - p, (bounds[j + 1] - 1) * s - p + k
        base = starts[ax][j]
        index.append(slice(max(lo, 0) - base, min(hi, n) - base))
        pads.append((max(-lo, 0), max(hi - n, 0)))
        firsts.append(lo)
    out = [a[tuple(index)] if w else a for a, w in zip(args, windowed)]
    return out, tuple(pads), tuple(firsts)


def _crop(core: list[slice], out: Output, nd: int) -> tuple[slice, ...]:
    index = core[: nd - out.drop]
    at = len(index) if out.at is None else out.at
    return (*index[:at], *(slice(None),) * len(out.new), *index[at:])


def _namespace(block: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(block)


# ---------------------------------------------------------------------------------------------
# The engine.


def blockwise(func: str, plan: Blockwise, /, *arrays: Any, xp: Any, **params: Any) -> Any:
    """Run ``plan``'s kernel lazily, block by block (see the module docstring); ``func`` names the caller.

    The blocks run on the hooks chosen *now*, when the graph is built: a graph built inside
    :func:`~subpix_xp.backends.use_generic_hooks` runs the generic kernels wherever and whenever it
    is computed (outside the context, on the scheduler's threads, on ``dask.distributed`` workers),
    and one built outside runs the native kernels even if computed inside it.

    With an empty array among the inputs the result is empty too (its shape is all that matters):
    the kernel runs once on stand-ins of the chunks' library (zeros, ones for the other arrays),
    which costs nothing, and the result is wrapped as a one-chunk Dask array.
    """
    kernel = _pinned(plan.kernel)
    present = [a for a in arrays if hasattr(a, "chunks")]
    if any(math.isnan(n) for a in present for n in a.shape):
        msg = (
            f"{func}: Dask arrays of unknown shape or chunk sizes (NaN) cannot be split into windows; "
            f"call `.compute_chunk_sizes()` on them first; got shapes {[tuple(a.shape) for a in present]}"
        )
        raise ValueError(msg)
    if any(math.prod(a.shape) == 0 for a in present):
        return _empty(kernel, arrays, params)
    if plan.prepare is not None:
        arrays, params = plan.prepare(*arrays, xp=xp, **params)
        present = [a for a in arrays if hasattr(a, "chunks")]
    layout = _layout(plan, present, params)
    outputs = plan.outputs(len(layout.shape), params)
    slots = [_LAZY if hasattr(a, "chunks") else a for a in arrays]
    block = _block_call(plan, layout, kernel, arrays, slots, params, outputs)
    results = _run_blocks(block, [_extend(a, layout) for a in present], layout, outputs, present[0])
    return results[0] if len(results) == 1 else tuple(results)


def _run_blocks(
    block: Callable[..., tuple[Any, ...]],
    arrays: Sequence[Any],
    layout: _Layout,
    outputs: Sequence[Output],
    like: Any,
) -> list[Any]:
    """One task per block computes every output (a tuple); each output becomes a Dask array."""
    import dask.array as da
    import numpy as np
    from dask.array.utils import meta_from_array

    nd = len(layout.shape)
    core = tuple(layout.core)
    tuples = da.map_blocks(
        block,
        *arrays,
        chunks=core,
        dtype=object,
        meta=np.empty((0,) * nd, dtype=object),
        token="subpix_xp-blocks",
    )
    results = []
    for i, out in enumerate(outputs):
        dtype = _chunk_namespace(like).bool if out.boolean else like.dtype
        kept = list(core[: nd - out.drop])
        at = len(kept) if out.at is None else out.at
        chunks = (*kept[:at], *((n,) for n in out.new), *kept[at:])
        labels = list(range(nd - out.drop))
        labels[at:at] = [nd + j for j in range(len(out.new))]
        results.append(
            da.blockwise(
                functools.partial(_pick, i, out.drop),
                labels,
                tuples,
                tuple(range(nd)),
                new_axes={nd + j: n for j, n in enumerate(out.new)},
                concatenate=False,
                dtype=dtype,
                meta=meta_from_array(like._meta, ndim=len(chunks), dtype=dtype),
                token=f"subpix_xp-out{i}",
            )
        )
    return results


def _pick(i: int, dropped: int, results: Any) -> Any:
    """Output ``i`` of a block's tuple (inside one single-entry list per dropped axis)."""
    for _ in range(dropped):
        (results,) = results
    return results[i]


def _empty(kernel: Callable[..., Any], arrays: Sequence[Any], params: dict[str, Any]) -> Any:
    import dask.array as da

    first = next(a for a in arrays if hasattr(a, "chunks"))
    mxp = _chunk_namespace(first)

    def stand_in(a: Any) -> Any:
        if not hasattr(a, "chunks"):
            return a
        return (mxp.zeros if a is first else mxp.ones)(tuple(a.shape), dtype=a.dtype)

    result = kernel(*(stand_in(a) for a in arrays), xp=mxp, **params)
    if isinstance(result, tuple):
        return tuple(da.from_array(r, chunks=-1) for r in result)
    return da.from_array(result, chunks=-1)


HOOKS = dataclasses.replace(
    GENERIC,
    name="dask",
    can_inspect=can_inspect,
    supports_dynamic_shapes=supports_dynamic_shapes,
    prefers_static_shapes=prefers_static_shapes,
    kth_largest=kth_largest,
    blockwise=blockwise,
)
