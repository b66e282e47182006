"""Sphinx configuration of the skem documentation.

Build with warnings as errors:  python -m sphinx -W -b html doc doc/_build/html
"""

import os
import sys

import skem

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "skem"
author = "the skem developers"
copyright = "2026, the skem developers"
release = version = skem.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": True, "inherited-members": True}


def skip_scikit_learn_members(app, what, name, obj, skip, options):
    """Leave out what scikit-learn's base classes define (documented there)."""
    module = getattr(obj, "__module__", None) or ""
    if module.startswith("sklearn") or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", skip_scikit_learn_members)


exclude_patterns = ["_build", "examples/README.txt"]
templates_path = []
html_theme = "alabaster"

# Mathematics rendered by a local copy of MathJax (its SVG output needs no
# font files), so the built pages read offline; the 'doc' extra installs it.
import mathjax  # noqa: E402  (django-static-mathjax: MathJax's files as a package)

_MATHJAX = os.path.join(os.path.dirname(mathjax.__file__), "static", "mathjax", "es5", "tex-svg.js")
html_static_path = [_MATHJAX]
mathjax_path = "tex-svg.js"

plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 90)]
# room for every label: the figures are laid out tightly
plot_rcparams = {"figure.autolayout": True}
plot_apply_rcparams = True

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
}
