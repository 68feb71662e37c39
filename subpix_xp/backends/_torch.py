"""PyTorch hooks: native max pooling (accelerators), ``F.pad``, out-of-place ``index_put`` (autograd-friendly),
banded-matmul filtering on CPU."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from . import GENERIC, _generic

_POOLABLE = ("float16", "bfloat16", "float32", "float64")


def _poolable(x: Any, window: tuple[int, ...]) -> bool:
    # On CPU, max pooling with stride 1 is far slower (tens of times) than the generic shifted-slice
    # maximum, so only accelerators pool.
    return (
        1 <= len(window) <= 3 and str(x.dtype).removeprefix("torch.") in _POOLABLE and x.device.type != "cpu"
    )


def _max_pool(x: Any, window: tuple[int, ...]) -> Any:
    import torch.nn.functional as F

    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(window) - 1]
    lead, spatial = x.shape[: x.ndim - len(window)], x.shape[x.ndim - len(window) :]
    flat = x.reshape(math.prod(lead), 1, *spatial)
    out = pool(flat, window, stride=1)
    return out.reshape(*lead, *out.shape[2:])


def window_max(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    if not _poolable(x, window) or x.numel() == 0:
        return _generic.window_max(x, window, xp=xp)
    return _max_pool(x, window)


def window_min(x: Any, window: tuple[int, ...], *, xp: Any) -> Any:
    if not _poolable(x, window) or x.numel() == 0:
        return _generic.window_min(x, window, xp=xp)
    return -_max_pool(-x, window)


def pad(x: Any, widths: tuple[tuple[int, int], ...], value: float | bool, *, xp: Any) -> Any:
    import torch.nn.functional as F

    if x.dtype.is_complex:
        return _generic.pad(x, widths, value, xp=xp)
    flat = [w for pair in reversed(widths) for w in pair]
    try:
        return F.pad(x, flat, value=value)
    except (RuntimeError, NotImplementedError):  # an old torch without constant padding of this dtype
        return _generic.pad(x, widths, value, xp=xp)


def expand(values: Any, index: Any, base: Any, *, xp: Any) -> Any:
    import torch

    # ``base`` is the caller's scratch array (see the generic hook): scatter into it in place unless
    # autograd is recording either operand (then out of place, which keeps both gradients).
    if torch.is_grad_enabled() and (values.requires_grad or base.requires_grad):
        return base.index_put((index,), values)
    if not base.is_contiguous():  # e.g. an expanded view, whose entries share memory
        base = base.contiguous()
    return base.index_put_((index,), values)


def take(x: Any, index: Any, axis: int, *, xp: Any) -> Any:
    """``index_select`` without array-api-compat's wrap of negative positions (a comparison pass as
    slow as the gather); along the last axis of a larger array ``gather`` with the index broadcast
    (``index_select`` copies one sample at a time there: 7 times slower on a 512x512 image)."""
    import torch

    axis = axis % x.ndim if x.ndim else 0
    if x.ndim > 1 and axis == x.ndim - 1 and index.ndim == 1:
        shape = (*x.shape[:-1], index.shape[0])
        return torch.gather(x, axis, index.reshape((1,) * (x.ndim - 1) + (-1,)).expand(shape))
    return torch.index_select(x, axis, index)


def stencil_extrema(x: Any, floor: Any, steps: tuple[int, ...], *, xp: Any) -> Any:
    """The NumPy hook's blocked test on NumPy's views of CPU tensors (no copy), where NumPy is installed.

    On CPU a PyTorch comparison (a bool result) costs two to three float passes and ``nonzero``
    reads its mask a byte at a time: the generic hook takes several times as long on a DoG octave,
    and a blocked PyTorch version (float margins, a packed ``nonzero``) still 1.8 times as long as
    NumPy. The positions are the generic hook's. Other devices and ``torch.compile`` take the
    generic hook.
    """
    import array_api_compat.numpy as np_xp
    import torch

    from . import _numpy

    floor = torch.as_tensor(floor)
    if x.device.type != "cpu" or floor.device.type != "cpu" or torch.compiler.is_compiling():
        return _generic.stencil_extrema(x, floor, steps, xp=xp)

    # Positions carry no gradient: the values are read detached.
    found = _numpy.stencil_extrema(x.detach().numpy(), floor.detach().numpy(), steps, xp=np_xp)
    return torch.from_numpy(found)


def separable_filter(x: Any, kernel: tuple[float, ...], *, xp: Any) -> Any:
    """The generic hook's filter: the NumPy hook's on CPU (OpenCV or banded matrix products), in-place taps elsewhere.

    On CPU the tensor's NumPy view goes through the NumPy hook's filter (:func:`_cpu_filter`):
    OpenCV's ``sepFilter2D`` where installed, else each chunk of 16 outputs along an axis is the
    reflect-padded chunk times a banded matrix of the kernel: two to three times faster than the
    taps on a 1024x1024 float32 image (``conv2d`` with a 1-D kernel is ten times slower than both),
    the same sums in another order, so within a few units in the last place of the generic hook.
    Elsewhere (CUDA, where a float32 product may run in TF32), and for an input with infinities or
    NaN (see the NumPy hook), the generic hook's arithmetic runs in place (:func:`_tap_filter`):
    bit-identical to it. Inputs that need a gradient, half precision, ``torch.compile``, and axes no
    longer than the kernel radius off the banded path take the generic (out-of-place) path.
    """
    import torch

    k, radius = len(kernel), len(kernel) // 2
    if (
        k % 2 != 1
        or x.dtype not in (torch.float32, torch.float64)
        or x.ndim < 2
        or x.numel() == 0
        or (torch.is_grad_enabled() and x.requires_grad)
        or torch.compiler.is_compiling()
    ):
        return _generic.separable_filter(x, kernel, xp=xp)
    # A product multiplies every sample of a window by the band, zeros included: one infinity or NaN
    # (``0 * inf``) would spread NaN across its chunk, so such inputs take the taps. The sum is one
    # fast pass (an overflowing one only costs the taps), and only on CPU (no device sync).
    if x.device.type == "cpu" and math.isfinite(float(x.sum())):
        return _cpu_filter(x, tuple(float(v) for v in kernel))
    if min(x.shape[-2:]) <= radius:
        return _generic.separable_filter(x, kernel, xp=xp)
    return _tap_filter(x, kernel)


def _cpu_filter(x: Any, kernel: tuple[float, ...]) -> Any:
    """The NumPy hook's filter (OpenCV, else banded products) on NumPy's view of the tensor (no copy).

    PyTorch's MKL runs the banded filter's skinny products (16 columns, 20-40 deep) about half as
    fast as OpenBLAS on one thread. The result is a tensor sharing the NumPy array's memory.
    OpenCV and NumPy's BLAS take their thread counts from their own settings
    (``cv2.setNumThreads``; ``OPENBLAS_NUM_THREADS``, threadpoolctl), not from
    ``torch.set_num_threads``.
    """
    import torch

    from . import _numpy

    return torch.from_numpy(_numpy.finite_filter(x.detach().numpy(), kernel))


def _tap_filter(x: Any, kernel: tuple[float, ...]) -> Any:
    """The generic hook's arithmetic in place: ``F.pad`` reflection and one buffer per axis.

    Every tap is added in the generic order with the same roundings (a sum of mirrored taps, then
    the product with the weight, then the accumulation), so the result is bit-identical; about
    twice as fast as the generic hook (no temporaries). Needs both axes longer than the radius.
    """
    import torch
    import torch.nn.functional as F

    k, radius = len(kernel), len(kernel) // 2
    symmetric = tuple(kernel) == tuple(reversed(kernel))
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(-1, 1, h, w)
    for axis, padding in ((-1, (radius, radius, 0, 0)), (-2, (0, 0, radius, radius))):
        padded = F.pad(flat, padding, mode="reflect")
        n = flat.shape[axis]
        if symmetric:
            out = padded.narrow(axis, radius, n) * kernel[radius]
            for j in range(radius):
                out.add_(
                    torch.add(padded.narrow(axis, j, n), padded.narrow(axis, k - 1 - j, n)).mul_(kernel[j])
                )
        else:
            out = padded.narrow(axis, 0, n) * kernel[0]
            for j in range(1, k):
                out.add_(padded.narrow(axis, j, n) * kernel[j])
        flat = out
    return flat.reshape(*lead, h, w)


def softmax(x: Any, axis: int, *, xp: Any, normalize: bool = True, flush: float = 0.0) -> Any:
    """``torch.softmax`` (normalised either way): one fused pass, faster than ``exp`` alone and with
    no subnormal slow path; the flush is ``torch.threshold`` (one pass; ``where`` takes six times longer)."""
    import torch

    if x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return _generic.softmax(x, axis, xp=xp, normalize=normalize, flush=flush)
    weights = torch.softmax(x, dim=axis)
    return torch.threshold(weights, flush, 0.0) if flush > 0 else weights


# About 1 MiB of float32 per temporary: in the L2/L3 caches, and large enough that the per-op cost
# of two intra-op threads stays small (measured on 2 cores; smaller blocks lose with 2 threads).
_BLOCK_ELEMENTS = 1 << 18


def block_elements(x: Any) -> int:
    """Cache-sized blocks in eager CPU mode; whole arrays on accelerators and under ``torch.compile``."""
    import torch

    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return 0
    return _BLOCK_ELEMENTS


def can_inspect(x: Any) -> bool:
    import torch

    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def prefers_static_shapes(x: Any) -> bool:
    return x.device.type != "cpu"


HOOKS = dataclasses.replace(
    GENERIC,
    name="torch",
    window_max=window_max,
    window_min=window_min,
    pad=pad,
    expand=expand,
    can_inspect=can_inspect,
    prefers_static_shapes=prefers_static_shapes,
    separable_filter=separable_filter,
    block_elements=block_elements,
    softmax=softmax,
    take=take,
    stencil_extrema=stencil_extrema,
)
