"""Size buckets: ``detect_blobs_within`` on a padded image gives ``detect_blobs``' keypoints of the unpadded one.

NumPy here (eager, fast); the compiled JAX path is held against the same references in
``tests/test_jax.py`` and through the command line in ``tests/test_cli.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from subpix_xp import detect_blobs
from subpix_xp._extent import bucket_shape, detect_blobs_within, fits, octave_sizes
from subpix_xp._scene import render_scene
from subpix_xp.cli import KORNIA_OPTIONS

SCENE = render_scene(height=200, width=232, seed=4).image.astype(np.float32) / 255


def _photo() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="the photograph comes with scikit-image")
    return data.camera().astype(np.float32) / 255


def _padded(image: np.ndarray, shape: tuple[int, int], fill: float) -> np.ndarray:
    h, w = image.shape
    return np.pad(image, ((0, shape[0] - h), (0, shape[1] - w)), constant_values=fill)


def _assert_same_keypoints(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a.valid), np.asarray(b.valid))
    assert int(np.asarray(a.valid).sum()) > 0
    for name in ("x", "y", "scale", "response"):
        np.testing.assert_allclose(np.asarray(getattr(b, name)), getattr(a, name), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(a.bright), np.asarray(b.bright))


def test_bucket_sides_are_four_per_doubling():
    sides = sorted({bucket_shape(n, n)[0] for n in range(1, 5000)})
    assert sides[:9] == [64, 80, 96, 112, 128, 160, 192, 224, 256]
    for n in range(1, 5000):
        side = bucket_shape(n, 1)[0]
        assert side >= n and (n <= 64 or side <= 1.25 * n)
        mantissa = side >> (side.bit_length() - 3)
        assert mantissa << (side.bit_length() - 3) == side  # m * 2**e, m in 4..7


@pytest.mark.parametrize(
    ("crop", "options"),
    [
        ((slice(37, 340), slice(50, 434)), {}),  # 303 x 384 in the 320 x 384 bucket
        ((slice(0, 290), slice(11, 381)), {"double_image": False}),
        ((slice(5, 305), slice(0, 333)), KORNIA_OPTIONS),
    ],
)
def test_padded_photograph_gives_the_unpadded_keypoints(crop, options):
    image = _photo()[crop]
    bucket = bucket_shape(*image.shape)
    assert bucket != image.shape and fits(
        image.shape, bucket, **{k: v for k, v in options.items() if k == "double_image"}
    )
    ref = detect_blobs(image, 300, **options)
    out = detect_blobs_within(_padded(image, bucket, 0.0), np.asarray(image.shape), 300, **options)
    _assert_same_keypoints(ref, out)


@pytest.mark.parametrize("fill", [0.0, 7.5, np.nan, -np.inf])
def test_pixels_outside_the_extent_are_ignored(fill):
    """The intensity range, the finite check and every blur see only the extent (NaN outside: no error)."""
    ref = detect_blobs(SCENE[None, None], 200)
    out = detect_blobs_within(_padded(SCENE, (256, 256), fill)[None, None], np.asarray([200, 232]), 200)
    _assert_same_keypoints(ref, out)


def test_an_image_in_its_own_bucket_and_a_batch():
    batch = np.stack([SCENE, SCENE[::-1]])[:, None]
    ref = detect_blobs(batch, 100)
    _assert_same_keypoints(ref, detect_blobs_within(batch, np.asarray([200, 232]), 100))
    padded = np.pad(batch, ((0, 0), (0, 0), (0, 24), (0, 24)))
    _assert_same_keypoints(ref, detect_blobs_within(padded, np.asarray([200, 232]), 100))


def test_fits_needs_octaves_as_large_as_the_kernels():
    assert fits((64, 64), (64, 64))
    assert not fits((65, 64), (64, 64))  # larger than the bucket
    assert fits((20, 300), (64, 320))  # doubled: 40 rows, the longest kernel 25
    assert not fits((10, 300), (64, 320))  # doubled: 20 rows, narrower than that kernel
    assert octave_sizes(303, 384, 32, True) == [(606, 768), (303, 384), (151, 192), (75, 96), (37, 48)]


@pytest.mark.parametrize(
    ("extent", "match"),
    [([0, 232], "extent"), ([200, 300], "extent"), ([[200, 232]], "shape"), ([200.0, 232.0], "integer")],
)
def test_extent_is_checked(extent, match):
    with pytest.raises((ValueError, TypeError), match=match):
        detect_blobs_within(SCENE[None, None], np.asarray(extent), 10)
