"""The ``course`` command: release, collect, autograde, feedback, watch, export, doctor and demo.

Examples::

    course release hw1_vae --out build/hw1                                   # notebooks + student kit
    course release hw1_vae --out build/hw1 --exchange /srv/nbgrader/exchange --course-id vae101
    course collect hw1_vae --out build/hw1 --exchange /srv/nbgrader/exchange --course-id vae101
    course autograde hw1_vae build/hw1/course/collected --out build/hw1 --workers 2
    course feedback hw1_vae --out build/hw1 --release --exchange /srv/nbgrader/exchange --course-id vae101
    course watch hw1_vae --out build/watch --exchange /srv/nbgrader/exchange --course-id vae101 --workers 2
    course autograde hw1_vae submissions/ --out build/grades --db postgresql://grader@db/course --shard 1/3
    course export hw1_vae --out build/all --db postgresql://grader@db/course
    course report hw1_vae --out build/hw1                                    # build/hw1/report/index.html
    course report --term --out build/hw1 --runs build/hw2                    # build/hw1/term/index.html, term.csv
    course export hw1_vae --out build/hw1 --format canvas --roster roster.csv --lms-assignment 12345
    course release hw1_vae --out build/hw1 --due "2027-02-01 23:59 America/Los_Angeles"
    course extend alice hw1_vae --hours 48 --out build/hw1
    course similarity hw1_vae --out build/hw1 --threshold 0.5                  # build/hw1/similarity.json
    course similarity hw1_vae --out build/hw1 --against archive/2025-fall archive/2026-spring
    course doctor --exchange /srv/nbgrader/exchange --course-id vae101 --db postgresql://grader@db/course
    course demo --out demo_out
    course train-vae --shards data/carracing --out runs/conv_vae.pt --epochs 10
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder import (
    course,
    demo,
    exchange,
    gradebook,
    grading,
    intake,
    lms,
    pipeline,
    preflight,
    release,
    shards,
    watch,
)
from autograder.class_report import write_class_report
from autograder.deadlines import DUE_EXAMPLE, course_gradebooks, format_utc, grant_extension, parse_due
from autograder.report import report_line
from autograder.sandbox import SandboxUnavailableError
from autograder.similarity import DEFAULT_THRESHOLD, describe, review
from autograder.term_report import write_term_report
from course_lib import lab_setup

#: One argument of a command: the flags and options of :meth:`argparse.ArgumentParser.add_argument`.
Argument = tuple[tuple[str, ...], dict[str, Any]]
#: Every command of ``course``, by name, in the order ``course --help`` lists them (:func:`command`).
COMMANDS: dict[str, Command] = {}


@dataclass(frozen=True)
class Command:
    """A ``course`` subcommand: its one-line help, its arguments (:func:`arg`) and what it runs."""

    help: str
    arguments: tuple[Argument, ...]
    run: Callable[[argparse.Namespace], int]


def arg(*flags: str, **options: Any) -> Argument:
    """One argument of a command, as :meth:`argparse.ArgumentParser.add_argument` takes it."""
    return flags, options


def command(name: str, help: str, *arguments: Argument) -> Callable[[Callable], Callable]:
    """Decorator: declare the function as ``course NAME``, taking ``arguments``.

    Raises:
        ValueError: if ``name`` is declared twice.
    """

    def declare(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in COMMANDS:
            raise ValueError(f"the command {name!r} is declared twice")
        COMMANDS[name] = Command(help, arguments, run)
        return run

    return declare


def _due(text: str) -> datetime.datetime:
    """``--due "2027-02-01 23:59 America/Los_Angeles"`` -> naive UTC (:func:`autograder.deadlines.parse_due`)."""
    try:
        return parse_due(text)
    except course.PipelineError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``: the second of three machines; ``"auto"``: as the cluster's scheduler says."""
    if text == "auto":  # a Kubernetes Indexed Job or a Slurm job array (docs/clusters.md)
        try:
            return shards.shard_from_environment(os.environ)
        except course.PipelineError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N, e.g. 2/3 for the second of three machines") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 <= K <= N")
    return k, n


ASSIGNMENT = arg("assignment")
OUT = arg("--out", required=True)
COURSE_ID = arg("--course-id", default=course.COURSE_ID, help=f"the exchange's course id ({course.COURSE_ID})")
DUE = arg(
    "--due",
    type=_due,
    metavar="'DATE TIME ZONE'",
    help=f"the due date, set in the gradebook, e.g. '{DUE_EXAMPLE}' (default: the gradebook's)",
)


def exchange_options(required: bool) -> tuple[Argument, Argument]:
    """``--exchange DIR`` (nbgrader's exchange folder) and ``--course-id``."""
    return arg("--exchange", required=required, metavar="DIR", help="nbgrader's exchange folder"), COURSE_ID


@command(
    "release",
    "student notebooks and kit; with --exchange, published to nbgrader's exchange",
    ASSIGNMENT,
    OUT,
    *exchange_options(required=False),
    DUE,
)
def _release(args: argparse.Namespace) -> int:
    paths = release.release(args.assignment, Path(args.out), due=args.due)
    print(f"released {args.assignment}: {paths['release']}")
    if args.due:
        print(f"due {format_utc(args.due)} (in the gradebook of {paths['root']})")
    print(f"student kit: {paths['kit']}")
    if args.exchange:
        outbound = exchange.release_assignment(args.assignment, paths["root"], Path(args.exchange), args.course_id)
        print(f"published to the exchange: {outbound} (students fetch it in JupyterLab's Assignments panel)")
    return 0


@command(
    "collect",
    "the latest submission of each student from the exchange (nbgrader collect)",
    ASSIGNMENT,
    OUT,
    *exchange_options(required=True),
)
def _collect(args: argparse.Namespace) -> int:
    out = Path(args.out)
    root = course.prepare_course(args.assignment, out)
    collected = exchange.collect(args.assignment, root, Path(args.exchange), args.course_id)
    students = sorted(p.name for p in collected.iterdir() if p.is_dir()) if collected.exists() else []
    print(f"collected the latest submission of {len(students)} students into {collected}: {', '.join(students)}")
    print(f"grade them with: course autograde {args.assignment} {collected} --out {out}")
    return 0


@command(
    "autograde",
    "grade a folder of submissions (one sub-folder per student)",
    ASSIGNMENT,
    arg("submissions"),
    OUT,
    arg("--cell-timeout", type=int, default=300, help="seconds per cell (default 300)"),
    arg("--timeout", type=int, default=900, help="seconds per submission (default 900)"),
    arg("--workers", type=int, default=1, help="students graded at once (default 1)"),
    arg(
        "--db",
        metavar="URL",
        help="a shared gradebook, e.g. postgresql://USER@HOST/DB (default: sqlite files in OUT/course)",
    ),
    arg(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="K/N",
        help="grade every N-th student from the K-th (machines); auto: from a Kubernetes Indexed Job or Slurm array",
    ),
    arg(
        "--no-sandbox", action="store_true", help="run student code without the bubblewrap sandbox (trusted code only)"
    ),
    DUE,
)
def _autograde(args: argparse.Namespace) -> int:
    out = Path(args.out)
    reports = pipeline.autograde(
        args.assignment,
        Path(args.submissions),
        out,
        cell_timeout=args.cell_timeout,
        submission_timeout=args.timeout,
        sandbox=not args.no_sandbox,
        workers=args.workers,
        db_url=args.db,
        shard=args.shard,
        due=args.due,
    )
    if not reports:
        k, n = args.shard
        print(f"shard {k}/{n}: no students to grade (there are fewer students than shards); nothing changed")
        return 0
    for r in reports:
        print(report_line(r))
    print(gradebook.format_table(gradebook.activity_scores(out / "cells.csv")))
    print(f"wrote {out / 'grades.csv'}, {out / 'cells.csv'}, {out / 'report.txt'} and {out / 'feedback'}/")
    return 0


@command(
    "feedback",
    "generate the feedback again (after manual grading); --release hands it back",
    ASSIGNMENT,
    OUT,
    arg("--release", action="store_true", help="make it fetchable in the students' Assignments panel"),
    arg("--no-generate", action="store_true", help="release the feedback as it is"),
    arg("--db", metavar="URL", help="the shared gradebook the run was graded into"),
    *exchange_options(required=False),
)
def _feedback(args: argparse.Namespace) -> int:
    out = Path(args.out)
    root = out / "course"
    index = gradebook.read_index(root)
    if not args.no_generate:  # again, e.g. after manual grading in the formgrader
        for book, students in index.items():
            for student in students:
                problem = grading.generate_feedback(args.assignment, root, student, args.db or book)
                print(f"{student}: {problem or 'feedback written'}")
                pipeline.copy_feedback(root, args.assignment, student, out / "feedback" / student)
    if args.release:
        if not args.exchange:
            print("course: --release needs --exchange (and --course-id)", file=sys.stderr)
            return 2
        exchange.release_feedback(args.assignment, root, Path(args.exchange), args.course_id)
        print(f"feedback released to {Path(args.exchange) / args.course_id / 'feedback'}; students fetch it")
    return 0


@command(
    "watch",
    "grade each submission as it arrives and release its feedback (runs until stopped)",
    ASSIGNMENT,
    OUT,
    *exchange_options(required=True),
    arg("--workers", type=int, default=1, help="submissions graded at once (default 1)"),
    arg("--cell-timeout", type=int, default=120, help="seconds per cell (default 120)"),
    arg("--timeout", type=int, default=300, help="seconds per submission (default 300)"),
    arg("--interval", type=float, default=2.0, help="seconds between two looks at the exchange"),
    arg("--once", action="store_true", help="stop when nothing is waiting (for a cron job)"),
    arg("--no-sandbox", action="store_true", help="run student code without the sandbox (trusted code only)"),
    DUE,
)
def _watch(args: argparse.Namespace) -> int:
    settings = watch.WatchSettings(
        cell_timeout=args.cell_timeout,
        submission_timeout=args.timeout,
        workers=args.workers,
        interval=args.interval,
        sandbox=not args.no_sandbox,
        due=args.due,
    )
    try:
        watch.watch(args.assignment, Path(args.exchange), Path(args.out), args.course_id, settings, once=args.once)
    except KeyboardInterrupt:
        print("stopped; start the same command again to go on where it stopped")
    return 0


@command(
    "extend",
    "give a student more time for an assignment (nbgrader's grant_extension)",
    arg("student"),
    ASSIGNMENT,
    arg("--hours", type=float, required=True, help="hours after the due date (0 removes the extension)"),
    arg("--out", required=True, help="the run whose gradebooks (OUT/course/gradebook*.db) get it"),
    arg("--db", metavar="URL", help="a shared gradebook instead, e.g. postgresql://USER@HOST/DB"),
    arg("--new-student", action="store_true", help="the student has not submitted yet: enter them"),
)
def _extend(args: argparse.Namespace) -> int:
    root = Path(args.out) / "course"
    books = [args.db] if args.db else course_gradebooks(root)
    grant_extension(args.assignment, args.student, args.hours, root, books, new_student=args.new_student)
    given = f"{args.hours:g} more hours" if args.hours else "no extension (removed)"
    print(f"{args.student}: {given} for {args.assignment} in {', '.join(gradebook.redact(b) for b in books)}")
    print("it counts from the next grading of the submission (course autograde, or the watcher's next grading)")
    return 0


@command(
    "import-submissions",
    "unpack an LMS zip (nbgrader zip_collect naming) into one folder per student",
    arg("zip"),
    arg("--assignment", required=True),
    OUT,
)
def _import(args: argparse.Namespace) -> int:
    problems = intake.import_submissions(args.assignment, Path(args.zip), Path(args.out))
    students = sorted(p.name for p in Path(args.out).iterdir() if p.is_dir())
    print(f"imported {len(students)} students into {args.out}: {', '.join(students)}")
    for problem in problems:
        print(f"  problem: {problem}")
    return 0


@command(
    "export",
    "rewrite grades.csv and cells.csv from the gradebook in OUT/course",
    ASSIGNMENT,
    OUT,
    arg("--db", metavar="URL", help="export every student of this shared gradebook instead"),
    arg(
        "--format",
        choices=lms.FORMATS,
        default="csv",
        help="csv: grades.csv and cells.csv; canvas, moodle: OUT/ASSIGNMENT_<format>.csv to import (needs --roster)",
    ),
    arg("--roster", metavar="ROSTER.csv", help="gradebook student_id -> LMS ids (docs/instructors.md)"),
    arg("--key", choices=lms.MOODLE_KEYS, default="email", help="moodle: the account field to match on"),
    arg(
        "--lms-assignment",
        metavar="ID",
        help="canvas: the assignment id to update (else Canvas creates one); moodle: the grade column's title",
    ),
)
def _export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    root = out / "course"
    if args.db:  # the whole class in a shared gradebook, whichever machine graded whom
        gradebook.check_db_url(args.db)
        students = gradebook.graded_students(args.assignment, args.db)
        books = {gradebook.redact(args.db): students}
        source = f" ({len(students)} students from {gradebook.redact(args.db)})"
    else:
        books, source = gradebook.read_index(root), ""
    if args.format == "csv":
        grades, cells = gradebook.export(args.assignment, root, out, books, args.db)
        print(f"wrote {grades} and {cells}{source}")
        if not args.roster:
            return 0
    sources = gradebook.sources(root, books, args.db)
    roster = Path(args.roster) if args.roster else None
    result = lms.export(args.assignment, args.format, out, sources, roster, args.key, args.lms_assignment)
    for line in result.lines():
        print(line)
    return 0 if result.reconciliation.complete else 1


@command(
    "report",
    "the class report (students, lateness, histograms, failures, flagged); --term: every assignment",
    arg("assignment", nargs="?", help="the assignment (not with --term)"),
    arg("--out", required=True, help="the folder `course autograde` or `course watch` wrote"),
    arg(
        "--term",
        action="store_true",
        help="one page and term.csv over every assignment of the gradebooks of OUT, --runs and --db (OUT/term)",
    ),
    arg("--dest", metavar="DIR", help="where to write the page and its plots (default OUT/report, OUT/term)"),
    arg("--db", metavar="URL", help="report every student of this shared gradebook"),
    arg(
        "--runs",
        nargs="*",
        default=[],
        metavar="DIR",
        help="the OUT folders of the other machines of a sharded run; with --term, of the other assignments too",
    ),
)
def _report(args: argparse.Namespace) -> int:
    if args.db:
        gradebook.check_db_url(args.db)
    if args.term:  # every assignment of the gradebooks: term_report
        dest = Path(args.dest) if args.dest else None
        page = write_term_report(Path(args.out), tuple(Path(r) for r in args.runs), args.db, dest)
        print(f"wrote {page} and {page.with_name('term.csv')} (open the page in a browser)")
        return 0
    if not args.assignment:
        print("course report: name the assignment, or pass --term for every assignment", file=sys.stderr)
        return 2
    page = write_class_report(
        args.assignment,
        Path(args.out),
        Path(args.dest) if args.dest else None,
        url=args.db,
        runs=tuple(Path(r) for r in args.runs),
    )
    print(f"wrote {page} (open it in a browser)")
    return 0


@command(
    "similarity",
    "pairs of submissions with similar answer cells, for review",
    ASSIGNMENT,
    arg("--out", required=True, help="the folder `course autograde` wrote; similarity.json goes there"),
    arg("--submissions", metavar="DIR", help="one folder per student (default: the graded ones in OUT)"),
    arg(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"similarity in (0, 1] at which an answer cell is listed ({DEFAULT_THRESHOLD})",
    ),
    arg(
        "--against",
        nargs="+",
        default=[],
        metavar="DIR",
        help="earlier terms' submissions to compare with too: their --out folders, or one sub-folder per student",
    ),
)
def _similarity(args: argparse.Namespace) -> int:
    submissions = Path(args.submissions) if args.submissions else None
    against = tuple(Path(a) for a in args.against)
    result = review(args.assignment, Path(args.out), submissions, args.threshold, against)
    for line in describe(result["pairs"]):
        print(line)
    earlier = f" and {result['earlier_students']} of earlier terms" if against else ""
    print(
        f"{len(result['pairs'])} pairs of {result['students']} students{earlier} at or above {args.threshold}; "
        f"wrote {Path(args.out) / 'similarity.json'} (for review, not a verdict)"
    )
    return 0


@command(
    "doctor",
    "can this machine grade? the sandbox, a kernel, the exchange and the gradebook, with fixes",
    arg("--exchange", metavar="DIR", help="also check nbgrader's exchange folder"),
    COURSE_ID,
    arg("--db", metavar="URL", help="also check that this gradebook opens (PGPASSWORD for its password)"),
)
def _doctor(args: argparse.Namespace) -> int:
    checks = preflight.doctor(Path(args.exchange) if args.exchange else None, args.course_id, args.db)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print("grading can run here" if not failed else f"grading cannot run here: {len(failed)} check(s) failed")
    return 1 if failed else 0


@command(
    "student-config",
    "print an nbgrader_config.py for students (exchange and course id)",
    *exchange_options(required=True),
)
def _student_config(args: argparse.Namespace) -> int:
    print(lab_setup.student_config(Path(args.exchange), args.course_id), end="")
    return 0


@command(
    "demo",
    "release hw1_vae and hw2_world_models and grade known submissions of each",
    arg("--out", default="demo_out"),
)
def _demo(args: argparse.Namespace) -> int:
    demo.run(Path(args.out))
    return 0


TRAIN_VAE_HELP = "train the World Models VAE on a folder of shards (python -m course_lib.train_vae; see --help)"


def _train_vae(argv: list[str]) -> int:
    from course_lib import train_vae

    return train_vae.main(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``course`` command: parse, then run the command's function (:data:`COMMANDS`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-vae"]:  # its own parser: python -m course_lib.train_vae
        return _train_vae(argv[1:])
    parser = argparse.ArgumentParser(prog="course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, declared in COMMANDS.items():
        p = sub.add_parser(name, help=declared.help)
        for flags, options in declared.arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(run=declared.run)
    sub.add_parser("train-vae", add_help=False, help=TRAIN_VAE_HELP)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (course.PipelineError, SandboxUnavailableError) as err:
        print(f"course: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
