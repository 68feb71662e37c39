"""Sub-pixel keypoint localisation for any Array API library.

The functions and classes of ``kornia.geometry.subpix`` (soft-argmax, DSNT, strict non-maxima
suppression, quadratic sub-voxel refinement), written once against the Python Array API standard:
NumPy, PyTorch, JAX, CuPy, Dask and array-api-strict arrays go in, and the same library's arrays
come out, on the same device, in the same dtype.
"""

from __future__ import annotations

from ._conv_soft_argmax import conv_soft_argmax2d, conv_soft_argmax3d
from ._detect import Blobs, detect_blobs
from ._modules import (
    AdaptiveQuadInterp3d,
    ConvQuadInterp3d,
    ConvSoftArgmax2d,
    ConvSoftArgmax3d,
    IterativeQuadInterp3d,
    NonMaximaSuppression2d,
    NonMaximaSuppression3d,
    SpatialSoftArgmax2d,
)
from ._nms import nms2d, nms3d, nms3d_minmax
from ._quad_interp import conv_quad_interp3d, iterative_quad_interp3d
from ._spatial import render_gaussian2d, spatial_expectation2d, spatial_soft_argmax2d, spatial_softmax2d

__version__ = "0.1.0"

__all__ = [
    "AdaptiveQuadInterp3d",
    "Blobs",
    "ConvQuadInterp3d",
    "ConvSoftArgmax2d",
    "ConvSoftArgmax3d",
    "IterativeQuadInterp3d",
    "NonMaximaSuppression2d",
    "NonMaximaSuppression3d",
    "SpatialSoftArgmax2d",
    "conv_quad_interp3d",
    "conv_soft_argmax2d",
    "conv_soft_argmax3d",
    "detect_blobs",
    "iterative_quad_interp3d",
    "nms2d",
    "nms3d",
    "nms3d_minmax",
    "render_gaussian2d",
    "spatial_expectation2d",
    "spatial_soft_argmax2d",
    "spatial_softmax2d",
]
