"""Parity with kornia 0.9.0, the oracle of the tests (docs/semantics.md, Accuracy), for every function and class of the seed page.

subpix_xp gets torch CPU tensors or NumPy arrays (the ``lib`` fixture); kornia always gets torch
tensors holding the same numbers. Every output must be of the caller's library, in kornia's dtype and
shape, and agree with kornia: coordinates within ``ATOL`` (float64 1e-9, float32 1e-4 px, absolute),
other floating outputs within ``ATOL + RTOL * |expected|``, masks identical. The input must not be
modified.

The one deliberate divergence (docs/semantics.md, Differences from kornia 0.9.0): our ``strict_maxima_bonus`` works, kornia 0.9.0 ignores it.
Parity calls pass ``strict_maxima_bonus=0.0`` to us and nothing to kornia.

Set ``SUBPIX_XP_PARITY_REPORT=1`` to print, at the end of the module, the largest difference seen
per function, dtype and output kind, with the case that produced it.
"""

from __future__ import annotations

import functools
import os

import kornia.geometry.subpix as K
import numpy as np
import pytest
import torch
from _helpers import ATOL, assert_close, dog_stack, max_abs_diff

import subpix_xp as S
from subpix_xp.testing import to_numpy

pytestmark = pytest.mark.filterwarnings("ignore:.*strict_maxima_bonus.*:DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The arrays here are tiny: torch's thread pool only costs time on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["torch", "numpy"])
def lib(request):
    """The array library handed to subpix_xp (kornia always gets torch)."""
    return request.param


# ---------------------------------------------------------------------------------------------
# Inputs.


@functools.cache
def _dog(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A DoG stack scaled to unit standard deviation; 4-D shapes use the levels as channels."""
    if len(shape) == 4:
        b, c, h, w = shape
        out = dog_stack((b, 1, c, h, w), seed=seed).reshape(shape)
    else:
        out = dog_stack(shape, seed=seed)
    out = out / out.std()
    out.setflags(write=False)
    return out


def make(kind: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float64 NumPy input of one of the named kinds."""
    rng = np.random.default_rng(seed)
    if kind == "randn":
        return rng.standard_normal(shape)
    if kind == "scaled":  # large dynamic range: magnitudes from e^-6 to e^6 side by side
        return rng.standard_normal(shape) * np.exp(rng.uniform(-6.0, 6.0, shape))
    if kind == "tiny":
        return rng.standard_normal(shape) * 1e-15
    if kind == "huge":
        return rng.standard_normal(shape) * 1e15
    if kind == "ties":  # integer-valued: plateaus and many equal neighbours
        return rng.integers(0, 3, shape).astype(np.float64)
    if kind == "const":
        return np.full(shape, 0.75)
    if kind == "dog":
        return np.array(_dog(tuple(shape), seed))
    if kind == "negdog":  # its maxima are the DoG minima (bright blobs)
        return -np.array(_dog(tuple(shape), seed + 1))
    if kind == "nan":
        x = rng.standard_normal(shape)
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, size=max(1, flat.size // 20), replace=False)] = np.nan
        return x
    raise ValueError(kind)


def to_lib(a: np.ndarray, lib: str, dtype: str):
    """A fresh copy of ``a`` as ``lib``'s array in ``dtype``."""
    a = np.array(a, dtype=dtype)
    return torch.from_numpy(a) if lib == "torch" else a


def to_torch(a: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=dtype))


def random_mask(shape: tuple[int, ...], kind: str, seed: int = 0) -> np.ndarray:
    """Boolean masks for ``precomputed_nms_mask``: sparse or dense random, or every border voxel."""
    rng = np.random.default_rng(seed + 1000)
    if kind == "random":
        mask = rng.random(shape) < 0.15
    elif kind == "dense":
        mask = rng.random(shape) < 0.6
    elif kind == "border":
        mask = np.ones(shape, dtype=bool)
        mask[..., 1:-1, 1:-1, 1:-1] = rng.random(mask[..., 1:-1, 1:-1, 1:-1].shape) < 0.1
        return mask
    else:
        raise ValueError(kind)
    # always some border voxels: corners and face centres of every volume
    d, h, w = shape[-3:]
    for idx in [
        (0, 0, 0),
        (d - 1, h - 1, w - 1),
        (0, h // 2, w // 2),
        (d // 2, 0, w // 2),
        (d // 2, h // 2, w - 1),
    ]:
        mask[(..., *idx)] = True
    return mask


# ---------------------------------------------------------------------------------------------
# Comparison.

_WORST: dict[tuple[str, str, str], tuple[float, str]] = {}


def _record(func: str, dtype_name: str, kind: str, diff: float, case: str) -> None:
    key = (func, dtype_name, kind)
    if key not in _WORST or diff > _WORST[key][0]:
        _WORST[key] = (diff, case)


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    if not os.environ.get("SUBPIX_XP_PARITY_REPORT"):
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("largest |subpix_xp - kornia| per function / dtype / output:")
        for (func, dtype_name, kind), (diff, case) in sorted(_WORST.items()):
            reporter.write_line(f"  {func:28s} {dtype_name:8s} {kind:7s} {diff:.3e}  [{case}]")


def _torch_dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check_container(o, t: torch.Tensor, lib: str, what: str) -> None:
    if lib == "torch":
        assert isinstance(o, torch.Tensor), f"{what}: expected a torch.Tensor, got {type(o).__name__}"
        assert o.device.type == "cpu", f"{what}: device {o.device}"
        assert o.dtype == t.dtype, f"{what}: dtype {o.dtype} != kornia's {t.dtype}"
    else:
        assert type(o) is np.ndarray, f"{what}: expected a numpy.ndarray, got {type(o).__name__}"
        assert o.dtype == np.dtype(_torch_dtype_name(t)), f"{what}: dtype {o.dtype} != kornia's {t.dtype}"
    assert tuple(o.shape) == tuple(t.shape), f"{what}: shape {tuple(o.shape)} != kornia's {tuple(t.shape)}"


def check(
    func: str, case: str, ours, theirs, lib: str, dtype_name: str, *, coords: tuple[int, ...] = ()
) -> None:
    """Compare one call's outputs; ``coords`` lists the outputs (by position) that are coordinates."""
    assert isinstance(ours, tuple) == isinstance(theirs, tuple), f"{func}[{case}]: tuple-ness differs"
    ours_t = ours if isinstance(ours, tuple) else (ours,)
    theirs_t = theirs if isinstance(theirs, tuple) else (theirs,)
    assert len(ours_t) == len(theirs_t), f"{func}[{case}]: {len(ours_t)} outputs, kornia {len(theirs_t)}"
    for i, (o, t) in enumerate(zip(ours_t, theirs_t)):
        what = f"{func}[{case}] output {i} ({lib}, {dtype_name})"
        _check_container(o, t, lib, what)
        if t.dtype == torch.bool:
            assert_close(o, t, dtype_name, what=what)
            continue
        if not t.dtype.is_floating_point:
            np.testing.assert_array_equal(to_numpy(o), to_numpy(t), err_msg=what)
            continue
        diff = max_abs_diff(o, t)
        kind = "coords" if i in coords else "values"
        _record(func, dtype_name, kind, diff, f"{case}, {lib}")
        if kind == "coords":
            assert diff <= ATOL[dtype_name], (
                f"{what}: coordinates differ by {diff:.3e} > {ATOL[dtype_name]:.0e}"
            )
        else:
            assert_close(o, t, dtype_name, what=what)


def unchanged(x_ours, x_np: np.ndarray, dtype: str, what: str) -> None:
    np.testing.assert_array_equal(
        to_numpy(x_ours), np.asarray(x_np, dtype=dtype), err_msg=f"{what}: input modified"
    )


def temperature_pair(spec, shape: tuple[int, ...], lib: str, dtype: str):
    """``(ours, kornia's)`` temperature from a spec: None, a float, or ``(name, value)`` for arrays."""
    if spec is None or isinstance(spec, float):
        return spec, spec
    name, value = spec
    if name == "0d":
        arr = np.asarray(value)
    elif name == "0d_float64":  # a float64 array with a float32 input: cast to the input's dtype
        return to_lib(np.asarray(value), lib, "float64"), to_torch(np.asarray(value), "float64")
    elif name == "ones":  # all-ones shape that broadcasts against anything of len(shape) dims
        arr = np.full((1,) * len(shape), value)
    elif name == "per_map":  # (B, N, 1): a different temperature per map
        arr = value * np.linspace(0.5, 2.0, shape[0] * shape[1]).reshape(shape[0], shape[1], 1)
    else:
        raise ValueError(name)
    return to_lib(arr, lib, dtype), to_torch(arr, dtype)


# ---------------------------------------------------------------------------------------------
# DSNT: spatial_softmax2d, spatial_expectation2d, spatial_soft_argmax2d, render_gaussian2d.

SPATIAL_INPUTS = [
    ("randn", (2, 3, 5, 7)),
    ("scaled", (1, 2, 6, 5)),
    ("dog", (1, 3, 12, 14)),
    ("ties", (2, 2, 4, 5)),
    ("const", (1, 2, 3, 4)),
    ("randn", (1, 2, 1, 6)),  # H = 1
    ("scaled", (2, 1, 5, 1)),  # W = 1
    ("randn", (1, 1, 1, 1)),
]
SPATIAL_IDS = [f"{k}-{'x'.join(map(str, s))}" for k, s in SPATIAL_INPUTS]
TEMPERATURES = [None, 1.0, 0.3, 4.0, ("0d", 0.5), ("per_map", 1.5), ("0d_float64", 0.7)]


@pytest.mark.parametrize(("kind", "shape"), SPATIAL_INPUTS, ids=SPATIAL_IDS)
def test_spatial_softmax2d(kind, shape, lib, dtype_name):
    x_np = make(kind, shape)
    for spec in TEMPERATURES:
        t_ours, t_k = temperature_pair(spec, shape, lib, dtype_name)
        x = to_lib(x_np, lib, dtype_name)
        ours = S.spatial_softmax2d(x, t_ours)
        theirs = K.spatial_softmax2d(to_torch(x_np, dtype_name), t_k)
        case = f"{kind}{shape}, T={spec}"
        check("spatial_softmax2d", case, ours, theirs, lib, dtype_name)
        unchanged(x, x_np, dtype_name, case)


@pytest.mark.parametrize(("kind", "shape"), SPATIAL_INPUTS, ids=SPATIAL_IDS)
def test_spatial_soft_argmax2d(kind, shape, lib, dtype_name):
    x_np = make(kind, shape)
    for spec in TEMPERATURES:
        for normalized in (True, False):
            t_ours, t_k = temperature_pair(spec, shape, lib, dtype_name)
            x = to_lib(x_np, lib, dtype_name)
            ours = S.spatial_soft_argmax2d(x, t_ours, normalized)
            theirs = K.spatial_soft_argmax2d(to_torch(x_np, dtype_name), t_k, normalized)
            case = f"{kind}{shape}, T={spec}, normalized={normalized}"
            check("spatial_soft_argmax2d", case, ours, theirs, lib, dtype_name, coords=(0,))
            unchanged(x, x_np, dtype_name, case)


@pytest.mark.parametrize(("kind", "shape"), SPATIAL_INPUTS, ids=SPATIAL_IDS)
@pytest.mark.parametrize("prob", ["softmax", "raw"])
def test_spatial_expectation2d(kind, shape, prob, lib, dtype_name):
    x_np = make(kind, shape)
    if prob == "softmax":  # a proper distribution; "raw" checks that nothing renormalises
        flat = x_np.reshape(shape[0], shape[1], -1)
        e = np.exp(flat - flat.max(-1, keepdims=True))
        x_np = (e / e.sum(-1, keepdims=True)).reshape(shape)
    for normalized in (True, False):
        x = to_lib(x_np, lib, dtype_name)
        ours = S.spatial_expectation2d(x, normalized)
        theirs = K.spatial_expectation2d(to_torch(x_np, dtype_name), normalized)
        case = f"{kind}{shape} {prob}, normalized={normalized}"
        # a raw map is no distribution: its "coordinates" can reach thousands, so compare them as values
        coords = (0,) if prob == "softmax" else ()
        check("spatial_expectation2d", case, ours, theirs, lib, dtype_name, coords=coords)
        unchanged(x, x_np, dtype_name, case)


RENDER_CASES = [
    # mean shape, std shape, (H, W)
    ((2,), (2,), (5, 7)),
    ((3, 2), (2,), (6, 4)),  # std broadcasts against mean
    ((2, 3, 2), (2, 3, 2), (9, 11)),
    ((1, 2), (1, 2), (1, 6)),  # H = 1
    ((2, 2), (1, 2), (7, 1)),  # W = 1
    ((1, 2), (1, 2), (1, 1)),
    ((4, 2), (4, 2), (8, 8)),  # means partly far off the grid
]


@pytest.mark.parametrize(("mean_shape", "std_shape", "size"), RENDER_CASES)
@pytest.mark.parametrize("normalized", [True, False])
def test_render_gaussian2d(mean_shape, std_shape, size, normalized, lib, dtype_name):
    rng = np.random.default_rng(len(mean_shape) * 7 + size[0])
    h, w = size
    if normalized:
        mean = rng.uniform(-1.3, 1.3, mean_shape)
        std = rng.uniform(0.05, 0.8, std_shape)
    else:
        mean = rng.uniform(-1.0, 1.0, mean_shape) + rng.uniform(0, 1, mean_shape) * np.array([w, h])
        std = rng.uniform(0.3, 3.0, std_shape)
    if mean_shape == (4, 2):
        mean[0] = (-40.0, 55.0) if not normalized else (-9.0, 7.0)
    m, s = to_lib(mean, lib, dtype_name), to_lib(std, lib, dtype_name)
    ours = S.render_gaussian2d(m, s, size, normalized)
    theirs = K.render_gaussian2d(to_torch(mean, dtype_name), to_torch(std, dtype_name), size, normalized)
    case = f"mean{mean_shape} std{std_shape} size{size} normalized={normalized}"
    check("render_gaussian2d", case, ours, theirs, lib, dtype_name)
    unchanged(m, mean, dtype_name, case)
    unchanged(s, std, dtype_name, case)


# ---------------------------------------------------------------------------------------------
# conv_soft_argmax2d / conv_soft_argmax3d.


def _conv_inputs(ndim: int, kernel: tuple[int, ...], padding: tuple[int, ...]):
    """Named inputs for a window geometry, including sizes equal to and just above the kernel."""
    if ndim == 2:
        fixed = [
            ("randn", (2, 3, 9, 11)),
            ("scaled", (1, 2, 8, 10)),
            ("dog", (1, 3, 16, 18)),
            ("ties", (2, 2, 7, 8)),
            ("const", (1, 1, 6, 7)),
            ("randn", (1, 2, 1, 9)),
        ]
    else:
        fixed = [
            ("randn", (1, 2, 5, 7, 8)),
            ("scaled", (1, 1, 5, 6, 7)),
            ("dog", (1, 2, 5, 14, 16)),
            ("ties", (1, 2, 4, 6, 6)),
            ("const", (1, 1, 3, 5, 6)),
            ("randn", (2, 1, 1, 6, 7)),
        ]
    out = [(k, s) for k, s in fixed if all(n + 2 * p >= kk for n, p, kk in zip(s[2:], padding, kernel))]
    out.append(("randn", (1, 2, *kernel)))
    out.append(("scaled", (2, 1, *(kk + 1 for kk in kernel))))
    return out


CONV2D_GEOMETRIES = [
    # kernel_size, stride, padding
    ((3, 3), (1, 1), (1, 1)),
    ((3, 3), (2, 2), (0, 0)),
    ((2, 2), (1, 1), (1, 1)),  # even kernel, 2 * pad == kernel
    ((4, 3), (2, 1), (2, 1)),  # 2 * pad == kernel on the even axis
    ((5, 5), (1, 2), (2, 1)),
    ((1, 1), (1, 1), (0, 0)),
    ((4, 4), (3, 3), (1, 2)),
    ((3, 5), (1, 1), (0, 2)),
    ((2, 3), (3, 2), (1, 0)),  # stride larger than the kernel
]
CONV3D_GEOMETRIES = [
    ((3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((3, 3, 3), (1, 2, 2), (0, 1, 1)),
    ((2, 2, 2), (1, 1, 1), (1, 1, 1)),  # even kernel, 2 * pad == kernel
    ((3, 4, 2), (2, 1, 2), (1, 2, 0)),
    ((1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ((5, 3, 3), (2, 2, 2), (2, 0, 1)),
    ((1, 1, 1), (1, 1, 1), (0, 0, 0)),
    ((2, 2, 3), (3, 2, 4), (0, 1, 0)),  # stride larger than the kernel
]
# temperature, normalized_coordinates, output_value, eps: every value of each appears at least once
CONV_OPTIONS = [
    (1.0, True, False, 1e-8),
    (0.25, False, True, 1e-8),
    (("0d", 0.5), True, True, 1e-3),
    (("ones", 2.0), False, False, 1e-8),
    (5.0, False, True, 0.0),
]


def _conv_cases(geometries, ndim):
    for geom in geometries:
        for kind, shape in _conv_inputs(ndim, geom[0], geom[2]):
            gid = "k{}s{}p{}".format(*("".join(map(str, g)) for g in geom))
            yield pytest.param(geom, kind, shape, id=f"{gid}-{kind}-{'x'.join(map(str, shape))}")


def _run_conv(func_name: str, geom, kind, shape, lib, dtype_name, extra_ours: dict) -> None:
    kernel, stride, padding = geom
    x_np = make(kind, shape)
    ours_fn, kornia_fn = getattr(S, func_name), getattr(K, func_name)
    for spec, normalized, output_value, eps in CONV_OPTIONS:
        t_ours, t_k = temperature_pair(spec, (1,) * len(shape), lib, dtype_name)
        x = to_lib(x_np, lib, dtype_name)
        ours = ours_fn(x, kernel, stride, padding, t_ours, normalized, eps, output_value, **extra_ours)
        theirs = kornia_fn(
            to_torch(x_np, dtype_name), kernel, stride, padding, t_k, normalized, eps, output_value
        )
        case = (
            f"{kind}{shape} k={kernel} s={stride} p={padding} T={spec} norm={normalized} value={output_value}"
        )
        check(func_name, case, ours, theirs, lib, dtype_name, coords=(0,))
        unchanged(x, x_np, dtype_name, case)


@pytest.mark.parametrize(("geom", "kind", "shape"), list(_conv_cases(CONV2D_GEOMETRIES, 2)))
def test_conv_soft_argmax2d(geom, kind, shape, lib, dtype_name):
    _run_conv("conv_soft_argmax2d", geom, kind, shape, lib, dtype_name, {})


@pytest.mark.parametrize(("geom", "kind", "shape"), list(_conv_cases(CONV3D_GEOMETRIES, 3)))
def test_conv_soft_argmax3d(geom, kind, shape, lib, dtype_name):
    _run_conv("conv_soft_argmax3d", geom, kind, shape, lib, dtype_name, {"strict_maxima_bonus": 0.0})


# ---------------------------------------------------------------------------------------------
# Non-maxima suppression.


def _nms_inputs(kernel: tuple[int, ...]):
    if len(kernel) == 2:
        fixed = [
            ("randn", (2, 2, 9, 10)),
            ("ties", (2, 2, 9, 10)),
            ("dog", (1, 2, 14, 16)),
            ("const", (1, 1, 6, 7)),
            ("nan", (1, 2, 8, 9)),
            ("randn", (1, 1, 1, 8)),
        ]
    else:
        fixed = [
            ("randn", (1, 2, 5, 7, 8)),
            ("ties", (2, 1, 5, 6, 7)),
            ("dog", (1, 2, 5, 12, 14)),
            ("const", (1, 1, 4, 5, 6)),
            ("nan", (1, 2, 5, 6, 6)),
            ("randn", (1, 1, 2, 6, 6)),
        ]
    out = [*fixed, ("randn", (1, 2, *kernel)), ("ties", (2, 1, *(k + 1 for k in kernel)))]
    if max(kernel) > 1:
        out.append(("randn", (1, 1, *(max(k - 1, 1) for k in kernel))))  # smaller than the window
    return out


NMS2D_KERNELS = [(1, 1), (3, 3), (5, 5), (7, 7), (2, 2), (4, 3), (3, 5), (1, 3), (6, 2)]
NMS3D_KERNELS = [(1, 1, 1), (3, 3, 3), (5, 5, 5), (2, 2, 2), (3, 5, 3), (1, 3, 3), (3, 1, 2), (4, 3, 3)]


def _nms_cases(kernels):
    for kernel in kernels:
        for kind, shape in _nms_inputs(kernel):
            yield pytest.param(
                kernel, kind, shape, id=f"k{''.join(map(str, kernel))}-{kind}-{'x'.join(map(str, shape))}"
            )


def _run_nms(func_name, kernel, kind, shape, lib, dtype_name) -> None:
    x_np = make(kind, shape, seed=sum(kernel))
    for mask_only in (True, False):
        x = to_lib(x_np, lib, dtype_name)
        ours = getattr(S, func_name)(x, kernel, mask_only)
        theirs = getattr(K, func_name)(to_torch(x_np, dtype_name), kernel, mask_only)
        case = f"{kind}{shape} k={kernel} mask_only={mask_only}"
        check(func_name, case, ours, theirs, lib, dtype_name)
        unchanged(x, x_np, dtype_name, case)


@pytest.mark.parametrize(("kernel", "kind", "shape"), list(_nms_cases(NMS2D_KERNELS)))
def test_nms2d(kernel, kind, shape, lib, dtype_name):
    _run_nms("nms2d", kernel, kind, shape, lib, dtype_name)


@pytest.mark.parametrize(("kernel", "kind", "shape"), list(_nms_cases(NMS3D_KERNELS)))
def test_nms3d(kernel, kind, shape, lib, dtype_name):
    _run_nms("nms3d", kernel, kind, shape, lib, dtype_name)


MINMAX_INPUTS = [
    ("randn", (1, 2, 5, 7, 8)),
    ("ties", (2, 1, 5, 6, 7)),
    ("dog", (1, 2, 5, 12, 14)),
    ("const", (1, 1, 4, 5, 6)),
    ("nan", (1, 2, 5, 6, 6)),
    ("randn", (1, 1, 3, 3, 3)),
    ("randn", (1, 1, 2, 5, 5)),
    ("ties", (1, 2, 3, 4, 5)),
    ("randn", (2, 1, 4, 3, 6)),
]


@pytest.mark.parametrize(
    ("kind", "shape"), MINMAX_INPUTS, ids=[f"{k}-{'x'.join(map(str, s))}" for k, s in MINMAX_INPUTS]
)
def test_nms3d_minmax(kind, shape, lib, dtype_name):
    x_np = make(kind, shape)
    x = to_lib(x_np, lib, dtype_name)
    ours = S.nms3d_minmax(x)
    theirs = K.nms3d_minmax(to_torch(x_np, dtype_name))
    check("nms3d_minmax", f"{kind}{shape}", ours, theirs, lib, dtype_name)
    unchanged(x, x_np, dtype_name, f"{kind}{shape}")


@pytest.mark.parametrize("int_dtype", ["int32", "int64"])
def test_nms_integer_inputs(int_dtype, lib):
    """Integer maps (docs/semantics.md: any real dtype for NMS): same masks and values as kornia, integer dtype kept."""
    rng = np.random.default_rng(3)
    x2 = rng.integers(-2, 3, (2, 2, 8, 9))
    x3 = rng.integers(-2, 3, (1, 2, 5, 6, 7))
    for kernel in [(3, 3), (4, 3), (1, 1)]:
        for mask_only in (True, False):
            ours = S.nms2d(to_lib(x2, lib, int_dtype), kernel, mask_only)
            theirs = K.nms2d(to_torch(x2, int_dtype), kernel, mask_only)
            check("nms2d", f"{int_dtype} k={kernel} mask_only={mask_only}", ours, theirs, lib, "float64")
    for kernel in [(3, 3, 3), (2, 3, 3)]:
        for mask_only in (True, False):
            ours = S.nms3d(to_lib(x3, lib, int_dtype), kernel, mask_only)
            theirs = K.nms3d(to_torch(x3, int_dtype), kernel, mask_only)
            check("nms3d", f"{int_dtype} k={kernel} mask_only={mask_only}", ours, theirs, lib, "float64")
    check(
        "nms3d_minmax",
        int_dtype,
        S.nms3d_minmax(to_lib(x3, lib, int_dtype)),
        K.nms3d_minmax(to_torch(x3, int_dtype)),
        lib,
        "float64",
    )


# ---------------------------------------------------------------------------------------------
# Quadratic refinement.

QUAD_INPUTS = [
    ("randn", (1, 2, 5, 9, 10)),
    ("dog", (1, 1, 6, 48, 64)),
    ("negdog", (1, 2, 6, 24, 32)),
    ("scaled", (1, 2, 5, 8, 9)),
    ("tiny", (1, 1, 5, 9, 10)),  # amplitude 1e-15: no amplitude floor may reject the fits
    ("huge", (1, 1, 5, 9, 10)),  # amplitude 1e15
    ("ties", (1, 2, 5, 8, 8)),
    ("const", (1, 1, 4, 6, 6)),
    ("randn", (1, 1, 2, 6, 7)),  # D < 3: returned unrefined
    ("randn", (1, 1, 1, 5, 5)),
    ("randn", (1, 1, 4, 2, 6)),  # H < 3
    ("randn", (1, 1, 3, 3, 3)),  # the smallest refinable volume
    ("randn", (2, 2, 3, 4, 5)),
]
QUAD_IDS = [f"{k}-{'x'.join(map(str, s))}" for k, s in QUAD_INPUTS]
# n_iters, dilation_radius, allow_scale_steps, max_subpixel_shift, precomputed mask
CONV_QUAD_OPTIONS = [
    (5, 1, True, 0.6, None),
    (0, 1, True, 0.6, None),
    (1, 0, True, 0.6, "nms"),
    (3, 2, False, 0.6, None),
    (5, 2, True, 0.3, "random"),
    (5, 0, False, 1.0, "random"),
    (3, 1, True, 0.45, "dense"),
    (1, 2, True, 0.6, "border"),
    (5, 1, True, 0.0, "random"),
]
# n_iters, allow_scale_steps, max_subpixel_shift, precomputed mask, max_candidates
ITER_QUAD_OPTIONS = [
    (5, True, 0.6, None, None),
    (0, True, 0.6, None, None),
    (1, True, 0.6, "nms", 3),
    (3, False, 0.6, None, 0),
    (5, True, 0.3, "random", 4),
    (5, True, 0.6, "dense", 1),
    (5, False, 1.0, "random", 10**6),
    (3, True, 0.45, "dense", 5),
    (1, True, 0.6, "border", None),
    (5, True, 0.0, "random", 2),
]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """L-infinity dilation of a (..., D, H, W) boolean mask."""
    out = mask.copy()
    for axis in (-3, -2, -1):
        grown = out.copy()
        for step in range(1, radius + 1):
            lo = [slice(None)] * out.ndim
            hi = [slice(None)] * out.ndim
            lo[axis], hi[axis] = slice(0, out.shape[axis] - step), slice(step, None)
            grown[tuple(lo)] |= out[tuple(hi)]
            grown[tuple(hi)] |= out[tuple(lo)]
        out = grown
    return out


def _mask_pair(spec, x_np: np.ndarray, lib: str, dtype_name: str):
    if spec is None:
        return None, None
    if spec == "nms":
        mask = to_numpy(K.nms3d(to_torch(x_np, dtype_name), (3, 3, 3), True))
    else:
        mask = random_mask(x_np.shape, spec)
    return to_lib(mask, lib, "bool"), torch.from_numpy(mask.copy())


@pytest.mark.parametrize(("kind", "shape"), QUAD_INPUTS, ids=QUAD_IDS)
def test_conv_quad_interp3d(kind, shape, lib, dtype_name):
    x_np = make(kind, shape)
    for n_iters, radius, scale_steps, max_shift, mask_spec in CONV_QUAD_OPTIONS:
        m_ours, m_k = _mask_pair(mask_spec, x_np, lib, dtype_name)
        x = to_lib(x_np, lib, dtype_name)
        ours = S.conv_quad_interp3d(x, n_iters, 0.0, max_shift, m_ours, radius, scale_steps)
        case = (
            f"{kind}{shape} n_iters={n_iters} dilation_radius={radius} allow_scale_steps={scale_steps} "
            f"max_subpixel_shift={max_shift} mask={mask_spec}"
        )
        x_k = to_torch(x_np, dtype_name)
        try:
            theirs = K.conv_quad_interp3d(x_k, n_iters, None, max_shift, m_k, radius, scale_steps)
        except IndexError:
            # kornia 0.9.0 indexes an empty table when there are maxima but none has an interior voxel
            # within dilation_radius. docs/semantics.md (Quadratic refinement): such maxima leave the precomputed voxels, so they are
            # rejected and everything stays unrefined, which is kornia's result with n_iters=0.
            mask = to_numpy(m_k) if m_k is not None else to_numpy(K.nms3d(x_k, (3, 3, 3), True))
            assert mask.any() and not _dilate(mask, radius)[..., 1:-1, 1:-1, 1:-1].any(), (
                f"kornia crashed: {case}"
            )
            theirs = K.conv_quad_interp3d(x_k, 0, None, max_shift, m_k, radius, scale_steps)
        check("conv_quad_interp3d", case, ours, theirs, lib, dtype_name, coords=(0,))
        unchanged(x, x_np, dtype_name, case)


@pytest.mark.parametrize(("kind", "shape"), QUAD_INPUTS, ids=QUAD_IDS)
def test_iterative_quad_interp3d(kind, shape, lib, dtype_name):
    x_np = make(kind, shape)
    for n_iters, scale_steps, max_shift, mask_spec, max_candidates in ITER_QUAD_OPTIONS:
        m_ours, m_k = _mask_pair(mask_spec, x_np, lib, dtype_name)
        x = to_lib(x_np, lib, dtype_name)
        ours = S.iterative_quad_interp3d(x, n_iters, 0.0, max_shift, scale_steps, m_ours, max_candidates)
        theirs = K.iterative_quad_interp3d(
            to_torch(x_np, dtype_name), n_iters, None, max_shift, scale_steps, m_k, max_candidates
        )
        case = (
            f"{kind}{shape} n_iters={n_iters} allow_scale_steps={scale_steps} max_subpixel_shift={max_shift} "
            f"mask={mask_spec} max_candidates={max_candidates}"
        )
        check("iterative_quad_interp3d", case, ours, theirs, lib, dtype_name, coords=(0,))
        unchanged(x, x_np, dtype_name, case)


@pytest.mark.parametrize(
    ("kind", "shape", "mask_spec"),
    [
        ("randn", (1, 2, 5, 9, 10), None),
        ("negdog", (1, 2, 6, 24, 32), "dense"),
        ("ties", (1, 2, 5, 8, 8), "random"),
    ],
)
@pytest.mark.parametrize("n_iters", [1, 3])
def test_conv_with_full_radius_is_kornia_iterative(kind, shape, mask_spec, n_iters, lib, dtype_name):
    """With ``dilation_radius = n_iters`` no keypoint can leave the precomputed voxels, so our static
    path must give kornia's ``iterative_quad_interp3d`` (the reference page; docs/semantics.md, Quadratic refinement)."""
    x_np = make(kind, shape)
    m_ours, m_k = _mask_pair(mask_spec, x_np, lib, dtype_name)
    ours = S.conv_quad_interp3d(to_lib(x_np, lib, dtype_name), n_iters, 0.0, 0.5, m_ours, n_iters)
    theirs = K.iterative_quad_interp3d(to_torch(x_np, dtype_name), n_iters, None, 0.5, True, m_k)
    check(
        "conv_quad_interp3d",
        f"{kind}{shape} radius=n_iters={n_iters} mask={mask_spec} vs kornia iterative",
        ours,
        theirs,
        lib,
        dtype_name,
        coords=(0,),
    )


# ---------------------------------------------------------------------------------------------
# Default arguments and the classes.


def test_defaults(lib, dtype_name):
    """Every function called with its defaults only (bonus aside) agrees with kornia's defaults."""
    x4, x5 = make("dog", (1, 3, 12, 14)), make("dog", (1, 2, 5, 14, 16))
    t4, t5 = to_torch(x4, dtype_name), to_torch(x5, dtype_name)
    o4, o5 = to_lib(x4, lib, dtype_name), to_lib(x5, lib, dtype_name)
    pairs = [
        ("spatial_softmax2d", S.spatial_softmax2d(o4), K.spatial_softmax2d(t4), ()),
        (
            "spatial_expectation2d",
            S.spatial_expectation2d(S.spatial_softmax2d(o4)),
            K.spatial_expectation2d(K.spatial_softmax2d(t4)),
            (0,),
        ),
        ("spatial_soft_argmax2d", S.spatial_soft_argmax2d(o4), K.spatial_soft_argmax2d(t4), (0,)),
        ("conv_soft_argmax2d", S.conv_soft_argmax2d(o4), K.conv_soft_argmax2d(t4), (0,)),
        ("conv_soft_argmax3d", S.conv_soft_argmax3d(o5), K.conv_soft_argmax3d(t5), (0,)),
        ("nms2d", S.nms2d(o4, (3, 3)), K.nms2d(t4, (3, 3)), ()),
        ("nms3d", S.nms3d(o5, (3, 3, 3)), K.nms3d(t5, (3, 3, 3)), ()),
        ("nms3d_minmax", S.nms3d_minmax(o5), K.nms3d_minmax(t5), ()),
        (
            "conv_quad_interp3d",
            S.conv_quad_interp3d(o5, strict_maxima_bonus=0.0),
            K.conv_quad_interp3d(t5),
            (0,),
        ),
        (
            "iterative_quad_interp3d",
            S.iterative_quad_interp3d(o5, strict_maxima_bonus=0.0),
            K.iterative_quad_interp3d(t5),
            (0,),
        ),
    ]
    mean, std = np.array([[3.2, 4.7], [0.0, 8.0]]), np.array([1.5, 0.8])
    pairs.append(
        (
            "render_gaussian2d",
            S.render_gaussian2d(
                to_lib(mean / 5 - 1, lib, dtype_name), to_lib(std / 5, lib, dtype_name), (9, 11)
            ),
            K.render_gaussian2d(to_torch(mean / 5 - 1, dtype_name), to_torch(std / 5, dtype_name), (9, 11)),
            (),
        )
    )
    for func, ours, theirs, coords in pairs:
        check(func, "defaults", ours, theirs, lib, dtype_name, coords=coords)


def _strided_view(x_np: np.ndarray, lib: str, dtype: str):
    """``x_np``'s values as a non-contiguous view: a transposed torch tensor, a reversed NumPy view."""
    if lib == "torch":
        base = torch.from_numpy(np.ascontiguousarray(np.swapaxes(np.asarray(x_np, dtype=dtype), -1, -2)))
        view = base.transpose(-1, -2)
        assert not view.is_contiguous()
    else:
        base = np.ascontiguousarray(np.asarray(x_np, dtype=dtype)[..., ::-1])
        view = base[..., ::-1]
        assert not view.flags.c_contiguous
    return view


def test_noncontiguous_inputs(lib, dtype_name):
    """Views with unusual strides (transposed torch tensors, negative NumPy strides) give kornia's results."""
    x4, x5 = make("dog", (1, 3, 12, 14)), make("negdog", (1, 2, 6, 24, 32))
    t4, t5 = to_torch(x4, dtype_name), to_torch(x5, dtype_name)
    v4, v5 = _strided_view(x4, lib, dtype_name), _strided_view(x5, lib, dtype_name)
    m5 = random_mask(x5.shape, "random")
    mv = _strided_view(m5, lib, "bool")
    pairs = [
        ("spatial_softmax2d", S.spatial_softmax2d(v4, 0.5), K.spatial_softmax2d(t4, 0.5), ()),
        ("spatial_expectation2d", S.spatial_expectation2d(v4, False), K.spatial_expectation2d(t4, False), ()),
        ("spatial_soft_argmax2d", S.spatial_soft_argmax2d(v4, 0.5), K.spatial_soft_argmax2d(t4, 0.5), (0,)),
        (
            "conv_soft_argmax2d",
            S.conv_soft_argmax2d(v4, (3, 4), (1, 2), (1, 2), 0.5, False, output_value=True),
            K.conv_soft_argmax2d(t4, (3, 4), (1, 2), (1, 2), 0.5, False, output_value=True),
            (0,),
        ),
        (
            "conv_soft_argmax3d",
            S.conv_soft_argmax3d(v5, (3, 3, 2), (1, 2, 1), (1, 1, 1)),
            K.conv_soft_argmax3d(t5, (3, 3, 2), (1, 2, 1), (1, 1, 1)),
            (0,),
        ),
        ("nms2d", S.nms2d(v4, (3, 3)), K.nms2d(t4, (3, 3)), ()),
        ("nms2d", S.nms2d(v4, (4, 5), True), K.nms2d(t4, (4, 5), True), ()),
        ("nms3d", S.nms3d(v5, (3, 3, 3)), K.nms3d(t5, (3, 3, 3)), ()),
        ("nms3d", S.nms3d(v5, (2, 3, 5), True), K.nms3d(t5, (2, 3, 5), True), ()),
        ("nms3d_minmax", S.nms3d_minmax(v5), K.nms3d_minmax(t5), ()),
        (
            "conv_quad_interp3d",
            S.conv_quad_interp3d(v5, strict_maxima_bonus=0.0),
            K.conv_quad_interp3d(t5),
            (0,),
        ),
        (
            "conv_quad_interp3d",
            S.conv_quad_interp3d(v5, 3, 0.0, 0.6, mv, 2),
            K.conv_quad_interp3d(t5, 3, None, 0.6, torch.from_numpy(m5), 2),
            (0,),
        ),
        (
            "iterative_quad_interp3d",
            S.iterative_quad_interp3d(v5, strict_maxima_bonus=0.0),
            K.iterative_quad_interp3d(t5),
            (0,),
        ),
        (
            "iterative_quad_interp3d",
            S.iterative_quad_interp3d(v5, 5, 0.0, 0.6, True, mv, 7),
            K.iterative_quad_interp3d(t5, 5, None, 0.6, True, torch.from_numpy(m5), 7),
            (0,),
        ),
    ]
    mean = np.array([[3.2, 4.7], [0.0, 8.0], [5.5, 2.0]])
    pairs.append(
        (
            "render_gaussian2d",
            S.render_gaussian2d(
                _strided_view(mean, lib, dtype_name),
                to_lib(np.array([1.5, 0.8]), lib, dtype_name),
                (9, 11),
                False,
            ),
            K.render_gaussian2d(
                to_torch(mean, dtype_name), to_torch(np.array([1.5, 0.8]), dtype_name), (9, 11), False
            ),
            (),
        )
    )
    for func, ours, theirs, coords in pairs:
        check(func, "non-contiguous", ours, theirs, lib, dtype_name, coords=coords)


CLASS_CASES = [
    # class name, constructor kwargs (shared), extra kwargs for ours, call kwargs, input (kind, shape)
    ("SpatialSoftArgmax2d", {}, {}, {}, ("dog", (1, 3, 12, 14))),
    (
        "SpatialSoftArgmax2d",
        {"temperature": 0.2, "normalized_coordinates": False},
        {},
        {},
        ("randn", (2, 2, 5, 1)),
    ),
    ("SpatialSoftArgmax2d", {"temperature": ("0d", 0.7)}, {}, {}, ("scaled", (1, 2, 4, 6))),
    ("ConvSoftArgmax2d", {}, {}, {}, ("dog", (1, 3, 12, 14))),
    (
        "ConvSoftArgmax2d",
        {
            "kernel_size": (4, 2),
            "stride": (2, 1),
            "padding": (2, 1),
            "temperature": 0.5,
            "normalized_coordinates": False,
            "eps": 1e-3,
            "output_value": True,
        },
        {},
        {},
        ("scaled", (2, 2, 7, 9)),
    ),
    ("ConvSoftArgmax3d", {}, {}, {}, ("dog", (1, 2, 5, 12, 14))),
    (
        "ConvSoftArgmax3d",
        {
            "kernel_size": (3, 2, 3),
            "stride": (1, 2, 2),
            "padding": (0, 1, 1),
            "temperature": ("0d", 0.3),
            "normalized_coordinates": True,
            "output_value": False,
        },
        {"strict_maxima_bonus": 0.0},
        {},
        ("randn", (1, 2, 4, 7, 8)),
    ),
    ("NonMaximaSuppression2d", {"kernel_size": (3, 3)}, {}, {}, ("ties", (2, 2, 8, 9))),
    ("NonMaximaSuppression2d", {"kernel_size": (4, 5)}, {}, {"mask_only": True}, ("randn", (1, 2, 9, 10))),
    (
        "NonMaximaSuppression3d",
        {"kernel_size": (3, 3, 3)},
        {},
        {"mask_only": True},
        ("dog", (1, 2, 5, 12, 14)),
    ),
    ("NonMaximaSuppression3d", {"kernel_size": (2, 3, 4)}, {}, {}, ("ties", (1, 1, 5, 6, 7))),
    ("ConvQuadInterp3d", {}, {"strict_maxima_bonus": 0.0}, {}, ("dog", (1, 1, 6, 48, 64))),
    (
        "ConvQuadInterp3d",
        {"n_iters": 3, "max_subpixel_shift": 0.4, "dilation_radius": 2, "allow_scale_steps": False},
        {"strict_maxima_bonus": 0.0},
        {"precomputed_nms_mask": "random"},
        ("randn", (1, 2, 5, 8, 9)),
    ),
    ("IterativeQuadInterp3d", {}, {"strict_maxima_bonus": 0.0}, {}, ("negdog", (1, 2, 6, 24, 32))),
    (
        "IterativeQuadInterp3d",
        {"n_iters": 2, "max_subpixel_shift": 0.5, "allow_scale_steps": False, "max_candidates": 3},
        {"strict_maxima_bonus": 0.0},
        {"precomputed_nms_mask": "border"},
        ("randn", (2, 1, 5, 8, 9)),
    ),
    ("AdaptiveQuadInterp3d", {}, {"strict_maxima_bonus": 0.0}, {}, ("dog", (1, 1, 6, 48, 64))),
    (
        "AdaptiveQuadInterp3d",
        {"mode": "patch", "max_candidates": 4},
        {"strict_maxima_bonus": 0.0},
        {},
        ("negdog", (1, 2, 6, 24, 32)),
    ),
    (
        "AdaptiveQuadInterp3d",
        {"mode": "conv", "n_iters": 4, "dilation_radius": 2, "max_subpixel_shift": 0.5},
        {"strict_maxima_bonus": 0.0},
        {"precomputed_nms_mask": "random"},
        ("randn", (1, 2, 5, 8, 9)),
    ),
]


@pytest.mark.parametrize(
    ("name", "ctor", "ctor_ours", "call", "inp"),
    CLASS_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CLASS_CASES)],
)
def test_classes(name, ctor, ctor_ours, call, inp, lib, dtype_name):
    """Each class, called (and via ``forward``), gives kornia's module output."""
    kind, shape = inp
    x_np = make(kind, shape)
    ours_ctor, k_ctor = dict(ctor), dict(ctor)
    if "temperature" in ctor:
        ours_ctor["temperature"], k_ctor["temperature"] = temperature_pair(
            ctor["temperature"], shape, lib, dtype_name
        )
    ours_ctor.update(ctor_ours)
    ours_mod, k_mod = getattr(S, name)(**ours_ctor), getattr(K, name)(**k_ctor)
    ours_call, k_call = dict(call), dict(call)
    if "precomputed_nms_mask" in call:
        ours_call["precomputed_nms_mask"], k_call["precomputed_nms_mask"] = _mask_pair(
            call["precomputed_nms_mask"], x_np, lib, dtype_name
        )
    x = to_lib(x_np, lib, dtype_name)
    theirs = k_mod(to_torch(x_np, dtype_name), **k_call)
    coords = (0,) if name not in ("NonMaximaSuppression2d", "NonMaximaSuppression3d") else ()
    check(
        name, f"{ctor} {call} {kind}{shape}", ours_mod(x, **ours_call), theirs, lib, dtype_name, coords=coords
    )
    check(
        name,
        f"forward {ctor} {call} {kind}{shape}",
        ours_mod.forward(x, **ours_call),
        theirs,
        lib,
        dtype_name,
        coords=coords,
    )
    unchanged(x, x_np, dtype_name, name)
