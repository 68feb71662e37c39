"""Differentiability on PyTorch (docs/semantics.md, Gradients): ``torch.autograd.gradcheck`` in float64 for every floating
output, and finite gradients of the quadratic refinement on flat and tiny-amplitude volumes.

The discrete decisions (NMS, integer moves of the quadratic refinement) are piecewise constant; the
inputs are smooth with a few well-separated maxima, so a finite-difference step never flips one.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import subpix_xp as sx

torch = pytest.importorskip("torch", reason="autograd tests need PyTorch")

F64 = torch.float64


def _t(a, grad=True, dtype=F64):
    return torch.tensor(np.asarray(a), dtype=dtype, requires_grad=grad)


def _noise(shape, seed=0, scale=1.0):
    return _t(np.random.default_rng(seed).standard_normal(shape) * scale)


@functools.cache
def _blob_volume(shape=(1, 2, 5, 8, 9), seed=0) -> np.ndarray:
    """Smooth volumes: two Gaussian blobs per map at fractional centres, well apart."""
    b, c, d, h, w = shape
    rng = np.random.default_rng(seed)
    dd, yy, xx = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    out = np.empty(shape)
    for i in range(b * c):
        vol = 0.02 * xx / w
        for cy, cx in ((2.6, 2.4), (h - 3.3, w - 2.8)):
            cy, cx = cy + rng.uniform(-0.3, 0.3), cx + rng.uniform(-0.3, 0.3)
            cd = rng.uniform(1.2, d - 2.2)
            vol = vol + rng.uniform(1, 2) * np.exp(
                -((dd - cd) ** 2 / 1.8 + (yy - cy) ** 2 / 2.5 + (xx - cx) ** 2 / 2.0)
            )
        out.reshape(b * c, d, h, w)[i] = vol
    return out


def _check(func, *inputs, fast=False):
    assert torch.autograd.gradcheck(func, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=fast)


# --------------------------------------------------------------------------------------------
# DSNT.


def test_spatial_softmax2d():
    _check(lambda x: sx.spatial_softmax2d(x), _noise((1, 2, 3, 4)))


def test_spatial_softmax2d_tensor_temperature():
    temperature = _t(np.array([0.7, 1.6]).reshape(1, 2, 1))
    _check(lambda x, t: sx.spatial_softmax2d(x, t), _noise((1, 2, 3, 4), 1), temperature)


@pytest.mark.parametrize("normalized", [True, False])
def test_spatial_expectation2d(normalized):
    x = _t(np.random.default_rng(2).uniform(0, 1, (2, 1, 3, 4)))
    _check(lambda x: sx.spatial_expectation2d(x, normalized), x)


@pytest.mark.parametrize("normalized", [True, False])
def test_spatial_soft_argmax2d(normalized):
    _check(lambda x: sx.spatial_soft_argmax2d(x, None, normalized), _noise((2, 2, 4, 3), 3))


@pytest.mark.parametrize("shape", [(), (1, 2, 1)])
def test_spatial_soft_argmax2d_tensor_temperature(shape):
    temperature = _t(np.full(shape, 0.8) if shape == () else np.array([0.6, 1.3]).reshape(shape))
    _check(lambda x, t: sx.spatial_soft_argmax2d(x, t), _noise((1, 2, 4, 3), 4), temperature)


@pytest.mark.parametrize("normalized", [True, False])
def test_render_gaussian2d(normalized):
    if normalized:
        mean, std = _t([[0.1, -0.3], [0.5, 0.2]]), _t([[0.4, 0.7], [0.3, 0.5]])
    else:
        mean, std = _t([[1.2, 2.3], [3.1, 0.4]]), _t([[0.9, 1.4], [0.7, 1.1]])
    _check(lambda m, s: sx.render_gaussian2d(m, s, (4, 5), normalized), mean, std)


def test_render_gaussian2d_broadcast_std():
    _check(
        lambda m, s: sx.render_gaussian2d(m, s, (3, 4), False), _t([[1.2, 0.3], [2.1, 1.4]]), _t([0.8, 1.3])
    )


# --------------------------------------------------------------------------------------------
# Convolutional soft-argmax: coordinates and values.


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [((3, 3), (1, 1), (1, 1)), ((2, 4), (2, 1), (1, 2))]
)
@pytest.mark.parametrize("normalized", [True, False])
def test_conv_soft_argmax2d(kernel, stride, padding, normalized):
    def f(x):
        return sx.conv_soft_argmax2d(x, kernel, stride, padding, 0.8, normalized, output_value=True)

    _check(f, _noise((1, 2, 4, 5), 5))


def test_conv_soft_argmax2d_tensor_temperature():
    temperature = _t(np.array([0.5, 1.5]).reshape(1, 2, 1, 1))

    def f(x, t):
        return sx.conv_soft_argmax2d(x, temperature=t, output_value=True)

    _check(f, _noise((1, 2, 4, 4), 6), temperature)


@pytest.mark.parametrize(
    ("kernel", "padding", "bonus"),
    [((3, 3, 3), (1, 1, 1), 0.0), ((3, 3, 3), (1, 1, 1), 0.5), ((2, 3, 1), (1, 1, 0), 0.0)],
)
def test_conv_soft_argmax3d(kernel, padding, bonus):
    # (A bonus needs an odd kernel: an even one is a ValueError, see test_errors.py.)
    def f(x):
        return sx.conv_soft_argmax3d(
            x, kernel, (1, 1, 1), padding, 1.2, False, output_value=True, strict_maxima_bonus=bonus
        )

    _check(f, _noise((1, 1, 3, 4, 4), 7))


def test_conv_soft_argmax3d_tensor_temperature():
    def f(x, t):
        return sx.conv_soft_argmax3d(x, temperature=t, normalized_coordinates=True)

    _check(f, _noise((1, 2, 3, 3, 4), 8), _t(np.array([0.7, 1.4]).reshape(1, 2, 1, 1, 1)))


# --------------------------------------------------------------------------------------------
# NMS with mask_only=False.


def _distinct(shape, seed):
    """Values whose every pair differs by far more than the finite-difference step."""
    n = int(np.prod(shape))
    return _t(np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1)


@pytest.mark.parametrize("kernel", [(3, 3), (2, 3)])
def test_nms2d(kernel):
    x = _distinct((1, 2, 5, 6), 9)
    _check(lambda x: sx.nms2d(x, kernel, mask_only=False), x)
    assert sx.nms2d(x, kernel, True).any()


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 3, 2)])
def test_nms3d(kernel):
    x = _distinct((1, 1, 4, 5, 5), 10)
    _check(lambda x: sx.nms3d(x, kernel, mask_only=False), x)
    assert sx.nms3d(x, kernel, True).any()


# --------------------------------------------------------------------------------------------
# Quadratic refinement: coordinates and values.


def _refined_somewhere(func, x, **kw):
    coords, _ = func(x, **kw)
    grid = func(torch.zeros_like(x), **kw)[0]
    return (coords - grid).abs().max().item() > 0.05


QUAD = {
    "conv": lambda x, **kw: sx.conv_quad_interp3d(x, **kw),
    "iterative": lambda x, **kw: sx.iterative_quad_interp3d(x, **kw),
    "conv-radius2-noscale": lambda x, **kw: sx.conv_quad_interp3d(
        x, dilation_radius=2, allow_scale_steps=False, **kw
    ),
    "iterative-top1": lambda x, **kw: sx.iterative_quad_interp3d(x, max_candidates=1, **kw),
}


@pytest.mark.parametrize("variant", list(QUAD))
def test_quad_interp3d(variant):
    func = QUAD[variant]
    x = _t(_blob_volume())
    assert _refined_somewhere(func, x.detach())
    _check(lambda x: func(x), x, fast=True)


@pytest.mark.parametrize("variant", ["conv", "iterative"])
def test_quad_interp3d_precomputed_mask_full(variant):
    # A full (non-fast) check on a small volume, with the mask given, shifts of every size.
    func = QUAD[variant]
    x = _t(_blob_volume((1, 1, 4, 5, 5), seed=3))
    mask = sx.nms3d(x.detach(), (3, 3, 3), True)
    assert mask.any()
    _check(lambda x: func(x, precomputed_nms_mask=mask, strict_maxima_bonus=0.0), x)


# --------------------------------------------------------------------------------------------
# Finite gradients on degenerate volumes.


def _grads(func, x, mask):
    x = x.detach().clone().requires_grad_(True)
    coords, values = func(x, precomputed_nms_mask=mask)
    (coords.sum() + values.sum()).backward()
    return x.grad


@pytest.mark.parametrize("variant", ["conv", "iterative"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("all_voxels", [False, True], ids=["nms-mask", "every-voxel"])
@pytest.mark.parametrize("case", ["zeros", "flat", "1e-30-blobs", "1e-30-noise"])
def test_quad_interp3d_gradients_finite(variant, dtype, all_voxels, case):
    shape = (1, 1, 4, 6, 7)
    if case == "zeros":
        x = torch.zeros(shape, dtype=dtype)
    elif case == "flat":
        x = torch.full(shape, 2.5, dtype=dtype)
    elif case == "1e-30-blobs":
        x = torch.tensor(_blob_volume(shape, seed=4) * 1e-30, dtype=dtype)
    else:
        x = torch.tensor(np.random.default_rng(5).standard_normal(shape) * 1e-30, dtype=dtype)
    mask = torch.ones(shape, dtype=torch.bool) if all_voxels else None
    grad = _grads(QUAD[variant], x, mask)
    assert grad is not None
    assert torch.isfinite(grad).all(), (
        f"non-finite gradient at {torch.nonzero(~torch.isfinite(grad))[:5].tolist()}"
    )
    # The values pass the input through at least where nothing is refined: the gradient is not all zero.
    assert (grad != 0).any()
