"""The sandbox without privilege: what a kernel sees, who it is, and limits that are its own.

Each test starts real sandboxes (:func:`autograder.preflight.run_in_sandbox`, the command line every
grading kernel gets) as root, as this suite runs in CI, and as ordinary users of the machine with the
course installed as they would install it (:mod:`accounts`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from accounts import GRADER, SECOND_GRADER, popen_as, run_as, shared_folder, user

from autograder import preflight
from autograder.sandbox import KERNEL_HOME, NOBODY, View, kernel_environment

pytestmark = pytest.mark.slow(seconds=200)
REPO = Path(__file__).resolve().parents[1]

#: Run in a sandbox: what it sees of the machine, as JSON.
LOOK_AROUND = """
import json, os
seen = []
for top, dirs, files in os.walk("/", onerror=lambda err: None):
    if top.startswith(("/proc", "/sys", "/usr", "/dev")) or "site-packages" in top:
        dirs[:] = []
        continue
    seen += [os.path.join(top, f) for f in files]
print(json.dumps({
    "uid": os.getuid(),
    "cwd": os.getcwd(),
    "home": os.listdir("/home"),
    "env": dict(os.environ),
    "pid1": open("/proc/1/environ").read(),
    "files": seen,
}))
"""

#: Forks until its process limit stops it, then keeps its processes for a while.
FORK_BOMB = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(8)
            os._exit(0)
        n += 1
except OSError as err:
    print("bomb", n, err.errno, flush=True)
time.sleep(8)
"""
#: Started while the bomb's processes live: forks 15 and reports how many it got.
FIFTEEN_FORKS = """
import os, time
n = 0
for _ in range(15):
    try:
        if os.fork() == 0:
            time.sleep(1)
            os._exit(0)
        n += 1
    except OSError:
        break
print("forked", n, flush=True)
"""
#: A Python script that runs ``CODE`` (argv[1]) in a sandbox with a process limit of 20 and prints its output.
IN_SANDBOX = """
import sys
from autograder import preflight
from autograder.sandbox import Limits
result = preflight.run_in_sandbox(sys.argv[1], limits=Limits(processes=20))
print(result.stdout, end="")
print(result.stderr, end="", file=sys.stderr)
"""


def _look_around(secret_env: dict[str, str]) -> dict:
    """What a sandbox started by this (root) process sees, with ``secret_env`` in the grader's environment."""
    saved = dict(os.environ)
    os.environ.update(secret_env)
    try:
        result = preflight.run_in_sandbox(LOOK_AROUND)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_kernel_sees_an_allowlist_and_nothing_of_the_grader(tmp_path):
    """Started by root with secrets in its environment and other students' work on disk, does a sandbox
    see only the Python environment, the packages (no reference answers) and its own empty home, with an
    environment of the allowlist alone?"""
    elsewhere = Path("/tmp") / f"course-other-work-{os.getpid()}"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "classmate.ipynb").write_text("{}")
    try:
        seen = _look_around({"PGPASSWORD": "pg-secret-1", "COURSE_DB": "postgresql://u:url-secret-2@db/x"})
    finally:
        (elsewhere / "classmate.ipynb").unlink()
        elsewhere.rmdir()
    assert seen["uid"] == NOBODY and seen["cwd"] == str(KERNEL_HOME / "doctor") and seen["home"] == ["student"]
    view = View.of_this_python()
    for path in seen["files"]:
        assert not any(Path(path).is_relative_to(h) for h in view.hidden), path
        assert Path(path).is_relative_to("/etc") or any(Path(path).is_relative_to(s) for s in view.shown), path
    assert not [p for p in seen["files"] if p.endswith((".ipynb", ".db")) or "classmate" in p]
    allowed = set(kernel_environment()) | {"PWD", "SHLVL", "_"}
    assert set(seen["env"]) <= allowed, set(seen["env"]) - allowed
    dumped = json.dumps(seen)
    assert "pg-secret-1" not in dumped and "url-secret-2" not in dumped


def test_started_as_root_a_kernel_is_nobody_outside_its_namespace():
    """Is the sandboxed process, seen from the machine, owned by nobody rather than root when the grader
    is root (a namespace mapping it to root would open root's files to it)?"""
    marker = f"course-sandbox-owner-{os.getpid()}"
    code = f"import time; time.sleep(4)  # {marker}"
    proc = subprocess.Popen([sys.executable, "-c", IN_SANDBOX, code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        owners = []
        for _ in range(40):
            time.sleep(0.2)
            owners = [_owner(pid) for pid in _pids_with(marker) if _is_python(pid) and _sandboxed(pid)]
            if owners:
                break
        assert owners and set(owners) == {NOBODY}, owners
    finally:
        proc.wait(timeout=60)


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _sandboxed(pid: int) -> bool:
    """Whether process ``pid`` runs in another PID namespace than this one (in a sandbox)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


def _owner(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _bomb_beside_other(start_bomb, start_other) -> tuple[str, str]:
    bomb = start_bomb()
    time.sleep(3)  # its processes now fill its limit, and live 8 s more
    other = start_other()
    return bomb.communicate(timeout=120)[0], other.communicate(timeout=120)[0]


def _stopped_at_its_limit(output: str) -> None:
    """The bomb forked until its limit of 20 processes (it, its parents in the sandbox) and got EAGAIN."""
    match = re.search(r"bomb (\d+) (\d+)", output)
    assert match and 15 <= int(match[1]) < 20 and int(match[2]) == errno.EAGAIN, output


def test_a_fork_bomb_stops_only_its_own_kernel_as_root():
    """With root's grader, does a sandbox that forks until its limit (20) leave another sandbox started
    meanwhile free to fork 15 processes of its own?"""

    def start(code):
        return lambda: subprocess.Popen(
            [sys.executable, "-c", IN_SANDBOX, code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    bomb, other = _bomb_beside_other(start(FORK_BOMB), start(FIFTEEN_FORKS))
    _stopped_at_its_limit(bomb)
    assert "forked 15" in other, other


@pytest.fixture(scope="module")
def graders(installation):
    """Two ordinary accounts (a grader and a TA) and the grader's installation of the course."""
    return {user(GRADER): installation, user(SECOND_GRADER): installation}


def test_two_ordinary_users_grade_side_by_side_with_limits_of_their_own(graders):
    """Does a fork bomb in a sandbox of one ordinary user leave a sandbox of another user, and one of the
    same user, free to fork, with no privilege and no machine-wide lease between them?"""
    (first, first_install), (second, second_install) = graders.items()
    script = shared_folder("course-sandbox-script-") / "in_sandbox.py"
    script.write_text(IN_SANDBOX)
    os.chmod(script, 0o644)

    def start(who, install, code):
        return lambda: popen_as(who, [str(install / ".venv/bin/python"), str(script), code])

    bomb, other = _bomb_beside_other(
        start(first, first_install, FORK_BOMB), start(second, second_install, FIFTEEN_FORKS)
    )
    _stopped_at_its_limit(bomb)
    assert "forked 15" in other, other
    bomb, same_user = _bomb_beside_other(
        start(first, first_install, FORK_BOMB), start(first, first_install, FIFTEEN_FORKS)
    )
    assert "forked 15" in same_user, same_user


def test_doctor_as_an_ordinary_user_after_root_graded(graders):
    """After root ran sandboxes (the tests above), does an ordinary user's ``course doctor`` find the
    sandbox and the kernel working, as that user, without privilege?"""
    assert preflight.run_in_sandbox("print('root ran a sandbox')").returncode == 0
    who, install = next(iter(graders.items()))
    result = run_as(who, [str(install / ".venv/bin/course"), "doctor"])
    expected = f"ok    sandbox: bubblewrap starts kernels in a user namespace of their own, as uid {who.uid}"
    assert expected in result.stdout
    assert "ok    kernel:" in result.stdout and result.stdout.strip().endswith("grading can run here")


def test_doctor_names_disabled_user_namespaces_and_the_fix(graders, tmp_path):
    """On a machine where no user namespace may be made (bwrap's --disable-userns sets
    user.max_user_namespaces in a namespace of the test's own), does ``course doctor`` say so in one line
    with the sysctl that fixes it and exit 1, and does ``course autograde`` stop with that cause before
    touching a submission?"""
    who, install = next(iter(graders.items()))
    work = shared_folder("course-no-userns-", owner=who)
    (work / "subs" / "someone").mkdir(parents=True)
    no_userns = ["bwrap", "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]
    course = str(install / ".venv/bin/course")
    doctor = run_as(who, [*no_userns, course, "doctor"], check=False)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    line = next(line for line in doctor.stdout.splitlines() if line.startswith("FAIL  sandbox"))
    assert "user.max_user_namespaces" in line and "fix: sudo sysctl -w user.max_user_namespaces=" in line
    grade = [*no_userns, course, "autograde", "hw1_vae", str(work / "subs"), "--out", str(work / "out")]
    graded = run_as(who, grade, check=False)
    assert graded.returncode == 2 and "user.max_user_namespaces" in graded.stderr, graded.stderr
    assert not (work / "out").exists()


NESTED = ["bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"]


def test_what_bubblewrap_says_is_explained():
    """Is bubblewrap's own refusal, where user namespaces are exhausted, turned into its cause and fix?"""
    result = subprocess.run(
        [*["bwrap", "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"], *NESTED],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    explained = preflight.explain_bwrap(result.stderr)
    assert "no user namespace is left" in explained and "fix: sudo sysctl -w user.max_user_namespaces" in explained


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=1"),
        ("user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
        ("kernel/apparmor_restrict_unprivileged_userns", "1", "kernel.apparmor_restrict_unprivileged_userns=0"),
    ],
)
def test_each_forbidding_kernel_setting_is_named_with_its_fix(tmp_path, name, value, expected):
    """Is each kernel setting that forbids unprivileged user namespaces named with the setting that fixes
    it, and are the allowing values left alone?"""
    (tmp_path / name).parent.mkdir(parents=True)
    (tmp_path / name).write_text(value + "\n")
    (found,) = preflight.sysctl_refusals(tmp_path)
    assert expected in found
    (tmp_path / name).write_text("1\n" if value == "0" else "0\n")
    assert preflight.sysctl_refusals(tmp_path) == []


def test_the_exchange_check_knows_nbgraders_modes(tmp_path):
    """Does ``course doctor --exchange`` accept nbgrader's modes (inbound writable, not listable, sticky)
    and name an inbound folder that students could list?"""
    course = tmp_path / "exchange" / "vae101"
    for name, mode in {"inbound": 0o3733, "outbound": 0o755, "feedback": 0o711}.items():
        (course / name).mkdir(parents=True)
        os.chmod(course / name, mode)
    os.chmod(tmp_path / "exchange", 0o777)
    checks = preflight.check_exchange(tmp_path / "exchange", "vae101")
    assert all(c.ok for c in checks), [c.line() for c in checks]
    os.chmod(course / "inbound", 0o777)
    bad = [c for c in preflight.check_exchange(tmp_path / "exchange", "vae101") if not c.ok]
    assert [c.name for c in bad] == ["exchange inbound"] and "0777" in bad[0].message


def test_the_kernel_command_line_carries_no_secret(monkeypatch, tmp_path):
    """Does the kernelspec written for a grading hold nothing of the grader's environment?"""
    from autograder.sandbox import Limits, prepare

    monkeypatch.setenv("PGPASSWORD", "argv-secret-3")
    box = prepare(tmp_path, Limits(), View.of_this_python(), "hw1_vae")
    spec = (tmp_path / "kernels" / "python3" / "kernel.json").read_text()
    assert "argv-secret-3" not in spec and "PGPASSWORD" not in spec
    assert spec.count("{connection_file}") == 1
    assert "argv-secret-3" not in json.dumps(box)
