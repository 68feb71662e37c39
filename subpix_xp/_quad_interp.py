"""Quadratic sub-voxel refinement of 3-D scale-space maxima.

Both public functions follow one rule. A keypoint starts at a maximum ``v``. At each of
``n_iters`` iterations it fits a quadratic to the 3x3x3 neighbourhood of its current voxel
(clamped to the interior), solves ``H s = -g`` and, where a component of ``s`` exceeds
``max_subpixel_shift``, steps one voxel that way. It is rejected (grid coordinates, input value)
when a Hessian is singular, when a step would reach a border voxel, when it still steps on the last
iteration, when its final shift exceeds 1.5 on any axis, or (conv path) when it reaches a voxel
outside the ``dilation_radius`` neighbourhood of every maximum of its image.

The outcome of one iteration depends only on the current voxel, so the rule is a transition table
over voxels. The static-shape path (:func:`conv_quad_interp3d`) builds that table densely and
follows it with ``take``; the sparse path (:func:`iterative_quad_interp3d`) evaluates the same
transition only at the keypoints, found with ``nonzero``. Both evaluate identical arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

from . import _common as c
from . import _validation as v
from ._common import device
from ._nms import _strict_extrema, nms3d
from ._topk import top_k_mask, top_k_sparse
from .backends import Blockwise, Hooks, Output, hooks_for

Array = Any

__all__ = ["conv_quad_interp3d", "iterative_quad_interp3d"]

_DET_FLOOR = 1e-7
_MAX_FINAL_SHIFT = 1.5


# ---------------------------------------------------------------------------------------------
# The local fit: derivatives, the scaled Cramer solve, and one iteration's step.


def _derivatives(at: Any) -> tuple[Array, ...]:
    """Central differences ``(gx, gy, gs, dxx, dyy, dss, dxy, dxs, dys)``; ``at(dd, dh, dw)`` reads a neighbour."""
    centre = at(0, 0, 0)
    xp_, xm = at(0, 0, 1), at(0, 0, -1)
    yp, ym = at(0, 1, 0), at(0, -1, 0)
    sp, sm = at(1, 0, 0), at(-1, 0, 0)
    gx, gy, gs = 0.5 * (xp_ - xm), 0.5 * (yp - ym), 0.5 * (sp - sm)
    dxx = xp_ - 2.0 * centre + xm
    dyy = yp - 2.0 * centre + ym
    dss = sp - 2.0 * centre + sm
    dxy = 0.25 * (at(0, 1, 1) - at(0, 1, -1) - at(0, -1, 1) + at(0, -1, -1))
    dxs = 0.25 * (at(1, 0, 1) - at(1, 0, -1) - at(-1, 0, 1) + at(-1, 0, -1))
    dys = 0.25 * (at(1, 1, 0) - at(1, -1, 0) - at(-1, 1, 0) + at(-1, -1, 0))
    return gx, gy, gs, dxx, dyy, dss, dxy, dxs, dys


def _max_abs(*arrays: Array, xp: Any) -> Array:
    out = xp.abs(arrays[0])
    for a in arrays[1:]:
        out = xp.maximum(out, xp.abs(a))
    return out


def _exponent(magnitude: Array, fallback: float, *, xp: Any) -> Array:
    """``floor(log2(magnitude))`` where it is finite and positive, else ``fallback``."""
    usable = xp.isfinite(magnitude) & (magnitude > 0)
    safe = xp.where(usable, magnitude, xp.ones_like(magnitude))
    return xp.where(usable, xp.floor(xp.log2(safe)), xp.full_like(magnitude, fallback))


def _unit_scale(hessian: tuple[Array, ...], rhs: tuple[Array, ...], *, xp: Any) -> Array:
    """The power of two that brings the largest Hessian entry to ``[1, 2)``.

    Scaling by a power of two is exact, so the shifts are those of the unscaled system wherever it
    neither underflows nor overflows, and they no longer depend on the response's amplitude. An
    upward factor is capped so the right-hand side stays below ``2**64``.
    """
    tiny = xp.finfo(hessian[0].dtype).smallest_normal
    limit = float(math.floor(-math.log2(tiny)))
    exponent = _exponent(_max_abs(*hessian, xp=xp), 0.0, xp=xp)
    cap = xp.clip(_exponent(_max_abs(*rhs, xp=xp), -math.inf, xp=xp) - 63.0, max=0.0)
    exponent = xp.clip(xp.maximum(exponent, cap), min=-limit, max=limit)
    return xp.full_like(exponent, 2.0) ** (-exponent)


def _solve(fit: tuple[Array, ...], *, xp: Any) -> tuple[Array, Array, Array, Array, Array]:
    """Solve ``H s = -g`` for the fit of :func:`_derivatives`; returns ``(sx, sy, ss, g . s, solved)``.

    A system whose determinant is at most ``1e-7 * m**3`` (``m`` its largest entry) is unsolved:
    its shift is 0 and nothing non-finite enters the result or its gradient.
    """
    gx, gy, gs, *hessian = fit
    scale = _unit_scale(tuple(hessian), (gx, gy, gs), xp=xp)
    dxx, dyy, dss, dxy, dxs, dys = (h * scale for h in hessian)
    r0, r1, r2 = -gx * scale, -gy * scale, -gs * scale
    cf00 = dyy * dss - dys * dys
    cf01 = dxy * dss - dys * dxs
    cf02 = dxy * dys - dyy * dxs
    det = dxx * cf00 - dxy * cf01 + dxs * cf02
    m = _max_abs(dxx, dyy, dss, dxy, dxs, dys, xp=xp)
    solved = xp.abs(det) > _DET_FLOOR * m * m * m
    safe_det = xp.where(solved, det, xp.ones_like(det))
    sx = (r0 * cf00 - dxy * (r1 * dss - dys * r2) + dxs * (r1 * dys - dyy * r2)) / safe_det
    sy = (dxx * (r1 * dss - dys * r2) - r0 * cf01 + dxs * (dxy * r2 - r1 * dxs)) / safe_det
    ss = (dxx * (dyy * r2 - r1 * dys) - dxy * (dxy * r2 - r1 * dxs) + r0 * cf02) / safe_det
    zero = xp.zeros_like(det)
    sx, sy, ss = (xp.where(solved, s, zero) for s in (sx, sy, ss))
    return sx, sy, ss, gx * sx + gy * sy + gs * ss, solved


def _step(
    position: tuple[Array, Array, Array],
    shift: tuple[Array, Array, Array],
    ok: Array,
    size: tuple[int, int, int],
    threshold: float,
    allow_scale_steps: bool,
    *,
    xp: Any,
) -> tuple[tuple[Array, Array, Array], Array, Array]:
    """One iteration's move: returns the new ``(d, h, w)``, whether it is still valid, whether it moved.

    ``position`` is ``(d, h, w)``, ``shift`` is ``(ss, sy, sx)`` in the same axis order.
    """
    new_position, moved = [], None
    for axis, (p, s, n) in enumerate(zip(position, shift, size)):
        steps = axis > 0 or allow_scale_steps
        if steps:
            one = xp.ones_like(p)
            move = xp.where(
                ok & (s > threshold), one, xp.where(ok & (s < -threshold), -one, xp.zeros_like(p))
            )
            p = p + move
            ok = ok & (p >= 1) & (p <= n - 2)
            p = xp.clip(p, 0, n - 1)
            moved = (move != 0) if moved is None else moved | (move != 0)
        new_position.append(p)
    return (new_position[0], new_position[1], new_position[2]), ok, moved


def _converged(shift: tuple[Array, ...], ok: Array, moved: Array) -> Array:
    small = ok & ~moved
    for s in shift:
        small = small & (s >= -_MAX_FINAL_SHIFT) & (s <= _MAX_FINAL_SHIFT)
    return small


# ---------------------------------------------------------------------------------------------
# Shared plumbing.


def _check(
    func: str,
    input: Array,
    precomputed_nms_mask: Array | None,
    n_iters: Any,
    strict_maxima_bonus: Any,
    max_subpixel_shift: Any,
    allow_scale_steps: Any,
) -> tuple[Any, Array]:
    """The namespace, and ``input`` checked and in its native byte order; the other parameters checked."""
    xp = v.namespace(func, input=input, precomputed_nms_mask=precomputed_nms_mask)
    v.check_ndim(func, "input", input, 5, "(B, C, D, H, W)")
    input = v.check_floating(func, "input", input, xp)
    if precomputed_nms_mask is not None:
        if tuple(precomputed_nms_mask.shape) != tuple(input.shape):
            msg = (
                f"{func}: expected `precomputed_nms_mask` of the input's shape {tuple(input.shape)}; "
                f"got {tuple(precomputed_nms_mask.shape)}"
            )
            raise ValueError(msg)
        if precomputed_nms_mask.dtype != xp.bool:
            msg = f"{func}: expected a bool `precomputed_nms_mask`; got dtype {precomputed_nms_mask.dtype}"
            raise TypeError(msg)
    v.check_int(func, "n_iters", n_iters, minimum=0)
    v.check_number(func, "strict_maxima_bonus", strict_maxima_bonus)
    v.check_number(func, "max_subpixel_shift", max_subpixel_shift, minimum=0.0)
    v.check_bool(func, "allow_scale_steps", allow_scale_steps)
    _check_index_range(func, tuple(input.shape), xp=xp)
    return xp, input


def _check_index_range(func: str, shape: tuple[int, ...], *, xp: Any) -> None:
    """The static-shape path numbers every voxel of the batch (and one past the last) in the default
    index dtype: with JAX's default int32 that is at most 2**31 - 1 voxels. ``ValueError`` beyond it."""
    total = math.prod(shape)
    if total < 2**31 - 1:  # fits every index dtype (the common case, without a look-up)
        return
    dtype = c.index_dtype(xp=xp)
    limit = int(xp.iinfo(dtype).max)
    if total >= limit:
        msg = (
            f"{func}: expected at most {limit - 1} voxels in `input`, the most that {dtype} indices (this "
            f"array library's default) can number; got shape {shape} ({total} voxels). Split the batch, "
            f'or with JAX enable 64-bit indices: jax.config.update("jax_enable_x64", True)'
        )
        raise ValueError(msg)


def _grid(
    shape: tuple[int, ...], dtype: Any, like: Array, origin: tuple[int, int, int] = (0, 0, 0), *, xp: Any
) -> Array:
    """Grid coordinates ``(B, C, 3, D, H, W)`` ordered ``(depth, x, y)``; voxel 0 sits at ``origin`` ``(d, h, w)``."""
    b, ch, d, h, w = shape
    od, oh, ow = origin
    dev = device(like)
    ds = xp.reshape(xp.arange(od, od + d, dtype=dtype, device=dev), (d, 1, 1))
    hs = xp.reshape(xp.arange(oh, oh + h, dtype=dtype, device=dev), (1, h, 1))
    ws = xp.reshape(xp.arange(ow, ow + w, dtype=dtype, device=dev), (1, 1, w))
    grid = xp.stack([xp.broadcast_to(a, (d, h, w)) for a in (ds, ws, hs)], axis=0)
    return xp.broadcast_to(grid, (b, ch, 3, d, h, w))


def _grid_array(
    shape: tuple[int, ...], dtype: Any, like: Array, origin: tuple[int, int, int] = (0, 0, 0), *, xp: Any
) -> Array:
    """:func:`_grid` materialised in one pass: the three broadcast planes concatenated on axis 2."""
    b, ch, d, h, w = shape
    od, oh, ow = origin
    dev = device(like)
    planes = []
    for start, n, where in ((od, d, (d, 1, 1)), (ow, w, (1, 1, w)), (oh, h, (1, h, 1))):
        axis = xp.reshape(xp.arange(start, start + n, dtype=dtype, device=dev), (1, 1, 1, *where))
        planes.append(xp.broadcast_to(axis, (b, ch, 1, d, h, w)))
    return xp.concat(planes, axis=2)


def _unrefined(input: Array, origin: tuple[int, int, int] = (0, 0, 0), *, xp: Any) -> tuple[Array, Array]:
    coords = _grid_array(tuple(input.shape), input.dtype, input, origin, xp=xp)
    return coords, c.copy(input)


def _nms_mask(input: Array, precomputed: Array | None, hooks: Hooks, *, xp: Any) -> Array:
    if precomputed is not None:
        return precomputed
    (mask,) = _strict_extrema(input, (3, 3, 3), ("max",), hooks, xp=xp)
    return mask


def _unflatten(flat: Array, size: tuple[int, int, int]) -> tuple[Array, Array, Array]:
    d, h, w = size
    return (flat // (h * w)) % d, (flat // w) % h, flat % w


# ---------------------------------------------------------------------------------------------
# Static-shape path.


def _edge_pad1(a: Array, *, xp: Any) -> Array:
    """Replicate the outermost entry once on each side of the last three axes."""
    for axis in (-3, -2, -1):
        # Slices, not index arrays: a host-made index array is a blocking copy on CUDA.
        n = a.shape[axis]
        first, last = a[c.axis_slice(a.ndim, axis, 0, 1)], a[c.axis_slice(a.ndim, axis, n - 1, n)]
        a = xp.concat([first, a, last], axis=axis)
    return a


def _dense_refine(
    x: Array,
    mask: Array,
    n_iters: int,
    threshold: float,
    allow_scale_steps: bool,
    radius: int | None,
    hooks: Hooks,
    *,
    xp: Any,
) -> tuple[Array, Array]:
    """Follow every maximum of ``x`` ``(BC, D, H, W)`` through the dense transition table.

    Returns the flat final voxel of each position (``-1`` where unrefined), and the tables to read
    there, stacked ``(4, BC * D * H * W)``: the shifts ``s``, ``x``, ``y`` and ``g . s``. ``radius`` ``None`` means no ``dilation_radius`` limit.
    """
    bc, d, h, w = x.shape
    size = (d, h, w)

    def at(dd: int, dh: int, dw: int) -> Array:
        return x[:, 1 + dd : d - 1 + dd, 1 + dh : h - 1 + dh, 1 + dw : w - 1 + dw]

    sx, sy, ss, gds, solved = _solve(_derivatives(at), xp=xp)
    if radius is not None:
        k = 2 * radius + 1
        as_float = hooks.pad(xp.astype(mask, x.dtype), ((radius, radius),) * 3, 0.0, xp=xp)
        reached = hooks.window_max(as_float, (k, k, k), xp=xp)[:, 1:-1, 1:-1, 1:-1] > 0
        solved = solved & reached
    # Every voxel reads the fit of its interior-clamped voxel.
    sx, sy, ss, gds = (_edge_pad1(t, xp=xp) for t in (sx, sy, ss, gds))
    solved = xp.astype(_edge_pad1(xp.astype(solved, xp.uint8), xp=xp), xp.bool)

    total = bc * d * h * w
    # The default index dtype (JAX without x64: int32, which ``_check_index_range`` makes sufficient).
    index = xp.arange(total, device=device(x))
    bc_base = (index // (d * h * w)) * (d * h * w)
    position = _unflatten(xp.reshape(index, (bc, d, h, w)), size)
    new_position, ok, moved = _step(position, (ss, sy, sx), solved, size, threshold, allow_scale_steps, xp=xp)
    nd, nh, nw = (xp.reshape(p, (total,)) for p in new_position)
    dead = xp.full((1,), total, dtype=index.dtype, device=device(x))
    target = xp.where(xp.reshape(ok, (total,)), bc_base + (nd * h + nh) * w + nw, dead)
    following = xp.concat([target, dead])
    stay = xp.reshape(_converged((ss, sy, sx), ok, moved), (total,))
    stay = xp.concat([stay, xp.zeros(1, dtype=xp.bool, device=device(x))])

    voxel = xp.where(xp.reshape(mask, (total,)), index, dead)
    for _ in range(n_iters - 1):
        voxel = xp.take(following, voxel)
    final = xp.where(xp.take(stay, voxel), voxel, xp.full_like(voxel, -1))
    tables = xp.stack([xp.reshape(t, (total,)) for t in (ss, sx, sy, gds)], axis=0)
    return final, tables


def _assemble(
    input: Array,
    x: Array,
    final: Array,
    shifts: Array,
    bonus: float,
    origin: tuple[int, int, int] = (0, 0, 0),
    *,
    xp: Any,
) -> tuple[Array, Array]:
    """Dense outputs from the flat final voxel (``-1``: unrefined) and the per-voxel ``(ss, sx, sy, g.s)``."""
    shape = tuple(input.shape)
    size = shape[2:]
    total = math.prod(shape)
    refined = final >= 0
    safe = xp.where(refined, final, xp.zeros_like(final))
    fd, fh, fw = _unflatten(safe, size)
    grid = xp.reshape(
        _grid(shape, x.dtype, x, origin, xp=xp), (shape[0] * shape[1], 3, total // (shape[0] * shape[1]))
    )
    flat_x = xp.reshape(x, (total,))
    parts = []
    for axis, (pos, offset) in enumerate(zip((fd, fw, fh), (origin[0], origin[2], origin[1]))):
        moved_to = xp.astype(pos + offset, x.dtype) + xp.take(shifts[axis, ...], safe)
        parts.append(xp.where(refined, moved_to, xp.reshape(grid[:, axis, :], (total,))))
    value = xp.take(flat_x, safe) + 0.5 * xp.take(shifts[3, ...], safe) + bonus
    value = xp.where(refined, value, flat_x)
    b, ch, d, h, w = shape
    coords = xp.stack([xp.reshape(p, (b, ch, d, h, w)) for p in parts], axis=2)
    return xp.astype(coords, input.dtype), xp.astype(xp.reshape(value, shape), input.dtype)


def _static_path(
    input: Array,
    mask: Array,
    n_iters: int,
    bonus: float,
    threshold: float,
    allow_scale_steps: bool,
    radius: int | None,
    hooks: Hooks,
    origin: tuple[int, int, int] = (0, 0, 0),
    *,
    xp: Any,
) -> tuple[Array, Array]:
    b, ch, d, h, w = input.shape
    x = xp.reshape(xp.astype(input, c.compute_dtype(input.dtype, xp=xp)), (b * ch, d, h, w))
    mask = xp.reshape(mask, (b * ch, d, h, w))
    final, tables = _dense_refine(x, mask, n_iters, threshold, allow_scale_steps, radius, hooks, xp=xp)
    return _assemble(input, x, final, tables, bonus, origin, xp=xp)


def conv_quad_interp3d(
    input: Array,
    n_iters: int = 5,
    strict_maxima_bonus: float = 10.0,
    max_subpixel_shift: float = 0.6,
    precomputed_nms_mask: Array | None = None,
    dilation_radius: int = 1,
    allow_scale_steps: bool = True,
) -> tuple[Array, Array]:
    """Sub-voxel refinement of 3-D maxima by iterated quadratic fits; static shapes throughout.

    Every output has a shape fixed by the input's, and no step depends on data through its shape
    (no ``nonzero``), so the function runs under ``jax.jit``, ``torch.compile`` and CUDA graphs.
    A keypoint may visit only voxels within ``dilation_radius`` (L-infinity) of a maximum of its
    image; one that moves farther is rejected. See the module notes for the full rule.

    Parameters
    ----------
    input : array
        Response of shape ``(B, C, D, H, W)``, real floating.
    n_iters : int, optional
        Maximum iterations per keypoint (at least 0).
    strict_maxima_bonus : float, optional
        Added to the value of every refined maximum.
    max_subpixel_shift : float, optional
        A shift component above this moves the centre one voxel and iterates again.
    precomputed_nms_mask : array, optional
        Boolean mask of the input's shape (e.g. from :func:`nms3d`) to use instead of the
        internal 3x3x3 strict NMS.
    dilation_radius : int, optional
        How far (in voxels, L-infinity) a keypoint may travel from a maximum; at least 0.
    allow_scale_steps : bool, optional
        Also move along the depth (scale) axis.

    Returns
    -------
    tuple of arrays
        Coordinates ``(B, C, 3, D, H, W)`` ordered ``(depth, x, y)`` (grid coordinates wherever
        nothing was refined) and values ``(B, C, D, H, W)`` (the input wherever nothing was
        refined; the fit's value plus the bonus at refined maxima).

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import conv_quad_interp3d
    >>> d, y, x = np.meshgrid(np.arange(5.), np.arange(7.), np.arange(7.), indexing="ij")
    >>> blob = np.exp(-((d - 2.2) ** 2 + (y - 3.4) ** 2 + (x - 2.7) ** 2) / 4.0)[None, None]
    >>> coords, vals = conv_quad_interp3d(blob, strict_maxima_bonus=0.0)
    >>> coords[0, 0, :, 2, 3, 3].round(2)
    array([2.2, 2.7, 3.4])
    """
    func = "conv_quad_interp3d"
    xp, input = _check(
        func, input, precomputed_nms_mask, n_iters, strict_maxima_bonus, max_subpixel_shift, allow_scale_steps
    )
    radius = v.check_int(func, "dilation_radius", dilation_radius, minimum=0)
    return hooks_for(xp).blockwise(
        func,
        _CONV_QUAD_BLOCKS,
        input,
        precomputed_nms_mask,
        xp=xp,
        n_iters=n_iters,
        bonus=float(strict_maxima_bonus),
        threshold=float(max_subpixel_shift),
        allow_scale_steps=allow_scale_steps,
        radius=radius,
        origin=(0, 0, 0),
    )


def _conv_quad_kernel(
    input: Array,
    mask: Array | None,
    *,
    n_iters: int,
    bonus: float,
    threshold: float,
    allow_scale_steps: bool,
    radius: int,
    origin: tuple[int, int, int],
    xp: Any,
) -> tuple[Array, Array]:
    """:func:`conv_quad_interp3d` on a whole array, or on one block whose voxel 0 sits at ``origin``."""
    hooks = hooks_for(xp)
    if min(input.shape[2:]) < 3 or math.prod(input.shape) == 0:
        return _unrefined(input, origin, xp=xp)
    mask = _nms_mask(input, mask, hooks, xp=xp)
    if n_iters == 0:
        return _no_iterations(input, mask, bonus, origin, xp=xp)
    if hooks.supports_dynamic_shapes(input) and not hooks.prefers_static_shapes(input):
        # Eager CPU arrays: the same rule evaluated at the keypoints only (the table entries they
        # read), with the dilated-maxima test read at each fit's voxel: bitwise the dense result.
        reach = _reach(mask, radius, n_iters, hooks, xp=xp)
        return _sparse_path(
            input, mask, n_iters, bonus, threshold, allow_scale_steps, None, hooks, origin, reach, xp=xp
        )
    return _static_path(
        input, mask, n_iters, bonus, threshold, allow_scale_steps, radius, hooks, origin, xp=xp
    )


def _no_iterations(
    input: Array, mask: Array, bonus: float, origin: tuple[int, int, int] = (0, 0, 0), *, xp: Any
) -> tuple[Array, Array]:
    """With no iteration every maximum is kept where it is, with the bonus added."""
    coords = _grid_array(tuple(input.shape), input.dtype, input, origin, xp=xp)
    values = c.copy(input) if c.is_constant(bonus, 0.0) else xp.where(mask, input + bonus, input)
    return coords, values


# ---------------------------------------------------------------------------------------------
# Sparse path.


# The 19 neighbours a fit reads, as (dd, dh, dw): the centre, the 6 faces and the 12 edges.
_NEIGHBOURS = tuple(
    (dd, dh, dw)
    for dd in (-1, 0, 1)
    for dh in (-1, 0, 1)
    for dw in (-1, 0, 1)
    if abs(dd) + abs(dh) + abs(dw) <= 2
)


def _sparse_refine(
    flat_x: Array,
    index: Array,
    size: tuple[int, int, int],
    n_iters: int,
    threshold: float,
    allow_scale_steps: bool,
    reach: Array | None = None,
    *,
    xp: Any,
) -> tuple[Array, Array, tuple[Array, Array, Array, Array]]:
    """Iterate the keypoints at flat positions ``index``: final voxel, refined flag and ``(ss, sx, sy, g.s)``.

    ``reach`` (flat bool, optional) marks the voxels a fit may be read at: the ``dilation_radius``
    neighbourhood of the maxima, for :func:`conv_quad_interp3d`'s rule. Each iteration gathers the
    19 neighbours of every keypoint in one ``take``.
    """
    d, h, w = size
    volume = d * h * w
    base = (index // volume) * volume
    position = _unflatten(index, size)
    ok_all = xp.ones(index.shape, dtype=xp.bool, device=device(index))
    refined = ok_all
    offsets = xp.asarray(
        [(dd * h + dh) * w + dw for dd, dh, dw in _NEIGHBOURS], dtype=index.dtype, device=device(index)
    )
    slot = {n: i for i, n in enumerate(_NEIGHBOURS)}
    for it in range(n_iters):
        cd, ch_, cw = (xp.clip(p, 1, n - 2) for p, n in zip(position, size))
        centre = base + (cd * h + ch_) * w + cw
        patch = xp.take(flat_x, xp.reshape(offsets[:, None] + centre[None, :], (-1,)))
        patch = xp.reshape(patch, (len(_NEIGHBOURS), centre.shape[0]))

        def at(dd: int, dh: int, dw: int, patch: Array = patch) -> Array:
            return patch[slot[(dd, dh, dw)], ...]

        sx, sy, ss, gds, solved = _solve(_derivatives(at), xp=xp)
        ok = ok_all & solved
        if reach is not None:
            ok = ok & xp.take(reach, centre)
        new_position, ok, moved = _step(position, (ss, sy, sx), ok, size, threshold, allow_scale_steps, xp=xp)
        if it == n_iters - 1:
            refined = _converged((ss, sy, sx), ok, moved)
        else:
            position, ok_all = new_position, ok
    final = base + (position[0] * h + position[1]) * w + position[2]
    return final, refined, (ss, sx, sy, gds)


def _reach(mask: Array, radius: int, n_iters: int, hooks: Hooks, *, xp: Any) -> Array | None:
    """Flat bool: the voxels within ``radius`` (L-infinity) of a maximum; ``None`` where no keypoint can leave them.

    A fit is read at most ``n_iters - 1`` moves from the keypoint's maximum (one voxel from it for
    a maximum on the border, whose fit is read at its interior-clamped voxel).
    """
    if radius >= max(n_iters - 1, 1):
        return None
    b, ch, d, h, w = mask.shape
    k = 2 * radius + 1
    flat = xp.reshape(xp.astype(mask, xp.uint8), (b * ch, d, h, w))
    if radius:
        flat = hooks.window_max(hooks.pad(flat, ((radius, radius),) * 3, 0, xp=xp), (k, k, k), xp=xp)
    return xp.reshape(flat, (b * ch * d * h * w,)) > 0


def _sparse_path(
    input: Array,
    mask: Array,
    n_iters: int,
    bonus: float,
    threshold: float,
    allow_scale_steps: bool,
    max_candidates: int | None,
    hooks: Hooks,
    origin: tuple[int, int, int] = (0, 0, 0),
    reach: Array | None = None,
    *,
    xp: Any,
) -> tuple[Array, Array]:
    shape = tuple(input.shape)
    size = shape[2:]
    total = math.prod(shape)
    volume = math.prod(size)
    dtype = c.compute_dtype(input.dtype, xp=xp)
    x = xp.astype(input, dtype, copy=False)
    flat_x = xp.reshape(x, (total,))
    index = xp.nonzero(xp.reshape(mask, (total,)))[0]
    if max_candidates is not None and index.shape[0] > max_candidates:
        kept, _, _ = top_k_sparse(index // volume, xp.take(flat_x, index), max_candidates, xp=xp)
        index = xp.sort(xp.take(index, kept))
    if index.shape[0] == 0:
        return _unrefined(input, origin, xp=xp)
    final, refined, (ss, sx, sy, gds) = _sparse_refine(
        flat_x, index, size, n_iters, threshold, allow_scale_steps, reach, xp=xp
    )
    fd, fh, fw = _unflatten(final, size)
    od, oh, ow = _unflatten(index, size)
    points = []
    for pos, orig, s, offset in ((fd, od, ss, origin[0]), (fw, ow, sx, origin[2]), (fh, oh, sy, origin[1])):
        points.append(xp.where(refined, xp.astype(pos + offset, dtype) + s, xp.astype(orig + offset, dtype)))
    # One scatter into the materialised (B, C, 3, D, H, W) grid: keypoint i of image bc sits at
    # bc * 3 V + axis * V + voxel; sorted by image, then axis, then voxel, as the scatter wants.
    bc, voxel = index // volume, index % volume
    where = xp.stack([bc * (3 * volume) + axis * volume + voxel for axis in range(3)], axis=0)
    order = xp.argsort(xp.reshape(xp.permute_dims(where, (1, 0)), (-1,)), stable=True)
    where = xp.take(xp.reshape(xp.permute_dims(where, (1, 0)), (-1,)), order)
    points = xp.take(xp.reshape(xp.permute_dims(xp.stack(points, axis=0), (1, 0)), (-1,)), order)
    grid = xp.astype(
        xp.reshape(_grid_array(shape, dtype, x, origin, xp=xp), (3 * total,)), input.dtype, copy=False
    )
    coords = hooks.expand(xp.astype(points, input.dtype), where, grid, xp=xp)
    value = xp.where(refined, xp.take(flat_x, final) + 0.5 * gds + bonus, xp.take(flat_x, index))
    values = hooks.expand(xp.astype(value, input.dtype), index, xp.reshape(c.copy(input), (total,)), xp=xp)
    b, ch = shape[:2]
    return xp.reshape(coords, (b, ch, 3, *size)), xp.reshape(values, shape)


def iterative_quad_interp3d(
    input: Array,
    n_iters: int = 5,
    strict_maxima_bonus: float = 10.0,
    max_subpixel_shift: float = 0.6,
    allow_scale_steps: bool = True,
    precomputed_nms_mask: Array | None = None,
    max_candidates: int | None = None,
) -> tuple[Array, Array]:
    """Sub-voxel refinement of 3-D maxima by iterated quadratic fits at the maxima only.

    Finds the maxima with ``nonzero`` and iterates only them, with no ``dilation_radius`` limit:
    the fast choice on CPUs. Where shapes cannot depend on data (under ``jax.jit``, on Dask), it
    runs the static-shape path of :func:`conv_quad_interp3d` with a radius of ``n_iters``, which
    gives the same result.

    Parameters
    ----------
    input : array
        Response of shape ``(B, C, D, H, W)``, real floating.
    n_iters : int, optional
        Maximum iterations per keypoint (at least 0).
    strict_maxima_bonus : float, optional
        Added to the value of every refined maximum.
    max_subpixel_shift : float, optional
        A shift component above this moves the centre one voxel and iterates again.
    allow_scale_steps : bool, optional
        Also move along the depth (scale) axis.
    precomputed_nms_mask : array, optional
        Boolean mask of the input's shape to use instead of the internal 3x3x3 strict NMS.
    max_candidates : int, optional
        Refine only the ``max_candidates`` maxima with the largest input values of each image
        (ties: the earlier voxel first); the others keep grid coordinates and input values.

    Returns
    -------
    tuple of arrays
        Coordinates ``(B, C, 3, D, H, W)`` ordered ``(depth, x, y)`` and values ``(B, C, D, H, W)``,
        as :func:`conv_quad_interp3d`.

    Examples
    --------
    >>> import numpy as np
    >>> from subpix_xp import iterative_quad_interp3d
    >>> d, y, x = np.meshgrid(np.arange(5.), np.arange(7.), np.arange(7.), indexing="ij")
    >>> blob = np.exp(-((d - 2.2) ** 2 + (y - 3.4) ** 2 + (x - 2.7) ** 2) / 4.0)[None, None]
    >>> coords, vals = iterative_quad_interp3d(blob, strict_maxima_bonus=0.0)
    >>> coords[0, 0, :, 2, 3, 3].round(2)
    array([2.2, 2.7, 3.4])
    """
    func = "iterative_quad_interp3d"
    xp, input = _check(
        func, input, precomputed_nms_mask, n_iters, strict_maxima_bonus, max_subpixel_shift, allow_scale_steps
    )
    if max_candidates is not None:
        max_candidates = v.check_int(func, "max_candidates", max_candidates, minimum=0)
    return hooks_for(xp).blockwise(
        func,
        _ITERATIVE_BLOCKS,
        input,
        precomputed_nms_mask,
        xp=xp,
        n_iters=n_iters,
        bonus=float(strict_maxima_bonus),
        threshold=float(max_subpixel_shift),
        allow_scale_steps=allow_scale_steps,
        max_candidates=max_candidates,
        origin=(0, 0, 0),
    )


def _iterative_kernel(
    input: Array,
    mask: Array | None,
    *,
    n_iters: int,
    bonus: float,
    threshold: float,
    allow_scale_steps: bool,
    max_candidates: int | None,
    origin: tuple[int, int, int],
    xp: Any,
) -> tuple[Array, Array]:
    """:func:`iterative_quad_interp3d` on a whole array, or on one block whose voxel 0 sits at ``origin``."""
    hooks = hooks_for(xp)
    if min(input.shape[2:]) < 3 or math.prod(input.shape) == 0:
        return _unrefined(input, origin, xp=xp)
    mask = _nms_mask(input, mask, hooks, xp=xp)
    if n_iters == 0:
        return _no_iterations(input, mask, bonus, origin, xp=xp)
    if not hooks.supports_dynamic_shapes(input):
        if max_candidates is not None:
            mask = _top_per_image(input, mask, max_candidates, xp=xp)
        return _static_path(
            input, mask, n_iters, bonus, threshold, allow_scale_steps, None, hooks, origin, xp=xp
        )
    return _sparse_path(
        input, mask, n_iters, bonus, threshold, allow_scale_steps, max_candidates, hooks, origin, xp=xp
    )


def _top_per_image(input: Array, mask: Array, per_image: int, *, xp: Any) -> Array:
    """The mask of each image's ``per_image`` largest maxima (ties: the earlier voxel), static-shaped."""
    b, ch = input.shape[:2]
    volume = math.prod(input.shape[2:])
    if b * ch == 0 or per_image >= volume:  # nothing to choose (Dask cannot reshape an empty batch)
        return mask
    flat = (b * ch, volume)
    keep = top_k_mask(xp.reshape(input, flat), xp.reshape(mask, flat), per_image, xp=xp)
    return xp.reshape(keep, tuple(input.shape))


def _lazy_candidates(
    input: Array, mask: Array | None, *, xp: Any, **params: Any
) -> tuple[tuple[Array, Array | None], dict[str, Any]]:
    """``max_candidates`` chosen over whole images before a chunked run, so blocks refine independently."""
    k = params["max_candidates"]
    if k is None or params["n_iters"] == 0 or min(input.shape[2:]) < 3:
        return (input, mask), params
    params = {**params, "max_candidates": None}
    if mask is None:
        mask = nms3d(input, (3, 3, 3), mask_only=True)
    return (input, _top_per_image(input, mask, k, xp=xp)), params


def _quad_outputs(ndim: int, params: dict[str, Any]) -> tuple[Output, ...]:
    return Output(new=(3,), at=2), Output()


# Blockwise: a keypoint moves at most one voxel per iteration and at most ``n_iters - 1`` times;
# each fit reads the 3x3x3 neighbourhood of its voxel and (conv path) the NMS mask within
# ``dilation_radius`` of it, and the mask at a voxel needs its own 3x3x3 neighbourhood: so a block
# extended by ``n_iters + radius`` sees every value a keypoint of its core can read, and its borders
# (where the rule would reject a move) are never reached from the core. Blocks of at least 3 voxels a
# side, so only volumes shorter than 3 are returned unrefined.
_CONV_QUAD_BLOCKS = Blockwise(
    _conv_quad_kernel,
    halo=lambda params: (max(params["n_iters"] + params["radius"], 1),) * 3,
    origin=True,
    minimum=3,
    outputs=_quad_outputs,
)
_ITERATIVE_BLOCKS = Blockwise(
    _iterative_kernel,
    halo=lambda params: (max(params["n_iters"], 1),) * 3,
    origin=True,
    minimum=3,
    outputs=_quad_outputs,
    prepare=_lazy_candidates,
)
