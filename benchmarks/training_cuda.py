"""``course train-vae`` on a GPU: images per second and the share of the GPU's own bfloat16 matmul rate.

``bench_training.py --device cuda``: seeded random ``uint8`` frames in ``.npy`` shards, then
:func:`course_lib.train_vae.train` (what ``course train-vae`` and ``python -m course_lib.train_vae``
run) with each precision; :func:`cuda_benchmark` says how the fixed costs of a run are taken out.
The GPU's bfloat16 and float32 (TF32 off, PyTorch's default) matmul rates come from loops of
8192x8192 products in the same process.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.data import save_shard
from course_lib.precision import AUTO, PRECISIONS
from course_lib.train_vae import parse_args, train


class NoGPUError(RuntimeError):
    """Raised when ``--device cuda`` is asked for on a machine where PyTorch sees no CUDA GPU."""


def require_cuda() -> torch.device:
    """The first CUDA device.

    Raises:
        NoGPUError: when ``torch.cuda.is_available()`` is False (no GPU, no driver, or a CPU-only torch).
    """
    if not torch.cuda.is_available():
        raise NoGPUError(
            f"--device cuda needs a CUDA GPU, and PyTorch {torch.__version__} sees none "
            f"(torch.version.cuda={torch.version.cuda}); run without --device for the CPU benchmark"
        )
    return torch.device("cuda", 0)


def cuda_matmul_gflops(dtype: torch.dtype, n: int = 8192, seconds: float = 2.0) -> float:
    """GFLOP/s of a loop of ``n x n`` products of ``dtype`` on the GPU (``2 n^3`` FLOP each), synchronised."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    out = torch.empty(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    torch.cuda.synchronize()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            torch.mm(a, b, out=out)
        torch.cuda.synchronize()
        reps += 10
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def _train_seconds(shards: Path, out: Path, precision: str, steps: int, batch: int) -> tuple[float, dict[str, Any]]:
    """Seconds of one ``train`` call of ``steps`` steps (validation and checkpoint included), and its result."""
    args = parse_args(
        [
            *("--shards", str(shards), "--out", str(out), "--device", "cuda", "--precision", precision),
            *("--max-steps", str(steps), "--batch-size", str(batch), "--epochs", "1000", "--no-progress"),
        ]
    )
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = train(args)
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def cuda_benchmark(
    flops_per_image: float, batch: int = 100, steps: tuple[int, int] = (100, 400), frames: int = 40_000
) -> dict[str, Any]:
    """Images per second of ``course train-vae`` on the GPU with each precision, against the bf16 matmul rate.

    Each precision runs three times: 20 steps to warm up, then ``steps[0]`` and ``steps[1]``;
    the rate is the difference of the two timed runs' steps over the difference of their times,
    so that what every run does once (reading the validation frames, the mean-image baseline,
    validation, the checkpoint, ``auto``'s trial) cancels out.

    Args:
        flops_per_image: training FLOPs per image (forward + backward), counted on the CPU.
        batch: ``--batch-size``.
        steps: ``--max-steps`` of the two timed runs.
        frames: frames written to the shards (20 shards; 5% held out for validation).

    Raises:
        NoGPUError: without a CUDA GPU.
    """
    device = require_cuda()
    bf16 = cuda_matmul_gflops(torch.bfloat16)
    fp32 = cuda_matmul_gflops(torch.float32)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_training_cuda_") as tmp:
        shards = Path(tmp) / "shards"
        shards.mkdir()
        rng = np.random.default_rng(0)
        for k, part in enumerate(np.array_split(np.arange(frames), 20)):
            save_shard(shards / f"rollout_{k}.npy", rng.integers(0, 256, (len(part), 64, 64, 3), dtype=np.uint8))
        for precision in [*PRECISIONS, AUTO]:
            _train_seconds(shards, Path(tmp) / f"warm_{precision}.pt", precision, 20, batch)
            short, _ = _train_seconds(shards, Path(tmp) / f"short_{precision}.pt", precision, steps[0], batch)
            long, result = _train_seconds(shards, Path(tmp) / f"long_{precision}.pt", precision, steps[1], batch)
            images_per_s = (steps[1] - steps[0]) * batch / (long - short)
            gflops = flops_per_image * images_per_s / 1e9
            rows[precision] = {
                "trained_with": result["precision"],
                "seconds": [round(short, 2), round(long, 2)],
                "images_per_s": round(images_per_s, 1),
                "gflop_per_s": round(gflops, 1),
                "fraction_of_matmul_bf16": round(gflops / bf16, 4),
            }
    return {
        "gpu": torch.cuda.get_device_name(device),
        "cuda": torch.version.cuda,
        "batch_size": batch,
        "steps_per_timed_run": list(steps),
        "matmul_bf16_gflop_per_s": round(bf16, 1),
        "matmul_fp32_gflop_per_s": round(fp32, 1),
        "train_vae": rows,
    }
