"""Submissions from a learning management system: nbgrader's ``zip_collect`` on an LMS export.

An LMS (Canvas, Moodle...) exports every student's upload into one zip, with file names like
``jdoe_late_41_1234_01_autoencoder_and_vae-1.ipynb``. :func:`import_submissions` unpacks it into one
folder per student, the layout ``course autograde`` takes, and reports every file it could not place.
Submissions from nbgrader's exchange come in through :func:`autograder.exchange.collect` instead.
"""

from __future__ import annotations

import re
import stat
import tempfile
import zipfile
from pathlib import Path

from autograder.budgets import Budgets
from autograder.course import PipelineError, notebook_names, prepare_course, run_nbgrader, summarize_failure
from autograder.student_files import read_regular

#: File names of an LMS export as nbgrader's zip_collect sees them (Canvas style):
#: ``<student>_[late_]<numbers>_..._<notebook>[-<n>].ipynb``, e.g.
#: ``jdoe_late_41_1234_01_autoencoder_and_vae-1.ipynb`` -> student ``jdoe``, ``01_autoencoder_and_vae.ipynb``.
LMS_REGEXP = (
    r"^(?:.*/)?(?P<student_id>[A-Za-z0-9.@+-]+?)_(?:late_)?(?:\d+_)*"
    r"(?P<file_id>\d\d_[A-Za-z0-9_]+?)(?:-\d+)?\.ipynb$"
)


def import_submissions(
    assignment: str, archive: Path, dest: Path, regexp: str = LMS_REGEXP, budgets: Budgets | None = None
) -> list[str]:
    """Unpack an LMS zip into one folder per student with ``nbgrader zip_collect``.

    Args:
        assignment: the assignment the files belong to (their names are checked against it).
        archive: the zip exported by the LMS.
        dest: where to create ``<dest>/<student_id>/<notebook>.ipynb``.
        regexp: nbgrader's ``FileNameCollectorPlugin.named_regexp`` with ``student_id`` and ``file_id``.
        budgets: the largest notebook taken (:attr:`autograder.budgets.Budgets.notebook_bytes`).

    Returns:
        Problems, each naming the file and, when known, the student (files that do not follow the
        naming, notebooks the assignment does not have, links, files over the size limit); nothing
        else is lost.

    Raises:
        PipelineError: if ``archive`` is not a zip file or zip_collect fails.
    """
    archive, dest = Path(archive).resolve(), Path(dest).resolve()
    if not zipfile.is_zipfile(archive):
        raise PipelineError(f"{archive} is not a zip archive")
    expected = set(notebook_names(assignment))
    limit = (budgets or Budgets()).notebook_bytes
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        root = prepare_course(assignment, Path(tmp))
        folder = root / "downloaded" / assignment / "archive"
        folder.mkdir(parents=True)
        # only what can be graded reaches nbgrader: notebooks named as the LMS names them, stored as
        # files (not links), within the size limit; everything else is named and left in the zip
        with zipfile.ZipFile(archive) as zf, zipfile.ZipFile(folder / archive.name, "w") as kept:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir():
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    problems.append(f"{name}: a symbolic link, refused")
                elif not name.endswith(".ipynb"):
                    problems.append(f"{name}: not a notebook, skipped")
                elif not re.match(regexp, Path(name).name):
                    problems.append(f"{name}: does not follow the LMS naming <student>_..._<notebook>.ipynb, skipped")
                else:
                    with zf.open(info) as member:
                        data = member.read(limit + 1)  # a zip may state a size smaller than it unpacks to
                    if len(data) > limit:
                        problems.append(f"{name}: over the {limit / 1e6:g} MB limit for a notebook, refused")
                    else:
                        kept.writestr(name, data)
        result = run_nbgrader(
            ["zip_collect", assignment, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}"], root, 600
        )
        if result.returncode != 0:
            raise PipelineError(f"nbgrader zip_collect failed on {archive}: {summarize_failure(result.stderr)}")
        for student in sorted((root / "submitted").iterdir()):
            target = dest / student.name
            target.mkdir(parents=True, exist_ok=True)
            for nb in sorted((student / assignment).glob("*.ipynb")):
                if nb.name not in expected:
                    problems.append(f"{student.name}: {nb.name} is not a notebook of {assignment}, kept but not graded")
                (target / nb.name).write_bytes(read_regular(nb, limit=limit))
    return problems
