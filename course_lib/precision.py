"""Which numeric path ``fit`` trains along, and ``fit(precision="auto")``'s trial that picks the fastest.

The paths are float32, and bfloat16 under ``torch.autocast`` on NCHW or channels-last input;
tests/test_speed_equivalence.py keeps their losses equal within a tolerance. The trial times a few
steps of each on a copy of the model and leaves the model and the random generators as they were.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import statistics
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from course_lib import cpu, distributed
from course_lib.step import LossFn, adam, check_frames, fast_kernels, model_input, step_loss, synchronize


@dataclass(frozen=True)
class Precision:
    """One way of running a training step, named by ``fit(precision=...)``.

    Attributes:
        autocast: dtype of the forward pass under ``torch.autocast`` (None: plain float32).
        channels_last: give the model its input in channels-last layout (``(B, 3, 64, 64)`` with
            strides of ``(B, 64, 64, 3)``, as :func:`course_lib.frames.to_tensor` returns it
            without a copy) and keep its 4-d weights channels-last too
            (:data:`course_lib.step.CHANNELS_LAST_DEVICES`), so
            that every convolution runs oneDNN's (or cuDNN's) NHWC kernels without reordering
            its weights or activations; False makes the input contiguous NCHW first.
    """

    autocast: torch.dtype | None
    channels_last: bool


#: The paths ``fit`` can train with; tests/test_speed_equivalence.py keeps their losses equal
#: within a tolerance. ``"float32"`` is the default: its results do not depend on the CPU.
PRECISIONS: dict[str, Precision] = {
    "float32": Precision(autocast=None, channels_last=True),
    "bfloat16": Precision(autocast=torch.bfloat16, channels_last=False),
    "bfloat16-channels-last": Precision(autocast=torch.bfloat16, channels_last=True),
}
#: ``fit(precision=AUTO)`` measures the :data:`PRECISIONS` and trains with the fastest.
AUTO = "auto"


#: ``fit(precision="auto")`` measures the paths only in runs of at least this many steps, so that
#: the trial (one untimed and :data:`TRIAL_ROUNDS` timed steps per path, after a screening where the
#: CPU does not list native bfloat16) stays a small part of the run: it added 2.5 s to a run on a
#: 2-core Xeon with AMX, 2.9% of a 500-step ConvVAE run at batch 100 (``bench_training.py --quick``,
#: fresh processes with and without it); shorter runs use the choice of an earlier trial in the
#: process for the same kind of run, else float32.
TRIAL_MIN_STEPS = 500
#: Frames of the screening pass, a forward and backward pass that every path makes first.
SCREEN_FRAMES = 4
#: Paths whose screening pass took more than this many times the fastest one's are not measured
#: further (bfloat16 on a CPU without bfloat16 instructions: ~10x slower than float32 here).
SCREEN_MARGIN = 2.0
#: Timed screening passes per path, then timed full training steps per remaining path, each
#: interleaved across the paths after one warm-up.
TRIAL_ROUNDS = 2
#: The last trial for each kind of run ``(model class, frames per process, device type, processes)``.
_PRECISION_CHOICES: dict[Hashable, PrecisionTrial] = {}


@dataclass
class PrecisionTrial:
    """What ``fit(precision="auto")`` (:func:`choose_precision`) measured, and the path it chose.

    Attributes:
        chosen: the :data:`PRECISIONS` name trained with.
        reason: ``"measured"``, ``"remembered"`` (the choice of an earlier trial in this process,
            for a run too short to be worth a trial) or ``"not measured: ..."`` (float32 then).
        images_per_s: training images per second of all processes together at the run's batch
            size (conversion to float, forward, loss, backward, Adam; reading excluded), for each
            path timed: the median of :data:`TRIAL_ROUNDS` steps, after one untimed step each.
        screen_images_per_s: images per second of every path's screening pass (forward and
            backward of :data:`SCREEN_FRAMES` frames on one CPU thread: the fastest of
            :data:`TRIAL_ROUNDS`, after one to warm up); empty where there was no screening (a
            CPU whose flags list native bfloat16).
        dropped: paths left out before the end, and where: ``"cpu flags"`` (bfloat16 on a CPU
            without AVX512-BF16 or AMX, never run), ``"screen"`` (more than
            :data:`SCREEN_MARGIN` times slower than the fastest there) or ``"error"``.
        seconds: wall time of the trial.
        errors: paths that failed to run (e.g. no bfloat16 on this device), with the error.
    """

    chosen: str = "float32"
    reason: str = "not measured"
    images_per_s: dict[str, float] = field(default_factory=dict)
    screen_images_per_s: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


def _timed_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    frames: np.ndarray,
    precision: Precision,
    loss_fn: LossFn,
    device: torch.device,
) -> float:
    """Seconds of one training step on ``uint8`` ``frames`` along ``precision``.

    Conversion to float, forward pass, loss, backward pass, and the optimiser's step if one is given.
    """
    synchronize(device)
    start = time.perf_counter()
    x = model_input(frames, precision.channels_last, device)
    terms = loss_fn(model, x)
    model.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if optimizer is not None:
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def choose_precision(
    model: nn.Module,
    frames: Any,
    *,
    batch_size: int,
    device: torch.device | str | None = None,
    loss_fn: LossFn | None = None,
    kl_tolerance: float = 0.0,
    lr: float = 1e-3,
    seed: int = 0,
) -> PrecisionTrial:
    """Measure a few training steps along each of :data:`PRECISIONS` and return the fastest.

    What ``fit(precision="auto")`` does at the start of a run. The steps run on a copy of
    ``model`` with its own Adam optimiser, inside ``torch.random.fork_rng``: the model, its
    optimiser and the random generators are left as they were, so the run that follows gives
    exactly the losses of a run started with the chosen precision (tests/test_speed_equivalence.py).

    On a CPU whose flags show no native bfloat16 (neither AVX512-BF16 nor AMX,
    :func:`course_lib.cpu.fast_bfloat16`) the bfloat16 paths are not tried at all: float32 is chosen
    without a measurement. Where the device cannot say (a GPU, a CPU without a flags line), a
    screening pass first drops the paths more than :data:`SCREEN_MARGIN` times slower than the
    fastest, so that a path 10x slower costs little: forward and backward on :data:`SCREEN_FRAMES`
    frames (one to warm up, as oneDNN builds its kernels for each shape, then the fastest of
    :data:`TRIAL_ROUNDS`; on one thread on a CPU, since with several threads on a machine that
    other processes keep busy each pass waits for descheduled threads, which measured 20x slower on
    a busy 2-core machine and hides the paths' own differences). Then one untimed training step
    per path at ``batch_size`` (the first step of a process pays its one-time setup) and
    :data:`TRIAL_ROUNDS` timed steps, whose lowest median wins. Every stage interleaves the paths,
    so that a burst of load from other processes hits them alike. The steps run the kernels
    ``fit``'s steps run (:mod:`course_lib.kernels`). Under ``torchrun`` every process must call it: the
    times are the slowest process's (a step waits for it), so all choose the same path.

    Args:
        model: a VAE as accepted by :func:`fit` (copied, not changed).
        frames: ``uint8 (N, 64, 64, 3)`` frames or an indexable data set of them; one batch of
            ``min(batch_size, N)`` frames drawn with ``seed`` is read once.
        batch_size: frames per step of each process.
        device: where to measure (default: where the model is).
        loss_fn: as in :func:`fit` (default: the VAE loss with ``kl_tolerance``).
        kl_tolerance: as in :func:`fit`.
        lr: Adam's learning rate of the copy.
        seed: draws the batch.

    Returns:
        The :class:`PrecisionTrial`; it is also remembered for short runs of the same kind in this
        process (see :data:`TRIAL_MIN_STEPS`).

    Raises:
        ValueError: on frames of the wrong shape or dtype.
    """
    check_frames(frames, "frames")
    start = time.perf_counter()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    world_size = distributed.current().world_size
    n = frames.shape[0]
    rng = np.random.default_rng(seed)
    batch = np.asarray(frames[np.sort(rng.choice(n, size=min(batch_size, n), replace=False))])
    screen_batch = batch[:SCREEN_FRAMES]
    losses = {
        name: step_loss(PRECISIONS[name].autocast, loss_fn, 1.0, kl_tolerance, device.type) for name in PRECISIONS
    }
    trial = PrecisionTrial(reason="measured")
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=cuda_devices))  # the CPU's generator and this GPU's
        trial_model = copy.deepcopy(model).to(device).train()
        optimizer = adam(trial_model.parameters(), lr, device)
        stack.enter_context(fast_kernels(trial_model, device))  # the kernels fit's steps run

        def run(name: str, frames: np.ndarray, step: bool) -> float:
            """Seconds of one pass (``step``: a full training step) along path ``name``; inf if it fails."""
            if name in trial.errors:
                return math.inf
            try:
                return _timed_step(
                    trial_model, optimizer if step else None, frames, PRECISIONS[name], losses[name], device
                )
            except RuntimeError as err:  # e.g. an autocast dtype the device lacks
                trial.errors[name] = f"{type(err).__name__}: {err}"[:300]
                trial.dropped[name] = "error"
                return math.inf

        def keep(names: list[str], seconds: list[float], stage: str) -> list[str]:
            """The paths within SCREEN_MARGIN of the fastest; the others are dropped at ``stage``."""
            fastest = min(seconds)
            kept = [name for name, t in zip(names, seconds, strict=True) if t <= SCREEN_MARGIN * fastest < math.inf]
            trial.dropped.update({name: stage for name in names if name not in kept and name not in trial.errors})
            return kept

        def rates(names: list[str], seconds: list[float], frames: int) -> dict[str, float]:
            return {name: round(frames * world_size / t, 1) for name, t in zip(names, seconds, strict=True) if t > 0}

        names = _runnable_precisions(device, trial)
        if len(names) > 1 and _needs_screening(device):
            threads = torch.get_num_threads()
            if device.type == "cpu":  # what the instructions make slow, without the noise of threads waiting
                torch.set_num_threads(1)
            try:
                for name in names:
                    run(name, screen_batch, step=False)  # warm-up
                passes = [[run(name, screen_batch, step=False) for name in names] for _ in range(TRIAL_ROUNDS)]
            finally:
                torch.set_num_threads(threads)
            # the fastest pass (load only ever slows one down), of the slowest process (the others wait for it)
            screen = distributed.all_reduce([min(column) for column in zip(*passes, strict=True)], op="max")
            trial.screen_images_per_s = rates(names, screen, len(screen_batch))
            names = keep(names, screen, "screen")
        if len(names) > 1:
            # untimed: the first full step of a process also pays its one-time setup (memory, threads,
            # oneDNN's kernels for the shapes), which would make whichever path runs first look slow
            for name in names:
                run(name, batch, step=True)
            names = [name for name in names if name not in trial.errors]
        if len(names) > 1:
            steps = [[run(name, batch, step=True) for name in names] for _ in range(TRIAL_ROUNDS)]
            medians = distributed.all_reduce([statistics.median(c) for c in zip(*steps, strict=True)], op="max")
            trial.images_per_s = rates(names, medians, len(batch))
            names = [names[int(np.argmin(medians))]]
    trial.chosen = names[0] if names else "float32"  # nothing ran: float32, whose first step will raise the error
    trial.seconds = round(time.perf_counter() - start, 3)
    _PRECISION_CHOICES[_precision_key(model, batch_size, device, world_size)] = trial
    return trial


def _runnable_precisions(device: torch.device, trial: PrecisionTrial) -> list[str]:
    """The :data:`PRECISIONS` worth measuring on ``device``; the others go to ``trial.dropped`` as ``"cpu flags"``.

    On a CPU without native bfloat16 (:func:`course_lib.cpu.fast_bfloat16`: neither AVX512-BF16 nor
    AMX) the bfloat16 paths are left out unmeasured, and with float32 alone nothing is measured:
    ``trial.reason`` says so. Under ``torchrun`` the processes agree (one all-reduce): a path is
    left out if any process's CPU lacks the instructions.
    """
    names = list(PRECISIONS)
    if device.type != "cpu":
        return names
    slow = distributed.all_reduce([0.0 if cpu.fast_bfloat16() else 1.0], op="max")[0] > 0
    if slow:
        left_out = [name for name in names if PRECISIONS[name].autocast == torch.bfloat16]
        trial.dropped.update({name: "cpu flags" for name in left_out})
        names = [name for name in names if name not in left_out]
    if len(names) == 1:
        trial.reason = f"not measured: the CPU has none of {sorted(cpu.BFLOAT16_FLAGS)}, so only {names[0]} is fast"
    return names


def _needs_screening(device: torch.device) -> bool:
    """Whether :func:`choose_precision` screens the paths before timing full steps on ``device``.

    Not on a CPU whose flags list native bfloat16 (:func:`course_lib.cpu.native_bfloat16`): no path
    is many times slower there, so the screening would only add its cost. Elsewhere (GPUs, CPUs
    that do not say) it does. Under ``torchrun`` the processes agree (one all-reduce).
    """
    if device.type != "cpu":
        return True
    return distributed.all_reduce([0.0 if cpu.native_bfloat16() else 1.0], op="max")[0] > 0


def _precision_key(model: nn.Module, batch_size: int, device: torch.device, world_size: int) -> Hashable:
    """The kind of run a precision choice is remembered for."""
    return (type(model).__qualname__, batch_size, device.type, world_size)


def auto_precision(
    model: nn.Module,
    frames: Any,
    steps: int,
    *,
    batch_size: int,
    device: torch.device,
    loss_fn: LossFn | None,
    kl_tolerance: float,
    lr: float,
    seed: int,
) -> PrecisionTrial:
    """``fit(precision="auto")``'s choice for a run of ``steps`` more steps: a trial, or a remembered one.

    Runs shorter than :data:`TRIAL_MIN_STEPS` do not pay for a trial: they take the last trial's
    choice for the same kind of run in this process, else float32.

    Args:
        model: the model ``fit`` trains (a copy is measured).
        frames: ``uint8 (N, 64, 64, 3)`` frames or an indexable data set of them.
        steps: optimiser steps the run has left.
        batch_size, device, loss_fn, kl_tolerance, lr, seed: as in :func:`choose_precision`.

    Returns:
        The :class:`PrecisionTrial`; ``reason`` says whether it was measured, remembered or skipped.

    Raises:
        ValueError: on frames of the wrong shape or dtype (when a trial runs).
    """
    if steps >= TRIAL_MIN_STEPS:
        return choose_precision(
            model,
            frames,
            batch_size=batch_size,
            device=device,
            loss_fn=loss_fn,
            kl_tolerance=kl_tolerance,
            lr=lr,
            seed=seed,
        )
    remembered = _PRECISION_CHOICES.get(_precision_key(model, batch_size, device, distributed.current().world_size))
    if remembered is not None:
        return dataclasses.replace(remembered, reason="remembered", seconds=0.0)
    return PrecisionTrial(reason=f"not measured: a run of {steps} steps is shorter than {TRIAL_MIN_STEPS}")
