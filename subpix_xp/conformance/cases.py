"""The catalogue: every public function and class of :mod:`subpix_xp`, with representative parameters.

A :class:`Case` names an operation (a public function or class), a deterministic NumPy float64
input generator, and the arguments of the call, in which :class:`In` stands for one of the
generated arrays. The runner converts the inputs to each backend and dtype, calls the operation
and holds every output against the float64 NumPy result on the same (dtype-rounded) inputs.

Each output of a case has a kind that picks its comparison (see :mod:`subpix_xp.conformance.tolerances`):
``"coords"`` (absolute tolerance, in pixels or normalised units), ``"values"`` (tolerance relative
to the output's largest magnitude) and ``"mask"`` (identical).

Case ids read ``"<operation>:<label>"``; :func:`select` filters them with shell patterns.

>>> case = get_case("nms2d:k3-mask")
>>> case.source()
'subpix_xp.nms2d(x["input"], kernel_size=(3, 3), mask_only=True)'
>>> sorted(case.inputs())
['input']
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CASES",
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "OPERATIONS",
    "RESULT_TYPES",
    "Case",
    "In",
    "get_case",
    "select",
]

FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")

#: Every public name of the kornia.geometry.subpix reference page, in its order: the rows of the table.
OPERATIONS = (
    "conv_soft_argmax2d",
    "conv_soft_argmax3d",
    "conv_quad_interp3d",
    "iterative_quad_interp3d",
    "spatial_softmax2d",
    "spatial_expectation2d",
    "spatial_soft_argmax2d",
    "render_gaussian2d",
    "nms2d",
    "nms3d",
    "nms3d_minmax",
    "SpatialSoftArgmax2d",
    "ConvSoftArgmax2d",
    "ConvSoftArgmax3d",
    "AdaptiveQuadInterp3d",
    "ConvQuadInterp3d",
    "IterativeQuadInterp3d",
    "NonMaximaSuppression2d",
    "NonMaximaSuppression3d",
    # Beyond the reference page:
    "detect_blobs",
)

#: Public names that are result types, not operations.
RESULT_TYPES = frozenset({"Blobs"})

#: Operations whose ``strict_maxima_bonus`` (default 10) kornia 0.9.0 ignores: compared with bonus 0.
_QUAD_OPS = frozenset(
    {
        "conv_quad_interp3d",
        "iterative_quad_interp3d",
        "ConvQuadInterp3d",
        "IterativeQuadInterp3d",
        "AdaptiveQuadInterp3d",
    }
)
_BONUS_DIVERGES = "strict_maxima_bonus > 0: deliberate divergence (docs/semantics.md, Differences from kornia; kornia 0.9.0 ignores the bonus)"
_INF_NEVER_EXTREMUM = "+inf (-inf) is never a strict maximum (minimum) (docs/semantics.md, NaN and infinity); kornia 0.9.0 marks it"
_PER_MAP_TEMP = (
    "a per-map temperature array (docs/semantics.md, Temperature): kornia 0.9.0 divides the (B*C, 1, ...) reshaped input, "
    "where a (B, C, 1, ...) array does not broadcast"
)


@dataclasses.dataclass(frozen=True)
class In:
    """An argument that is the case's generated array ``name`` (its ``repr`` is the snippet's text)."""

    name: str

    def __repr__(self) -> str:
        return f'x["{self.name}"]'


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One call of one operation on deterministic inputs.

    ``make`` returns the inputs as NumPy arrays: floating arrays (float64) are cast to the dtype
    under test, boolean arrays (masks) stay boolean. For a class, ``init`` holds the constructor's
    keywords and ``args``/``kwargs`` those of the call. ``oracle`` is ``None`` when the case is
    also compared with kornia, else the reason it is not. ``expect`` checks the float64 reference
    itself against a known answer (e.g. the sub-pixel centres of synthetic blobs).
    """

    op: str
    label: str
    make: Callable[[], dict[str, np.ndarray]]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    init: Mapping[str, Any] | None = None
    outputs: tuple[str, ...] = ("values",)
    dtypes: tuple[str, ...] = FLOAT_DTYPES
    oracle: str | None = None
    expect: Callable[[tuple[np.ndarray, ...]], None] | None = None
    doc: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}:{self.label}"

    def inputs(self) -> dict[str, np.ndarray]:
        """The generated inputs (cached; treat them as read-only)."""
        if self.id not in _INPUTS:
            arrays = self.make()
            for a in arrays.values():
                a.flags.writeable = False
            _INPUTS[self.id] = arrays
        return _INPUTS[self.id]

    def call(self, module: Any, arrays: Mapping[str, Any]) -> tuple[Any, ...]:
        """Run the case's operation from ``module`` (``subpix_xp`` or kornia's) on ``arrays``."""

        def resolve(value: Any) -> Any:
            return arrays[value.name] if isinstance(value, In) else value

        target = getattr(module, self.op)
        if self.init is not None:
            target = target(**{k: resolve(v) for k, v in self.init.items()})
        out = target(*(resolve(a) for a in self.args), **{k: resolve(v) for k, v in self.kwargs.items()})
        return out if isinstance(out, tuple) else (out,)

    def source(self, module: str = "subpix_xp") -> str:
        """The call as Python source, with the inputs read from a dict ``x``."""
        call = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        if self.init is None:
            return f"{module}.{self.op}({call})"
        init = ", ".join(f"{k}={v!r}" for k, v in self.init.items())
        return f"{module}.{self.op}({init})({call})"

    def for_oracle(self) -> tuple[Case, Case]:
        """``(ours, theirs)``: our call with ``strict_maxima_bonus=0`` where kornia ignores it, and kornia's."""
        ours, theirs = self, self
        if self.op in _QUAD_OPS:
            ours = self._with_param("strict_maxima_bonus", 0.0)
            theirs = self._with_param("strict_maxima_bonus", None)
        return ours, theirs

    def _with_param(self, name: str, value: Any) -> Case:
        """A copy with parameter ``name`` set (``None``: removed), in ``init`` for a class."""
        field = "init" if self.init is not None else "kwargs"
        params = dict(getattr(self, field))
        params.pop(name, None)
        if value is not None:
            params[name] = value
        return (
            dataclasses.replace(self, init=params)
            if field == "init"
            else dataclasses.replace(self, kwargs=params)
        )


_INPUTS: dict[str, dict[str, np.ndarray]] = {}


# ---------------------------------------------------------------------------------------------
# Deterministic input generators (NumPy float64).


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Standard normal values: many maxima, moves and rejections in the refinement."""
    return _rng(seed).standard_normal(shape)


def _blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of the last two axes, reflect-padded."""
    radius = max(1, int(3 * sigma + 0.5))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-t * t / (2 * sigma * sigma))
    k /= k.sum()
    for axis in (-2, -1):
        width = [(0, 0)] * maps.ndim
        width[axis] = (radius, radius)
        padded = np.pad(maps, width, mode="reflect")
        maps = np.lib.stride_tricks.sliding_window_view(padded, k.size, axis=axis) @ k
    return maps


def dog(shape: tuple[int, int, int, int, int], seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """A difference-of-Gaussians stack ``(B, C, D, H, W)`` of a smooth random image per map."""
    b, c, d, h, w = shape
    rng = _rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    images = np.zeros((b * c, h, w))
    for image in images:
        for _ in range(max(6, h * w // 5)):
            cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.5, 1.2)
            image += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    levels = [_blur(images, 0.7 * 1.25**k) for k in range(d + 1)]
    stack = np.stack([levels[k + 1] - levels[k] for k in range(d)], axis=1)
    return (stack.reshape(shape) * scale).astype(np.float64)


def blobs(
    shape: tuple[int, ...], centres: Iterable[tuple[float, ...]], sigma: float = 1.4, amplitude: float = 1.0
) -> np.ndarray:
    """Gaussian blobs at known sub-pixel ``centres`` (in the spatial axis order), the same in every map."""
    spatial = shape[2:]
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in spatial), indexing="ij")
    field = np.zeros(spatial)
    for centre in centres:
        r2 = sum((g - p) ** 2 for g, p in zip(grids, centre))
        field += amplitude * np.exp(-r2 / (2 * sigma * sigma))
    return np.broadcast_to(field, shape).copy()


def plateaus(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values in {0, 0.5, 1, 1.5}: many ties, plus a flat block, and a few strict maxima."""
    x = _rng(seed).integers(0, 4, shape).astype(np.float64) / 2
    block = (slice(None), slice(None), *(slice(0, max(1, n // 2)) for n in shape[2:]))
    x[block] = 1.0
    return x


def integer_plateaus(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Integer values in [-3, 3] with a flat block: ties for the integer NMS cases."""
    x = _rng(seed).integers(-3, 4, shape).astype(np.float64)
    block = (slice(None), slice(None), *(slice(0, max(1, n // 2)) for n in shape[2:]))
    x[block] = 2.0
    return x


def dynamic_range(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Noise, a few peaks of 1e3 and a region scaled down to 1e-3: windows far below the maximum."""
    x = noise(shape, seed)
    flat = x.reshape(-1, *shape[2:])
    for m in flat:
        m[(1,) * (len(shape) - 2)] = 1e3
        m[tuple(n // 2 for n in shape[2:])] = 7e2
        m[shape[2] // 2 + 1 :] *= 1e-3
    return x


def poke(x: np.ndarray, **values: tuple[tuple[int, ...], float]) -> np.ndarray:
    """``x`` with single entries replaced: ``poke(x, nan=((0, 0, 2, 3), nan))`` (keys are labels)."""
    x = np.array(x, dtype=np.float64)
    for index, value in values.values():
        x[index] = value
    return x


def positive(shape: tuple[int, ...], seed: int = 0, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    return _rng(seed).uniform(low, high, shape)


def probabilities(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Per-map softmax of noise: valid spatial distributions ``(B, N, H, W)``."""
    x = noise(shape, seed) * 2
    e = np.exp(x - x.max(axis=(-2, -1), keepdims=True))
    return e / e.sum(axis=(-2, -1), keepdims=True)


# ---------------------------------------------------------------------------------------------
# Known answers for the reference itself.


def _quad_centres(
    centres: list[tuple[float, float, float]], tol: float
) -> Callable[[tuple[np.ndarray, ...]], None]:
    """The refined coordinates at each blob's voxel are the blob's centre, ordered ``(depth, x, y)``."""

    def check(outputs: tuple[np.ndarray, ...]) -> None:
        coords = outputs[0]
        for d, y, x in centres:
            voxel = (round(d), round(y), round(x))
            got = coords[0, 0, :, voxel[0], voxel[1], voxel[2]]
            want = np.array([d, x, y])
            assert np.abs(got - want).max() <= tol, (
                f"blob at (d, y, x)={(d, y, x)}: refined to {got}, expected {want}"
            )

    return check


def _nms_at(
    points: Sequence[tuple[int, ...]], mask_output: int = 0
) -> Callable[[tuple[np.ndarray, ...]], None]:
    """The strict maxima of every map are exactly ``points``."""

    def check(outputs: tuple[np.ndarray, ...]) -> None:
        mask = outputs[mask_output].astype(bool)
        for m in mask.reshape(-1, *mask.shape[2:]):
            found = sorted(map(tuple, np.argwhere(m).tolist()))
            assert found == sorted(points), f"strict maxima at {found}, expected {sorted(points)}"

    return check


def _soft_argmax_peak(point: tuple[int, int], tol: float = 1e-6) -> Callable[[tuple[np.ndarray, ...]], None]:
    """The window centred on a sharp peak at pixel ``(y, x)`` returns ``(x, y)`` (pixel coordinates)."""

    def check(outputs: tuple[np.ndarray, ...]) -> None:
        y, x = point
        got = outputs[0][0, 0, :, y, x]
        assert np.abs(got - np.array([x, y])).max() <= tol, f"peak at (y, x)={point}: got {got}"

    return check


# ---------------------------------------------------------------------------------------------
# The catalogue.

_NAN, _INF = math.nan, math.inf
#: Shared shapes (JAX compiles each operation once per shape and dtype: few shapes keep it quick).
MAP2 = (2, 2, 9, 11)
X = In("input")
MASK = In("mask")
TEMP = In("temperature")


def _case(op: str, label: str, make: Callable[[], dict[str, np.ndarray]], **fields: Any) -> Case:
    return Case(op, label, make, **fields)


def _x(fn: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> Callable[[], dict[str, np.ndarray]]:
    """An input generator returning ``{"input": fn(*args, **kwargs)}``."""
    return lambda: {"input": fn(*args, **kwargs)}


def _with_mask(
    make_x: Callable[[], np.ndarray], make_mask: Callable[[np.ndarray], np.ndarray]
) -> Callable[[], dict[str, np.ndarray]]:
    def make() -> dict[str, np.ndarray]:
        x = make_x()
        return {"input": x, "mask": make_mask(x)}

    return make


def _nms3d_mask(x: np.ndarray) -> np.ndarray:
    """The 3x3x3 strict-maxima mask, computed here in NumPy (not by the library under test)."""
    d, h, w = x.shape[2:]
    mask = np.zeros(x.shape, dtype=bool)
    centre = x[:, :, 1:-1, 1:-1, 1:-1]
    strict = np.ones(centre.shape, dtype=bool)
    for dd in (-1, 0, 1):
        for dh in (-1, 0, 1):
            for dw in (-1, 0, 1):
                if dd or dh or dw:
                    strict &= centre > x[:, :, 1 + dd : d - 1 + dd, 1 + dh : h - 1 + dh, 1 + dw : w - 1 + dw]
    mask[:, :, 1:-1, 1:-1, 1:-1] = strict
    return mask


def _sparse_mask(seed: int, fraction: float = 0.05) -> Callable[[np.ndarray], np.ndarray]:
    """A custom mask: random voxels, border voxels and non-maxima included."""
    return lambda x: _rng(seed).random(x.shape) < fraction


def _spatial_cases() -> list[Case]:
    shape = MAP2

    def nan_map() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape, 3), nan=((0, 1, 2, 3), _NAN))}

    def inf_map() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape, 3), inf=((1, 1, 0, 0), _INF))}

    def temp() -> dict[str, np.ndarray]:
        return {"input": noise(shape, 4), "temperature": positive((2, 2, 1), 5)}

    cases = [
        _case("spatial_softmax2d", "default", _x(noise, shape, 1), args=(X,)),
        _case(
            "spatial_softmax2d",
            "temperature-0.5",
            _x(noise, shape, 2),
            args=(X,),
            kwargs={"temperature": 0.5},
        ),
        _case("spatial_softmax2d", "temperature-array", temp, args=(X,), kwargs={"temperature": TEMP}),
        _case("spatial_softmax2d", "dynamic-range", _x(dynamic_range, shape, 3), args=(X,)),
        _case("spatial_softmax2d", "nan-one-map", nan_map, args=(X,), doc="NaN in one map: that map only"),
        _case("spatial_softmax2d", "inf-one-map", inf_map, args=(X,), doc="+inf in one map: that map only"),
        _case("spatial_softmax2d", "single-pixel", _x(noise, (1, 2, 1, 1), 6), args=(X,)),
        _case("spatial_softmax2d", "empty-batch", _x(noise, (0, 3, 4, 4)), args=(X,)),
        _case("spatial_softmax2d", "empty-channels", _x(noise, (2, 0, 4, 4)), args=(X,)),
    ]
    coords = ("coords",)
    cases += [
        _case("spatial_expectation2d", "normalized", _x(probabilities, shape, 7), args=(X,), outputs=coords),
        _case(
            "spatial_expectation2d",
            "pixels",
            _x(probabilities, shape, 8),
            args=(X,),
            kwargs={"normalized_coordinates": False},
            outputs=coords,
        ),
        _case(
            "spatial_expectation2d",
            "unnormalised",
            _x(positive, shape, 9, 0.0, 1.0),
            args=(X,),
            kwargs={"normalized_coordinates": False},
            outputs=coords,
            doc="the map is used as given (no renormalisation)",
        ),
        _case(
            "spatial_expectation2d",
            "width-1",
            _x(probabilities, (1, 2, 6, 1), 10),
            args=(X,),
            outputs=coords,
            doc="an axis of length 1 normalises to 0",
        ),
        _case(
            "spatial_expectation2d", "empty-batch", _x(probabilities, (0, 2, 4, 4)), args=(X,), outputs=coords
        ),
    ]
    cases += [
        _case("spatial_soft_argmax2d", "default", _x(noise, shape, 11), args=(X,), outputs=coords),
        _case(
            "spatial_soft_argmax2d",
            "pixels",
            _x(noise, shape, 12),
            args=(X,),
            kwargs={"normalized_coordinates": False},
            outputs=coords,
        ),
        _case(
            "spatial_soft_argmax2d",
            "temperature-0.25",
            _x(noise, shape, 13),
            args=(X,),
            kwargs={"temperature": 0.25},
            outputs=coords,
        ),
        _case(
            "spatial_soft_argmax2d",
            "temperature-array",
            temp,
            args=(X,),
            kwargs={"temperature": TEMP, "normalized_coordinates": False},
            outputs=coords,
        ),
        _case(
            "spatial_soft_argmax2d",
            "dynamic-range",
            _x(dynamic_range, shape, 14),
            args=(X,),
            kwargs={"normalized_coordinates": False},
            outputs=coords,
        ),
        _case("spatial_soft_argmax2d", "height-1", _x(noise, (1, 1, 1, 7), 15), args=(X,), outputs=coords),
        _case("spatial_soft_argmax2d", "nan-one-map", nan_map, args=(X,), outputs=coords),
        _case("spatial_soft_argmax2d", "inf-one-map", inf_map, args=(X,), outputs=coords),
        _case("spatial_soft_argmax2d", "empty-batch", _x(noise, (0, 1, 3, 3)), args=(X,), outputs=coords),
    ]

    def gauss(
        mean_shape: tuple[int, ...],
        std_shape: tuple[int, ...],
        seed: int,
        pixels: bool,
        size: tuple[int, int],
    ) -> Callable[[], dict[str, np.ndarray]]:
        def make() -> dict[str, np.ndarray]:
            rng = _rng(seed)
            if pixels:
                mean = rng.uniform(0, 1, mean_shape) * (np.array([size[1], size[0]]) - 1)
                std = rng.uniform(0.5, 2.5, std_shape)
            else:
                mean = rng.uniform(-1, 1, mean_shape)
                std = rng.uniform(0.1, 0.6, std_shape)
            return {"mean": mean, "std": std}

        return make

    mean, std = In("mean"), In("std")

    def off_grid() -> dict[str, np.ndarray]:
        return {
            "mean": np.array([[50.0, -3.0], [3.5, 2.0]]),
            "std": np.array([[1.0, 0.7], [0.6, 1.2]]),
        }

    cases += [
        _case(
            "render_gaussian2d",
            "normalized",
            gauss((4, 2), (4, 2), 16, False, (6, 9)),
            args=(mean, std),
            kwargs={"size": (6, 9)},
        ),
        _case(
            "render_gaussian2d",
            "pixels",
            gauss((3, 2), (3, 2), 17, True, (7, 5)),
            args=(mean, std),
            kwargs={"size": (7, 5), "normalized_coordinates": False},
        ),
        _case(
            "render_gaussian2d",
            "broadcast-std",
            gauss((3, 4, 2), (2,), 18, False, (5, 6)),
            args=(mean, std),
            kwargs={"size": (5, 6)},
        ),
        _case(
            "render_gaussian2d",
            "off-grid",
            off_grid,
            args=(mean, std),
            kwargs={"size": (8, 8), "normalized_coordinates": False},
            doc="mass on the nearest border",
        ),
        _case(
            "render_gaussian2d",
            "height-1",
            gauss((2, 2), (2, 2), 19, False, (1, 4)),
            args=(mean, std),
            kwargs={"size": (1, 4)},
        ),
        _case(
            "render_gaussian2d",
            "empty",
            gauss((0, 2), (0, 2), 20, False, (3, 3)),
            args=(mean, std),
            kwargs={"size": (3, 3)},
        ),
    ]
    return cases


def _conv_soft_argmax_cases() -> list[Case]:
    op = "conv_soft_argmax2d"
    shape = MAP2
    cv = ("coords", "values")

    def peak() -> dict[str, np.ndarray]:
        return {"input": poke(noise(MAP2, 21) * 0.1, peak=((0, 0, 4, 6), 30.0))}

    def nan2() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape, 22), nan=((0, 1, 4, 5), _NAN))}

    def inf2() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape, 22), inf=((1, 0, 2, 8), _INF), ninf=((0, 0, 6, 3), -_INF))}

    cases = [
        _case(op, "default", _x(noise, shape, 23), args=(X,), outputs=("coords",)),
        _case(op, "values", _x(noise, shape, 24), args=(X,), kwargs={"output_value": True}, outputs=cv),
        _case(
            op,
            "k5-s2-p2",
            _x(noise, shape, 25),
            args=(X,),
            kwargs={"kernel_size": (5, 5), "stride": (2, 2), "padding": (2, 2), "output_value": True},
            outputs=cv,
        ),
        _case(
            op,
            "even-k4-s2-p2",
            _x(noise, shape, 26),
            args=(X,),
            kwargs={"kernel_size": (4, 4), "stride": (2, 2), "padding": (2, 2), "output_value": True},
            outputs=cv,
        ),
        _case(
            op,
            "mixed-k2x3-s1x2-p1",
            _x(noise, shape, 27),
            args=(X,),
            kwargs={
                "kernel_size": (2, 3),
                "stride": (1, 2),
                "padding": (1, 1),
                "normalized_coordinates": False,
                "output_value": True,
            },
            outputs=cv,
        ),
        _case(
            op,
            "no-padding-pixels",
            _x(noise, shape, 28),
            args=(X,),
            kwargs={"padding": (0, 0), "normalized_coordinates": False, "output_value": True},
            outputs=cv,
        ),
        _case(
            op,
            "temperature-0.5",
            _x(noise, shape, 29),
            args=(X,),
            kwargs={"temperature": 0.5, "output_value": True},
            outputs=cv,
        ),
        _case(
            op,
            "temperature-per-map",
            lambda: {"input": noise(shape, 30), "temperature": positive((2, 2, 1, 1), 31)},
            args=(X,),
            kwargs={"temperature": TEMP, "output_value": True},
            outputs=cv,
            oracle=_PER_MAP_TEMP,
        ),
        _case(
            op,
            "temperature-0d-array",
            lambda: {"input": noise(shape, 30), "temperature": np.array(0.7)},
            args=(X,),
            kwargs={"temperature": TEMP, "output_value": True},
            outputs=cv,
        ),
        _case(
            op,
            "dynamic-range",
            _x(dynamic_range, shape, 32),
            args=(X,),
            kwargs={"normalized_coordinates": False, "output_value": True},
            outputs=cv,
        ),
        _case(
            op,
            "sharp-peak",
            peak,
            args=(X,),
            kwargs={"normalized_coordinates": False, "output_value": True},
            outputs=cv,
            expect=_soft_argmax_peak((4, 6)),
        ),
        _case(op, "nan-one-window", nan2, args=(X,), kwargs={"output_value": True}, outputs=cv),
        _case(op, "inf-one-window", inf2, args=(X,), kwargs={"output_value": True}, outputs=cv),
        _case(
            op,
            "side-shorter-than-window",
            _x(noise, (1, 2, 2, 2), 33),
            args=(X,),
            kwargs={"output_value": True},
            outputs=cv,
        ),
        _case(
            op, "empty-batch", _x(noise, (0, 2, 5, 5)), args=(X,), kwargs={"output_value": True}, outputs=cv
        ),
    ]
    op = "conv_soft_argmax3d"
    shape3 = (1, 2, 4, 7, 8)

    def nan3() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape3, 34), nan=((0, 0, 1, 3, 3), _NAN))}

    def inf3() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape3, 34), inf=((0, 1, 2, 5, 1), _INF))}

    cases += [
        _case(op, "default", _x(noise, shape3, 35), args=(X,), outputs=cv),
        _case(
            op,
            "normalized-coords-only",
            _x(noise, shape3, 36),
            args=(X,),
            kwargs={"normalized_coordinates": True, "output_value": False},
            outputs=("coords",),
        ),
        _case(
            op,
            "even-k2x4x4-s1x2x2-p1x2x2",
            _x(noise, shape3, 37),
            args=(X,),
            kwargs={"kernel_size": (2, 4, 4), "stride": (1, 2, 2), "padding": (1, 2, 2)},
            outputs=cv,
        ),
        _case(
            op,
            "seed-example-s1x2x2-p0x1x1",
            _x(noise, shape3, 38),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1)},
            outputs=cv,
        ),
        _case(
            op,
            "k5x3x3",
            _x(dog, shape3, 39),
            args=(X,),
            kwargs={"kernel_size": (5, 3, 3), "padding": (2, 1, 1)},
            outputs=cv,
        ),
        _case(
            op,
            "temperature-per-map",
            lambda: {"input": noise(shape3, 40), "temperature": positive((1, 2, 1, 1, 1), 41)},
            args=(X,),
            kwargs={"temperature": TEMP},
            outputs=cv,
            oracle=_PER_MAP_TEMP,
        ),
        _case(
            op,
            "temperature-0d-array",
            lambda: {"input": noise(shape3, 40), "temperature": np.array(1.6)},
            args=(X,),
            kwargs={"temperature": TEMP},
            outputs=cv,
        ),
        _case(
            op,
            "strict-maxima-bonus",
            _x(noise, shape3, 42),
            args=(X,),
            kwargs={"strict_maxima_bonus": 0.5},
            outputs=cv,
            oracle=_BONUS_DIVERGES,
        ),
        _case(
            op,
            "strict-maxima-bonus-plateaus",
            _x(plateaus, shape3, 43),
            args=(X,),
            kwargs={"strict_maxima_bonus": 1.0},
            outputs=cv,
            oracle=_BONUS_DIVERGES,
            doc="ties are not strict maxima: no bonus on plateaus",
        ),
        _case(op, "nan-one-window", nan3, args=(X,), outputs=cv),
        _case(op, "inf-one-window", inf3, args=(X,), outputs=cv),
        _case(op, "side-shorter-than-window", _x(noise, (1, 1, 2, 2, 2), 44), args=(X,), outputs=cv),
        _case(op, "empty-channels", _x(noise, (1, 0, 3, 4, 4)), args=(X,), outputs=cv),
    ]
    return cases


def _nms_cases() -> list[Case]:
    shape2 = MAP2
    mask, vals = ("mask",), ("values",)

    def nan2() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape2, 50), nan=((0, 0, 4, 4), _NAN), nan2=((1, 1, 2, 7), _NAN))}

    def inf2() -> dict[str, np.ndarray]:
        return {"input": poke(noise(shape2, 50), inf=((1, 1, 2, 7), _INF), ninf=((0, 1, 6, 2), -_INF))}

    known2 = [(2, 3), (6, 7)]
    cases = [
        _case(
            "nms2d",
            "k3-mask",
            _x(noise, shape2, 51),
            args=(X,),
            kwargs={"kernel_size": (3, 3), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms2d",
            "k3-values",
            _x(noise, shape2, 52),
            args=(X,),
            kwargs={"kernel_size": (3, 3)},
            outputs=vals,
        ),
        _case(
            "nms2d",
            "k5",
            _x(noise, shape2, 53),
            args=(X,),
            kwargs={"kernel_size": (5, 5), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms2d",
            "even-k4x2",
            _x(noise, shape2, 54),
            args=(X,),
            kwargs={"kernel_size": (4, 2), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms2d",
            "k1x1",
            _x(noise, shape2, 55),
            args=(X,),
            kwargs={"kernel_size": (1, 1)},
            outputs=vals,
            doc="every position is a maximum",
        ),
        _case(
            "nms2d",
            "k1x3",
            _x(noise, shape2, 56),
            args=(X,),
            kwargs={"kernel_size": (1, 3), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms2d",
            "known-peaks",
            _x(blobs, MAP2, [(2.2, 3.3), (6.4, 6.8)]),
            args=(X,),
            kwargs={"kernel_size": (3, 3), "mask_only": True},
            outputs=mask,
            expect=_nms_at(known2),
        ),
        _case(
            "nms2d",
            "plateaus-ties",
            _x(plateaus, shape2, 57),
            args=(X,),
            kwargs={"kernel_size": (3, 3)},
            outputs=vals,
        ),
        _case(
            "nms2d",
            "nan",
            nan2,
            args=(X,),
            kwargs={"kernel_size": (3, 3), "mask_only": True},
            outputs=mask,
            doc="NaN is never a maximum and suppresses its windows",
        ),
        _case(
            "nms2d",
            "inf",
            inf2,
            args=(X,),
            kwargs={"kernel_size": (3, 3)},
            outputs=vals,
            oracle=_INF_NEVER_EXTREMUM,
            doc="+inf is never a strict maximum (docs/semantics.md, NaN and infinity)",
        ),
        _case(
            "nms2d",
            "integers",
            _x(integer_plateaus, shape2, 58),
            args=(X,),
            kwargs={"kernel_size": (3, 3)},
            outputs=vals,
            dtypes=INT_DTYPES,
        ),
        _case(
            "nms2d",
            "side-shorter-than-window",
            _x(noise, (1, 1, 2, 5), 59),
            args=(X,),
            kwargs={"kernel_size": (3, 3), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms2d",
            "empty-batch",
            _x(noise, (0, 2, 5, 5)),
            args=(X,),
            kwargs={"kernel_size": (3, 3)},
            outputs=vals,
        ),
    ]
    shape3 = _QUAD_SHAPE

    def nan3() -> dict[str, np.ndarray]:
        return {"input": poke(dog(shape3, 60), nan=((0, 0, 2, 3, 3), _NAN), nan2=((0, 1, 3, 5, 5), _NAN))}

    def inf3() -> dict[str, np.ndarray]:
        return {"input": poke(dog(shape3, 60), inf=((0, 1, 3, 5, 5), _INF), ninf=((0, 0, 2, 3, 3), -_INF))}

    known3 = [(1, 2, 3), (3, 5, 6)]
    cases += [
        _case(
            "nms3d",
            "k3-mask",
            _x(dog, shape3, 61),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms3d",
            "k3-values",
            _x(noise, shape3, 62),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3)},
            outputs=vals,
        ),
        _case(
            "nms3d",
            "k1x3x5",
            _x(noise, shape3, 63),
            args=(X,),
            kwargs={"kernel_size": (1, 3, 5), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms3d",
            "even-k2x2x2",
            _x(noise, shape3, 64),
            args=(X,),
            kwargs={"kernel_size": (2, 2, 2), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms3d",
            "k1x1x1",
            _x(noise, shape3, 65),
            args=(X,),
            kwargs={"kernel_size": (1, 1, 1)},
            outputs=vals,
        ),
        _case(
            "nms3d",
            "known-peaks",
            _x(blobs, (1, 1, 5, 8, 9), [(1.2, 1.9, 3.3), (3.4, 4.6, 5.8)], 1.0),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3), "mask_only": True},
            outputs=mask,
            expect=_nms_at(known3),
        ),
        _case(
            "nms3d",
            "plateaus-ties",
            _x(plateaus, shape3, 66),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3)},
            outputs=vals,
        ),
        _case(
            "nms3d",
            "nan",
            nan3,
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms3d",
            "inf",
            inf3,
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3), "mask_only": True},
            outputs=mask,
            oracle=_INF_NEVER_EXTREMUM,
        ),
        _case(
            "nms3d",
            "integers",
            _x(integer_plateaus, shape3, 67),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3)},
            outputs=vals,
            dtypes=INT_DTYPES,
        ),
        _case(
            "nms3d",
            "side-shorter-than-window",
            _x(noise, (1, 1, 2, 4, 4), 68),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3), "mask_only": True},
            outputs=mask,
        ),
        _case(
            "nms3d",
            "empty-channels",
            _x(noise, (1, 0, 3, 4, 4)),
            args=(X,),
            kwargs={"kernel_size": (3, 3, 3)},
            outputs=vals,
        ),
    ]
    mm = ("mask", "mask")
    cases += [
        _case("nms3d_minmax", "dog", _x(dog, shape3, 70), args=(X,), outputs=mm),
        _case("nms3d_minmax", "noise", _x(noise, shape3, 71), args=(X,), outputs=mm),
        _case("nms3d_minmax", "plateaus-ties", _x(plateaus, shape3, 72), args=(X,), outputs=mm),
        _case("nms3d_minmax", "nan", nan3, args=(X,), outputs=mm),
        _case("nms3d_minmax", "inf", inf3, args=(X,), outputs=mm, oracle=_INF_NEVER_EXTREMUM),
        _case(
            "nms3d_minmax",
            "integers",
            _x(integer_plateaus, shape3, 74),
            args=(X,),
            outputs=mm,
            dtypes=INT_DTYPES,
        ),
        _case(
            "nms3d_minmax", "side-shorter-than-window", _x(noise, (1, 1, 2, 4, 4), 75), args=(X,), outputs=mm
        ),
        _case("nms3d_minmax", "empty-batch", _x(noise, (0, 1, 3, 4, 4)), args=(X,), outputs=mm),
    ]
    return cases


_BLOB_CENTRES = [(2.2, 3.4, 2.7), (2.6, 8.7, 9.4)]
_QUAD_BATCH = (2, 2, 5, 16, 18)
_QUAD_SHAPE = (1, 2, 5, 16, 18)


def _quad_cases() -> list[Case]:
    cv = ("coords", "values")

    def known() -> dict[str, np.ndarray]:
        return {"input": blobs(_QUAD_SHAPE, _BLOB_CENTRES, sigma=1.4)}

    def nanq() -> dict[str, np.ndarray]:
        return {
            "input": poke(dog(_QUAD_SHAPE, 80), nan=((0, 0, 2, 5, 5), _NAN), nan2=((0, 1, 3, 9, 9), _NAN))
        }

    def infq() -> dict[str, np.ndarray]:
        return {
            "input": poke(dog(_QUAD_SHAPE, 80), inf=((0, 1, 3, 9, 9), _INF), ninf=((0, 1, 1, 3, 12), -_INF))
        }

    common = [
        ("dog-default", _x(dog, _QUAD_SHAPE, 81), {}),
        ("dog-bonus0", _x(dog, _QUAD_SHAPE, 82), {"strict_maxima_bonus": 0.0}),
        ("noise", _x(noise, _QUAD_SHAPE, 83), {}),
        ("batch-2x2", _x(dog, _QUAD_BATCH, 84), {"strict_maxima_bonus": 1.5}),
        (
            "precomputed-nms-mask",
            _with_mask(lambda: dog(_QUAD_SHAPE, 85), _nms3d_mask),
            {"precomputed_nms_mask": MASK},
        ),
        (
            "custom-mask",
            _with_mask(lambda: noise(_QUAD_SHAPE, 86), _sparse_mask(87)),
            {"precomputed_nms_mask": MASK},
        ),
        ("n_iters-0", _x(noise, _QUAD_SHAPE, 88), {"n_iters": 0}),
        ("n_iters-1", _x(noise, _QUAD_SHAPE, 89), {"n_iters": 1}),
        ("n_iters-10", _x(noise, _QUAD_SHAPE, 90), {"n_iters": 10}),
        ("shift-0.3", _x(dog, _QUAD_SHAPE, 91), {"max_subpixel_shift": 0.3}),
        ("no-scale-steps", _x(noise, _QUAD_SHAPE, 92), {"allow_scale_steps": False}),
        ("known-blobs", known, {"strict_maxima_bonus": 0.0}),
        ("tiny-amplitude", _x(dog, _QUAD_SHAPE, 93, 1e-30), {"strict_maxima_bonus": 0.0}),
        ("huge-amplitude", _x(dog, _QUAD_SHAPE, 93, 1e30), {"strict_maxima_bonus": 0.0}),
        ("plateaus-ties", _x(plateaus, _QUAD_SHAPE, 94), {}),
        ("nan-one-window", nanq, {}),
        ("inf-one-window", infq, {}),
        ("side-shorter-than-3", _x(noise, (1, 2, 2, 6, 6), 95), {}),
        ("empty-batch", _x(noise, (0, 2, 4, 6, 6)), {}),
    ]
    cases = []
    for label, make, kwargs in common:
        expect = _quad_centres(_BLOB_CENTRES, 0.05) if label == "known-blobs" else None
        cases.append(
            _case("conv_quad_interp3d", label, make, args=(X,), kwargs=kwargs, outputs=cv, expect=expect)
        )
        cases.append(
            _case("iterative_quad_interp3d", label, make, args=(X,), kwargs=kwargs, outputs=cv, expect=expect)
        )
    noise_small = _x(noise, _QUAD_SHAPE, 96)
    cases += [
        _case(
            "conv_quad_interp3d",
            "dilation-radius-0",
            noise_small,
            args=(X,),
            kwargs={"dilation_radius": 0},
            outputs=cv,
        ),
        _case(
            "conv_quad_interp3d",
            "dilation-radius-2",
            noise_small,
            args=(X,),
            kwargs={"dilation_radius": 2},
            outputs=cv,
        ),
        _case(
            "conv_quad_interp3d",
            "shift-0.3-radius-0",
            _x(dog, _QUAD_SHAPE, 97),
            args=(X,),
            kwargs={"max_subpixel_shift": 0.3, "dilation_radius": 0},
            outputs=cv,
        ),
        _case(
            "iterative_quad_interp3d",
            "max-candidates-0",
            noise_small,
            args=(X,),
            kwargs={"max_candidates": 0},
            outputs=cv,
        ),
        _case(
            "iterative_quad_interp3d",
            "max-candidates-3",
            _x(noise, _QUAD_BATCH, 98),
            args=(X,),
            kwargs={"max_candidates": 3},
            outputs=cv,
            doc="the top 3 per image, not over the batch",
        ),
        _case(
            "iterative_quad_interp3d",
            "max-candidates-1000",
            noise_small,
            args=(X,),
            kwargs={"max_candidates": 1000},
            outputs=cv,
        ),
        _case(
            "iterative_quad_interp3d",
            "max-candidates-2-with-mask",
            _with_mask(lambda: dog(_QUAD_SHAPE, 99), _nms3d_mask),
            args=(X,),
            kwargs={"precomputed_nms_mask": MASK, "max_candidates": 2},
            outputs=cv,
        ),
    ]
    return cases


def _class_cases() -> list[Case]:
    cv = ("coords", "values")
    shape2, shape3 = MAP2, (1, 2, 4, 7, 8)
    return [
        _case(
            "SpatialSoftArgmax2d", "defaults", _x(noise, shape2, 100), init={}, args=(X,), outputs=("coords",)
        ),
        _case(
            "SpatialSoftArgmax2d",
            "temperature-pixels",
            _x(noise, shape2, 101),
            init={"temperature": 0.5, "normalized_coordinates": False},
            args=(X,),
            outputs=("coords",),
        ),
        _case(
            "SpatialSoftArgmax2d",
            "temperature-array",
            lambda: {"input": noise(shape2, 102), "temperature": positive((2, 2, 1), 103)},
            init={"temperature": TEMP},
            args=(X,),
            outputs=("coords",),
        ),
        _case(
            "ConvSoftArgmax2d", "defaults", _x(noise, shape2, 104), init={}, args=(X,), outputs=("coords",)
        ),
        _case(
            "ConvSoftArgmax2d",
            "even-k4-s2-p2-values",
            _x(noise, shape2, 105),
            init={"kernel_size": (4, 4), "stride": (2, 2), "padding": (2, 2), "output_value": True},
            args=(X,),
            outputs=cv,
        ),
        _case("ConvSoftArgmax3d", "defaults", _x(noise, shape3, 106), init={}, args=(X,), outputs=cv),
        _case(
            "ConvSoftArgmax3d",
            "normalized-s1x2x2",
            _x(noise, shape3, 107),
            init={"stride": (1, 2, 2), "normalized_coordinates": True},
            args=(X,),
            outputs=cv,
        ),
        _case(
            "ConvSoftArgmax3d",
            "strict-maxima-bonus",
            _x(noise, shape3, 108),
            init={"strict_maxima_bonus": 2.0},
            args=(X,),
            outputs=cv,
            oracle=_BONUS_DIVERGES,
        ),
        _case("ConvQuadInterp3d", "defaults", _x(dog, _QUAD_SHAPE, 109), init={}, args=(X,), outputs=cv),
        _case(
            "ConvQuadInterp3d",
            "precomputed-mask-radius-2",
            _with_mask(lambda: noise(_QUAD_SHAPE, 110), _nms3d_mask),
            init={"dilation_radius": 2, "strict_maxima_bonus": 0.0},
            args=(X,),
            kwargs={"precomputed_nms_mask": MASK},
            outputs=cv,
        ),
        _case("IterativeQuadInterp3d", "defaults", _x(dog, _QUAD_SHAPE, 111), init={}, args=(X,), outputs=cv),
        _case(
            "IterativeQuadInterp3d",
            "max-candidates-4-with-mask",
            _with_mask(lambda: noise(_QUAD_SHAPE, 112), _nms3d_mask),
            init={"max_candidates": 4, "n_iters": 3},
            args=(X,),
            kwargs={"precomputed_nms_mask": MASK},
            outputs=cv,
        ),
        _case(
            "AdaptiveQuadInterp3d",
            "auto",
            _x(dog, _QUAD_SHAPE, 113),
            init={},
            args=(X,),
            outputs=cv,
            doc="conv path on accelerators, patch path on CPUs: the same result",
        ),
        _case(
            "AdaptiveQuadInterp3d",
            "patch",
            _x(noise, _QUAD_SHAPE, 114),
            init={"mode": "patch"},
            args=(X,),
            outputs=cv,
        ),
        _case(
            "AdaptiveQuadInterp3d",
            "conv",
            _x(noise, _QUAD_SHAPE, 115),
            init={"mode": "conv"},
            args=(X,),
            outputs=cv,
        ),
        _case(
            "AdaptiveQuadInterp3d",
            "auto-with-mask",
            _with_mask(lambda: dog(_QUAD_SHAPE, 116), _nms3d_mask),
            init={"mode": "auto", "strict_maxima_bonus": 0.0},
            args=(X,),
            kwargs={"precomputed_nms_mask": MASK},
            outputs=cv,
        ),
        _case(
            "NonMaximaSuppression2d",
            "k3-mask",
            _x(noise, shape2, 117),
            init={"kernel_size": (3, 3)},
            args=(X,),
            kwargs={"mask_only": True},
            outputs=("mask",),
        ),
        _case(
            "NonMaximaSuppression2d",
            "k3-values",
            _x(noise, shape2, 118),
            init={"kernel_size": (3, 3)},
            args=(X,),
            outputs=("values",),
        ),
        _case(
            "NonMaximaSuppression3d",
            "k3-mask",
            _x(dog, _QUAD_SHAPE, 119),
            init={"kernel_size": (3, 3, 3)},
            args=(X,),
            kwargs={"mask_only": True},
            outputs=("mask",),
        ),
        _case(
            "NonMaximaSuppression3d",
            "k1x3x3-values",
            _x(noise, shape3, 120),
            init={"kernel_size": (1, 3, 3)},
            args=(X,),
            outputs=("values",),
        ),
    ]


def _blob_image(shape: tuple[int, int, int, int] = (2, 1, 48, 52)) -> np.ndarray:
    """Two bright and two dark Gaussian blobs; the second image is the first flipped upside down."""
    image = blobs(shape, [(14.3, 12.6), (32.5, 36.2)], sigma=2.5) - blobs(
        shape, [(13.2, 37.7), (34.4, 14.1)], sigma=3.0
    )
    if shape[0] > 1:
        image[1] = image[1, :, ::-1, :]
    return image


def _detector_cases() -> list[Case]:
    fields = ("coords", "coords", "coords", "values", "mask", "mask")  # x, y, scale, response, bright, valid
    no_oracle = "not in kornia.geometry.subpix (kornia's ScaleSpaceDetector has another interface)"
    image = In("image")

    def make() -> dict[str, np.ndarray]:
        return {"image": _blob_image()}

    return [
        _case(
            "detect_blobs",
            "four-blobs",
            make,
            args=(image,),
            kwargs={"num_features": 4},
            outputs=fields,
            oracle=no_oracle,
        ),
        _case(
            "detect_blobs",
            "no-doubling-no-refit",
            make,
            args=(image,),
            kwargs={"num_features": 6, "double_image": False, "spatial_refit": False},
            outputs=fields,
            oracle=no_oracle,
        ),
        _case(
            "detect_blobs",
            "more-slots-than-blobs",
            make,
            args=(image,),
            kwargs={"num_features": 8, "double_image": False, "threshold": 0.05},
            outputs=fields,
            oracle=no_oracle,
            doc="unfilled slots: NaN coordinates, -inf response, invalid",
        ),
        _case(
            "detect_blobs",
            "empty-batch",
            lambda: {"image": _blob_image((0, 1, 48, 52))},
            args=(image,),
            kwargs={"num_features": 3},
            outputs=fields,
            oracle=no_oracle,
        ),
    ]


def _build() -> tuple[Case, ...]:
    cases = (
        *_spatial_cases(),
        *_conv_soft_argmax_cases(),
        *_nms_cases(),
        *_quad_cases(),
        *_class_cases(),
        *_detector_cases(),
    )
    order = {op: i for i, op in enumerate(OPERATIONS)}
    ids = [c.id for c in cases]
    duplicated = {i for i in ids if ids.count(i) > 1}
    if duplicated:
        raise RuntimeError(f"conformance: duplicate case ids {sorted(duplicated)}")
    unknown = {c.op for c in cases} - set(order)
    if unknown:
        raise RuntimeError(f"conformance: cases for unknown operations {sorted(unknown)}")
    return tuple(sorted(cases, key=lambda c: order[c.op]))


CASES: tuple[Case, ...] = _build()
_BY_ID = {c.id: c for c in CASES}


def get_case(case_id: str) -> Case:
    """The case with id ``case_id`` (``"<operation>:<label>"``)."""
    try:
        return _BY_ID[case_id]
    except KeyError:
        raise KeyError(
            f"no conformance case {case_id!r}; see `python -m subpix_xp.conformance --list`"
        ) from None


def select(ops: Iterable[str] | None = None, cases: Iterable[str] | None = None) -> list[Case]:
    """Cases whose operation matches one of ``ops`` and whose id matches one of ``cases`` (shell patterns)."""
    ops, cases = list(ops or ["*"]), list(cases or ["*"])
    return [
        c
        for c in CASES
        if any(fnmatch.fnmatchcase(c.op, p) for p in ops) and any(fnmatch.fnmatchcase(c.id, p) for p in cases)
    ]
