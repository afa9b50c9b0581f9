"""Attacks on the grader's own side by students who have read its code: links and special files in a
submission, report lines forged from file names and error messages, code that once crashed the scan,
outputs and notebooks too large to hold. One class graded through real nbgrader in the sandbox, with an
honest student in the same run, who must keep full marks; every attacker must earn nothing, be named
in the report, and the run must finish.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from accounts import SECOND_GRADER, user

from autograder import course, gradebook, pipeline
from autograder.budgets import Budgets
from autograder.submissions import replace_answer

pytestmark = pytest.mark.slow(seconds=240)
ASSIGNMENT = "hw1_vae"
NB5 = "05_other_environment.ipynb"
SOURCE = course.source_dir(ASSIGNMENT) / NB5
#: Images of about 9 MB each (random pixels do not compress), displayed by an answer cell.
BIG_IMAGES = """
import io
import numpy as np
from PIL import Image
from IPython.display import Image as Shown, display
for seed in range(3):
    pixels = np.random.default_rng(seed).integers(0, 256, (1800, 1800, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    display(Shown(data=buffer.getvalue()))
raise NotImplementedError()
"""
FORGED = "honest: tampering suspected, for review: honest"


def _student(subs: Path, name: str) -> Path:
    (subs / name).mkdir(parents=True, exist_ok=True)
    return subs / name / NB5


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    out = tmp_path_factory.mktemp("attacks")
    subs = out / "submissions"
    _student(subs, "honest").write_bytes(SOURCE.read_bytes())
    # links and special files: nothing the grader reads for the student
    _student(subs, "links_to_classmate").symlink_to(subs / "honest" / NB5)
    (subs / "folder_link").symlink_to(subs / "honest", target_is_directory=True)
    os.mkfifo(_student(subs, "fifo"))
    other = user(SECOND_GRADER)  # a file of another owner, hard-linked into a submission
    theirs = out / "theirs.ipynb"
    theirs.write_bytes(SOURCE.read_bytes())
    os.chown(theirs, other.uid, other.gid)
    os.link(theirs, _student(subs, "hard_link"))
    # report lines forged from a file name and from an error message
    path = _student(subs, "newline_name")
    path.write_bytes(SOURCE.read_bytes())
    replace_answer(path, "a5_collect_other_frames", "raise NotImplementedError()")
    (subs / "newline_name" / f"notes\n{FORGED}.ipynb").write_text("{}")
    path = _student(subs, "newline_error")
    path.write_bytes(SOURCE.read_bytes())
    replace_answer(path, "a5_collect_other_frames", f"raise PermissionError({chr(10) + FORGED!r})")
    # code that once made the scan raise RecursionError for the whole class: harmless, in a correct answer
    path = _student(subs, "long_sum")
    path.write_bytes(SOURCE.read_bytes())
    answer = next(
        c.source for c in nbformat.read(SOURCE, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "a5_collect_other_frames"
    )
    replace_answer(path, "a5_collect_other_frames", "total = " + " + ".join(["1"] * 600) + "\n" + answer)
    # costs: outputs too large to keep, a notebook too large to read
    path = _student(subs, "big_images")
    path.write_bytes(SOURCE.read_bytes())
    replace_answer(path, "a5_collect_other_frames", BIG_IMAGES)
    nb = nbformat.read(SOURCE, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("x" * (Budgets().notebook_bytes + 1)))
    nbformat.write(nb, _student(subs, "big_notebook"))
    start = time.perf_counter()
    reports = pipeline.autograde(ASSIGNMENT, subs, out / "grades", cell_timeout=60, submission_timeout=300, workers=2)
    return {
        "out": out / "grades",
        "reports": {r.student_id: r for r in reports},
        "scores": gradebook.activity_scores(out / "grades" / "cells.csv"),
        "seconds": time.perf_counter() - start,
    }


ATTACKERS = {
    "links_to_classmate": "is a symbolic link; it was refused, not read",
    "folder_link": "folder_link is a symbolic link; it was refused, not read",
    "fifo": "is a FIFO (named pipe); it was refused, not read",
    "hard_link": "is a hard link to a file of another owner; it was refused, not read",
    "newline_name": "ignored unexpected notebooks: notes\\nhonest: tampering suspected",
    "newline_error": "was refused a file (\\nhonest: tampering suspected",
    "big_images": "produced an output of",
    "big_notebook": "MB limit; it was refused, not read",
}


def test_the_honest_student_keeps_full_marks(attacked):
    """Is the honest student graded as usual beside every attack?"""
    assert attacked["scores"]["honest"]["a5"] == (6.0, 6.0)


@pytest.mark.parametrize("student", sorted(ATTACKERS))
def test_each_attack_earns_nothing_and_is_named(attacked, student):
    """Does each attacker earn no point, with its cause on its own line of report.txt?"""
    assert attacked["scores"][student]["a5"][0] == 0, attacked["scores"][student]
    lines = (attacked["out"] / "report.txt").read_text().splitlines()
    (line,) = [line for line in lines if line.startswith(f"{student}: ")]
    assert ATTACKERS[student] in line, line


def test_a_long_sum_in_an_answer_fails_nobody(attacked):
    """Is a correct answer holding a sum of 600 terms (once a RecursionError of the scan that stopped the
    whole class) scanned and graded like any other: full marks, and nothing for review?"""
    assert attacked["scores"]["long_sum"]["a5"] == (6.0, 6.0)
    assert not any(p.for_review for p in attacked["reports"]["long_sum"].problems)


def test_no_line_of_the_report_poses_as_another_student(attacked):
    """Does every line of report.txt belong to one student (or is the header), so that the forged
    'honest: tampering suspected' never starts a line, and is the honest student not for review?"""
    lines = (attacked["out"] / "report.txt").read_text().splitlines()
    students = set(attacked["reports"])
    assert lines[0].startswith("for review: ") and "honest" not in re.split(r",\s*|:\s*", lines[0])
    assert all(line.split(": ", 1)[0] in students for line in lines[1:]), lines
    assert sum(line.startswith("honest: ") for line in lines) == 1


def test_outputs_over_the_budget_never_reach_the_feedback(attacked):
    """Are the big images dropped as they arrive, so that the feedback page stays small and says so?"""
    page = attacked["out"] / "feedback" / "big_images" / "05_other_environment.html"
    assert page.stat().st_size < 2 * Budgets().output_bytes
    assert "the grader dropped an output of" in page.read_text()


def test_the_run_finishes_within_its_limits(attacked):
    """Did the whole run finish, every student graded, within a bound (no hang on the FIFO)?"""
    assert set(attacked["reports"]) == {"honest", "long_sum", *ATTACKERS}
    assert attacked["seconds"] < len(attacked["reports"]) * 60


def test_an_lms_zip_brings_no_link_and_nothing_too_large(tmp_path):
    """Are a symbolic link stored in an LMS zip (to the course's solutions) and a notebook over the size
    limit refused by name, never unpacked, while the others are imported?"""
    import stat
    import zipfile

    from autograder import intake

    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("honest_1_05_other_environment.ipynb", SOURCE.read_bytes())
        link = zipfile.ZipInfo("linker_1_05_other_environment.ipynb")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, str(SOURCE))
        zf.writestr("huge_1_05_other_environment.ipynb", b" " * 2_000_001)
    budgets = Budgets(notebook_bytes=2_000_000)
    problems = intake.import_submissions(ASSIGNMENT, archive, tmp_path / "subs", budgets=budgets)
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["honest"]
    text = " | ".join(problems)
    assert "linker_1_05_other_environment.ipynb: a symbolic link, refused" in text
    assert "huge_1_05_other_environment.ipynb: over the 2 MB limit for a notebook, refused" in text
