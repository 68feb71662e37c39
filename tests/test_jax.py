"""JAX: every public function eagerly, under ``jax.jit`` (parameters static) and under ``jax.grad``.

Results are held against the eager NumPy run (the float64 tolerance of ``_helpers``); gradients
against central finite differences. The JAX backend of :mod:`subpix_xp.testing` enables x64.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from _helpers import assert_close, dog_stack  # noqa: E402

import subpix_xp as S  # noqa: E402
from subpix_xp.backends import GENERIC, Blockwise, _generic, hooks_for  # noqa: E402
from subpix_xp.testing import get_backend  # noqa: E402

BACKEND = get_backend("jax")  # enables jax_enable_x64
jnp = jax.numpy

RNG = np.random.default_rng(7)
X4 = RNG.standard_normal((2, 3, 11, 9)) * 3
X5 = RNG.standard_normal((2, 2, 5, 13, 12)) * 3
DOG = dog_stack((1, 2, 5, 20, 24), seed=3)
MEAN = RNG.uniform(-0.8, 0.8, (4, 3, 2))
STD = RNG.uniform(0.1, 0.5, (3, 2))

# name, function, positional arrays, static keyword parameters
CASES = [
    ("spatial_softmax2d", S.spatial_softmax2d, (X4,), {"temperature": 0.5}),
    ("spatial_expectation2d", S.spatial_expectation2d, (np.abs(X4),), {"normalized_coordinates": False}),
    ("spatial_soft_argmax2d", S.spatial_soft_argmax2d, (X4,), {"temperature": 0.3}),
    ("render_gaussian2d", S.render_gaussian2d, (MEAN, STD), {"size": (7, 9)}),
    (
        "conv_soft_argmax2d",
        S.conv_soft_argmax2d,
        (X4,),
        {
            "kernel_size": (4, 4),
            "stride": (2, 2),
            "padding": (2, 2),
            "temperature": 0.7,
            "output_value": True,
        },
    ),
    ("conv_soft_argmax3d", S.conv_soft_argmax3d, (X5,), {"stride": (1, 2, 1), "strict_maxima_bonus": 0.5}),
    ("nms2d", S.nms2d, (X4,), {"kernel_size": (3, 5)}),
    ("nms2d_int", S.nms2d, ((X4 * 2).astype(np.int32),), {"kernel_size": (3, 3)}),
    ("nms3d", S.nms3d, (X5,), {"kernel_size": (3, 3, 3), "mask_only": True}),
    ("nms3d_minmax", S.nms3d_minmax, (X5,), {}),
    ("conv_quad_interp3d", S.conv_quad_interp3d, (DOG,), {"dilation_radius": 2}),
    ("iterative_quad_interp3d", S.iterative_quad_interp3d, (DOG,), {"max_subpixel_shift": 0.3}),
    ("iterative_quad_interp3d_top", S.iterative_quad_interp3d, (DOG,), {"max_candidates": 6}),
    ("AdaptiveQuadInterp3d_patch", S.AdaptiveQuadInterp3d(mode="patch", strict_maxima_bonus=1.0), (DOG,), {}),
    ("AdaptiveQuadInterp3d_auto", S.AdaptiveQuadInterp3d(), (DOG,), {}),
    ("ConvSoftArgmax2d", S.ConvSoftArgmax2d(output_value=True), (X4,), {}),
    ("NonMaximaSuppression3d", S.NonMaximaSuppression3d((3, 3, 3)), (X5,), {}),
]
IDS = [c[0] for c in CASES]


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _compare(out, ref, what):
    out, ref = _tuple(out), _tuple(ref)
    assert len(out) == len(ref), what
    for o, r in zip(out, ref):
        assert isinstance(o, jax.Array), f"{what}: returned {type(o).__name__}, expected jax.Array"
        assert o.dtype == jnp.asarray(r).dtype, f"{what}: dtype {o.dtype} != {r.dtype}"
        assert_close(o, r, "float64", what=what)


@pytest.mark.parametrize(("name", "func", "arrays", "params"), CASES, ids=IDS)
def test_eager_matches_numpy(name, func, arrays, params):
    ref = func(*arrays, **params)
    inputs = [jnp.asarray(a) for a in arrays]
    out = func(*inputs, **params)
    _compare(out, ref, f"{name} eager")
    for o in _tuple(out):
        assert o.devices() == inputs[0].devices(), f"{name}: output left the input's device"


@pytest.mark.parametrize(("name", "func", "arrays", "params"), CASES, ids=IDS)
def test_jit_matches_numpy(name, func, arrays, params):
    ref = func(*arrays, **params)
    jitted = jax.jit(functools.partial(func, **params))
    out = jitted(*[jnp.asarray(a) for a in arrays])
    _compare(out, ref, f"{name} under jax.jit")


def test_jit_quad_interp_is_dense_and_static():
    """Under jit the patch path cannot use ``nonzero``: it runs the static path and matches the sparse one."""
    x = DOG.astype("float32")
    params = {"n_iters": 3, "max_subpixel_shift": 0.3, "max_candidates": 9}
    ref = S.iterative_quad_interp3d(x, **params)
    func = functools.partial(S.iterative_quad_interp3d, **params)
    shapes = jax.eval_shape(func, jax.ShapeDtypeStruct(x.shape, x.dtype))
    assert [(s.shape, s.dtype) for s in shapes] == [(r.shape, r.dtype) for r in ref]
    a = jax.jit(func)(jnp.asarray(x))
    for o, r in zip(a, ref):
        assert_close(o, r, "float32", what="iterative_quad_interp3d(max_candidates) under jit")
    # conv and patch agree once the dilation radius covers every move (n_iters - 1 of them)
    b = jax.jit(
        functools.partial(S.conv_quad_interp3d, n_iters=3, max_subpixel_shift=0.3, dilation_radius=2)
    )(jnp.asarray(x))
    c = jax.jit(functools.partial(S.iterative_quad_interp3d, n_iters=3, max_subpixel_shift=0.3))(
        jnp.asarray(x)
    )
    for p, q in zip(b, c):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))


def test_adaptive_picks_conv_for_jax():
    module = S.AdaptiveQuadInterp3d()
    assert module.uses_conv(jnp.asarray(DOG))
    assert not module.uses_conv(DOG)


def test_precomputed_mask_under_jit():
    mask = np.asarray(S.nms3d(DOG, (3, 3, 3), True))
    ref = S.iterative_quad_interp3d(DOG, precomputed_nms_mask=mask)
    out = jax.jit(lambda x, m: S.iterative_quad_interp3d(x, precomputed_nms_mask=m))(
        jnp.asarray(DOG), jnp.asarray(mask)
    )
    _compare(out, ref, "iterative_quad_interp3d(precomputed_nms_mask) under jit")


def test_temperature_array_traced_and_eager():
    temp = np.abs(RNG.standard_normal((2, 3, 1))) + 0.2
    ref = S.spatial_soft_argmax2d(X4, temp)
    out = jax.jit(S.spatial_soft_argmax2d)(jnp.asarray(X4), jnp.asarray(temp))
    _compare(out, ref, "spatial_soft_argmax2d(temperature=array) under jit")
    ref = S.conv_soft_argmax2d(X4, temperature=temp[..., None], output_value=True)
    out = jax.jit(lambda x, t: S.conv_soft_argmax2d(x, temperature=t, output_value=True))(
        jnp.asarray(X4), jnp.asarray(temp[..., None])
    )
    _compare(out, ref, "conv_soft_argmax2d(temperature=array) under jit")
    # Eagerly the values can be read, so a non-positive temperature is still refused.
    with pytest.raises(ValueError, match="temperature"):
        S.spatial_softmax2d(jnp.asarray(X4), jnp.asarray(-temp))


def test_capabilities_follow_tracing():
    hooks = hooks_for(BACKEND.xp)
    seen = {}

    def probe(x):
        seen["inspect"] = hooks.can_inspect(x)
        seen["dynamic"] = hooks.supports_dynamic_shapes(x)
        return x

    jax.jit(probe)(jnp.ones(3))
    assert seen == {"inspect": False, "dynamic": False}
    assert hooks.can_inspect(jnp.ones(3)) and hooks.supports_dynamic_shapes(jnp.ones(3))
    assert hooks.prefers_static_shapes(jnp.ones(3))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8"])
@pytest.mark.parametrize("window", [(3, 3), (2, 5), (1, 4, 3)])
def test_window_hooks_match_generic(dtype, window):
    from subpix_xp.backends import _jax

    x = (RNG.standard_normal((2, 5, 9, 8)) * 20).astype(dtype)
    if dtype.startswith("float"):
        x[0, 0, 3, 3] = np.nan
        x[1, 2, 0, 1] = np.inf
    xj = jnp.asarray(x)
    for ours, ref in ((_jax.window_max, _generic.window_max), (_jax.window_min, _generic.window_min)):
        np.testing.assert_array_equal(
            np.asarray(ours(xj, window, xp=BACKEND.xp)), np.asarray(ref(xj, window, xp=BACKEND.xp))
        )


def test_pad_and_expand_hooks_match_generic():
    from subpix_xp.backends import _jax

    x = jnp.asarray(RNG.standard_normal((2, 3, 4)))
    widths = ((1, 2), (0, 3))
    for value in (-np.inf, 0.0, 2.5):
        np.testing.assert_array_equal(
            np.asarray(_jax.pad(x, widths, value, xp=BACKEND.xp)),
            np.asarray(GENERIC.pad(x, widths, value, xp=BACKEND.xp)),
        )
    base = jnp.arange(10.0)
    index = jnp.asarray([1, 4, 5, 9])
    values = jnp.asarray([-1.0, -4.0, -5.0, -9.0])
    np.testing.assert_array_equal(
        np.asarray(_jax.expand(values, index, base, xp=BACKEND.xp)),
        np.asarray(GENERIC.expand(values, index, base, xp=BACKEND.xp)),
    )


# ---------------------------------------------------------------------------------------------
# Gradients: finite, and equal to central finite differences along a random direction.


def _check_grad(loss, x, *, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    x = jnp.asarray(x, dtype=jnp.float64)
    grad = jax.jit(jax.grad(loss))(x)
    assert np.all(np.isfinite(np.asarray(grad))), "gradient has NaN or inf"
    loss = jax.jit(loss)
    direction = jnp.asarray(np.random.default_rng(seed).standard_normal(x.shape))
    numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    analytic = jnp.sum(grad * direction)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=rtol, atol=atol)
    return grad


def _weights(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def test_grad_conv_soft_argmax():
    x = X4[:1, :2] * 0.5
    w_c = _weights((1, 2, 2, 6, 5), 1)
    w_v = _weights((1, 2, 6, 5), 2)

    def loss2d(a):
        coords, values = S.conv_soft_argmax2d(a, (3, 3), (2, 2), (1, 1), 0.8, True, output_value=True)
        return jnp.sum(coords * w_c) + jnp.sum(values * w_v)

    _check_grad(loss2d, x)
    x5 = X5[:1, :1] * 0.5

    def loss3d(a):
        coords, values = S.conv_soft_argmax3d(a, (3, 3, 3), (1, 2, 2), (1, 1, 1), 1.3)
        return jnp.sum(coords * _weights(coords.shape, 3)) + jnp.sum(values * _weights(values.shape, 4))

    _check_grad(loss3d, x5)


def test_grad_dsnt():
    x = X4[:1] * 0.5
    w = _weights((1, 3, 2), 5)
    _check_grad(lambda a: jnp.sum(S.spatial_soft_argmax2d(a, 0.7) * w), x)
    _check_grad(lambda a: jnp.sum(S.spatial_softmax2d(a, 1.5) * _weights(a.shape, 6)), x)
    probs = np.asarray(S.spatial_softmax2d(x))
    _check_grad(lambda p: jnp.sum(S.spatial_expectation2d(p) * w), probs)


def test_grad_render_gaussian2d():
    mean, std = MEAN[:2, :1], STD[:1]
    w = _weights((2, 1, 7, 9), 7)
    _check_grad(lambda m: jnp.sum(S.render_gaussian2d(m, jnp.asarray(std), (7, 9)) * w), mean)
    _check_grad(lambda s: jnp.sum(S.render_gaussian2d(jnp.asarray(mean), s, (7, 9)) * w), std)


@pytest.mark.parametrize("func", [S.conv_quad_interp3d, S.iterative_quad_interp3d])
def test_grad_quad_interp(func):
    d, y, z = np.meshgrid(np.arange(5.0), np.arange(12.0), np.arange(14.0), indexing="ij")
    x = np.zeros((1, 1, 5, 12, 14))
    for cd, cy, cz, amp in ((2.2, 3.4, 4.7, 1.0), (1.8, 8.3, 9.6, -0.7), (2.6, 7.1, 3.2, 0.8)):
        x[0, 0] += amp * np.exp(-((d - cd) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / 3.0)
    coords_ref, _ = func(x, n_iters=3, strict_maxima_bonus=0.0)
    assert np.any(coords_ref != np.asarray(func(x, n_iters=0)[0])), "no maximum was refined"
    w_c = _weights(coords_ref.shape, 8)
    w_v = _weights(x.shape, 9)

    def loss(a):
        coords, values = func(a, n_iters=3, strict_maxima_bonus=0.0)
        return jnp.sum(coords * w_c) + jnp.sum(values * w_v)

    _check_grad(loss, x, eps=1e-7, rtol=1e-4)

    # Flat input: no maximum, no NaN in the gradient.
    grad = jax.jit(jax.grad(lambda a: jnp.sum(func(a, n_iters=2)[1])))(jnp.zeros((1, 1, 5, 6, 7)))
    assert np.all(np.isfinite(np.asarray(grad)))


# ---------------------------------------------------------------------------------------------
# The compiled-program cache (backends/_jax.py ``blockwise``): what is traced, what is keyed, bounds.


def _counting(monkeypatch, module, name):
    """Replace ``module.name`` (a kernel) with a wrapper that counts its traces."""
    calls = []
    original = getattr(module, name)

    def kernel(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, kernel)
    # The operation's Blockwise declaration holds the kernel it runs: point it at the wrapper too.
    for attr, plan in list(vars(module).items()):
        if isinstance(plan, Blockwise) and plan.kernel is original:
            monkeypatch.setattr(module, attr, dataclasses.replace(plan, kernel=kernel))
    return calls


def test_float_parameters_are_traced_not_compiled_in(monkeypatch):
    """``spatial_soft_argmax2d(x, 0.5 + 1e-3 * i)`` in a loop traces (so compiles) its kernel once,
    and each call still uses its own temperature."""
    from subpix_xp import _spatial
    from subpix_xp.backends._jax import PROGRAMS

    traces = _counting(monkeypatch, _spatial, "_soft_argmax_kernel")
    x = jnp.asarray(X4)
    before = PROGRAMS.misses
    temps = [0.5 + 1e-3 * i for i in range(12)]
    outs = [S.spatial_soft_argmax2d(x, t) for t in temps]
    assert len(traces) == 1, f"traced {len(traces)} times for {len(temps)} temperatures"
    assert PROGRAMS.misses - before == 1
    for t, out in list(zip(temps, outs))[::5]:
        _compare(out, S.spatial_soft_argmax2d(X4, t), f"spatial_soft_argmax2d(T={t})")


FLOAT_CASES = [
    (
        "conv_soft_argmax3d",
        "_conv_soft_argmax",
        "_conv_kernel",
        lambda x, i: S.conv_soft_argmax3d(x, temperature=0.5 + 0.1 * i, strict_maxima_bonus=0.25 * (i + 1)),
    ),
    (
        "conv_quad_interp3d",
        "_quad_interp",
        "_conv_quad_kernel",
        lambda x, i: S.conv_quad_interp3d(x, strict_maxima_bonus=2.0 + i, max_subpixel_shift=0.3 + 0.1 * i),
    ),
    (
        "iterative_quad_interp3d",
        "_quad_interp",
        "_iterative_kernel",
        lambda x, i: S.iterative_quad_interp3d(x, n_iters=0, strict_maxima_bonus=2.0 + i),
    ),
]


@pytest.mark.parametrize(("name", "module", "kernel", "call"), FLOAT_CASES, ids=[c[0] for c in FLOAT_CASES])
def test_bonus_shift_and_temperature_are_traced(monkeypatch, name, module, kernel, call):
    """``strict_maxima_bonus``, ``max_subpixel_shift`` and temperatures are traced too (one trace for
    three values), with the results of each value (the thresholds compared in the input's dtype)."""
    import importlib

    x = DOG.astype(np.float32)
    refs = [call(x, i) for i in range(3)]
    traces = _counting(monkeypatch, importlib.import_module(f"subpix_xp.{module}"), kernel)
    outs = [call(jnp.asarray(x), i) for i in range(3)]
    assert len(traces) == 1, f"{name}: traced {len(traces)} times for 3 parameter values"
    for i, (out, ref) in enumerate(zip(outs, refs)):
        for o, r in zip(_tuple(out), _tuple(ref)):
            assert o.dtype == jnp.float32
            assert_close(o, r, "float32", what=f"{name} #{i}")


def test_program_cache_is_bounded_in_programs(monkeypatch):
    """The cache keeps at most ``size`` programs, each one compiled executable (the key holds the input
    shapes and dtypes), so its memory is bounded, not just its entry count."""
    from subpix_xp.backends._jax import PROGRAMS

    monkeypatch.setattr(PROGRAMS, "size", 3)
    for width in range(5, 11):
        S.spatial_softmax2d(jnp.ones((1, 2, 4, width)), 0.3)
        S.spatial_softmax2d(jnp.ones((1, 2, 4, width), dtype=jnp.float32), 0.7)
    assert len(PROGRAMS) == 3
    assert [p._cache_size() for p in PROGRAMS.programs()] == [1, 1, 1]


# ---------------------------------------------------------------------------------------------
# use_generic_hooks() on JAX: the hook set is part of a program's key.


@pytest.fixture
def generic_window_max_calls(monkeypatch):
    """Count the calls of the generic ``window_max`` (JAX's native one is ``lax.reduce_window``)."""
    import dataclasses

    from subpix_xp import backends
    from subpix_xp.backends._jax import PROGRAMS

    if backends._generic_forced():
        pytest.skip(
            "the generic hooks are forced everywhere (SUBPIX_XP_GENERIC_HOOKS): nothing to tell apart"
        )
    calls = []

    def window_max(x, window, *, xp):
        calls.append(window)
        return _generic.window_max(x, window, xp=xp)

    monkeypatch.setattr(backends, "GENERIC", dataclasses.replace(backends.GENERIC, window_max=window_max))
    backends._generic_kernels.cache_clear()
    PROGRAMS.clear()
    yield calls
    monkeypatch.undo()
    backends._generic_kernels.cache_clear()
    PROGRAMS.clear()


def test_use_generic_hooks_is_honoured_after_a_native_compile(generic_window_max_calls):
    from subpix_xp.backends import use_generic_hooks

    calls = generic_window_max_calls
    x = jnp.asarray(RNG.standard_normal((1, 2, 9, 14)))
    native = S.nms2d(x, (5, 5))  # a 5-wide window: the strict-maxima test calls window_max
    assert calls == [], "the native program used the generic window_max"
    with use_generic_hooks():
        generic = S.nms2d(x, (5, 5))
    assert calls, "inside use_generic_hooks() the native program of this shape was reused"
    seen = len(calls)
    S.nms2d(x, (5, 5))
    with use_generic_hooks():
        S.nms2d(x, (5, 5))
    assert len(calls) == seen, "each hook set keeps its own program: no retrace"
    np.testing.assert_array_equal(np.asarray(native), np.asarray(generic))


# ---------------------------------------------------------------------------------------------
# JAX's default 32-bit mode: int32 indices.


@pytest.mark.parametrize("func", [S.conv_quad_interp3d, S.iterative_quad_interp3d])
def test_quad_interp_index_limit_is_a_clear_error(func):
    """2.7e9 voxels cannot be numbered in int32: a ValueError naming the limit and the x64 switch
    (abstract evaluation, nothing allocated); with x64 on the same shape traces."""
    big = jax.ShapeDtypeStruct((1, 1, 3, 30000, 30000), jnp.float32)
    with jax.enable_x64(False), pytest.raises(ValueError, match=r"2147483646 voxels.*jax_enable_x64"):
        jax.eval_shape(func, big)
    with jax.enable_x64(True):
        coords, values = jax.eval_shape(func, big)
    assert coords.shape == (1, 1, 3, 3, 30000, 30000) and values.shape == big.shape
    with jax.enable_x64(False):  # just below the limit: traces in int32
        just_fits = jax.ShapeDtypeStruct((1, 1, 3, 26000, 27000), jnp.float32)
        assert jax.eval_shape(func, just_fits)[1].shape == just_fits.shape


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("func", [S.conv_quad_interp3d, S.iterative_quad_interp3d])
def test_no_int64_truncation_warnings_in_32_bit_mode(func):
    x = DOG[:, :, :, :17, :19].astype(np.float32)  # a shape of its own: traced afresh here
    ref = func(x, n_iters=3)
    with jax.enable_x64(False):
        out = func(jnp.asarray(x), n_iters=3)
        out_jit = jax.jit(functools.partial(func, n_iters=3))(jnp.asarray(x))
    for o, j, r in zip(out, out_jit, ref):
        assert o.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(o), r)
        np.testing.assert_array_equal(np.asarray(j), r)


# ---------------------------------------------------------------------------------------------
# Extreme logits under jit.


@pytest.mark.parametrize("temperature", [0.1, "array"])
@pytest.mark.parametrize("func", [S.spatial_softmax2d, S.spatial_soft_argmax2d])
def test_softmax_of_extreme_logits_under_jit_is_finite(func, temperature):
    """float32 ``randn * 1e9`` at T = 0.1: |x / T| ~ 1e10, where one float32 ulp is 1024. XLA may
    compute ``x / T`` twice with different rounding; the shifted logits must still be <= 0."""
    x = (np.random.default_rng(0).standard_normal((2, 3, 16, 16)) * 1e9).astype(np.float32)
    temp = 0.1 if temperature != "array" else jnp.full((2, 3, 1), 0.1, dtype=jnp.float32)
    ref = func(x, 0.1)
    out = jax.jit(lambda a: func(a, temp))(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(out))), "NaN or inf under jax.jit"
    # Each map is one-hot at its maximum (the gaps are ~1e9): the result of NumPy's float32 run.
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-6)


@pytest.mark.filterwarnings("error")
def test_detect_blobs_under_jit_in_32_bit_mode_prints_no_warnings():
    """The issue's case: ``detect_blobs`` under ``jax.jit`` without x64 printed int64-truncation
    warnings from the quadratic refinement; now it asks for the default index dtype."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    image = sum(
        np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        for cx, cy, s in [(20.3, 22.6, 2.0), (44.1, 40.7, 2.5), (22.5, 45.2, 3.0)]
    )
    image = image[None, None].astype(np.float32)
    with jax.enable_x64(False):
        blobs = jax.jit(functools.partial(S.detect_blobs, num_features=4))(jnp.asarray(image))
    ref = S.detect_blobs(image, num_features=4)
    assert bool(np.asarray(blobs.valid).any())
    np.testing.assert_array_equal(np.asarray(blobs.valid), ref.valid)
    np.testing.assert_allclose(np.asarray(blobs.x), ref.x, atol=1e-3)
    np.testing.assert_allclose(np.asarray(blobs.y), ref.y, atol=1e-3)


def _matched(ref, out, tol=1e-3):
    """Same valid count, and every reference keypoint has one within ``tol`` px (equal responses may swap ranks)."""
    rv, ov = np.asarray(ref.valid), np.asarray(out.valid)
    assert int(rv.sum()) == int(ov.sum()) > 0
    rx, ry, ox, oy = (np.asarray(a)[v] for a, v in ((ref.x, rv), (ref.y, rv), (out.x, ov), (out.y, ov)))
    distance = np.hypot(rx[:, None] - ox[None, :], ry[:, None] - oy[None, :]).min(axis=1)
    assert float(distance.max()) <= tol


def test_size_bucket_compiles_once_and_gives_the_unpadded_keypoints():
    """Two images of different sizes padded to one bucket: one trace, each image's own keypoints."""
    from subpix_xp._extent import bucket_shape, detect_blobs_within

    photo = pytest.importorskip("skimage.data").camera().astype(np.float32) / 255
    crops = [photo[200:290, 180:280], photo[150:246, 300:410]]  # 90 x 100 and 96 x 110
    bucket = bucket_shape(*crops[0].shape)
    assert bucket == bucket_shape(*crops[1].shape) == (96, 112)
    traces = []

    def run(image, extent):
        traces.append(image.shape)
        return detect_blobs_within(image, extent, 60)

    compiled = jax.jit(run)
    with jax.enable_x64(False):
        for crop in crops:
            padded = np.pad(
                crop, ((0, bucket[0] - crop.shape[0]), (0, bucket[1] - crop.shape[1])), mode="edge"
            )
            out = compiled(jnp.asarray(padded[None, None]), jnp.asarray(crop.shape, dtype=jnp.int32))
            _matched(S.detect_blobs(crop[None, None], 60), out)
    assert traces == [(1, 1, *bucket)]
