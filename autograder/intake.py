"""Submissions from a learning management system: nbgrader's ``zip_collect`` on an LMS export.

An LMS (Canvas, Moodle...) exports every student's upload into one zip, with file names like
``jdoe_late_41_1234_01_autoencoder_and_vae-1.ipynb``. :func:`import_submissions` unpacks it into one
folder per student, the layout ``course autograde`` takes, and reports every file it could not place.
Submissions from nbgrader's exchange come in through :func:`autograder.exchange.collect` instead.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from autograder.course import PipelineError, notebook_names, prepare_course, run_nbgrader, summarize_failure

#: File names of an LMS export as nbgrader's zip_collect sees them (Canvas style):
#: ``<student>_[late_]<numbers>_..._<notebook>[-<n>].ipynb``, e.g.
#: ``jdoe_late_41_1234_01_autoencoder_and_vae-1.ipynb`` -> student ``jdoe``, ``01_autoencoder_and_vae.ipynb``.
LMS_REGEXP = (
    r"^(?:.*/)?(?P<student_id>[A-Za-z0-9.@+-]+?)_(?:late_)?(?:\d+_)*"
    r"(?P<file_id>\d\d_[A-Za-z0-9_]+?)(?:-\d+)?\.ipynb$"
)


def import_submissions(assignment: str, archive: Path, dest: Path, regexp: str = LMS_REGEXP) -> list[str]:
    """Unpack an LMS zip into one folder per student with ``nbgrader zip_collect``.

    Args:
        assignment: the assignment the files belong to (their names are checked against it).
        archive: the zip exported by the LMS.
        dest: where to create ``<dest>/<student_id>/<notebook>.ipynb``.
        regexp: nbgrader's ``FileNameCollectorPlugin.named_regexp`` with ``student_id`` and ``file_id``.

    Returns:
        Problems, each naming the file and, when known, the student (files that do not follow the
        naming, notebooks the assignment does not have); nothing else is lost.

    Raises:
        PipelineError: if ``archive`` is not a zip file or zip_collect fails.
    """
    archive, dest = Path(archive).resolve(), Path(dest).resolve()
    if not zipfile.is_zipfile(archive):
        raise PipelineError(f"{archive} is not a zip archive")
    expected = set(notebook_names(assignment))
    problems = []
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if not name.endswith("/") and not name.endswith(".ipynb"):
                problems.append(f"{name}: not a notebook, skipped")
            elif name.endswith(".ipynb") and not re.match(regexp, Path(name).name):
                problems.append(f"{name}: does not follow the LMS naming <student>_..._<notebook>.ipynb, skipped")
    with tempfile.TemporaryDirectory() as tmp:
        root = prepare_course(assignment, Path(tmp))
        folder = root / "downloaded" / assignment / "archive"
        folder.mkdir(parents=True)
        shutil.copy(archive, folder / archive.name)
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
                shutil.copy(nb, target / nb.name)
    return problems
