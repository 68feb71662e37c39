"""Dask: lazy arrays in, lazy arrays out, nothing computed until asked, and the in-memory result exactly.

Every call runs under a scheduler that raises (as array-api-extra's ``lazy_xp_function`` does), so
building the graph can never compute. Chunks split every axis, also into pieces smaller than a
window or than the quad-interp halo, so windows and keypoint moves straddle chunk borders; the
computed result must equal the NumPy one bit for bit (``array_equal``), since each block runs the
same NumPy kernel on the same values.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from _helpers import dog_stack  # noqa: E402

import subpix_xp as S  # noqa: E402
from subpix_xp.backends import hooks_for  # noqa: E402

RNG = np.random.default_rng(11)


class ComputeForbidden(RuntimeError):
    pass


def _forbidden(*args, **kwargs):
    raise ComputeForbidden("the graph was computed while it was being built")


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def lazy(func, *args, **kwargs):
    """Call ``func`` with computation forbidden; every output must be a Dask array."""
    with dask.config.set(scheduler=_forbidden):
        out = func(*args, **kwargs)
    for o in _tuple(out):
        assert isinstance(o, da.Array), f"{getattr(func, '__name__', func)} returned {type(o).__name__}"
    return out


def chunked(a, chunks):
    return da.from_array(np.asarray(a), chunks=chunks)


def random_chunks(shape, rng, *, pieces=3):
    """Split each axis at up to ``pieces`` random places (chunks of any size, down to 1)."""
    out = []
    for n in shape:
        cuts = sorted(set(rng.integers(1, n, size=rng.integers(0, pieces + 1)).tolist())) if n > 1 else []
        bounds = [0, *cuts, n]
        out.append(tuple(b - a for a, b in itertools.pairwise(bounds)))
    return tuple(out)


# Kernels built on matrix products (BLAS) are reproducible only to rounding across batch sizes, even
# in memory (one map alone vs. the same map in a batch): their chunked results are held to a few ulps.
BATCH_VARIANT = {"spatial_soft_argmax2d", "SpatialSoftArgmax2d"}


def assert_same(func, arrays, kwargs, chunks, *, what=""):
    """Dask (lazily built, then computed) equals NumPy exactly: shape, dtype and every bit."""
    name = getattr(func, "__name__", type(func).__name__)
    ref = _tuple(func(*arrays, **kwargs))
    dask_arrays = [chunked(a, c) if c is not None else a for a, c in zip(arrays, chunks)]
    out = _tuple(lazy(func, *dask_arrays, **kwargs))
    got = dask.compute(*out, scheduler="sync")
    assert len(got) == len(ref)
    for g, r, o in zip(got, ref, out):
        label = f"{what or getattr(func, '__name__', func)} {kwargs} chunks={chunks}"
        assert o.shape == r.shape, f"{label}: lazy shape {o.shape} != {r.shape}"
        assert o.dtype == r.dtype, f"{label}: lazy dtype {o.dtype} != {r.dtype}"
        assert isinstance(o._meta, np.ndarray), f"{label}: chunks are {type(o._meta).__name__}, not NumPy"
        assert g.shape == r.shape and g.dtype == r.dtype, label
        if name in BATCH_VARIANT:
            eps = float(np.finfo(r.dtype).eps)
            np.testing.assert_allclose(
                g, r, rtol=8 * eps, atol=8 * eps * float(np.max(np.abs(r), initial=1.0)), err_msg=label
            )
            continue
        diff = np.argwhere(~((g == r) | (np.isnan(g) & np.isnan(r)) if g.dtype.kind == "f" else g == r))
        assert diff.size == 0, f"{label}: {len(diff)} entries differ, first at {diff[:3].tolist()}"


# ---------------------------------------------------------------------------------------------
# Windows straddling chunk borders.

X4 = RNG.standard_normal((2, 3, 13, 11)) * 3
X5 = RNG.standard_normal((1, 2, 7, 12, 10)) * 3
SMALL4 = ((1, 1), (2, 1), (3, 4, 1, 5), (2, 2, 2, 5))
SMALL5 = ((1,), (1, 1), (2, 1, 4), (3, 5, 4), (1, 4, 2, 3))


@pytest.mark.parametrize("kernel_size", [(3, 3), (5, 5), (2, 4), (1, 3), (7, 2)])
def test_nms2d(kernel_size):
    for mask_only in (True, False):
        assert_same(S.nms2d, (X4,), {"kernel_size": kernel_size, "mask_only": mask_only}, (SMALL4,))


@pytest.mark.parametrize("kernel_size", [(3, 3, 3), (1, 3, 3), (3, 5, 2), (5, 1, 5)])
def test_nms3d(kernel_size):
    assert_same(S.nms3d, (X5,), {"kernel_size": kernel_size}, (SMALL5,))


def test_nms_integer_bool_and_minmax():
    assert_same(S.nms2d, ((X4 * 2).astype(np.int16),), {"kernel_size": (3, 3)}, (SMALL4,))
    assert_same(S.nms3d, (X5 > 0.5,), {"kernel_size": (3, 3, 3), "mask_only": True}, (SMALL5,))
    assert_same(S.nms3d_minmax, (X5,), {}, (SMALL5,))
    assert_same(S.NonMaximaSuppression2d((3, 3)), (X4,), {}, (SMALL4,))


CONV2D = [
    ((3, 3), (1, 1), (1, 1)),
    ((4, 4), (2, 2), (2, 2)),
    ((5, 3), (2, 1), (1, 0)),
    ((2, 2), (1, 1), (0, 0)),
    ((3, 5), (3, 2), (1, 2)),
    ((1, 1), (2, 3), (0, 0)),
]


@pytest.mark.parametrize(("kernel_size", "stride", "padding"), CONV2D)
def test_conv_soft_argmax2d(kernel_size, stride, padding):
    kwargs = {
        "kernel_size": kernel_size,
        "stride": stride,
        "padding": padding,
        "temperature": 0.7,
        "output_value": True,
    }
    assert_same(S.conv_soft_argmax2d, (X4,), kwargs, (SMALL4,))
    assert_same(
        S.conv_soft_argmax2d,
        (X4,),
        {**kwargs, "normalized_coordinates": False},
        (((2,), (3,), (7, 6), (11,)),),
    )


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "bonus"),
    [
        ((3, 3, 3), (1, 1, 1), (1, 1, 1), 0.0),
        ((3, 3, 3), (1, 2, 2), (0, 1, 1), 0.5),
        ((2, 4, 3), (1, 2, 2), (1, 2, 0), 0.0),
        ((5, 3, 3), (2, 3, 1), (2, 1, 1), 2.0),
    ],
)
def test_conv_soft_argmax3d(kernel_size, stride, padding, bonus):
    kwargs = {
        "kernel_size": kernel_size,
        "stride": stride,
        "padding": padding,
        "temperature": 1.3,
        "strict_maxima_bonus": bonus,
    }
    assert_same(S.conv_soft_argmax3d, (X5,), kwargs, (SMALL5,))


@pytest.mark.parametrize("seed", range(6))
def test_random_chunkings(seed):
    """Random window geometry and random chunk borders (any size, down to one entry)."""
    rng = np.random.default_rng(seed)
    x4 = rng.standard_normal((2, 2, int(rng.integers(6, 16)), int(rng.integers(6, 16)))) * 3
    x5 = rng.standard_normal(
        (1, 2, int(rng.integers(3, 8)), int(rng.integers(6, 14)), int(rng.integers(6, 14)))
    )
    k2 = tuple(int(v) for v in rng.integers(1, 6, 2))
    s2 = tuple(int(v) for v in rng.integers(1, 4, 2))
    p2 = tuple(int(rng.integers(0, k // 2 + 1)) for k in k2)
    k3 = tuple(int(v) for v in rng.choice([1, 3], 3))
    s3 = tuple(int(v) for v in rng.integers(1, 3, 3))
    c4, c5 = random_chunks(x4.shape, rng), random_chunks(x5.shape, rng)
    assert_same(S.nms2d, (x4,), {"kernel_size": k2}, (c4,))
    assert_same(S.nms3d, (x5,), {"kernel_size": k3, "mask_only": True}, (c5,))
    assert_same(
        S.conv_soft_argmax2d,
        (x4,),
        {"kernel_size": k2, "stride": s2, "padding": p2, "output_value": True},
        (c4,),
    )
    assert_same(
        S.conv_soft_argmax3d,
        (x5,),
        {"kernel_size": k3, "stride": s3, "padding": tuple(k // 2 for k in k3), "strict_maxima_bonus": 0.3},
        (c5,),
    )
    dog = dog_stack(
        (1, 2, int(rng.integers(3, 7)), int(rng.integers(14, 26)), int(rng.integers(14, 26))), seed=seed
    )
    cd = random_chunks(dog.shape, rng, pieces=4)
    n_iters, threshold = int(rng.integers(1, 7)), float(rng.uniform(0.05, 0.6))
    assert_same(
        S.conv_quad_interp3d,
        (dog,),
        {"n_iters": n_iters, "max_subpixel_shift": threshold, "dilation_radius": int(rng.integers(0, 3))},
        (cd,),
    )
    assert_same(
        S.iterative_quad_interp3d,
        (dog,),
        {"n_iters": n_iters, "max_subpixel_shift": threshold, "allow_scale_steps": bool(seed % 2)},
        (cd,),
    )


# ---------------------------------------------------------------------------------------------
# Quadratic refinement: keypoints that move across chunk borders.

DOG = dog_stack((1, 2, 6, 30, 36), seed=5)
DOG_CHUNKS = ((1,), (1, 1), (2, 1, 3), (7, 4, 9, 10), (5, 13, 2, 16))


def smooth_noise(shape, sigma, seed):
    """Gaussian-filtered white noise (periodic, via the FFT): many maxima, many of them refined."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fftn(rng.standard_normal(shape), axes=(-3, -2, -1))
    for axis, s in zip((-3, -2, -1), sigma):
        k = np.fft.fftfreq(shape[axis])
        gain = np.exp(-2 * (np.pi * k * s) ** 2)
        spectrum = spectrum * gain.reshape([-1 if a == axis % len(shape) else 1 for a in range(len(shape))])
    return np.real(np.fft.ifftn(spectrum, axes=(-3, -2, -1)))


NOISE = smooth_noise((1, 2, 8, 32, 36), (0.8, 2.0, 2.0), seed=3)
NOISE_CHUNKS = ((1,), (2,), (3, 1, 4), (5, 6, 11, 10), (9, 2, 12, 13))


@pytest.mark.parametrize("n_iters", [0, 1, 3, 6])
@pytest.mark.parametrize("threshold", [0.6, 0.3])
def test_quad_interp_moves_across_chunks(n_iters, threshold):
    kwargs = {"n_iters": n_iters, "max_subpixel_shift": threshold}
    for volume, chunks in ((DOG, DOG_CHUNKS), (NOISE, NOISE_CHUNKS)):
        assert_same(S.iterative_quad_interp3d, (volume,), kwargs, (chunks,))
        for radius in (0, 1, 3):
            assert_same(S.conv_quad_interp3d, (volume,), {**kwargs, "dilation_radius": radius}, (chunks,))
    if n_iters == 6 and threshold == 0.6:
        # the case is only a test of halos if refined keypoints really moved more than one voxel
        for volume, far in ((DOG, 1.5), (NOISE, 1.0)):
            moved = np.abs(
                S.iterative_quad_interp3d(volume, **kwargs)[0] - S.iterative_quad_interp3d(volume, 0)[0]
            )
            assert moved.max() > far


def test_quad_interp_precomputed_mask_and_candidates():
    mask = RNG.random(DOG.shape) > 0.85
    chunks = (DOG_CHUNKS, DOG_CHUNKS)
    wrapped = [
        (
            lambda x, m, **k: S.iterative_quad_interp3d(x, precomputed_nms_mask=m, **k),
            {"max_subpixel_shift": 0.3},
        ),
        (lambda x, m, **k: S.conv_quad_interp3d(x, precomputed_nms_mask=m, **k), {"dilation_radius": 2}),
        (lambda x, m, **k: S.iterative_quad_interp3d(x, precomputed_nms_mask=m, **k), {"max_candidates": 7}),
    ]
    for func, kwargs in wrapped:
        assert_same(func, (DOG, mask), kwargs, chunks, what="quad interp with precomputed_nms_mask")
    # the mask may come with chunks of its own
    assert_same(wrapped[0][0], (DOG, mask), {}, (DOG_CHUNKS, (1, 2, 3, 10, 12)), what="mask chunked apart")


@pytest.mark.parametrize("max_candidates", [0, 1, 5, 40, 10**6])
def test_max_candidates_is_per_image_with_ties(max_candidates):
    x = DOG.copy()
    # plateau of equal maxima values: ties are broken by position (the earlier voxel first)
    mask = np.asarray(S.nms3d(x, (3, 3, 3), True))
    maxima = np.argwhere(mask[0, 0])
    for d, h, w in maxima[: len(maxima) // 2]:
        x[0, 0, d, h, w] = 0.05 + 1e-3 * (x[0, 0, d, h, w] > 0)  # keep them maxima, make values tie
    mask2 = np.asarray(S.nms3d(x, (3, 3, 3), True))
    assert mask2.sum() > 4
    assert_same(S.iterative_quad_interp3d, (x,), {"max_candidates": max_candidates}, (DOG_CHUNKS,))
    assert_same(S.IterativeQuadInterp3d(max_candidates=max_candidates), (x,), {}, (DOG_CHUNKS,))


def test_adaptive_quad_interp_uses_chunk_library():
    module = S.AdaptiveQuadInterp3d()
    assert not module.uses_conv(chunked(DOG, DOG_CHUNKS)), (
        "NumPy chunks: the sparse patch path is the CPU choice"
    )
    assert_same(module, (DOG,), {}, (DOG_CHUNKS,))
    assert_same(S.AdaptiveQuadInterp3d(mode="conv"), (DOG,), {}, (DOG_CHUNKS,))


def test_thin_volumes_and_one_chunk():
    thin = RNG.standard_normal((1, 1, 2, 9, 9))
    assert_same(S.conv_quad_interp3d, (thin,), {}, (((1,), (1,), (1, 1), (4, 5), (3, 6)),))
    assert_same(S.iterative_quad_interp3d, (DOG,), {}, (tuple((n,) for n in DOG.shape),))


# ---------------------------------------------------------------------------------------------
# Whole-map operations: H and W are rechunked; batch chunks are kept.


def test_spatial_ops_rechunk_maps():
    chunks = ((1, 1), (1, 2), (5, 8), (4, 7))
    temp = np.abs(RNG.standard_normal((2, 3, 1))) + 0.2
    assert_same(S.spatial_softmax2d, (X4,), {"temperature": 0.5}, (chunks,))
    assert_same(S.spatial_expectation2d, (np.abs(X4),), {"normalized_coordinates": False}, (chunks,))
    assert_same(S.spatial_soft_argmax2d, (X4,), {"temperature": 0.3}, (chunks,))
    assert_same(S.SpatialSoftArgmax2d(), (X4,), {}, (chunks,))
    assert_same(S.spatial_softmax2d, (X4, temp), {}, (chunks, ((2,), (1, 2), (1,))))
    assert_same(S.spatial_soft_argmax2d, (X4, temp[:1]), {}, (chunks, ((1,), (3,), (1,))))
    out = lazy(S.spatial_softmax2d, chunked(X4, chunks))
    assert out.chunks[:2] == chunks[:2] and out.chunks[2:] == ((13,), (11,))


def test_temperature_arrays():
    temp = np.abs(RNG.standard_normal((2, 3, 1, 1))) + 0.2
    assert_same(
        lambda x, t: S.conv_soft_argmax2d(x, temperature=t, stride=(2, 1), output_value=True),
        (X4, temp),
        {},
        (SMALL4, ((1, 1), (2, 1), (1,), (1,))),
        what="conv_soft_argmax2d(temperature=array)",
    )
    assert_same(
        lambda x, t: S.conv_soft_argmax3d(x, temperature=t, stride=(1, 2, 2)),
        (X5, np.asarray(0.8)),
        {},
        (SMALL5, ()),
        what="conv_soft_argmax3d(temperature=0-d array)",
    )
    # a Dask temperature is never inspected (that would compute it), so a bad one is not refused eagerly
    assert not hooks_for(da).can_inspect(chunked(temp, 1))


def test_render_gaussian2d():
    mean = RNG.uniform(-0.8, 0.8, (4, 3, 2))
    std = RNG.uniform(0.1, 0.5, (3, 2))
    assert_same(
        S.render_gaussian2d, (mean, std), {"size": (7, 9)}, (((1, 3), (2, 1), (1, 1)), ((1, 2), (2,)))
    )
    assert_same(
        S.render_gaussian2d,
        (mean[0, 0], std[0]),
        {"size": (5, 4), "normalized_coordinates": False},
        (((1, 1),), ((2,),)),
    )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_low_precision(dtype):
    x4, x5, dog = X4.astype(dtype), X5.astype(dtype), DOG.astype(dtype)
    assert_same(S.conv_soft_argmax2d, (x4,), {"output_value": True, "stride": (2, 1)}, (SMALL4,))
    assert_same(S.nms3d_minmax, (x5,), {}, (SMALL5,))
    assert_same(S.iterative_quad_interp3d, (dog,), {}, (DOG_CHUNKS,))
    assert_same(S.spatial_soft_argmax2d, (x4,), {}, (SMALL4,))


def test_empty_batches():
    for func, shape, kwargs in [
        (S.nms2d, (0, 3, 5, 5), {"kernel_size": (3, 3)}),
        (S.nms3d_minmax, (2, 0, 4, 5, 5), {}),
        (S.conv_soft_argmax2d, (2, 0, 5, 5), {"output_value": True}),
        (S.conv_soft_argmax3d, (0, 1, 4, 5, 5), {}),
        (S.conv_quad_interp3d, (0, 1, 5, 5, 5), {}),
        (S.iterative_quad_interp3d, (1, 0, 5, 5, 5), {"max_candidates": 3}),
        (S.spatial_softmax2d, (0, 1, 5, 5), {}),
        (S.spatial_soft_argmax2d, (0, 1, 5, 5), {}),
    ]:
        assert_same(func, (np.zeros(shape),), kwargs, (tuple(max(1, n // 2) for n in shape),))


# ---------------------------------------------------------------------------------------------
# Laziness, graph size, schedulers.


def test_validation_is_eager_and_computes_nothing():
    x = chunked(X5, SMALL5)
    with dask.config.set(scheduler=_forbidden):
        with pytest.raises(ValueError, match="conv_quad_interp3d"):
            S.conv_quad_interp3d(x, n_iters=-1)
        with pytest.raises(ValueError, match="kernel_size"):
            S.nms3d(x, (3, 3))
        with pytest.raises(ValueError, match="precomputed_nms_mask"):
            S.iterative_quad_interp3d(x, precomputed_nms_mask=chunked(X5[:, :1] > 0, 2))


def test_unknown_chunk_sizes_are_refused_clearly():
    x = chunked(X4, SMALL4)
    picked = x[x[:, 0, 0, 0] > -np.inf]  # boolean indexing: chunk sizes unknown (NaN)
    with (
        dask.config.set(scheduler=_forbidden),
        pytest.raises(ValueError, match=r"nms2d: .*compute_chunk_sizes"),
    ):
        S.nms2d(picked, (3, 3))


def test_compute_happens_once_and_only_on_request():
    calls = []

    def counting(dsk, keys, **kwargs):
        calls.append(len(keys) if hasattr(keys, "__len__") else 1)
        return dask.get(dsk, keys, **kwargs)

    x = chunked(DOG, DOG_CHUNKS)
    with dask.config.set(scheduler=counting):
        mask = S.nms3d(x, (3, 3, 3), mask_only=True)
        coords, values = S.iterative_quad_interp3d(x, precomputed_nms_mask=mask, n_iters=3)
        assert calls == []
        got = dask.compute(coords, values)
    assert len(calls) == 1
    ref = S.iterative_quad_interp3d(DOG, n_iters=3)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_graph_grows_with_blocks_not_with_operations():
    """One task per block and output (plus the overlap), not the thousands of a whole-array graph."""
    x = chunked(DOG, DOG_CHUNKS)
    nblocks = math.prod(len(c) for c in DOG_CHUNKS)
    coords, _ = lazy(S.conv_quad_interp3d, x)
    assert len(coords.__dask_graph__()) < 30 * nblocks
    out = lazy(S.conv_soft_argmax3d, chunked(X5, SMALL5), stride=(1, 2, 2))
    assert len(out[0].__dask_graph__()) < 30 * math.prod(len(c) for c in SMALL5)


def test_threaded_scheduler():
    x = chunked(DOG, DOG_CHUNKS)
    coords, values = lazy(S.conv_quad_interp3d, x, n_iters=4)
    got = dask.compute(coords, values, scheduler="threads", num_workers=2)
    ref = S.conv_quad_interp3d(DOG, n_iters=4)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_distributed_local_cluster():
    """A small LocalCluster (two single-threaded workers) computes the same result."""
    distributed = pytest.importorskip("distributed")
    vol = dog_stack((1, 1, 8, 48, 48), seed=2)
    chunks = ((1,), (1,), (4, 4), (24, 24), (24, 24))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        x = chunked(vol, chunks)
        mask = S.nms3d(x, (3, 3, 3), mask_only=True)
        coords, values = S.iterative_quad_interp3d(x, precomputed_nms_mask=mask)
        got = client.compute([mask, coords, values], sync=True)
        assert len(client.scheduler_info()["workers"]) == 2
    ref_mask = S.nms3d(vol, (3, 3, 3), mask_only=True)
    ref = S.iterative_quad_interp3d(vol)
    np.testing.assert_array_equal(got[0], ref_mask)
    np.testing.assert_array_equal(got[1], ref[0])
    np.testing.assert_array_equal(got[2], ref[1])
