"""Submit-to-feedback time with ``course watch``: how long a student waits for feedback.

The instructor releases hw1 to a fresh exchange and starts ``course watch`` (the real command, in its
own process); a student submits the whole homework (the source notebooks, i.e. correct answers) with
nbgrader's own ``submit``; the clock stops when the student's ``fetch_feedback`` brings a page for
every notebook. With ``--students N`` that many students submit at once, and the time of the last one
is reported too (they queue for ``--workers``). Every student must score full marks (checked).

Target: hw1 feedback fetchable at most 3 minutes after Submit on a 2-core machine.

Usage: ``python benchmarks/bench_watch.py [--students 1] [--workers 1]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import conditions, emit, log, machine

from autograder import course, exchange, release
from autograder.watch import Ledger

ASSIGNMENT = "hw1_vae"
COURSE = "bench"
TARGET_S = 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=1, help="students submitting at the same moment")
    parser.add_argument("--workers", type=int, default=1, help="the watcher's --workers")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = parser.parse_args()
    before = conditions()
    with tempfile.TemporaryDirectory(prefix="bench_watch_") as tmp:
        tmp = Path(tmp)
        exchange_dir = tmp / "exchange"
        paths = release.release(ASSIGNMENT, tmp / "instructor")
        exchange.release_assignment(ASSIGNMENT, paths["root"], exchange_dir, COURSE)
        cmd = [sys.executable, "-m", "autograder.cli", "watch", ASSIGNMENT, "--out", str(tmp / "watch")]
        cmd += ["--exchange", str(exchange_dir), "--course-id", COURSE, "--workers", str(args.workers)]
        cmd += ["--interval", "1"]
        watcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            students = [f"student_{k}" for k in range(args.students)]
            for name in students:  # fetched first, like students working for days before submitting
                home = tmp / "homes" / name
                exchange.as_student("fetch_assignment", ASSIGNMENT, name, home, exchange_dir, COURSE)
                for notebook in course.notebook_names(ASSIGNMENT):
                    shutil.copy(course.source_dir(ASSIGNMENT) / notebook, home / ASSIGNMENT / notebook)
            submitted = {}
            for name in students:
                exchange.as_student("submit", ASSIGNMENT, name, tmp / "homes" / name, exchange_dir, COURSE)
                submitted[name] = time.perf_counter()
            waited: dict[str, float] = {}
            while len(waited) < len(students) and time.perf_counter() - min(submitted.values()) < args.timeout:
                if not (exchange_dir / COURSE / "feedback").is_dir():  # nothing released yet: fetch_feedback would fail
                    time.sleep(1)
                    continue
                for name in set(students) - set(waited):
                    home = tmp / "homes" / name
                    exchange.as_student("fetch_feedback", ASSIGNMENT, name, home, exchange_dir, COURSE)
                    if len(exchange.fetched_feedback(ASSIGNMENT, home)) >= len(course.notebook_names(ASSIGNMENT)):
                        waited[name] = round(time.perf_counter() - submitted[name], 1)
                        log(f"{name}: feedback fetched {waited[name]} s after Submit")
                time.sleep(2)
        finally:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait()
        ledger = Ledger(tmp / "watch" / "watch.json")
        scores = {s: (g.score, g.max_score) for s, g in ledger.latest.items()}
    emit(
        {
            "benchmark": "watch",
            "machine": machine(),
            "conditions_before": before,
            "conditions_after": conditions(),
            "students": args.students,
            "workers": args.workers,
            "seconds_submit_to_feedback": waited,
            "first_s": min(waited.values()) if waited else None,
            "last_s": max(waited.values()) if waited else None,
            "scores": scores,
            "targets": {
                "first_feedback_within_3_min": bool(waited) and min(waited.values()) <= TARGET_S,
                "all_full_marks": bool(scores) and all(s == m > 0 for s, m in scores.values()),
                "every_student_got_feedback": len(waited) == args.students,
            },
        }
    )


if __name__ == "__main__":
    main()
