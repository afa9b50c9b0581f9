"""nbgrader's exchange: how assignments reach students and submissions come back, on one machine or on
JupyterHub (a folder every user can reach).

Everything goes through nbgrader's own commands and exchange classes: ``release_assignment``
publishes the student version, students ``fetch_assignment``, ``validate`` and ``submit`` in
JupyterLab's Assignments panel, ``collect`` takes the latest submission of each student, and
``release_feedback`` makes the feedback fetchable (students ``fetch_feedback`` in the same panel).
The exchange keeps ``<exchange>/<course_id>/outbound/<assignment>/`` (released),
``inbound/<student>+<assignment>+<timestamp>+<random>/`` (submitted) and ``feedback/<hash>.html``.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from autograder.course import PipelineError, run_nbgrader, summarize_failure

#: Where ``course collect`` puts the collected submissions in the course root: one folder per
#: student holding ``<assignment>/`` as nbgrader writes it (``course autograde`` reads that layout).
COLLECTED = "collected"


def ensure_exchange(exchange: Path) -> Path:
    """The exchange folder, created if missing, with the permissions nbgrader asks for on one machine
    (every user may enter and write it, as ``/srv/nbgrader/exchange`` on JupyterHub).

    Raises:
        PipelineError: if it exists and the current user cannot write it.
    """
    exchange = Path(exchange).resolve()
    if not exchange.exists():
        exchange.mkdir(parents=True)
        os.chmod(exchange, 0o777)
    if not os.access(exchange, os.W_OK | os.X_OK):
        raise PipelineError(f"the exchange {exchange} is not writable by this user; see docs/instructors.md")
    return exchange


def _exchange_args(exchange: Path, course_id: str) -> list[str]:
    return [f"--Exchange.root={Path(exchange).resolve()}", f"--CourseDirectory.course_id={course_id}"]


def _run(args: list[str], root: Path, what: str) -> str:
    result = run_nbgrader(args, root, timeout=600)
    if result.returncode != 0:
        raise PipelineError(f"nbgrader {what} failed: {summarize_failure(result.stdout + result.stderr)}")
    return result.stdout + result.stderr


def release_assignment(assignment: str, root: Path, exchange: Path, course_id: str) -> Path:
    """``nbgrader release_assignment``: publish ``<root>/release/<assignment>`` to the exchange.

    Returns:
        The exchange's outbound folder of the assignment.

    Raises:
        PipelineError: if nbgrader refuses (the exchange is not writable, nothing was generated).
    """
    ensure_exchange(exchange)
    _run(
        ["release_assignment", assignment, "--force", *_exchange_args(exchange, course_id)], root, "release_assignment"
    )
    inbound = Path(exchange).resolve() / course_id / "inbound"
    if inbound.is_dir() and inbound.stat().st_uid == os.geteuid():
        # nbgrader's mode (students write it, cannot list it) and the sticky bit: no student can
        # remove or rename another's submission, even by guessing its name
        os.chmod(inbound, inbound.stat().st_mode | stat.S_ISVTX)
    return Path(exchange).resolve() / course_id / "outbound" / assignment


@dataclass(frozen=True)
class Submission:
    """One submission in the exchange's inbound folder."""

    student: str
    assignment: str
    timestamp: str
    path: Path


#: ``<student>+<assignment>+<timestamp>[+<random>]``, nbgrader's name of a submission folder (a
#: student id may hold ``+``; nbgrader splits on the first two).
_INBOUND = re.compile(r"^(?P<student>[^+]+)\+(?P<assignment>[^+]+)\+(?P<timestamp>[^+]+)(?:\+.*)?$")


def inbound(exchange: Path, course_id: str, assignment: str) -> list[Submission]:
    """Every submission of ``assignment`` waiting in the exchange, oldest first."""
    folder = Path(exchange) / course_id / "inbound"
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        match = _INBOUND.match(path.name)
        if match and match["assignment"] == assignment and path.is_dir():
            found.append(Submission(match["student"], assignment, match["timestamp"], path))
    return sorted(found, key=lambda s: (s.timestamp, s.student))


def collect(assignment: str, root: Path, exchange: Path, course_id: str, student: str | None = None) -> Path:
    """``nbgrader collect --update``: the latest submission of each student (or of ``student``) into
    ``<root>/collected/<student>/<assignment>/``, with its ``timestamp.txt`` and ``submission_secret.txt``,
    copied by :class:`autograder.nbgrader_ext.SafeCollect` (links, special files and oversized files
    refused and listed).

    A newer submission replaces an older one already collected; ``course autograde ASSIGNMENT
    <root>/collected`` grades them.

    Returns:
        The ``collected`` folder.
    """
    args = ["collect", assignment, "--update", *_exchange_args(exchange, course_id)]
    args += [f"--CourseDirectory.submitted_directory={COLLECTED}"]
    args += ["--ExchangeFactory.collect=autograder.nbgrader_ext.SafeCollect"]  # no link followed
    if student is not None:
        args.append(f"--CourseDirectory.student_id={student}")
    _run(args, root, "collect")
    return Path(root) / COLLECTED


def release_feedback(assignment: str, root: Path, exchange: Path, course_id: str, student: str | None = None) -> None:
    """``nbgrader release_feedback``: make the feedback of ``<root>/feedback`` fetchable by its students.

    Each page is published under the hash of its submission's secret, so only the student who made
    that submission fetches it.
    """
    args = ["release_feedback", assignment, *_exchange_args(exchange, course_id)]
    if student is not None:
        args.append(f"--CourseDirectory.student_id={student}")
    _run(args, root, "release_feedback")


# ---------------------------------------------------------------- a student's side (self-tests, benchmarks)
def as_student(command: str, assignment: str, student: str, home: Path, exchange_dir: Path, course_id: str) -> str:
    """Run nbgrader's student ``command`` (``fetch_assignment``, ``submit``, ``fetch_feedback``) as
    ``student`` would: in their home folder (``HOME`` too), under their id.

    Returns:
        nbgrader's output.

    Raises:
        PipelineError: if nbgrader fails.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "JUPYTER_PLATFORM_DIRS": "1"}
    args = [sys.executable, "-m", "nbgrader", command, assignment, f"--student={student}"]
    args += [f"--Exchange.root={Path(exchange_dir).resolve()}", f"--course={course_id}"]
    result = subprocess.run(args, cwd=home, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise PipelineError(f"nbgrader {command} as {student} failed: {result.stderr[-1500:]}")
    return result.stdout + result.stderr


def fetched_feedback(assignment: str, home: Path) -> list[Path]:
    """The feedback pages a student has fetched into ``<home>/<assignment>/feedback/<timestamp>/``, oldest first."""
    return sorted((Path(home) / assignment / "feedback").glob("*/*.html"))
