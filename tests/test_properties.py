"""Property tests (hypothesis, NumPy, small shapes): symmetries, brute-force references, agreement
of the two quadratic-refinement paths, normalisation. Integer-valued inputs bring ties.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import subpix_xp as sx

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Elements: small integers (ties and plateaus) or arbitrary reals.
TIES = st.integers(-3, 3).map(float)
REALS = st.floats(-50, 50, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def maps(draw, ndim, min_side=1, max_side=6, elements=None, max_batch=2):
    """A ``(B, C, *spatial)`` float64 array; ``ndim`` spatial axes."""
    lead = (draw(st.integers(1, max_batch)), draw(st.integers(1, 2)))
    spatial = tuple(draw(st.integers(min_side, max_side)) for _ in range(ndim))
    if elements is None:
        elements = draw(st.sampled_from(["ties", "reals", "mixed"]))
        elements = {"ties": TIES, "reals": REALS, "mixed": st.one_of(TIES, REALS)}[elements]
    return draw(hnp.arrays(np.float64, lead + spatial, elements=elements))


@st.composite
def smooth_volumes(draw, max_side=7):
    """A sum of a few Gaussian blobs at fractional centres: maxima that the quadratic fit refines."""
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    d, h, w = draw(st.integers(3, 5)), draw(st.integers(3, max_side)), draw(st.integers(3, max_side))
    dd, yy, xx = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros((b, c, d, h, w))
    for i in range(b * c):
        for _ in range(draw(st.integers(1, 3))):
            centre = [draw(st.floats(-0.5, n - 0.5)) for n in (d, h, w)]
            widths = [draw(st.floats(0.5, 3.0)) for _ in range(3)]
            amp = draw(st.floats(-2.0, 2.0))
            out.reshape(b * c, d, h, w)[i] += amp * np.exp(
                -sum((g - m) ** 2 / s for g, m, s in zip((dd, yy, xx), centre, widths))
            )
    return out


@st.composite
def bowls(draw, max_side=7):
    """Exact quadratics, so a fit anywhere points straight at the vertex: started off-peak (through a
    precomputed mask), keypoints walk several voxels, which is what tells the two paths apart."""
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    d, h, w = draw(st.integers(3, 6)), draw(st.integers(3, max_side)), draw(st.integers(3, max_side))
    dd, yy, xx = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros((b, c, d, h, w))
    for i in range(b * c):
        offsets = [
            dd - draw(st.floats(-1.0, d)),
            yy - draw(st.floats(-1.0, h)),
            xx - draw(st.floats(-1.0, w)),
        ]
        curvatures = [draw(st.floats(0.2, 2.0)) for _ in range(3)]
        cross = draw(st.floats(-0.1, 0.1))
        out.reshape(b * c, d, h, w)[i] = -(
            sum(k * o * o for k, o in zip(curvatures, offsets)) + cross * offsets[1] * offsets[2]
        )
    return out


VOLUMES = st.one_of(smooth_volumes(), maps(3, min_side=3, max_side=6), bowls())


@st.composite
def volumes_and_masks(draw):
    """A volume, and either no mask (internal NMS) or a sparse precomputed mask."""
    x = draw(VOLUMES)
    if draw(st.booleans()):
        return x, None
    mask = draw(hnp.arrays(np.bool_, x.shape, elements=st.integers(0, 11).map(lambda v: v == 0)))
    return x, mask


def odd_kernels(ndim):
    return st.tuples(*[st.sampled_from([1, 3, 5]) for _ in range(ndim)])


def any_kernels(ndim):
    return st.tuples(*[st.integers(1, 4) for _ in range(ndim)])


# --------------------------------------------------------------------------------------------
# NMS: brute-force reference.


def brute_force_nms(x: np.ndarray, kernel: tuple[int, ...]) -> np.ndarray:
    """Strict maxima: a position whose full window (``(k-1)//2`` before, ``k//2`` after) fits inside
    and whose value is greater than every other value of the window."""
    n = len(kernel)
    spatial = x.shape[-n:]
    out = np.zeros(x.shape, dtype=bool)
    for lead in itertools.product(*(range(s) for s in x.shape[:-n])):
        for pos in itertools.product(*(range(s) for s in spatial)):
            lo = [p - (k - 1) // 2 for p, k in zip(pos, kernel)]
            hi = [p + k // 2 for p, k in zip(pos, kernel)]
            if any(a < 0 for a in lo) or any(b >= s for b, s in zip(hi, spatial)):
                continue
            centre = x[lead + pos]
            ok = True
            for q in itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi))):
                if q != pos and not centre > x[lead + q]:
                    ok = False
                    break
            out[lead + pos] = ok
    return out


DTYPES = ["float64", "float32", "int64", "int8", "uint8", "bool"]


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bool":
        return x > 0
    if dtype == "uint8":
        return (np.abs(np.round(x)) % 200).astype(np.uint8)
    if dtype.startswith("int"):
        return np.clip(np.round(x), -100, 100).astype(dtype)
    return x.astype(dtype)


@SETTINGS
@given(x=maps(2, max_side=7), kernel=any_kernels(2), dtype=st.sampled_from(DTYPES))
def test_nms2d_matches_brute_force(x, kernel, dtype):
    x = _cast(x, dtype)
    mask = sx.nms2d(x, kernel, mask_only=True)
    np.testing.assert_array_equal(mask, brute_force_nms(x, kernel))
    values = sx.nms2d(x, kernel)
    assert values.dtype == x.dtype
    np.testing.assert_array_equal(values, np.where(mask, x, np.zeros_like(x)))


@SETTINGS
@given(x=maps(3, max_side=5), kernel=any_kernels(3), dtype=st.sampled_from(DTYPES))
def test_nms3d_matches_brute_force(x, kernel, dtype):
    x = _cast(x, dtype)
    mask = sx.nms3d(x, kernel, mask_only=True)
    np.testing.assert_array_equal(mask, brute_force_nms(x, kernel))
    np.testing.assert_array_equal(sx.nms3d(x, kernel), np.where(mask, x, np.zeros_like(x)))


@FEW
@given(x=maps(2, min_side=2, max_side=6), kernel=any_kernels(2), nan_at=st.integers(0, 1000))
def test_nms2d_with_nan_matches_brute_force(x, kernel, nan_at):
    x = x.copy()
    x.reshape(-1)[nan_at % x.size] = np.nan
    np.testing.assert_array_equal(sx.nms2d(x, kernel, True), brute_force_nms(x, kernel))


@SETTINGS
@given(x=maps(3, max_side=5), dtype=st.sampled_from(["float64", "float32", "int64", "int16"]))
def test_nms3d_minmax_is_max_and_min_nms(x, dtype):
    x = _cast(x, dtype)
    max_mask, min_mask = sx.nms3d_minmax(x)
    np.testing.assert_array_equal(max_mask, sx.nms3d(x, (3, 3, 3), True))
    np.testing.assert_array_equal(min_mask, sx.nms3d(-x, (3, 3, 3), True))


@FEW
@given(x=maps(3, max_side=5), dtype=st.sampled_from(["uint8", "bool", "int8"]))
def test_nms3d_minmax_unsigned_and_bool(x, dtype):
    # No negation available (or it overflows): the minima are the maxima of the order-reversed values.
    x = _cast(x, dtype)
    if dtype == "int8":
        x = x.copy()
        x.reshape(-1)[0] = -128  # -(-128) overflows in int8
    max_mask, min_mask = sx.nms3d_minmax(x)
    reversed_order = -x.astype(np.int64)
    np.testing.assert_array_equal(max_mask, brute_force_nms(x, (3, 3, 3)))
    np.testing.assert_array_equal(min_mask, brute_force_nms(reversed_order, (3, 3, 3)))


# --------------------------------------------------------------------------------------------
# NMS symmetries (odd kernels: a window is symmetric about its centre).


@SETTINGS
@given(x=maps(2, max_side=7), kernel=odd_kernels(2), axis=st.sampled_from([-1, -2]))
def test_nms2d_flip_and_transpose(x, kernel, axis):
    mask = sx.nms2d(x, kernel, True)
    np.testing.assert_array_equal(sx.nms2d(np.flip(x, axis), kernel, True), np.flip(mask, axis))
    transposed = sx.nms2d(np.swapaxes(x, -1, -2), kernel[::-1], True)
    np.testing.assert_array_equal(transposed, np.swapaxes(mask, -1, -2))


@SETTINGS
@given(
    x=maps(3, max_side=5),
    kernel=odd_kernels(3),
    axis=st.sampled_from([-1, -2, -3]),
    perm=st.permutations([0, 1, 2]),
)
def test_nms3d_flip_and_permute(x, kernel, axis, perm):
    mask = sx.nms3d(x, kernel, True)
    np.testing.assert_array_equal(sx.nms3d(np.flip(x, axis), kernel, True), np.flip(mask, axis))
    axes = (0, 1, *(2 + p for p in perm))
    permuted = sx.nms3d(np.transpose(x, axes), tuple(kernel[p] for p in perm), True)
    np.testing.assert_array_equal(permuted, np.transpose(mask, axes))


# --------------------------------------------------------------------------------------------
# Soft-argmax symmetries.

ATOL = 1e-9


@SETTINGS
@given(x=maps(2, max_side=7), temperature=st.floats(0.05, 20), normalized=st.booleans())
def test_spatial_soft_argmax2d_flip_and_transpose(x, temperature, normalized):
    _, _, h, w = x.shape
    xy = sx.spatial_soft_argmax2d(x, temperature, normalized)

    def mirror(c, n):
        return -c if normalized else (n - 1) - c

    flipped_w = sx.spatial_soft_argmax2d(np.flip(x, -1), temperature, normalized)
    np.testing.assert_allclose(flipped_w[..., 0], mirror(xy[..., 0], w), atol=ATOL)
    np.testing.assert_allclose(flipped_w[..., 1], xy[..., 1], atol=ATOL)
    flipped_h = sx.spatial_soft_argmax2d(np.flip(x, -2), temperature, normalized)
    np.testing.assert_allclose(flipped_h[..., 0], xy[..., 0], atol=ATOL)
    np.testing.assert_allclose(flipped_h[..., 1], mirror(xy[..., 1], h), atol=ATOL)
    transposed = sx.spatial_soft_argmax2d(np.swapaxes(x, -1, -2), temperature, normalized)
    np.testing.assert_allclose(transposed, xy[..., ::-1], atol=ATOL)


@st.composite
def window_geometry(draw, ndim):
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    return kernel, padding


@SETTINGS
@given(
    x=maps(2, min_side=4, max_side=7),
    geometry=window_geometry(2),
    temperature=st.floats(0.1, 10),
    normalized=st.booleans(),
)
def test_conv_soft_argmax2d_flip_and_transpose(x, geometry, temperature, normalized):
    """Stride 1: flipping the map flips the window grid, for odd and even kernels alike."""
    kernel, padding = geometry
    _, _, h, w = x.shape

    def run(a, k, p):
        return sx.conv_soft_argmax2d(a, k, (1, 1), p, temperature, normalized, output_value=True)

    coords, values = run(x, kernel, padding)

    def mirror(c, n):
        return -c if normalized else (n - 1) - c

    c_w, v_w = run(np.flip(x, -1), kernel, padding)
    np.testing.assert_allclose(np.flip(c_w[:, :, 0], -1), mirror(coords[:, :, 0], w), atol=ATOL)
    np.testing.assert_allclose(np.flip(c_w[:, :, 1], -1), coords[:, :, 1], atol=ATOL)
    np.testing.assert_allclose(np.flip(v_w, -1), values, atol=ATOL, rtol=1e-12)
    c_h, v_h = run(np.flip(x, -2), kernel, padding)
    np.testing.assert_allclose(np.flip(c_h[:, :, 0], -2), coords[:, :, 0], atol=ATOL)
    np.testing.assert_allclose(np.flip(c_h[:, :, 1], -2), mirror(coords[:, :, 1], h), atol=ATOL)
    np.testing.assert_allclose(np.flip(v_h, -2), values, atol=ATOL, rtol=1e-12)
    c_t, v_t = run(np.swapaxes(x, -1, -2), kernel[::-1], padding[::-1])
    np.testing.assert_allclose(np.swapaxes(c_t, -1, -2), coords[:, :, ::-1], atol=ATOL)
    np.testing.assert_allclose(np.swapaxes(v_t, -1, -2), values, atol=ATOL, rtol=1e-12)


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    geometry=window_geometry(2),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    level=TIES,
)
def test_conv_soft_argmax2d_flat_window_gives_its_centroid(shape, geometry, stride, level):
    """All ties: every in-bounds position of a window weighs the same; padding weighs nothing."""
    kernel, padding = geometry
    if any(n + 2 * p < k for n, p, k in zip(shape, padding, kernel)):
        return
    x = np.full((1, 1, *shape), level)
    coords, values = sx.conv_soft_argmax2d(
        x, kernel, stride, padding, normalized_coordinates=False, output_value=True
    )
    for oy, ox in itertools.product(*(range(n) for n in values.shape[2:])):
        ys = [
            q
            for q in range(oy * stride[0] - padding[0], oy * stride[0] - padding[0] + kernel[0])
            if 0 <= q < shape[0]
        ]
        xs = [
            q
            for q in range(ox * stride[1] - padding[1], ox * stride[1] - padding[1] + kernel[1])
            if 0 <= q < shape[1]
        ]
        np.testing.assert_allclose(coords[0, 0, :, oy, ox], [np.mean(xs), np.mean(ys)], atol=ATOL)
        np.testing.assert_allclose(values[0, 0, oy, ox], level, atol=ATOL)


# --------------------------------------------------------------------------------------------
# The two quadratic-refinement paths.


def _grid(shape):
    d, h, w = shape[2:]
    gd, gy, gx = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    return np.broadcast_to(np.stack([gd, gx, gy]).astype(np.float64), (*shape[:2], 3, d, h, w))


QUAD_PARAMS = {
    "n_iters": st.integers(1, 5),
    "strict_maxima_bonus": st.sampled_from([0.0, 10.0, 0.25]),
    "max_subpixel_shift": st.sampled_from([0.6, 0.5, 0.3, 1.0]),
    "allow_scale_steps": st.booleans(),
}


def _covering_radius(n_iters, mask):
    """The smallest ``dilation_radius`` that never cuts a path (the rule of ``_quad_interp._reach``).

    A keypoint's fits are read at most ``n_iters - 1`` moves from its maximum, and every fit is read
    at the keypoint's interior-clamped voxel: a maximum on the border (possible with a precomputed
    mask) reads its first fit one voxel away, so it needs a radius of at least 1 (kornia 0.9.0's
    rule too: the parity tests hold the two bit for bit).
    """
    return n_iters - 1 if mask is None or not _on_border(mask).any() else max(n_iters - 1, 1)


def _depth_border_case():
    """The case CI once drew: a precomputed maximum on the last depth slice, no scale steps (so the
    border voxel is not rejected), ``n_iters`` 1; its fit, read at depth 2, puts it at 3.03."""
    d, y, x = np.meshgrid(np.arange(4.0), np.arange(5.0), np.arange(5.0), indexing="ij")
    vol = -((d - 2.03) ** 2 + (y - 2.2) ** 2 + 0.5 * (x - 1.9) ** 2)[None, None]
    mask = np.zeros(vol.shape, bool)
    mask[0, 0, 3, 2, 2] = True
    return vol, mask


@SETTINGS
@given(data=volumes_and_masks(), extra=st.integers(-1, 2), **QUAD_PARAMS)
@example(
    data=_depth_border_case(),
    extra=-1,
    n_iters=1,
    strict_maxima_bonus=0.0,
    max_subpixel_shift=0.6,
    allow_scale_steps=False,
)
def test_conv_equals_iterative_when_radius_covers_the_path(
    data, extra, n_iters, strict_maxima_bonus, max_subpixel_shift, allow_scale_steps
):
    """With a dilation radius of at least :func:`_covering_radius` (``n_iters - 1``, and at least 1
    when a precomputed maximum lies on the border) no path is cut: both paths agree exactly."""
    x, mask = data
    radius = max(_covering_radius(n_iters, mask), n_iters + extra)
    kw = {
        "n_iters": n_iters,
        "strict_maxima_bonus": strict_maxima_bonus,
        "precomputed_nms_mask": mask,
        "max_subpixel_shift": max_subpixel_shift,
        "allow_scale_steps": allow_scale_steps,
    }
    c_conv, v_conv = sx.conv_quad_interp3d(x, dilation_radius=radius, **kw)
    c_iter, v_iter = sx.iterative_quad_interp3d(x, **kw)
    np.testing.assert_array_equal(c_conv, c_iter)
    np.testing.assert_array_equal(v_conv, v_iter)


def test_a_border_maximum_needs_radius_one():
    """The rule behind :func:`_covering_radius`: radius 0 rejects the depth-border keypoint (grid
    coordinates), radius 1 refines it as the iterative path does."""
    x, mask = _depth_border_case()
    kw = {"n_iters": 1, "strict_maxima_bonus": 0.0, "precomputed_nms_mask": mask, "allow_scale_steps": False}
    c_iter, _ = sx.iterative_quad_interp3d(x, **kw)
    np.testing.assert_allclose(c_iter[0, 0, :, 3, 2, 2], [3.03, 1.9, 2.2], atol=1e-9)
    c0, _ = sx.conv_quad_interp3d(x, dilation_radius=0, **kw)
    np.testing.assert_array_equal(c0[0, 0, :, 3, 2, 2], [3.0, 2.0, 2.0])
    c1, _ = sx.conv_quad_interp3d(x, dilation_radius=1, **kw)
    np.testing.assert_array_equal(c1, c_iter)


@SETTINGS
@given(data=volumes_and_masks(), radius=st.integers(0, 2), **QUAD_PARAMS)
def test_conv_is_iterative_or_rejected(
    data, radius, n_iters, strict_maxima_bonus, max_subpixel_shift, allow_scale_steps
):
    """With any radius, each conv result is the iterative one, or a rejection (grid coordinates and
    input value) of a keypoint that left the voxels precomputed for the radius."""
    x, mask = data
    kw = {
        "n_iters": n_iters,
        "strict_maxima_bonus": strict_maxima_bonus,
        "max_subpixel_shift": max_subpixel_shift,
        "allow_scale_steps": allow_scale_steps,
    }
    c_conv, v_conv = sx.conv_quad_interp3d(x, dilation_radius=radius, precomputed_nms_mask=mask, **kw)
    c_iter, v_iter = sx.iterative_quad_interp3d(x, precomputed_nms_mask=mask, **kw)
    same = (c_conv == c_iter).all(axis=2) & (v_conv == v_iter)
    rejected = (c_conv == _grid(x.shape)).all(axis=2) & (v_conv == x)
    assert (same | rejected).all(), np.argwhere(~(same | rejected))[:5].tolist()
    if radius >= _covering_radius(n_iters, mask):
        assert same.all()


def _on_border(mask):
    inner = np.zeros(mask.shape, bool)
    inner[..., 1:-1, 1:-1, 1:-1] = True
    return mask & ~inner


@FEW
@given(x=VOLUMES, n_iters=st.integers(1, 4), per_image=st.integers(0, 4))
def test_max_candidates_refines_the_top_maxima_of_each_image(x, n_iters, per_image):
    """Positions refined with ``max_candidates`` are refined as without it; the others are
    unrefined; each image keeps its own top ``per_image`` maxima (ties: the earlier voxel)."""
    kw = {"n_iters": n_iters, "strict_maxima_bonus": 0.0}
    c_all, v_all = sx.iterative_quad_interp3d(x, **kw)
    c_top, v_top = sx.iterative_quad_interp3d(x, max_candidates=per_image, **kw)
    mask = sx.nms3d(x, (3, 3, 3), True) if min(x.shape[2:]) >= 3 else np.zeros(x.shape, bool)
    b, c = x.shape[:2]
    flat_x, flat_mask = x.reshape(b * c, -1), mask.reshape(b * c, -1)
    chosen = np.zeros_like(flat_mask)
    for i in range(b * c):
        idx = np.flatnonzero(flat_mask[i])
        order = idx[np.argsort(-flat_x[i, idx], kind="stable")][:per_image]
        chosen[i, order] = True
    chosen = chosen.reshape(x.shape)
    np.testing.assert_array_equal(v_top[chosen], v_all[chosen])
    np.testing.assert_array_equal(np.moveaxis(c_top, 2, -1)[chosen], np.moveaxis(c_all, 2, -1)[chosen])
    np.testing.assert_array_equal(v_top[~chosen], x[~chosen])
    np.testing.assert_array_equal(
        np.moveaxis(c_top, 2, -1)[~chosen], np.moveaxis(_grid(x.shape), 2, -1)[~chosen]
    )


@FEW
@given(x=VOLUMES, n_iters=st.integers(1, 4), radius=st.integers(0, 2))
def test_quad_interp_outputs_are_finite_and_bounded(x, n_iters, radius):
    """Refined coordinates stay inside the volume, within 1.5 voxels of an interior voxel."""
    for coords, values in (
        sx.conv_quad_interp3d(x, n_iters=n_iters, dilation_radius=radius),
        sx.iterative_quad_interp3d(x, n_iters=n_iters),
    ):
        assert np.isfinite(coords).all() and np.isfinite(values).all()
        size = np.array(x.shape[2:], dtype=np.float64)[[0, 2, 1]].reshape(1, 1, 3, 1, 1, 1)
        assert (coords >= -0.5).all() and (coords <= size - 0.5).all()


# --------------------------------------------------------------------------------------------
# Normalisation.


@SETTINGS
@given(
    x=maps(2, max_side=8, elements=st.one_of(TIES, st.floats(-1e3, 1e3))),
    temperature=st.one_of(st.none(), st.floats(0.01, 100)),
)
def test_spatial_softmax2d_is_a_distribution(x, temperature):
    p = sx.spatial_softmax2d(x, temperature)
    assert p.shape == x.shape
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=(-1, -2)), 1.0, rtol=0, atol=1e-12)
    # Ties get equal probability; the order of the values is kept.
    flat_x, flat_p = x.reshape(x.shape[0], x.shape[1], -1), p.reshape(x.shape[0], x.shape[1], -1)
    i, j = np.argmax(flat_x, -1), np.argmin(flat_x, -1)
    assert (
        np.take_along_axis(flat_p, i[..., None], -1) >= np.take_along_axis(flat_p, j[..., None], -1)
    ).all()


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    level=st.one_of(TIES, REALS),
    normalized=st.booleans(),
)
def test_spatial_soft_argmax2d_of_a_flat_map_is_its_centre(shape, level, normalized):
    h, w = shape
    xy = sx.spatial_soft_argmax2d(np.full((1, 1, h, w), level), None, normalized)
    expected = [0.0, 0.0] if normalized else [(w - 1) / 2, (h - 1) / 2]
    np.testing.assert_allclose(xy[0, 0], expected, atol=ATOL)


@SETTINGS
@given(
    mean=hnp.arrays(np.float64, (3, 2), elements=st.floats(-1, 1)),
    std=hnp.arrays(np.float64, (3, 2), elements=st.floats(0.05, 2)),
    size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
)
def test_render_gaussian2d_is_a_distribution_and_symmetric(mean, std, size):
    heat = sx.render_gaussian2d(mean, std, size)
    assert heat.shape == (3, *size)
    np.testing.assert_allclose(heat.sum(axis=(-1, -2)), 1.0, atol=1e-12)
    # Mirroring the mean in x (normalised: x -> -x) mirrors the image.
    mirrored = sx.render_gaussian2d(mean * np.array([-1.0, 1.0]), std, size)
    np.testing.assert_allclose(mirrored, np.flip(heat, -1), atol=1e-12)


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_integer_plateau_is_suppressed(dtype):
    # A deterministic tie case on top of the generated ones: a 2x2 plateau and an isolated peak.
    x = np.zeros((1, 1, 6, 6), dtype=dtype)
    x[0, 0, 1:3, 1:3] = 1
    x[0, 0, 4, 4] = 1
    mask = sx.nms2d(x, (3, 3), True)
    assert mask[0, 0, 4, 4] and mask.sum() == 1
