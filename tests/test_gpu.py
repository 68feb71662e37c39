"""Issue 7 (CuPy and PyTorch CUDA): the GPU tests, and the checks of the GPU code that run on CPU.

On a GPU machine (``docs/gpu.md`` has the set-up)::

    python -m pytest tests/test_gpu.py tests/test_hooks.py -v -rs

``test_cpu_*`` run everywhere and never need a GPU:

* the CuPy backend module imports without CuPy, and NumPy/torch calls never load it; a CuPy
  namespace gets its hooks, and the generic switch keeps its capabilities;
* the CuPy hooks run with NumPy standing in for CuPy, SciPy's ``ndimage`` for ``cupyx``'s, and the
  window kernel's CUDA source compiled as C++ (same body, one loop in place of the CUDA grid),
  and equal the generic hooks on the cases of ``tests/test_hooks.py`` plus harder ones;
* the torch static-shape paths, run on the ``meta`` device (like CUDA: not the CPU, values
  unreadable), make no host synchronisation: no ``item``/``nonzero``-like operator, and no tensor
  built from host data on the device (a blocking copy, ``cudaStreamSynchronize``, on CUDA);
* ``benchmarks/bench_gpu.py`` stops with a clear message without a GPU, and runs end to end on
  CPU stand-ins (``--cpu-smoke``).

``test_gpu_*`` need a CUDA device, with CuPy and/or CUDA PyTorch; without one they skip with the
reason (or fail, for a backend named in ``SUBPIX_XP_BACKENDS``): outputs of the input's library,
device and dtype and equal to NumPy float64 within the conformance tolerances (docs/semantics.md, Accuracy) for every public name, the
conformance catalogue on ``cupy`` and ``torch_cuda``, CUDA-graph capture and replay and
``torch.compile(mode="reduce-overhead")`` of the static quad-interp path, no host sync under
``torch.cuda.set_sync_debug_mode("error")``, and CuPy inside a non-default stream.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import array_api_compat
import array_api_compat.numpy as np_xp
import numpy as np
import pytest
from _helpers import assert_close, dog_stack
from conftest import load_backend
from test_hooks import CASES as HOOK_CASES
from test_hooks import ROUNDING

import subpix_xp
from subpix_xp.backends import (
    _CAPABILITIES,
    GENERIC,
    Hooks,
    _cupy,
    backend_name,
    hooks_for,
    use_generic_hooks,
)
from subpix_xp.testing import selected_backend_names, to_numpy

ROOT = Path(__file__).resolve().parents[1]
GPU_BACKENDS = ("cupy", "torch_cuda")
_SELECTED, _ = selected_backend_names()

#: The hooks the CuPy backend overrides (the others are the generic ones).
CUPY_KERNELS = ("window_max", "window_min", "pad", "expand", "softmax", "separable_filter")

# ---------------------------------------------------------------------------------------------
# One call of every public name, on small deterministic inputs.


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    maps = rng.standard_normal((2, 3, 24, 20))
    e = np.exp(maps - maps.max(axis=(2, 3), keepdims=True))
    return {
        "maps": maps,
        "probs": e / e.sum(axis=(2, 3), keepdims=True),
        "temps": rng.uniform(0.2, 2.0, (2, 3, 1)),
        "volume": rng.standard_normal((1, 2, 6, 20, 24)),
        "dog": dog_stack((1, 1, 6, 48, 64)),
        "mean": rng.uniform(-0.9, 0.9, (2, 3, 2)),
        "std": np.full((2, 3, 2), 0.1),
    }


S = subpix_xp
PUBLIC = {
    "spatial_softmax2d": lambda a: S.spatial_softmax2d(a["maps"], 0.5),
    "spatial_expectation2d": lambda a: S.spatial_expectation2d(a["probs"], False),
    "spatial_soft_argmax2d": lambda a: S.spatial_soft_argmax2d(a["maps"], 0.1),
    "spatial_soft_argmax2d-temperature-array": lambda a: S.spatial_soft_argmax2d(
        a["maps"], a["temps"], False
    ),
    "render_gaussian2d": lambda a: S.render_gaussian2d(a["mean"], a["std"], (24, 20)),
    "conv_soft_argmax2d": lambda a: S.conv_soft_argmax2d(
        a["maps"], (3, 3), (2, 2), (1, 1), output_value=True
    ),
    "conv_soft_argmax3d": lambda a: S.conv_soft_argmax3d(a["volume"]),
    "nms2d": lambda a: S.nms2d(a["maps"], (5, 5), False),
    "nms3d": lambda a: S.nms3d(a["volume"], (3, 3, 3), True),
    "nms3d_minmax": lambda a: S.nms3d_minmax(a["volume"]),
    "conv_quad_interp3d": lambda a: S.conv_quad_interp3d(a["dog"], strict_maxima_bonus=0.0),
    "iterative_quad_interp3d": lambda a: S.iterative_quad_interp3d(a["dog"], strict_maxima_bonus=0.0),
    "SpatialSoftArgmax2d": lambda a: S.SpatialSoftArgmax2d(0.1)(a["maps"]),
    "ConvSoftArgmax2d": lambda a: S.ConvSoftArgmax2d((3, 3), (1, 1), (1, 1), output_value=True)(a["maps"]),
    "ConvSoftArgmax3d": lambda a: S.ConvSoftArgmax3d()(a["volume"]),
    "NonMaximaSuppression2d": lambda a: S.NonMaximaSuppression2d((3, 3))(a["maps"]),
    "NonMaximaSuppression3d": lambda a: S.NonMaximaSuppression3d((3, 3, 3))(a["volume"]),
    "ConvQuadInterp3d": lambda a: S.ConvQuadInterp3d(strict_maxima_bonus=0.0)(a["dog"]),
    "IterativeQuadInterp3d": lambda a: S.IterativeQuadInterp3d(strict_maxima_bonus=0.0)(a["dog"]),
    "AdaptiveQuadInterp3d": lambda a: S.AdaptiveQuadInterp3d("auto", strict_maxima_bonus=0.0)(a["dog"]),
}
# Everything but the sparse quad-interp path, which finds its maxima with ``nonzero`` by design
# (``AdaptiveQuadInterp3d(mode="auto")`` takes the static path on a GPU).
STATIC = {k: f for k, f in PUBLIC.items() if k not in ("iterative_quad_interp3d", "IterativeQuadInterp3d")}

#: Static calls that still synchronise with the host on a device (none known).
KNOWN_HOST_SYNC: dict[str, str] = {}


def _as_tuple(out):
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def _is_mask(a) -> bool:
    return "bool" in str(a.dtype)


# ---------------------------------------------------------------------------------------------
# Checking a hook against the generic one (CPU stand-ins and real CuPy alike).


def _extra_window_cases(rng):
    """Beyond test_hooks: large windows (one pass per axis), exactness, infinities, views, odd dtypes."""
    f = rng.standard_normal((1, 1, 9, 10, 11)).astype(np.float32)
    f.reshape(-1)[rng.integers(0, f.size, 4)] = np.nan
    yield (f, (5, 4, 5)), {}  # 100 taps: three 1-D passes
    yield (rng.standard_normal((3, 9, 9)), (9, 9)), {}  # 81 taps, a 1x1 result
    yield (rng.standard_normal((2, 30)), (9,)), {}
    yield (rng.standard_normal((1, 2, 5, 6, 7)), (2, 2, 2)), {}
    big = rng.integers(-(2**62), 2**62, (2, 8, 9), dtype=np.int64)  # not exact in a double
    big[0, 3, 3] = 2**62 + 1
    yield (big, (3, 3)), {}
    yield (rng.integers(0, 60000, (2, 7, 7)).astype(np.uint16), (3, 2)), {}
    yield (rng.integers(-100, 100, (2, 7, 7)).astype(np.int8), (2, 3)), {}
    inf = rng.standard_normal((2, 8, 8))
    inf[0, 2, 2], inf[0, 5, 5], inf[1, 1, 6] = np.inf, -np.inf, np.nan
    yield (inf, (3, 3)), {}
    nan = np.full((1, 5, 5), np.nan)
    nan[0, 0, 0] = 1.0
    yield (nan, (3, 3)), {}
    yield (rng.standard_normal((2, 9, 16))[..., ::2], (3, 3)), {}  # a strided view
    yield (rng.standard_normal((2, 9, 8)).astype(np.float16), (3, 3)), {}  # generic fallback


def _extra_pad_cases(rng):
    yield (rng.random((2, 3, 4, 5)) > 0.5, ((1, 2), (0, 0), (3, 1)), False), {}
    yield (rng.standard_normal((4,)), ((2, 3),), -np.inf), {}
    yield (rng.standard_normal((3, 8))[:, ::2], ((0, 0), (1, 1)), 0.0), {}
    yield (rng.integers(0, 9, (2, 3)).astype(np.uint8), ((0, 0), (0, 0)), 0), {}


def _extra_expand_cases(rng):
    index = np.array([0, 3, 4, 11], dtype=np.int64)
    values = rng.standard_normal(4)
    yield (values, index, np.broadcast_to(np.float64(2.5), (12,))), {}  # a broadcast (aliased) base
    yield (values.astype(np.float32), index, rng.standard_normal(12).astype(np.float32)), {}


def _extra_softmax_cases(rng):
    x = rng.standard_normal((3, 5)) * 50
    x[1] = -np.inf  # a row of -inf: NaN, as the generic hook
    yield (x, -1), {}
    yield (rng.standard_normal((4, 3, 2)), 0), {}
    yield (rng.standard_normal((2, 6)).astype(np.float16), -1), {}  # generic fallback
    yield (x, -1), {"flush": 1e-3}
    yield (rng.standard_normal((4, 3, 2)) * 50, 1), {"normalize": False}  # exp(x - max), as the generic hook
    yield (rng.standard_normal((2, 6)).astype(np.float16), -1), {"flush": 1e-3}


def _extra_filter_cases(rng):
    gauss = tuple(
        float(v)
        for v in np.exp(-0.5 * (np.arange(-3, 4) / 1.1) ** 2)
        / np.exp(-0.5 * (np.arange(-3, 4) / 1.1) ** 2).sum()
    )
    yield (rng.standard_normal((1, 1, 4, 4)), gauss), {}  # sides just longer than the radius: cupyx path
    yield (rng.standard_normal((1, 1, 3, 9)), gauss), {}  # a side equal to the radius: generic fallback
    yield (rng.standard_normal((2, 1, 2, 9, 11)).astype(np.float32), (0.2, 0.5, 0.3)), {}
    yield (rng.standard_normal((6, 7)), (1.0,)), {}


EXTRA_CASES = {
    "window_max": _extra_window_cases,
    "window_min": _extra_window_cases,
    "pad": _extra_pad_cases,
    "expand": _extra_expand_cases,
    "softmax": _extra_softmax_cases,
    "separable_filter": _extra_filter_cases,
}


def _check_hook(hook: str, asarray, xp) -> int:
    """The CuPy hook equals the generic one on every case (test_hooks' and ours); inputs stay unchanged."""
    rng = np.random.default_rng(0)
    cases = [*HOOK_CASES[hook](rng), *EXTRA_CASES[hook](rng)]
    for args, kwargs in cases:
        converted = [asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        before = [
            np.array(to_numpy(a), copy=True) for a in converted if not isinstance(a, tuple | int | float)
        ]
        expected = getattr(GENERIC, hook)(*converted, xp=xp, **kwargs)
        got = getattr(_cupy.HOOKS, hook)(*converted, xp=xp, **kwargs)
        assert type(got) is type(expected), (hook, type(got), type(expected))
        e, g = to_numpy(expected), to_numpy(got)
        what = f"{hook} on {args[0].dtype} {args[0].shape} {args[1:]}"
        assert g.dtype == e.dtype and g.shape == e.shape, (what, g.dtype, e.dtype, g.shape, e.shape)
        tol = ROUNDING.get(hook, {}).get(str(e.dtype))
        if tol is not None:
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol, err_msg=what)
        else:
            np.testing.assert_array_equal(g, e, err_msg=what)
        after = [to_numpy(a) for a in converted if not isinstance(a, tuple | int | float)]
        for a, b in zip(after, before):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: an input was modified")
    return len(cases)


@pytest.fixture
def native_hooks(monkeypatch):
    """Each backend's own hooks, whatever ``SUBPIX_XP_GENERIC_HOOKS`` says (for tests about those hooks)."""
    monkeypatch.delenv("SUBPIX_XP_GENERIC_HOOKS", raising=False)
    with use_generic_hooks(False):
        yield


# ---------------------------------------------------------------------------------------------
# CPU: the CuPy backend module without CuPy.


def test_cpu_cupy_backend_imports_without_cupy_and_loads_only_for_cupy():
    code = """
import sys

class NoCuPy:  # "import cupy" raises ImportError, as where CuPy is not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("cupy", "cupyx"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoCuPy())
import numpy as np
import subpix_xp
x = np.random.default_rng(0).standard_normal((1, 1, 5, 9, 9))
subpix_xp.nms3d(x, (3, 3, 3), True)
subpix_xp.conv_quad_interp3d(x)
subpix_xp.AdaptiveQuadInterp3d()(x)
subpix_xp.spatial_soft_argmax2d(x[0])
try:
    import torch
except ImportError:
    pass
else:
    subpix_xp.conv_soft_argmax3d(torch.asarray(x))
assert "subpix_xp.backends._cupy" not in sys.modules, "a NumPy/torch call loaded the CuPy backend"
from subpix_xp.backends import _cupy
assert _cupy.HOOKS.name == "cupy"
try:
    _cupy._cupy()
except ImportError:
    print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["cupy", "array_api_compat.cupy"])
def test_cpu_cupy_namespace_gets_the_cupy_hooks(name, native_hooks):
    fake = types.ModuleType(name)  # array-api-compat recognises CuPy namespaces by name
    assert backend_name(fake) == "cupy"
    assert hooks_for(fake) is _cupy.HOOKS
    with use_generic_hooks():
        forced = hooks_for(fake)
    kernels = [f.name for f in dataclasses.fields(Hooks) if f.name not in ("name", *_CAPABILITIES)]
    assert all(getattr(forced, k) is getattr(GENERIC, k) for k in kernels)
    assert all(getattr(forced, k) is getattr(_cupy.HOOKS, k) for k in _CAPABILITIES)


def test_cpu_cupy_capabilities():
    x = object()  # capabilities of a CuPy array do not depend on the array (and must not read it)
    assert _cupy.HOOKS.can_inspect(x) is False
    assert _cupy.HOOKS.prefers_static_shapes(x) is True
    assert _cupy.HOOKS.supports_dynamic_shapes(x) is True
    assert _cupy.HOOKS.block_elements(x) == 0


def test_cpu_cupy_overrides_exactly_its_kernels():
    kernels = [f.name for f in dataclasses.fields(Hooks) if f.name not in ("name", *_CAPABILITIES)]
    overridden = {k for k in kernels if getattr(_cupy.HOOKS, k) is not getattr(GENERIC, k)}
    assert overridden == set(CUPY_KERNELS)


def test_cpu_cupy_window_kernel_construction(monkeypatch):
    made = []

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name):
            made.append((in_params, out_params, operation, name))

    monkeypatch.setattr(_cupy, "_cupy", lambda: types.SimpleNamespace(ElementwiseKernel=ElementwiseKernel))
    for which in ("max", "min"):
        _cupy._window_kernel.__wrapped__(which)  # bypass the cache: no fake kernel stays behind
    (p_max, o_max, body_max, n_max), (_, _, body_min, n_min) = made
    names = [p.split()[-1] for p in p_max.split(",")]
    assert names == ["x", "n0", "n1", "n2", "o0", "o1", "o2", "k0", "k1", "k2"] and o_max == "T y"
    assert p_max.split(",")[0].split()[:2] == ["raw", "T"]
    assert body_max == _cupy.window_kernel_source("max") and body_min == _cupy.window_kernel_source("min")
    assert "v > acc" in body_max and "v < acc" in body_min and n_max != n_min


# ---------------------------------------------------------------------------------------------
# CPU: the CuPy hooks with NumPy standing in for CuPy.

_C_TYPES = {
    "float32": "float",
    "float64": "double",
    "int8": "signed char",
    "int16": "short",
    "int32": "int",
    "int64": "long long",
    "uint8": "unsigned char",
    "uint16": "unsigned short",
    "uint32": "unsigned int",
    "uint64": "unsigned long long",
}
_PARAM_TYPES = {"int64": "long long", "int32": "int"}


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _harness_source() -> str:
    """The CUDA kernel body in a C++ loop: ``i`` runs over the outputs as CuPy's grid would, ``y`` is output ``i``."""
    params = []
    for p in _cupy._WINDOW_PARAMS.split(","):
        words = p.split()
        params.append(
            f"const T* {words[-1]}" if words[0] == "raw" else f"{_PARAM_TYPES[words[0]]} {words[-1]}"
        )
    parts = ["#include <cstddef>"]
    for which in ("max", "min"):
        for dtype, ctype in _C_TYPES.items():
            parts.append(
                f'extern "C" void window_{which}_{dtype}({", ".join(p.replace("T*", ctype + "*") for p in params)}, '
                f"{ctype}* out, long long size) {{\n  typedef {ctype} T;\n"
                f"  for (std::ptrdiff_t i = 0; i < size; ++i) {{\n    T& y = out[i];\n"
                f"    {{\n{_cupy.window_kernel_source(which)}\n    }}\n  }}\n}}"
            )
    return "\n".join(parts)


@dataclasses.dataclass
class _CppWindowKernel:
    """Called like the ``cupy.ElementwiseKernel``: ``kernel(x, n0, n1, n2, o0, o1, o2, k0, k1, k2, out)``."""

    library: ctypes.CDLL
    which: str
    calls: list

    def __call__(self, x, *scalars_and_out):
        *scalars, out = scalars_and_out
        assert x.ndim == 1 and x.flags.c_contiguous and out.ndim == 1 and out.flags.c_contiguous
        assert x.dtype == out.dtype and len(scalars) == 9
        fn = getattr(self.library, f"window_{self.which}_{x.dtype.name}")
        ints = [ctypes.c_longlong(int(v)) for v in scalars[:6]] + [ctypes.c_int(int(v)) for v in scalars[6:]]
        fn(
            ctypes.c_void_p(x.ctypes.data),
            *ints,
            ctypes.c_void_p(out.ctypes.data),
            ctypes.c_longlong(out.size),
        )
        self.calls.append(tuple(int(v) for v in scalars))


@pytest.fixture(scope="session")
def cpp_window_library(tmp_path_factory):
    """The window kernel's source compiled as C++ (shared library), or ``None`` without a compiler."""
    compiler = _compiler()
    if compiler is None:
        return None
    folder = tmp_path_factory.mktemp("window_kernel")
    source, library = folder / "window.cpp", folder / "window.so"
    source.write_text(_harness_source())
    proc = subprocess.run(
        [compiler, "-std=c++11", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"the window kernel source does not compile as C++:\n{proc.stderr}"
    return ctypes.CDLL(str(library))


@pytest.fixture
def numpy_as_cupy(monkeypatch, cpp_window_library):
    """NumPy for ``cupy``, SciPy's ``ndimage`` for ``cupyx.scipy.ndimage``, the C++ build for the kernel."""
    calls: list = []
    try:
        import scipy.ndimage as ndimage
    except ImportError:
        ndimage = None

    def standin_ndimage():
        if ndimage is None:
            pytest.skip("scipy is not installed: its ndimage stands in for cupyx.scipy.ndimage")
        return ndimage

    def standin_kernel(which):
        if cpp_window_library is None:
            pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX) to build the window kernel's source")
        return _CppWindowKernel(cpp_window_library, which, calls)

    monkeypatch.setattr(_cupy, "_cupy", lambda: np)
    monkeypatch.setattr(_cupy, "_ndimage", standin_ndimage)
    monkeypatch.setattr(_cupy, "_window_kernel", standin_kernel)
    return calls


@pytest.mark.parametrize("hook", CUPY_KERNELS)
def test_cpu_cupy_hook_matches_generic_with_numpy_standing_in(hook, numpy_as_cupy):
    with np.errstate(invalid="ignore"):  # NumPy warns on a row of -inf (NaN, by design); CuPy does not
        assert _check_hook(hook, np.asarray, np_xp) > 5
    if hook.startswith("window"):
        # The kernel really ran, in one pass for small windows and one pass per axis for large ones.
        taps = [c[6] * c[7] * c[8] for c in numpy_as_cupy]
        assert max(taps) <= _cupy._FUSED_TAPS  # (5, 4, 5) and (9, 9) never as one pass
        assert any(c[6:] == (1, 4, 1) for c in numpy_as_cupy)  # ... but one pass per axis
        assert any(c[6:] == (1, 3, 3) for c in numpy_as_cupy)


def test_cpu_cupy_hooks_run_under_the_input_device(numpy_as_cupy):
    entered = []

    class Device:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    class OnDevice(np.ndarray):
        device = Device()  # a CuPy array's device is a context manager that makes it current

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 7)).view(OnDevice)
    calls = [
        lambda: _cupy.window_max(x, (3, 3), xp=np_xp),
        lambda: _cupy.pad(x, ((1, 1),), 0.0, xp=np_xp),
        lambda: _cupy.expand(np.ones(2), np.array([0, 5]), x.reshape(-1), xp=np_xp),
        lambda: _cupy.softmax(x, -1, xp=np_xp),
    ]
    for i, call in enumerate(calls, 1):
        call()
        assert len(entered) == i


# ---------------------------------------------------------------------------------------------
# CPU: the torch static paths on the meta device make no host synchronisation.

_SYNCING_OPS = frozenset(
    {
        "_local_scalar_dense",
        "item",
        "is_nonzero",
        "equal",
        "allclose",
        "nonzero",
        "masked_select",
        "unique",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "bincount",
        "histc",
        "repeat_interleave",
        "masked_scatter",
        "multinomial",
        "_assert_async",
    }
)


def _host_sync_recorder(torch, events: list):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = func.overloadpacket.__name__
            if name in _SYNCING_OPS:
                events.append(f"aten.{name}")
            if name in ("index", "index_put", "index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool
                for i in (args[1] or ())
                if i is not None
            ):
                events.append(f"aten.{name} with a boolean mask")
            if name in ("_to_copy", "copy_"):
                devices = {a.device.type for a in args if isinstance(a, torch.Tensor)}
                target = kwargs.get("device")
                if len(devices) > 1 or (target is not None and torch.device(target).type not in devices):
                    events.append(f"aten.{name} across devices {sorted(devices)} -> {target}")
            return func(*args, **kwargs)

    return Recorder()


@pytest.mark.parametrize("name", sorted(STATIC))
def test_cpu_torch_static_paths_no_host_sync_on_meta(name, monkeypatch, request, native_hooks):
    torch = pytest.importorskip("torch")
    if name in KNOWN_HOST_SYNC:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_HOST_SYNC[name]))
    events: list[str] = []

    def recording(fn, fname):
        def wrapper(obj, *args, **kwargs):
            target = kwargs.get("device")
            if (
                not isinstance(obj, torch.Tensor)
                and target is not None
                and torch.device(target).type != "cpu"
            ):
                events.append(f"torch.{fname}(host data, device={target})")
            return fn(obj, *args, **kwargs)

        return wrapper

    for fname in ("asarray", "tensor", "as_tensor"):
        monkeypatch.setattr(torch, fname, recording(getattr(torch, fname), fname))
    arrays = {k: torch.empty(v.shape, dtype=torch.float32, device="meta") for k, v in _inputs().items()}
    assert not hooks_for(array_api_compat.array_namespace(arrays["dog"])).can_inspect(arrays["dog"])
    with _host_sync_recorder(torch, events):
        STATIC[name](arrays)
    assert not events, f"{name} synchronises with the host on a device: {sorted(set(events))}"


# ---------------------------------------------------------------------------------------------
# CPU: the GPU benchmark script.


def _cuda_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_cpu_bench_gpu_fails_fast_without_a_gpu(tmp_path):
    if _cuda_present():
        pytest.skip("a CUDA device is present here: the benchmark would run")
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_gpu.py", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot run" in proc.stderr and ("no CUDA device" in proc.stderr or "not installed" in proc.stderr)
    assert not out.exists()


def test_cpu_bench_gpu_runs_on_cpu_standins(tmp_path):
    pytest.importorskip("kornia")
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_gpu.py",
            "--cpu-smoke",
            "--out",
            str(out),
            "--rounds",
            "2",
            "--target-ms",
            "1",
            "--warmup-s",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert list(result["workloads"]) == [
        "W1",
        "W2a",
        "W2b",
        "W3",
        "W4a",
        "W4b",
        "W5a",
        "W5b",
        "W6a",
        "W6b",
        "W7",
    ]
    for key, entry in result["workloads"].items():
        assert not entry["errors"], (key, entry["errors"])
        assert set(entry["median_ms"]) == {"copy", "kornia", "ours_torch", "ours_cupy"}, key
        assert len(entry["samples_ms"]["ours_cupy"]) == 2
        for d in entry["agreement"]["ours_cupy_vs_ours_torch"]["outputs"]:
            assert d.get("mask_entries_differ", 0) == 0 and d.get("max_abs_diff", 0.0) < 1e-4, (key, d)
    table = out.with_suffix(".md").read_text()
    assert all(f"| {k} |" in table for k in result["workloads"])


# ---------------------------------------------------------------------------------------------
# GPU.


def _gpu_backend(name: str):
    if name not in _SELECTED:
        pytest.skip(f"{name} is not selected by SUBPIX_XP_BACKENDS")
    return load_backend(name)  # skips with the reason, or fails when the backend was named explicitly


@pytest.fixture(params=GPU_BACKENDS)
def gpu(request):
    return _gpu_backend(request.param)


@pytest.fixture
def torch_cuda():
    _gpu_backend("torch_cuda")
    return importlib.import_module("torch")


@pytest.fixture
def cupy_module():
    _gpu_backend("cupy")
    return importlib.import_module("cupy")


def _check_outputs(got, want, like, dtype_name: str, what: str) -> None:
    """Library, device and dtype of every output against ``like``; values against NumPy float64 (docs/semantics.md, Accuracy)."""
    got, want = _as_tuple(got), _as_tuple(want)
    assert len(got) == len(want), what
    xp = array_api_compat.array_namespace(like)
    for i, (g, w) in enumerate(zip(got, want)):
        label = f"{what}, output {i}"
        assert array_api_compat.array_namespace(g) is xp, f"{label}: {type(g)} from a {type(like)} input"
        assert array_api_compat.device(g) == array_api_compat.device(like), (
            f"{label}: on {array_api_compat.device(g)}, input on {array_api_compat.device(like)}"
        )
        expected = "bool" if _is_mask(w) else dtype_name
        assert str(g.dtype).removeprefix("torch.") == expected, (
            f"{label}: dtype {g.dtype}, expected {expected}"
        )
        assert_close(g, w, dtype_name, what=label)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_gpu_public_api_on_device_and_equal_to_numpy_float64(name, gpu, dtype_name):
    rounded = {k: v.astype(dtype_name) for k, v in _inputs().items()}
    want = PUBLIC[name]({k: v.astype(np.float64) for k, v in rounded.items()})
    given = {k: gpu.asarray(v) for k, v in rounded.items()}
    got = PUBLIC[name](given)
    _check_outputs(got, want, given["maps"], dtype_name, f"{name} on {gpu.name} {dtype_name}")
    for k, v in given.items():
        np.testing.assert_array_equal(to_numpy(v), rounded[k], err_msg=f"{name} modified its input {k}")


def test_gpu_conformance_catalogue(gpu):
    """Every case of ``subpix_xp.conformance`` (every public name), float32 and float64, against NumPy float64."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    runner = importlib.import_module("subpix_xp.conformance.runner")
    cases = importlib.import_module("subpix_xp.conformance.cases")
    failures, stale, runs = [], [], 0
    for case in cases.CASES:
        for dtype in case.dtypes:
            if runner.dtype_skip_reason(gpu.name, gpu, dtype):
                continue
            result = runner.run_one(case, gpu.name, dtype)
            runs += 1
            if result.status == "fail":
                failures.append(result.report())
            elif result.status == "xpass":
                stale.append(result.message)
    assert runs > 100
    assert not failures, f"{len(failures)} of {runs} runs fail on {gpu.name}:\n\n" + "\n\n".join(
        failures[:20]
    )
    assert not stale, (
        f"known failures that pass on {gpu.name} (narrow subpix_xp/conformance/known_failures.py): {stale}"
    )


def test_gpu_capabilities(gpu, native_hooks):
    x = gpu.asarray(np.zeros((1, 1, 4, 5, 6), dtype=np.float32))
    hooks = hooks_for(gpu.xp)
    assert hooks.name == {"cupy": "cupy", "torch_cuda": "torch"}[gpu.name]
    assert hooks.can_inspect(x) is False  # reading values would synchronise
    assert hooks.prefers_static_shapes(x) is True
    assert hooks.supports_dynamic_shapes(x) is True
    assert subpix_xp.AdaptiveQuadInterp3d("auto").uses_conv(x)


@pytest.mark.parametrize("hook", CUPY_KERNELS)
def test_gpu_cupy_hooks_match_generic_on_extra_cases(hook, cupy_module):
    backend = _gpu_backend("cupy")
    assert _check_hook(hook, backend.asarray, backend.xp) > 5


def test_gpu_outputs_stay_on_a_second_device(gpu):
    """Inputs on device 1: torch with device 0 current (torch follows the tensors), CuPy under
    ``with cupy.cuda.Device(1)`` (CuPy computes on the current device, as its users know)."""
    if gpu.name == "torch_cuda":
        torch = importlib.import_module("torch")
        if torch.cuda.device_count() < 2:
            pytest.skip("needs two CUDA devices")
        given = {k: torch.asarray(v.astype(np.float32), device="cuda:1") for k, v in _inputs().items()}
        context = contextlib.nullcontext
    else:
        cupy = importlib.import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() < 2:
            pytest.skip("needs two CUDA devices")
        with cupy.cuda.Device(1):
            given = {k: cupy.asarray(v.astype(np.float32)) for k, v in _inputs().items()}
        context = lambda: cupy.cuda.Device(1)  # noqa: E731
    for name, call in sorted(PUBLIC.items()):
        with context():
            outputs = _as_tuple(call(given))
        for out in outputs:
            assert array_api_compat.device(out) == array_api_compat.device(given["maps"]), name


def _torch_equal(got, want, what: str) -> None:
    torch = importlib.import_module("torch")
    for i, (g, w) in enumerate(zip(_as_tuple(got), _as_tuple(want))):
        torch.testing.assert_close(
            g, w, rtol=0, atol=0, equal_nan=True, msg=lambda m, i=i: f"{what}, output {i}: {m}"
        )


GRAPHED = {
    "AdaptiveQuadInterp3d-auto": lambda x: S.AdaptiveQuadInterp3d("auto", strict_maxima_bonus=0.0)(x),
    "conv_quad_interp3d": lambda x: S.conv_quad_interp3d(x),
    "conv_quad_interp3d-nms3d-mask": lambda x: S.conv_quad_interp3d(
        x, precomputed_nms_mask=S.nms3d(x, (3, 3, 3), True), strict_maxima_bonus=0.0, dilation_radius=2
    ),
}


@pytest.mark.parametrize("name", sorted(GRAPHED))
def test_gpu_torch_cuda_graph_capture_and_replay(name, torch_cuda, dtype_name):
    torch = torch_cuda
    fn = GRAPHED[name]
    first, second = (torch.asarray(dog_stack(seed=s, dtype=dtype_name), device="cuda") for s in (0, 1))
    static = first.clone()
    assert S.AdaptiveQuadInterp3d("auto").uses_conv(static)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graph asks
        for _ in range(3):
            fn(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fn(static)
    for source in (first, second, first):
        static.copy_(source)
        graph.replay()
        torch.cuda.synchronize()
        _torch_equal(captured, fn(source), f"{name}: graph replay vs eager")


def test_gpu_torch_compile_reduce_overhead(torch_cuda):
    torch = torch_cuda
    module = S.AdaptiveQuadInterp3d("auto", strict_maxima_bonus=0.0)

    def run(v):
        return module(v)

    compiled = torch.compile(run, mode="reduce-overhead")
    for seed in (0, 1, 2, 0):  # recorded on the first calls, replayed on the later ones
        x = torch.asarray(dog_stack(seed=seed, dtype=np.float32), device="cuda")
        got = [t.clone() for t in compiled(x)]  # a replay reuses its output buffers
        want = run(x)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, "float32", what=f"torch.compile(reduce-overhead) seed {seed}, output {i}")


@pytest.mark.parametrize("name", sorted(STATIC))
def test_gpu_torch_static_paths_make_no_host_sync(name, torch_cuda):
    torch = torch_cuda
    arrays = {k: torch.asarray(v.astype(np.float32), device="cuda") for k, v in _inputs().items()}
    STATIC[name](arrays)  # warm-up: lazy CUDA initialisation, allocator, library handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        STATIC[name](arrays)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_gpu_cupy_runs_inside_a_non_default_stream(cupy_module, native_hooks):
    cupy = cupy_module
    arrays = {k: cupy.asarray(v.astype(np.float32)) for k, v in _inputs().items()}
    cupy.cuda.Device().synchronize()  # the inputs exist before another stream reads them
    assert hooks_for(array_api_compat.array_namespace(arrays["maps"])) is _cupy.HOOKS
    for name, call in sorted(PUBLIC.items()):
        want = [to_numpy(o) for o in _as_tuple(call(arrays))]
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            assert cupy.cuda.get_current_stream() == stream
            got = _as_tuple(call(arrays))
        stream.synchronize()
        assert len(got) == len(want), name
        for i, (g, w) in enumerate(zip(got, want)):
            assert isinstance(g, cupy.ndarray), name
            # Masks identical; values within float32 rounding (cuBLAS may pick another kernel per stream).
            assert_close(g, w, "float32", what=f"{name} output {i} on a non-default stream")


def test_gpu_torch_hooks_can_inspect_is_false_on_cuda(torch_cuda, native_hooks):
    torch = torch_cuda
    hooks = hooks_for(array_api_compat.array_namespace(torch.zeros(1)))
    assert hooks.can_inspect(torch.zeros(1)) is True
    assert hooks.can_inspect(torch.zeros(1, device="cuda")) is False
