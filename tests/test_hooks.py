"""Every native hook agrees with its generic (standard-only) fallback, and the switch forces the generic ones.

Each array hook of :class:`subpix_xp.backends.Hooks` needs a case generator in ``CASES``; a hook
without one fails :func:`test_every_hook_has_cases`, so a new hook cannot land untested.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import load_backend

import subpix_xp
from subpix_xp.backends import _CAPABILITIES, GENERIC, Hooks, hooks_for, use_generic_hooks
from subpix_xp.testing import to_numpy

# Capabilities describe what an array is (traced, lazy, on a device); they stay native when the
# generic kernels are forced, and are tested per backend instead.
PREDICATES = {"name", *_CAPABILITIES}
DTYPES = ["float32", "float64", "int32", "uint8", "bool"]


def _data(rng, shape, dtype):
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype in ("int32", "uint8"):
        return rng.integers(0, 4, shape).astype(dtype)  # many ties
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[rng.integers(0, x.size, 3)] = np.nan
    return x


def _window_cases(rng):
    for dtype in DTYPES:
        if dtype == "bool":
            continue
        for shape, window in [
            ((2, 7, 9), (3, 3)),
            ((1, 2, 5, 6, 7), (3, 2, 4)),
            ((3, 8), (5,)),
            ((2, 6, 6), (1, 6)),
            ((1, 1, 4, 5, 6), (1, 1, 1)),
            ((2, 9, 9), (7, 2)),
        ]:
            yield (_data(rng, shape, dtype), window), {}


def _pad_cases(rng):
    for dtype in DTYPES:
        value = False if dtype == "bool" else 0 if dtype in ("int32", "uint8") else -np.inf
        for shape, widths in [((2, 3, 4), ((1, 1), (0, 2))), ((1, 2, 3, 4, 5), ((1, 0), (2, 2), (0, 0)))]:
            yield (_data(rng, shape, dtype), widths, value), {}
        yield (_data(rng, (3, 8, 6), dtype)[:, ::2, ::-1], ((2, 1), (0, 3)), value), {}  # a strided view
        yield (np.zeros((2, 0, 3), dtype), ((1, 2), (0, 0)), value), {}  # an empty axis, padded
        yield (_data(rng, (2, 3), dtype), ((0, 0),), value), {}  # nothing to pad


def _expand_cases(rng):
    for dtype in ["float32", "float64"]:
        for total, n in [(50, 7), (10, 10), (10, 0), (1, 1)]:
            base = _data(rng, (total,), dtype)
            index = np.sort(rng.choice(total, n, replace=False)).astype(np.int64)
            values = rng.standard_normal(n).astype(dtype)
            yield (values, index, base), {}


def _gauss(sigma, size):
    taps = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
    return tuple(float(v) for v in taps / taps.sum())


def _filter_cases(rng):
    gauss = _gauss(1.3, 7)
    for dtype in ["float32", "float64"]:
        for shape in [(2, 1, 9, 11), (1, 3, 4, 5), (1, 1, 1, 6), (2, 7, 2)]:
            x = rng.standard_normal(shape).astype(dtype)
            yield (x, gauss), {}
            yield (x, (0.25, 0.5, 0.25)), {}
            yield (x, (0.1, 0.7, 0.2)), {}  # asymmetric
        # Several chunks of a banded product, sides that are no multiple of one, a long kernel.
        yield (rng.standard_normal((1, 1, 70, 101)).astype(dtype), _gauss(3.1, 25)), {}
        yield (rng.standard_normal((2, 3, 2, 12, 10)).astype(dtype), gauss), {}  # batch axes
        yield (rng.standard_normal((1, 1)).astype(dtype), gauss), {}  # 1x1
        yield (rng.standard_normal((3, 1, 8)).astype(dtype), (0.5,)), {}  # one tap
        yield (rng.standard_normal((1, 9, 9)).astype(dtype), _gauss(1.5, 9)), {}  # as long as both axes
        yield (rng.standard_normal((1, 5, 4)).astype(dtype), _gauss(2.0, 11)), {}  # longer than both
        base = rng.standard_normal((2, 40, 34)).astype(dtype)
        yield (base[:, ::3, ::2], _gauss(1.1, 9)), {}  # strided view
        yield (base.transpose(0, 2, 1), gauss), {}  # transposed view
        bad = rng.standard_normal((1, 16, 40)).astype(dtype)
        bad[0, 3, 5], bad[0, 9, 30], bad[0, 12, 12] = np.inf, -np.inf, np.nan
        yield (bad, gauss), {}  # non-finite samples spread as far as the kernel reaches, no further


def _softmax_cases(rng):
    for dtype in ["float32", "float64"]:
        for shape, axis in [((3, 7), -1), ((2, 4, 5), 1), ((4, 300), -1)]:
            x = (rng.standard_normal(shape) * 40).astype(dtype)  # exponents far below the subnormal range
            x.reshape(-1)[rng.integers(0, x.size, 2)] = -np.inf
            yield (x, axis), {}
            yield (x, axis), {"flush": 1e-3}  # weights at or below the flush are 0
        x = (rng.standard_normal((3, 6)) * 4).astype(dtype)
        x[0, 1] = np.nan  # NaN stays NaN through the flush
        yield (x, -1), {"flush": float(np.sqrt(np.finfo(dtype).smallest_normal))}


def _outer_cases(rng):
    for dtype in ["float32", "float64", "int32", "bool"]:
        for a_shape, b_shape in [((5,), (7,)), ((3, 4, 6), (3, 4, 5)), ((2, 1, 3), (4, 2)), ((6, 1), (6, 9))]:
            yield (_data(rng, a_shape, dtype), _data(rng, b_shape, dtype)), {}
        yield (np.zeros((0, 3), dtype), np.zeros((0, 2), dtype)), {}
    a = rng.standard_normal((4, 6)).astype("float32")
    a[0, :3] = [np.inf, -np.inf, 0.0]
    yield (a, rng.standard_normal((4, 5)).astype("float32") * 1e-30), {}  # inf * 0, subnormal products


def _kth_cases(rng):
    for dtype in ["float32", "float64", "int32"]:
        for shape, k in [((7,), 1), ((3, 40), 5), ((2, 3, 9), 9)]:
            yield (_data(rng, shape, dtype), k), {}
    x = rng.standard_normal((4, 30))
    x[:, ::3] = -np.inf  # the masked-out entries of a candidate selection
    x[1, :5] = x[1, 5]  # ties at the k-th value
    yield (x, 6), {}


def _top_k_cases(rng):
    for dtype in ["float32", "float64", "int32", "uint8", "bool"]:
        for shape, k in [((7,), 3), ((3, 40), 5), ((2, 3, 9), 9), ((2, 6), 10), ((2, 5), 0)]:
            yield (_data(rng, shape, dtype), k), {}  # ties (integers), NaN (floating), k past the row
    x = rng.standard_normal((4, 30))
    x[:, ::3] = -np.inf  # the masked-out entries of a candidate selection
    x[1, :5] = x[1, 5]  # ties at the k-th value
    x[2, :8] = [0.0, -0.0, 0.0, -0.0, np.nan, -np.nan, np.inf, -0.0]  # signed zeros tie; NaN of either sign
    x[3, :] = -0.0
    yield (x, 12), {}
    yield (x.astype("float32"), 30), {}


def _halve_and_count(i, c):
    # Exact arithmetic (a halving, small integers), so an unrolled and a compiled loop agree bit for bit.
    return c * 0.5 + (i + 1)


def _loop_cases(rng):
    for dtype in ["float32", "float64"]:
        x = rng.standard_normal((3, 5)).astype(dtype)
        for n in (0, 1, 4):  # 0: the carry as given
            yield (n, _halve_and_count, x), {}


def _take_cases(rng):
    for dtype in DTYPES:
        for shape, axis, size in [
            ((7,), 0, 12),
            ((3, 8), -1, 5),
            ((3, 8), 0, 4),
            ((2, 3, 5, 6), 3, 11),
            ((2, 3, 5, 6), 2, 9),
        ]:
            index = rng.integers(0, shape[axis], size).astype(np.int64)
            yield (_data(rng, shape, dtype), index, axis), {}
        x = _data(rng, (4, 9, 6), dtype)
        yield (x[:, ::2, ::-1], np.array([5, 0, 0, 3], dtype=np.int64), -1), {}  # a strided view
        yield (x, np.zeros((0,), dtype=np.int64), 1), {}  # nothing taken
        yield (x, np.sort(rng.integers(0, 6, 13)).astype(np.int64), 2), {}  # the resize's sorted repeats


def _extrema_cases(rng):
    for dtype in ["float32", "float64"]:
        for shape, steps in [
            ((1, 40), (1,)),
            ((3, 257), (1,)),
            ((2, 3, 17), (1,)),
            ((1, 2), (1,)),
            ((1, 3), (1,)),
            ((2, 0), (1,)),
            ((2, 4 * 5 * 6), (1, 6, 30)),  # a 4x5x6 volume's face neighbours
            ((1, 3, 50), (7, 2)),
            ((1, 9), (4,)),
            ((1, 8), (4,)),  # no entry has both neighbours
        ]:
            x = _data(rng, shape, dtype) if shape[-1] else np.zeros(shape, dtype)
            floor = np.abs(rng.standard_normal((*shape[:-1], 1))).astype(dtype) * 0.5
            yield (x, floor, steps), {}
            yield (x, np.zeros_like(floor), steps), {}
        plateau = np.round(rng.standard_normal((2, 300)), 1).astype(dtype)  # ties: never strict
        plateau[0, 10:13] = [np.inf, np.inf, -np.inf]
        plateau[1, 50:53] = [-np.inf, 5.0, np.inf]
        yield (plateau, np.full((2, 1), 0.3, dtype), (1,)), {}
        yield (plateau, np.full((2, 1), 0.3, dtype), (1, 3)), {}
        signal = rng.standard_normal((2, 3000)).astype(dtype)  # a volume 10x10x30
        yield (signal, np.array([[0.5], [0.0]], dtype), (1, 10, 100)), {}
        tiny = (rng.standard_normal((1, 500)) * 1e-40).astype(dtype)  # subnormal differences
        yield (tiny, np.zeros((1, 1), dtype), (1,)), {}
    near = np.float32(0.1) + np.arange(-3, 4).astype("float32") * np.spacing(np.float32(0.1))
    x = np.zeros((1, 15), "float32")
    x[0, 1::2] = near  # a float64 floor between float32 values: compared in float64
    yield (x, np.full((1, 1), 0.1, "float64"), (1,)), {}


CASES = {
    "take": _take_cases,
    "stencil_extrema": _extrema_cases,
    "kth_largest": _kth_cases,
    "window_max": _window_cases,
    "window_min": _window_cases,
    "pad": _pad_cases,
    "expand": _expand_cases,
    "separable_filter": _filter_cases,
    "softmax": _softmax_cases,
    "outer": _outer_cases,
    "fori_loop": _loop_cases,
    "top_k": _top_k_cases,
}
# Hooks whose floating-point results may differ from the generic ones by summation order.
ROUNDING = {
    "separable_filter": {"float32": 1e-6, "float64": 1e-14},
    "softmax": {"float32": 1e-6, "float64": 1e-14},
}


def _array_hooks():
    return [f.name for f in dataclasses.fields(Hooks) if f.name not in PREDICATES]


def test_every_hook_has_cases():
    missing = set(_array_hooks()) - set(CASES)
    assert not missing, f"hooks without a native-vs-generic test case: {sorted(missing)}"


def _convert(backend, arg):
    return backend.asarray(arg) if isinstance(arg, np.ndarray) else arg


@pytest.mark.parametrize("hook", _array_hooks())
def test_native_hook_matches_generic(hook, xp_backend):
    native = hooks_for(xp_backend.xp)
    if getattr(native, hook) is getattr(GENERIC, hook):
        pytest.skip(f"{xp_backend.name} uses the generic {hook}")
    rng = np.random.default_rng(0)
    for args, kwargs in CASES[hook](rng):
        converted = [_convert(xp_backend, a) for a in args]
        expected = getattr(GENERIC, hook)(*converted, xp=xp_backend.xp, **kwargs)
        got = getattr(native, hook)(*converted, xp=xp_backend.xp, **kwargs)
        given = next(a.dtype for a in args if isinstance(a, np.ndarray))  # fori_loop: the carry
        message = f"{hook} on {xp_backend.name}, dtype {given}"
        several = isinstance(expected, tuple)  # top_k: (values, indices)
        assert several == isinstance(got, tuple), message
        for e, g in zip(*((expected, got) if several else ((expected,), (got,))), strict=True):
            e, g = to_numpy(e), to_numpy(g)
            assert g.dtype == e.dtype and g.shape == e.shape, (hook, given, g.dtype, g.shape, e.shape)
            if hook in ROUNDING and str(e.dtype) in ROUNDING[hook]:
                tol = ROUNDING[hook][str(e.dtype)]
                np.testing.assert_allclose(g, e, rtol=tol, atol=tol, err_msg=message)
            else:
                np.testing.assert_array_equal(g, e, err_msg=message)


# ---------------------------------------------------------------------------------------------
# separable_filter: NumPy and torch CPU run it through OpenCV or as banded matrix products (BLAS),
# the generic hook's sums in another order; held to a few units in the last place of the input's scale.


def _filter_backends():
    return ["numpy", "torch"]


def _brute_filter(x, kernel):
    """Float64 reference: every tap of the reflect-padded axis, one axis after the other."""
    from subpix_xp.backends._generic import reflect_indices

    r = len(kernel) // 2
    for axis in (-1, -2):
        n = x.shape[axis]
        padded = np.take(x, np.array(reflect_indices(n, r, r)), axis=axis)
        x = sum(kernel[j] * np.take(padded, np.arange(j, j + n), axis=axis) for j in range(len(kernel)))
    return x


@pytest.mark.parametrize("path", ["opencv", "banded"])
@pytest.mark.parametrize("name", _filter_backends())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_separable_filter_within_ulps_of_generic(name, dtype, path, monkeypatch):
    """Both CPU paths: OpenCV's ``sepFilter2D`` where installed, the banded products without it."""
    from subpix_xp.backends import _numpy

    if path == "opencv":
        pytest.importorskip("cv2", reason="the OpenCV path needs opencv-python(-headless)")
        assert _numpy._opencv() is not None
    else:
        monkeypatch.setattr(_numpy, "_opencv", lambda: None)
    backend = load_backend(name)
    native = hooks_for(backend.xp).separable_filter
    assert native is not GENERIC.separable_filter
    rng = np.random.default_rng(4)
    eps = float(np.finfo(dtype).eps)
    shapes = [(1, 1, 130, 97), (2, 1, 33, 64), (1, 2, 3, 5, 300), (4, 1, 1), (1, 1, 1, 1), (1, 2, 31)]
    sizes = [1, 3, 5, 11, 25, 41, 63]
    for shape in shapes:
        for size in sizes:
            for scale in (1.0, 1e4):
                x = (rng.standard_normal(shape) * scale).astype(dtype)
                kernel = (
                    _gauss(size / 8, size) if size % 3 else tuple(float(v) for v in rng.uniform(-1, 1, size))
                )
                weight = sum(abs(v) for v in kernel) ** 2  # bounds the output by weight * max|x|
                before = x.copy()
                got = native(backend.asarray(x), kernel, xp=backend.xp)
                want = GENERIC.separable_filter(backend.asarray(x), kernel, xp=backend.xp)
                g, e = to_numpy(got), to_numpy(want)
                what = f"{name} {dtype} {shape} size {size} scale {scale}"
                assert g.dtype == e.dtype == np.dtype(dtype) and g.shape == e.shape == shape, what
                # Recursive summation of k products per axis: at most about k rounding errors each.
                bound = (size + 1) * eps * weight * float(np.abs(x).max())
                np.testing.assert_allclose(g, e, rtol=0, atol=bound, err_msg=what)
                np.testing.assert_allclose(
                    g, _brute_filter(x.astype(np.float64), kernel), rtol=0, atol=bound, err_msg=what
                )
                np.testing.assert_array_equal(
                    to_numpy(backend.asarray(x)), before, err_msg=f"{what}: input changed"
                )


@pytest.mark.parametrize("name", _filter_backends())
def test_separable_filter_non_finite_input_equals_generic(name):
    """A banded product multiplies whole windows, zeros of the band included (``0 * inf`` is NaN): an
    input with infinities or NaN takes the generic hook, so they spread exactly as far as the kernel reaches."""
    backend = load_backend(name)
    rng = np.random.default_rng(5)
    kernel = _gauss(1.2, 9)
    for bad in (np.inf, -np.inf, np.nan):
        x = rng.standard_normal((1, 1, 40, 70)).astype("float32")
        x[0, 0, 20, 35] = bad
        got = to_numpy(hooks_for(backend.xp).separable_filter(backend.asarray(x), kernel, xp=backend.xp))
        want = to_numpy(GENERIC.separable_filter(backend.asarray(x), kernel, xp=backend.xp))
        np.testing.assert_array_equal(got, want)
        assert np.isfinite(got[0, 0, :10]).all() and not np.isfinite(got[0, 0, 20, 35])


def test_separable_filter_torch_keeps_autograd_and_half_precision():
    torch = pytest.importorskip("torch")
    xp = load_backend("torch").xp
    kernel = _gauss(1.0, 7)
    x = torch.randn(
        1, 1, 20, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(6), requires_grad=True
    )
    out = hooks_for(xp).separable_filter(x, kernel, xp=xp)
    assert out.requires_grad
    (grad,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(GENERIC.separable_filter(x, kernel, xp=xp).sum(), x)
    torch.testing.assert_close(grad, want)
    half = x.detach().to(torch.float16)
    np.testing.assert_array_equal(
        to_numpy(hooks_for(xp).separable_filter(half, kernel, xp=xp)),
        to_numpy(GENERIC.separable_filter(half, kernel, xp=xp)),
    )


def test_separable_filter_torch_off_cpu_path_is_bit_identical():
    """Off the CPU (CUDA, where a float32 product may run in TF32) torch repeats the generic taps in
    place; that path, run here on CPU tensors, equals the generic hook bit for bit."""
    pytest.importorskip("torch")
    from subpix_xp.backends import _torch

    backend = load_backend("torch")
    rng = np.random.default_rng(7)
    for dtype in ("float32", "float64"):
        for shape, kernel in [
            ((2, 1, 17, 23), _gauss(1.3, 9)),
            ((1, 3, 12, 40), (0.1, 0.7, 0.2)),
            ((1, 1, 5, 6), _gauss(0.8, 7)),
        ]:
            x = backend.asarray(rng.standard_normal(shape).astype(dtype))
            np.testing.assert_array_equal(
                to_numpy(_torch._tap_filter(x, kernel)),
                to_numpy(GENERIC.separable_filter(x, kernel, xp=backend.xp)),
            )


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_stencil_extrema_across_blocks(name, monkeypatch):
    """The NumPy hook (which torch CPU runs on a view) works block by block, each block's test reading
    its neighbours past its ends: small blocks put extrema, plateaus and row ends on block edges;
    the positions equal the generic ones."""
    from subpix_xp.backends import _numpy

    backend = load_backend(name)
    native = hooks_for(backend.xp).stencil_extrema
    assert native is not GENERIC.stencil_extrema
    rng = np.random.default_rng(11)
    x = np.round(rng.standard_normal((3, 2, 240)), 1).astype("float32")  # ties, several rows
    floor = np.array([0.0, 0.4, 1.0] * 2, dtype="float32").reshape(3, 2, 1)
    for steps, dense in [((1,), 2), ((1, 8, 40), 2), ((1, 8, 40), 1), ((1, 8, 40), 0)]:
        # A row; a 6x5x8 volume's face neighbours, some steps compared at the survivors only.
        monkeypatch.setattr(_numpy, "_DENSE_STEPS", dense)
        for block in (1, 7, 8, 64, 201, 4096):
            monkeypatch.setattr(_numpy, "_EXTREMA_BLOCK", block)
            args = (backend.asarray(x), backend.asarray(floor), steps)
            got = to_numpy(native(*args, xp=backend.xp))
            want = to_numpy(GENERIC.stencil_extrema(*args, xp=backend.xp))
            assert got.dtype == want.dtype and want.size > 5, want.size
            np.testing.assert_array_equal(got, want, err_msg=f"steps {steps} ({dense} dense), block {block}")


# ---------------------------------------------------------------------------------------------
# fori_loop: JAX compiles the body once (``lax.fori_loop``); the generic hook is a Python loop.


def _refine_like_body(i, carry):
    """A body shaped like :func:`subpix_xp._refine.refine`'s: integer moves, a bool mask, a nested tuple."""
    position, ok, _, (value, total) = carry
    step = ((value > 0) & ok).astype(position.dtype) - ((value < 0) & ok).astype(position.dtype)
    moved = (position + step).clip(0, 9)
    value = value * 0.5 - 0.25 * step.astype(value.dtype)
    return moved, ok & (moved > 0) & (moved < 9), position, (value, total + value * value)


def _refine_like_carry(xp, rng, dtype):
    position = xp.asarray(rng.integers(0, 10, (2, 7)).astype("int32"))
    value = xp.asarray(rng.standard_normal((2, 7)).astype(dtype))
    ok = xp.asarray(rng.random((2, 7)) > 0.2)
    return position, ok, position, (value, value * 0.0)


def _tree_to_numpy(tree):
    if isinstance(tree, tuple):
        return [leaf for part in tree for leaf in _tree_to_numpy(part)]
    return [to_numpy(tree)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
def test_jax_fori_loop_matches_generic(dtype, compiled):
    jax_backend = load_backend("jax")
    import jax

    from subpix_xp.backends import _jax

    xp = jax_backend.xp
    assert hooks_for(xp).fori_loop is _jax.fori_loop is not GENERIC.fori_loop
    carry = _refine_like_carry(xp, np.random.default_rng(8), dtype)
    for n in (0, 1, 5):
        runs = []
        for loop in (_jax.fori_loop, GENERIC.fori_loop):

            def run(c, loop=loop, n=n):
                return loop(n, _refine_like_body, c, xp=xp)

            runs.append(_tree_to_numpy((jax.jit(run) if compiled else run)(carry)))
        for got, want in zip(*runs):
            assert got.dtype == want.dtype and got.shape == want.shape
            if got.dtype.kind == "f":  # XLA may contract ``a * b + c`` into one rounding in a compiled body
                eps = float(np.finfo(got.dtype).eps)
                np.testing.assert_allclose(got, want, rtol=4 * eps, atol=4 * eps, err_msg=f"n={n}")
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"n={n}")


def test_jax_fori_loop_traces_the_body_once_and_keeps_dtypes():
    load_backend("jax")
    import jax
    import jax.numpy as jnp

    from subpix_xp.backends import _jax

    calls = []

    def body(i, c):
        calls.append(i)
        return c + 1.0

    out = jax.jit(lambda c: _jax.fori_loop(6, body, c, xp=jnp))(jnp.zeros(3, dtype=jnp.float32))
    assert len(calls) == 1 and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), np.full(3, 6.0, dtype=np.float32))
    with pytest.raises(TypeError):  # a body that changes the carry's dtype is refused, not silently unrolled
        _jax.fori_loop(2, lambda i, c: c.astype(jnp.int32), jnp.zeros(3, dtype=jnp.float32), xp=jnp)


@pytest.mark.parametrize("path", ["_tap_filter", "_conv_filter"])
def test_jax_separable_filter_paths_match_generic(path):
    """JAX filters large planes with materialised-pad taps and small ones with a convolution; both
    paths under ``jax.jit`` (eager, the convolution is the hook test's), on every case of the hook
    test (wide kernels, 1-pixel axes, non-finite samples)."""
    jax_backend = load_backend("jax")
    import jax

    from subpix_xp.backends import _jax

    run = jax.jit(getattr(_jax, path), static_argnums=1)
    for (x, kernel), _ in _filter_cases(np.random.default_rng(9)):
        if x.ndim < 2 or len(kernel) == 1:
            continue
        got = to_numpy(run(jax_backend.asarray(x), kernel))
        want = to_numpy(GENERIC.separable_filter(jax_backend.asarray(x), kernel, xp=jax_backend.xp))
        tol = ROUNDING["separable_filter"][str(x.dtype)]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"{path} {x.shape} {len(kernel)}")


def test_jax_separable_filter_takes_the_taps_on_large_planes(monkeypatch):
    jax_backend = load_backend("jax")
    from subpix_xp.backends import _jax

    taken = []
    monkeypatch.setattr(
        _jax, "_tap_filter", lambda x, kernel: taken.append(x.shape) or _jax._conv_filter(x, kernel)
    )
    x = jax_backend.asarray(np.random.default_rng(10).standard_normal((1, 512, 1024)).astype("float32"))
    kernel = _gauss(2.0, 13)
    got = to_numpy(_jax.separable_filter(x, kernel, xp=jax_backend.xp))
    small = _jax.separable_filter(x[:, :256, :], kernel, xp=jax_backend.xp)
    assert taken == [(1, 512, 1024)] and small.shape == (1, 256, 1024)
    want = to_numpy(GENERIC.separable_filter(x, kernel, xp=jax_backend.xp))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_generic_window_max_against_brute_force():
    rng = np.random.default_rng(1)
    xp = load_backend("numpy").xp
    for k in range(1, 9):
        x = rng.standard_normal((3, 20))
        got = GENERIC.window_max(x, (k,), xp=xp)
        want = np.stack([x[:, i : i + k].max(axis=1) for i in range(20 - k + 1)], axis=1)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            GENERIC.window_min(x, (k,), xp=xp), -GENERIC.window_max(-x, (k,), xp=xp)
        )


def test_generic_expand_against_scatter():
    rng = np.random.default_rng(2)
    xp = load_backend("numpy").xp
    base = rng.standard_normal(30)
    index = np.array([0, 4, 5, 29])
    values = rng.standard_normal(4)
    want = base.copy()
    want[index] = values
    np.testing.assert_array_equal(GENERIC.expand(values, index, base, xp=xp), want)
    np.testing.assert_array_equal(base, base.copy())


def test_native_backends_are_selected():
    assert hooks_for(load_backend("numpy").xp).name == "numpy"
    assert hooks_for(load_backend("torch").xp).name == "torch"
    assert hooks_for(load_backend("array_api_strict").xp) is GENERIC


def _kernels_are_generic(hooks: Hooks) -> bool:
    return all(getattr(hooks, name) is getattr(GENERIC, name) for name in _array_hooks())


def test_switch_forces_generic_hooks(monkeypatch):
    xp = load_backend("torch").xp
    with use_generic_hooks():
        assert _kernels_are_generic(hooks_for(xp))
        with use_generic_hooks(False):
            assert hooks_for(xp).name == "torch"
    assert hooks_for(xp).name == "torch" and not _kernels_are_generic(hooks_for(xp))
    monkeypatch.setenv("SUBPIX_XP_GENERIC_HOOKS", "1")
    assert _kernels_are_generic(hooks_for(xp))
    monkeypatch.setenv("SUBPIX_XP_GENERIC_HOOKS", "0")
    assert hooks_for(xp).name == "torch"


def test_predicates_on_cpu_backends():
    torch = load_backend("torch")
    t = torch.asarray(np.zeros(3))
    native = hooks_for(torch.xp)
    assert native.can_inspect(t) and not native.prefers_static_shapes(t) and native.supports_dynamic_shapes(t)


def test_operations_agree_under_generic_hooks(xp_backend):
    rng = np.random.default_rng(3)
    x = xp_backend.asarray(rng.standard_normal((1, 2, 5, 12, 13)))
    runs = []
    for forced in (False, True):
        with use_generic_hooks(forced):
            runs.append(
                [
                    to_numpy(a)
                    for a in (
                        subpix_xp.nms3d(x, (3, 3, 3), True),
                        *subpix_xp.nms3d_minmax(x),
                        *subpix_xp.conv_soft_argmax3d(x),
                        *subpix_xp.iterative_quad_interp3d(x),
                        *subpix_xp.conv_quad_interp3d(x),
                    )
                ]
            )
    for native, generic in zip(*runs):
        if native.dtype == np.bool_:
            np.testing.assert_array_equal(native, generic)
        else:
            # XLA may fuse (and so round) the arithmetic after a native and a generic pad differently:
            # the values agree to a few ulps, not bit for bit. The other backends are exact.
            rtol = 1e-14 if xp_backend.name.startswith("jax") else 0.0
            np.testing.assert_allclose(native, generic, rtol=rtol, atol=0.0)


def test_generic_capabilities_ask_the_standard():
    """The generic capabilities come from ``is_lazy_array`` and the inspection API, not constants."""
    da = pytest.importorskip("dask.array")
    lazy = da.zeros((4, 4), chunks=2)
    assert GENERIC.can_inspect(np.zeros(3)) and not GENERIC.can_inspect(lazy)
    assert GENERIC.supports_dynamic_shapes(np.zeros(3)) and not GENERIC.supports_dynamic_shapes(lazy)


def test_hook_roles_partition_the_contract():
    from subpix_xp.backends import CAPABILITIES, EXECUTOR, KERNELS

    fields = [f.name for f in dataclasses.fields(Hooks)]
    assert sorted(["name", *KERNELS, *CAPABILITIES, *EXECUTOR]) == sorted(fields)
    assert set(KERNELS) == set(CASES)  # every kernel is held against the generic one above
