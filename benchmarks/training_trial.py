"""What ``fit(precision="auto")``'s trial adds to a run, measured in fresh processes (``bench_training.py``).

The trial's own wall time overstates its cost: a run without it pays the one-time setup of a
process (memory, threads, oneDNN's kernels) on its first step instead. So :func:`trial_cost`
compares fresh processes with and without it. ``python benchmarks/training_trial.py SHARDS
{auto|PRECISION} BATCH LR KL_TOLERANCE`` is one such process; it prints JSON.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

#: Steps of ``fit`` after the trial (or without it): enough to hold the first step's setup.
RUN_STEPS = 8


def one_process(shards: str, precision: str, batch_size: int, lr: float, kl_tolerance: float) -> dict[str, Any]:
    """The timed part of one process: the trial if ``precision`` is ``"auto"``, then ``fit``."""
    import torch

    from course_lib.data import ShardDataset
    from course_lib.precision import AUTO, choose_precision
    from course_lib.solutions.conv_vae import ConvVAE
    from course_lib.train import fit

    data = ShardDataset(shards)
    torch.manual_seed(0)
    model = ConvVAE()
    start = time.perf_counter()
    trial = None
    if precision == AUTO:
        trial = choose_precision(model, data, batch_size=batch_size, device="cpu", kl_tolerance=kl_tolerance, lr=lr)
        precision = trial.chosen
    fit(
        model,
        data,
        batch_size=batch_size,
        lr=lr,
        kl_tolerance=kl_tolerance,
        max_steps=RUN_STEPS,
        device="cpu",
        progress=False,
        precision=precision,
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "precision": precision, "trial": None if trial is None else asdict(trial)}


def _run(shards: Path, precision: str, batch_size: int, lr: float, kl_tolerance: float) -> dict[str, Any]:
    """:func:`one_process` in a fresh Python process."""
    argv = [sys.executable, __file__, str(shards), precision, str(batch_size), str(lr), str(kl_tolerance)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def trial_cost(shards: Path, batch_size: int, lr: float, kl_tolerance: float, rounds: int = 3) -> dict[str, Any]:
    """The trial's cost to a run: the median over ``rounds`` of (with trial - without) in fresh processes.

    Each round starts a process with the trial (:func:`course_lib.precision.choose_precision`, then
    ``fit`` with the path it chose, :data:`RUN_STEPS` steps), then one without it (``fit`` with that
    path from the start); each is timed from after the imports and the model's construction to
    ``fit``'s return.

    Returns:
        ``seconds`` (the median difference), ``trial_seconds`` (the median of the trial's own wall
        time), ``chosen`` (the path of each round), and the ``samples`` of both kinds of process.
    """
    with_trial, without, chosen, own = [], [], [], []
    for _ in range(rounds):
        auto = _run(shards, "auto", batch_size, lr, kl_tolerance)
        plain = _run(shards, auto["precision"], batch_size, lr, kl_tolerance)
        with_trial.append(auto["seconds"])
        without.append(plain["seconds"])
        chosen.append(auto["precision"])
        own.append(auto["trial"]["seconds"])
    differences = [a - b for a, b in zip(with_trial, without, strict=True)]
    return {
        "seconds": round(statistics.median(differences), 3),
        "trial_seconds": round(statistics.median(own), 3),
        "chosen": chosen,
        "with_trial_seconds": [round(x, 3) for x in with_trial],
        "without_trial_seconds": [round(x, 3) for x in without],
        "run_steps_after": RUN_STEPS,
    }


if __name__ == "__main__":
    shards, precision, batch, lr, kl = sys.argv[1:6]
    print(json.dumps(one_process(shards, precision, int(batch), float(lr), float(kl))))
