"""Wall time of autograding through ``autograder.pipeline.autograde`` (real nbgrader).

- **one submission** of hw1 (and of hw2 where ``assignments/source/hw2_world_models`` exists):
  the source notebooks, with their solutions, submitted as one student; the whole
  ``autograde`` call is timed (course root, ``generate_assignment``, grading, feedback, CSVs), and
  the student's own grading time (``StudentReport.seconds``) is reported beside it;
- **the judges' share**: the seconds the judges took in nbgrader's process
  (``StudentReport.judge_seconds``) over the student's grading time (target: at most 10%);
- **a class** of ``--class-size`` identical hw1 submissions, graded with ``workers=1`` and
  ``workers=2`` where ``autograde`` has a ``workers`` parameter (serial only otherwise).

Every submission must score full marks (checked), so a fast but broken run does not count.

Usage: ``python benchmarks/bench_grading.py [--class-size 20] [--quick] [--no-sandbox]``
"""

from __future__ import annotations

import argparse
import csv
import inspect
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import conditions, emit, load_average, log, machine

from autograder import course, pipeline

TARGET_ONE_HW1_S = 60.0
TARGET_SPEEDUP = 1.7
TARGET_JUDGE_SHARE = 0.10


def make_class(assignment: str, directory: Path, n: int) -> Path:
    """``n`` student folders ``student_00``... each holding the assignment's source notebooks."""
    source = course.ASSIGNMENTS / "source" / assignment
    for k in range(n):
        dest = directory / f"student_{k:02d}"
        dest.mkdir(parents=True)
        for nb in sorted(source.glob("*.ipynb")):
            shutil.copy(nb, dest / nb.name)
    return directory


def full_marks(cells_csv: Path) -> tuple[bool, float, float]:
    """Whether every autograded cell of every student scored its maximum; (ok, score, max)."""
    score = maximum = 0.0
    with cells_csv.open() as f:
        for row in csv.DictReader(f):
            if row["kind"] == "autograded":
                score += float(row["score"])
                maximum += float(row["max_score"])
    return score == maximum and maximum > 0, score, maximum


def where_the_time_goes(root: Path, student_seconds: float, top: int = 4) -> dict[str, dict[str, Any]]:
    """Where one student's grading time went, from the execution times nbclient stamps on every cell
    of the autograded notebooks. One row per notebook: the seconds its cells ran, the wait before its
    first cell (kernel start, nbgrader's preprocessors, the previous notebook's end) and its slowest
    cells; and a row ``outside the cells`` for the rest of the student's time (nbgrader's start, the
    gradebook, feedback)."""
    from datetime import datetime

    import nbformat

    def stamp(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    spans = []
    for path in sorted(root.glob("course/autograded/*/*/*.ipynb")):
        timed = []
        for cell in nbformat.read(path, as_version=4).cells:
            execution = cell.get("metadata", {}).get("execution", {})
            if "iopub.execute_input" in execution and "shell.execute_reply" in execution:
                name = cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id", "?")
                start, end = stamp(execution["iopub.execute_input"]), stamp(execution["shell.execute_reply"])
                timed.append((name, start, (end - start).total_seconds(), end))
        if timed:
            spans.append((timed[0][1], path.name, timed))
    rows: dict[str, dict[str, Any]] = {}
    previous, cells_total = None, 0.0
    for first, name, timed in sorted(spans):
        seconds = sum(t[2] for t in timed)
        cells_total += seconds
        slowest = sorted(timed, key=lambda t: t[2], reverse=True)[:top]
        rows[name] = {
            "cells_seconds": round(seconds, 2),
            "wait_before_first_cell_seconds": round((first - previous).total_seconds(), 2) if previous else None,
            "slowest_cells": ", ".join(f"{cell} {s:.2f} s" for cell, _, s, _ in slowest),
        }
        previous = timed[-1][3]
    rows["outside the cells"] = {
        "cells_seconds": None,
        "outside_cells_seconds": round(student_seconds - cells_total, 2),
    }
    return rows


def grade(assignment: str, n: int, workers: int | None, sandbox: bool | None) -> dict[str, Any]:
    """Autograde a class of ``n`` copies of the source; returns wall time and per-student times."""
    kwargs: dict[str, Any] = {}
    params = inspect.signature(pipeline.autograde).parameters
    if workers is not None:
        kwargs["workers"] = workers
    if sandbox is not None and "sandbox" in params:
        kwargs["sandbox"] = sandbox
    with tempfile.TemporaryDirectory(prefix=f"bench_grading_{assignment}_") as tmp:
        subs = make_class(assignment, Path(tmp) / "submissions", n)
        load = load_average()[0]
        start = time.perf_counter()
        reports = pipeline.autograde(assignment, subs, Path(tmp) / "out", **kwargs)
        wall = time.perf_counter() - start
        ok, score, maximum = full_marks(Path(tmp) / "out" / "cells.csv")
        profile = where_the_time_goes(Path(tmp) / "out", reports[0].seconds) if n == 1 else None
    result = {
        "students": n,
        "workers": workers or 1,
        "wall_seconds": round(wall, 1),
        "seconds_per_student": round(wall / n, 1),
        "student_seconds": [round(r.seconds, 1) for r in reports],
        # the judges' time in nbgrader's process (autograder.judging): the price of deciding outside
        # the student's kernel, loading PyTorch and the checks there included
        "judge_seconds": [round(r.judge_seconds, 2) for r in reports],
        "judge_share": round(sum(r.judge_seconds for r in reports) / max(sum(r.seconds for r in reports), 1e-9), 4),
        "problems": sorted({str(p) for r in reports for p in r.problems}),
        "full_marks": ok,
        "autograded_score": [score, maximum],
        "load_average_at_start": load,
        "load_average_at_end": load_average()[0],
    }
    if profile is not None:
        result["where_the_time_goes"] = profile
    log(f"{assignment} x{n} workers={workers or 1}: {wall:.1f} s (load {load} -> {result['load_average_at_end']})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--class-size", type=int, default=20, help="hw1 submissions in the class")
    parser.add_argument("--quick", action="store_true", help="a class of 4 and no hw2")
    parser.add_argument("--no-sandbox", action="store_true", help="grade without the bubblewrap sandbox")
    args = parser.parse_args()
    if args.quick:
        args.class_size = 4
    sandbox = False if args.no_sandbox else None
    has_workers = "workers" in inspect.signature(pipeline.autograde).parameters
    has_hw2 = (course.ASSIGNMENTS / "source" / "hw2_world_models").is_dir()
    load_before = conditions()

    single = {"hw1_vae": grade("hw1_vae", 1, None, sandbox)}
    if has_hw2 and not args.quick:
        single["hw2_world_models"] = grade("hw2_world_models", 1, None, sandbox)
    klass: dict[str, Any] = {"workers_1": grade("hw1_vae", args.class_size, 1 if has_workers else None, sandbox)}
    if has_workers:
        klass["workers_2"] = grade("hw1_vae", args.class_size, 2, sandbox)
        klass["speedup_2_vs_1"] = round(klass["workers_1"]["wall_seconds"] / klass["workers_2"]["wall_seconds"], 3)
    emit(
        {
            "benchmark": "grading",
            "machine": machine(),
            "conditions_before": load_before,
            "conditions_after": conditions(),
            "autograde_has_workers": has_workers,
            "one_submission": single,
            # per notebook of one submission: its cells' seconds, the wait before them, the slowest cells
            "where_the_time_goes": {
                f"{a}: {notebook}": row
                for a, r in single.items()
                for notebook, row in r.pop("where_the_time_goes").items()
            },
            "class_hw1": klass,
            "targets": {
                "one_hw1_under_60_s": single["hw1_vae"]["wall_seconds"] < TARGET_ONE_HW1_S,
                "judging_at_most_10_percent": all(r["judge_share"] <= TARGET_JUDGE_SHARE for r in single.values()),
                "two_workers_at_least_1.7x": klass.get("speedup_2_vs_1", 0.0) >= TARGET_SPEEDUP
                if has_workers
                else "not measured: autograde has no workers parameter",
                "all_full_marks": all(
                    r["full_marks"]
                    for r in [*single.values(), klass["workers_1"], *([klass["workers_2"]] if has_workers else [])]
                ),
            },
        }
    )


if __name__ == "__main__":
    main()
