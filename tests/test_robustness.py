"""Robustness over every backend (docs/semantics.md, Dtypes and devices; NaN and infinity): library/dtype/device of the outputs, inputs left alone,
empty batches, NaN/inf locality, large dynamic ranges, flat and tiny volumes, half precision, and
the classes' ``repr``/``forward``.
"""

from __future__ import annotations

import functools
import inspect
import itertools

import numpy as np
import pytest
from _helpers import ATOL, RTOL, assert_close
from array_api_compat import array_namespace, device

import subpix_xp as sx
from subpix_xp.testing import BackendUnavailable, get_backend, selected_backend_names

_SELECTED = selected_backend_names()[0]


def _load(name):
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(f"backend {name!r} unavailable: {exc}")


# --------------------------------------------------------------------------------------------
# Inputs. Few distinct shapes: JAX compiles every primitive once per shape and dtype, so reusing
# them keeps the suite fast there.

MAP = (2, 3, 6, 7)  # (B, C, H, W)
VOL = (1, 2, 5, 9, 10)  # (B, C, D, H, W)


@functools.cache
def blobs(shape=VOL, seed=0, n=2) -> np.ndarray:
    """Smooth volumes: a few Gaussian blobs at fractional centres, well apart, on a gentle slope.

    Their 3x3x3 strict maxima are the blob peaks, which the quadratic fit refines.
    """
    b, c, d, h, w = shape
    rng = np.random.default_rng(seed)
    dd, yy, xx = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    out = np.empty(shape)
    for i in range(b * c):
        vol = 0.01 * (xx + 0.5 * yy) / max(h, w)
        for k in range(n):
            cy = 2.0 + (h - 4.0) * (k + rng.uniform(0.2, 0.8)) / n
            cx = rng.uniform(2.3, w - 3.3)
            cd = rng.uniform(1.3, d - 2.3)
            amp = rng.uniform(1.0, 2.0)
            vol = vol + amp * np.exp(-((dd - cd) ** 2 / 1.5 + (yy - cy) ** 2 / 3.0 + (xx - cx) ** 2 / 2.5))
        out.reshape(b * c, d, h, w)[i] = vol
    out.flags.writeable = False  # shared between tests (cached): nobody may write into it
    return out


def noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _as(be, a, dtype):
    return be.asarray(np.asarray(a, dtype=dtype))


# --------------------------------------------------------------------------------------------
# Every operation, as (arrays, call): ``arrays`` are the inputs (built from NumPy), ``call`` runs it.
# ``masks`` names the outputs that are boolean masks (by position in the output tuple).


def _map(shape=MAP, seed=0):
    return noise(shape, seed)


OPS = {
    "spatial_softmax2d": (lambda: {"input": _map()}, lambda a: sx.spatial_softmax2d(a["input"]), ()),
    "spatial_softmax2d-temp": (
        lambda: {"input": _map(), "temperature": np.linspace(0.5, 2, 6).reshape(2, 3, 1)},
        lambda a: sx.spatial_softmax2d(a["input"], a["temperature"]),
        (),
    ),
    "spatial_expectation2d": (
        lambda: {"input": np.abs(_map())},
        lambda a: sx.spatial_expectation2d(a["input"], False),
        (),
    ),
    "spatial_soft_argmax2d": (
        lambda: {"input": _map(), "temperature": np.asarray(0.7)},
        lambda a: sx.spatial_soft_argmax2d(a["input"], a["temperature"]),
        (),
    ),
    "render_gaussian2d": (
        lambda: {"mean": np.array([[1.0, 2.0], [0.5, 3.5]]), "std": np.array([[0.8, 1.5]])},
        lambda a: sx.render_gaussian2d(a["mean"], a["std"], (5, 6), False),
        (),
    ),
    "conv_soft_argmax2d": (
        lambda: {"input": _map()},
        lambda a: sx.conv_soft_argmax2d(a["input"], (3, 3), (2, 1), (1, 1), output_value=True),
        (),
    ),
    "conv_soft_argmax2d-even-temp": (
        lambda: {"input": _map(), "temperature": np.linspace(0.5, 2, 6).reshape(2, 3, 1, 1)},
        lambda a: sx.conv_soft_argmax2d(
            a["input"], (2, 4), (1, 2), (1, 2), a["temperature"], output_value=True
        ),
        (),
    ),
    "conv_soft_argmax3d": (
        lambda: {"input": noise(VOL)},
        lambda a: sx.conv_soft_argmax3d(a["input"], strict_maxima_bonus=0.5),
        (),
    ),
    "nms2d": (lambda: {"input": _map()}, lambda a: sx.nms2d(a["input"], (3, 3)), ()),
    "nms2d-mask": (lambda: {"input": _map()}, lambda a: sx.nms2d(a["input"], (3, 2), True), (0,)),
    "nms3d": (lambda: {"input": noise(VOL)}, lambda a: sx.nms3d(a["input"], (3, 3, 3)), ()),
    "nms3d-mask": (lambda: {"input": noise(VOL)}, lambda a: sx.nms3d(a["input"], (1, 3, 3), True), (0,)),
    "nms3d_minmax": (lambda: {"input": noise(VOL)}, lambda a: sx.nms3d_minmax(a["input"]), (0, 1)),
    "conv_quad_interp3d": (lambda: {"input": blobs()}, lambda a: sx.conv_quad_interp3d(a["input"]), ()),
    "conv_quad_interp3d-mask": (
        lambda: {"input": blobs(), "mask": blobs() > 1.0},
        lambda a: sx.conv_quad_interp3d(a["input"], precomputed_nms_mask=a["mask"], dilation_radius=2),
        (),
    ),
    "iterative_quad_interp3d": (
        lambda: {"input": blobs()},
        lambda a: sx.iterative_quad_interp3d(a["input"]),
        (),
    ),
    "iterative_quad_interp3d-top": (
        lambda: {"input": noise(VOL), "mask": noise(VOL, 1) > 0.5},
        lambda a: sx.iterative_quad_interp3d(a["input"], precomputed_nms_mask=a["mask"], max_candidates=3),
        (),
    ),
    "SpatialSoftArgmax2d": (lambda: {"input": _map()}, lambda a: sx.SpatialSoftArgmax2d(0.5)(a["input"]), ()),
    "ConvSoftArgmax2d": (lambda: {"input": _map()}, lambda a: sx.ConvSoftArgmax2d()(a["input"]), ()),
    "ConvSoftArgmax3d": (lambda: {"input": noise(VOL)}, lambda a: sx.ConvSoftArgmax3d()(a["input"]), ()),
    "NonMaximaSuppression2d": (
        lambda: {"input": _map()},
        lambda a: sx.NonMaximaSuppression2d((3, 3))(a["input"]),
        (),
    ),
    "NonMaximaSuppression3d": (
        lambda: {"input": noise(VOL)},
        lambda a: sx.NonMaximaSuppression3d((3, 3, 3))(a["input"]),
        (),
    ),
    "ConvQuadInterp3d": (lambda: {"input": blobs()}, lambda a: sx.ConvQuadInterp3d()(a["input"]), ()),
    "IterativeQuadInterp3d": (
        lambda: {"input": blobs()},
        lambda a: sx.IterativeQuadInterp3d()(a["input"]),
        (),
    ),
    "AdaptiveQuadInterp3d": (lambda: {"input": blobs()}, lambda a: sx.AdaptiveQuadInterp3d()(a["input"]), ()),
}


# Parameter variants and the classes (the core entries are the functions with plain parameters).
VARIANTS = {op for op in OPS if "-" in op or op[0].isupper()}


def _costly_on(be, op, dtype_name) -> bool:
    """JAX compiles each operation once per shape, dtype and parameter set (seconds for the quadratic
    refinement), so there the variants run in float64 only; the core entries run in both dtypes."""
    return be.name == "jax" and op not in OPS.keys() - VARIANTS and dtype_name != "float64"


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


def _build(be, op, dtype):
    make, call, masks = OPS[op]
    arrays = {k: be.asarray(v if v.dtype == bool else v.astype(dtype)) for k, v in make().items()}
    return arrays, call, masks


def assert_like(out, x, dtype, what=""):
    """``out`` is an array of ``x``'s library, on ``x``'s device, of dtype ``dtype``."""
    assert type(out) is type(x), f"{what}: {type(out)} is not {type(x)}"
    assert array_namespace(out) is array_namespace(x), f"{what}: namespace differs"
    assert device(out) == device(x), f"{what}: device {device(out)} != {device(x)}"
    assert out.dtype == dtype, f"{what}: dtype {out.dtype} != {dtype}"


@pytest.mark.parametrize("op", list(OPS))
def test_outputs_are_of_the_input_library_dtype_device(xp_backend, dtype_name, op):
    be = xp_backend
    if _costly_on(be, op, dtype_name):
        pytest.skip("JAX: float32 runs the core entries only (compile time); float64 runs this one")
    arrays, call, masks = _build(be, op, dtype_name)
    x = next(iter(arrays.values()))
    outs = _outputs(call(arrays))
    for i, o in enumerate(outs):
        expected = be.xp.bool if i in masks else x.dtype
        assert_like(o, x, expected, f"{op} output {i}")
        assert np.isfinite(be.to_numpy(o).astype(np.float64)).all(), f"{op} output {i} not finite"


@pytest.mark.parametrize("op", list(OPS))
def test_outputs_on_a_second_device(op):
    # array-api-strict has extra devices, which catches any array created without `device=`.
    be = (
        _load("array_api_strict")
        if "array_api_strict" in _SELECTED
        else pytest.skip("array_api_strict not selected")
    )
    xps = be.xp
    other = xps.Device("device1")
    make, call, masks = OPS[op]
    arrays = {k: xps.asarray(v, device=other) for k, v in make().items()}
    x = next(iter(arrays.values()))
    for i, o in enumerate(_outputs(call(arrays))):
        assert_like(o, x, xps.bool if i in masks else xps.float64, f"{op} output {i}")


@pytest.mark.parametrize("op", list(OPS))
def test_inputs_are_not_modified(xp_backend, op):
    be = xp_backend
    arrays, call, _ = _build(be, op, "float64")
    before = {k: np.array(be.to_numpy(v), copy=True) for k, v in arrays.items()}
    outs = _outputs(call(arrays))
    for o in outs:  # force lazy results
        be.to_numpy(o)
    for k, v in arrays.items():
        np.testing.assert_array_equal(be.to_numpy(v), before[k], err_msg=f"{op}: `{k}` was modified")


def _shares_memory(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return np.shares_memory(a, b)
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.numel() > 0


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("name", [n for n in ("numpy", "torch") if n in _SELECTED])
def test_outputs_do_not_alias_the_inputs(name, op):
    # Writing into a result must never write into the caller's input.
    be = _load(name)
    arrays, call, _ = _build(be, op, "float64")
    for i, o in enumerate(_outputs(call(arrays))):
        for k, v in arrays.items():
            assert not _shares_memory(o, v), f"{op}: output {i} shares memory with `{k}`"


# --------------------------------------------------------------------------------------------
# Empty batches.


def _empty_cases(b, c):
    """(call, input shape, expected output shapes) with ``B = b`` and ``C = c`` (one of them 0)."""
    m, v = (b, c, *MAP[2:]), (b, c, *VOL[2:])
    h, w = MAP[2:]
    d, vh, vw = VOL[2:]
    return {
        "spatial_softmax2d": (sx.spatial_softmax2d, m, [m]),
        "spatial_expectation2d": (sx.spatial_expectation2d, m, [(b, c, 2)]),
        "spatial_soft_argmax2d": (lambda x: sx.spatial_soft_argmax2d(x, 2.0), m, [(b, c, 2)]),
        "conv_soft_argmax2d": (
            lambda x: sx.conv_soft_argmax2d(x, (3, 3), (2, 2), (1, 1), output_value=True),
            m,
            [(b, c, 2, (h - 1) // 2 + 1, (w - 1) // 2 + 1), (b, c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)],
        ),
        "conv_soft_argmax3d": (
            lambda x: sx.conv_soft_argmax3d(x, strict_maxima_bonus=1.0),
            v,
            [(b, c, 3, d, vh, vw), v],
        ),
        "nms2d": (lambda x: sx.nms2d(x, (3, 3)), m, [m]),
        "nms2d-mask": (lambda x: sx.nms2d(x, (3, 3), True), m, [m]),
        "nms3d": (lambda x: sx.nms3d(x, (3, 3, 3), True), v, [v]),
        "nms3d_minmax": (sx.nms3d_minmax, v, [v, v]),
        "conv_quad_interp3d": (sx.conv_quad_interp3d, v, [(b, c, 3, d, vh, vw), v]),
        "iterative_quad_interp3d": (
            lambda x: sx.iterative_quad_interp3d(x, max_candidates=2),
            v,
            [(b, c, 3, d, vh, vw), v],
        ),
        "AdaptiveQuadInterp3d": (sx.AdaptiveQuadInterp3d(), v, [(b, c, 3, d, vh, vw), v]),
    }


@pytest.mark.parametrize("op", list(_empty_cases(0, 1)))
@pytest.mark.parametrize(("b", "c"), [(0, 2), (2, 0)])
def test_empty_batches(xp_backend, op, b, c):
    be = xp_backend
    call, shape, expected = _empty_cases(b, c)[op]
    x = _as(be, np.zeros(shape), np.float64)
    outs = _outputs(call(x))
    assert len(outs) == len(expected)
    for o, e in zip(outs, expected):
        assert tuple(o.shape) == e, f"{op}: shape {tuple(o.shape)} != {e}"
        assert type(o) is type(x)
        assert be.to_numpy(o).shape == e


@pytest.mark.parametrize("shape", [(0, 2), (3, 0, 2)])
def test_render_gaussian2d_empty(xp_backend, shape):
    be = xp_backend
    heat = sx.render_gaussian2d(
        _as(be, np.zeros(shape), np.float64), _as(be, np.ones(shape), np.float64), (3, 4)
    )
    assert tuple(heat.shape) == (*shape[:-1], 3, 4)
    assert be.to_numpy(heat).shape == (*shape[:-1], 3, 4)


# --------------------------------------------------------------------------------------------
# NaN and inf stay in their window. (NumPy warns about inf - inf; that is not what is tested here.)

BAD = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}


def _window_hits(shape, bad, window, pad=None):
    """For each position of a stride-1 window op, whether its window contains ``bad`` (a tuple index).

    The window at position ``p`` spans ``p - before .. p - before + k - 1`` with ``before = (k-1)//2``
    (NMS) or ``before = pad`` (soft-argmax with padding ``pad``).
    """
    hit = np.zeros(shape, dtype=bool)
    befores = pad if pad is not None else [(k - 1) // 2 for k in window]
    for pos in itertools.product(*(range(n) for n in shape)):
        hit[pos] = all(p - a <= q <= p - a + k - 1 for p, q, k, a in zip(pos, bad, window, befores))
    return hit


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("which", list(BAD))
@pytest.mark.parametrize(("dim", "window"), [(2, (3, 3)), (2, (2, 3)), (3, (3, 3, 3)), (3, (1, 3, 2))])
def test_nms_bad_value_stays_in_its_windows(xp_backend, which, dim, window):
    be = xp_backend
    shape = MAP if dim == 2 else VOL
    x = noise(shape, seed=4)
    bad = (2, 3) if dim == 2 else (2, 3, 3)
    xb = x.copy()
    xb[(0, 0, *bad)] = BAD[which]
    nms = sx.nms2d if dim == 2 else sx.nms3d
    clean = be.to_numpy(nms(be.asarray(x), window, True))
    dirty = be.to_numpy(nms(be.asarray(xb), window, True))
    hits = _window_hits(shape[2:], bad, window)
    np.testing.assert_array_equal(dirty[0, 0][~hits], clean[0, 0][~hits])
    np.testing.assert_array_equal(dirty[0, 1:], clean[0, 1:])
    np.testing.assert_array_equal(dirty[1:], clean[1:])
    if which == "nan":  # NaN is no maximum and no window holding it has one
        assert not dirty[0, 0][hits].any()
    if which == "-inf":
        assert not dirty[(0, 0, *bad)]
    values = be.to_numpy(nms(be.asarray(xb), window, False))
    np.testing.assert_array_equal(values, np.where(dirty, xb, 0.0))


@pytest.mark.parametrize("func", ["nms2d", "nms3d", "nms3d_minmax"])
def test_plus_inf_is_never_a_strict_maximum(xp_backend, func):
    be = xp_backend
    x = noise(MAP if func == "nms2d" else VOL, seed=2)
    bad = (0, 0, 2, 2) if func == "nms2d" else (0, 0, 2, 2, 2)
    x[bad] = np.inf
    if func == "nms2d":
        mask = sx.nms2d(be.asarray(x), (3, 3), True)
    elif func == "nms3d":
        mask = sx.nms3d(be.asarray(x), (3, 3, 3), True)
    else:
        mask = sx.nms3d_minmax(be.asarray(x))[0]
    assert not be.to_numpy(mask)[bad]


def test_nms3d_minmax_nan_stays_in_its_windows(xp_backend):
    be = xp_backend
    x = noise(VOL, seed=3)
    xb = x.copy()
    xb[0, 0, 2, 2, 2] = np.nan
    max_mask, min_mask = (be.to_numpy(m) for m in sx.nms3d_minmax(be.asarray(xb)))
    clean_max, clean_min = (be.to_numpy(m) for m in sx.nms3d_minmax(be.asarray(x)))
    hits = _window_hits(VOL[2:], (2, 2, 2), (3, 3, 3))
    assert not max_mask[0, 0][hits].any()
    assert not min_mask[0, 0][hits].any()
    np.testing.assert_array_equal(max_mask[0, 0][~hits], clean_max[0, 0][~hits])
    np.testing.assert_array_equal(min_mask[0, 0][~hits], clean_min[0, 0][~hits])
    np.testing.assert_array_equal(max_mask[0, 1], clean_max[0, 1])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("which", list(BAD))
@pytest.mark.parametrize(
    ("dim", "kernel", "padding"), [(2, (3, 3), (1, 1)), (2, (4, 3), (2, 0)), (3, (3, 3, 3), (1, 1, 1))]
)
def test_conv_soft_argmax_bad_value_stays_in_its_windows(xp_backend, which, dim, kernel, padding):
    be = xp_backend
    shape = MAP if dim == 2 else VOL
    x = noise(shape, seed=5)
    bad = (3, 4) if dim == 2 else (2, 3, 3)
    xb = x.copy()
    xb[(0, 0, *bad)] = BAD[which]
    func = sx.conv_soft_argmax2d if dim == 2 else sx.conv_soft_argmax3d
    kw = {"kernel_size": kernel, "padding": padding, "normalized_coordinates": False, "output_value": True}
    c0, v0 = (be.to_numpy(a) for a in func(be.asarray(x), **kw))
    c1, v1 = (be.to_numpy(a) for a in func(be.asarray(xb), **kw))
    hits = _window_hits(v0.shape[2:], bad, kernel, padding)
    assert hits.any() and not hits.all()
    np.testing.assert_array_equal(v1[0, 0][~hits], v0[0, 0][~hits])
    for axis in range(dim):
        np.testing.assert_array_equal(c1[0, 0, axis][~hits], c0[0, 0, axis][~hits])
    np.testing.assert_array_equal(c1[0, 1:], c0[0, 1:])
    np.testing.assert_array_equal(v1[0, 1:], v0[0, 1:])
    np.testing.assert_array_equal(c1[1:], c0[1:])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("which", list(BAD))
def test_spatial_soft_argmax_bad_value_stays_in_its_map(xp_backend, which):
    be = xp_backend
    x = noise(MAP, seed=6)
    xb = x.copy()
    xb[1, 1, 2, 3] = BAD[which]
    clean = be.to_numpy(sx.spatial_soft_argmax2d(be.asarray(x)))
    dirty = be.to_numpy(sx.spatial_soft_argmax2d(be.asarray(xb)))
    keep = np.ones(MAP[:2], dtype=bool)
    keep[1, 1] = False
    np.testing.assert_array_equal(dirty[keep], clean[keep])


def _linf_distance(shape, point):
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return np.max([np.abs(g - p) for g, p in zip(grids, point)], axis=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("which", list(BAD))
@pytest.mark.parametrize("where", ["far", "beside-a-maximum"])
@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
def test_quad_interp_bad_value_stays_local(xp_backend, which, where, func):
    """With ``n_iters=2`` a keypoint visits only its own 3x3x3 ball and reads within distance 2 of
    its start, so every output at L-inf distance >= 3 from a bad voxel is untouched."""
    be = xp_backend
    x = blobs()
    maxima = np.argwhere(sx.nms3d(x, (3, 3, 3), True)[0, 0])
    assert len(maxima) >= 2
    size = x.shape[2:]
    if where == "far":
        dist = np.min([_linf_distance(size, m) for m in maxima], axis=0)
        bad = tuple(int(i) for i in np.argwhere(dist >= 3)[0])
    else:
        m = maxima[0]
        bad = (int(m[0]), int(m[1]), int(m[2]) + 1)
    xb = x.copy()
    xb[(0, 0, *bad)] = BAD[which]
    f = getattr(sx, func)
    c0, v0 = (be.to_numpy(a) for a in f(be.asarray(x), n_iters=2))
    c1, v1 = (be.to_numpy(a) for a in f(be.asarray(xb), n_iters=2))
    keep = _linf_distance(size, bad) >= 3
    # Some maxima stand far from the bad voxel and must be refined as before.
    assert any(keep[tuple(m)] for m in maxima)
    np.testing.assert_array_equal(v1[0, 0][keep], v0[0, 0][keep])
    for axis in range(3):
        np.testing.assert_array_equal(c1[0, 0, axis][keep], c0[0, 0, axis][keep])
    np.testing.assert_array_equal(c1[0, 1], c0[0, 1])
    np.testing.assert_array_equal(v1[0, 1], v0[0, 1])
    # The coordinates never turn non-finite: a fit that reads the bad voxel is not solved.
    assert np.isfinite(c1).all()


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
def test_quad_interp_nan_out_of_reach_changes_nothing_else(xp_backend, func):
    # Default parameters (5 iterations): a NaN farther than any keypoint can travel and read is invisible.
    be = xp_backend
    dd, yy, xx = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in VOL[2:]), indexing="ij")
    x = blobs().copy()
    x[0, 0] = np.exp(-((dd - 2.3) ** 2 / 1.5 + (yy - 4.4) ** 2 / 3.0 + (xx - 2.6) ** 2 / 2.5))
    maxima = np.argwhere(sx.nms3d(x, (3, 3, 3), True)[0, 0])
    assert len(maxima) == 1
    bad = (2, 4, VOL[-1] - 1)
    assert min(_linf_distance(VOL[2:], m)[bad] for m in maxima) >= 6, "the NaN must be out of reach"
    xb = x.copy()
    xb[(0, 0, *bad)] = np.nan
    c0, v0 = (be.to_numpy(a) for a in getattr(sx, func)(be.asarray(x)))
    c1, v1 = (be.to_numpy(a) for a in getattr(sx, func)(be.asarray(xb)))
    keep = np.ones(x.shape, dtype=bool)
    keep[(0, 0, *bad)] = False
    np.testing.assert_array_equal(v1[keep], v0[keep])
    np.testing.assert_array_equal(c1, c0)
    assert np.isnan(v1[(0, 0, *bad)])


# --------------------------------------------------------------------------------------------
# Large dynamic range: a window far below the global maximum still finds its own peak.


def _reference_window_soft_argmax(x, kernel, padding, temperature=1.0):
    """Per-window softmax (shifted by the window's own max) in float64, stride 1, pixel coordinates.

    Returns coordinates ``(ndim, *out)`` in array-axis order and values ``out``.
    """
    x = np.asarray(x, dtype=np.float64)
    out_shape = tuple(n + 2 * p - k + 1 for n, p, k in zip(x.shape, padding, kernel))
    coords = np.zeros((x.ndim, *out_shape))
    values = np.zeros(out_shape)
    for o in itertools.product(*(range(n) for n in out_shape)):
        pts, vals = [], []
        for off in itertools.product(*(range(k) for k in kernel)):
            q = tuple(oi - p + d for oi, p, d in zip(o, padding, off))
            if all(0 <= qi < n for qi, n in zip(q, x.shape)):
                pts.append(q)
                vals.append(x[q])
        vals = np.array(vals)
        w = np.exp((vals - vals.max()) / temperature)
        w /= w.sum()
        coords[(slice(None), *o)] = w @ np.array(pts, dtype=np.float64)
        values[o] = w @ vals
    return coords, values


@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("dim", [2, 3])
def test_window_far_below_global_max_finds_its_own_peak(xp_backend, dim, temperature):
    be = xp_backend
    x = np.zeros((MAP if dim == 2 else VOL)[2:])
    if dim == 2:
        x[0, 0] = 200.0
        x[3, 4], x[3, 5], x[2, 5] = 5.0, 3.0, 1.5
        peak = (3, 4)
    else:
        x[0, 0, 0] = 200.0
        x[2, 5, 6], x[2, 5, 7], x[1, 5, 7] = 5.0, 3.0, 1.5
        peak = (2, 5, 6)
    kernel, padding = (3,) * dim, (1,) * dim
    ref_coords, ref_values = _reference_window_soft_argmax(x, kernel, padding, temperature)
    func = sx.conv_soft_argmax2d if dim == 2 else sx.conv_soft_argmax3d
    batch = np.broadcast_to(x, (MAP if dim == 2 else VOL)[:2] + x.shape).astype(np.float32)
    coords, values = func(
        be.asarray(batch),
        kernel,
        (1,) * dim,
        padding,
        temperature,
        normalized_coordinates=False,
        output_value=True,
    )
    coords, values = be.to_numpy(coords)[0, 0], be.to_numpy(values)[0, 0]
    # Output axis order: (x, y) in 2-D, (depth, x, y) in 3-D.
    order = [1, 0] if dim == 2 else [0, 2, 1]
    ref_coords = ref_coords[order]
    assert_close(coords, ref_coords.astype(np.float32), "float32", what="coords")
    assert_close(values, ref_values.astype(np.float32), "float32", what="values", scale=10.0)
    # The windows beside the small peak lean towards it: not to the window centre.
    beside = tuple(p - 1 for p in peak)
    assert np.abs(coords[(slice(None), *beside)] - np.array(beside, dtype=np.float64)[order]).max() > 0.5


# --------------------------------------------------------------------------------------------
# Flat and tiny volumes in the quadratic refinement.


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("level", [0.0, 3.7, -1e-30])
def test_flat_volume_is_returned_unrefined(xp_backend, dtype_name, func, level):
    # Every voxel a "maximum" (precomputed mask) on a flat volume: no Hessian is solvable.
    be = xp_backend
    if _costly_on(be, "flat", dtype_name):
        pytest.skip("JAX: float64 only (one compilation per dtype and parameter set)")
    x = _as(be, np.full(VOL, level), dtype_name)
    mask = be.asarray(np.ones(VOL, dtype=bool))
    coords, values = (be.to_numpy(a) for a in getattr(sx, func)(x, precomputed_nms_mask=mask))
    grid_d, grid_y, grid_x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in VOL[2:]), indexing="ij")
    np.testing.assert_array_equal(coords[0, 0], np.stack([grid_d, grid_x, grid_y]))
    np.testing.assert_array_equal(values, be.to_numpy(x))


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("amplitude", [1e-30, 1e-38, 1e30])
@pytest.mark.parametrize("all_voxels", [False, True])
def test_tiny_and_huge_amplitudes_stay_finite(xp_backend, dtype_name, func, amplitude, all_voxels):
    be = xp_backend
    if all_voxels and _costly_on(be, "tiny", dtype_name):
        pytest.skip("JAX: float64 only with a precomputed mask (one compilation per dtype and parameter set)")
    if dtype_name == "float32" and amplitude > 1e20:
        amplitude = 1e15  # 1e30 * curvature products overflow float32 before any scaling
    x = blobs() * amplitude
    mask = be.asarray(np.ones(x.shape, dtype=bool)) if all_voxels else None
    coords, values = getattr(sx, func)(_as(be, x, dtype_name), precomputed_nms_mask=mask)
    assert np.isfinite(be.to_numpy(coords)).all()
    assert np.isfinite(be.to_numpy(values)).all()


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_float64_coordinates_do_not_depend_on_amplitude(xp_backend, func, scale):
    be = xp_backend
    if not be.float64:
        pytest.skip(f"{be.name} has no float64")
    x = blobs()
    f = getattr(sx, func)
    c0 = be.to_numpy(f(be.asarray(x))[0])
    c1 = be.to_numpy(f(be.asarray(x * scale))[0])
    grid = be.to_numpy(f(be.asarray(np.zeros_like(x)))[0])
    assert np.abs(c0 - grid).max() > 0.05, "nothing was refined: the case checks nothing"
    np.testing.assert_allclose(c1, c0, atol=ATOL["float64"], rtol=0)


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_float64_values_scale_with_amplitude(func, scale):
    # Without the bonus the refined value is linear in the input (NumPy: one more parameter set).
    x = blobs()
    f = getattr(sx, func)
    v0 = f(x, strict_maxima_bonus=0.0)[1]
    v1 = f(x * scale, strict_maxima_bonus=0.0)[1]
    np.testing.assert_allclose(v1 / scale, v0, atol=0, rtol=RTOL["float64"])


# --------------------------------------------------------------------------------------------
# Half precision.

HALF_OPS = [op for op in OPS if "temp" not in op]


def _half_backends():
    out = []
    if "numpy" in _SELECTED:
        out.append(("numpy", "float16"))
    if "torch" in _SELECTED:
        out += [("torch", "float16"), ("torch", "bfloat16")]
    return out


def _to_half(be, a, dtype):
    if be.name == "torch":
        import torch

        return torch.asarray(np.array(a)).to(getattr(torch, dtype))
    return a.astype(dtype)


@pytest.mark.parametrize("op", HALF_OPS)
@pytest.mark.parametrize(("name", "half"), _half_backends())
def test_half_precision(name, half, op):
    """A half-precision input gives a result of its dtype, equal to the float32 run on the same values."""
    be = _load(name)
    make, call, masks = OPS[op]
    np_in = make()
    half_in = {k: (be.asarray(v) if v.dtype == bool else _to_half(be, v, half)) for k, v in np_in.items()}
    # The same (rounded) values in float32.
    f32_in = {
        k: (v if np_in[k].dtype == bool else be.xp.astype(v, be.xp.float32)) for k, v in half_in.items()
    }
    x = next(iter(half_in.values()))
    outs, refs = _outputs(call(half_in)), _outputs(call(f32_in))
    for i, (o, r) in enumerate(zip(outs, refs)):
        assert_like(o, x, be.xp.bool if i in masks else x.dtype, f"{op} output {i}")
        o_np = be.to_numpy(o if i in masks else be.xp.astype(o, be.xp.float32))
        r_np = be.to_numpy(r if i in masks else be.xp.astype(be.xp.astype(r, x.dtype), be.xp.float32))
        np.testing.assert_array_equal(o_np, r_np, err_msg=f"{op} output {i}")


# --------------------------------------------------------------------------------------------
# Byte order: FITS files (astronomy) hold big-endian data; NumPy arrays (and Dask arrays of NumPy
# chunks) are the only ones that can carry a non-native byte order.


def _swapped(a, dtype):
    """``a`` in ``dtype`` with the byte order this machine does not use (``>f8`` on x86)."""
    swapped = np.dtype(dtype).newbyteorder("S")
    assert not swapped.isnative
    return np.asarray(a).astype(dtype).astype(swapped)


def _byte_order_backends():
    return [n for n in ("numpy", "dask") if n in _SELECTED]


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", _byte_order_backends())
def test_non_native_byte_order_gives_the_native_result(name, dtype, op):
    """A byte-swapped input computes in its own precision: every output equals the native input's
    and comes out in the native dtype of that precision (``>f8`` -> float64, ``>f4`` -> float32)."""
    be = _load(name)
    make, call, masks = OPS[op]
    np_in = make()
    native = {k: be.asarray(v if v.dtype == bool else v.astype(dtype)) for k, v in np_in.items()}
    swapped = {k: be.asarray(v if v.dtype == bool else _swapped(v, dtype)) for k, v in np_in.items()}
    assert all(not v.dtype.isnative for k, v in swapped.items() if np_in[k].dtype != bool)
    outs, refs = _outputs(call(swapped)), _outputs(call(native))
    for i, (o, r) in enumerate(zip(outs, refs)):
        expected = np.dtype(bool) if i in masks else np.dtype(dtype)
        assert o.dtype == expected and o.dtype.isnative, f"{op} output {i}: dtype {o.dtype.str}"
        np.testing.assert_array_equal(be.to_numpy(o), be.to_numpy(r), err_msg=f"{op} output {i}")


@pytest.mark.parametrize("dtype", ["int16", "int32", "int64", "uint16", "uint32", "float16"])
@pytest.mark.parametrize("func", ["nms2d", "nms3d", "nms3d_minmax"])
def test_non_native_integer_nms(func, dtype):
    """The NMS functions take any real dtype: a byte-swapped one gives the native dtype's result."""
    x = np.round(noise(VOL if func != "nms2d" else MAP) * 20) % 50
    call = {
        "nms2d": lambda a: sx.nms2d(a, (3, 3)),
        "nms3d": lambda a: sx.nms3d(a, (3, 1, 3)),
        "nms3d_minmax": sx.nms3d_minmax,
    }[func]
    native = x.astype(dtype)
    outs, refs = _outputs(call(_swapped(x, dtype))), _outputs(call(native))
    for o, r in zip(outs, refs):
        assert o.dtype == r.dtype and o.dtype.isnative, f"{func}: dtype {o.dtype.str}"
        np.testing.assert_array_equal(o, r)


def _bump(dtype):
    """A 1e-3 Gaussian bump on a 1e4 background: float32 cannot resolve it (its ulp there is 1e-3)."""
    d, y, x = np.meshgrid(np.arange(5.0), np.arange(7.0), np.arange(7.0), indexing="ij")
    vol = 1e4 + 1e-3 * np.exp(-((d - 2.2) ** 2 + (y - 3.4) ** 2 + (x - 2.7) ** 2) / 4.0)
    return np.asarray(vol[None, None]).astype(dtype)


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
def test_big_endian_float64_keeps_its_precision(func):
    """``>f8`` refines a bump that only float64 resolves, exactly as ``<f8`` does (not in float32)."""
    run = getattr(sx, func)
    ref_c, ref_v = run(_bump("<f8"), strict_maxima_bonus=0.0)
    big_c, big_v = run(_bump(">f8"), strict_maxima_bonus=0.0)
    np.testing.assert_allclose(ref_c[0, 0, :, 2, 3, 3], [2.2, 2.7, 3.4], atol=0.01)
    for big, ref in ((big_c, ref_c), (big_v, ref_v)):
        assert big.dtype == np.float64 and big.dtype.isnative, big.dtype.str
        np.testing.assert_array_equal(big, ref)


def test_detect_blobs_big_endian_equals_native():
    """``detect_blobs`` on a ``>f8`` image: the keypoints of the ``<f8`` image, in native float64."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float64)
    image = 1e4 + 1e-3 * sum(
        np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        for cx, cy, s in rng.uniform((8, 8, 1.5), (40, 40, 3.0), (4, 3))
    )
    image = image[None, None]
    ref = sx.detect_blobs(image.astype("<f8"), num_features=8)
    big = sx.detect_blobs(image.astype(">f8"), num_features=8)
    assert bool(ref.valid.any()), "the float64 reference should find the blobs"
    for field, b, r in zip(ref._fields, big, ref):
        assert b.dtype == r.dtype and b.dtype.isnative, f"{field}: {b.dtype.str}"
        np.testing.assert_array_equal(b, r, err_msg=field)


# --------------------------------------------------------------------------------------------
# use_generic_hooks() and Dask: a graph runs the hooks in force when it was built.


@pytest.fixture
def generic_pad_calls(monkeypatch):
    """Count the calls of the generic ``pad`` hook (NumPy's native one is ``np.pad``)."""
    import dataclasses

    from subpix_xp import backends
    from subpix_xp.backends import _generic, _numpy

    if backends._generic_forced():
        pytest.skip(
            "the generic hooks are forced everywhere (SUBPIX_XP_GENERIC_HOOKS): nothing to tell apart"
        )
    assert _numpy.HOOKS.pad is not _generic.pad
    calls = []

    def pad(x, widths, value, *, xp):
        calls.append(widths)
        return _generic.pad(x, widths, value, xp=xp)

    monkeypatch.setattr(backends, "GENERIC", dataclasses.replace(backends.GENERIC, pad=pad))
    backends._generic_kernels.cache_clear()
    yield calls
    monkeypatch.undo()
    backends._generic_kernels.cache_clear()


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_dask_graph_runs_the_hooks_chosen_when_it_was_built(generic_pad_calls, scheduler):
    """Built inside ``use_generic_hooks()``, computed outside: generic kernels (also on the threaded
    scheduler's workers, which do not see the context); built outside, computed inside: native."""
    from subpix_xp.backends import use_generic_hooks

    be = _load("dask")
    calls = generic_pad_calls
    x = noise((2, 2, 12, 13), seed=5)
    ref = sx.nms2d(x, (5, 5))
    calls.clear()
    with use_generic_hooks():
        lazy = sx.nms2d(be.asarray(x), (5, 5))
    assert calls == [], "building the graph computed something"
    out = lazy.compute(scheduler=scheduler)
    assert calls, "a graph built inside use_generic_hooks() ran the native kernels"
    np.testing.assert_array_equal(out, ref)
    calls.clear()
    lazy = sx.nms2d(be.asarray(x), (5, 5))
    with use_generic_hooks():
        out = lazy.compute(scheduler=scheduler)
    assert calls == [], "a graph built outside use_generic_hooks() ran the generic kernels"
    np.testing.assert_array_equal(out, ref)


# --------------------------------------------------------------------------------------------
# The classes: repr and forward.

CLASSES = {
    sx.SpatialSoftArgmax2d: ({"temperature": 0.25, "normalized_coordinates": False}, MAP),
    sx.ConvSoftArgmax2d: (
        {
            "kernel_size": (5, 3),
            "stride": (2, 1),
            "padding": (2, 0),
            "temperature": 0.5,
            "normalized_coordinates": False,
            "eps": 1e-6,
            "output_value": True,
        },
        MAP,
    ),
    sx.ConvSoftArgmax3d: (
        {
            "kernel_size": (3, 3, 1),
            "stride": (1, 2, 1),
            "padding": (1, 0, 0),
            "temperature": 2.0,
            "normalized_coordinates": True,
            "eps": 1e-5,
            "output_value": False,
            "strict_maxima_bonus": 0.5,
        },
        VOL,
    ),
    sx.NonMaximaSuppression2d: ({"kernel_size": (3, 5)}, MAP),
    sx.NonMaximaSuppression3d: ({"kernel_size": (3, 1, 3)}, VOL),
    sx.ConvQuadInterp3d: (
        {
            "n_iters": 3,
            "strict_maxima_bonus": 0.5,
            "max_subpixel_shift": 0.55,
            "dilation_radius": 2,
            "allow_scale_steps": False,
        },
        None,
    ),
    sx.IterativeQuadInterp3d: (
        {
            "n_iters": 4,
            "strict_maxima_bonus": 1.5,
            "max_subpixel_shift": 0.7,
            "allow_scale_steps": False,
            "max_candidates": 7,
        },
        None,
    ),
    sx.AdaptiveQuadInterp3d: (
        {
            "mode": "conv",
            "n_iters": 2,
            "strict_maxima_bonus": 0.0,
            "max_subpixel_shift": 0.65,
            "dilation_radius": 3,
            "allow_scale_steps": False,
            "max_candidates": 11,
        },
        None,
    ),
}


@pytest.mark.parametrize("cls", list(CLASSES), ids=lambda c: c.__name__)
@pytest.mark.parametrize("defaults", [True, False])
def test_repr_shows_every_parameter(cls, defaults):
    params, _ = CLASSES[cls]
    sig = inspect.signature(cls.__init__)
    names = [n for n in sig.parameters if n != "self"]
    assert sorted(names) == sorted(params), "the test must cover every constructor parameter"
    if defaults:
        values = {
            n: sig.parameters[n].default for n in names if sig.parameters[n].default is not inspect._empty
        }
        values |= {n: params[n] for n in names if n not in values}
    else:
        values = params
    obj = cls(**values)
    text = repr(obj)
    assert text.startswith(f"{cls.__name__}(")
    for n in names:
        assert f"{n}={values[n]!r}" in text, f"{text} lacks {n}={values[n]!r}"
    # The repr is a valid constructor call that rebuilds an equal object.
    rebuilt = eval(text, {cls.__name__: cls})
    assert repr(rebuilt) == text


@pytest.mark.parametrize("cls", list(CLASSES), ids=lambda c: c.__name__)
def test_forward_is_call(xp_backend, cls):
    be = xp_backend
    params, shape = CLASSES[cls]
    # The quadratic-refinement classes with their defaults here (JAX compiles once per parameter set;
    # the parameters' plumbing is checked in test_class_runs_its_function below).
    obj = cls() if shape is None else cls(**params)
    x = be.asarray(blobs() if shape is None else noise(shape, seed=10))
    extra = [{}]
    if cls in (sx.NonMaximaSuppression2d, sx.NonMaximaSuppression3d):
        extra = [{}, {"mask_only": True}]
    elif shape is None:
        extra = [{}, {"precomputed_nms_mask": be.asarray(blobs() > 1.2)}]
    for kw in extra:
        a, b = _outputs(obj(x, **kw)), _outputs(obj.forward(x, **kw))
        assert len(a) == len(b)
        for p, q in zip(a, b):
            np.testing.assert_array_equal(be.to_numpy(p), be.to_numpy(q))


@pytest.mark.parametrize("cls", list(CLASSES), ids=lambda c: c.__name__)
def test_class_runs_its_function(cls):
    """Every constructor parameter reaches the function, in the right place (NumPy)."""
    params, shape = CLASSES[cls]
    obj = cls(**params)
    x = blobs() if shape is None else noise(shape, seed=10)
    mask = blobs() > 1.2
    p = params
    calls = {
        sx.SpatialSoftArgmax2d: lambda: sx.spatial_soft_argmax2d(x, 0.25, False),
        sx.ConvSoftArgmax2d: lambda: sx.conv_soft_argmax2d(
            x,
            p["kernel_size"],
            p["stride"],
            p["padding"],
            p["temperature"],
            p["normalized_coordinates"],
            p["eps"],
            p["output_value"],
        ),
        sx.ConvSoftArgmax3d: lambda: sx.conv_soft_argmax3d(
            x,
            p["kernel_size"],
            p["stride"],
            p["padding"],
            p["temperature"],
            p["normalized_coordinates"],
            p["eps"],
            p["output_value"],
            p["strict_maxima_bonus"],
        ),
        sx.NonMaximaSuppression2d: lambda: sx.nms2d(x, (3, 5)),
        sx.NonMaximaSuppression3d: lambda: sx.nms3d(x, (3, 1, 3)),
        sx.ConvQuadInterp3d: lambda m=None: sx.conv_quad_interp3d(x, 3, 0.5, 0.55, m, 2, False),
        sx.IterativeQuadInterp3d: lambda m=None: sx.iterative_quad_interp3d(x, 4, 1.5, 0.7, False, m, 7),
        sx.AdaptiveQuadInterp3d: lambda m=None: sx.conv_quad_interp3d(x, 2, 0.0, 0.65, m, 3, False),
    }
    for got, want in zip(_outputs(obj(x)), _outputs(calls[cls]())):
        np.testing.assert_array_equal(got, want)
    if shape is None:
        for got, want in zip(_outputs(obj(x, precomputed_nms_mask=mask)), _outputs(calls[cls](mask))):
            np.testing.assert_array_equal(got, want)
        # The non-default parameters change the result: the comparison above is not vacuous.
        default = _outputs(cls()(x))
        assert any(not np.array_equal(a, b) for a, b in zip(_outputs(obj(x)), default))
