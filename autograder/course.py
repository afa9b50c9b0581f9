"""The course folder and the nbgrader runner: where assignments live, and how nbgrader is called.

Every command works in a private course root ``<out>/course`` (a copy of
``assignments/nbgrader_config.py`` and ``assignments/source/<assignment>``), so the repository
stays clean and one run never mixes with another. nbgrader always runs as a subprocess
(:func:`run_nbgrader`), in its own process group, so a run that hangs can be killed whole.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENTS = REPO / "assignments"
#: nbgrader's course id: the gradebook's, and the exchange's unless ``--course-id`` says otherwise.
COURSE_ID = "autoencoders-to-world-models"

# nbgrader's gradebook calls the `alembic` command of the environment it is installed in, also
# when used in-process here; make that environment's bin/ findable even if it is not activated.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_BIN, os.environ.get("PATH", "")])


class PipelineError(RuntimeError):
    """A step failed in a way that stops the whole run (not one student's problem)."""


class GraderFaultError(PipelineError):
    """The machine or the grader failed while grading a student (a kernel that cannot start): not the
    student's doing, so the run stops and names the cause, and no score is written for that student."""


def source_dir(assignment: str) -> Path:
    """``assignments/source/<assignment>``.

    Raises:
        PipelineError: if there is no such assignment (the message lists the known ones).
    """
    path = ASSIGNMENTS / "source" / assignment
    if not path.is_dir():
        known = sorted(p.name for p in (ASSIGNMENTS / "source").iterdir() if p.is_dir())
        raise PipelineError(f"no assignment {assignment!r} in {ASSIGNMENTS / 'source'}; known: {known}")
    return path


def notebook_names(assignment: str) -> list[str]:
    """The notebook file names of an assignment, sorted (``01_....ipynb``, ...)."""
    return sorted(p.name for p in source_dir(assignment).glob("*.ipynb"))


def step_dir(root: Path, step: Literal["submitted", "autograded", "feedback"], student: str, assignment: str) -> Path:
    """``<root>/<step>/<student>/<assignment>``: where nbgrader keeps one student's assignment at one step
    in the course root ``root`` (nbgrader's default ``CourseDirectory.directory_structure``, which
    ``assignments/nbgrader_config.py`` keeps)."""
    return Path(root) / step / student / assignment


def nbgrader_env() -> dict[str, str]:
    """The environment of every nbgrader run: headless, deterministic hashing, one thread per kernel."""
    env = dict(os.environ)
    env.update(
        {
            "MPLBACKEND": "Agg",
            "SDL_VIDEODRIVER": "dummy",
            "SDL_AUDIODRIVER": "dummy",
            "PYTHONHASHSEED": "0",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "JUPYTER_PLATFORM_DIRS": "1",
            "TQDM_DISABLE": "1",
            # One thread per grading kernel: small models gain little from more, and threads that
            # outnumber free cores slow PyTorch down many times over.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.pop("COURSE_QUICK", None)  # grading shrinks budgets through NBGRADER_EXECUTION itself
    return env


def _die_with_parent() -> None:
    """In the child, before nbgrader starts: be killed when the process that started it dies (Linux's
    ``PR_SET_PDEATHSIG``), so that a grader killed outright (``course watch`` stopped with SIGKILL)
    leaves no nbgrader run behind to write into the gradebook."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def run_nbgrader(
    args: list[str], root: Path, timeout: float | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in course root ``root``; kill its whole process group on timeout, and it
    when the calling process dies.

    ``env`` adds environment variables (the sandbox's kernelspec path, the judges' event log).

    Returns:
        The completed process (``returncode`` -9 and a note in ``stderr`` after a timeout).
    """
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}"]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env={**nbgrader_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[course] nbgrader {args[0]} killed after {timeout:.0f} s"
        return subprocess.CompletedProcess(cmd, -9, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def summarize_failure(log: str) -> str:
    """The lines of an nbgrader log that say what went wrong (its last three error lines), shortened
    for a report; the caller says which command failed."""
    lines = [line for line in log.splitlines() if "[AutogradeApp | ERROR]" in line or "Error" in line]
    tail = " / ".join(line.strip() for line in lines[-3:]) or (log.strip().splitlines() or ["no output"])[-1]
    return tail[:500]


def prepare_course(assignment: str, out: Path) -> Path:
    """Make the private course root ``<out>/course`` with the config and the assignment's source."""
    root = Path(out).resolve() / "course"
    (root / "source").mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSIGNMENTS / "nbgrader_config.py", root / "nbgrader_config.py")
    dest = root / "source" / assignment
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source_dir(assignment), dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.png"))
    return root
