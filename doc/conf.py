"""Sphinx configuration (placeholder until the documentation issue)."""

project = "skem"
extensions = ["sphinx.ext.autodoc"]
