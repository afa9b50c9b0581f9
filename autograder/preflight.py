"""``course doctor``: can this machine grade? The sandbox, the kernel, the exchange and the gradebook, each
checked for real, with a line that says what is wrong and what fixes it.

``course autograde`` and ``course watch`` run :func:`require_sandbox` before they touch a submission,
so that a machine that cannot run the sandbox stops the run with its cause instead of giving every
student a zero.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder.sandbox import NOBODY, Limits, SandboxUnavailableError, View, require_bwrap, sandboxed

#: Kernel settings that forbid unprivileged user namespaces, the value that does, and the fix.
SYSCTLS = (
    (
        "kernel/unprivileged_userns_clone",
        "0",
        "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)",
        "sudo sysctl -w kernel.unprivileged_userns_clone=1, and the same line in /etc/sysctl.d/90-userns.conf",
    ),
    (
        "user/max_user_namespaces",
        "0",
        "user namespaces are disabled (user.max_user_namespaces=0)",
        "sudo sysctl -w user.max_user_namespaces=15000, and the same line in /etc/sysctl.d/90-userns.conf",
    ),
    (
        "kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "AppArmor lets only programs with a profile create user namespaces "
        "(kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 24.04)",
        "give bwrap a profile that allows them (docs/clusters.md, 'AppArmor'), "
        "or sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
    ),
)

#: What bubblewrap says when the machine refuses a step of the sandbox, and which fix applies.
BWRAP_ERRORS = (
    (
        ("No permissions to create new namespace", "Creating new namespace failed: Operation not permitted"),
        "this machine does not let an ordinary process create a user namespace (a container's seccomp "
        "profile, or a kernel setting)",
        "in Docker, --security-opt seccomp=docs/cluster/seccomp-userns.json; in Kubernetes, the seccomp "
        "profile of docs/clusters.md or hostUsers: false; on a host, the sysctls of docs/clusters.md",
    ),
    (
        ("max_*_namespaces exceeded", "ENOSPC"),
        "no user namespace is left (user.max_user_namespaces is 0 or reached)",
        "sudo sysctl -w user.max_user_namespaces=15000",
    ),
    (
        ("Can't mount proc",),
        "the sandbox cannot mount /proc: this container masks it",
        "in Kubernetes, securityContext.procMount: Unmasked with hostUsers: false; in Docker, "
        "--security-opt systempaths=unconfined",
    ),
    (
        ("setting up uid map", "Permission denied"),
        "the kernel refused the sandbox's user mapping (an AppArmor or seccomp policy)",
        "see docs/clusters.md, 'What the machine must allow'",
    ),
)


@dataclass(frozen=True)
class Check:
    """One line of ``course doctor``.

    Attributes:
        name: what was checked (``sandbox``, ``kernel``, ``exchange``, ``gradebook``...).
        ok: whether grading can rely on it.
        message: what was found, and for a failure what fixes it.
        warning: a finding that does not stop grading.
    """

    name: str
    ok: bool
    message: str
    warning: bool = False

    def line(self) -> str:
        """``ok    sandbox: ...`` as the doctor prints it."""
        status = "warn" if self.warning and self.ok else ("ok" if self.ok else "FAIL")
        return f"{status:<5} {self.name}: {self.message}"


def sysctl_refusals(root: Path = Path("/proc/sys")) -> list[str]:
    """``"<what>; fix: <how>"`` for each kernel setting under ``root`` that forbids unprivileged user namespaces."""
    found = []
    for name, bad, what, fix in SYSCTLS:
        try:
            value = (Path(root) / name).read_text().strip()
        except OSError:
            continue  # the setting does not exist on this kernel
        if value == bad:
            found.append(f"{what}; fix: {fix}")
    return found


def explain_bwrap(stderr: str) -> str:
    """One line for what the sandbox's launch printed: its cause and fix where known, else its last line."""
    for needles, what, fix in BWRAP_ERRORS:
        if any(n in stderr for n in needles):
            return f"{what} ({_last_line(stderr)}); fix: {fix}"
    return _last_line(stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def run_in_sandbox(code: str, timeout: float = 120, limits: Limits | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c code`` in the grading sandbox (the kernels' view, limits and user), as a kernel would run."""
    scratch = Path(tempfile.mkdtemp(prefix="course-doctor-"))
    try:
        sockets = scratch / "s"
        sockets.mkdir()
        if os.geteuid() == 0:
            os.chmod(scratch, 0o711)
            os.chown(sockets, NOBODY, NOBODY)
        argv = sandboxed([sys.executable, "-c", code], sockets, limits or Limits(), View.of_this_python(), "doctor")
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_sandbox() -> Check:
    """Can a sandbox start here (bubblewrap, user namespaces, /proc, the Python environment visible in it)?"""
    try:
        require_bwrap()
    except SandboxUnavailableError as err:
        return Check("sandbox", False, str(err))
    refusals = sysctl_refusals()
    if refusals:
        return Check("sandbox", False, refusals[0])
    result = run_in_sandbox("import os; print(os.getuid())", timeout=60)
    if result.returncode != 0 or result.stdout.strip() != str(NOBODY):
        explained = explain_bwrap(result.stderr)
        if "bwrap" not in result.stderr and "setpriv" not in result.stderr:
            explained = (
                f"the Python environment does not run in the sandbox ({_last_line(result.stderr)}); fix: install "
                f"it where {'nobody' if os.geteuid() == 0 else 'you'} can read it (docs/instructors.md)"
            )
        return Check("sandbox", False, explained)
    who = "as nobody (started as root)" if os.geteuid() == 0 else f"as uid {os.geteuid()}, no privilege"
    return Check("sandbox", True, f"bubblewrap starts kernels in a user namespace of their own, {who}")


def require_sandbox() -> None:
    """Stop before grading when the sandbox cannot start here.

    Raises:
        SandboxUnavailableError: naming the cause and the fix in one line.
    """
    check = check_sandbox()
    if not check.ok:
        raise SandboxUnavailableError(
            f"the grading sandbox cannot start on this machine: {check.message}. "
            "Nothing was graded; `course doctor` checks it again."
        )


def check_kernel() -> Check:
    """Does a grading kernel start in the sandbox with what notebooks import?"""
    code = "import ipykernel, numpy, torch, gymnasium, matplotlib, course_lib, autograder.checks; print('imported')"
    result = run_in_sandbox(code)
    if result.returncode != 0 or "imported" not in result.stdout:
        return Check("kernel", False, f"a sandboxed kernel cannot import the course ({_last_line(result.stderr)})")
    return Check("kernel", True, "a sandboxed Python imports ipykernel, torch, gymnasium and course_lib")


def check_process_limit() -> Check:
    """Is the process limit per kernel (user namespaces count their own processes since Linux 5.14)?"""
    release = os.uname().release
    try:
        major, minor = (int(part) for part in release.split(".")[:2])
    except ValueError:
        return Check("process limit", True, f"kernel {release}: version unknown", warning=True)
    if (major, minor) < (5, 14):
        return Check(
            "process limit",
            True,
            f"Linux {release} counts processes per user, not per namespace: all kernels of this account share "
            "one limit, so a fork bomb can slow the kernels graded beside it; grade with --workers 1 or use "
            "Linux 5.14 or later",
            warning=True,
        )
    return Check("process limit", True, f"Linux {release}: each kernel has a process limit of its own")


def check_exchange(exchange: Path, course_id: str) -> list[Check]:
    """Do the exchange's folders have the permissions nbgrader gives them (students write ``inbound``
    without listing it, read ``outbound``, fetch their own ``feedback`` only)?"""
    exchange = Path(exchange)
    if not exchange.is_dir():
        return [Check("exchange", False, f"{exchange} does not exist; fix: create it with mode 0777 (nbgrader's docs)")]
    if not os.access(exchange, os.W_OK | os.X_OK):
        return [Check("exchange", False, f"{exchange} is not writable by this account; fix: chmod 0777 {exchange}")]
    checks = [Check("exchange", True, f"{exchange} is writable by this account")]
    expected = {  # folder: (bits others must have, bits others must not have, why)
        "inbound": (0o003, 0o004, "students submit without listing each other's submissions"),
        "outbound": (0o005, 0o002, "students fetch the released assignment and cannot change it"),
        "feedback": (0o001, 0o006, "students fetch their own feedback and cannot list the others'"),
    }
    for name, (must, must_not, why) in expected.items():
        folder = exchange / course_id / name
        if not folder.is_dir():
            continue  # made by nbgrader on the first release, submission or feedback
        mode = folder.stat().st_mode & 0o7777
        ok = mode & must == must and not mode & must_not
        message = f"{folder} has mode {mode:04o}: {why}" + ("" if ok else f"; fix: nbgrader's mode (others {must:o})")
        checks.append(Check(f"exchange {name}", ok, message))
    return checks


def check_gradebook(url: str) -> Check:
    """Can the grader open the gradebook at ``url`` (the password read from ``PGPASSWORD`` where the URL has none)?"""
    from autograder.gradebook import check_db_url, redact

    try:
        check_db_url(url)
        from sqlalchemy import create_engine, text

        engine = create_engine(url, future=True)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as err:  # the driver's own error names the cause on its first line
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        return Check("gradebook", False, f"{redact(url)} cannot be opened: {first[:300]}")
    return Check("gradebook", True, f"{redact(url)} opens")


def doctor(exchange: Path | None = None, course_id: str | None = None, db_url: str | None = None) -> list[Check]:
    """Every check of ``course doctor``: the sandbox and the kernel, then the exchange and the gradebook when given."""
    sandbox = check_sandbox()
    checks = [sandbox, check_process_limit()]
    if sandbox.ok:
        checks.append(check_kernel())
    if exchange is not None:
        checks += check_exchange(exchange, course_id or "")
    if db_url is not None:
        checks.append(check_gradebook(db_url))
    return checks
