"""The ``course`` command: release, autograde (with feedback), export and demo.

Examples::

    course release hw1_vae --out build/hw1
    course autograde hw1_vae submissions/ --out build/grades --workers 2
    course autograde hw1_vae submissions/ --out build/grades --db postgresql://grader@db/course --shard 1/3
    course export hw1_vae --out build/all --db postgresql://grader@db/course
    course demo --out demo_out
    course train-vae --shards data/carracing --out runs/conv_vae.pt --epochs 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from autograder import pipeline
from autograder.sandbox import SandboxUnavailableError
from autograder.submissions import FLOOR_AFTER_MEAN_BUG, TEMPLATE_RESET_BUG, copy_notebooks, replace_answer


def _release(args: argparse.Namespace) -> int:
    paths = pipeline.release(args.assignment, Path(args.out))
    print(f"released {args.assignment}: {paths['release']}")
    print(f"student kit: {paths['kit']}")
    return 0


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
    )
    for r in reports:
        print(f"{r.student_id}: {'ok' if not r.problems else '; '.join(r.problems)} ({r.seconds:.1f} s)")
    print(pipeline.format_table(pipeline.activity_scores(out / "cells.csv")))
    print(f"wrote {out / 'grades.csv'}, {out / 'cells.csv'}, {out / 'report.txt'} and {out / 'feedback'}/")
    return 0


def _import(args: argparse.Namespace) -> int:
    problems = pipeline.import_submissions(args.assignment, Path(args.zip), Path(args.out))
    students = sorted(p.name for p in Path(args.out).iterdir() if p.is_dir())
    print(f"imported {len(students)} students into {args.out}: {', '.join(students)}")
    for problem in problems:
        print(f"  problem: {problem}")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    root = out / "course"
    if args.db:  # the whole class in a shared gradebook, whichever machine graded whom
        pipeline.check_db_url(args.db)
        students = pipeline.graded_students(args.assignment, args.db)
        grades, cells = pipeline.export(args.assignment, root, out, {pipeline.redact(args.db): students}, args.db)
        print(f"wrote {grades} and {cells} ({len(students)} students from {pipeline.redact(args.db)})")
        return 0
    index = root / "gradebooks.json"
    if not index.exists():
        print(f"course: {out} holds no graded run (no {index}); run `course autograde` first", file=sys.stderr)
        return 2
    grades, cells = pipeline.export(args.assignment, root, out, json.loads(index.read_text()))
    print(f"wrote {grades} and {cells}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``: the second of three machines."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N, e.g. 2/3 for the second of three machines") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 <= K <= N")
    return k, n


def _demo_reconstruction(out: Path) -> str:
    """Collect CartPole frames, train the course's small VAE briefly, save a reconstruction grid."""
    from course_lib.data import sample_frames, train_val_split
    from course_lib.models import SmallVAE
    from course_lib.train import fit, mean_image_baseline, seed_everything
    from course_lib.viz import reconstruction_grid

    seed_everything(0)
    train, val = train_val_split(sample_frames("CartPole-v1", 1200, seed=0, progress=False), 0.2, seed=0)
    model = SmallVAE(z_size=16, width=16).init_background(train)
    history = fit(model, train, val, num_epochs=4, batch_size=32, lr=2e-3, beta=0.01, progress=False)
    path = out / "reconstruction.png"
    reconstruction_grid(model, val[:8], path=path)
    mse, baseline = history.val[-1]["mse"], mean_image_baseline(train, val)
    return f"validation MSE {mse:.5f} vs mean-image baseline {baseline:.5f}; inputs above reconstructions in {path}"


def _demo(args: argparse.Namespace) -> int:
    """Release hw1_vae, grade three known submissions through nbgrader, print the table."""
    out = Path(args.out).resolve()
    assignment = "hw1_vae"
    start = time.perf_counter()
    print(f"0. a VAE on real CartPole frames: {_demo_reconstruction(out)}", flush=True)
    paths = pipeline.release(assignment, out)
    print(f"1. released {assignment} to {paths['release']} and the student kit {paths['kit'].name}")
    submissions = out / "submissions"
    copy_notebooks(pipeline.source_dir(assignment), submissions / "solutions")
    copy_notebooks(paths["release"], submissions / "blank")
    reset_bug = copy_notebooks(pipeline.source_dir(assignment), submissions / "reset_bug")
    replace_answer(reset_bug / "03_curating_cartpole.ipynb", "a3_collect_frames", TEMPLATE_RESET_BUG)
    print("2. submissions: solutions (the source), blank (the release), reset_bug (the seed's reset loop)")
    print("3. autograding through nbgrader ...", flush=True)
    reports = pipeline.autograde(assignment, submissions, out / "grades", workers=2)
    for r in reports:
        print(f"   {r.student_id}: {'ok' if not r.problems else '; '.join(r.problems)} ({r.seconds:.1f} s)")
    print("\nautograded points per activity (written answers are graded by hand):")
    print(pipeline.format_table(pipeline.activity_scores(out / "grades" / "cells.csv")))
    print(f"\ngrades: {out / 'grades' / 'grades.csv'}\ncells:  {out / 'grades' / 'cells.csv'}")
    print(f"feedback: {out / 'grades' / 'feedback'}/<student>/*.html")
    _demo_hw2(out / "hw2")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _demo_hw2(out: Path) -> None:
    """Release hw2_world_models and grade the solutions, the blank release and one mutant."""
    assignment = "hw2_world_models"
    print(f"\n--- homework 2 ({assignment}) ---")
    paths = pipeline.release(assignment, out)
    print(f"1. released {assignment} to {paths['release']} and the student kit {paths['kit'].name}")
    submissions = out / "submissions"
    copy_notebooks(pipeline.source_dir(assignment), submissions / "solutions")
    copy_notebooks(paths["release"], submissions / "blank")
    floor_bug = copy_notebooks(pipeline.source_dir(assignment), submissions / "kl_floor_bug")
    replace_answer(floor_bug / "02_vae_loss.ipynb", "w2_vae_loss", FLOOR_AFTER_MEAN_BUG)
    print("2. submissions: solutions, blank, kl_floor_bug (the KL floor applied after the batch mean)")
    print("3. autograding through nbgrader ...", flush=True)
    reports = pipeline.autograde(assignment, submissions, out / "grades", workers=2)
    for r in reports:
        print(f"   {r.student_id}: {'ok' if not r.problems else '; '.join(r.problems)} ({r.seconds:.1f} s)")
    print("\nautograded points per activity (written answers are graded by hand):")
    print(pipeline.format_table(pipeline.activity_scores(out / "grades" / "cells.csv")))
    print(f"\ngrades: {out / 'grades' / 'grades.csv'}\nfeedback: {out / 'grades' / 'feedback'}/<student>/*.html")


def _train_vae(argv: list[str]) -> int:
    from course_lib import train_vae

    return train_vae.main(argv)


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
    p.add_argument("--workers", type=int, default=1, help="students graded at once (default 1)")
    p.add_argument(
        "--db",
        metavar="URL",
        help="a shared gradebook, e.g. postgresql://USER@HOST/DB (default: sqlite files in OUT/course)",
    )
    p.add_argument(
        "--shard", type=_shard, default=(1, 1), metavar="K/N", help="grade every N-th student from the K-th (machines)"
    )
    p.add_argument(
        "--no-sandbox", action="store_true", help="run student code without the bubblewrap sandbox (trusted code only)"
    )
    p.set_defaults(func=_autograde)

    p = sub.add_parser(
        "import-submissions", help="unpack an LMS zip (nbgrader zip_collect naming) into one folder per student"
    )
    p.add_argument("zip")
    p.add_argument("--assignment", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_import)

    p = sub.add_parser("export", help="rewrite grades.csv and cells.csv from the gradebook in OUT/course")
    p.add_argument("assignment")
    p.add_argument("--out", required=True)
    p.add_argument("--db", metavar="URL", help="export every student of this shared gradebook instead")
    p.set_defaults(func=_export)

    p = sub.add_parser("demo", help="release hw1_vae and hw2_world_models and grade known submissions of each")
    p.add_argument("--out", default="demo_out")
    p.set_defaults(func=_demo)

    sub.add_parser(
        "train-vae",
        add_help=False,
        help="train the World Models VAE on a folder of shards (python -m course_lib.train_vae; see --help)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-vae"]:  # its own parser: python -m course_lib.train_vae
        return _train_vae(argv[1:])

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (pipeline.PipelineError, SandboxUnavailableError) as err:
        print(f"course: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
