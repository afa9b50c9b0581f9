"""Training images per second of ``course train-vae`` itself, with its defaults (``bench_training.py``).

The command runs in fresh processes (``python -m autograder.cli train-vae``, the ``course``
entry point) on the benchmark's shards, with every default but ``--no-progress``, for
:data:`SHORT` and then :data:`LONG` steps (``--max-steps``); its training rate is the difference of
steps over the difference of wall times, so that what both runs pay alike (starting Python and
PyTorch, reading the validation frames, the mean-image baseline, the thread count's first choice,
validating, writing the checkpoint) drops out. The median over the rounds is reported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: ``--max-steps`` of the short and the long run. From 40 steps ``fit`` chooses its thread count
#: (3 of its first 6 steps on one thread, which also builds oneDNN's kernels for one thread): both
#: runs are that long, so that this one-time cost drops out with the start-up, while the long
#: run's first check of the other count (2 steps, 50 steps after the choice) stays in, as it
#: does in a real run.
SHORT, LONG = 48, 160


def _wall(shards: Path, out: Path, steps: int) -> float:
    """Seconds of one ``course train-vae`` process of ``steps`` steps (raises with its stderr if it fails)."""
    argv = [
        sys.executable,
        "-m",
        "autograder.cli",
        "train-vae",
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--no-progress",
    ]
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def train_vae_rate(
    shards: Path, batch_size: int, rounds: int = 2, anchor: Callable[[], float] | None = None
) -> dict[str, Any]:
    """``course train-vae``'s training images/s on ``shards`` (at least ``LONG * batch_size`` training frames).

    ``anchor`` (the plain loop's images/s, measured in the calling process) runs before each
    round, so that the ratio to it is taken within the round.

    Returns:
        ``images_per_s`` (the median over ``rounds``), ``samples``, the ``anchor_samples`` and the
        ``steps`` of both runs.
    """
    rates, anchors = [], []
    with tempfile.TemporaryDirectory(prefix="bench_train_vae_") as tmp:
        out = Path(tmp) / "vae.pt"
        for _ in range(rounds):
            if anchor is not None:
                anchors.append(anchor())
            short, long = _wall(shards, out, SHORT), _wall(shards, out, LONG)
            rates.append((LONG - SHORT) * batch_size / (long - short))
    return {
        "images_per_s": round(statistics.median(rates), 1),
        "samples": [round(r, 1) for r in rates],
        "anchor_samples": [round(a, 1) for a in anchors],
        "steps": [SHORT, LONG],
        "batch_size": batch_size,
    }
