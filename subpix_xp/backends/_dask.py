"""Dask hooks: every operation runs lazily, block by block, each block on its chunk's own array library.

The public functions validate their arguments (shapes, dtypes, static parameters: nothing is
computed) and then hand their in-memory kernel to :func:`blockwise`. Here each operation has a
*plan* that says how the kernel's result on a block relates to the result on the whole array:

======================================  ===================================================================
operation                               plan
======================================  ===================================================================
``nms2d`` / ``nms3d``                   halo of ``k // 2`` on each windowed axis (``map_overlap``-style)
``nms3d_minmax``                        halo of 1 on each of D, H, W
``conv_soft_argmax2d/3d``               output chunks aligned to the stride (input rechunked so every
                                        block starts at a window start); right halo of ``k - s``; the
                                        first and last blocks take the zero-weight padding
``conv_quad_interp3d``                  halo of ``max(n_iters + dilation_radius, 1)`` on D, H, W
``iterative_quad_interp3d``             halo of ``max(n_iters, 1)``; ``max_candidates`` is chosen
                                        over whole images first (a lazy ``topk``), then refined per block
``spatial_softmax2d`` and the DSNT ops  whole maps per block: H and W rechunked to one chunk
``render_gaussian2d``                   blocks of the leading (batch) axes; H and W whole
======================================  ===================================================================

Why those halos: a strict maximum needs its full window. A quadratic keypoint moves at most one
voxel per iteration and at most ``n_iters - 1`` times, each fit reads the 3x3x3 neighbourhood of
its voxel and (conv path) the NMS mask within ``dilation_radius`` of it, and the mask at a voxel
needs its own 3x3x3 neighbourhood; so a block extended by ``n_iters + dilation_radius`` voxels sees
every value a keypoint of its core can read, and its block borders (where the rule would reject a
move) are never reached from the core. Kernels get their block's origin in the whole array, so the
coordinates they write are computed from global voxel indices with the same arithmetic as an
in-memory call: the chunked result is bitwise the in-memory result (except where a kernel's own
rounding depends on its batch size, as the matrix products of ``spatial_soft_argmax2d`` do).

Nothing is computed while the graph is built: chunk sizes are metadata, and every task is created
with an explicit ``meta`` (of the chunks' own library: NumPy, or CuPy for CuPy-backed arrays).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

from . import GENERIC, _force_generic, hooks_for, use_generic_hooks

Array = Any

# ---------------------------------------------------------------------------------------------
# Capabilities.


def _chunk_hooks(x: Any) -> Any:
    """The hooks of the library that holds ``x``'s chunks (from its ``_meta``)."""
    import array_api_compat

    meta = getattr(x, "_meta", None)
    if meta is None:
        return GENERIC
    return hooks_for(array_api_compat.array_namespace(meta))


def can_inspect(x: Any) -> bool:
    # Reading a Dask array's values would compute it.
    return False


def supports_dynamic_shapes(x: Any) -> bool:
    # ``nonzero`` on a Dask array gives unknown (NaN) chunk sizes that most operations refuse.
    return False


def prefers_static_shapes(x: Any) -> bool:
    # Each chunk runs on its own library, so ask that library (CuPy chunks: True; NumPy: False).
    meta = getattr(x, "_meta", None)
    return bool(meta is not None and _chunk_hooks(x).prefers_static_shapes(meta))


# ---------------------------------------------------------------------------------------------
# The hook set of a graph: chosen when it is built.


def _pinned(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel``, to run on the hooks in force now (native, or generic inside ``use_generic_hooks()``).

    A task runs later, maybe on another thread (where a context variable set here is not seen) or in
    another process; so the choice travels with the task (a picklable ``partial``).
    """
    if isinstance(kernel, functools.partial) and kernel.func is _run_pinned:
        return kernel
    return functools.partial(_run_pinned, kernel, _force_generic.get())


def _run_pinned(kernel: Callable[..., Any], generic: bool, *args: Any, **kwargs: Any) -> Any:
    with use_generic_hooks(generic):
        return kernel(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Block machinery.


def _starts(chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(itertools.accumulate((0, *chunks[:-1])))


def _merge_small(chunks: Sequence[int], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each holds at least ``minimum`` entries (or the axis is one chunk)."""
    out: list[int] = []
    for c in chunks:
        if out and out[-1] < minimum:
            out[-1] += c
        else:
            out.append(c)
    if len(out) > 1 and out[-1] < minimum:
        last = out.pop()
        out[-1] += last
    return tuple(out)


def _meta(like: Any, ndim: int, dtype: Any) -> Any:
    from dask.array.utils import meta_from_array

    return meta_from_array(like._meta, ndim=ndim, dtype=dtype)


def _namespace(block: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(block)


@dataclasses.dataclass(frozen=True)
class _Out:
    """One output of a block function: dtype, and the axis index where it has an extra axis of ``extra`` entries."""

    dtype: Any
    extra_axis: int | None = None
    extra: int = 0


def _run_blocks(
    func: Callable[..., tuple[Any, ...]], arrays: Sequence[Any], chunks: tuple[tuple[int, ...], ...],
    outputs: Sequence[_Out], like: Any,
) -> list[Any]:
    """Map ``func(*blocks, block_id=...)`` (a tuple of arrays of the block's output chunk) over aligned arrays.

    ``chunks`` are the output chunks on the arrays' axes (the arrays may carry halos, so their own
    chunks are larger). Every output becomes a Dask array; one task per block computes all of them.
    """
    import dask.array as da
    import numpy as np

    ndim = len(chunks)
    tuples = da.map_blocks(
        func, *arrays, chunks=chunks, dtype=object, meta=np.empty((0,) * ndim, dtype=object),
        token="subpix_xp-blocks",
    )
    results = []
    for i, out in enumerate(outputs):
        if out.extra_axis is None:
            out_chunks, new_axis = chunks, None
        else:
            out_chunks = (*chunks[: out.extra_axis], (out.extra,), *chunks[out.extra_axis :])
            new_axis = [out.extra_axis]
        results.append(
            da.map_blocks(
                operator.itemgetter(i), tuples, chunks=out_chunks, new_axis=new_axis, dtype=out.dtype,
                meta=_meta(like, len(out_chunks), out.dtype), token=f"subpix_xp-out{i}",
            )
        )
    return results


def _halo_map(
    kernel: Callable[..., Any], x: Any, others: Sequence[Any | None], halo: Sequence[int], axes: Sequence[int],
    outputs: Sequence[_Out], params: dict[str, Any], *, origin: bool = False, minimum: int = 1,
) -> list[Any]:
    """Run ``kernel`` on every block of ``x`` (and of ``others``, same shape) extended by ``halo[i]`` on ``axes[i]``.

    The kernel's outputs for the extended block are cropped to the block's core. With ``origin``
    the kernel is told (``origin=``) where its block's voxel 0 sits in the whole array.
    """
    import dask.array as da

    chunks = list(x.chunks)
    for ax, h in zip(axes, halo):
        chunks[ax] = _merge_small(chunks[ax], max(h, minimum))
    chunks_t = tuple(chunks)
    depth = {ax: h for ax, h in zip(axes, halo) if h > 0 and len(chunks[ax]) > 1}
    present = [a for a in (x, *others) if a is not None]
    extended = []
    for a in present:
        a = a.rechunk(chunks_t)
        if depth:
            a = da.overlap.overlap(a, depth=depth, boundary=dict.fromkeys(depth, "none"), allow_rechunk=False)
        extended.append(a)
    starts = [_starts(c) for c in chunks_t]
    slots = [a is not None for a in others]

    def block(*blocks: Any, block_id: tuple[int, ...]) -> tuple[Any, ...]:
        before = [depth.get(ax, 0) if i > 0 else 0 for ax, i in enumerate(block_id)]
        core = [slice(b, b + chunks_t[ax][i]) for ax, (b, i) in enumerate(zip(before, block_id))]
        it = iter(blocks[1:])
        args = [next(it) if present_ else None for present_ in slots]
        extra = dict(params)
        if origin:
            extra["origin"] = tuple(starts[ax][block_id[ax]] - before[ax] for ax in axes)
        result = kernel(blocks[0], *args, xp=_namespace(blocks[0]), **extra)
        result = result if isinstance(result, tuple) else (result,)
        cropped = []
        for r, out in zip(result, outputs):
            index = list(core)
            if out.extra_axis is not None:
                index.insert(out.extra_axis, slice(None))
            cropped.append(r[tuple(index)])
        return tuple(cropped)

    return _run_blocks(block, extended, chunks_t, outputs, x)


def _single(results: list[Any]) -> Any:
    return results[0] if len(results) == 1 else tuple(results)


# ---------------------------------------------------------------------------------------------
# Plans, one per operation (see the module docstring).


def _nms(kernel: Callable[..., Any], x: Any, *, window: tuple[int, ...], mask_only: bool) -> Any:
    import numpy as np

    axes = tuple(range(x.ndim - len(window), x.ndim))
    halo = tuple(k // 2 for k in window)
    dtype = np.dtype(bool) if mask_only else x.dtype
    return _single(_halo_map(kernel, x, (), halo, axes, [_Out(dtype)], {"window": window, "mask_only": mask_only}))


def _minmax(kernel: Callable[..., Any], x: Any) -> Any:
    import numpy as np

    axes = (2, 3, 4)
    out = _Out(np.dtype(bool))
    return tuple(_halo_map(kernel, x, (), (1, 1, 1), axes, [out, out], {}))


def _quad(halo: int, kernel: Callable[..., Any], x: Any, mask: Any, params: dict[str, Any]) -> Any:
    params = {k: v for k, v in params.items() if k != "origin"}
    outs = [_Out(x.dtype, extra_axis=2, extra=3), _Out(x.dtype)]
    # Blocks of at least 3 voxels a side, so only volumes shorter than 3 are returned unrefined.
    return tuple(_halo_map(kernel, x, (mask,), (halo,) * 3, (2, 3, 4), outs, params, origin=True, minimum=3))


def _conv_quad(kernel: Callable[..., Any], x: Any, mask: Any, **params: Any) -> Any:
    return _quad(max(params["n_iters"] + params["radius"], 1), kernel, x, mask, params)


def _iterative_quad(kernel: Callable[..., Any], x: Any, mask: Any, **params: Any) -> Any:
    k = params["max_candidates"]
    if k is not None and params["n_iters"] > 0 and min(x.shape[2:]) >= 3:
        if mask is None:
            from subpix_xp._nms import _nms_kernel

            mask = _nms(_pinned(_nms_kernel), x, window=(3, 3, 3), mask_only=True)
        mask = _top_candidates(x, mask, k)
        params = {**params, "max_candidates": None}
    return _quad(max(params["n_iters"], 1), kernel, x, mask, params)


def _top_candidates(x: Any, mask: Any, k: int) -> Any:
    """The ``k`` maxima of each image with the largest values (ties: the earlier voxel), lazily.

    A ``topk`` over each flattened image gives the ``k``-th largest value; every maximum above it is
    kept, and of those equal to it the first ones in C order, counted by a cumulative sum.
    """
    import dask.array as da

    b, c = x.shape[:2]
    volume = math.prod(x.shape[2:])
    if k >= volume:
        return mask
    flat_mask = da.reshape(mask, (b * c, volume), merge_chunks=True)
    values = da.reshape(x, (b * c, volume), merge_chunks=True).rechunk(flat_mask.chunks)
    if k == 0:
        return da.zeros_like(mask)
    candidates = da.where(flat_mask, values, -math.inf)
    kth = da.topk(candidates, k, axis=-1)[:, k - 1 : k]
    above = flat_mask & (candidates > kth)
    tied = flat_mask & (candidates == kth)
    room = k - da.sum(above, axis=-1, keepdims=True)
    keep = above | (tied & (da.cumsum(tied, axis=-1) <= room))
    return da.reshape(keep, tuple(x.shape), merge_chunks=True).rechunk(x.chunks)


def _conv_soft_argmax(
    kernel: Callable[..., Any], x: Any, temp: Any, *, window: tuple[int, ...], strides: tuple[int, ...],
    widths: tuple[tuple[int, int], ...], first: tuple[int, ...], sizes: tuple[int, ...], normalized: bool,
    output_value: bool, bonus: float,
) -> Any:
    """Strided windows: output blocks whose first window starts where an input block starts.

    On each axis output block ``j`` covers outputs ``[o_j, o_{j+1})``, whose windows read input
    ``[o_j s - p, (o_{j+1} - 1) s - p + k)``: the input is rechunked to start its blocks at
    ``o_j s - p`` and extended by ``k - s`` on the right. The first and last blocks take the padding.
    """
    import dask.array as da

    nd = len(window)
    axes = tuple(range(2, 2 + nd))
    counts = [(n + a + b - k) // s + 1 for n, (a, b), k, s in zip(sizes, widths, window, strides)]
    out_bounds, in_chunks = [], list(x.chunks)
    for ax, n, (p, _), k, s, count in zip(axes, sizes, widths, window, strides, counts):
        right = max(k - s, 0)
        bounds, cut = [0], 0
        for b0 in _starts(x.chunks[ax])[1:]:
            o = -(-(b0 + p) // s)  # the first window starting at or after input position b0
            start = o * s - p
            # Every input block must be able to lend ``right`` entries to its left neighbour.
            if 0 < o < count and start - cut >= max(right, 1) and n - start >= max(right, 1):
                bounds.append(o)
                cut = start
        bounds.append(count)
        out_bounds.append(bounds)
        cuts = [0] + [o * s - p for o in bounds[1:-1]] + [n]
        in_chunks[ax] = tuple(b1 - b0 for b0, b1 in itertools.pairwise(cuts))
    in_chunks_t = tuple(in_chunks)
    xr = x.rechunk(in_chunks_t)
    depth = {ax: (0, max(k - s, 0)) for ax, k, s in zip(axes, window, strides) if k > s and len(in_chunks[ax]) > 1}
    if depth:
        xr = da.overlap.overlap(xr, depth=depth, boundary=dict.fromkeys(depth, "none"), allow_rechunk=False)
    arrays = [xr]
    has_temp = not isinstance(temp, float)
    if has_temp:
        t = da.broadcast_to(da.asarray(temp), tuple(x.shape[:2]) + (1,) * nd)
        arrays.append(t.rechunk(x.chunks[:2] + ((1,),) * nd))
    out_chunks = x.chunks[:2] + tuple(
        tuple(b1 - b0 for b0, b1 in itertools.pairwise(bounds)) for bounds in out_bounds
    )
    in_starts = [_starts(c) for c in in_chunks_t]

    def block(*blocks: Any, block_id: tuple[int, ...]) -> tuple[Any, ...]:
        data = blocks[0]
        index = [slice(None), slice(None)]
        pads, firsts = [], []
        for i, (ax, (p, _), k, s, n) in enumerate(zip(axes, widths, window, strides, sizes)):
            j = block_id[ax]
            o0, o1 = out_bounds[i][j], out_bounds[i][j + 1]
            lo, hi = o0 * s - p, (o1 - 1) * s - p + k
            base = in_starts[ax][j]  # this block's data starts at input position ``base`` (no left halo)
            index.append(slice(max(lo, 0) - base, min(hi, n) - base))
            pads.append((max(-lo, 0), max(hi - n, 0)))
            firsts.append(lo)
        result = kernel(
            data[tuple(index)], blocks[1] if has_temp else temp, xp=_namespace(data), window=window,
            strides=strides, widths=tuple(pads), first=tuple(firsts), sizes=sizes, normalized=normalized,
            output_value=output_value, bonus=bonus,
        )
        return result if isinstance(result, tuple) else (result,)

    outs = [_Out(x.dtype, extra_axis=2, extra=nd)] + ([_Out(x.dtype)] if output_value else [])
    return _single(_run_blocks(block, arrays, out_chunks, outs, x))


def _whole_maps(x: Any, temp: Any | None = None) -> tuple[Any, Any]:
    """``x`` with its maps (H, W) in single chunks, and a temperature array aligned to its blocks."""
    import dask.array as da

    x = x.rechunk((*x.chunks[:2], (x.shape[2],), (x.shape[3],)))
    if temp is None or isinstance(temp, float):
        return x, temp
    t = da.broadcast_to(da.asarray(temp), (*x.shape[:2], 1))
    return x, t.rechunk((*x.chunks[:2], (1,)))


def _call(kernel: Callable[..., Any], **params: Any) -> Callable[..., Any]:
    def run(block: Any, *others: Any) -> Any:
        return kernel(block, *others, xp=_namespace(block), **params)

    return run


def _softmax(kernel: Callable[..., Any], x: Any, temp: Any) -> Any:
    import dask.array as da

    x, t = _whole_maps(x, temp)
    if isinstance(t, float):
        return da.map_blocks(lambda b: kernel(b, t, xp=_namespace(b)), x, dtype=x.dtype, meta=x._meta)
    return da.blockwise(_call(kernel), "bnhw", x, "bnhw", t, "bno", dtype=x.dtype, meta=x._meta, concatenate=True)


def _expectation(kernel: Callable[..., Any], x: Any, **params: Any) -> Any:
    import dask.array as da

    x, _ = _whole_maps(x)
    return da.blockwise(
        _call(kernel, **params), "bnz", x, "bnhw", new_axes={"z": 2}, dtype=x.dtype, meta=_meta(x, 3, x.dtype),
        concatenate=True,
    )


def _soft_argmax(kernel: Callable[..., Any], x: Any, temp: Any, **params: Any) -> Any:
    import dask.array as da

    x, t = _whole_maps(x, temp)
    meta = _meta(x, 3, x.dtype)
    if isinstance(t, float):
        return da.blockwise(
            lambda b: kernel(b, t, xp=_namespace(b), **params), "bnz", x, "bnhw", new_axes={"z": 2},
            dtype=x.dtype, meta=meta, concatenate=True,
        )
    return da.blockwise(
        _call(kernel, **params), "bnz", x, "bnhw", t, "bno", new_axes={"z": 2}, dtype=x.dtype, meta=meta,
        concatenate=True,
    )


def _gaussian(kernel: Callable[..., Any], mean: Any, std: Any, *, size: tuple[int, int], normalized: bool) -> Any:
    import dask.array as da
    import numpy as np

    shape = np.broadcast_shapes(tuple(mean.shape), tuple(std.shape))
    lead = len(shape) - 1
    mean = da.broadcast_to(mean, shape)
    chunks = (*mean.chunks[:-1], (2,))
    mean = mean.rechunk(chunks)
    std = da.broadcast_to(std, shape).rechunk(chunks)
    ind = "abcdefghijklmnopqrstuv"[:lead]
    return da.blockwise(
        _call(kernel, size=size, normalized=normalized), ind + "yx", mean, ind + "z", std, ind + "z",
        new_axes={"y": size[0], "x": size[1]}, dtype=mean.dtype, meta=_meta(mean, lead + 2, mean.dtype),
        concatenate=True,
    )


_PLANS: dict[str, Callable[..., Any]] = {
    "nms2d": _nms,
    "nms3d": _nms,
    "nms3d_minmax": _minmax,
    "conv_soft_argmax2d": _conv_soft_argmax,
    "conv_soft_argmax3d": _conv_soft_argmax,
    "conv_quad_interp3d": _conv_quad,
    "iterative_quad_interp3d": _iterative_quad,
    "spatial_softmax2d": _softmax,
    "spatial_expectation2d": _expectation,
    "spatial_soft_argmax2d": _soft_argmax,
    "render_gaussian2d": _gaussian,
}


def blockwise(op: str, kernel: Callable[..., Any], /, *arrays: Any, xp: Any, **params: Any) -> Any:
    """Run operation ``op`` lazily, block by block, by its plan (see the module docstring).

    The blocks run on the hooks chosen *now*, when the graph is built: a graph built inside
    :func:`~subpix_xp.backends.use_generic_hooks` runs the generic kernels wherever and whenever it
    is computed (outside the context, on the scheduler's threads, on ``dask.distributed`` workers),
    and one built outside runs the native kernels even if computed inside it.

    With an empty array among the inputs the result is empty too (its shape is all that matters):
    the kernel runs once on stand-ins of the chunks' library (zeros, ones for a temperature), which
    costs nothing, and the result is wrapped as a one-chunk Dask array.
    """
    kernel = _pinned(kernel)
    present = [a for a in arrays if a is not None and not isinstance(a, float)]
    if any(math.isnan(n) for a in present for n in a.shape):
        msg = (f"{op}: Dask arrays of unknown shape or chunk sizes (NaN) cannot be split into windows; "
               f"call `.compute_chunk_sizes()` on them first; got shapes {[tuple(a.shape) for a in present]}")
        raise ValueError(msg)
    if any(math.prod(a.shape) == 0 for a in present):
        return _empty(kernel, arrays, params)
    return _PLANS[op](kernel, *arrays, **params)


def _empty(kernel: Callable[..., Any], arrays: Sequence[Any], params: dict[str, Any]) -> Any:
    import array_api_compat
    import dask.array as da

    def stand_in(a: Any, i: int) -> Any:
        if a is None or isinstance(a, float):
            return a
        mxp = array_api_compat.array_namespace(a._meta)
        return (mxp.zeros if i == 0 else mxp.ones)(tuple(a.shape), dtype=a.dtype)

    xp = array_api_compat.array_namespace(arrays[0]._meta)
    result = kernel(*(stand_in(a, i) for i, a in enumerate(arrays)), xp=xp, **params)
    if isinstance(result, tuple):
        return tuple(da.from_array(r, chunks=-1) for r in result)
    return da.from_array(result, chunks=-1)


HOOKS = dataclasses.replace(
    GENERIC,
    name="dask",
    can_inspect=can_inspect,
    supports_dynamic_shapes=supports_dynamic_shapes,
    prefers_static_shapes=prefers_static_shapes,
    blockwise=blockwise,
)
