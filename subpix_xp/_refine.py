"""The keypoint stage of :func:`~subpix_xp.detect_blobs` on a fixed candidate budget.

Every step here works on per-image arrays of a shape fixed by the input's and by Python integers
(``(B, M)`` candidates of a ``(B, V)`` flattened response volume), with gathers
(``take_along_axis``) and elementwise arithmetic only, so one code path runs eagerly, under
``jax.jit`` and on accelerators, with the same arithmetic everywhere:

- :func:`select_candidates`: the ``M`` strongest entries of each row (ties: the earlier voxel),
  found with ``nonzero`` where shapes may depend on data, else one top-k of the whole row;
- :func:`refine`: the quadratic sub-voxel rule of :mod:`subpix_xp._quad_interp` (the same
  derivatives, scaled solve, steps and convergence test) iterated at the candidates only;
- :func:`local_fit2d`: the 2-D spatial derivatives of the response at a refined scale, for the
  edge test and the spatial re-fit;
- :func:`duplicates`: the one-shot rule that keeps one keypoint per blob.

Flat indices never exceed one image's volume, so they fit JAX's default 32-bit integers up to
``2**31`` voxels per octave.
"""

from __future__ import annotations

import math
from typing import Any

from ._common import device
from ._quad_interp import _NEIGHBOURS, _converged, _derivatives, _solve, _step, _unit_scale
from ._topk import top_k, top_k_sparse
from .backends import Hooks

Array = Any

__all__ = ["duplicates", "edge_like", "local_fit2d", "refine", "refit_xy", "select_candidates", "sensitivity"]

_REFIT_STEP = 0.6  # the nearest pixel is within 0.5 of a true peak; a longer step is not one
_REFIT_RATIO = 10.0  # the re-fit trusts a 2-D fit whose principal curvature ratio is below this


def index_limit(dtype: Any, *, xp: Any) -> int:
    """The largest value of the integer ``dtype``."""
    return int(xp.iinfo(dtype).max)


def check_index_range(func: str, count: int, dtype: Any, *, xp: Any) -> None:
    """``ValueError`` when flat indices up to ``count`` do not fit the default integer ``dtype``."""
    limit = index_limit(dtype, xp=xp)
    if count > limit:
        msg = (
            f"{func}: the image is too large for {dtype} indices ({count} > {limit} positions per octave); "
            "use a smaller image, or enable 64-bit integers (JAX: jax.config.update('jax_enable_x64', True))"
        )
        raise ValueError(msg)


# ---------------------------------------------------------------------------------------------
# Candidate selection


def select_candidates(score: Array, valid: Array, m: int, hooks: Hooks, *, xp: Any) -> tuple[Array, Array]:
    """``(index, kept)``, ``(B, m)``: the ``m`` highest-scoring valid entries of each row of ``score`` ``(B, V)``.

    Strongest first; ties keep the earlier entry (a stable descending sort). Slots past a row's
    last valid entry hold index 0 and ``kept`` False. Both paths give identical results, except
    that the dynamic one drops trailing slots that no row fills.
    """
    if hooks.supports_dynamic_shapes(score):
        return _top_sparse(score, valid, m, hooks, xp=xp)
    return _top_static(score, valid, m, xp=xp)


def _top_sparse(score: Array, valid: Array, k: int, hooks: Hooks, *, xp: Any) -> tuple[Array, Array]:
    """:func:`select_candidates` with ``nonzero``: only the valid entries are sorted."""
    b, n = score.shape
    dev = device(score)
    rows, cols = xp.nonzero(valid)
    index = xp.zeros(b * k, dtype=cols.dtype, device=dev)
    kept = xp.zeros(b * k, dtype=xp.bool, device=dev)
    if rows.shape[0] > 0 and k > 0:
        values = xp.take(xp.reshape(score, (b * n,)), rows * n + cols)
        entry, row, rank = top_k_sparse(rows, values, k, xp=xp)
        k = min(k, int(xp.max(rank)) + 1)  # no slot that no row fills
        index, kept = index[: b * k], kept[: b * k]
        slot = row * k + rank  # strictly increasing
        index = hooks.expand(xp.take(cols, entry), slot, index, xp=xp)
        kept = hooks.expand(xp.ones(slot.shape, dtype=xp.bool, device=dev), slot, kept, xp=xp)
    return xp.reshape(index, (b, k)), xp.reshape(kept, (b, k))


def _top_static(score: Array, valid: Array, k: int, *, xp: Any) -> tuple[Array, Array]:
    """:func:`select_candidates` with static shapes (``jax.jit``): no ``nonzero``.

    One :func:`top_k` of each whole row, the invalid entries at ``-inf``: with a native top-k
    (JAX: ``lax.top_k``, a partial sort) this is cheaper to run and to compile than packing the
    valid entries first (a running count, a ``searchsorted``, a gather) and sorting the packed ones.
    """
    order = top_k(xp.where(valid, score, xp.full_like(score, -math.inf)), k, xp=xp)
    kept = xp.take_along_axis(valid, order, axis=1)
    return xp.where(kept, order, xp.zeros_like(order)), kept


# ---------------------------------------------------------------------------------------------
# Sub-voxel refinement at the candidates


def refine(
    resp: Array,
    index: Array,
    sign: Array,
    geometry: tuple[Array, ...],
    n_iters: int,
    threshold: float,
    hooks: Hooks,
    *,
    xp: Any,
    bounds: tuple[Array, Array] | None = None,
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """Refine the extrema of ``sign * resp`` at flat positions ``index`` ``(B, M)`` of ``resp`` ``(B, T)``.

    ``resp`` holds each image's octave volumes laid end to end; ``geometry`` ``(base, d, h, w)``
    gives, per candidate, where its volume starts in the row and its shape (integer arrays like
    ``index``; every side at least 3), so one call refines the candidates of every octave. The
    rule is :func:`~subpix_xp.iterative_quad_interp3d`'s (``allow_scale_steps=True``, no bonus),
    with each neighbourhood read by one gather: returns ``(level, x, y, value, refined, spread)``,
    each ``(B, M)``, in volume coordinates, ``spread`` the :func:`sensitivity` of the final fit
    (``inf`` where not refined). A candidate that is not refined (rejected, or ``n_iters == 0``)
    keeps its grid position and input value. The iterations run in
    :attr:`Hooks.fori_loop` (under ``jax.jit``: one compiled step, not ``n_iters`` unrolled ones).
    ``bounds`` ``(h, w)``, like ``index``: the part of each volume a candidate may move in (a
    padded image's true size; default the whole volume).
    """
    base, d, h, w = geometry
    dtype = resp.dtype
    local = index - base
    start = (local // (h * w), (local // w) % h, local % w)
    start_value = sign * xp.take_along_axis(resp, index, axis=1)
    grid = [xp.astype(p, dtype) for p in start]
    if n_iters == 0:
        return (
            grid[0],
            grid[2],
            grid[1],
            start_value,
            xp.zeros(index.shape, dtype=xp.bool, device=device(resp)),
            xp.full(index.shape, math.inf, dtype=dtype, device=device(resp)),
        )
    m = index.shape[1]
    size = (d, h, w) if bounds is None else (d, *bounds)
    offsets = _offsets(_NEIGHBOURS, h, w, xp=xp)
    slot = {n: i for i, n in enumerate(_NEIGHBOURS)}

    def derivatives_at(position: tuple[Array, Array, Array]) -> tuple[Array, ...]:
        # The fit's derivatives at ``position`` (clipped into the volume), from one gather.
        cd, ch, cw = (xp.clip(p, 1, n - 2) for p, n in zip(position, size))
        centre = base + (cd * h + ch) * w + cw
        gather = xp.reshape(centre[:, None, :] + offsets, (-1, len(_NEIGHBOURS) * m))
        patch = sign[:, None, :] * xp.reshape(
            xp.take_along_axis(resp, gather, axis=1), (-1, len(_NEIGHBOURS), m)
        )

        def at(dd: int, dh: int, dw: int) -> Array:
            return patch[:, slot[(dd, dh, dw)], :]

        return _derivatives(at)

    def body(_: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        # The previous pass's fit moves the keypoint (none on the first pass: zero shifts), then
        # the fit at the new position is carried to the next pass. The move reads the fit from the
        # carry, computed once; compilers would otherwise copy its cheap arithmetic into each of the
        # move's results (the three coordinates, ``ok``, ``moved``). The carry also keeps the
        # previous position and fit: after the last pass, the result is read there (the last
        # fit's move is not taken).
        position, ok, fit, solved = carry[:4]
        sx, sy, ss = fit[:3]
        new_position, ok, moved = _step(position, (ss, sy, sx), ok & solved, size, threshold, True, xp=xp)
        *new_fit, new_solved = _solve(derivatives_at(new_position), xp=xp)
        return new_position, ok, tuple(new_fit), new_solved, position, fit, moved

    # The first pass's move is none (zero shifts); it checks that the start is inside, as every
    # strict extremum is. ``n_iters`` moves follow, the last one not taken.
    zero = xp.zeros(index.shape, dtype=dtype, device=device(resp))
    yes = xp.ones(index.shape, dtype=xp.bool, device=device(resp))
    fit = (zero, zero, zero, zero)
    carry = (start, yes, fit, yes, start, fit, ~yes)
    _, ok, _, _, position, (sx, sy, ss, gds), moved = hooks.fori_loop(n_iters + 1, body, carry, xp=xp)
    # The final fit's sensitivity, once (the same gather and derivatives as its pass).
    spread = sensitivity(derivatives_at(position), xp=xp)
    refined = _converged((ss, sy, sx), ok, moved)
    final = base + (position[0] * h + position[1]) * w + position[2]
    value = sign * xp.take_along_axis(resp, final, axis=1) + 0.5 * gds
    level, x, y = (
        xp.astype(p, dtype) + s for p, s in ((position[0], ss), (position[2], sx), (position[1], sy))
    )
    return (
        xp.where(refined, level, grid[0]),
        xp.where(refined, x, grid[2]),
        xp.where(refined, y, grid[1]),
        xp.where(refined, value, start_value),
        refined,
        xp.where(refined, spread, xp.full_like(spread, math.inf)),
    )


def _offsets(steps: Any, h: Array, w: Array, *, xp: Any) -> Array:
    """The flat offsets ``(dd * h + dh) * w + dw`` of the ``(dd, dh, dw)`` ``steps`` in volumes of
    ``h x w`` planes (``(B, M)``, per candidate), as one ``(B, len(steps), M)`` array (one broadcast
    expression: a compiler makes one kernel of it, not one per step)."""
    dev = device(h)
    dd, dh, dw = (
        xp.reshape(xp.asarray([step[i] for step in steps], dtype=h.dtype, device=dev), (-1, 1))
        for i in range(3)
    )
    return (dd * h[:, None, :] + dh) * w[:, None, :] + dw


def sensitivity(fit: tuple[Array, ...], *, xp: Any) -> Array:
    """How far the fit's centre moves per unit error of its gradient: ``||(H^-1)[x, y rows]||_F``.

    ``fit`` is :func:`~subpix_xp._quad_interp._derivatives`' ``(gx, gy, gs, dxx, ...)``; the
    rows of the inverse Hessian that give ``(sx, sy)`` from ``-g``, in pixels per unit of the
    response, computed on the power-of-two scaled system of :func:`_solve` (``inf`` where that is
    singular). A large value is a centre that the fit does not determine: weak curvature in some
    direction, in space or along scale through the cross terms.
    """
    gx, gy, gs, *hessian = fit
    scale = _unit_scale(tuple(hessian), (gx, gy, gs), xp=xp)
    dxx, dyy, dss, dxy, dxs, dys = (h * scale for h in hessian)
    # The adjugate's rows for x and y (the Hessian is symmetric).
    a00 = dyy * dss - dys * dys
    a01 = dxs * dys - dxy * dss
    a02 = dxy * dys - dyy * dxs
    a11 = dxx * dss - dxs * dxs
    a12 = dxy * dxs - dxx * dys
    det = dxx * a00 + dxy * a01 + dxs * a02
    norm = xp.sqrt(a00 * a00 + 2.0 * a01 * a01 + a02 * a02 + a11 * a11 + a12 * a12)
    usable = xp.isfinite(det) & (det != 0)
    out = scale * norm / xp.abs(xp.where(usable, det, xp.ones_like(det)))
    return xp.where(usable, out, xp.full_like(out, math.inf))


# ---------------------------------------------------------------------------------------------
# The 2-D fit at the refined scale: edge test and spatial re-fit


def local_fit2d(
    resp: Array,
    geometry: tuple[Array, ...],
    level: Array,
    x: Array,
    y: Array,
    *,
    xp: Any,
    bounds: tuple[Array, Array] | None = None,
) -> tuple[Array, ...]:
    """Spatial derivatives of the response interpolated at ``level``, at the pixel nearest ``(x, y)``.

    Returns ``(col, row, gx, gy, dxx, dyy, dxy)`` (central differences of
    ``(1 - t) R[l0] + t R[l0 + 1]``, ``l0 = floor(level)``), each like ``level``; ``geometry`` as
    in :func:`refine`. The pixel is clamped to the interior (of ``bounds``, as in :func:`refine`),
    so every read is inside its volume.
    """
    base, d, h, w = geometry
    bh, bw = (h, w) if bounds is None else bounds
    dtype = level.dtype
    l0 = xp.clip(xp.floor(level), 0.0, xp.astype(d - 2, dtype))
    t = xp.clip(level - l0, 0.0, 1.0)
    row = xp.clip(xp.round(y), 1.0, xp.astype(bh - 2, dtype))
    col = xp.clip(xp.round(x), 1.0, xp.astype(bw - 2, dtype))
    centre = base + (xp.astype(l0, h.dtype) * h + xp.astype(row, h.dtype)) * w + xp.astype(col, h.dtype)
    # One gather of the 3x3 neighbourhood on both levels (one consumer keeps XLA's fusion small).
    steps = [(dl, dy, dx) for dl in (0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    m = level.shape[1]
    gather = xp.reshape(centre[:, None, :] + _offsets(steps, h, w, xp=xp), (-1, len(steps) * m))
    patch = xp.reshape(xp.take_along_axis(resp, gather, axis=1), (-1, 2, 9, m))
    patch = patch[:, 0, ...] + t[:, None, :] * (patch[:, 1, ...] - patch[:, 0, ...])

    def at(dy: int, dx: int) -> Array:
        return patch[:, (dy + 1) * 3 + (dx + 1), :]

    c = at(0, 0)
    east, west, south, north = at(0, 1), at(0, -1), at(1, 0), at(-1, 0)
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    return (
        col,
        row,
        0.5 * (east - west),
        0.5 * (south - north),
        east - 2.0 * c + west,
        south - 2.0 * c + north,
        dxy,
    )


def edge_like(dxx: Array, dyy: Array, dxy: Array, ratio: float, *, xp: Any) -> Array:
    """SIFT's edge test: ``det(H) <= 0`` or ``tr(H)**2 / det(H) >= (ratio + 1)**2 / ratio`` (or not finite)."""
    det = dxx * dyy - dxy * dxy
    trace = dxx + dyy
    peak = xp.isfinite(det) & (det > 0) & (trace * trace * ratio < (ratio + 1.0) ** 2 * det)
    return ~peak


def refit_xy(fit: tuple[Array, ...], x: Array, y: Array, *, xp: Any) -> tuple[Array, Array]:
    """One Newton step of the 2-D fit of :func:`local_fit2d` from its pixel; where it is no peak's, ``(x, y)``.

    The 3-D fit extrapolates the spatial gradient along scale through the cross derivatives, which
    the coarse scale sampling gets wrong: its centres carry a bias of 0.01 to 0.05 octave pixels.
    At a fixed scale a blob's response is symmetric about its centre, so a step on the response
    interpolated at the refined scale removes most of it. The step is kept where the Hessian is
    definite and not elongated (principal curvature ratio below 10) and the step is at most 0.6
    pixel.
    """
    col, row, gx, gy, dxx, dyy, dxy = fit
    det = dxx * dyy - dxy * dxy
    m = xp.maximum(xp.maximum(xp.abs(dxx), xp.abs(dyy)), xp.abs(dxy))
    solved = ~edge_like(dxx, dyy, dxy, _REFIT_RATIO, xp=xp) & (det > 1e-6 * m * m)
    safe = xp.where(solved, det, xp.ones_like(det))
    sx = -(dyy * gx - dxy * gy) / safe
    sy = -(dxx * gy - dxy * gx) / safe
    ok = solved & (xp.abs(sx) <= _REFIT_STEP) & (xp.abs(sy) <= _REFIT_STEP)
    return xp.where(ok, col + sx, x), xp.where(ok, row + sy, y)


# ---------------------------------------------------------------------------------------------
# Duplicates


def duplicates(
    x: Array,
    y: Array,
    log_sigma: Array,
    valid: Array,
    radius: float,
    scale_step: float,
    *,
    xp: Any,
    block: int = 0,
) -> Array:
    """Bool ``(B, N)``: candidate ``i`` (ordered strongest first) repeats an earlier valid one.

    ``j < i`` is the same blob as ``i`` when their centres lie within ``radius`` times the smaller
    of their two sigmas and their sigmas differ by at most ``scale_step`` in natural log. The
    rule is one-shot (an earlier duplicate still suppresses), so every backend evaluates it in
    parallel with static shapes. ``block``: the elements of one block's pairwise arrays (see
    :attr:`Hooks.block_elements`; ``0``: all pairs at once, which a compiler fuses into one pass):
    a block of rows is compared with the columns before its end (about half the pairs, each
    block's arrays in the cache).
    """
    n = x.shape[1]
    rows = n if block <= 0 else max(1, block // (x.shape[0] * n))
    order = xp.arange(n, device=device(x))
    reach = xp.exp(log_sigma) * radius
    # An invalid candidate is nobody's earlier copy: its NaN column compares false.
    nan = xp.full_like(x, math.nan)
    xj, yj = xp.where(valid, x, nan), xp.where(valid, y, nan)
    out = []
    for s in range(0, n, rows):
        e = min(n, s + rows)
        dx = x[:, s:e, None] - xj[:, None, :e]
        dy = y[:, s:e, None] - yj[:, None, :e]
        near = xp.minimum(reach[:, s:e, None], reach[:, None, :e])
        same = (dx * dx + dy * dy <= near * near) & (
            xp.abs(log_sigma[:, s:e, None] - log_sigma[:, None, :e]) <= scale_step
        )
        earlier = order[None, :e] < order[s:e, None]
        out.append(xp.any(same & earlier, axis=2))
    return xp.concat(out, axis=1) if len(out) > 1 else out[0]
