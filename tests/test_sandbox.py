"""The sandbox's users: every kernel grading at the same time on a machine runs as a user of its own.

The process limit counts all processes of a user on the machine, so a fork bomb in one student's
kernel must not count against another kernel graded at the same time, by another worker or by
another grading run (a class run beside ``course watch``). :func:`autograder.sandbox.sandbox_user`
leases the users machine-wide with real file locks; these tests hold them from real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack

import pytest

from autograder.sandbox import NOBODY, SANDBOX_UIDS, SandboxUnavailableError, sandbox_user

#: A process that leases a user in the folder argv[1], prints it, and holds it until killed.
HOLDER = """
import sys, time
from pathlib import Path
from autograder.sandbox import sandbox_user
with sandbox_user(Path(sys.argv[1])) as uid:
    print(uid, flush=True)
    time.sleep(600)
"""


def _holder(leases) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(leases)], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_gradings_at_the_same_time_run_as_different_users(tmp_path):
    """Do two other processes and this one, leasing at the same time, get three different users,
    nobody's first?"""
    first, a = _holder(tmp_path)
    second, b = _holder(tmp_path)
    try:
        with sandbox_user(tmp_path) as c:
            assert a == NOBODY and len({a, b, c}) == 3 and {a, b, c} <= set(SANDBOX_UIDS)
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_a_killed_grader_leaks_no_user(tmp_path):
    """Is the user of a grader killed with SIGKILL (no clean-up ran) leased again at once, and is a
    user given back at the end of a ``with`` block leased again?"""
    proc, uid = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sandbox_user(tmp_path) as again:
        assert again == uid
    with sandbox_user(tmp_path) as once_more:
        assert once_more == uid


def test_no_user_left_is_a_clear_error(tmp_path):
    """With every user leased, is the next grading refused with what to do, rather than sharing a user?"""
    with ExitStack() as held:
        uids = [held.enter_context(sandbox_user(tmp_path)) for _ in SANDBOX_UIDS]
        assert sorted(uids) == sorted(SANDBOX_UIDS)
        with pytest.raises(SandboxUnavailableError, match="use fewer workers"), sandbox_user(tmp_path):
            pass
