"""``course demo``: the instructor's pipeline on known submissions, end to end, in a few minutes.

It trains the course's small VAE on real CartPole frames, then for each homework releases the
assignment (student notebooks and kit), grades three submissions through real nbgrader in the
sandbox (the solutions, the blank release, and one with a classic bug) and prints the points per
activity: full marks, zero, and the bug's activity lost.
"""

from __future__ import annotations

import time
from pathlib import Path

from autograder import course, gradebook, pipeline, release
from autograder.submissions import copy_notebooks, replace_answer
from autograder.submissions.hw1_vae import TEMPLATE_RESET_BUG
from autograder.submissions.hw2_world_models import FLOOR_AFTER_MEAN_BUG


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


def run(out: Path) -> None:
    """Train a small VAE, then release each homework and grade known submissions of it; print the tables."""
    out = Path(out).resolve()
    assignment = "hw1_vae"
    start = time.perf_counter()
    print(f"0. a VAE on real CartPole frames: {_demo_reconstruction(out)}", flush=True)
    paths = release.release(assignment, out)
    print(f"1. released {assignment} to {paths['release']} and the student kit {paths['kit'].name}")
    submissions = out / "submissions"
    copy_notebooks(course.source_dir(assignment), submissions / "solutions")
    copy_notebooks(paths["release"], submissions / "blank")
    reset_bug = copy_notebooks(course.source_dir(assignment), submissions / "reset_bug")
    replace_answer(reset_bug / "03_curating_cartpole.ipynb", "a3_collect_frames", TEMPLATE_RESET_BUG)
    print("2. submissions: solutions (the source), blank (the release), reset_bug (the homework template's reset loop)")
    print("3. autograding through nbgrader ...", flush=True)
    reports = pipeline.autograde(assignment, submissions, out / "grades", workers=2)
    for r in reports:
        print(f"   {r.student_id}: {r.summary()} ({r.seconds:.1f} s)")
    print("\nautograded points per activity (written answers are graded by hand):")
    print(gradebook.format_table(gradebook.activity_scores(out / "grades" / "cells.csv")))
    print(f"\ngrades: {out / 'grades' / 'grades.csv'}\ncells:  {out / 'grades' / 'cells.csv'}")
    print(f"feedback: {out / 'grades' / 'feedback'}/<student>/*.html")
    print(f"class report: {out / 'grades' / 'report' / 'index.html'} (open it in a browser)")
    _demo_hw2(out / "hw2")
    print(f"done in {time.perf_counter() - start:.0f} s")


def _demo_hw2(out: Path) -> None:
    """Release hw2_world_models and grade the solutions, the blank release and one mutant."""
    assignment = "hw2_world_models"
    print(f"\n--- homework 2 ({assignment}) ---")
    paths = release.release(assignment, out)
    print(f"1. released {assignment} to {paths['release']} and the student kit {paths['kit'].name}")
    submissions = out / "submissions"
    copy_notebooks(course.source_dir(assignment), submissions / "solutions")
    copy_notebooks(paths["release"], submissions / "blank")
    floor_bug = copy_notebooks(course.source_dir(assignment), submissions / "kl_floor_bug")
    replace_answer(floor_bug / "02_vae_loss.ipynb", "w2_vae_loss", FLOOR_AFTER_MEAN_BUG)
    print("2. submissions: solutions, blank, kl_floor_bug (the KL floor applied after the batch mean)")
    print("3. autograding through nbgrader ...", flush=True)
    reports = pipeline.autograde(assignment, submissions, out / "grades", workers=2)
    for r in reports:
        print(f"   {r.student_id}: {r.summary()} ({r.seconds:.1f} s)")
    print("\nautograded points per activity (written answers are graded by hand):")
    print(gradebook.format_table(gradebook.activity_scores(out / "grades" / "cells.csv")))
    print(f"\ngrades: {out / 'grades' / 'grades.csv'}\nfeedback: {out / 'grades' / 'feedback'}/<student>/*.html")
    print(f"class report: {out / 'grades' / 'report' / 'index.html'}")
