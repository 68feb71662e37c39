"""Callable classes wrapping the functions: plain Python objects, no torch dependency.

Each stores its constructor parameters, runs its function on ``__call__`` (``forward`` is an alias
for torch habits) and shows every parameter in ``repr``. They can stand wherever kornia expects a
module used as a callable, for example as the ``subpix_module`` of kornia's ``ScaleSpaceDetector``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from . import _validation as v
from ._conv_soft_argmax import conv_soft_argmax2d, conv_soft_argmax3d
from ._nms import nms2d, nms3d
from ._quad_interp import conv_quad_interp3d, iterative_quad_interp3d
from ._spatial import spatial_soft_argmax2d
from .backends import hooks_for

Array = Any

__all__ = [
    "AdaptiveQuadInterp3d",
    "ConvQuadInterp3d",
    "ConvSoftArgmax2d",
    "ConvSoftArgmax3d",
    "IterativeQuadInterp3d",
    "NonMaximaSuppression2d",
    "NonMaximaSuppression3d",
    "SpatialSoftArgmax2d",
]


class _Callable:
    """Base: ``repr`` shows the constructor's parameters (``_PARAMS``, in signature order).

    Each subclass sets its parameters as attributes of the same names in ``__init__`` and lists them
    in ``_PARAMS``; defining a subclass whose ``_PARAMS`` differs from its ``__init__`` signature is
    a ``TypeError``, so ``repr`` cannot drift from the signature.
    """

    _PARAMS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = tuple(inspect.signature(cls.__init__).parameters)[1:]
        if names != cls._PARAMS:
            msg = f"{cls.__name__}: expected `_PARAMS` to list the __init__ parameters {names}; got {cls._PARAMS}"
            raise TypeError(msg)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._PARAMS)
        return f"{type(self).__name__}({args})"

    #: Each subclass defines ``__call__`` with its own signature.
    __call__: Callable[..., Any]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """An alias of ``__call__``, for torch habits."""
        return self(*args, **kwargs)


class SpatialSoftArgmax2d(_Callable):
    """Soft-argmax of each whole map; see :func:`spatial_soft_argmax2d`.

    >>> import numpy as np
    >>> SpatialSoftArgmax2d(normalized_coordinates=False)(np.zeros((1, 1, 3, 3))).round(3)
    array([[[1., 1.]]])
    """

    _PARAMS = ("temperature", "normalized_coordinates")

    def __init__(self, temperature: Array | float | None = None, normalized_coordinates: bool = True) -> None:
        self.temperature = temperature
        self.normalized_coordinates = normalized_coordinates

    def __call__(self, input: Array) -> Array:
        return spatial_soft_argmax2d(input, self.temperature, self.normalized_coordinates)


class ConvSoftArgmax2d(_Callable):
    """Windowed soft-argmax over 2-D maps; see :func:`conv_soft_argmax2d`.

    >>> import numpy as np
    >>> ConvSoftArgmax2d(output_value=True)(np.zeros((1, 1, 4, 4)))[0].shape
    (1, 1, 2, 4, 4)
    """

    _PARAMS = (
        "kernel_size",
        "stride",
        "padding",
        "temperature",
        "normalized_coordinates",
        "eps",
        "output_value",
    )

    def __init__(
        self,
        kernel_size: tuple[int, int] = (3, 3),
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (1, 1),
        temperature: Array | float = 1.0,
        normalized_coordinates: bool = True,
        eps: float = 1e-8,
        output_value: bool = False,
    ) -> None:
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.temperature = temperature
        self.normalized_coordinates = normalized_coordinates
        self.eps = eps
        self.output_value = output_value

    def __call__(self, input: Array) -> Array | tuple[Array, Array]:
        return conv_soft_argmax2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.temperature,
            self.normalized_coordinates,
            self.eps,
            self.output_value,
        )


class ConvSoftArgmax3d(_Callable):
    """Windowed soft-argmax over 3-D volumes; see :func:`conv_soft_argmax3d`.

    >>> import numpy as np
    >>> coords, values = ConvSoftArgmax3d()(np.zeros((1, 1, 3, 4, 4)))
    >>> coords.shape, values.shape
    ((1, 1, 3, 3, 4, 4), (1, 1, 3, 4, 4))
    """

    _PARAMS = (
        "kernel_size",
        "stride",
        "padding",
        "temperature",
        "normalized_coordinates",
        "eps",
        "output_value",
        "strict_maxima_bonus",
    )

    def __init__(
        self,
        kernel_size: tuple[int, int, int] = (3, 3, 3),
        stride: tuple[int, int, int] = (1, 1, 1),
        padding: tuple[int, int, int] = (1, 1, 1),
        temperature: Array | float = 1.0,
        normalized_coordinates: bool = False,
        eps: float = 1e-8,
        output_value: bool = True,
        strict_maxima_bonus: float = 0.0,
    ) -> None:
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.temperature = temperature
        self.normalized_coordinates = normalized_coordinates
        self.eps = eps
        self.output_value = output_value
        self.strict_maxima_bonus = strict_maxima_bonus

    def __call__(self, input: Array) -> Array | tuple[Array, Array]:
        return conv_soft_argmax3d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.temperature,
            self.normalized_coordinates,
            self.eps,
            self.output_value,
            self.strict_maxima_bonus,
        )


class NonMaximaSuppression2d(_Callable):
    """Strict 2-D non-maxima suppression; see :func:`nms2d`.

    >>> import numpy as np
    >>> NonMaximaSuppression2d((3, 3))(np.ones((1, 1, 3, 3)), mask_only=True).any()
    np.False_
    """

    _PARAMS = ("kernel_size",)

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        v.int_tuple("NonMaximaSuppression2d", "kernel_size", kernel_size, 2, minimum=1, allow_int=False)
        self.kernel_size = kernel_size

    def __call__(self, x: Array, mask_only: bool = False) -> Array:
        return nms2d(x, self.kernel_size, mask_only)


class NonMaximaSuppression3d(_Callable):
    """Strict 3-D non-maxima suppression; see :func:`nms3d`.

    >>> import numpy as np
    >>> NonMaximaSuppression3d((3, 3, 3))(np.ones((1, 1, 3, 3, 3)), mask_only=True).any()
    np.False_
    """

    _PARAMS = ("kernel_size",)

    def __init__(self, kernel_size: tuple[int, int, int]) -> None:
        v.int_tuple("NonMaximaSuppression3d", "kernel_size", kernel_size, 3, minimum=1, allow_int=False)
        self.kernel_size = kernel_size

    def __call__(self, x: Array, mask_only: bool = False) -> Array:
        return nms3d(x, self.kernel_size, mask_only)


class ConvQuadInterp3d(_Callable):
    """Static-shape quadratic refinement; see :func:`conv_quad_interp3d`.

    >>> import numpy as np
    >>> coords, values = ConvQuadInterp3d()(np.zeros((1, 1, 3, 5, 5)))
    >>> coords.shape
    (1, 1, 3, 3, 5, 5)
    """

    _PARAMS = (
        "n_iters",
        "strict_maxima_bonus",
        "max_subpixel_shift",
        "dilation_radius",
        "allow_scale_steps",
    )

    def __init__(
        self,
        n_iters: int = 5,
        strict_maxima_bonus: float = 10.0,
        max_subpixel_shift: float = 0.6,
        dilation_radius: int = 1,
        allow_scale_steps: bool = True,
    ) -> None:
        self.n_iters = n_iters
        self.strict_maxima_bonus = strict_maxima_bonus
        self.max_subpixel_shift = max_subpixel_shift
        self.dilation_radius = dilation_radius
        self.allow_scale_steps = allow_scale_steps

    def __call__(self, x: Array, precomputed_nms_mask: Array | None = None) -> tuple[Array, Array]:
        return conv_quad_interp3d(
            x,
            self.n_iters,
            self.strict_maxima_bonus,
            self.max_subpixel_shift,
            precomputed_nms_mask,
            self.dilation_radius,
            self.allow_scale_steps,
        )


class IterativeQuadInterp3d(_Callable):
    """Sparse quadratic refinement of the maxima only; see :func:`iterative_quad_interp3d`.

    >>> import numpy as np
    >>> coords, values = IterativeQuadInterp3d()(np.zeros((1, 1, 3, 5, 5)))
    >>> values.shape
    (1, 1, 3, 5, 5)
    """

    _PARAMS = ("n_iters", "strict_maxima_bonus", "max_subpixel_shift", "allow_scale_steps", "max_candidates")

    def __init__(
        self,
        n_iters: int = 5,
        strict_maxima_bonus: float = 10.0,
        max_subpixel_shift: float = 0.6,
        allow_scale_steps: bool = True,
        max_candidates: int | None = None,
    ) -> None:
        self.n_iters = n_iters
        self.strict_maxima_bonus = strict_maxima_bonus
        self.max_subpixel_shift = max_subpixel_shift
        self.allow_scale_steps = allow_scale_steps
        self.max_candidates = max_candidates

    def __call__(self, x: Array, precomputed_nms_mask: Array | None = None) -> tuple[Array, Array]:
        return iterative_quad_interp3d(
            x,
            self.n_iters,
            self.strict_maxima_bonus,
            self.max_subpixel_shift,
            self.allow_scale_steps,
            precomputed_nms_mask,
            self.max_candidates,
        )


class AdaptiveQuadInterp3d(_Callable):
    """Quadratic refinement that picks its path per input.

    ``mode="conv"`` runs :func:`conv_quad_interp3d`, ``mode="patch"`` runs
    :func:`iterative_quad_interp3d`, and ``mode="auto"`` picks the static-shape conv path on
    accelerators (CUDA torch, CuPy, JAX) and the sparse patch path on CPUs.

    >>> import numpy as np
    >>> AdaptiveQuadInterp3d(mode="auto")
    AdaptiveQuadInterp3d(mode='auto', n_iters=5, strict_maxima_bonus=10.0, max_subpixel_shift=0.6, dilation_radius=1, allow_scale_steps=True, max_candidates=None)
    """

    _PARAMS = (
        "mode",
        "n_iters",
        "strict_maxima_bonus",
        "max_subpixel_shift",
        "dilation_radius",
        "allow_scale_steps",
        "max_candidates",
    )
    MODES = ("patch", "conv", "auto")

    def __init__(
        self,
        mode: str = "auto",
        n_iters: int = 5,
        strict_maxima_bonus: float = 10.0,
        max_subpixel_shift: float = 0.6,
        dilation_radius: int = 1,
        allow_scale_steps: bool = True,
        max_candidates: int | None = None,
    ) -> None:
        if mode not in self.MODES:
            msg = f"AdaptiveQuadInterp3d: expected `mode` in {self.MODES}; got {mode!r}"
            raise ValueError(msg)
        # Check every parameter now, whichever path a later call takes.
        func = "AdaptiveQuadInterp3d"
        v.check_int(func, "n_iters", n_iters, minimum=0)
        v.check_int(func, "dilation_radius", dilation_radius, minimum=0)
        if max_candidates is not None:
            v.check_int(func, "max_candidates", max_candidates, minimum=0)
        self.mode = mode
        self.n_iters = n_iters
        self.strict_maxima_bonus = strict_maxima_bonus
        self.max_subpixel_shift = max_subpixel_shift
        self.dilation_radius = dilation_radius
        self.allow_scale_steps = allow_scale_steps
        self.max_candidates = max_candidates

    def uses_conv(self, x: Array) -> bool:
        """Whether a call on ``x`` runs the static-shape conv path."""
        if self.mode != "auto":
            return self.mode == "conv"
        return hooks_for(v.namespace("AdaptiveQuadInterp3d", x=x)).prefers_static_shapes(x)

    def __call__(self, x: Array, precomputed_nms_mask: Array | None = None) -> tuple[Array, Array]:
        if self.uses_conv(x):
            return conv_quad_interp3d(
                x,
                self.n_iters,
                self.strict_maxima_bonus,
                self.max_subpixel_shift,
                precomputed_nms_mask,
                self.dilation_radius,
                self.allow_scale_steps,
            )
        return iterative_quad_interp3d(
            x,
            self.n_iters,
            self.strict_maxima_bonus,
            self.max_subpixel_shift,
            self.allow_scale_steps,
            precomputed_nms_mask,
            self.max_candidates,
        )
