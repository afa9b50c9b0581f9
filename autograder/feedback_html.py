"""What the feedback pages show a student: math rendered when the page is made, nothing of the grading machine.

nbgrader's ``generate_feedback`` renders each autograded notebook with nbconvert's ``HTMLExporter`` and
nbgrader's ``feedback`` template, which leaves the LaTeX of markdown cells as ``$...$`` and loads
MathJax from a CDN to typeset it in the browser: offline (an exam room, a lab without internet) the
student sees raw LaTeX. Here the math is converted to MathML as the page is written
(:class:`FeedbackExporter`, with ``latex2mathml``, a pure-Python converter pinned in pyproject.toml),
which browsers render themselves (MathML Core: Chromium 109+, Firefox, Safari): no script, no
download. The template's MathJax script is left out: ``templates/feedback/mathjax.html.j2`` shadows
nbconvert's ``mathjax`` macro, which nbgrader's ``feedback`` template calls (the rest of the template
is nbgrader's). A ``text/latex`` output (IPython's ``Math``, sympy) gets a MathML ``text/html`` beside
it (:class:`HideHostPaths` does it as it goes over the outputs), which the page shows first.

The outputs of a notebook also carry paths of the machine that graded it: a library's warning names
its file (``/srv/venv/lib/python3.11/site-packages/gymnasium/...: UserWarning``), a traceback its
frames, a student's ``os.getcwd()`` the grading folder. :class:`HideHostPaths` rewrites them in every
output before the page is made: the site-packages folders become ``<site-packages>``, the Python
installation ``<python>``, the course's repository ``<course>``, the student's grading folder ``.``,
the course root ``<course root>``, the home and temporary folders ``<home>`` and ``<tmp>``, a notebook
cell's file ``<cell>``.

Configured in ``assignments/nbgrader_config.py``. Source: nbconvert's ``HTMLExporter.markdown2html``
and its mistune renderer (``nbconvert.filters.markdown_mistune``), whose math hooks are overridden here.
"""

from __future__ import annotations

import html
import re
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import tostring

from jinja2 import pass_context
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbgrader.preprocessors import NbGraderPreprocessor

from autograder.course import REPO

#: Our template folders: ``feedback/mathjax.html.j2``, found before nbconvert's (:func:`template_dirs`).
TEMPLATES = Path(__file__).with_name("templates")
#: TeX's escaped characters in text mode (``\_``, ``\%``...), which the converter leaves escaped.
_TEXT_ESCAPE = re.compile(r"\\([_%&#${}])")
#: MathML attributes that are never written (a link in a formula would be a link a student controls).
_DROPPED_ATTRIBUTES = ("href",)


def template_dirs() -> list[str]:
    """The template folders for ``HTMLExporter.extra_template_basedirs``: ours (its ``feedback`` folder
    holds only the ``mathjax`` macro), then nbgrader's (its ``feedback`` template, which nbgrader sets
    unless this setting is given)."""
    import nbgrader

    nbgrader_templates = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    return [str(TEMPLATES), str(nbgrader_templates)]


def latex_to_mathml(latex: str, display: str = "inline") -> str:
    """``latex`` as a MathML ``<math>`` element, its text escaped (a formula is a student's text).

    Args:
        latex: the formula, without its ``$`` delimiters.
        display: ``"inline"`` or ``"block"``.

    Returns:
        The ``<math>`` element; LaTeX the converter cannot read comes back as escaped ``<code>``, so
        that a page is always written.
    """
    from latex2mathml.converter import convert_to_element

    try:
        math = convert_to_element(latex, display=display)
    except Exception:  # malformed LaTeX in a student's answer: shown as it is
        return f"<code class=latex>{html.escape(latex)}</code>"
    for element in math.iter():
        # the converter keeps symbols as character references in the text ("&#x003D5;"), and \text{...}'s
        # escapes as they are ("kl\_tolerance")
        if element.text and element.tag == "mtext":
            element.text = _TEXT_ESCAPE.sub(r"\1", element.text)
        element.text = html.unescape(element.text) if element.text else element.text
        element.tail = html.unescape(element.tail) if element.tail else element.tail
        for name in _DROPPED_ATTRIBUTES:
            element.attrib.pop(name, None)
    return tostring(math, encoding="unicode", short_empty_elements=False)


class MathMLRenderer(IPythonRenderer):
    """nbconvert's markdown renderer with its math written as MathML instead of left for MathJax."""

    def block_math(self, body: str) -> str:
        """``$$...$$`` and ``\\[...\\]``."""
        return latex_to_mathml(body, "block")

    def inline_math(self, body: str) -> str:
        """``$...$`` and ``\\(...\\)``."""
        return latex_to_mathml(body, "inline")

    def latex_environment(self, name: str, body: str) -> str:
        """``\\begin{name}...\\end{name}``."""
        return latex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter with markdown math rendered to MathML (:class:`MathMLRenderer`)."""

    @pass_context
    def markdown2html(self, context: Any, source: str) -> str:  # as HTMLExporter's, with our renderer
        """Markdown to HTML, math as MathML."""
        cell = context.get("cell", {})
        renderer = MathMLRenderer(
            escape=False,
            attachments=cell.get("attachments", {}),
            embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text,
            exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options,
        )
        return MarkdownWithMath(renderer=renderer).render(source)


def output_latex(text: str) -> str:
    """A ``text/latex`` output (``$...$`` or ``$$...$$``, as IPython's ``Math`` and sympy write it) as MathML."""
    text = text.strip()
    for left, right, display in (("$$", "$$", "block"), ("\\[", "\\]", "block"), ("$", "$", "inline")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            return latex_to_mathml(text[len(left) : -len(right)], display)
    return latex_to_mathml(text, "block")


# ---------------------------------------------------------------- the grading machine's paths
def host_paths(course_root: Path | None = None) -> list[tuple[re.Pattern[str], str]]:
    """The grading machine's folders, as ``(pattern, what the page says instead)``: the students' grading
    folders first, then the others longest first (a folder inside another is replaced before it).

    Args:
        course_root: the course root nbgrader runs in (its ``autograded/<student>/<assignment>``
            folders are the students' grading folders, shown as ``.``).
    """
    named: dict[str, str] = {}

    def add(path: str | Path | None, name: str) -> None:
        if path and str(path) not in ("/", "") and str(path) not in named:
            named[str(Path(path))] = name
            resolved = str(Path(path).resolve())
            named.setdefault(resolved, name)

    students: list[tuple[re.Pattern[str], str]] = []
    if course_root is not None:
        for root in dict.fromkeys([str(Path(course_root)), str(Path(course_root).resolve())]):
            folder = re.escape(root) + r"/autograded/[^/\s'\"]+/[^/\s'\"]+(?![\w.-])"
            students.append((re.compile(folder), "."))
        add(course_root, "<course root>")
    for key in ("purelib", "platlib"):
        add(sysconfig.get_paths().get(key), "<site-packages>")
    add(sysconfig.get_paths().get("stdlib"), "<python>")
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        add(prefix, "<python>")
    add(REPO, "<course>")
    add(Path.home(), "<home>")
    add(tempfile.gettempdir(), "<tmp>")
    patterns = students + [
        (re.compile(re.escape(path) + r"(?![\w.-])"), name)
        for path, name in sorted(named.items(), key=lambda kv: -len(kv[0]))
    ]
    # the file IPython gives a cell's code (where a warning raised in a cell points)
    patterns.append((re.compile(r"(?:<tmp>|/tmp)/ipykernel_\d+/\d+\.py"), "<cell>"))
    return patterns


def hide_paths(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str:
    """``text`` with each folder of ``patterns`` (:func:`host_paths`) replaced by its name."""
    for pattern, name in patterns:
        text = pattern.sub(name, text)
    return text


class HideHostPaths(NbGraderPreprocessor):
    """Replace the grading machine's folders (:func:`host_paths`) in every output of every cell:
    streams, errors (name, message, traceback) and the text of displayed data; and give a
    ``text/latex`` output a MathML ``text/html`` (:func:`output_latex`)."""

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        """Compute the folders once per notebook (nbgrader runs with the course root as its folder)."""
        self._patterns = host_paths(Path.cwd())
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: Any, resources: dict, cell_index: int) -> tuple[Any, dict]:
        """Rewrite the outputs of one cell."""
        patterns = getattr(self, "_patterns", None) or host_paths(Path.cwd())
        for output in cell.get("outputs", []):
            if "text" in output and isinstance(output["text"], str):
                output["text"] = hide_paths(output["text"], patterns)
            if output.get("output_type") == "error":
                output["evalue"] = hide_paths(str(output.get("evalue", "")), patterns)
                output["traceback"] = [hide_paths(line, patterns) for line in output.get("traceback", [])]
            data = output.get("data", {})
            if isinstance(data.get("text/latex"), str) and "text/html" not in data:
                data["text/html"] = output_latex(data["text/latex"])
            for mime, value in list(data.items()):
                if mime.startswith("text/") or mime == "application/json":
                    if isinstance(value, str):
                        data[mime] = hide_paths(value, patterns)
                    elif isinstance(value, list):
                        data[mime] = [hide_paths(v, patterns) if isinstance(v, str) else v for v in value]
        return cell, resources
