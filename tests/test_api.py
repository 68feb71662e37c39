"""The public API matches the reference page name for name, parameter for parameter, default for default."""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import pytest

import subpix_xp

PAGE = (pathlib.Path(__file__).parent / "data" / "reference_page.txt").read_text()
SIGNATURE = re.compile(r"(class )?kornia\.geometry\.subpix\.(\w+)\((.*?)\)\[source\]")

FUNCTIONS = {
    "spatial_softmax2d",
    "spatial_expectation2d",
    "spatial_soft_argmax2d",
    "render_gaussian2d",
    "conv_soft_argmax2d",
    "conv_soft_argmax3d",
    "nms2d",
    "nms3d",
    "nms3d_minmax",
    "conv_quad_interp3d",
    "iterative_quad_interp3d",
}
CLASSES = {
    "SpatialSoftArgmax2d",
    "ConvSoftArgmax2d",
    "ConvSoftArgmax3d",
    "ConvQuadInterp3d",
    "IterativeQuadInterp3d",
    "AdaptiveQuadInterp3d",
    "NonMaximaSuppression2d",
    "NonMaximaSuppression3d",
}


def _page_signatures() -> dict[str, list[tuple[str, object]]]:
    """name -> [(parameter, default or inspect.Parameter.empty)] as printed on the page."""
    out = {}
    for match in SIGNATURE.finditer(PAGE):
        call = ast.parse(f"f({match.group(3)})", mode="eval").body
        params = [(a.id, inspect.Parameter.empty) for a in call.args]
        params += [(k.arg, ast.literal_eval(k.value)) for k in call.keywords]
        out[match.group(2)] = params
    return out


PAGE_SIGNATURES = _page_signatures()


def test_page_lists_what_we_expect():
    assert set(PAGE_SIGNATURES) == FUNCTIONS | CLASSES - {"NonMaximaSuppression2d", "NonMaximaSuppression3d"}


def test_all_exports_every_public_name():
    assert FUNCTIONS | CLASSES <= set(subpix_xp.__all__)
    for name in subpix_xp.__all__:
        assert hasattr(subpix_xp, name), name


@pytest.mark.parametrize("name", sorted(PAGE_SIGNATURES))
def test_signature_matches_page(name):
    obj = getattr(subpix_xp, name)
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = list(inspect.signature(target).parameters.values())
    if inspect.isclass(obj):
        params = params[1:]  # self
    ours = [(p.name, p.default) for p in params]
    assert ours == PAGE_SIGNATURES[name]


@pytest.mark.parametrize("name", ["NonMaximaSuppression2d", "NonMaximaSuppression3d"])
def test_nms_classes_take_kernel_size(name):
    params = list(inspect.signature(getattr(subpix_xp, name).__init__).parameters)
    assert params == ["self", "kernel_size"]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_classes_are_plain_callables_with_forward_and_repr(name):
    cls = getattr(subpix_xp, name)
    instance = (
        cls((3, 3))
        if name == "NonMaximaSuppression2d"
        else cls((3, 3, 3))
        if "Suppression3d" in name
        else cls()
    )
    assert callable(instance)
    assert instance.forward.__func__ is not None
    text = repr(instance)
    assert text.startswith(f"{name}(")
    for param in list(inspect.signature(cls.__init__).parameters)[1:]:
        assert f"{param}=" in text


def test_quad_interp_classes_accept_precomputed_mask():
    for cls in (subpix_xp.ConvQuadInterp3d, subpix_xp.IterativeQuadInterp3d, subpix_xp.AdaptiveQuadInterp3d):
        assert "precomputed_nms_mask" in inspect.signature(cls.__call__).parameters


def test_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", subpix_xp.__version__)


def test_class_works_as_kornia_scale_space_detector_subpix_module():
    torch = pytest.importorskip("torch")
    kornia_feature = pytest.importorskip("kornia.feature")
    from kornia.feature.responses import BlobDoG
    from kornia.geometry.transform import ScalePyramid

    torch.manual_seed(0)
    image = torch.rand(1, 1, 64, 64)
    image = torch.nn.functional.avg_pool2d(image, 5, 1, 2)
    ours = subpix_xp.ConvQuadInterp3d(strict_maxima_bonus=0.0)
    detector = kornia_feature.ScaleSpaceDetector(
        num_features=20,
        resp_module=BlobDoG(),
        subpix_module=ours,
        scale_pyr_module=ScalePyramid(3, 1.6, 16),
        scale_space_response=True,
        minima_are_also_good=True,
    )
    lafs, responses = detector(image)
    assert lafs.shape == (1, 20, 2, 3)
    assert torch.isfinite(lafs).all() and torch.isfinite(responses).all()
