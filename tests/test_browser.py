"""Students' JupyterLab in a real browser (Debian's chromium driven by playwright), end to end.

Scenario A, JupyterHub: the instructor releases hw1 to a real exchange folder; a student whose lab
was set up with ``python -m course_lib.lab_setup --hub`` finds it in *Nbgrader › Assignments*,
fetches it, pastes the reference answers into notebook 01, validates and submits; ``course watch``
grades the submission in the sandbox and releases its feedback, which the student fetches in the
same panel and opens.

Scenario B, the student kit: a lab set up with ``lab_setup --kit`` opens the released notebook with
no error dialog and no instructor tool anywhere, Validate works without an exchange, and the latent
explorer's image changes when a slider moves.

The tests run in file order: scenario B runs while ``course watch`` grades scenario A's submission,
and the last test fetches its feedback. Every step is screenshotted into a folder listed at the end
of the run (and copied to ``$COURSE_ARTIFACTS/browser/`` when that is set); a failing step says
which step, what the page and its dialogs showed, and the end of the server's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
from browser_helpers import (
    TIMEOUT_MS,
    LabServer,
    Steps,
    StudentHome,
    answers,
    cell_index,
    image_pixels,
    launch_chromium,
    menu_labels,
    notebook_panel,
    open_lab,
    paste_into_cell,
    registered_commands,
    release_once,
    run_all_cells,
    sidebar_titles,
    tail,
)

from autograder import course, exchange

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need the playwright package (`make install`)"
)
pytestmark = pytest.mark.slow(seconds=160)

ASSIGNMENT = "hw1_vae"
COURSE = "vae101"
NB1 = "01_autoencoder_and_vae.ipynb"
#: What a student must never see: nbgrader's instructor tools, by their labels in the lab.
INSTRUCTOR_WORDS = ("Formgrader", "Manage Assignments", "Create Assignment")
SUCCESS = "Success! Your notebook passes all the tests."
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """hw1 released (notebooks and student kit) and published to an exchange folder."""
    tmp = tmp_path_factory.mktemp("browser")
    paths = release_once(tmp_path_factory, ASSIGNMENT)
    exchange.release_assignment(ASSIGNMENT, paths["root"], tmp / "exchange", COURSE)
    return {"tmp": tmp, "exchange": tmp / "exchange", **paths}


@pytest.fixture(scope="module")
def browser(released, request):
    """Debian's chromium; at the end of the module, the list of screenshots and step times."""
    done: list[Steps] = []
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield SimpleNamespace(chromium=chromium, folder=released["tmp"] / "screenshots", done=done)
        chromium.close()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not done:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\nbrowser screenshots in {released['tmp'] / 'screenshots'}:")
        for path, what in [shot for steps in done for shot in steps.taken]:
            reporter.write_line(f"  {path.name}: {what}")
        seconds = ", ".join(f"{name} {s:.0f} s" for steps in done for name, s in steps.seconds.items())
        reporter.write_line(f"browser steps: {seconds}")


def _page(browser: SimpleNamespace, server: LabServer, prefix: str) -> tuple:
    page = browser.chromium.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    steps = Steps(page, browser.folder, [server], prefix)
    browser.done.append(steps)
    return page, steps


@pytest.fixture(scope="module")
def hub(released, browser):
    """Scenario A's student ``alice`` (hub set-up, her own lab server and browser page) and the
    instructor's ``course watch`` on the exchange, all running for the whole module."""
    tmp, exchange_dir = released["tmp"], released["exchange"]
    cmd = [sys.executable, "-m", "autograder.cli", "watch", ASSIGNMENT, "--out", str(tmp / "watch")]
    cmd += ["--exchange", str(exchange_dir), "--course-id", COURSE, "--interval", "1", "--cell-timeout", "120"]
    with (tmp / "watch-stdout.log").open("w") as log:  # it prepares its course root while alice works
        watcher = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    home = StudentHome(tmp / "homes" / "alice")
    server = LabServer(home, "alice")
    try:
        said = home.lab_setup("--hub", "--exchange", str(exchange_dir), "--course-id", COURSE, "--student", "alice")
        server.start()
        page, steps = _page(browser, server, "hub")
        yield SimpleNamespace(
            tmp=tmp, home=home, server=server, page=page, steps=steps, watcher=watcher, said=said, submitted=False
        )
    finally:
        server.stop()
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(timeout=60)


def _scores(source: Path) -> tuple[float, float]:
    """(autograded points, all points) of a source notebook: what a correct submission's feedback shows
    before the written answers are graded by hand."""
    auto = total = 0.0
    for cell in nbformat.read(source, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            total += meta["points"]
            auto += meta["points"] if cell.cell_type == "code" else 0
    return auto, total


def _sources(notebook: Path, where: dict[str, int], grade_ids: dict[str, str]) -> dict[str, str]:
    """``grade_id -> source`` of some cells of a notebook file; empty while the server is writing it."""
    try:
        cells = nbformat.read(notebook, as_version=4).cells
    except (OSError, ValueError):  # nbformat's NotJSONError is a ValueError: a file half written
        return {}
    return {g: cells[where[g]].source for g in grade_ids}


def _wait_graded(hub: SimpleNamespace, student: str, timeout: float = 480) -> dict:
    """The watcher's ledger entry of ``student``'s submission, once graded and logged as done.

    Raises:
        AssertionError: if the watcher exits or does not grade it in ``timeout`` seconds (with its log).
    """
    ledger = hub.tmp / "watch" / "watch.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = hub.tmp / "watch" / "watch.log"
        done = log.exists() and f"{student}: submission of" in log.read_text()
        if done and ledger.exists():
            latest = json.loads(ledger.read_text()).get("latest", {})
            if student in latest:
                return latest[student]
        if hub.watcher.poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(
        f"course watch did not grade {student}'s submission in {timeout:.0f} s (exit status {hub.watcher.poll()}):\n"
        f"{tail(hub.tmp / 'watch-stdout.log')}"
    )


def test_hub_student_fetches_validates_and_submits(hub):
    """Does a hub student see hw1 in the Assignments panel, fetch it, pass Validate with the correct
    answers pasted into notebook 01, and submit it, with no instructor tool in the lab?"""
    page, steps, home = hub.page, hub.steps, hub.home
    assert "nbgrader_config.py" in hub.said, hub.said
    assert hub.server.get("formgrader") == 404, "the formgrader's server extension is still on"
    with steps.step("open the lab"):
        open_lab(page, hub.server)
        nbgrader = sorted(registered_commands(page, "nbgrader:"))
        assert nbgrader == ["nbgrader:open-assignment-list", "nbgrader:open-course-list"], nbgrader

    with steps.step("no instructor tools"):
        labels = menu_labels(page)
        shown = [w for items in labels.values() for w in items if any(x in w for x in INSTRUCTOR_WORDS)]
        assert not shown, f"instructor tools in the menus: {shown} ({labels})"
        assert labels.get("Nbgrader") == ["Assignment List", "Course List"], labels
        sidebars = sidebar_titles(page)
        assert not [t for t in sidebars if any(x in t for x in INSTRUCTOR_WORDS)], sidebars
        page.get_by_role("menuitem", name="Nbgrader").click()
        page.locator(".lm-Menu").last.wait_for()
        steps.shot(
            "nbgrader_menu", "the Nbgrader menu of a hub student: Assignment List and Course List, no Formgrader"
        )
        page.keyboard.press("Escape")

    with steps.step("open the Assignments panel"):
        page.get_by_role("menuitem", name="Nbgrader").click()
        page.get_by_role("menuitem", name="Assignment List").click()
        released_item = page.locator("#released_assignments_list .list_item", has_text=ASSIGNMENT)
        released_item.wait_for()
        assert COURSE in released_item.inner_text()
        steps.shot("assignments_panel", "Nbgrader › Assignments lists hw1_vae (course vae101) with Fetch")

    with steps.step("fetch hw1"):
        released_item.get_by_role("button", name="Fetch").click()
        fetched = page.locator("#fetched_assignments_list .list_item", has_text=ASSIGNMENT).first
        fetched.wait_for()
        assert (home.path / ASSIGNMENT / NB1).exists(), "Fetch did not bring the notebooks into the home"
        fetched.locator("a.assignment-notebooks-link").click()
        page.get_by_role("link", name=NB1.removesuffix(".ipynb")).click()
        notebook = notebook_panel(page, NB1)
        cells = notebook.locator(".jp-Notebook .jp-Cell")

    saved = home.path / ASSIGNMENT / NB1
    reference = answers(course.source_dir(ASSIGNMENT) / NB1)
    where = cell_index(saved)
    with steps.step("paste the answers"):
        released_cells = nbformat.read(saved, as_version=4).cells
        sync_api.expect(cells).to_have_count(len(released_cells), timeout=TIMEOUT_MS)  # the whole notebook is drawn
        todo = dict(reference)
        for _attempt in range(2):  # a paste the lab lost (a busy machine) is pasted once more
            for grade_id, text in todo.items():
                markdown = released_cells[where[grade_id]].cell_type == "markdown"
                paste_into_cell(page, cells.nth(where[grade_id]), text, markdown=markdown)
            page.keyboard.press("ControlOrMeta+s")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = _sources(saved, where, reference)
                todo = {g: t for g, t in reference.items() if got.get(g) != t}
                if not todo:
                    break
                time.sleep(0.5)
            if not todo:
                break
        assert not todo, (
            f"the saved notebook does not hold these pasted answers: { {g: got.get(g, '')[:300] for g in todo} }"
        )
        cells.nth(where["a2_forward"]).scroll_into_view_if_needed()
        steps.shot("answers_pasted", "notebook 01 with the reference answers pasted into the answer cells")

    with steps.step("validate"):
        notebook.locator(".validate-button").click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=420_000)  # Validate runs the whole notebook, at its quick budget
        text = dialog.inner_text()
        assert SUCCESS in text, f"Validate did not succeed:\n{text[:3000]}"
        steps.shot("validate_success", f"Validate's dialog: '{SUCCESS}'")
        dialog.get_by_role("button", name="Ok").click()

    # Grading notebook 01 alone is quicker; the student's other notebooks are reported missing.
    for other in (home.path / ASSIGNMENT).glob("*.ipynb"):
        if other.name != NB1:
            other.unlink()
    with steps.step("submit"):
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Assignments").click()
        fetched.get_by_role("button", name="Submit").click()
        submitted = page.locator("#submitted_assignments_list .list_item", has_text=ASSIGNMENT).first
        submitted.get_by_role("button", name="Fetch Feedback").wait_for()
        inbound = list((hub.tmp / "exchange" / COURSE / "inbound").glob(f"alice+{ASSIGNMENT}+*"))
        assert len(inbound) == 1, f"expected alice's one submission in the exchange, found {inbound}"
        steps.shot("submitted", "hw1_vae under Submitted assignments, with its timestamp and Fetch Feedback")
    hub.submitted = True


EXPLORER_CELLS = [
    "import torch\n"
    "from course_lib.data import sample_frames\n"
    "from course_lib.explorer import LatentExplorer\n"
    "from course_lib.models import SmallVAE",
    'torch.manual_seed(0)\nframes = sample_frames("CartPole-v1", 48, seed=0, progress=False)  # uint8 (48, 64, 64, 3)',
    "LatentExplorer(SmallVAE(z_size=4, width=8), frames)",
]


def test_kit_student_sees_no_instructor_tools_and_the_explorer_moves(released, browser):
    """Does a kit student's lab open the released notebook with no error dialog, no Assignments panel
    and no instructor tool, keep a working Validate, and update the latent explorer's image when a
    slider moves?"""
    home = StudentHome(released["tmp"] / "homes" / "kit")
    home.lab_setup("--kit")
    assert "Exchange" not in (home.config / "nbgrader_config.py").read_text()
    with zipfile.ZipFile(released["kit"]) as kit:  # the kit unzipped in the student's home
        kit.extractall(home.path, [n for n in kit.namelist() if n.endswith(".ipynb")])
    explorer = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in EXPLORER_CELLS])
    explorer.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(explorer, home.path / "explorer.ipynb")

    with LabServer(home, "kit") as server:
        for path in ("formgrader", f"assignments?course_id={COURSE}", "formgraders"):
            assert server.get(path) == 404, f"/{path} answers: its nbgrader server extension is still on"
        page, steps = _page(browser, server, "kit")
        with steps.step("open the released notebook"):
            open_lab(page, server, f"lab/tree/{ASSIGNMENT}/{NB1}")
            notebook = notebook_panel(page, NB1)
            time.sleep(2)  # time for a late error dialog to appear
            assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").all_inner_texts()
            body = page.locator("body").inner_text()
            for error in ("Error fetching courses", "exchange directory does not exist"):
                assert error not in body, error
            assert registered_commands(page, "nbgrader:") == []
            assert notebook.locator(".validate-button").is_visible()
            steps.shot("notebook", "the released notebook 01 in a kit lab: Validate in its toolbar, no dialog")

        with steps.step("no instructor tools or Assignments panel"):
            labels = menu_labels(page)
            assert "Nbgrader" not in labels, labels
            unwanted = (*INSTRUCTOR_WORDS, "Assignment List", "Course List")
            shown = [w for items in labels.values() for w in items if any(x in w for x in unwanted)]
            assert not shown, f"nbgrader tools in the menus: {shown}"
            sidebars = sidebar_titles(page)
            assert not [t for t in sidebars if any(x in t for x in unwanted)], sidebars
            page.locator(".lm-MenuBar-item", has_text="View").first.click()
            steps.shot("menus", "the kit lab with its View menu open: no Nbgrader menu in the menu bar")
            page.keyboard.press("Escape")

        with steps.step("validate without an exchange"):
            notebook.locator(".validate-button").click()
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for(timeout=420_000)
            text = dialog.inner_text()
            assert "Validation Results" in text and "failed" in text, text[:2000]  # nothing answered yet
            assert "Cannot check version" not in text and "Version Mismatch" not in text, text[:2000]
            steps.shot("validate", "Validate in the kit lab: the unanswered notebook's failing cells listed")
            dialog.get_by_role("button", name="Ok").click()

        with steps.step("run the latent explorer"):
            open_lab(page, server, "lab/tree/explorer.ipynb")
            notebook = notebook_panel(page, "explorer.ipynb")
            run_all_cells(page, notebook)
            image = page.locator("img.course-explorer-image").first
            image.wait_for(timeout=240_000)
            before, before_pixels = image.get_attribute("src"), image_pixels(image)
            image.scroll_into_view_if_needed()
            steps.shot("explorer_before", "the latent explorer: frame A, its decoding, frame B, four sliders")

        with steps.step("move a slider"):
            handle = page.locator(".course-explorer-slider .noUi-handle").first
            handle.focus()
            page.keyboard.press("End")  # the slider's maximum
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and image.get_attribute("src") == before:
                time.sleep(0.25)
            readout = page.locator(".course-explorer-slider .widget-readout").first.inner_text()
            assert image.get_attribute("src") != before, f"the decoded image did not change (slider at {readout})"
            assert float(readout) > 0, readout
            change = np.abs(image_pixels(image).astype(int) - before_pixels.astype(int))  # (256, 256, 3)
            assert change.max() > 0, "the new image shows the same pixels"
            steps.shot(
                "explorer_after",
                f"the explorer after its first slider moved to {readout}: the decoding changed "
                f"(by up to {change.max()}/255 per pixel value: the model is untrained)",
            )


def test_hub_student_fetches_feedback_with_the_score(hub):
    """Does ``course watch`` grade the hub student's submission, and does Fetch Feedback in the
    Assignments panel bring feedback whose page shows notebook 01's autograded score?"""
    if not hub.submitted:
        pytest.fail("nothing to grade: test_hub_student_fetches_validates_and_submits did not submit")
    page, steps = hub.page, hub.steps
    source = course.source_dir(ASSIGNMENT) / NB1
    auto, total = _scores(source)
    with steps.step("course watch grades it"):
        graded = _wait_graded(hub, "alice")
        assert graded["score"] == auto, graded  # every autograded point of notebook 01
        log = (hub.tmp / "watch" / "watch.log").read_text()
        assert "feedback released" in log, log

    with steps.step("fetch the feedback"):
        submitted = page.locator("#submitted_assignments_list .list_item", has_text=ASSIGNMENT).first
        submitted.get_by_role("button", name="Fetch Feedback").click()
        view = page.locator("#submitted_assignments_list").get_by_text("(view feedback)")
        view.wait_for()
        steps.shot("feedback_fetched", "Submitted assignments: hw1_vae with '(view feedback)' after Fetch Feedback")

    with steps.step("open the feedback"):
        view.click()
        page.locator(".jp-DirListing-item", has_text=NB1.replace(".ipynb", ".html")).dblclick()
        heading = page.frame_locator(".jp-HTMLViewer iframe").locator("h4", has_text="Score:").first
        heading.wait_for()
        expected = f"{NB1.removesuffix('.ipynb')} (Score: {auto:.1f} / {total:.1f})"
        assert heading.inner_text().strip() == expected, heading.inner_text()
        steps.shot("feedback_page", f"the feedback page in the lab, headed '{expected}'")
