"""Where one ``fit`` epoch of the World Models ConvVAE spends its time (``bench_training.py --profile``).

Each operator's own CPU time goes to a convolution, a transposed convolution (:func:`split_by_category`),
the stage of ``fit``'s step it ran in, or "outside the steps"; each kind's GFLOP/s beside the
machine's float32 matmul rate says which operator holds training back (:func:`holds_back`).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from course_lib.kernels import DENSE_LABEL, PHASE_LABEL
from course_lib.step import StepStage
from course_lib.train import fit

CONVOLUTION = "convolutions"
TRANSPOSED = "transposed convolutions"
#: Where the own time of an operator under each stage of ``fit``'s step goes when it is no convolution.
STAGE_CATEGORIES = {
    StepStage.BATCH: "batch assembly and uint8-to-float conversion",
    StepStage.FORWARD: "rest of forward and loss",
    StepStage.BACKWARD: "rest of backward",
    StepStage.OPTIMIZER: "optimizer (Adam)",
    StepStage.PROGRESS: "progress bar and history",
}
OUTSIDE = "outside the steps"


def conv_kinds(model: nn.Module) -> dict[tuple[int, ...], str]:
    """Weight shape -> :data:`CONVOLUTION` or :data:`TRANSPOSED`, for every convolution layer of ``model``.

    Raises:
        ValueError: when a convolution and a transposed convolution share a weight shape (the
            backward pass could not be told apart).
    """
    kinds: dict[tuple[int, ...], str] = {}
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            kind = TRANSPOSED if isinstance(module, nn.ConvTranspose2d) else CONVOLUTION
            shape = tuple(module.weight.shape)
            if kinds.setdefault(shape, kind) != kind:
                raise ValueError(f"a convolution and a transposed convolution both have weights of shape {shape}")
    return kinds


def conv_flops_per_image(model: nn.Module, batch: int) -> dict[str, float]:
    """Training FLOPs (forward + backward) per image of the model's convolutions and transposed convolutions."""
    model = copy.deepcopy(model)
    names = {f"{type(model).__name__}.{name}": module for name, module in model.named_modules() if name}
    x = torch.rand(batch, 3, 64, 64)
    with FlopCounterMode(display=False, depth=None) as counter:
        x_hat = model(x)[0]
        (x - x_hat).pow(2).sum().backward()
    flops = {CONVOLUTION: 0.0, TRANSPOSED: 0.0}
    for name, counts in counter.get_flop_counts().items():
        module = names.get(name)
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            flops[TRANSPOSED if isinstance(module, nn.ConvTranspose2d) else CONVOLUTION] += sum(counts.values())
    return {kind: value / batch for kind, value in flops.items()}


def _category(event: Any, kinds: dict[tuple[int, ...], str]) -> str | None:
    """The category ``event`` itself names (None: it takes its parent's)."""
    if event.name == "aten::conv2d":
        return CONVOLUTION
    if event.name in ("aten::conv_transpose2d", DENSE_LABEL, PHASE_LABEL):
        return TRANSPOSED
    if event.name == "aten::convolution_backward" and len(event.input_shapes) > 2:
        return kinds.get(tuple(event.input_shapes[2]))
    return STAGE_CATEGORIES.get(event.name)


def split_by_category(events: Any, kinds: dict[tuple[int, ...], str]) -> dict[str, float]:
    """Seconds of own CPU time per category over a profiler's ``events()``.

    Each operator's own time (self CPU time, on the calling thread) goes to the innermost of: a
    convolution or transposed convolution (forward: ``aten::conv2d`` / ``aten::conv_transpose2d``, or
    ``fit``'s matrix product for a 1x1 map, :data:`course_lib.kernels.DENSE_LABEL`, and its phase
    convolution, :data:`course_lib.kernels.PHASE_LABEL`, whose ``aten::conv2d`` inside counts as
    transposed; backward: ``aten::convolution_backward``, told apart by its weight's shape in
    ``kinds``, and the backward of every op inside a transposed convolution's forward, found by
    autograd's sequence number, which the profiler records on both), else the stage of ``fit``'s
    step it ran in (:class:`course_lib.step.StepStage`), else "outside the steps" (fit's setup and
    the profiler's own bookkeeping).
    """
    seconds = {category: 0.0 for category in [CONVOLUTION, TRANSPOSED, *STAGE_CATEGORIES.values(), OUTSIDE]}
    roots = [event for event in events if event.cpu_parent is None]
    transposed_ops: set[int] = set()  # autograd sequence numbers of the ops inside transposed convolutions

    def collect(event: Any, inside: bool) -> None:
        inside = inside or _category(event, kinds) == TRANSPOSED
        if inside and event.sequence_nr >= 0:
            transposed_ops.add(event.sequence_nr)
        for child in event.cpu_children:
            collect(child, inside)

    def visit(event: Any, inherited: str) -> None:
        # inside a transposed convolution (the phase path's aten::conv2d) all is the transposed one's;
        # so is the backward of its ops (the matrix product's AddmmBackward0: same sequence number)
        if inherited == TRANSPOSED or event.sequence_nr in transposed_ops:
            category = TRANSPOSED
        else:
            category = _category(event, kinds) or inherited
        seconds[category] += event.self_cpu_time_total / 1e6
        for child in event.cpu_children:
            visit(child, category)

    for event in roots:
        collect(event, False)
    for event in roots:
        visit(event, OUTSIDE)
    return seconds


def holds_back(
    seconds: dict[str, float], flops_per_image: dict[str, float], images: int, matmul_gflop_per_s: float
) -> list[dict[str, Any]]:
    """The categories that cost the most time beyond what they would take at the float32 matmul rate, worst first.

    A convolution's time at the matmul rate is its FLOPs over that rate; every other category
    (conversion, Adam, the rest of the graph) would ideally take none.
    """
    total = sum(seconds.values())
    rows = []
    for category, value in seconds.items():
        ideal = flops_per_image.get(category, 0.0) * images / (matmul_gflop_per_s * 1e9)
        rows.append(
            {
                "category": category,
                "seconds": round(value, 3),
                "seconds_at_matmul_rate": round(ideal, 3),
                "excess_share_of_epoch": round((value - ideal) / total, 4),
            }
        )
    return sorted(rows, key=lambda row: row["excess_share_of_epoch"], reverse=True)[:3]


def profile_fit(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int,
    lr: float,
    kl_tolerance: float,
    matmul_gflop_per_s: float,
    precision: str = "float32",
    top: int = 15,
) -> dict[str, Any]:
    """Profile one epoch of ``fit`` on ``data`` and say where its time went.

    Args:
        model: the model to train (trained in place).
        data: ``uint8 (N, 64, 64, 3)`` frames (a :class:`course_lib.data.ShardDataset`).
        batch_size: frames per step.
        lr: Adam's learning rate.
        kl_tolerance: World Models' free nats per latent dimension.
        matmul_gflop_per_s: the machine's float32 matmul rate, measured in the same run.
        precision: ``fit``'s precision.
        top: how many operators to list.

    Returns:
        JSON-ready dict: the epoch's wall time and images/s, the share of each category, the
        ``top`` operators by own time, and the GFLOP/s of each kind of convolution against
        ``matmul_gflop_per_s``.
    """
    kwargs = dict(batch_size=batch_size, lr=lr, kl_tolerance=kl_tolerance, device="cpu", precision=precision)
    fit(model, data, max_steps=2, progress=False, seed=99, **kwargs)  # oneDNN builds its kernels
    flops = conv_flops_per_image(model, batch_size)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        history = fit(model, data, num_epochs=1, progress=True, seed=0, **kwargs)
        wall = time.perf_counter() - start
    seconds = split_by_category(prof.events(), conv_kinds(model))
    total = sum(seconds.values())
    images = history.steps * batch_size
    averages = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    conv_rates = {}
    for kind in (CONVOLUTION, TRANSPOSED):
        gflops = flops[kind] * images / seconds[kind] / 1e9 if seconds[kind] else 0.0
        conv_rates[kind] = {
            "gflop_per_image": round(flops[kind] / 1e9, 4),
            "seconds": round(seconds[kind], 3),
            "gflop_per_s": round(gflops, 1),
            "fraction_of_matmul": round(gflops / matmul_gflop_per_s, 3),
        }
    return {
        "precision": precision,
        "batch_size": batch_size,
        "steps": history.steps,
        "threads": torch.get_num_threads(),
        "wall_seconds": round(wall, 3),
        "images_per_s_while_profiled": round(images / wall, 1),
        "profiled_cpu_seconds": round(total, 3),
        "matmul_fp32_gflop_per_s": round(matmul_gflop_per_s, 1),
        "share": {category: round(value / total, 4) for category, value in seconds.items()},
        "convolution_rates": conv_rates,
        "holds_back": holds_back(seconds, flops, images, matmul_gflop_per_s),
        "top_operators": [
            {
                "name": e.key,
                "self_ms": round(e.self_cpu_time_total / 1e3, 2),
                "share": round(e.self_cpu_time_total / 1e6 / total, 4),
                "calls": e.count,
            }
            for e in averages
        ],
    }
