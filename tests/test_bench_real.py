"""benchmarks/bench_real.py: the sensor simulation, the metrics on hand-made keypoints, and one
end-to-end pass on a small crop (a few seconds)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_real.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_real"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _blob(h=40, w=48, cx=21.3, cy=18.6, sigma=3.0, lo=20, hi=220):
    yy, xx = np.mgrid[0:h, 0:w]
    image = lo + (hi - lo) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return np.round(image).astype(np.uint8)


def _kp(bench, rows):
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return bench.Keypoints.make(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])


# ---------------------------------------------------------------------------------------------
# The simulated sensor


def test_full_pixel_offset_is_an_exact_one_pixel_translation(bench):
    scene = bench.make_scene(_blob(), 8)
    ref = bench.expose(scene, (40, 48))
    moved = bench.expose(scene, (40, 48), (8, 8))
    np.testing.assert_array_equal(moved[1:, 1:], ref[:-1, :-1])


@pytest.mark.parametrize("offset", [(3, 5), (1, 6), (0, 0)])
def test_exposure_displaces_a_blob_by_offset_over_factor(bench, offset):
    scene = bench.make_scene(_blob(), 8)

    def centroid(image):
        weight = image - 20 / 255  # the background
        yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        return np.array([(weight * yy).sum(), (weight * xx).sum()]) / weight.sum()

    ref = bench.expose(scene, (40, 48))
    moved = bench.expose(scene, (40, 48), offset)
    shift = centroid(moved) - centroid(ref)
    np.testing.assert_allclose(shift, np.array(offset) / 8, atol=1e-5)
    # The reference exposure is the photo itself, up to the spline's smoothing.
    assert np.abs(ref * 255 - _blob()).max() < 6


def test_quantise_rounds_to_8_bits_with_seeded_noise(bench):
    exposure = np.linspace(-0.1, 1.1, 60).reshape(6, 10)
    q = bench.quantise(exposure)
    assert q.dtype == np.uint8 and q.min() == 0 and q.max() == 255
    np.testing.assert_array_equal(q[1:-1, :], np.round(exposure[1:-1, :] * 255).astype(np.uint8))
    a = bench.quantise(exposure, 0.01, np.random.default_rng([0, 1]))
    b = bench.quantise(exposure, 0.01, np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(a, b)
    assert np.count_nonzero(a != q) > 10


# ---------------------------------------------------------------------------------------------
# Metrics on hand-made keypoints


def test_mutual_matches_and_errors(bench):
    shift = np.array([0.25, 0.5])  # (dy, dx)
    a = _kp(bench, [(10, 10, 2, 1), (20, 20, 2, 1), (30, 30, 2, 1), (40, 40, 2, 1), (50, 50, 2, 1)])
    b = _kp(
        bench,
        [
            (10.5, 10.25, 2.2, 1),  # a0 exactly displaced: error 0
            (20.8, 20.25, 2.0, 1),  # a1 + shift + (0.3, 0): error 0.3
            (30.5, 30.25, 4.0, 1),  # a2's position but twice its sigma: no match
            (40.5 + 1.6, 40.25, 2, 1),  # 1.6 px away: beyond the 1.5 px radius
            (50.5, 50.25 + 0.1, 2, 1),  # a4, error 0.1 ...
            (50.5, 50.25 + 0.05, 2, 1),  # ... but this one is nearer: the mutual pair is a4-b5
        ],
    )
    ia, ib, err = bench.mutual_matches(a, b, shift)
    assert ia.tolist() == [0, 1, 4] and ib.tolist() == [0, 1, 5]
    np.testing.assert_allclose(err, [0.0, 0.3, 0.05], atol=1e-12)


def test_pair_metrics_counts_the_common_region(bench):
    shift = np.array([0.5, 0.5])
    a = _kp(
        bench, [(10, 10, 2, 1), (20, 20, 2, 1), (30, 30, 2, 1), (38.8, 20, 2, 1)]
    )  # last: 39.3 in B, outside
    b = _kp(bench, [(10.5, 10.5, 2, 1), (20.5, 20.7, 2, 1), (5.0, 30.0, 2, 1)])
    m = bench.pair_metrics(a, b, (40, 40), shift)
    assert (m["n_a"], m["n_b"], m["matches"]) == (3, 3, 2)
    assert m["repeatability"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(np.sort(m["errors"]), [0.0, 0.2], atol=1e-12)


def test_unique_and_near_duplicates(bench):
    kp = _kp(
        bench,
        [
            (10, 10, 2, 5),
            (10, 10, 2, 4),  # exact copy (same x, y, sigma; response differs: OpenCV's angles)
            (20, 20, 2, 3),
            (20.6, 20.6, 2.3, 2),  # 0.85 px apart, sigma ratio 1.15 < 2^(1/3): near duplicates
            (30, 30, 2, 1),
            (30.5, 30, 3.0, 1),  # close but a sigma ratio of 1.5: distinct blobs
            (40, 40, 2, 1),
        ],
    )
    unique, exact = bench.unique_keypoints(kp)
    assert exact == 1 and len(unique) == 6
    assert bench.near_duplicates(unique).tolist() == [False, True, True, False, False, False]


def test_agreement_pairs_by_position_not_by_row(bench):
    ref = _kp(bench, [(10, 10, 2, 3.0), (20, 20, 2, 2.0), (30, 30, 2, 1.0)])
    same = _kp(bench, [(10, 10, 2, 3.0), (20, 20, 2, 1.0), (30, 30, 2, 2.0)])  # two ranks swapped
    a = bench.agreement(ref, same)
    assert (a["max_dx"], a["max_dy"], a["n_differ"], a["rank_differ"]) == (0.0, 0.0, 0, 2)
    moved = _kp(bench, [(10, 10, 2, 3.0), (20.01, 20, 2, 2.0), (30, 30.0005, 2, 1.0)])
    a = bench.agreement(ref, moved)
    assert a["max_dx"] == pytest.approx(0.01) and a["max_dy"] == pytest.approx(0.0005)
    assert a["n_differ"] == 1


# ---------------------------------------------------------------------------------------------
# The edge-response test


def test_hessian_of_a_quadratic_is_exact(bench):
    yy, xx = np.mgrid[0:60, 0:60].astype(np.float64)
    image = 0.5 * 3.0 * (xx - 30) ** 2 + 2.0 * (xx - 30) * (yy - 30) - 0.5 * (yy - 30) ** 2
    h = bench.hessians(image, _kp(bench, [(30.3, 29.6, 1.5, 1)]))
    # A Gaussian leaves a quadratic's second derivatives unchanged (up to the kernel's truncation).
    np.testing.assert_allclose(h[0], [3.0, -1.0, 2.0], atol=0.03)


def test_edge_flags_an_edge_and_not_a_blob(bench):
    xx = np.arange(64, dtype=np.float64)
    edge = np.repeat((0.2 + 0.6 / (1 + np.exp(-(xx - 32.0) / 0.7)))[None, :], 64, axis=0)
    beside = _kp(bench, [(32 + 2.5, 31.4, 2.5, 1), (32.3, 30.0, 2.0, 1)])  # beside the step, and on it
    assert bench.edge_flags(edge, beside).tolist() == [True, True]
    blob = _blob(64, 64, 31.3, 30.8, 3.0).astype(np.float64) / 255
    centre = _kp(bench, [(31.3, 30.8, 2.7, 1), (31.0, 31.5, 3.5, 1)])
    assert bench.edge_flags(blob, centre).tolist() == [False, False]
    # An elongated blob: principal-curvature ratio 65/5 = 13 (> 10) flagged, 17/5 = 3.4 not.
    yy, xx2 = np.mgrid[0:64, 0:64]
    for ratio, flagged in ((16.0, True), (4.0, False)):
        sx, sy = 2.0, 2.0 * math.sqrt(ratio)  # curvatures at the centre: 1 / (s^2 + 1) smoothed at sigma 1
        ellipse = np.exp(-((xx2 - 32) ** 2 / (2 * sx**2) + (yy - 32) ** 2 / (2 * sy**2)))
        assert bench.edge_flags(ellipse, _kp(bench, [(32, 32, 1.0, 1)])).tolist() == [flagged], ratio


# ---------------------------------------------------------------------------------------------
# End to end on a crop


def test_run_photo_on_a_crop_end_to_end(bench):
    pytest.importorskip("skimage")
    cv2 = pytest.importorskip("cv2")
    crop = bench.load_photo("camera")[60:188, 180:308]  # 128 x 128: the head and the camera
    detectors = [*bench.ours_detectors(100, {}, ["numpy"]), bench.sift_detector(100)]
    result = bench.run_photo("crop", crop, detectors, [(3, 5)], repeats=1, seed=(0, 0))
    for name in ("ours_numpy", "sift"):
        rec = result["detectors"][name]
        assert 10 <= rec["unique"] <= rec["count"] <= 100 + 20  # OpenCV may add ties and angles
        assert rec["repeatability"] > 0.5, name
        assert rec["localisation"]["median"] < 0.3, name
        assert 0 <= rec["edge_fraction"] <= 1 and 0 <= rec["near_duplicate_fraction"] <= 1
        assert len(rec["timing"]["samples_s"]) == 1
        assert rec["timing"]["first_call_cached"] is False
    # A second photo of the same shape: its first call is marked as cached (JAX compiles once per shape).
    times, keypoints = bench.time_detectors(detectors[:1], crop[::-1].copy(), 1, 1.0)
    assert times["ours_numpy"]["first_call_cached"] is True and len(keypoints["ours_numpy"]) > 10
    report = {
        "machine": {**bench.machine(1), "xla_flags": ""},
        "photos": {"crop": result},
        "settings": {
            "num_features": 100,
            "factor": 8,
            "offsets_scene_px": [[3, 5]],
            "shifts_px": [[0.375, 0.625]],
            "noise": 0.0,
            "match_radius_px": 1.5,
            "detect_blobs_params": {},
        },
        "calibration": bench.calibration(detectors),
        "runtime_s": 1.0,
    }
    report["pooled"] = bench.pooled(report["photos"])
    report["targets"] = bench.targets(report)
    assert report["pooled"]["sift"]["label"] == f"OpenCV SIFT {cv2.__version__}"
    text = bench.markdown(report)
    assert "| crop 128x128 | subpix_xp NumPy |" in text and "| all | OpenCV SIFT" in text
    json.dumps(bench._jsonable(report))  # serialisable (no arrays, no NaN)
    # The convention check: every detector finds the blob within 0.1 px, at about 0.89 x its sigma.
    for name, c in report["calibration"].items():
        assert abs(c["dx"]) < 0.1 and abs(c["dy"]) < 0.1, name
        assert 0.8 < c["sigma_over_blob"] < 1.0, name


def test_detector_kwargs_are_checked_against_the_signature(bench):
    params = bench.detect_blobs_params({"n_levels": 4})
    assert params["n_levels"] == 4 and "num_features" not in params
    with pytest.raises(ValueError, match="no_such_parameter"):
        bench.detect_blobs_params({"no_such_parameter": 1})
