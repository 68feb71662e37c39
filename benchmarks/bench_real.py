"""detect_blobs on real photographs, side by side with OpenCV SIFT and kornia's ScaleSpaceDetector.

Run (from the repository root)::

    python benchmarks/bench_real.py                 # every photo, writes benchmarks/results/real_images.{json,md}
    python benchmarks/bench_real.py --quick         # one photo, one offset, 3 timing rounds

Every detector sees the same inputs: scikit-image's bundled photographs (``camera``, ``coins``,
``astronaut`` and ``hubble_deep_field``, colour ones converted to grey), as float32 in [0, 1] for the
array detectors and the same 8-bit values as uint8 for OpenCV. Detectors: ``subpix_xp.detect_blobs``
with its default parameters (read from its signature at run time; ``--detector-kwargs`` overrides
them) on NumPy, on torch CPU and on JAX under ``jax.jit`` (array-api-strict too, for backend
agreement only); ``cv2.SIFT_create(nfeatures=N).detect``; kornia 0.9.0's ``ScaleSpaceDetector``
configured as ``detect_blobs`` documents its kornia equivalent (``BlobDoG``,
``ScalePyramid(3, 1.6, 32, double_image=True)``, ``AdaptiveQuadInterp3d()``).

Metrics (the definitions are in ``benchmarks/README.md`` and in the docstrings below):

1. localisation error on a simulated sensor: the photo upsampled 8x by a cubic spline is the scene;
   two exposures area-average 8x8 blocks of it, the second with its pixel grid moved by a known
   number of scene pixels, so its content is displaced by a known sub-pixel amount;
2. repeatability on the same pairs;
3. edge-response fraction (SIFT's principal-curvature test, r = 10);
4. duplicate fraction and exact copies;
5. detection time on the original photo (same thread count for every library) and JAX's first call;
6. agreement of every subpix_xp backend with NumPy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PHOTOS = ("camera", "coins", "astronaut", "hubble_deep_field")
FACTOR = 8  # scene pixels per sensor pixel
OFFSETS = ((3, 5), (1, 6), (4, 4))  # (dy, dx) in scene pixels: displacements of (0.375, 0.625) ... sensor px
MATCH_RADIUS = 1.5  # px, after compensating the true displacement
SCALE_RATIO = 2.0 ** (1.0 / 3.0)  # one DoG level: matches and duplicates must be closer in scale
DUP_RADIUS = 1.0  # px
EDGE_R = 10.0  # SIFT's principal-curvature ratio
AGREE_TOL = 1e-3  # px
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# Inputs: photographs and the simulated sensor


def load_photo(name: str) -> np.ndarray:
    """scikit-image's bundled photograph ``name`` as an (H, W) uint8 grey image."""
    from skimage import color, data

    image = getattr(data, name)()
    if image.ndim == 3:
        image = np.round(color.rgb2gray(image[..., :3]) * 255.0).astype(np.uint8)
    return image


def make_scene(photo: np.ndarray, factor: int = FACTOR) -> np.ndarray:
    """The photo, padded by one mirrored pixel, upsampled ``factor`` times by a cubic spline (float32).

    ``scipy.ndimage.zoom(order=3, grid_mode=True)``: photo pixel ``(i, j)`` covers the scene pixels
    ``[(i + 1) F, (i + 2) F)`` x ``[(j + 1) F, (j + 2) F)`` (the pad is the first ``F``).
    """
    from scipy import ndimage

    padded = np.pad(photo.astype(np.float32) / 255.0, 1, mode="symmetric")
    return ndimage.zoom(padded, factor, order=3, grid_mode=True, mode="reflect", output=np.float32)


def expose(
    scene: np.ndarray, shape: tuple[int, int], offset: tuple[int, int] = (0, 0), factor: int = FACTOR
) -> np.ndarray:
    """One exposure of ``shape`` pixels, each the mean of ``factor`` x ``factor`` scene pixels.

    The reference exposure (``offset=(0, 0)``) has the photo's pixel grid. With ``offset=(oy, ox)``
    the sensor's grid starts ``oy, ox`` scene pixels earlier, so a scene point appears at
    ``(y + oy / F, x + ox / F)``: the content is displaced by ``+offset / F`` sensor pixels.
    """
    h, w = shape
    oy, ox = offset
    if not (0 <= oy <= factor and 0 <= ox <= factor):
        msg = f"expose: expected offsets in [0, {factor}]; got {offset}"
        raise ValueError(msg)
    block = scene[factor - oy : factor - oy + h * factor, factor - ox : factor - ox + w * factor]
    return block.reshape(h, factor, w, factor).mean(axis=(1, 3), dtype=np.float64)


def quantise(exposure: np.ndarray, noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Optional Gaussian noise (std ``noise`` in [0, 1] units), then rounding to 8 bits (uint8)."""
    if noise > 0:
        exposure = exposure + (rng or np.random.default_rng(0)).normal(0.0, noise, exposure.shape)
    return np.clip(np.round(exposure * 255.0), 0, 255).astype(np.uint8)


def as_float(image_u8: np.ndarray) -> np.ndarray:
    return image_u8.astype(np.float32) / np.float32(255.0)


# ---------------------------------------------------------------------------------------------
# Keypoints and detectors


@dataclasses.dataclass(frozen=True)
class Keypoints:
    """Keypoints as float64 NumPy arrays: centre (pixel centres at integer indices), sigma, response.

    ``sigma`` is the Gaussian sigma of the keypoint's scale-space level in input pixels (SIFT's and
    kornia's convention), ``response`` the detector's ranking score (larger is stronger).
    """

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    response: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)

    def take(self, index: np.ndarray) -> Keypoints:
        return Keypoints(self.x[index], self.y[index], self.sigma[index], self.response[index])

    @classmethod
    def make(cls, x: Any, y: Any, sigma: Any, response: Any) -> Keypoints:
        return cls(*(np.asarray(a, dtype=np.float64).reshape(-1) for a in (x, y, sigma, response)))


def unique_keypoints(kp: Keypoints) -> tuple[Keypoints, int]:
    """The keypoints without exact copies (same x, y and sigma; first kept), and the number of copies."""
    if len(kp) == 0:
        return kp, 0
    rows = np.stack([kp.x, kp.y, kp.sigma], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    keep = np.sort(first)
    return kp.take(keep), len(kp) - keep.size


@dataclasses.dataclass
class Detector:
    """``prepare(u8, f32)`` converts an image once (untimed); ``run`` is what is timed;
    ``keypoints`` turns its result into :class:`Keypoints`."""

    name: str
    label: str
    prepare: Callable[[np.ndarray, np.ndarray], Any]
    run: Callable[[Any], Any]
    keypoints: Callable[[Any], Keypoints]
    family: str  # "ours", "sift" or "kornia"
    timed: bool = True
    jit: bool = False
    shapes_seen: set[tuple[int, ...]] = dataclasses.field(default_factory=set)  # compiled already (jit)


def _blobs_keypoints(blobs: Any) -> Keypoints:
    from subpix_xp.testing import to_numpy

    valid = to_numpy(blobs.valid)[0].astype(bool)
    fields = [to_numpy(getattr(blobs, f))[0][valid] for f in ("x", "y", "scale", "response")]
    return Keypoints.make(*fields)


def detect_blobs_params(overrides: dict[str, Any]) -> dict[str, Any]:
    """``detect_blobs``'s keyword defaults read from its signature, updated with ``overrides``."""
    from subpix_xp import detect_blobs

    params = {
        name: p.default
        for name, p in inspect.signature(detect_blobs).parameters.items()
        if p.default is not inspect.Parameter.empty and name != "num_features"
    }
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        msg = f"bench_real: --detector-kwargs names parameters detect_blobs lacks: {unknown}; it has {sorted(params)}"
        raise ValueError(msg)
    params.update(overrides)
    return params


def ours_detectors(num_features: int, kwargs: dict[str, Any], backends: Sequence[str]) -> list[Detector]:
    from subpix_xp import detect_blobs

    call = functools.partial(detect_blobs, num_features=num_features, **kwargs)
    out: list[Detector] = []
    for name in backends:
        try:
            out.append(_ours(name, call))
        except ImportError as exc:
            print(f"  skipping subpix_xp on {name}: {exc}", file=sys.stderr)
    return out


def _ours(name: str, call: Callable[[Any], Any]) -> Detector:
    if name == "numpy":
        return Detector(
            "ours_numpy", "subpix_xp NumPy", lambda u8, f: f[None, None], call, _blobs_keypoints, "ours"
        )
    if name == "torch":
        import torch

        def run_torch(t: Any) -> Any:
            with torch.no_grad():
                return call(t)

        return Detector(
            "ours_torch",
            "subpix_xp torch",
            lambda u8, f: torch.from_numpy(f[None, None].copy()),
            run_torch,
            _blobs_keypoints,
            "ours",
        )
    if name == "jax":
        import jax
        import jax.numpy as jnp

        jitted = jax.jit(call)
        return Detector(
            "ours_jax",
            "subpix_xp JAX (jit)",
            lambda u8, f: jnp.asarray(f[None, None]),
            lambda a: jax.block_until_ready(jitted(a)),
            _blobs_keypoints,
            "ours",
            jit=True,
        )
    if name == "array_api_strict":
        import array_api_strict as xps

        return Detector(
            "ours_strict",
            "subpix_xp array-api-strict",
            lambda u8, f: xps.asarray(f[None, None]),
            call,
            _blobs_keypoints,
            "ours",
            timed=False,
        )
    msg = f"bench_real: unknown backend {name!r}"
    raise ValueError(msg)


def sift_detector(num_features: int) -> Detector:
    """OpenCV SIFT, ``detect`` only.

    OpenCV's ``KeyPoint.size`` is the diameter ``2 * sigma`` of the level (``sift.dispatch.cpp``:
    ``size = sigma * 2 ** ((layer + xi) / nOctaveLayers) * 2 ** octave * 2``, halved with the doubled
    first octave), so ``sigma = size / 2``. OpenCV doubles the image with half-pixel centres and
    halves the coordinates afterwards, so its centres sit 0.25 px right of and below the pixel-index
    convention used here: they are shifted by -0.25 px (this changes no displacement).
    """
    import cv2

    sift = cv2.SIFT_create(nfeatures=num_features)

    def keypoints(kps: Sequence[Any]) -> Keypoints:
        arr = np.array([(k.pt[0], k.pt[1], k.size, k.response) for k in kps], dtype=np.float64).reshape(-1, 4)
        return Keypoints.make(arr[:, 0] - 0.25, arr[:, 1] - 0.25, arr[:, 2] / 2.0, arr[:, 3])

    return Detector(
        "sift",
        f"OpenCV SIFT {cv2.__version__}",
        lambda u8, f: u8,
        lambda u8: sift.detect(u8, None),
        keypoints,
        "sift",
    )


def kornia_detector(num_features: int) -> Detector:
    """kornia's ``ScaleSpaceDetector`` as ``detect_blobs`` documents its kornia-compatible form.

    Its LAF's linear part is ``mr_size * sigma`` times a rotation (none here), so
    ``sigma = sqrt(|det A|) / mr_size``; unfilled slots have zero scale and are dropped.
    """
    import kornia
    import torch
    from kornia.feature import ScaleSpaceDetector
    from kornia.feature.responses import BlobDoG
    from kornia.geometry.subpix import AdaptiveQuadInterp3d
    from kornia.geometry.transform import ScalePyramid

    det = ScaleSpaceDetector(
        num_features=num_features,
        resp_module=BlobDoG(),
        subpix_module=AdaptiveQuadInterp3d(),
        scale_pyr_module=ScalePyramid(3, 1.6, 32, double_image=True),
        scale_space_response=True,
        minima_are_also_good=True,
    )

    def run(t: Any) -> Any:
        with torch.no_grad():
            return det(t)

    def keypoints(out: Any) -> Keypoints:
        lafs, resp = (a[0].numpy().astype(np.float64) for a in out)
        sigma = np.sqrt(np.abs(np.linalg.det(lafs[:, :, :2]))) / det.mr_size
        keep = sigma > 0
        return Keypoints.make(lafs[keep, 0, 2], lafs[keep, 1, 2], sigma[keep], resp[keep])

    return Detector(
        "kornia",
        f"kornia {kornia.__version__} ScaleSpaceDetector",
        lambda u8, f: torch.from_numpy(f[None, None].copy()),
        run,
        keypoints,
        "kornia",
    )


def build_detectors(num_features: int, kwargs: dict[str, Any], backends: Sequence[str]) -> list[Detector]:
    detectors = ours_detectors(num_features, kwargs, backends)
    for factory in (sift_detector, kornia_detector):
        try:
            detectors.append(factory(num_features))
        except ImportError as exc:
            print(f"  skipping {factory.__name__}: {exc}", file=sys.stderr)
    return detectors


# ---------------------------------------------------------------------------------------------
# Metrics


def in_common_region(kp: Keypoints, shape: tuple[int, int], shift: np.ndarray) -> np.ndarray:
    """Keypoints whose centre, and centre moved by ``shift`` (dy, dx), both lie in the image."""
    h, w = shape
    ok = np.ones(len(kp), dtype=bool)
    for x, y in ((kp.x, kp.y), (kp.x + shift[1], kp.y + shift[0])):
        ok &= (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return ok


def mutual_matches(
    a: Keypoints,
    b: Keypoints,
    shift: np.ndarray,
    radius: float = MATCH_RADIUS,
    max_ratio: float = SCALE_RATIO,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours between ``a`` moved by ``shift`` (dy, dx) and ``b``.

    A pair is admissible when ``|p_b - (p_a + shift)| <= radius`` and the sigmas differ by a factor
    of at most ``max_ratio``; each keypoint takes its nearest admissible partner, and a pair counts
    when each is the other's choice. Returns the indices into ``a`` and ``b`` and the error
    ``|(p_b - p_a) - shift|`` of each match.
    """
    if len(a) == 0 or len(b) == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0)
    dx = b.x[None, :] - (a.x[:, None] + shift[1])
    dy = b.y[None, :] - (a.y[:, None] + shift[0])
    dist = np.hypot(dx, dy)
    ratio = np.abs(np.log(a.sigma[:, None] / b.sigma[None, :]))
    dist = np.where((dist <= radius) & (ratio <= math.log(max_ratio) + 1e-9), dist, np.inf)
    choice_a = np.argmin(dist, axis=1)
    choice_b = np.argmin(dist, axis=0)
    ia = np.arange(len(a))
    mutual = np.isfinite(dist[ia, choice_a]) & (choice_b[choice_a] == ia)
    ia, ib = ia[mutual], choice_a[mutual]
    return ia, ib, dist[ia, ib]


def pair_metrics(a: Keypoints, b: Keypoints, shape: tuple[int, int], shift: np.ndarray) -> dict[str, Any]:
    """Matches, repeatability and localisation errors of exposure ``a`` against ``b`` = ``a`` + ``shift``.

    Only keypoints in the common region count (both exposures image them; for ``b`` the region is
    tested at ``p_b - shift``). Repeatability = matches / min(n_a, n_b) over that region.
    """
    a = a.take(np.flatnonzero(in_common_region(a, shape, shift)))
    b = b.take(np.flatnonzero(in_common_region(b, shape, -shift)))
    ia, ib, err = mutual_matches(a, b, shift)
    signed = np.stack([b.y[ib] - a.y[ia] - shift[0], b.x[ib] - a.x[ia] - shift[1]], axis=1)
    low = min(len(a), len(b))
    return {
        "n_a": len(a),
        "n_b": len(b),
        "matches": int(ia.size),
        "repeatability": ia.size / low if low else float("nan"),
        "errors": err,
        "signed": signed,
    }


def gaussian_derivatives(t: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``G(t)``, ``G'(t)`` and ``G''(t)`` of the unit-mass Gaussian of ``sigma``."""
    g = np.exp(-0.5 * (t / sigma) ** 2) / (math.sqrt(2.0 * math.pi) * sigma)
    return g, -t / sigma**2 * g, (t**2 / sigma**4 - 1.0 / sigma**2) * g


def hessians(image: np.ndarray, kp: Keypoints) -> np.ndarray:
    """``(Dxx, Dyy, Dxy)`` per keypoint: the Hessian of the image smoothed by a Gaussian of its sigma.

    The smoothed image is the continuous function ``f(p) = sum_q I[q] G_sigma(p - q)`` (mirrored
    beyond the border), differentiated analytically at the sub-pixel centre ``p`` (the kernel reaches
    ``4 sigma + 1`` pixels).
    """
    image = np.asarray(image, dtype=np.float64)
    out = np.zeros((len(kp), 3))
    if len(kp) == 0:
        return out
    reach = np.ceil(4.0 * kp.sigma).astype(int) + 1
    pad = int(reach.max()) + 1
    padded = np.pad(image, pad, mode="symmetric")
    for i, (x, y, s, r) in enumerate(zip(kp.x, kp.y, kp.sigma, reach)):
        cx, cy = round(x), round(y)
        qx, qy = np.arange(cx - r, cx + r + 1), np.arange(cy - r, cy + r + 1)
        gx, gx1, gx2 = gaussian_derivatives(x - qx, s)
        gy, gy1, gy2 = gaussian_derivatives(y - qy, s)
        patch = padded[cy - r + pad : cy + r + 1 + pad, cx - r + pad : cx + r + 1 + pad]
        out[i] = (gy @ patch @ gx2, gy2 @ patch @ gx, gy1 @ patch @ gx1)
    return out


def edge_flags(image: np.ndarray, kp: Keypoints, r: float = EDGE_R) -> np.ndarray:
    """SIFT's principal-curvature test: True where ``tr^2 / det >= (r + 1)^2 / r`` or ``det <= 0``."""
    dxx, dyy, dxy = hessians(image, kp).T
    det = dxx * dyy - dxy**2
    tr = dxx + dyy
    return (det <= 0) | (r * tr**2 >= (r + 1.0) ** 2 * det)


def near_duplicates(kp: Keypoints, radius: float = DUP_RADIUS, max_ratio: float = SCALE_RATIO) -> np.ndarray:
    """True for each keypoint with another one within ``radius`` px at a sigma ratio below ``max_ratio``."""
    if len(kp) < 2:
        return np.zeros(len(kp), dtype=bool)
    dist = np.hypot(kp.x[:, None] - kp.x[None, :], kp.y[:, None] - kp.y[None, :])
    ratio = np.abs(np.log(kp.sigma[:, None] / kp.sigma[None, :]))
    close = (dist <= radius) & (ratio < math.log(max_ratio))
    np.fill_diagonal(close, False)
    return close.any(axis=1)


def agreement(ref: Keypoints, other: Keypoints, tol: float = AGREE_TOL) -> dict[str, Any]:
    """How far ``other``'s keypoints are from ``ref``'s (NumPy's), keypoint by keypoint.

    Each set is sorted by response (strongest first, stable) and each keypoint of ``ref`` is paired
    with the nearest keypoint of ``other`` (by centre; the nearest rather than the same row, so that
    two near-equal responses swapping ranks, or one keypoint missing, does not shift every row after
    it). ``max_dx``/``max_dy``: the largest coordinate differences over these pairs; ``n_differ``: the
    keypoints without a counterpart within ``tol`` in x and y (the larger of the counts on the two
    sides, so a keypoint that moved counts once). ``rank_differ`` is the naive row-by-row count.
    """
    a = ref.take(np.argsort(-ref.response, kind="stable"))
    b = other.take(np.argsort(-other.response, kind="stable"))
    record = {"n_ref": len(a), "n_other": len(b)}
    if len(a) == 0 or len(b) == 0:
        return {
            **record,
            "max_dx": 0.0,
            "max_dy": 0.0,
            "n_differ": max(len(a), len(b)),
            "rank_differ": max(len(a), len(b)),
        }
    dx = np.abs(a.x[:, None] - b.x[None, :])
    dy = np.abs(a.y[:, None] - b.y[None, :])
    near = np.argmin(np.hypot(dx, dy), axis=1)
    rows = np.arange(len(a))
    close = np.maximum(dx, dy) <= tol
    n = min(len(a), len(b))
    rank = np.maximum(np.abs(a.x[:n] - b.x[:n]), np.abs(a.y[:n] - b.y[:n])) > tol
    return {
        **record,
        "max_dx": float(dx[rows, near].max()),
        "max_dy": float(dy[rows, near].max()),
        "n_differ": int(max(np.count_nonzero(~close.any(axis=1)), np.count_nonzero(~close.any(axis=0)))),
        "rank_differ": int(np.count_nonzero(rank)) + abs(len(a) - len(b)),
    }


def summarise_errors(errors: np.ndarray) -> dict[str, float]:
    if errors.size == 0:
        return {"n": 0, "median": float("nan"), "p95": float("nan"), "mean": float("nan")}
    return {
        "n": int(errors.size),
        "median": float(np.median(errors)),
        "p95": float(np.quantile(errors, 0.95)),
        "mean": float(errors.mean()),
    }


# ---------------------------------------------------------------------------------------------
# The run


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Explicitly requested dtype")  # JAX without x64
        yield


def detect(det: Detector, u8: np.ndarray) -> Keypoints:
    with _quiet():
        return det.keypoints(det.run(det.prepare(u8, as_float(u8))))


def time_detectors(
    detectors: Sequence[Detector], u8: np.ndarray, repeats: int, max_seconds: float
) -> tuple[dict[str, dict[str, Any]], dict[str, Keypoints]]:
    """Median wall time of ``run`` per detector, in interleaved rounds (the order rotates).

    The first call of each is timed apart (for JAX: tracing and compilation, unless an earlier
    photo had the same shape: ``first_call_cached``). A detector stops
    sampling once its samples add up to ``max_seconds`` and it has at least 3. The process CPU time
    of each call is recorded too: on a busy machine it is the steadier figure for a one-thread run.
    Returns the timings and the keypoints of each timed detector's first call.
    """
    timed = [d for d in detectors if d.timed]
    inputs = {d.name: d.prepare(u8, as_float(u8)) for d in timed}
    out: dict[str, dict[str, Any]] = {}
    keypoints = {}
    with _quiet():
        for d in timed:
            cached = u8.shape in d.shapes_seen
            d.shapes_seen.add(u8.shape)
            start = time.perf_counter()
            result = d.run(inputs[d.name])
            out[d.name] = {
                "first_call_s": time.perf_counter() - start,
                "first_call_cached": cached,
                "samples_s": [],
                "cpu_samples_s": [],
            }
            keypoints[d.name] = d.keypoints(result)
        for round_ in range(repeats):
            for j in range(len(timed)):
                d = timed[(round_ + j) % len(timed)]
                samples = out[d.name]["samples_s"]
                if len(samples) >= 3 and sum(samples) >= max_seconds:
                    continue
                start, cpu = time.perf_counter(), time.process_time()
                d.run(inputs[d.name])
                samples.append(time.perf_counter() - start)
                out[d.name]["cpu_samples_s"].append(time.process_time() - cpu)
    for record in out.values():
        record["median_s"] = float(np.median(record["samples_s"]))
        record["cpu_median_s"] = float(np.median(record["cpu_samples_s"]))
    return out, keypoints


def run_photo(
    name: str,
    photo: np.ndarray,
    detectors: Sequence[Detector],
    offsets: Sequence[tuple[int, int]],
    *,
    repeats: int = 7,
    max_timing_seconds: float = 15.0,
    noise: float = 0.0,
    seed: Sequence[int] = (0,),
) -> dict[str, Any]:
    """Every metric of every detector on one (H, W) uint8 photo; the noise generator is seeded by ``seed``."""
    shape = photo.shape
    t0 = time.perf_counter()
    print(f"[{name}] {shape[1]}x{shape[0]}: timing", flush=True)
    times, on_photo = time_detectors(detectors, photo, repeats, max_timing_seconds)
    t_timing = time.perf_counter() - t0
    on_photo.update({d.name: detect(d, photo) for d in detectors if d.name not in on_photo})
    print(f"[{name}] sensor simulation and detection on the exposures", flush=True)
    scene = make_scene(photo, FACTOR)
    rng = np.random.default_rng(list(seed))
    reference = quantise(expose(scene, shape), noise, rng)
    exposures = [(o, quantise(expose(scene, shape, o), noise, rng)) for o in offsets]
    del scene
    sensor = [d for d in detectors if d.timed]
    ref_kp = {d.name: detect(d, reference) for d in sensor}
    shifted_kp = {d.name: [detect(d, img) for _, img in exposures] for d in sensor}
    result: dict[str, Any] = {"shape": list(shape), "timing_phase_s": t_timing, "detectors": {}}
    for d in detectors:
        result["detectors"][d.name] = _photo_record(
            d,
            photo,
            on_photo[d.name],
            times.get(d.name),
            ref_kp.get(d.name),
            shifted_kp.get(d.name),
            offsets,
            shape,
        )
    result["agreement"] = _agreement_records(detectors, on_photo, ref_kp, shifted_kp)
    result["total_s"] = time.perf_counter() - t0
    print(f"[{name}] done in {result['total_s']:.1f} s", flush=True)
    return result


def _photo_record(
    d: Detector,
    photo: np.ndarray,
    kp: Keypoints,
    timing: dict[str, Any] | None,
    ref: Keypoints | None,
    shifted: list[Keypoints] | None,
    offsets: Sequence[tuple[int, int]],
    shape: tuple[int, int],
) -> dict[str, Any]:
    unique, exact = unique_keypoints(kp)
    record: dict[str, Any] = {
        "label": d.label,
        "count": len(kp),
        "unique": len(unique),
        "exact_copies": exact,
        "edge_flagged": int(edge_flags(as_float(photo), unique).sum()),
        "near_duplicates": int(near_duplicates(unique).sum()),
        "timing": timing,
    }
    if ref is not None and shifted is not None:
        ref_u = unique_keypoints(ref)[0]
        pairs, errors = [], []
        for o, kp_b in zip(offsets, shifted):
            shift = np.array(o, dtype=np.float64) / FACTOR
            m = pair_metrics(ref_u, unique_keypoints(kp_b)[0], shape, shift)
            errors.append(m.pop("errors"))
            signed = m.pop("signed")
            m["offset_scene_px"] = list(o)
            m["shift_px"] = shift.tolist()
            m["mean_signed_error_yx"] = signed.mean(axis=0).tolist() if signed.size else [float("nan")] * 2
            pairs.append(m)
        record["pairs"] = pairs
        record["errors"] = np.concatenate(errors)
    return {**record, **_fractions([record])}


def _fractions(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Edge and near-duplicate fractions of the distinct keypoints; repeatability and error summary."""
    unique = sum(r["unique"] for r in recs)
    out: dict[str, Any] = {
        "edge_fraction": sum(r["edge_flagged"] for r in recs) / unique if unique else float("nan"),
        "near_duplicate_fraction": sum(r["near_duplicates"] for r in recs) / unique
        if unique
        else float("nan"),
    }
    pairs = [pair for r in recs for pair in r.get("pairs", [])]
    if pairs:
        low = sum(min(p["n_a"], p["n_b"]) for p in pairs)
        out["matches"] = sum(p["matches"] for p in pairs)
        out["repeatability"] = out["matches"] / low if low else float("nan")
        out["localisation"] = summarise_errors(np.concatenate([r["errors"] for r in recs if "errors" in r]))
    return out


def _agreement_records(
    detectors: Sequence[Detector],
    on_photo: dict[str, Keypoints],
    ref_kp: dict[str, Keypoints],
    shifted_kp: dict[str, list[Keypoints]],
) -> dict[str, Any]:
    """NumPy against every other subpix_xp backend on the photo and (when run there) the exposures."""
    if "ours_numpy" not in on_photo:
        return {}
    out = {}
    for d in detectors:
        if d.family != "ours" or d.name == "ours_numpy":
            continue
        per_input = [agreement(on_photo["ours_numpy"], on_photo[d.name])]
        if d.name in ref_kp:
            per_input.append(agreement(ref_kp["ours_numpy"], ref_kp[d.name]))
            per_input += [agreement(a, b) for a, b in zip(shifted_kp["ours_numpy"], shifted_kp[d.name])]
        out[d.name] = {
            "inputs": len(per_input),
            "max_dx": max(r["max_dx"] for r in per_input),
            "max_dy": max(r["max_dy"] for r in per_input),
            "n_differ": sum(r["n_differ"] for r in per_input),
            "n_compared": sum(r["n_ref"] for r in per_input),
            "rank_differ": sum(r["rank_differ"] for r in per_input),
            "per_input": per_input,
        }
    return out


def pooled(photos: dict[str, Any]) -> dict[str, Any]:
    """Per detector over all photos: sums of counts, every match's error in one pool."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(n for p in photos.values() for n in p["detectors"]):
        recs = [p["detectors"][name] for p in photos.values() if name in p["detectors"]]
        out[name] = {
            "label": recs[0]["label"],
            **{
                k: sum(r[k] for r in recs)
                for k in ("count", "unique", "exact_copies", "edge_flagged", "near_duplicates")
            },
            **_fractions(recs),
        }
    return out


def calibration(detectors: Sequence[Detector]) -> dict[str, Any]:
    """Each detector's strongest keypoint on one bright Gaussian blob (sigma 4 at (40.3, 37.6)).

    Checks the coordinate and sigma conventions: every detector should report about the same
    centre, and a level sigma of about 0.9 x 4 (the DoG of a Gaussian blob peaks there).
    """
    yy, xx = np.mgrid[0:80, 0:88]
    blob = 0.1 + 0.8 * np.exp(-((xx - 40.3) ** 2 + (yy - 37.6) ** 2) / (2 * 4.0**2))
    u8 = np.round(blob * 255).astype(np.uint8)
    out = {}
    for d in detectors:
        if d.jit:
            continue  # a new shape would compile again; the backends agree (agreement table)
        kp = detect(d, u8)
        if len(kp) == 0:
            out[d.name] = None
            continue
        i = int(np.argmax(kp.response))
        out[d.name] = {
            "dx": float(kp.x[i] - 40.3),
            "dy": float(kp.y[i] - 37.6),
            "sigma_over_blob": float(kp.sigma[i] / 4.0),
        }
    return out


# ---------------------------------------------------------------------------------------------
# Report


def machine(threads: int) -> dict[str, Any]:
    versions: dict[str, str] = {"python": platform.python_version()}
    for module in (
        "numpy",
        "scipy",
        "torch",
        "jax",
        "kornia",
        "cv2",
        "skimage",
        "array_api_strict",
        "subpix_xp",
    ):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # a missing or odd library is reported, not fatal
            versions[module] = "not installed"
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "subpix_xp"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "threads": threads,
        "versions": versions,
        "commit": commit + ("+dirty" if dirty else ""),
    }


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _row(rec: dict[str, Any], sift_ms: float | None, label_photo: str, timing: dict[str, Any] | None) -> str:
    loc = rec.get("localisation") or {}
    cells = [
        label_photo,
        rec["label"],
        f"{rec['count']} / {rec['unique']}",
        _f(rec.get("repeatability")),
        _f(loc.get("median")),
        _f(loc.get("p95")),
        str(loc.get("n", "-")),
        _f(100 * rec["edge_fraction"], 1),
        _f(100 * rec["near_duplicate_fraction"], 1),
        str(rec["exact_copies"]),
    ]
    if sift_ms is not None:
        ms = timing["median_s"] * 1e3 if timing else None
        cells += [
            f"{ms:.1f} ({len(timing['samples_s'])})" if timing else "-",
            f"{timing['cpu_median_s'] * 1e3:.1f}" if timing else "-",
            f"{ms / sift_ms:.2f}" if ms else "-",
        ]
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    v = m["versions"]
    lines = [
        "# detect_blobs on real photographs (`benchmarks/bench_real.py`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; threads: torch {m['threads']}, OpenCV {m['threads']}, "
        f"XLA_FLAGS `{m['xla_flags']}`, NumPy single-threaded. Python {v['python']}, numpy {v['numpy']}, "
        f"scipy {v['scipy']}, torch {v['torch']}, jax {v['jax']}, kornia {v['kornia']}, OpenCV {v['cv2']}, "
        f"scikit-image {v['skimage']}, subpix_xp {v['subpix_xp']} ({m['commit']}). Run time {report['runtime_s']:.0f} s.",
        "",
        f"N = {s['num_features']} features. Sensor: scene = photo upsampled {s['factor']}x (cubic spline); "
        f"exposures average {s['factor']}x{s['factor']} blocks; offsets (dy, dx) {s['offsets_scene_px']} scene px "
        f"= {s['shifts_px']} px; noise std {s['noise']} (of [0, 1]); 8-bit. Match: mutual nearest within "
        f"{s['match_radius_px']} px of the displaced position, sigma ratio <= 2^(1/3). "
        f"detect_blobs parameters: `{json.dumps(s['detect_blobs_params'], default=str)}`.",
        "",
        "kp: keypoints returned / distinct (exact copies removed; metrics 1-3 use the distinct ones). "
        "rep.: matches / min(n_A, n_B) in the common region. err: |(p_B - p_A) - true shift| over the matches, px. "
        "edge %: SIFT's curvature test (r = 10) on the Hessian of the photo smoothed at the keypoint's sigma. "
        "dup %: distinct keypoints with another within 1 px at a sigma ratio < 2^(1/3). exact: exact copies "
        "(same x, y, sigma; for OpenCV its extra orientations). wall ms: median time of one detection on the "
        "photo (samples); CPU ms: median process CPU time of the same calls; x SIFT: wall time / OpenCV SIFT's.",
        "",
        "| photo | detector | kp | rep. | err median | err p95 | matches | edge % | dup % | exact | wall ms (n) "
        "| CPU ms | x SIFT |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for photo_name, photo in report["photos"].items():
        sift_t = (photo["detectors"].get("sift") or {}).get("timing")
        sift_ms = sift_t["median_s"] * 1e3 if sift_t else math.nan
        for rec in photo["detectors"].values():
            lines.append(
                _row(rec, sift_ms, f"{photo_name} {photo['shape'][1]}x{photo['shape'][0]}", rec["timing"])
            )
    lines += [
        "",
        "Pooled over the photos (repeatability: all matches / all min(n_A, n_B); errors: every match):",
        "",
        "| photos | detector | kp | rep. | err median | err p95 | matches | edge % | dup % | exact |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rec in report["pooled"].values():
        lines.append(_row(rec, None, "all", None))
    lines += [
        "",
        "JAX under `jax.jit`: first call (tracing + compilation + one run; *cached*: an earlier photo "
        "had the same shape, so no compilation), s:",
        "",
        "| photo | first call s | then median ms |",
        "| --- | ---: | ---: |",
    ]
    for photo_name, photo in report["photos"].items():
        t = (photo["detectors"].get("ours_jax") or {}).get("timing")
        if t:
            cached = " (cached)" if t.get("first_call_cached") else ""
            lines.append(f"| {photo_name} | {t['first_call_s']:.1f}{cached} | {t['median_s'] * 1e3:.1f} |")
    lines += [
        "",
        "Backend agreement with subpix_xp NumPy (inputs: the photo and, except array-api-strict, its "
        "exposures; each NumPy keypoint against the nearest keypoint of the other backend; differ: "
        f"keypoints without a counterpart within {AGREE_TOL} px in x and y; by rank: rows that differ "
        "when both lists are sorted by response and compared row by row):",
        "",
        "| photo | backend | inputs | keypoints | max abs dx | max abs dy | differ | by rank |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for photo_name, photo in report["photos"].items():
        for name, a in photo["agreement"].items():
            lines.append(
                f"| {photo_name} | {name} | {a['inputs']} | {a['n_compared']} | {a['max_dx']:.2g} | "
                f"{a['max_dy']:.2g} | {a['n_differ']} | {a['rank_differ']} |"
            )
    lines += [
        "",
        "Convention check, one bright Gaussian blob (sigma 4): strongest keypoint's centre error and "
        "sigma / 4:",
        "",
        "| detector | dx | dy | sigma / 4 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, c in report["calibration"].items():
        if c:
            lines.append(f"| {name} | {c['dx']:+.3f} | {c['dy']:+.3f} | {c['sigma_over_blob']:.3f} |")
    lines += ["", "Targets of issue 11 (pooled; speed on the 512x512 photos):", ""] + [
        f"- {t}" for t in report["targets"]
    ]
    return "\n".join(lines) + "\n"


def targets(report: dict[str, Any]) -> list[str]:
    """The 'done when' list of issue 11, checked on this run."""
    pool, out = report["pooled"], []
    sift = pool.get("sift")
    for name in ("ours_numpy", "ours_torch", "ours_jax"):
        rec = pool.get(name)
        if rec is None:
            continue
        if sift and "repeatability" in rec:
            r, rs = rec["repeatability"], sift["repeatability"]
            lo, ls = rec["localisation"], sift["localisation"]
            out.append(
                f"{name}: repeatability {r:.3f} >= SIFT {rs:.3f}: {_yes(r >= rs)}; median error "
                f"{lo['median']:.3f} <= {ls['median']:.3f}: {_yes(lo['median'] <= ls['median'])}; p95 "
                f"{lo['p95']:.3f} <= {ls['p95']:.3f}: {_yes(lo['p95'] <= ls['p95'])}"
            )
        out.append(
            f"{name}: edge responses {100 * rec['edge_fraction']:.1f}% <= 15%: {_yes(rec['edge_fraction'] <= 0.15)}; "
            f"duplicates {100 * rec['near_duplicate_fraction']:.1f}% and {rec['exact_copies']} exact copies, zero: "
            f"{_yes(rec['near_duplicate_fraction'] == 0 and rec['exact_copies'] == 0)}"
        )
    for photo_name, photo in report["photos"].items():
        for name, a in photo["agreement"].items():
            if a["n_differ"]:
                out.append(
                    f"agreement {photo_name} {name}: {a['n_differ']} keypoints differ by > {AGREE_TOL} px: "
                    f"{_yes(False)}"
                )
        dets = photo["detectors"]
        sift_t = (dets.get("sift") or {}).get("timing")
        if sift_t and photo["shape"] == [512, 512]:
            for name, limit in (("ours_numpy", 3.0), ("ours_torch", 2.0)):
                t = (dets.get(name) or {}).get("timing")
                if t:
                    ratio = t["median_s"] / sift_t["median_s"]
                    out.append(
                        f"speed {photo_name} {name}: {ratio:.2f}x SIFT <= {limit:g}x: {_yes(ratio <= limit)}"
                    )
        jax_t = (dets.get("ours_jax") or {}).get("timing")
        if jax_t and max(photo["shape"]) <= 512 and not jax_t.get("first_call_cached"):
            out.append(
                f"JAX first call {photo_name}: {jax_t['first_call_s']:.1f} s <= 5 s: {_yes(jax_t['first_call_s'] <= 5)}"
            )
    if not any("agreement" in t for t in out):
        out.append("agreement: every backend within 1e-3 px of NumPy on every input: yes")
    return out


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if k != "errors"}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one photo (coins), one offset, 3 timing rounds")
    parser.add_argument("--photos", default=None, help=f"comma-separated, of {','.join(PHOTOS)}")
    parser.add_argument("--num-features", type=int, default=500)
    parser.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results" / "real_images.json"),
        help="JSON path; the markdown table goes beside it (.md)",
    )
    parser.add_argument("--detector-kwargs", default="{}", help="JSON of detect_blobs keyword overrides")
    parser.add_argument("--backends", default="numpy,torch,jax,array_api_strict")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for torch, OpenCV and XLA (NumPy is single-threaded); default 1",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (default 7; --quick 3)")
    parser.add_argument(
        "--max-timing-seconds",
        type=float,
        default=15.0,
        help="a detector stops timing once its samples add up to this (and it has >= 3)",
    )
    parser.add_argument(
        "--noise", type=float, default=0.0, help="Gaussian noise std on [0, 1] before 8-bit rounding"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    photos = args.photos.split(",") if args.photos else (["coins"] if args.quick else list(PHOTOS))
    offsets = OFFSETS[:1] if args.quick else OFFSETS
    args.repeats = args.repeats or (3 if args.quick else 7)
    start = time.perf_counter()
    xla_threads = _set_threads(args.threads)
    params = detect_blobs_params(json.loads(args.detector_kwargs))
    overrides = json.loads(args.detector_kwargs)
    detectors = build_detectors(args.num_features, overrides, args.backends.split(","))
    print(
        f"threads: torch {args.threads}, OpenCV {args.threads}, XLA {args.threads if xla_threads else 'default'}; detectors: {[d.name for d in detectors]}",
        flush=True,
    )
    report: dict[str, Any] = {
        "machine": {**machine(args.threads), "xla_flags": os.environ.get("XLA_FLAGS", "")},
        "settings": {
            "num_features": args.num_features,
            "factor": FACTOR,
            "offsets_scene_px": [list(o) for o in offsets],
            "shifts_px": [[o[0] / FACTOR, o[1] / FACTOR] for o in offsets],
            "noise": args.noise,
            "seed": args.seed,
            "match_radius_px": MATCH_RADIUS,
            "scale_ratio": SCALE_RATIO,
            "dup_radius_px": DUP_RADIUS,
            "edge_r": EDGE_R,
            "repeats": args.repeats,
            "max_timing_seconds": args.max_timing_seconds,
            "detect_blobs_params": params,
            "detector_kwargs": overrides,
            "quick": args.quick,
        },
        "photos": {},
    }
    for i, name in enumerate(photos):
        report["photos"][name] = run_photo(
            name,
            load_photo(name),
            detectors,
            offsets,
            repeats=args.repeats,
            max_timing_seconds=args.max_timing_seconds,
            noise=args.noise,
            seed=(args.seed, i),
        )
    report["pooled"] = pooled(report["photos"])
    report["calibration"] = calibration(detectors)
    report["runtime_s"] = time.perf_counter() - start
    report["targets"] = targets(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=1, default=str) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)
    return report


def _set_threads(n: int) -> bool:
    """The same thread count for torch and OpenCV; XLA's CPU pool too when JAX is not imported yet."""
    xla = "jax" not in sys.modules
    if xla:
        flags = (
            f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} intra_op_parallelism_threads={n}"
        )
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(n)
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(n)
    return xla


if __name__ == "__main__":
    main()
