"""Known answers: hand-made inputs whose correct outputs follow from the definitions (docs/semantics.md).

Every test runs on each selected backend of ``xp_backend`` except JAX (see the ``backend`` fixture)
in float32 and float64. The expected values are derived here from first principles, never taken from
our own output: the peak of a sampled Gaussian for the quadratic refiners, the definition summed in
float64 plus an aliasing bound for the soft-argmaxes, exact indices for one-hot maps, and the
corner-aligned normalisation ``x_n = 2 x / (W - 1) - 1`` (0 on an axis of length 1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import ATOL

import subpix_xp as S
from subpix_xp.testing import to_numpy


@pytest.fixture
def backend(xp_backend):
    """``xp_backend`` without JAX: eager JAX compiles every primitive op for every new shape, which
    takes these cases from seconds to minutes; JAX is left to the cross-backend conformance suite."""
    if xp_backend.name == "jax":
        pytest.skip("jax: eager op-by-op compilation makes these known-answer cases take minutes")
    return xp_backend


def arr(backend, a, dtype_name: str):
    return backend.asarray(np.asarray(a, dtype=dtype_name))


def gaussian(shape: tuple[int, ...], centre, sigma) -> np.ndarray:
    """``exp(-sum_i (t_i - c_i)^2 / (2 s_i^2))`` on the index grid of ``shape`` (axis order of ``shape``)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(shape),))
    return np.exp(-sum((g - c) ** 2 / (2.0 * s * s) for g, c, s in zip(grids, centre, sigma)))


def normalize(p, n: int):
    return np.zeros_like(p) if n == 1 else 2.0 * p / (n - 1) - 1.0


# ---------------------------------------------------------------------------------------------
# Quadratic refinement of Gaussian blobs in a scale-space-like volume.
#
# A blob exp(-|t - mu|^2 / (2 * 2.5^2)) has one strict 3x3x3 maximum, at the voxel nearest mu, and
# the quadratic through its 3x3x3 central differences peaks within 0.05 voxel of mu: in 1-D the
# three-point fit of a Gaussian of sigma 2.5 is off by at most 0.008 (zero at fractional offsets 0
# and 0.5), and the cross terms of the 3-D fit add at most about 0.03 more, for any offset. The
# fitted peak value is within 0.005 of the amplitude 1. The grid quantisation alone is up to 0.5.

BLOB_SIGMA = 2.5
BLOB_VOLUME = (5, 14, 15)  # (D, H, W): depth is the scale axis
BLOBS = [  # (depth, y, x) of the true peak
    (2.0, 6.0, 7.0),
    (2.3, 5.45, 8.2),
    (1.55, 6.49, 6.51),  # fractional parts near 0.5 on every axis
    (2.45, 7.62, 5.38),
    (1.7, 6.3, 7.7),
    (2.52, 6.55, 7.47),
]


def _blob_volume(blobs) -> np.ndarray:
    """One blob per channel, ``(1, len(blobs), D, H, W)``."""
    return np.stack([gaussian(BLOB_VOLUME, mu, BLOB_SIGMA) for mu in blobs])[None]


def _nearest(mu) -> tuple[int, int, int]:
    return tuple(math.floor(m + 0.5) for m in mu)


def _grid_coords(shape):
    d, h, w = shape
    dd, hh, ww = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([dd, ww, hh]).astype(np.float64)  # (depth, x, y)


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
def test_quad_interp_recovers_gaussian_blobs(func, backend, dtype_name):
    x_np = _blob_volume(BLOBS)
    coords, values = getattr(S, func)(arr(backend, x_np, dtype_name))  # defaults: bonus 10, 5 iterations
    coords, values = to_numpy(coords), to_numpy(values)
    assert coords.shape == (1, len(BLOBS), 3, *BLOB_VOLUME) and values.shape == x_np.shape
    grid = _grid_coords(BLOB_VOLUME)
    for c, mu in enumerate(BLOBS):
        d, h, w = _nearest(mu)
        got = coords[0, c, :, d, h, w]
        want = np.array([mu[0], mu[2], mu[1]])  # (depth, x, y)
        assert np.abs(got - want).max() < 0.05, f"{func} blob {mu}: refined to {got}, want {want}"
        assert abs(values[0, c, d, h, w] - (1.0 + 10.0)) < 0.01, (
            f"{func} blob {mu}: value {values[0, c, d, h, w]}"
        )
        # every other voxel keeps its grid coordinates and its input value
        others = np.ones(BLOB_VOLUME, dtype=bool)
        others[d, h, w] = False
        np.testing.assert_array_equal(coords[0, c][:, others], grid[:, others])
        np.testing.assert_allclose(
            values[0, c][others], x_np[0, c][others].astype(dtype_name), rtol=0, atol=0
        )


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
def test_quad_interp_walks_to_the_peak(func, backend, dtype_name):
    """Started one and two voxels away from the peak (a precomputed mask), the fit walks there.

    At distance 1.2 or 2.2 along x the local fit asks for a shift above 0.6, so the centre steps
    towards the peak until the shift is small: the point is reported at its starting voxel with the
    peak's coordinates. Two steps leave ``dilation_radius=1``: the conv path rejects such a point
    (grid coordinates, input value) and takes it with ``dilation_radius=2``.
    """
    mu = (2.3, 6.4, 8.2)
    x_np = _blob_volume([mu, mu])
    d, h, w = _nearest(mu)
    mask = np.zeros(x_np.shape, dtype=bool)
    mask[0, 0, d, h, w - 1] = True  # one step away
    mask[0, 1, d, h, w - 2] = True  # two steps away
    extra = {"dilation_radius": 2} if func == "conv_quad_interp3d" else {}
    fn = getattr(S, func)
    coords, values = fn(
        arr(backend, x_np, dtype_name),
        strict_maxima_bonus=0.0,
        precomputed_nms_mask=backend.asarray(mask),
        **extra,
    )
    coords, values = to_numpy(coords), to_numpy(values)
    want = np.array([mu[0], mu[2], mu[1]])
    for c, start in ((0, w - 1), (1, w - 2)):
        got = coords[0, c, :, d, h, start]
        assert np.abs(got - want).max() < 0.05, f"{func} from x={start}: refined to {got}, want {want}"
        assert abs(values[0, c, d, h, start] - 1.0) < 0.01
    if func == "conv_quad_interp3d":
        coords, values = fn(
            arr(backend, x_np, dtype_name),
            strict_maxima_bonus=0.0,
            precomputed_nms_mask=backend.asarray(mask),
            dilation_radius=1,
        )
        coords, values = to_numpy(coords), to_numpy(values)
        assert np.abs(coords[0, 0, :, d, h, w - 1] - want).max() < 0.05  # one step: within radius 1
        np.testing.assert_array_equal(coords[0, 1, :, d, h, w - 2], [d, w - 2, h])  # two steps: rejected
        assert values[0, 1, d, h, w - 2] == x_np[0, 1, d, h, w - 2].astype(dtype_name)


def test_quad_interp_several_blobs_in_one_volume(backend, dtype_name):
    """Three well-separated blobs in one map are refined independently by both functions."""
    shape = (5, 20, 44)
    mus = [(2.2, 9.4, 8.6), (1.6, 10.45, 21.3), (2.49, 8.7, 34.52)]
    # separated by >= 12 voxels: a neighbour's tail adds < 1e-4 to any gradient
    x_np = sum(gaussian(shape, mu, BLOB_SIGMA) for mu in mus)[None, None]
    for func in (S.conv_quad_interp3d, S.iterative_quad_interp3d):
        coords, _ = func(arr(backend, x_np, dtype_name))
        coords = to_numpy(coords)
        for mu in mus:
            d, h, w = _nearest(mu)
            got = coords[0, 0, :, d, h, w]
            assert np.abs(got - np.array([mu[0], mu[2], mu[1]])).max() < 0.05, f"{func.__name__} {mu}: {got}"


# ---------------------------------------------------------------------------------------------
# Soft-argmaxes of a sharp Gaussian blob.
#
# The heatmap is A exp(-r^2 / (2 sigma^2)) with A / T = 50 and sigma = 5, so the softmax weights
# are exp(50 exp(-r^2 / 50)) ~ exp(50 - r^2 + r^4 / 100): a bell of variance about
# s^2 = sigma^2 T / A = 0.5, symmetric about the true centre. Its sampled mean is off the centre only
# by aliasing: 4 pi s^2 exp(-2 pi^2 s^2) = 3.3e-4 px for an exact Gaussian (Poisson summation), a
# small multiple of that with the r^4 tails; the rest of the map (relative weight ~e^-40 at 9 px)
# and the edges of 7-wide windows (~e^-10.8 at 3.5 px) add less than 1e-4 px. So the soft-argmaxes
# must land within SHARP_BOUND = 1e-3 px of the centre (the grid alone is up to 0.5 px off), and
# within ATOL of the bias computed by summing the definition over the map (or window) in float64.

SHARP_SIGMA, SHARP_T = 5.0, 0.02
SHARP_BOUND = 1e-3
CENTRES_2D = [(12.3, 10.7), (14.45, 12.0), (10.0, 9.25), (13.5, 14.5)]  # (x, y)
MAP_2D = (24, 28)


def _sharp_maps() -> np.ndarray:
    """``(1, len(CENTRES_2D), 24, 28)`` heatmaps, one Gaussian blob each."""
    return np.stack([gaussian(MAP_2D, (y, x), SHARP_SIGMA) for x, y in CENTRES_2D])[None]


def _soft_mean(h: np.ndarray, origin: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """The definition in float64: softmax(h / T)-weighted mean of the index grid (offset by ``origin``,
    in array axis order) and of h itself."""
    w = np.exp((h - h.max()) / SHARP_T)
    w /= w.sum()
    grids = np.meshgrid(*[np.arange(n) + o for n, o in zip(h.shape, origin)], indexing="ij")
    return np.array([(g * w).sum() for g in grids]), float((h * w).sum())


def test_spatial_soft_argmax2d_sharp_blob(backend, dtype_name):
    maps = _sharp_maps()
    x = arr(backend, maps, dtype_name)
    got = to_numpy(S.spatial_soft_argmax2d(x, SHARP_T, normalized_coordinates=False))[0]
    assert np.abs(got - np.array(CENTRES_2D)).max() <= SHARP_BOUND, got
    computed = np.array([_soft_mean(m, (0, 0))[0][::-1] for m in maps[0]])  # (y, x) -> (x, y)
    assert np.abs(computed - np.array(CENTRES_2D)).max() <= SHARP_BOUND  # the argument above holds
    np.testing.assert_allclose(got, computed, rtol=0, atol=ATOL[dtype_name])
    # the same through an array (0-d) temperature, in normalised coordinates
    got_n = to_numpy(S.spatial_soft_argmax2d(x, arr(backend, SHARP_T, dtype_name)))[0]
    want_n = np.stack([normalize(computed[:, 0], MAP_2D[1]), normalize(computed[:, 1], MAP_2D[0])], -1)
    np.testing.assert_allclose(got_n, want_n, rtol=0, atol=ATOL[dtype_name])


def test_conv_soft_argmax2d_sharp_blob(backend, dtype_name):
    maps = _sharp_maps()
    coords, values = S.conv_soft_argmax2d(
        arr(backend, maps, dtype_name), (7, 7), (1, 1), (3, 3), SHARP_T, False, output_value=True
    )
    coords, values = to_numpy(coords), to_numpy(values)
    assert coords.shape == (1, len(CENTRES_2D), 2, *MAP_2D) and values.shape == (1, len(CENTRES_2D), *MAP_2D)
    for n, (cx, cy) in enumerate(CENTRES_2D):
        # the window centred on the pixel nearest the centre (both of them at a tie) holds the bell
        # out to >= 3.5 px on every side
        for i, j in {(round(cy - 0.01), round(cx - 0.01)), (round(cy + 0.01), round(cx + 0.01))}:
            got = coords[0, n, :, i, j]
            assert np.abs(got - np.array([cx, cy])).max() <= SHARP_BOUND, (
                f"window ({i}, {j}) of {cx, cy}: {got}"
            )
            mean, value = _soft_mean(maps[0, n, i - 3 : i + 4, j - 3 : j + 4], (i - 3, j - 3))
            np.testing.assert_allclose(got, mean[::-1], rtol=0, atol=ATOL[dtype_name])
            # value: E[h] under the bell = A (1 - E[r^2] / (2 sigma^2)) = A - T to first order in 2-D;
            # the next orders ((T/A)^2, the r^4 tails) stay below 1e-3
            assert abs(values[0, n, i, j] - (1.0 - SHARP_T)) < 2e-3, f"value {values[0, n, i, j]}"
            assert abs(values[0, n, i, j] - value) <= 10 * ATOL[dtype_name]


def test_conv_soft_argmax3d_sharp_blob(backend, dtype_name):
    centre = (5.3, 6.45, 6.8)  # (depth, y, x)
    x_np = gaussian((11, 13, 14), centre, SHARP_SIGMA)[None, None]
    coords, values = S.conv_soft_argmax3d(
        arr(backend, x_np, dtype_name), (7, 7, 7), (1, 1, 1), (3, 3, 3), SHARP_T
    )
    coords, values = to_numpy(coords), to_numpy(values)
    assert coords.shape == (1, 1, 3, 11, 13, 14) and values.shape == (1, 1, 11, 13, 14)
    got = coords[0, 0, :, 5, 6, 7]
    assert np.abs(got - np.array([centre[0], centre[2], centre[1]])).max() <= SHARP_BOUND, got
    mean, value = _soft_mean(x_np[0, 0, 2:9, 3:10, 4:11], (2, 3, 4))
    np.testing.assert_allclose(got, mean[[0, 2, 1]], rtol=0, atol=ATOL[dtype_name])
    # value: A - (3/2) T to first order in 3-D; the next orders stay below 3e-3
    assert abs(values[0, 0, 5, 6, 7] - (1.0 - 1.5 * SHARP_T)) < 3e-3, values[0, 0, 5, 6, 7]
    assert abs(values[0, 0, 5, 6, 7] - value) <= 10 * ATOL[dtype_name]


# ---------------------------------------------------------------------------------------------
# One-hot maps: exact indices.

ONE_HOT_2D = [(0, 0), (3, 4), (5, 6), (2, 0), (0, 6), (4, 1)]  # (row, col) in a 6 x 7 map, corners included


def _one_hot_2d(value: float) -> np.ndarray:
    x = np.zeros((2, 3, 6, 7))
    for n, (i, j) in enumerate(ONE_HOT_2D):
        x[n // 3, n % 3, i, j] = value
    return x


def test_spatial_soft_argmax2d_one_hot(backend, dtype_name):
    """A high-contrast one-hot map: every other weight is e^-100, so the result is the index itself."""
    x = arr(backend, _one_hot_2d(100.0), dtype_name)
    want = np.array([[j, i] for i, j in ONE_HOT_2D], dtype=np.float64).reshape(2, 3, 2)
    np.testing.assert_allclose(
        to_numpy(S.spatial_soft_argmax2d(x, None, False)), want, rtol=0, atol=ATOL[dtype_name]
    )
    want_n = np.stack([normalize(want[..., 0], 7), normalize(want[..., 1], 6)], -1)
    np.testing.assert_allclose(to_numpy(S.spatial_soft_argmax2d(x)), want_n, rtol=0, atol=ATOL[dtype_name])


def test_spatial_expectation2d_one_hot(backend, dtype_name):
    x = arr(backend, _one_hot_2d(1.0), dtype_name)
    want = np.array([[j, i] for i, j in ONE_HOT_2D], dtype=np.float64).reshape(2, 3, 2)
    np.testing.assert_array_equal(to_numpy(S.spatial_expectation2d(x, False)), want)
    want_n = np.stack([normalize(want[..., 0], 7), normalize(want[..., 1], 6)], -1)
    np.testing.assert_allclose(
        to_numpy(S.spatial_expectation2d(x, True)), want_n, rtol=0, atol=ATOL[dtype_name]
    )
    # no renormalisation: a one-hot of mass 3 triples the coordinates
    np.testing.assert_array_equal(
        to_numpy(S.spatial_expectation2d(arr(backend, _one_hot_2d(3.0), dtype_name), False)), 3 * want
    )


def _fits(index, size, kernel) -> bool:
    """Whether a window (``(k - 1) // 2`` before, ``k // 2`` after) centred at ``index`` lies inside."""
    return all((k - 1) // 2 <= i <= n - 1 - k // 2 for i, n, k in zip(index, size, kernel))


@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (2, 2), (4, 3), (1, 1)])
def test_nms2d_one_hot(kernel, backend, dtype_name):
    x_np = _one_hot_2d(2.5)
    x = arr(backend, x_np, dtype_name)
    want = np.zeros(x_np.shape, dtype=bool)
    for n, (i, j) in enumerate(ONE_HOT_2D):
        want[n // 3, n % 3, i, j] = _fits((i, j), (6, 7), kernel)
    if kernel == (1, 1):
        want[:] = True  # a window of one: every position is its own strict maximum
    mask = S.nms2d(x, kernel, mask_only=True)
    np.testing.assert_array_equal(to_numpy(mask), want)
    np.testing.assert_array_equal(to_numpy(S.nms2d(x, kernel)), np.where(want, x_np, 0.0))


@pytest.mark.parametrize("kernel", [(3, 3, 3), (2, 3, 3), (1, 1, 1)])
def test_nms3d_one_hot(kernel, backend, dtype_name):
    size = (4, 5, 6)
    hots = [(1, 2, 3), (0, 2, 2), (3, 4, 5), (2, 1, 4)]
    x_np = np.zeros((1, len(hots), *size))
    for c, idx in enumerate(hots):
        x_np[(0, c, *idx)] = 1.5
    want = np.zeros(x_np.shape, dtype=bool)
    for c, idx in enumerate(hots):
        want[(0, c, *idx)] = _fits(idx, size, kernel)
    if kernel == (1, 1, 1):
        want[:] = True
    x = arr(backend, x_np, dtype_name)
    np.testing.assert_array_equal(to_numpy(S.nms3d(x, kernel, mask_only=True)), want)
    np.testing.assert_array_equal(to_numpy(S.nms3d(x, kernel)), np.where(want, x_np, 0.0))
    if kernel == (3, 3, 3):
        max_mask, min_mask = S.nms3d_minmax(x)
        np.testing.assert_array_equal(to_numpy(max_mask), want)
        assert not to_numpy(min_mask).any()  # zeros everywhere else: no strict minimum
        max_mask, min_mask = S.nms3d_minmax(arr(backend, -x_np, dtype_name))
        assert not to_numpy(max_mask).any()
        np.testing.assert_array_equal(to_numpy(min_mask), want)


# ---------------------------------------------------------------------------------------------
# render_gaussian2d.


def test_render_gaussian2d_peak_and_mass(backend, dtype_name):
    """At an integer mean the heatmap peaks there, is symmetric about it and sums to one."""
    size = (9, 11)
    means = np.array([[3.0, 2.0], [5.0, 4.0], [0.0, 8.0]])  # (x, y); the last sits on the border
    stds = np.array([[1.0, 0.7], [2.0, 1.5], [0.8, 0.8]])
    heat = to_numpy(
        S.render_gaussian2d(
            arr(backend, means, dtype_name),
            arr(backend, stds, dtype_name),
            size,
            normalized_coordinates=False,
        )
    )
    assert heat.shape == (3, *size)
    tol = 10 * ATOL[dtype_name]
    np.testing.assert_allclose(heat.sum(axis=(-2, -1)), 1.0, rtol=0, atol=tol)
    for n, (mx, my) in enumerate(means.astype(int)):
        assert np.unravel_index(np.argmax(heat[n]), size) == (my, mx)
    # (5, 4) is interior with room on both sides: mirror symmetry about the mean
    np.testing.assert_allclose(heat[1, 4, 1:10], heat[1, 4, 1:10][::-1], rtol=0, atol=tol)
    np.testing.assert_allclose(heat[1, 1:8, 5], heat[1, 1:8, 5][::-1], rtol=0, atol=tol)
    # normalised units give the same picture
    means_n = np.stack([normalize(means[:, 0], 11), normalize(means[:, 1], 9)], -1)
    stds_n = stds * np.array([2.0 / 10, 2.0 / 8])
    heat_n = to_numpy(
        S.render_gaussian2d(arr(backend, means_n, dtype_name), arr(backend, stds_n, dtype_name), size)
    )
    np.testing.assert_allclose(heat_n, heat, rtol=1e3 * ATOL[dtype_name], atol=tol)


def test_spatial_expectation_of_rendered_gaussian(backend, dtype_name):
    """The expectation of a rendered Gaussian is its mean.

    sigma >= 1.2 and every mean >= 8 sigma from the borders: the sampled mean's aliasing error
    (4 pi sigma^2 exp(-2 pi^2 sigma^2) < 1e-11) and the truncated tails (< 1e-12) are far below ATOL.
    """
    size = (24, 28)
    means = np.array([[[12.3, 10.7], [13.55, 11.2]], [[14.0, 12.49], [11.8, 13.05]]])  # (2, 2, 2): (x, y)
    stds = np.array([1.2, 1.35])
    heat = S.render_gaussian2d(arr(backend, means, dtype_name), arr(backend, stds, dtype_name), size, False)
    got = to_numpy(S.spatial_expectation2d(heat, False))
    np.testing.assert_allclose(got, means, rtol=0, atol=ATOL[dtype_name])
    means_n = np.stack([normalize(means[..., 0], 28), normalize(means[..., 1], 24)], -1)
    stds_n = stds * np.array([2.0 / 27, 2.0 / 23])
    heat_n = S.render_gaussian2d(arr(backend, means_n, dtype_name), arr(backend, stds_n, dtype_name), size)
    np.testing.assert_allclose(
        to_numpy(S.spatial_expectation2d(heat_n)), means_n, rtol=0, atol=ATOL[dtype_name]
    )


def test_render_gaussian2d_tails_flushed_to_zero(backend, dtype_name):
    """A sharp Gaussian's far tails are 0, never subnormal, and every value is within the floor
    ``sqrt(smallest_normal)`` of the exact (float64 closed-form, unflushed) heatmap."""
    size = (16, 40)
    means = np.array([[3.3, 7.6], [35.0, 0.2]])
    stds = np.array([[0.9, 1.1], [0.6, 0.5]])
    heat = to_numpy(
        S.render_gaussian2d(arr(backend, means, dtype_name), arr(backend, stds, dtype_name), size, False)
    )
    t_x, t_y = np.arange(size[1], dtype=np.float64), np.arange(size[0], dtype=np.float64)
    g_x = np.exp(-((t_x - means[:, :1]) ** 2) / (2 * stds[:, :1] ** 2))
    g_y = np.exp(-((t_y - means[:, 1:]) ** 2) / (2 * stds[:, 1:] ** 2))
    w_y, w_x = g_y / g_y.sum(-1, keepdims=True), g_x / g_x.sum(-1, keepdims=True)
    exact = w_y[:, :, None] * w_x[:, None, :]
    floor = math.sqrt(np.finfo(dtype_name).smallest_normal)
    finfo = np.finfo(heat.dtype)
    assert exact.min() < finfo.smallest_normal  # the closed form reaches the subnormal range
    assert not np.any((heat != 0) & (np.abs(heat) < finfo.smallest_normal)), "subnormal heatmap values"
    tiny_factor = (w_y[:, :, None] < floor / 2) | (w_x[:, None, :] < floor / 2)
    assert tiny_factor.any() and np.all(heat[tiny_factor] == 0)
    # exp(-z) in float carries a relative error of about z * eps, and z reaches ~44 above the floor
    np.testing.assert_allclose(heat, exact, rtol=100 * finfo.eps, atol=floor)


def test_spatial_softmax2d_seed_example(backend, dtype_name):
    """The seed page's example, and the temperature divides: softmax(x / T) = e^(x/T) / sum e^(x/T)."""
    x_np = np.array([[[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 2.0]]]])
    x = arr(backend, x_np, dtype_name)
    for t in (None, 2.0, 0.5):
        e = np.exp(x_np / (1.0 if t is None else t))
        want = e / e.sum()
        np.testing.assert_allclose(
            to_numpy(S.spatial_softmax2d(x, t)), want, rtol=10 * ATOL[dtype_name], atol=0
        )
    np.testing.assert_allclose(to_numpy(S.spatial_softmax2d(x))[0, 0, 2], [0.0585, 0.1589, 0.4319], atol=5e-5)


# ---------------------------------------------------------------------------------------------
# Normalised and pixel coordinates agree: x_n = 2 x / (W - 1) - 1, and 0 on an axis of length 1.

SPATIAL_SHAPES = [(2, 2, 5, 7), (1, 2, 1, 6), (1, 1, 4, 1), (1, 1, 1, 1)]


@pytest.mark.parametrize("shape", SPATIAL_SHAPES)
def test_normalized_pixel_consistency_spatial(shape, backend, dtype_name):
    rng = np.random.default_rng(sum(shape))
    x_np = rng.standard_normal(shape)
    h, w = shape[-2:]
    x = arr(backend, x_np, dtype_name)
    probs = S.spatial_softmax2d(x)
    for fn, inp in ((S.spatial_soft_argmax2d, x), (S.spatial_expectation2d, probs)):
        p, n = to_numpy(fn(inp, normalized_coordinates=False)), to_numpy(fn(inp, normalized_coordinates=True))
        want = np.stack(
            [normalize(p[..., 0].astype(np.float64), w), normalize(p[..., 1].astype(np.float64), h)], -1
        )
        np.testing.assert_allclose(n, want, rtol=0, atol=ATOL[dtype_name], err_msg=fn.__name__)
        if w == 1:
            assert (n[..., 0] == 0).all() and (p[..., 0] == 0).all()
        if h == 1:
            assert (n[..., 1] == 0).all() and (p[..., 1] == 0).all()


@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding"),
    [
        ((1, 2, 6, 7), (3, 3), (1, 1), (1, 1)),
        ((1, 1, 1, 6), (3, 2), (1, 2), (1, 1)),  # H = 1
        ((2, 1, 5, 1), (2, 3), (1, 1), (1, 1)),  # W = 1
        ((1, 2, 4, 5, 6), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
        ((1, 1, 1, 5, 4), (3, 2, 3), (1, 2, 1), (1, 1, 1)),  # D = 1
    ],
)
def test_normalized_pixel_consistency_conv(shape, kernel, stride, padding, backend, dtype_name):
    x_np = np.random.default_rng(len(shape) + shape[-1]).standard_normal(shape)
    x = arr(backend, x_np, dtype_name)
    fn = S.conv_soft_argmax2d if len(shape) == 4 else S.conv_soft_argmax3d
    p = to_numpy(fn(x, kernel, stride, padding, 0.7, False, output_value=False)).astype(np.float64)
    n = to_numpy(fn(x, kernel, stride, padding, 0.7, True, output_value=False))
    # coordinate channels: (x, y) in 2-D, (depth, x, y) in 3-D; their axis lengths in the input
    sizes = (shape[3], shape[2]) if len(shape) == 4 else (shape[2], shape[4], shape[3])
    for axis, size in enumerate(sizes):
        np.testing.assert_allclose(
            n[:, :, axis], normalize(p[:, :, axis], size), rtol=0, atol=ATOL[dtype_name]
        )
        if size == 1:
            assert (n[:, :, axis] == 0).all() and (p[:, :, axis] == 0).all()
