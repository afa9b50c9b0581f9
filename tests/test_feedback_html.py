"""The feedback pages' math and paths (autograder.feedback_html), on notebooks built here and rendered
with nbgrader's own feedback template: fast, no grading. Pages of notebooks graded through nbgrader
are checked in tests/test_grading.py (no folder of the machine, math drawn by chromium offline)."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

from autograder.course import REPO
from autograder.feedback_html import FeedbackExporter, HideHostPaths, host_paths, latex_to_mathml, template_dirs

SITE = sysconfig.get_paths()["purelib"]


@pytest.mark.parametrize(
    ("latex", "shown"),
    [
        (r"q_\phi(z \mid x)", "q"),
        (r"\max(\mathrm{KL}_b,\ \text{kl\_tolerance} \cdot Z)", "kl_tolerance"),  # \_ in text, unescaped
        (r"z = \mu + \sigma \odot \varepsilon", "μ"),
    ],
)
def test_latex_becomes_mathml(latex, shown):
    """Is a formula of the course's notebooks written as a MathML element holding its symbols?"""
    math = latex_to_mathml(latex)
    assert math.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">')
    assert shown in math and "&#x" not in math and "\\" not in math


def test_a_students_latex_cannot_write_html():
    """Is markup in a student's formula shown as text, a link dropped, and LaTeX that does not parse
    shown as escaped code rather than stopping the page?"""
    math = latex_to_mathml(r"\text{<script>alert(1)</script>} < x")
    assert "<script>" not in math and "&lt;script&gt;alert(1)&lt;/script&gt;" in math
    assert "href" not in latex_to_mathml(r"\href{javascript:alert(1)}{x}")
    assert latex_to_mathml(r"<b>x^") == "<code class=latex>&lt;b&gt;x^</code>"


def _feedback_html(nb: nbformat.NotebookNode, course_root: Path) -> str:
    """``nb`` rendered as nbgrader's generate_feedback renders it with the course's configuration."""
    config = Config()
    import nbgrader

    config.HTMLExporter.template_name = "feedback"  # what nbgrader's GenerateFeedback sets, with its css
    config.HTMLExporter.extra_template_basedirs = template_dirs()
    css = Path(nbgrader.__file__).parent / "server_extensions/formgrader/static/node_modules/bootstrap/dist/css"
    config.HTMLExporter.extra_template_paths = [str(css)]
    exporter = FeedbackExporter(config=config)
    resources = {"nbgrader": {"notebook": "01", "score": 1.0, "max_score": 2.0, "late_penalty": 0.0}}
    exporter.register_preprocessor(HideHostPaths(), enabled=True)
    cwd = Path.cwd()
    try:
        os.chdir(course_root)  # nbgrader renders from the course root
        return exporter.from_notebook_node(nb, resources=resources)[0]
    finally:
        os.chdir(cwd)


def test_feedback_page_has_mathml_and_no_mathjax_script(tmp_path):
    """Does the feedback template write markdown math and a text/latex output as MathML, and load no
    MathJax (no script from a CDN, no TeX left to typeset)?"""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(r"The VAE draws $z \sim q_\phi(z \mid x)$ and minimises $$\beta\, \mathrm{KL}$$"),
        new_code_cell("Math(...)", outputs=[new_output("display_data", data={"text/latex": r"$\sigma^2$"})]),
    ]
    page = _feedback_html(nb, tmp_path)
    assert page.count("<math ") == 3 and 'display="block"' in page
    assert "<script" not in page and "MathJax" not in page and "cdnjs" not in page
    assert "$" not in page.split("</style>")[-1]


def test_outputs_name_no_folder_of_the_grading_machine(tmp_path):
    """Are the site-packages, the Python, the repository, the home, the temporary folder, a cell's file
    and the student's grading folder replaced in a warning, a traceback, an error and displayed text?"""
    root = tmp_path / "course"
    folder = root / "autograded" / "alice" / "hw1_vae"
    folder.mkdir(parents=True)
    warning = f"{SITE}/gymnasium/envs/classic_control/cartpole.py:215: UserWarning: WARN: step after done\n"
    frames = [
        f"\x1b[36mFile \x1b[39m\x1b[32m{SITE}/numpy/lib/_npyio_impl.py:454\x1b[39m, in load()",
        f"File {REPO}/course_lib/data.py:12, in sample_frames()",
        f"FileNotFoundError: '{folder}/data/x.npz'",
    ]
    nb = new_notebook()
    nb.cells = [
        new_code_cell(
            "x",
            outputs=[
                new_output(
                    "stream", name="stderr", text=warning + "/tmp/ipykernel_4242/1234567.py:2: UserWarning: w\n"
                ),
                new_output("error", ename="FileNotFoundError", evalue=f"'{folder}/data/x.npz'", traceback=frames),
                new_output("execute_result", data={"text/plain": f"PosixPath('{Path.home()}/.cache')"}),
                new_output("display_data", data={"text/plain": f"{sys.prefix}/bin/python in {root}"}),
            ],
        )
    ]
    page = _feedback_html(nb, root)
    for path in {SITE, sys.prefix, str(REPO), str(Path.home()), str(tmp_path), "/tmp/ipykernel_"}:
        assert path not in page, path
    for shown in (
        "&lt;site-packages&gt;/gymnasium/envs/classic_control/cartpole.py:215: UserWarning",
        "&lt;site-packages&gt;/numpy/lib/_npyio_impl.py:454",
        "&lt;course&gt;/course_lib/data.py:12",
        "&lt;cell&gt;:2: UserWarning",
        "FileNotFoundError: './data/x.npz'",
        "&lt;home&gt;/.cache",
        "&lt;python&gt;/bin/python in &lt;course root&gt;",
    ):
        assert shown in page, shown
    patterns = host_paths(root)
    assert patterns[0][1] == "."  # the student's folder before the course root
