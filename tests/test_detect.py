"""detect_blobs: accuracy on the demo scene per backend, agreement with kornia's ScaleSpaceDetector,
the fixed-size result contract, the separable-filter hook and the scale pyramid."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import numpy as np
import pytest
from conftest import load_backend

import subpix_xp
import subpix_xp._detect as detect_module
from subpix_xp import Blobs, detect_blobs
from subpix_xp._pyramid import gaussian_kernel1d, kernel_size, scale_pyramid
from subpix_xp._scene import locking_statistics, match_blobs, render_scene
from subpix_xp.backends import GENERIC, _generic, hooks_for
from subpix_xp.cli import KORNIA_OPTIONS
from subpix_xp.testing import to_numpy

FIELDS = ("x", "y", "scale", "response", "bright", "valid")
# The documented configuration that reproduces kornia's ScaleSpaceDetector (the CLI's --kornia).
KORNIA = KORNIA_OPTIONS


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Two shared cores: torch's thread pool spins against other processes; one thread is faster here."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scene():
    return render_scene()


def _numpy_fields(blobs: Blobs) -> dict[str, np.ndarray]:
    return {name: to_numpy(getattr(blobs, name)) for name in FIELDS}


def _check_targets(scene, fields, what):
    match = match_blobs(scene, fields["x"][0], fields["y"][0], fields["response"][0], fields["scale"][0])
    n = scene.x.size
    err = match.error
    assert match.found.sum() >= 0.95 * n, f"{what}: found {match.found.sum()}/{n}"
    assert np.median(err) <= 0.05, f"{what}: median error {np.median(err):.4f} px"
    assert np.quantile(err, 0.95) <= 0.15, f"{what}: p95 error {np.quantile(err, 0.95):.4f} px"
    lock = locking_statistics(scene, match)
    # No pixel locking: the S-curve amplitude is within noise and tiny, the fractional parts uniform.
    assert abs(lock.s_curve) <= max(4 * lock.s_curve_se, 0.005), f"{what}: S-curve {lock.s_curve:+.4f}"
    assert lock.ks_p > 0.01, f"{what}: fractional parts not uniform, KS p = {lock.ks_p:.3g}, {lock.histogram}"
    return match


# ---------------------------------------------------------------------------------------------
# Accuracy on the demo scene


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_demo_scene_meets_targets(scene, name):
    backend = load_backend(name)
    n = scene.x.size
    blobs = detect_blobs(backend.asarray(scene.as_float()[None, None]), n)
    assert isinstance(blobs, Blobs)
    for field in FIELDS:
        value = getattr(blobs, field)
        assert type(value) is type(blobs.x), field  # the caller's library
        assert tuple(value.shape) == (1, n), field
    fields = _numpy_fields(blobs)
    assert (
        fields["x"].dtype == np.float32 and fields["valid"].dtype == bool and fields["bright"].dtype == bool
    )
    match = _check_targets(scene, fields, name)
    # Polarity: the detection that matched each blob has the blob's sign.
    bright = np.full(n, np.nan)
    for i in np.flatnonzero(match.found):
        j = np.argmin(
            np.hypot(fields["x"][0] - scene.x[i] - match.dx[i], fields["y"][0] - scene.y[i] - match.dy[i])
        )
        bright[i] = fields["bright"][0, j]
    assert np.array_equal(bright[match.found] == 1, scene.amplitude[match.found] > 0)


def test_numpy_and_torch_agree(scene):
    image = scene.as_float()[None, None]
    ref = _numpy_fields(detect_blobs(image, 100))
    got = _numpy_fields(detect_blobs(load_backend("torch").asarray(image), 100))
    np.testing.assert_array_equal(got["valid"], ref["valid"])
    np.testing.assert_array_equal(got["bright"], ref["bright"])
    for field in ("x", "y", "scale"):
        np.testing.assert_allclose(got[field], ref[field], atol=2e-3, err_msg=field)


def test_spatial_refit_is_what_removes_the_bias(scene):
    image = scene.as_float()[None, None]
    n = scene.x.size
    errors = {}
    for refit in (True, False):
        f = _numpy_fields(detect_blobs(image, n, spatial_refit=refit))
        errors[refit] = match_blobs(scene, f["x"][0], f["y"][0], f["response"][0]).error
    assert np.quantile(errors[True], 0.95) < np.quantile(errors[False], 0.95)
    assert np.median(errors[True]) < np.median(errors[False])


@pytest.mark.slow
def test_demo_scene_under_jax_jit():
    jax_backend = load_backend("jax")
    import jax

    small = render_scene(height=128, width=168, seed=3)  # 12 blobs, 3 octaves: a shorter compile
    n = small.x.size
    image = small.as_float()[None, None]
    run = jax.jit(lambda im: detect_blobs(im, n))
    fields = _numpy_fields(run(jax_backend.asarray(image)))
    _check_targets(small, fields, "jax.jit")
    ref = _numpy_fields(detect_blobs(image, n))
    np.testing.assert_array_equal(fields["valid"], ref["valid"])
    for field in ("x", "y", "scale"):
        np.testing.assert_allclose(fields[field], ref[field], atol=2e-3, err_msg=field)


# ---------------------------------------------------------------------------------------------
# Agreement with kornia 0.9.0


def _camera():
    pytest.importorskip("skimage", reason="skimage ships the camera photograph in its wheel")
    from skimage import data

    return data.camera().astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def kornia_camera():
    torch = pytest.importorskip("torch")
    kornia_feature = pytest.importorskip("kornia.feature")
    from kornia.feature.responses import BlobDoG
    from kornia.geometry.subpix import AdaptiveQuadInterp3d
    from kornia.geometry.transform import ScalePyramid

    image = _camera()
    # The seed page's configuration; kornia 0.9.0 ignores strict_maxima_bonus, so leaving it out of
    # AdaptiveQuadInterp3d() is the same as passing 0 (and avoids its deprecation warning).
    detector = kornia_feature.ScaleSpaceDetector(
        num_features=1000,
        resp_module=BlobDoG(),
        subpix_module=AdaptiveQuadInterp3d(),
        scale_pyr_module=ScalePyramid(3, 1.6, 32, double_image=True),
        scale_space_response=True,
        minima_are_also_good=True,
    )
    with torch.no_grad():
        lafs, responses = detector(torch.from_numpy(image)[None, None])
    scale = lafs[0, :, 0, 0].numpy() / detector.mr_size
    keep = scale > 0
    return image, {
        "x": lafs[0, :, 0, 2].numpy()[keep],
        "y": lafs[0, :, 1, 2].numpy()[keep],
        "scale": scale[keep],
        "response": responses[0].numpy()[keep],
    }


def _nearest(fields, ref):
    valid = fields["valid"][0]
    x, y = fields["x"][0][valid], fields["y"][0][valid]
    dist = np.hypot(ref["x"][:, None] - x[None], ref["y"][:, None] - y[None])
    j = np.argmin(dist, axis=1)
    return j, dist[np.arange(j.size), j], {k: fields[k][0][valid] for k in ("scale", "response")}


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_agrees_with_kornia_scale_space_detector(kornia_camera, name):
    image, ref = kornia_camera
    backend = load_backend(name)
    fields = _numpy_fields(detect_blobs(backend.asarray(image[None, None]), 1000, **KORNIA))
    j, dist, ours = _nearest(fields, ref)
    matched = dist < 0.5
    # Nearly every kornia keypoint is ours too (kornia ranks before its border test, kornia#5741,
    # so the weakest slots of the two lists may differ) ...
    assert matched.mean() >= 0.95, f"{name}: {matched.mean():.3f} of kornia's keypoints matched"
    # ... and matched keypoints sit at the same sub-pixel position, scale and response.
    assert dist[matched].max() <= 0.05, f"{name}: max distance {dist[matched].max():.4f} px"
    np.testing.assert_allclose(ours["scale"][j[matched]], ref["scale"][matched], rtol=1e-3)
    np.testing.assert_allclose(ours["response"][j[matched]], ref["response"][matched], rtol=1e-3, atol=1e-6)


def test_refit_stays_close_to_kornia(kornia_camera):
    image, ref = kornia_camera
    fields = _numpy_fields(detect_blobs(image[None, None], 1000, **{**KORNIA, "spatial_refit": True}))
    _, dist, _ = _nearest(fields, ref)
    matched = dist < 0.5
    assert matched.mean() >= 0.95
    assert np.median(dist[matched]) < 0.05  # the re-fit moves centres by the 3-D fit's bias only


# ---------------------------------------------------------------------------------------------
# The result contract


def _two_blobs(h=64, w=80, dtype=np.float64):
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.exp(-((xx - 25.3) ** 2 + (yy - 30.6) ** 2) / (2 * 3.0**2))
    image -= 0.7 * np.exp(-((xx - 55.8) ** 2 + (yy - 28.2) ** 2) / (2 * 2.0**2))
    return image.astype(dtype)


def test_fixed_size_padding_and_order():
    fields = _numpy_fields(detect_blobs(_two_blobs()[None, None], 400))
    valid = fields["valid"][0]
    count = int(valid.sum())
    assert 2 <= count < 400
    assert valid[:count].all() and not valid[count:].any(), "valid slots first"
    assert np.all(np.diff(fields["response"][0][:count]) <= 0), "strongest first"
    assert np.isnan(fields["x"][0][count:]).all() and np.isnan(fields["scale"][0][count:]).all()
    assert np.all(fields["response"][0][count:] == -np.inf) and not fields["bright"][0][count:].any()
    # The two blobs are the two strongest, at their centres, with their polarity.
    top = sorted(zip(fields["x"][0][:2], fields["y"][0][:2], fields["bright"][0][:2]))
    assert top[0][2] and not top[1][2]
    np.testing.assert_allclose([top[0][0], top[0][1]], [25.3, 30.6], atol=0.02)
    np.testing.assert_allclose([top[1][0], top[1][1]], [55.8, 28.2], atol=0.02)


def test_static_shape_selection_equals_sparse(monkeypatch, scene):
    image = scene.as_float()[None, None, :200, :240]
    sparse = _numpy_fields(detect_blobs(image, 60))
    static = dataclasses.replace(
        hooks_for(load_backend("numpy").xp),
        supports_dynamic_shapes=lambda x: False,
        prefers_static_shapes=lambda x: True,
    )
    monkeypatch.setattr(detect_module, "hooks_for", lambda xp: static)
    dense = _numpy_fields(detect_blobs(image, 60))
    for field in FIELDS:
        np.testing.assert_array_equal(dense[field], sparse[field], err_msg=field)


@pytest.mark.parametrize(
    "kwargs", [{}, {"minima_are_also_good": False}, {"threshold": 1e-4}, {"threshold": 0.05, "n_levels": 2}]
)
def test_sparse_extremum_search_equals_dense(monkeypatch, kwargs):
    """With a threshold, where shapes may depend on data, the extrema are searched sparsely at the
    voxels passing the pre-test; the static path runs the dense nms3d_minmax. Same keypoints, on a
    batch of real crops and a coarsely quantised one (plateaus, ties between neighbours)."""
    camera = _camera()
    crops = [camera[60:260, 120:360], camera[300:500, 200:440]]
    crops.append(np.round(crops[0] * 12.0) / 12.0)
    batch = np.stack(crops)[:, None]
    sparse = _numpy_fields(detect_blobs(batch, 80, **kwargs))
    static = dataclasses.replace(
        hooks_for(load_backend("numpy").xp),
        supports_dynamic_shapes=lambda x: False,
        prefers_static_shapes=lambda x: True,
    )
    monkeypatch.setattr(detect_module, "hooks_for", lambda xp: static)
    dense = _numpy_fields(detect_blobs(batch, 80, **kwargs))
    assert sparse["valid"].sum(axis=1).min() > 10
    for field in FIELDS:
        np.testing.assert_array_equal(dense[field], sparse[field], err_msg=field)


def test_batch_channels_and_minima_switch():
    a, b = _two_blobs(), _two_blobs()[:, ::-1].copy()
    batch = detect_blobs(np.stack([a, b])[:, None], 5)
    for i, image in enumerate((a, b)):
        single = detect_blobs(image[None, None], 5)
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(batch, field)[i], getattr(single, field)[0], err_msg=field)
    rgb = detect_blobs(np.stack([a, a + 0.2, a - 0.1])[None], 5)
    np.testing.assert_allclose(rgb.x, detect_blobs(a[None, None] + 1 / 30, 5).x, atol=1e-9)
    dark_only = detect_blobs(a[None, None], 5, minima_are_also_good=False)
    assert not dark_only.bright.any() and abs(dark_only.x[0, 0] - 55.8) < 0.05


def test_threshold_border_and_sizes():
    image = _two_blobs()[None, None]
    strong = detect_blobs(image, 10, threshold=0.02)
    assert strong.valid.sum() == 2
    nothing = detect_blobs(image, 10, border=80.0)  # wider than half the doubled octave
    assert not nothing.valid.any() and np.isnan(nothing.x).all()
    for shape in [(0, 1, 32, 32), (2, 1, 32, 32), (1, 1, 1, 1), (1, 1, 5, 7)]:
        out = detect_blobs(np.zeros(shape), 3)
        assert out.x.shape == (shape[0], 3) and not out.valid.any()
    assert detect_blobs(image, 0).x.shape == (1, 0)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dtypes(dtype):
    out = detect_blobs(_two_blobs(dtype=dtype)[None, None], 4)
    want = np.float32 if dtype == "float16" else np.dtype(dtype)
    assert out.x.dtype == want and out.response.dtype == want
    np.testing.assert_allclose(sorted(out.x[0][:2]), [25.3, 55.8], atol=0.05 if dtype == "float16" else 0.02)


def test_standard_only_path_matches_numpy():
    xps = load_backend("array_api_strict")
    image = _two_blobs()[None, None]
    ref = _numpy_fields(detect_blobs(image, 8))
    got = _numpy_fields(detect_blobs(xps.asarray(image), 8))
    for field in FIELDS:
        np.testing.assert_allclose(got[field], ref[field], atol=1e-9, err_msg=field)


def test_errors_name_function_and_parameter():
    image = _two_blobs()[None, None]
    with pytest.raises(TypeError, match=r"detect_blobs.*image"):
        detect_blobs(image.tolist(), 5)
    with pytest.raises(TypeError, match=r"detect_blobs.*real"):
        detect_blobs(image.astype(np.complex64), 5)
    with pytest.raises(ValueError, match=r"detect_blobs.*\(H, W\).*\(B, C, H, W\).*transpose"):
        detect_blobs(image[0], 5)
    with pytest.raises(ValueError, match="num_features"):
        detect_blobs(image, -1)
    with pytest.raises(ValueError, match="edge_ratio"):
        detect_blobs(image, 5, edge_ratio=0.5)
    with pytest.raises(ValueError, match="threshold"):
        detect_blobs(image, 5, threshold=math.nan)
    with pytest.raises(ValueError, match="max_candidates"):
        detect_blobs(image, 5, max_candidates=-1)
    with pytest.raises(TypeError, match="spatial_refit"):
        detect_blobs(image, 5, spatial_refit=1)
    assert {"detect_blobs", "Blobs"} <= set(subpix_xp.__all__)


# ---------------------------------------------------------------------------------------------
# The separable_filter hook and the pyramid


def _brute_filter(x, kernel):
    r = len(kernel) // 2
    for axis in (-1, -2):
        n = x.shape[axis]
        idx = np.array(_generic.reflect_indices(n, r, r))
        padded = np.take(x, idx, axis=axis)
        x = sum(kernel[j] * np.take(padded, np.arange(j, j + n), axis=axis) for j in range(len(kernel)))
    return x


def test_reflect_indices_mirror_without_repeating_the_edge():
    assert _generic.reflect_indices(4, 3, 3) == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert _generic.reflect_indices(2, 3, 1) == [1, 0, 1, 0, 1, 0]
    assert _generic.reflect_indices(1, 2, 2) == [0] * 5
    x = np.arange(5.0)
    np.testing.assert_array_equal(x[_generic.reflect_indices(5, 3, 3)], np.pad(x, 3, mode="reflect"))


@pytest.mark.parametrize("name", ["numpy", "torch", "array_api_strict", "jax"])
def test_separable_filter_native_matches_generic_and_reference(name):
    backend = load_backend(name)
    hooks = hooks_for(backend.xp)
    rng = np.random.default_rng(0)
    cases = [
        ((2, 3, 17, 23), gaussian_kernel1d(1.3, 9)),
        ((1, 1, 4, 30), gaussian_kernel1d(2.0, 17)),
        ((2, 9, 6), (0.1, 0.3, 0.4, 0.2, 0.0)),
        ((1, 1, 1, 5), (0.25, 0.5, 0.25)),
        ((1, 1, 40, 50), gaussian_kernel1d(2.5, 21)),
    ]
    for dtype, tol in (("float32", 2e-6), ("float64", 1e-12)):
        if dtype == "float64" and not backend.float64:
            continue
        for shape, kernel in cases:
            x = rng.standard_normal(shape).astype(dtype)
            generic = to_numpy(GENERIC.separable_filter(backend.asarray(x), kernel, xp=backend.xp))
            native = to_numpy(hooks.separable_filter(backend.asarray(x), kernel, xp=backend.xp))
            assert native.dtype == generic.dtype == np.dtype(dtype) and native.shape == x.shape
            # The native hook adds the same products, maybe in another order (BLAS): a few units in the last place.
            ulps = 8 * float(np.finfo(dtype).eps) * float(np.abs(x).max())
            np.testing.assert_allclose(native, generic, rtol=0, atol=ulps, err_msg=f"{name} {dtype} {shape}")
            want = _brute_filter(x.astype(np.float64), kernel)
            for got in (generic, native):
                np.testing.assert_allclose(
                    got, want, atol=tol * 10, rtol=tol, err_msg=f"{name} {dtype} {shape}"
                )


def test_pyramid_levels_match_kornia():
    torch = pytest.importorskip("torch")
    from kornia.geometry.transform import ScalePyramid

    image = _camera()[100:229, 150:310].copy()
    want, sigmas, _ = ScalePyramid(3, 1.6, 16, double_image=True)(torch.from_numpy(image)[None, None])
    for name, convert in (("numpy", np.asarray), ("torch", torch.from_numpy)):
        backend = load_backend(name)
        octaves = scale_pyramid(
            convert(image[None, None]), 3, 1.6, 16, True, 3, hooks_for(backend.xp), xp=backend.xp
        )
        assert len(octaves) == len(want) == 4
        for octave, ref, sig in zip(octaves, want, sigmas):
            np.testing.assert_allclose(to_numpy(octave.levels), ref.numpy(), atol=2e-6)
            assert octave.sigma0 == pytest.approx(float(sig[0, 0]))
    assert kernel_size(1.0) == 9 and kernel_size(1.249) == 11
    k = gaussian_kernel1d(1.5, 13)
    assert math.fsum(k) == pytest.approx(1.0, abs=1e-15) and k == tuple(reversed(k))


def test_scene_is_deterministic():
    a, b = render_scene(seed=5), render_scene(seed=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.x, b.x)
    frac = np.concatenate([a.x, a.y]) % 1.0
    assert np.ptp(np.histogram(frac, bins=10, range=(0, 1))[0]) <= 2  # stratified phases
    assert importlib.util.find_spec("subpix_xp._scene") is not None


def test_dask_is_refused_with_a_clear_message():
    da = pytest.importorskip("dask.array")
    with pytest.raises(TypeError, match=r"detect_blobs: .*lacks .*take_along_axis.*compute"):
        detect_blobs(da.zeros((1, 1, 32, 32), chunks=16), 3)
