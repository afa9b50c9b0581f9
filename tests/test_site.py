"""Do the lessons run top to bottom in the student kit's layout, and do they render into the course site?

Each lesson is executed once, at the quick budget (``COURSE_QUICK=1``), in the folder it has in its
homework's kit (``<homework>/lessons/``, :data:`autograder.release.LESSONS`); the executed notebooks
are then what the site shows (``docs/site/build.py``: Sphinx and MyST-NB, the homework statements as
nbgrader releases them, the API from the docstrings, the guides). The site is served on 127.0.0.1 and
opened in Debian's chromium: a lesson with its figures and the API page are screenshotted
(``$COURSE_ARTIFACTS/site/`` too when that is set).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import re
import shutil
import threading
from pathlib import Path

import nbformat
import pytest
from browser_helpers import launch_chromium

from autograder import release

ROOT = Path(__file__).resolve().parents[1]
LESSONS = [(assignment, path) for assignment in release.LESSONS for path in release.lessons(assignment)]
pytestmark = pytest.mark.slow(seconds=130)  # measured 104 s alone on an idle 2-core machine (320 s at a load of 8)


def _builder():
    spec = importlib.util.spec_from_file_location("site_build", ROOT / "docs" / "site" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every lesson run once in its kit's folder at the quick budget: ``name -> (notebook or None, error)``."""
    build = _builder()
    kits = tmp_path_factory.mktemp("kits")
    saved = {k: os.environ.get(k) for k in ("COURSE_QUICK", "OMP_NUM_THREADS", "PYTHONPATH", "MPLBACKEND")}
    os.environ.update({"COURSE_QUICK": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    results = {}
    try:
        for assignment, lesson in LESSONS:
            folder = kits / assignment / release.LESSONS_DIR
            try:
                nbformat.write(build.execute(lesson, folder, timeout=600), folder / lesson.name)
                results[lesson.stem] = (folder / lesson.name, None)
            except Exception as err:  # reported by the lesson's own test
                results[lesson.stem] = (None, f"{type(err).__name__}: {err}"[-3000:])
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return results


@pytest.mark.parametrize("lesson", [p.stem for _, p in LESSONS])
def test_lesson_runs_in_its_kit_folder(executed, lesson):
    """Does the lesson run top to bottom at the quick budget from ``<homework>/lessons/``, with no
    error output?"""
    path, error = executed[lesson]
    assert error is None, f"{lesson} raised while running:\n{error}"
    nb = nbformat.read(path, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]


@pytest.fixture(scope="module")
def site(executed, tmp_path_factory):
    """The site built from the executed lessons: its ``html`` folder."""
    if any(error for _, error in executed.values()):
        pytest.skip("a lesson did not run (its own test says why)")
    folder = tmp_path_factory.mktemp("executed")
    for lesson, (path, _) in executed.items():
        shutil.copy(path, folder / f"{lesson}.ipynb")
    out = tmp_path_factory.mktemp("site")
    saved = os.environ.get("COURSE_QUICK")
    os.environ["COURSE_QUICK"] = "1"  # the banner: numbers from the quick budget
    try:
        index = _builder().build(out, folder)
    finally:
        os.environ.pop("COURSE_QUICK") if saved is None else os.environ.__setitem__("COURSE_QUICK", saved)
    return index.parent


def test_site_holds_lessons_statements_api_and_guides(site):
    """Does the site hold every lesson with its figures, the homework statements without solutions or
    hidden tests, an API page with the library's docstrings, and the guides?"""
    for _, lesson in LESSONS:
        page = (site / "lessons" / f"{lesson.stem}.html").read_text()
        assert page.count("<img") >= 2, f"{lesson.stem}'s page shows {page.count('<img')} figures"
    statement = (site / "homework" / "hw1_vae" / "01_autoencoder_and_vae.html").read_text()
    assert "YOUR CODE HERE" in statement or "raise NotImplementedError" in statement
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "checks.a1_", "nn.ConvTranspose2d(h0, h0", "MARK SCHEME"):
        assert secret not in statement, f"the homework statement shows {secret!r}"
    for page in site.rglob("*.html"):  # offline: scripts, styles and fonts are the site's own
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text())
        assert not remote, f"{page.relative_to(site)} loads {remote}"
    assert (site / "_static" / "mathjax" / "MathJax.js").exists()
    api = (site / "api.html").read_text()
    for documented in ("preprocess_frame", "latent_usage", "check_own_environment", "Practice with instant feedback"):
        assert documented in api, f"the API page lacks {documented}"
    assert "solutions" not in api.split("course_lib.solutions")[0][-10:]  # no page for the reference answers
    assert (site / "guides" / "course.html").exists() and (site / "guides" / "students.html").exists()
    assert "quick budget" in (site / "index.html").read_text()


@contextlib.contextmanager
def _served(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _typeset(page) -> None:
    """Wait until the page's MathJax has typeset everything it queued."""
    page.wait_for_function("() => window.MathJax && window.MathJax.Hub")
    page.evaluate("() => new Promise(done => MathJax.Hub.Queue(done))")


def test_site_opens_in_chromium_with_its_figures(site, tmp_path):
    """Served on 127.0.0.1 and opened in Chromium with every other address blocked (a student offline),
    does a lesson show its figures (every image loaded), its printed outputs and its math typeset by the
    site's own MathJax, a homework statement its text without the rubrics, and the API page its
    functions? Screenshots of each are kept."""
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    outside = []
    with _served(site) as url, sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        page = chromium.new_page(viewport={"width": 1300, "height": 1000})

        def local_only(route):
            if route.request.url.startswith(url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", local_only)
        page.goto(f"{url}/lessons/02_vae_latent_space.html")
        _typeset(page)
        assert page.locator("article .MathJax").count() >= 50
        images = page.locator("article img")
        assert images.count() >= 5
        loaded = page.evaluate("() => [...document.querySelectorAll('article img')].map(i => i.naturalWidth)")
        assert all(w > 0 for w in loaded), loaded
        text = page.inner_text("article")
        assert "mean-image baseline" in text and "\\(" not in text  # no raw TeX left
        page.get_by_text("The evidence lower bound").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "site_lesson_02_math.png"))
        page.locator("article img").nth(1).scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "site_lesson_02.png"))
        page.goto(f"{url}/homework/hw1_vae/01_autoencoder_and_vae.html")
        _typeset(page)
        page.get_by_text("Graded by hand (2 points)").first.scroll_into_view_if_needed()
        assert "MARK SCHEME" not in page.inner_text("article") and "Rubric" not in page.inner_text("article")
        page.screenshot(path=str(shots / "site_homework_01.png"))
        page.goto(f"{url}/api.html")
        page.get_by_text("preprocess_frame").first.wait_for()
        page.screenshot(path=str(shots / "site_api.png"))
        page.goto(f"{url}/index.html")
        page.screenshot(path=str(shots / "site_index.png"))
        chromium.close()
    assert not outside, f"the site asked for outside resources: {sorted(set(outside))}"
    if os.environ.get("COURSE_ARTIFACTS"):
        dest = Path(os.environ["COURSE_ARTIFACTS"]) / "site"
        shutil.copytree(shots, dest, dirs_exist_ok=True)
    print(f"site screenshots in {shots}")


def test_a_progress_bar_shows_its_final_state_once():
    """Does a tqdm bar saved as a widget become a static bar with tqdm's own text (its percentage once)?"""
    state = {
        "box": {"model_name": "HBoxModel", "state": {"children": [f"IPY_MODEL_{c}" for c in ("left", "bar", "right")]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "MDN-RNN: 100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 1500.0, "max": 1500.0}},
        "right": {"model_name": "HTMLModel", "state": {"value": "&nbsp;1500/1500 [00:22&lt;00:00, 66.55it/s]"}},
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    output = nbformat.v4.new_output("display_data", data={_builder().WIDGET: {"model_id": "box"}, "text/plain": "x"})
    nb.cells.append(nbformat.v4.new_code_cell("for _ in tqdm(range(1500)): ...", outputs=[output]))
    data = _builder().final_progress(nb).cells[0].outputs[0].data
    assert data["text/plain"] == "MDN-RNN: 100%  1500/1500 [00:22&lt;00:00, 66.55it/s]"
    assert '<progress value="1500.0" max="1500.0">' in data["text/html"] and "widgets" not in nb.metadata
