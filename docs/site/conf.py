"""Sphinx configuration of the course site (built by ``python docs/site/build.py``, ``make site``).

The math is typeset in the browser by MathJax 2.7 from the site's own ``_static/mathjax/`` (copied
by build.py from the ``jupyter-server-mathjax`` package, pinned in pyproject.toml), so the pages
read offline: nothing is loaded from outside the site.
"""

project = "From autoencoders to World Models"
author = "the course's authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
# The lessons arrive executed (build.py runs them once); the homework statements are not run.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "furo"
html_title = project
html_static_path = ["_static"]
autodoc_member_order = "bysource"
autodoc_mock_imports = ["course_lib.solutions"]
suppress_warnings = ["myst.header", "misc.highlighting_failure", "myst.xref_missing"]
exclude_patterns = ["_build"]

# MathJax 2 from _static/mathjax (a relative path is read from _static), with the one combined
# configuration the package ships. MyST marks each page tex2jax_ignore/mathjax_ignore and its math
# "math": MathJax typesets those elements only. The package ships the STIX-Web fonts, not MathJax's
# TeX fonts.
mathjax_path = "mathjax/MathJax.js"
mathjax2_config = {
    "config": ["TeX-AMS-MML_HTMLorMML-full.js"],
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": False,
        "ignoreClass": "tex2jax_ignore|mathjax_ignore",
        "processClass": "tex2jax_process|mathjax_process|math|output_area",
    },
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
    "showMathMenu": False,
    "messageStyle": "none",
}
