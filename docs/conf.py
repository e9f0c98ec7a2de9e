"""Sphinx configuration for the xflipnslide documentation."""

from __future__ import annotations

import os
import sys

import sphinx_autosummary_accessors

import xflipnslide

project = "xflipnslide"
author = "xflipnslide developers"
copyright = "2026, xflipnslide developers"
release = version = xflipnslide.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autosummary_accessors",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True

html_theme = "pydata_sphinx_theme"
html_title = "xflipnslide"
html_theme_options = {"navigation_with_keys": False}
nitpicky = False

# Figures are drawn from the real sample scene at every build, never stale.
sys.path.insert(0, os.path.dirname(__file__))
import figures  # noqa: E402

figures.main()
