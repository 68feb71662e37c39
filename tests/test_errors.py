"""Bad input (docs/semantics.md, Errors): early, clear exceptions that name the function and the parameter.

Every public function and class is fed each kind of bad input: not an array, arrays of two
libraries or two devices, the wrong number of dimensions, a mask of the wrong shape, bad window
geometry, bad temperatures, bad dtypes, negative counts. The messages must name the function and
the parameter (``match=``); the NMS functions must accept integer and bool input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import subpix_xp as sx
from subpix_xp.testing import BackendUnavailable, get_backend, selected_backend_names

_SELECTED = selected_backend_names()[0]
# The eager backends where every check applies (values of a temperature array included).
EAGER = [n for n in ("numpy", "torch", "array_api_strict") if n in _SELECTED]
NUMPY_TORCH = [n for n in ("numpy", "torch") if n in _SELECTED]


def _load(name):
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(f"backend {name!r} unavailable: {exc}")


@pytest.fixture(params=EAGER)
def be(request):
    return _load(request.param)


@pytest.fixture(params=NUMPY_TORCH)
def be_nt(request):
    return _load(request.param)


def _arr(be, shape, dtype="float64", seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    if dtype == "bool":
        a = a > 0
    else:
        a = (a * 3).astype(dtype)
    return be.asarray(a)


def _raises(exc, func, param):
    """``pytest.raises`` whose message must name the function and then the parameter."""
    return pytest.raises(exc, match=rf"{func}\b.*\b{param}\b")


# Each public operation on one input array: (name in messages, call, input ndim).
# For the classes the name is the function that validates the call.
OPS = {
    "spatial_softmax2d": (lambda x: sx.spatial_softmax2d(x), 4),
    "spatial_expectation2d": (lambda x: sx.spatial_expectation2d(x), 4),
    "spatial_soft_argmax2d": (lambda x: sx.spatial_soft_argmax2d(x), 4),
    "conv_soft_argmax2d": (lambda x: sx.conv_soft_argmax2d(x), 4),
    "conv_soft_argmax3d": (lambda x: sx.conv_soft_argmax3d(x), 5),
    "nms2d": (lambda x: sx.nms2d(x, (3, 3)), 4),
    "nms3d": (lambda x: sx.nms3d(x, (3, 3, 3)), 5),
    "nms3d_minmax": (lambda x: sx.nms3d_minmax(x), 5),
    "conv_quad_interp3d": (lambda x: sx.conv_quad_interp3d(x), 5),
    "iterative_quad_interp3d": (lambda x: sx.iterative_quad_interp3d(x), 5),
}
CLASS_OPS = {
    "SpatialSoftArgmax2d": ("spatial_soft_argmax2d", "input", lambda x: sx.SpatialSoftArgmax2d()(x), 4),
    "ConvSoftArgmax2d": ("conv_soft_argmax2d", "input", lambda x: sx.ConvSoftArgmax2d()(x), 4),
    "ConvSoftArgmax3d": ("conv_soft_argmax3d", "input", lambda x: sx.ConvSoftArgmax3d()(x), 5),
    "NonMaximaSuppression2d": ("nms2d", "input", lambda x: sx.NonMaximaSuppression2d((3, 3))(x), 4),
    "NonMaximaSuppression3d": ("nms3d", "input", lambda x: sx.NonMaximaSuppression3d((3, 3, 3))(x), 5),
    "ConvQuadInterp3d": ("conv_quad_interp3d", "input", lambda x: sx.ConvQuadInterp3d()(x), 5),
    "IterativeQuadInterp3d": ("iterative_quad_interp3d", "input", lambda x: sx.IterativeQuadInterp3d()(x), 5),
    "AdaptiveQuadInterp3d(patch)": (
        "iterative_quad_interp3d",
        "input",
        lambda x: sx.AdaptiveQuadInterp3d(mode="patch")(x),
        5,
    ),
    "AdaptiveQuadInterp3d(conv)": (
        "conv_quad_interp3d",
        "input",
        lambda x: sx.AdaptiveQuadInterp3d(mode="conv")(x),
        5,
    ),
    # In "auto" mode the class inspects its argument (named `x`) itself to pick a path, then the
    # function of that path validates it.
    "AdaptiveQuadInterp3d(auto)": (
        "(AdaptiveQuadInterp3d|iterative_quad_interp3d|conv_quad_interp3d)",
        "(x|input)",
        lambda x: sx.AdaptiveQuadInterp3d()(x),
        5,
    ),
}
ALL_OPS = {name: (name, "input", call, ndim) for name, (call, ndim) in OPS.items()} | CLASS_OPS
FLOAT_ONLY = [n for n, (func, *_rest) in ALL_OPS.items() if not func.startswith("nms")]
NMS_OPS = [n for n in ALL_OPS if n not in FLOAT_ONLY]


def _nested_list(ndim):
    a = np.zeros((1,) * (ndim - 2) + (4, 4))
    return a.tolist()


# --------------------------------------------------------------------------------------------
# Not an array.


@pytest.mark.parametrize("op", list(ALL_OPS))
@pytest.mark.parametrize("kind", ["list", "float", "int", "string"])
def test_not_an_array_is_type_error(op, kind):
    func, param, call, ndim = ALL_OPS[op]
    value = {"list": _nested_list(ndim), "float": 1.0, "int": 3, "string": "x"}[kind]
    with _raises(TypeError, func, param):
        call(value)


@pytest.mark.parametrize("op", ["spatial_softmax2d", "nms2d", "conv_quad_interp3d"])
def test_none_input_names_the_parameter(op):
    call, _ = OPS[op]
    with _raises(TypeError, op, "input"):
        call(None)


@pytest.mark.parametrize("param", ["mean", "std"])
@pytest.mark.parametrize("kind", ["list", "float"])
def test_render_gaussian2d_not_an_array(be, param, kind):
    good = {"mean": _arr(be, (3, 2)), "std": be.asarray(np.full((3, 2), 0.5))}
    good[param] = [[0.0, 0.0]] * 3 if kind == "list" else 0.5
    with _raises(TypeError, "render_gaussian2d", param):
        sx.render_gaussian2d(good["mean"], good["std"], (5, 6))


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
def test_mask_not_an_array(be, func):
    x = _arr(be, (1, 1, 3, 5, 5))
    mask = np.zeros((1, 1, 3, 5, 5), dtype=bool).tolist()
    with _raises(TypeError, func, "precomputed_nms_mask"):
        getattr(sx, func)(x, precomputed_nms_mask=mask)


# --------------------------------------------------------------------------------------------
# Arrays of two libraries, or on two devices.


def test_render_gaussian2d_two_libraries():
    torch = _load("torch").xp
    np_mean, np_std = np.zeros((2, 2)), np.ones((2, 2))
    t_mean, t_std = torch.zeros((2, 2), dtype=torch.float64), torch.ones((2, 2), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"render_gaussian2d\b.*mean.*std"):
        sx.render_gaussian2d(np_mean, t_std, (4, 4))
    with pytest.raises(TypeError, match=r"render_gaussian2d\b.*mean.*std"):
        sx.render_gaussian2d(t_mean, np_std, (4, 4))


def test_render_gaussian2d_strict_and_numpy():
    xps = _load("array_api_strict").xp
    with pytest.raises(TypeError, match=r"render_gaussian2d\b.*mean.*std"):
        sx.render_gaussian2d(xps.zeros((2, 2), dtype=xps.float64), np.ones((2, 2)), (4, 4))


FUNCS_WITH_TEMPERATURE = {
    "spatial_softmax2d": (lambda x, t: sx.spatial_softmax2d(x, t), 4),
    "spatial_soft_argmax2d": (lambda x, t: sx.spatial_soft_argmax2d(x, t), 4),
    "conv_soft_argmax2d": (lambda x, t: sx.conv_soft_argmax2d(x, temperature=t), 4),
    "conv_soft_argmax3d": (lambda x, t: sx.conv_soft_argmax3d(x, temperature=t), 5),
}
CLASSES_WITH_TEMPERATURE = {
    "spatial_soft_argmax2d": (lambda x, t: sx.SpatialSoftArgmax2d(temperature=t)(x), 4),
    "conv_soft_argmax2d": (lambda x, t: sx.ConvSoftArgmax2d(temperature=t)(x), 4),
    "conv_soft_argmax3d": (lambda x, t: sx.ConvSoftArgmax3d(temperature=t)(x), 5),
}
TEMPERATURE_CASES = [(f, call, ndim) for f, (call, ndim) in FUNCS_WITH_TEMPERATURE.items()] + [
    (f, call, ndim) for f, (call, ndim) in CLASSES_WITH_TEMPERATURE.items()
]
TEMPERATURE_IDS = list(FUNCS_WITH_TEMPERATURE) + [f"class-{f}" for f in CLASSES_WITH_TEMPERATURE]


@pytest.mark.parametrize(("func", "call", "ndim"), TEMPERATURE_CASES, ids=TEMPERATURE_IDS)
@pytest.mark.parametrize("direction", ["numpy-input", "torch-input"])
def test_temperature_of_another_library(func, call, ndim, direction):
    torch = _load("torch").xp
    shape = (1, 2) + (4,) * (ndim - 2)
    if direction == "numpy-input":
        x, t = np.zeros(shape), torch.asarray(2.0, dtype=torch.float64)
    else:
        x, t = torch.zeros(shape, dtype=torch.float64), np.asarray(2.0)
    with _raises(TypeError, func, "temperature"):
        call(x, t)


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("direction", ["numpy-input", "torch-input"])
def test_mask_of_another_library(func, direction):
    torch = _load("torch").xp
    shape = (1, 1, 3, 5, 5)
    if direction == "numpy-input":
        x, m = np.zeros(shape), torch.zeros(shape, dtype=torch.bool)
    else:
        x, m = torch.zeros(shape, dtype=torch.float64), np.zeros(shape, dtype=bool)
    with _raises(TypeError, func, "precomputed_nms_mask"):
        getattr(sx, func)(x, precomputed_nms_mask=m)
    cls = {"conv_quad_interp3d": sx.ConvQuadInterp3d, "iterative_quad_interp3d": sx.IterativeQuadInterp3d}[
        func
    ]
    with _raises(TypeError, func, "precomputed_nms_mask"):
        cls()(x, precomputed_nms_mask=m)


def _other_device(be):
    """A second device of ``be``'s library that needs no hardware: torch ``meta``, a strict test device."""
    if be.name == "torch":
        import torch

        return torch.device("meta")
    return be.xp.Device("device1")


@pytest.mark.parametrize("name", [n for n in ("torch", "array_api_strict") if n in _SELECTED])
def test_two_devices(name):
    be = _load(name)
    other = _other_device(be)
    xp = be.xp
    mean = _arr(be, (2, 2))
    std_other = xp.ones((2, 2), dtype=xp.float64, device=other)
    with pytest.raises(TypeError, match=r"render_gaussian2d\b.*device.*mean.*std"):
        sx.render_gaussian2d(mean, std_other, (4, 4))
    x = _arr(be, (1, 1, 3, 5, 5))
    mask_other = xp.zeros((1, 1, 3, 5, 5), dtype=xp.bool, device=other)
    for func in ("conv_quad_interp3d", "iterative_quad_interp3d"):
        with _raises(TypeError, func, "precomputed_nms_mask"):
            getattr(sx, func)(x, precomputed_nms_mask=mask_other)
    t_other = xp.asarray(2.0, dtype=xp.float64, device=other)
    for func, (call, ndim) in FUNCS_WITH_TEMPERATURE.items():
        with _raises(TypeError, func, "temperature"):
            call(_arr(be, (1, 2) + (4,) * (ndim - 2)), t_other)


# --------------------------------------------------------------------------------------------
# Wrong number of dimensions, wrong shapes.


@pytest.mark.parametrize("op", list(ALL_OPS))
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_ndim(be, op, delta):
    func, param, call, ndim = ALL_OPS[op]
    x = _arr(be, (1, 2) + (5,) * (ndim - 2 + delta))
    with _raises(ValueError, func, param):
        call(x)


@pytest.mark.parametrize("op", list(ALL_OPS))
def test_zero_dimensional(be, op):
    func, param, call, _ = ALL_OPS[op]
    with _raises(ValueError, func, param):
        call(be.asarray(np.asarray(1.0)))


@pytest.mark.parametrize(
    ("mean_shape", "std_shape", "bad"),
    [
        ((), (2,), "mean"),
        ((3,), (3,), "mean"),
        ((4, 3), (4, 2), "mean"),
        ((2,), (2, 3), "std"),
        ((3, 2), (4, 2), "std"),
    ],
)
def test_render_gaussian2d_bad_shapes(be, mean_shape, std_shape, bad):
    mean = be.asarray(np.zeros(mean_shape))
    std = be.asarray(np.ones(std_shape))
    with _raises(ValueError, "render_gaussian2d", bad):
        sx.render_gaussian2d(mean, std, (4, 5))


@pytest.mark.parametrize(
    "size", [(0, 4), (4, -1), (4,), (4, 4, 4), (4.0, 4), (4, 2.5), 4, None, "44", (True, 4)]
)
def test_render_gaussian2d_bad_size(be, size):
    mean, std = _arr(be, (3, 2)), be.asarray(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"render_gaussian2d\b.*\bsize\b"):
        sx.render_gaussian2d(mean, std, size)


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("mask_shape", [(1, 1, 3, 5, 4), (1, 1, 5, 5), (2, 1, 3, 5, 5), (1, 1, 1, 3, 5, 5)])
def test_mask_of_wrong_shape(be, func, mask_shape):
    x = _arr(be, (1, 1, 3, 5, 5))
    mask = be.asarray(np.zeros(mask_shape, dtype=bool))
    with _raises(ValueError, func, "precomputed_nms_mask"):
        getattr(sx, func)(x, precomputed_nms_mask=mask)
    cls = {"conv_quad_interp3d": sx.ConvQuadInterp3d, "iterative_quad_interp3d": sx.IterativeQuadInterp3d}[
        func
    ]
    with _raises(ValueError, func, "precomputed_nms_mask"):
        cls()(x, precomputed_nms_mask=mask)


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("dtype", ["float64", "uint8", "int64"])
def test_mask_of_non_bool_dtype(be, func, dtype):
    x = _arr(be, (1, 1, 3, 5, 5))
    mask = be.asarray(np.zeros((1, 1, 3, 5, 5), dtype=dtype))
    with _raises(TypeError, func, "precomputed_nms_mask"):
        getattr(sx, func)(x, precomputed_nms_mask=mask)


# --------------------------------------------------------------------------------------------
# Window geometry.

BAD_2D = [(0, 3), (3, -1), (3,), (3, 3, 3), (3.0, 3), (3, 2.5), (True, 3), "33", None, ()]
BAD_3D = [(0, 3, 3), (3, 3, -2), (3, 3), (3, 3, 3, 3), (3, 3.0, 3), (False, 3, 3), "333", None]


def _geometry_call(func, x, **kwargs):
    if func == "conv_soft_argmax2d":
        return sx.conv_soft_argmax2d(x, **kwargs)
    if func == "conv_soft_argmax3d":
        return sx.conv_soft_argmax3d(x, **kwargs)
    if func == "ConvSoftArgmax2d":
        return sx.ConvSoftArgmax2d(**kwargs)(x)
    return sx.ConvSoftArgmax3d(**kwargs)(x)


@pytest.mark.parametrize("cls", [False, True], ids=["function", "class"])
@pytest.mark.parametrize("param", ["kernel_size", "stride", "padding"])
@pytest.mark.parametrize("dim", [2, 3])
def test_conv_soft_argmax_bad_geometry(be, cls, param, dim):
    func = f"conv_soft_argmax{dim}d"
    x = _arr(be, (1, 1) + (6,) * dim)
    bad_values = BAD_2D if dim == 2 else BAD_3D
    if param == "padding":
        # 0 is a valid padding, and -1 a valid kernel/stride check already covers; add negatives.
        bad_values = [b for b in bad_values if not (isinstance(b, tuple) and b and b[0] == 0)]
        bad_values = [*bad_values, (-1,) * dim, -1]
    elif param == "stride":
        bad_values = [*bad_values, 0, -2]
    name = ("ConvSoftArgmax2d" if dim == 2 else "ConvSoftArgmax3d") if cls else func
    for bad in bad_values:
        with _raises(ValueError, func, param):
            _geometry_call(name, x, **{param: bad})


@pytest.mark.parametrize(
    ("dim", "kernel", "padding"),
    [
        (2, (3, 3), (2, 1)),
        (2, (1, 1), (1, 0)),
        (2, (4, 5), (1, 3)),
        (3, (3, 3, 3), (1, 1, 2)),
        (3, (2, 2, 2), (0, 2, 0)),
    ],
)
def test_conv_soft_argmax_padding_larger_than_half_kernel(be, dim, kernel, padding):
    func = f"conv_soft_argmax{dim}d"
    x = _arr(be, (1, 1) + (6,) * dim)
    with _raises(ValueError, func, "padding"):
        getattr(sx, func)(x, kernel_size=kernel, padding=padding)


@pytest.mark.parametrize("dim", [2, 3])
def test_conv_soft_argmax_input_smaller_than_kernel(be, dim):
    func = f"conv_soft_argmax{dim}d"
    x = _arr(be, (1, 1) + (2,) * dim)
    with pytest.raises(ValueError, match=rf"{func}\b.*\binput\b.*kernel_size"):
        getattr(sx, func)(x, kernel_size=(3,) * dim, padding=(0,) * dim)


@pytest.mark.parametrize("dim", [2, 3])
def test_conv_soft_argmax_good_geometry_is_accepted(be, dim):
    # The other side of the padding rule: 2 * pad == kernel is allowed, and even kernels work.
    func = f"conv_soft_argmax{dim}d"
    x = _arr(be, (1, 1) + (5,) * dim)
    coords = getattr(sx, func)(
        x, kernel_size=(2,) * dim, stride=(2,) * dim, padding=(1,) * dim, output_value=False
    )
    assert tuple(coords.shape) == (1, 1, dim) + (3,) * dim


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("cls", [False, True], ids=["function", "class"])
def test_nms_bad_kernel(be, dim, cls):
    func = f"nms{dim}d"
    x = _arr(be, (1, 1) + (5,) * dim)
    for bad in BAD_2D if dim == 2 else BAD_3D:
        if cls:
            klass = sx.NonMaximaSuppression2d if dim == 2 else sx.NonMaximaSuppression3d
            # Validated at construction (named after the class) or at the call (named after the function).
            with pytest.raises(ValueError, match=rf"(NonMaximaSuppression{dim}d|{func})\b.*\bkernel_size\b"):
                klass(bad)(x)
        else:
            with _raises(ValueError, func, "kernel_size"):
                getattr(sx, func)(x, bad)


# --------------------------------------------------------------------------------------------
# Temperature.

BAD_NUMBERS = [0.0, -1.0, 0, -3, math.nan, -math.inf]


@pytest.mark.parametrize(("func", "call", "ndim"), TEMPERATURE_CASES, ids=TEMPERATURE_IDS)
@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=[repr(b) for b in BAD_NUMBERS])
def test_bad_temperature_number(be, func, call, ndim, bad):
    x = _arr(be, (1, 2) + (4,) * (ndim - 2))
    with _raises(ValueError, func, "temperature"):
        call(x, bad)


@pytest.mark.parametrize(("func", "call", "ndim"), TEMPERATURE_CASES, ids=TEMPERATURE_IDS)
@pytest.mark.parametrize("bad", [0.0, -0.5, math.nan], ids=["zero", "negative", "nan"])
@pytest.mark.parametrize("shape", ["scalar", "per-map"])
def test_bad_temperature_array(be, func, call, ndim, bad, shape):
    x = _arr(be, (1, 2) + (4,) * (ndim - 2))
    if shape == "scalar":
        t = np.asarray(bad)
    else:  # one temperature per map, a single bad entry
        t = np.ones((1, 2, 1) if func.startswith("spatial") else (1, 2) + (1,) * (ndim - 2))
        t.reshape(-1)[1] = bad
    with _raises(ValueError, func, "temperature"):
        call(x, be.asarray(t))


@pytest.mark.parametrize(("func", "call", "ndim"), TEMPERATURE_CASES, ids=TEMPERATURE_IDS)
@pytest.mark.parametrize("bad", ["2", [1.0, 2.0], True, 1j])
def test_temperature_of_wrong_type(be, func, call, ndim, bad):
    x = _arr(be, (1, 2) + (4,) * (ndim - 2))
    with _raises(TypeError, func, "temperature"):
        call(x, bad)


@pytest.mark.parametrize(("func", "call", "ndim"), TEMPERATURE_CASES, ids=TEMPERATURE_IDS)
def test_temperature_bool_array(be, func, call, ndim):
    x = _arr(be, (1, 2) + (4,) * (ndim - 2))
    with _raises(TypeError, func, "temperature"):
        call(x, be.asarray(np.asarray(True)))


@pytest.mark.parametrize(("func", "call", "ndim"), TEMPERATURE_CASES, ids=TEMPERATURE_IDS)
def test_good_temperature_array_is_accepted(be, func, call, ndim):
    # The checks must not reject valid per-map temperatures.
    x = _arr(be, (2, 3) + (4,) * (ndim - 2))
    t = np.linspace(0.5, 2.0, 6).reshape(
        (2, 3, 1) if func.startswith("spatial") else (2, 3) + (1,) * (ndim - 2)
    )
    out = call(x, be.asarray(t))
    first = out[0] if isinstance(out, tuple) else out
    assert first.shape[:2] == (2, 3)


@pytest.mark.parametrize(
    ("func", "x_shape", "t_shape"),
    [
        ("conv_soft_argmax2d", (1, 1, 3, 3), (2,)),
        ("conv_soft_argmax3d", (1, 1, 3, 3, 3), (2,)),
        ("spatial_softmax2d", (1, 2, 3, 3), (2,)),
        ("spatial_softmax2d", (1, 2, 3, 3), (3, 2, 1)),
        ("conv_soft_argmax2d", (1, 1, 3, 3), (2, 1, 1, 1)),
    ],
)
def test_temperature_not_broadcasting_to_the_maps(be_nt, func, x_shape, t_shape):
    x = _arr(be_nt, x_shape)
    t = be_nt.asarray(np.ones(t_shape))
    with _raises(ValueError, func, "temperature"):
        getattr(sx, func)(x, temperature=t)


# --------------------------------------------------------------------------------------------
# Dtypes: integers and bool are for the NMS functions only.


@pytest.mark.parametrize("op", FLOAT_ONLY)
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_integer_input_is_type_error_outside_nms(be, op, dtype):
    func, param, call, ndim = ALL_OPS[op]
    x = _arr(be, (1, 1) + (5,) * (ndim - 2), dtype=dtype)
    with _raises(TypeError, func, param):
        call(x)


@pytest.mark.parametrize("param", ["mean", "std"])
@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_render_gaussian2d_integer_is_type_error(be, param, dtype):
    arrays = {"mean": _arr(be, (2, 2)), "std": be.asarray(np.ones((2, 2)))}
    arrays[param] = be.asarray(np.ones((2, 2), dtype=dtype))
    with _raises(TypeError, "render_gaussian2d", param):
        sx.render_gaussian2d(arrays["mean"], arrays["std"], (4, 4))


def test_render_gaussian2d_mixed_float_dtypes(be):
    mean = be.asarray(np.zeros((2, 2), dtype=np.float32))
    std = be.asarray(np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"render_gaussian2d\b.*mean.*std"):
        sx.render_gaussian2d(mean, std, (4, 4))


@pytest.mark.parametrize("op", NMS_OPS)
@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "bool"])
def test_nms_accepts_integers_and_bool(be, op, dtype):
    _func, _, call, ndim = ALL_OPS[op]
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2 if dtype == "bool" else 4, size=(1, 2) + (5,) * (ndim - 2))
    a[0, 0, ..., 2, 2] = 9 if dtype != "bool" else 1  # at least one strict maximum for ints
    x = be.asarray(a.astype(dtype))
    ref = be.asarray(a.astype(np.float64))
    out, expected = call(x), call(ref)
    outs = out if isinstance(out, tuple) else (out,)
    exps = expected if isinstance(expected, tuple) else (expected,)
    for o, e in zip(outs, exps):
        o_np, e_np = be.to_numpy(o), be.to_numpy(e)
        if e_np.dtype == bool:  # a mask
            assert o_np.dtype == bool
            np.testing.assert_array_equal(o_np, e_np)
        else:  # mask_only=False keeps the input's dtype
            assert o_np.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(o_np.astype(np.float64), e_np)


@pytest.mark.parametrize("op", NMS_OPS)
def test_nms_complex_is_type_error(op):
    func, param, call, ndim = ALL_OPS[op]
    x = np.zeros((1, 1) + (5,) * (ndim - 2), dtype=complex)
    with _raises(TypeError, func, param):
        call(x)


# --------------------------------------------------------------------------------------------
# Counts, modes, bonuses, flags.


def _quad_calls(func):
    """``(name expected in the message, call)``: the function itself and the classes using it.

    ``AdaptiveQuadInterp3d`` checks every parameter in its constructor, so its messages name the class.
    """
    if func == "conv_quad_interp3d":
        return [
            (func, lambda x, **kw: sx.conv_quad_interp3d(x, **kw)),
            (func, lambda x, **kw: sx.ConvQuadInterp3d(**kw)(x)),
            (f"(AdaptiveQuadInterp3d|{func})", lambda x, **kw: sx.AdaptiveQuadInterp3d(mode="conv", **kw)(x)),
        ]
    return [
        (func, lambda x, **kw: sx.iterative_quad_interp3d(x, **kw)),
        (func, lambda x, **kw: sx.IterativeQuadInterp3d(**kw)(x)),
        (f"(AdaptiveQuadInterp3d|{func})", lambda x, **kw: sx.AdaptiveQuadInterp3d(mode="patch", **kw)(x)),
    ]


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize("bad", [-1, -5, 2.0, 1.5, None, "3", True])
def test_bad_n_iters(be, func, bad):
    x = _arr(be, (1, 1, 3, 5, 5))
    for name, call in _quad_calls(func):
        with _raises(ValueError, name, "n_iters"):
            call(x, n_iters=bad)


@pytest.mark.parametrize("bad", [-1, -3, 1.0, None, "1", True])
def test_bad_dilation_radius(be, bad):
    x = _arr(be, (1, 1, 3, 5, 5))
    for name, call in _quad_calls("conv_quad_interp3d"):
        with _raises(ValueError, name, "dilation_radius"):
            call(x, dilation_radius=bad)


@pytest.mark.parametrize("bad", [-1, -10, 2.0, "5", True])
def test_bad_max_candidates(be, bad):
    x = _arr(be, (1, 1, 3, 5, 5))
    for name, call in _quad_calls("iterative_quad_interp3d"):
        with _raises(ValueError, name, "max_candidates"):
            call(x, max_candidates=bad)


@pytest.mark.parametrize(
    ("mode", "param"), [("auto", "dilation_radius"), ("patch", "dilation_radius"), ("conv", "max_candidates")]
)
def test_adaptive_rejects_bad_parameters_of_either_path(be, mode, param):
    x = _arr(be, (1, 1, 3, 5, 5))
    with pytest.raises(ValueError, match=rf"(AdaptiveQuadInterp3d|quad_interp3d)\b.*\b{param}\b"):
        sx.AdaptiveQuadInterp3d(mode=mode, **{param: -1})(x)


@pytest.mark.parametrize("func", ["conv_quad_interp3d", "iterative_quad_interp3d"])
@pytest.mark.parametrize(
    ("param", "bad", "exc"),
    [
        ("max_subpixel_shift", -0.1, ValueError),
        ("max_subpixel_shift", math.nan, ValueError),
        ("max_subpixel_shift", "0.6", ValueError),
        ("strict_maxima_bonus", math.nan, ValueError),
        ("strict_maxima_bonus", None, ValueError),
        ("allow_scale_steps", "yes", TypeError),
        ("allow_scale_steps", 1, TypeError),
    ],
)
def test_bad_quad_interp_parameters(be, func, param, bad, exc):
    x = _arr(be, (1, 1, 3, 5, 5))
    for name, call in _quad_calls(func):
        with _raises(exc, name, param):
            call(x, **{param: bad})


@pytest.mark.parametrize("mode", ["bad", "", "CONV", None, 1])
def test_adaptive_bad_mode(mode):
    with pytest.raises(ValueError, match=r"AdaptiveQuadInterp3d\b.*\bmode\b"):
        sx.AdaptiveQuadInterp3d(mode=mode)


@pytest.mark.parametrize("cls", [False, True], ids=["function", "class"])
@pytest.mark.parametrize("kernel", [(2, 3, 3), (3, 4, 3), (3, 3, 2), (2, 2, 2)])
def test_strict_maxima_bonus_needs_odd_kernel(be, cls, kernel):
    x = _arr(be, (1, 1, 5, 5, 5))
    kw = {"kernel_size": kernel, "padding": (1, 1, 1), "strict_maxima_bonus": 0.5}
    with _raises(ValueError, "conv_soft_argmax3d", "strict_maxima_bonus"):
        (sx.ConvSoftArgmax3d(**kw)(x) if cls else sx.conv_soft_argmax3d(x, **kw))
    # The same kernel without a bonus is fine.
    kw["strict_maxima_bonus"] = 0.0
    coords, _ = sx.conv_soft_argmax3d(x, **kw)
    assert coords.shape[2] == 3


@pytest.mark.parametrize("bad", [-0.5, math.nan, "1", None])
def test_strict_maxima_bonus_negative_or_not_a_number(be, bad):
    x = _arr(be, (1, 1, 5, 5, 5))
    with _raises(ValueError, "conv_soft_argmax3d", "strict_maxima_bonus"):
        sx.conv_soft_argmax3d(x, strict_maxima_bonus=bad)


@pytest.mark.parametrize(
    ("func", "call"),
    [
        ("spatial_expectation2d", lambda x, v: sx.spatial_expectation2d(x, v)),
        ("spatial_soft_argmax2d", lambda x, v: sx.spatial_soft_argmax2d(x, None, v)),
        ("conv_soft_argmax2d", lambda x, v: sx.conv_soft_argmax2d(x, normalized_coordinates=v)),
    ],
)
def test_normalized_coordinates_must_be_bool(be, func, call):
    x = _arr(be, (1, 1, 4, 4))
    with _raises(TypeError, func, "normalized_coordinates"):
        call(x, "yes")


@pytest.mark.parametrize(
    ("func", "call"),
    [
        ("nms2d", lambda x, v: sx.nms2d(x, (3, 3), v)),
        ("conv_soft_argmax2d", lambda x, v: sx.conv_soft_argmax2d(x, output_value=v)),
    ],
)
def test_flags_must_be_bool(be, func, call):
    x = _arr(be, (1, 1, 4, 4))
    param = "mask_only" if func == "nms2d" else "output_value"
    with _raises(TypeError, func, param):
        call(x, "no")
