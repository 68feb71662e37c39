"""Sphinx configuration: the guides in docs/ (Markdown, MyST) and an API reference from the docstrings.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not

import subpix_xp  # noqa: E402

project = "subpix_xp"
author = "The subpix_xp developers"
copyright = "the subpix_xp developers; Apache-2.0"
release = subpix_xp.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: GitHub-style heading anchors, so the guides' `page.md#section` links work on GitHub and here.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
# detector.md starts at a level-2 heading (it reads as a README section on GitHub); that is fine here.
suppress_warnings = ["myst.header"]

# API reference: the public names, their numpydoc docstrings and signatures.
autosummary_generate = False
autodoc_default_options = {"members": False, "undoc-members": False}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

intersphinx_mapping: dict[str, tuple[str, None]] = {}


def _check_api_reference_is_complete() -> None:
    """Every public name of subpix_xp has an entry in api.md: a new name without one fails the build."""
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = {line.split("::", 1)[1].strip() for line in page.splitlines() if line.startswith(".. auto")}
    missing = sorted(set(subpix_xp.__all__) - documented)
    if missing:
        raise RuntimeError(f"docs/api.md: expected an autodoc entry for every public name; missing {missing}")


_check_api_reference_is_complete()

html_theme = "alabaster"
html_title = f"subpix_xp {release}"
html_static_path: list[str] = []
