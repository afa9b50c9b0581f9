"""Time of ``course similarity`` over a class of 200 submissions.

The class is generated from the source notebooks of the assignment: for each student and each answer
cell, one of the reference answer, the correct answers written differently
(``autograder.submissions``' alternatives), the mutants of that cell, or the blank release, drawn
with a fixed seed; then each answer's variables get the student's own names and its layout a
student's quirks (spacing, comments). Few versions per cell make most pairs alike somewhere, so
this is a heavy case for the output: many pairs are listed and written with both answers.

The clock runs around the real command (``python -m autograder.cli similarity``, its own process),
which reads every notebook, takes the release's code out, fingerprints every answer and compares
every pair.

Target: a class of 200 in under a minute on a 2-core machine.

Usage: ``python benchmarks/bench_similarity.py [--students 200] [--assignment hw1_vae] [--rounds 1]``
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from _common import OthersLoad, conditions, emit, log, machine, quiet_median, timed

from autograder import course, similarity
from autograder.submissions import copy_notebooks, replace_answer
from autograder.submissions.hw1_vae import HW1_ALTERNATIVES, HW1_MUTANTS
from autograder.submissions.hw2_world_models import HW2_ALTERNATIVES, HW2_MUTANTS

TARGET_S = 60.0
ALTERNATIVES = {**HW1_ALTERNATIVES, **HW2_ALTERNATIVES}
MUTANTS = {**HW1_MUTANTS, **HW2_MUTANTS}


def versions(assignment: str) -> dict[tuple[str, str], list[str]]:
    """Per answer cell ``(notebook, grade_id)``: the reference, its alternative, its mutants, the blank release."""
    release = similarity.released_cells(assignment).cells
    pool: dict[tuple[str, str], list[str]] = {}
    for (notebook, grade_id), released in release.items():
        reference = similarity.answer_cells(nbformat.read(course.source_dir(assignment) / notebook, as_version=4))[
            grade_id
        ]
        mutants = [m.code for m in MUTANTS.values() if (m.notebook, m.answer) == (notebook, grade_id)]
        alternative = [ALTERNATIVES[notebook, grade_id]] if (notebook, grade_id) in ALTERNATIVES else []
        pool[notebook, grade_id] = [reference, *alternative, *mutants, released]
    return pool


def disguised(code: str, rng: random.Random) -> str:
    """``code`` with its local variables renamed and its layout changed, as one student would."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    names = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)})
    suffix = rng.choice(["_", "_v", "2", "_tmp", "_x"])
    for name in names:
        if rng.random() < 0.7:
            code = re.sub(rf"\b{name}\b", f"{name}{suffix}", code)
    lines = code.splitlines()
    for k, line in enumerate(lines):
        if line.strip() and rng.random() < 0.2 and not line.rstrip().endswith(("\\", ",", "(")):
            lines[k] = f"{line}  # step {k}"
    return "\n".join(lines).replace(", ", rng.choice([", ", ",  ", " , "]))


def make_class(assignment: str, dest: Path, students: int, seed: int = 0) -> None:
    """``students`` submission folders in ``dest``, drawn from :func:`versions` with ``seed``."""
    rng = random.Random(seed)
    pool = versions(assignment)
    template = copy_notebooks(course.source_dir(assignment), dest / ".template")  # a dot folder: not a student
    for k in range(students):
        folder = copy_notebooks(template, dest / f"student_{k:03d}")
        for (notebook, grade_id), choices in pool.items():
            replace_answer(folder / notebook, grade_id, disguised(rng.choice(choices), rng))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--assignment", default="hw1_vae")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    before = conditions()
    with tempfile.TemporaryDirectory(prefix="bench_similarity_") as tmp:
        tmp = Path(tmp)
        log(f"generating {args.students} submissions of {args.assignment} ...")
        make_class(args.assignment, tmp / "class", args.students)
        cmd = [sys.executable, "-m", "autograder.cli", "similarity", args.assignment, "--out", str(tmp / "out")]
        cmd += ["--submissions", str(tmp / "class")]
        samples, others = [], []
        for r in range(args.rounds):
            with OthersLoad() as load:
                seconds = timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))
            samples.append(round(seconds, 2))
            others.append(load.percent)
            log(f"round {r + 1}/{args.rounds}: {seconds:.1f} s (others {load.percent}%)")
        result = json.loads((tmp / "out" / "similarity.json").read_text())
        json_mb = (tmp / "out" / "similarity.json").stat().st_size / 2**20
    median, used = quiet_median(samples, others)
    emit(
        {
            "benchmark": "similarity",
            "machine": machine(),
            "conditions_before": before,
            "conditions_after": conditions(),
            "assignment": args.assignment,
            "students": result["students"],
            "pairs_compared": result["students"] * (result["students"] - 1) // 2,
            "pairs_listed": len(result["pairs"]),
            "threshold": result["threshold"],
            "json_mb": round(json_mb, 2),
            "seconds": round(median, 2),
            "samples_s": samples,
            "others_cpu_percent": others,
            "median_over_rounds": used,
            "target_s": TARGET_S,
            "targets": {"class_of_200_within_1_min": result["students"] >= 200 and median <= TARGET_S},
        }
    )


if __name__ == "__main__":
    main()
