"""Peak resident memory of training from ~2 GB of ``.npy`` shards: it must stay under 1 GB.

Writes ``--gigabytes`` of seeded random ``uint8 (1000, 64, 64, 3)`` shards to a temporary folder,
then runs, each in a fresh subprocess whose peak RSS (``ru_maxrss``, which counts file pages
mapped into the process as well as its own memory) is reported:

- **full_epoch**: ``fit`` of a small ``SmallVAE(z_size=8, width=4)`` for one whole epoch over the
  90% training split of the shards (batch 512: every frame is read once), validated on the other
  10% (every validation frame read once more), so the data path touches all 2 GB;
- **conv_vae**: ``fit`` of the World Models ``ConvVAE`` at batch 100 for ``--conv-steps`` steps on the
  same shards, plus validation on 2000 frames: the memory of the big model's activations;
- **reference_memory_map_pass**: for comparison, the same full pass read by fancy indexing of the
  memory maps (the previous ``ShardDataset`` read path): every page read stays resident.

Usage: ``python benchmarks/bench_memory.py [--gigabytes 2.0] [--conv-steps 20] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import conditions, emit, log, machine

from course_lib.data import FRAME_BYTES, save_shard

FRAMES_PER_SHARD = 1000
LIMIT_MB = 1024

CHILD_PRELUDE = """
import json, resource, sys, time
import numpy as np
import torch
from course_lib.data import ShardDataset, FrameSubset

def peak_mb():
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return {"ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "vm_hwm_mb": hwm / 1024}

ds = ShardDataset(sys.argv[1])
start_mb = peak_mb()["ru_maxrss_mb"]
t0 = time.perf_counter()
"""

CHILDREN = {
    "full_epoch": """
        from course_lib.models import SmallVAE
        from course_lib.train import fit
        train, val = ds.split(val_fraction=0.1, seed=0)
        torch.manual_seed(0)
        h = fit(SmallVAE(z_size=8, width=4), train, val, num_epochs=1, batch_size=512, lr=1e-3, device="cpu",
                progress=False)
        extra = {"frames_read": len(train) + len(val), "steps": h.steps, "val_mse": h.val[-1]["mse"]}
    """,
    "conv_vae": """
        from course_lib.solutions.conv_vae import ConvVAE
        from course_lib.train import fit
        steps = int(sys.argv[2])
        val = FrameSubset(ds, np.arange(len(ds) - 2000, len(ds)))
        torch.manual_seed(0)
        h = fit(ConvVAE(), ds, val, batch_size=100, max_steps=steps, lr=1e-4, kl_tolerance=0.5, device="cpu",
                progress=False)
        extra = {"frames_read": steps * 100 + len(val), "steps": h.steps}
    """,
    "reference_memory_map_pass": """
        n = 0
        for array in ds.arrays:
            for start in range(0, len(array), 512):
                n += len(np.asarray(array[np.arange(start, min(start + 512, len(array)))]))
        extra = {"frames_read": n}
    """,
}


def write_shards(directory: Path, gigabytes: float) -> tuple[int, int]:
    """Seeded random shards totalling about ``gigabytes``; returns (shards, frames)."""
    n_shards = max(2, round(gigabytes * 1e9 / (FRAMES_PER_SHARD * FRAME_BYTES)))
    rng = np.random.default_rng(0)
    for k in range(n_shards):
        save_shard(directory / f"shard_{k:04d}.npy",
                   rng.integers(0, 256, (FRAMES_PER_SHARD, 64, 64, 3), dtype=np.uint8))
    return n_shards, n_shards * FRAMES_PER_SHARD


def run_child(name: str, shard_dir: Path, conv_steps: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON report."""
    body = textwrap.dedent(CHILDREN[name])
    code = CHILD_PRELUDE + body + (
        '\nprint(json.dumps({**peak_mb(), "start_mb": start_mb, "seconds": time.perf_counter() - t0, **extra}))\n'
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(shard_dir), str(conv_steps)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in report.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=2.0, help="size of the shard set")
    parser.add_argument("--conv-steps", type=int, default=20, help="ConvVAE training steps")
    parser.add_argument("--quick", action="store_true", help="0.25 GB and 5 ConvVAE steps")
    args = parser.parse_args()
    if args.quick:
        args.gigabytes, args.conv_steps = 0.25, 5
    load_before = conditions()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        log(f"writing {args.gigabytes} GB of shards to {tmp}")
        n_shards, n_frames = write_shards(Path(tmp), args.gigabytes)
        for name in CHILDREN:
            log(f"running {name}")
            results[name] = run_child(name, Path(tmp), args.conv_steps)
            log(f"{name}: {results[name]}")
    emit(
        {
            "benchmark": "memory",
            "machine": machine(),
            "conditions_before": load_before,
            "conditions_after": conditions(),
            "shards": n_shards,
            "frames": n_frames,
            "dataset_gb": round(n_frames * FRAME_BYTES / 1e9, 3),
            "results": results,
            "targets": {
                f"peak_rss_under_{LIMIT_MB}_mb": {
                    name: results[name]["ru_maxrss_mb"] < LIMIT_MB for name in ("full_epoch", "conv_vae")
                }
            },
        }
    )


if __name__ == "__main__":
    main()
