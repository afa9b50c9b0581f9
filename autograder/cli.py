"""The ``course`` command: release, autograde (with feedback), export and demo.

Examples::

    course release hw1_vae --out build/hw1
    course autograde hw1_vae submissions/ --out build/grades
    course demo --out demo_out
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from autograder import pipeline
from autograder.submissions import SEED_RESET_BUG, copy_notebooks, replace_answer


def _release(args: argparse.Namespace) -> int:
    paths = pipeline.release(args.assignment, Path(args.out))
    print(f"released {args.assignment}: {paths['release']}")
    print(f"student kit: {paths['kit']}")
    return 0


def _autograde(args: argparse.Namespace) -> int:
    out = Path(args.out)
    reports = pipeline.autograde(
        args.assignment, Path(args.submissions), out, cell_timeout=args.cell_timeout, submission_timeout=args.timeout
    )
    for r in reports:
        print(f"{r.student_id}: {'ok' if not r.problems else '; '.join(r.problems)} ({r.seconds:.1f} s)")
    print(pipeline.format_table(pipeline.activity_scores(out / "cells.csv")))
    print(f"wrote {out / 'grades.csv'}, {out / 'cells.csv'}, {out / 'report.txt'} and {out / 'feedback'}/")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    root = out / "course"
    students = sorted(p.name for p in (root / "autograded").iterdir() if p.is_dir())
    grades, cells = pipeline.export(args.assignment, root, out, students)
    print(f"wrote {grades} and {cells}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Release hw1_vae, grade three known submissions through nbgrader, print the table."""
    out = Path(args.out).resolve()
    assignment = "hw1_vae"
    start = time.perf_counter()
    paths = pipeline.release(assignment, out)
    print(f"1. released {assignment} to {paths['release']} and the student kit {paths['kit'].name}")
    submissions = out / "submissions"
    copy_notebooks(pipeline.source_dir(assignment), submissions / "solutions")
    copy_notebooks(paths["release"], submissions / "blank")
    reset_bug = copy_notebooks(pipeline.source_dir(assignment), submissions / "reset_bug")
    replace_answer(reset_bug / "03_curating_cartpole.ipynb", "a3_collect_frames", SEED_RESET_BUG)
    print("2. submissions: solutions (the source), blank (the release), reset_bug (the seed's reset loop)")
    print("3. autograding through nbgrader ...", flush=True)
    reports = pipeline.autograde(assignment, submissions, out / "grades")
    for r in reports:
        print(f"   {r.student_id}: {'ok' if not r.problems else '; '.join(r.problems)} ({r.seconds:.1f} s)")
    print("\nautograded points per activity (written answers are graded by hand):")
    print(pipeline.format_table(pipeline.activity_scores(out / "grades" / "cells.csv")))
    print(f"\ngrades: {out / 'grades' / 'grades.csv'}\ncells:  {out / 'grades' / 'cells.csv'}")
    print(f"feedback: {out / 'grades' / 'feedback'}/<student>/*.html")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``course`` command."""
    parser = argparse.ArgumentParser(prog="course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="student notebooks (nbgrader generate_assignment) and the student kit")
    p.add_argument("assignment")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_release)

    p = sub.add_parser("autograde", help="grade a folder of submissions (one sub-folder per student)")
    p.add_argument("assignment")
    p.add_argument("submissions")
    p.add_argument("--out", required=True)
    p.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell (default 300)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per submission (default 900)")
    p.set_defaults(func=_autograde)

    p = sub.add_parser("export", help="rewrite grades.csv and cells.csv from the gradebook in OUT/course")
    p.add_argument("assignment")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_export)

    p = sub.add_parser("demo", help="release hw1_vae and grade three known submissions")
    p.add_argument("--out", default="demo_out")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except pipeline.PipelineError as err:
        print(f"course: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
