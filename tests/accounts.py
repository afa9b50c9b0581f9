"""Ordinary users of this machine for the tests, and the course installed as one of them would install it.

Instructors do not grade as root: on JupyterHub the grader is an ordinary account, a Slurm job runs as
the user who submitted it. The tests create such users (``useradd``, as root) and run the ``course``
command as them with :func:`run_as`. Root's Python here may live under ``/root``, which other users
cannot reach, so :func:`installation` installs the course for them as a new instructor would: a copy
of the repository's tracked files, and a virtual environment made by the grader account with
Debian's ``/usr/bin/python3.11`` and ``pip install -e .``, shared by the test processes (a file lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The accounts the tests use: a grader (JupyterHub's grader account), a second grader (a TA, or
#: another course on the machine) and three students.
GRADER, SECOND_GRADER = "course-grader", "course-ta"
STUDENT, OTHER_STUDENT, THIRD_STUDENT = "course-student-a", "course-student-b", "course-student-c"
#: The system Python an ordinary user's virtual environment is made from (Debian's).
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
#: Where the shared installation lives: a folder every user can pass through.
INSTALLATIONS = Path("/tmp/course-installations")
REPO = Path(__file__).resolve().parents[1]


class AccountsUnavailableError(RuntimeError):
    """The tests cannot create users or an installation for them here (not root, no Debian Python)."""


@dataclass(frozen=True)
class User:
    """An ordinary user of the machine."""

    name: str
    uid: int
    gid: int
    home: Path


def user(name: str) -> User:
    """The ordinary user ``name``, created (``useradd``, home folder mode 0700) if missing.

    Raises:
        AccountsUnavailableError: if the user is missing and this process is not root.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise AccountsUnavailableError(f"no user {name!r}, and only root can create one") from None
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
        os.chmod(entry.pw_dir, 0o700)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def run_as(
    who: User,
    argv: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``who`` with a fresh login environment (``setpriv --reset-env``) plus ``env``.

    Raises:
        subprocess.CalledProcessError: if ``check`` and it fails (its output in the message).
    """
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    cmd = ["setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--init-groups", "--reset-env"]
    cmd += ["--", "env", f"HOME={who.home}", "LANG=C.UTF-8", *extra, *argv]
    result = subprocess.run(cmd, cwd=cwd or who.home, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, argv, result.stdout, f"{result.stderr[-4000:]}\n(stdout: {result.stdout[-2000:]})"
        )
    return result


def popen_as(who: User, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
    """Start ``argv`` as ``who`` like :func:`run_as`, without waiting (a ``subprocess.Popen``, stdout piped)."""
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    cmd = ["setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--init-groups", "--reset-env"]
    cmd += ["--", "env", f"HOME={who.home}", "LANG=C.UTF-8", *extra, *argv]
    return subprocess.Popen(
        cmd, cwd=cwd or who.home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def shared_folder(prefix: str, owner: User | None = None, mode: int = 0o755) -> Path:
    """A new folder under ``/tmp`` that every user can pass through (pytest's own are private to root),
    owned by ``owner`` when given."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(folder, mode)
    if owner is not None:
        os.chown(folder, owner.uid, owner.gid)
    return folder


def _tracked_files() -> list[str]:
    """The repository's files as a clone of this working tree would have them (tracked, and new files not
    ignored), without the ones deleted here."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(name for name in listed.stdout.split("\0") if name and (REPO / name).is_file())


def installation() -> Path:
    """The repository installed by the grader account as a new instructor would (a copy of the tracked
    files and a virtual environment from Debian's Python with ``pip install -e .``): its folder, which
    holds ``.venv/bin/course``. Every user may run it (a TA, a student's nbgrader). The environment is
    reused while pyproject.toml is unchanged; the files are brought up to date at each call.

    Raises:
        AccountsUnavailableError: if Debian's Python or its venv module is missing (``make test``
            installs python3.11-venv).
    """
    owner = user(GRADER)
    if not SYSTEM_PYTHON.exists():
        raise AccountsUnavailableError(f"{SYSTEM_PYTHON} is missing; install Debian's python3.11-venv")
    INSTALLATIONS.mkdir(exist_ok=True)
    os.chmod(INSTALLATIONS, 0o755)
    # one virtual environment per set of dependencies (pyproject.toml)
    folder = INSTALLATIONS / hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    with open(INSTALLATIONS / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing it now
        if not (folder / ".installed").exists():
            for old in INSTALLATIONS.iterdir():  # an earlier set's installation
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        tracked = _tracked_files()
        changed = [name for name in tracked if not _same(REPO / name, folder / name)]
        for stale in _stale_files(folder, set(tracked)):  # deleted or moved here since the last call
            stale.unlink()
        for name in changed:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, folder / name)
        if changed:
            subprocess.run(["chown", "-R", f"{owner.uid}:{owner.gid}", str(folder)], check=True)
        os.chmod(folder, 0o755)
        if not (folder / ".installed").exists():
            run_as(owner, [str(SYSTEM_PYTHON), "-m", "venv", ".venv"], cwd=folder)
            # pip's settings of this machine (where its wheels and indexes are) and proxies, as a login has them
            settings = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.lower().endswith("_proxy")}
            run_as(owner, [".venv/bin/pip", "install", "--quiet", "-e", "."], cwd=folder, env=settings, timeout=1800)
            (folder / ".installed").touch()
    return folder


def _stale_files(folder: Path, tracked: set[str]) -> list[Path]:
    """The modules of the installation's packages that the repository no longer has: a module moved
    away must not stay importable there (a package's registry walks its modules)."""
    return [
        path
        for package in ("autograder", "course_lib")
        for path in (folder / package).rglob("*.py")
        if path.relative_to(folder).as_posix() not in tracked
    ]


def _same(source: Path, copy: Path) -> bool:
    """Whether ``copy`` exists and holds the bytes of ``source``."""
    return copy.is_file() and copy.stat().st_size == source.stat().st_size and copy.read_bytes() == source.read_bytes()
