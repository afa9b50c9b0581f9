"""Sphinx configuration of the course site (built by ``python docs/site/build.py``, ``make site``)."""

project = "From autoencoders to World Models"
author = "the course's authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
# The lessons arrive executed (build.py runs them once); the homework statements are not run.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "furo"
html_title = project
autodoc_member_order = "bysource"
autodoc_mock_imports = ["course_lib.solutions"]
suppress_warnings = ["myst.header", "misc.highlighting_failure", "myst.xref_missing"]
exclude_patterns = ["_build"]
