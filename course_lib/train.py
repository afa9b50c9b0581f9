"""Model-agnostic training: ``fit``, evaluation against the mean-image baseline, checkpoints.

``fit`` trains any module whose forward pass returns ``(x_hat, mu, logvar)`` (the World Models
``ConvVAE``, :class:`course_lib.models.SmallVAE`) or ``[x_hat, x, mu, logvar]`` (homework 1's
``MyVAE``) with Adam on ``uint8`` frames, converting one batch at a time to float, so memory is
bounded by the batch. It stops with :class:`NonFiniteLossError` when the loss goes NaN or inf.

Speed (benchmarks/bench_training.py): the float batch keeps the channels-last layout of the
``uint8`` frames (``to_tensor`` permutes without copying) and the model's weights are made
channels-last too, which oneDNN's convolutions prefer; on the CPU a transposed convolution of a
1x1 map (the ConvVAE's first decoder layer) runs as one matrix product (:mod:`course_lib.kernels`:
6x faster than oneDNN's kernel in float32 and 15x under bfloat16 on a Xeon with AMX); Adam runs
PyTorch's fused kernel (:func:`adam`);
``precision="bfloat16"`` runs the model's forward pass under ``torch.autocast`` (about 1.5x faster
on CPUs with AVX512-BF16 or AMX) while the loss, the gradients' accumulation into float32
weights and the optimiser stay in float32; ``"bfloat16-channels-last"`` also keeps the input
channels-last; ``"auto"`` measures the three at the start of the run and keeps the fastest
(:func:`choose_precision`).

Under ``torchrun`` (a process group set up by :func:`course_lib.distributed.from_torchrun`),
``fit`` trains with ``DistributedDataParallel``: each process reads its share of every global
batch, rank 0 alone validates, saves and shows progress.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm.auto import tqdm

from course_lib import cpu, distributed, kernels
from course_lib.frames import to_tensor
from course_lib.losses import per_pixel_mse, vae_loss

LossFn = Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Precision:
    """One way of running a training step, named by ``fit(precision=...)``.

    Attributes:
        autocast: dtype of the forward pass under ``torch.autocast`` (None: plain float32).
        channels_last: give the model its input in channels-last layout (``(B, 3, 64, 64)`` with
            strides of ``(B, 64, 64, 3)``, as :func:`course_lib.frames.to_tensor` returns it
            without a copy) and keep its 4-d weights channels-last too (on the CPU and CUDA), so
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
#: Where ``fit`` also makes the model's weights channels-last on a ``channels_last`` path
#: (benchmarks/bench_training.py, lever ``channels_last_model_and_input``).
CHANNELS_LAST_DEVICES = frozenset({"cpu", "cuda"})
#: Where ``fit``'s Adam runs PyTorch's fused kernel (one pass over each parameter instead of a
#: dozen elementwise operations; bench_training.py, lever ``fused_adam``).
FUSED_ADAM_DEVICES = frozenset({"cpu", "cuda"})
#: Where ``fit`` runs transposed convolutions of 1x1 maps as matrix products and those with few
#: output channels as phase convolutions (:func:`course_lib.kernels.fast_transposed_convolutions`;
#: bench_training.py, levers ``dense_first_transposed_convolution`` and
#: ``phase_last_transposed_convolution``). GPUs are left to cuDNN: not measured.
FAST_TRANSPOSED_DEVICES = frozenset({"cpu"})
#: ``fit(precision=AUTO)`` measures the :data:`PRECISIONS` and trains with the fastest.
AUTO = "auto"


class StepStage(StrEnum):
    """The stages of one ``fit`` step, as ``torch.profiler.record_function`` labels.

    ``benchmarks/bench_training.py --profile`` splits a profiled epoch by them.
    """

    BATCH = "fit.batch"  # reading the uint8 frames and converting them to float
    FORWARD = "fit.forward"  # forward pass and loss, the terms read back as floats
    BACKWARD = "fit.backward"  # zeroing the gradients and the backward pass
    OPTIMIZER = "fit.optimizer"  # Adam's step
    PROGRESS = "fit.progress"  # the history, the progress bar


class NonFiniteLossError(RuntimeError):
    """Raised by :func:`fit` when a loss term becomes NaN or infinite."""


def _fast_kernels(model: nn.Module, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The kernels ``fit`` swaps into ``model`` on ``device`` while it trains (see :data:`FAST_TRANSPOSED_DEVICES`)."""
    if device.type in FAST_TRANSPOSED_DEVICES:
        return kernels.fast_transposed_convolutions(model)
    return contextlib.nullcontext()


def adam(params: Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """``torch.optim.Adam(params, lr=lr)``, fused where the device has the kernel (:data:`FUSED_ADAM_DEVICES`).

    The fused kernel computes Adam's update (Kingma & Ba 2015) in one pass per parameter; its
    results equal the default implementation's to float32 rounding (tests/test_speed_equivalence.py).
    """
    return torch.optim.Adam(params, lr=lr, fused=True if device.type in FUSED_ADAM_DEVICES else None)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """Pick ``prefer`` if given, else CUDA, then Apple's MPS, then the CPU."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def quick() -> bool:
    """True while nbgrader autogrades (it sets ``NBGRADER_EXECUTION``) or ``COURSE_QUICK`` is set.

    ``COURSE_QUICK=1`` is how the test suite runs notebooks at their small budget.
    """
    return bool(os.environ.get("NBGRADER_EXECUTION") or os.environ.get("COURSE_QUICK"))


def budget(default: int, quick_value: int) -> int:
    """A workload size: ``default`` normally, ``quick_value`` while grading or testing (:func:`quick`).

    Heavy notebook cells use this to shrink their work during grading, never to change what
    is graded.
    """
    return quick_value if quick() else default


def unpack(output: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_hat, mu, logvar)`` from a model output ``(x_hat, mu, logvar)`` or ``[x_hat, x, mu, logvar]``.

    Raises:
        TypeError: for any other output.
    """
    if isinstance(output, (tuple, list)):
        if len(output) == 3:
            return output[0], output[1], output[2]
        if len(output) == 4:
            return output[0], output[2], output[3]
    raise TypeError(
        "expected the model to return (x_hat, mu, logvar) or [x_hat, x, mu, logvar], got "
        f"{type(output).__name__} of length {len(output) if hasattr(output, '__len__') else '?'}"
    )


def make_vae_loss(beta: float = 1.0, kl_tolerance: float = 0.0) -> LossFn:
    """A ``loss_fn(model, x) -> dict`` computing :func:`course_lib.losses.vae_loss`."""

    def loss_fn(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_hat, mu, logvar = unpack(model(x))
        return vae_loss(x, x_hat, mu, logvar, beta=beta, kl_tolerance=kl_tolerance)

    return loss_fn


def _autocast_vae_loss(beta: float, kl_tolerance: float, device_type: str, dtype: torch.dtype) -> LossFn:
    """:func:`make_vae_loss` with the model's forward pass under autocast and the loss in float32."""

    def loss_fn(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type, dtype=dtype):
            x_hat, mu, logvar = unpack(model(x))
        return vae_loss(x, x_hat.float(), mu.float(), logvar.float(), beta=beta, kl_tolerance=kl_tolerance)

    return loss_fn


def _autocast_loss(loss_fn: LossFn, device_type: str, dtype: torch.dtype) -> LossFn:
    """A user's ``loss_fn`` run entirely under autocast, its terms returned as float32."""

    def wrapped(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type, dtype=dtype):
            terms = loss_fn(model, x)
        return {key: value.float() for key, value in terms.items()}

    return wrapped


def _step_loss(
    precision: Precision, loss_fn: LossFn | None, beta: float, kl_tolerance: float, device_type: str
) -> LossFn:
    """The training loss of one step along ``precision``: under autocast when it asks for it."""
    if precision.autocast is None:
        return loss_fn or make_vae_loss(beta, kl_tolerance)
    if loss_fn is None:
        return _autocast_vae_loss(beta, kl_tolerance, device_type, precision.autocast)
    return _autocast_loss(loss_fn, device_type, precision.autocast)


def _model_input(frames: np.ndarray, precision: Precision, device: torch.device) -> torch.Tensor:
    """``uint8 (B, 64, 64, 3)`` frames as the model's ``float32 (B, 3, 64, 64)`` input in [0, 1] on ``device``.

    :func:`course_lib.frames.to_tensor` returns a permuted view converted once, so the input is
    channels-last already; ``precision.channels_last=False`` copies it to contiguous NCHW.
    """
    x = to_tensor(frames).to(device)  # (B, 3, 64, 64) with (B, 64, 64, 3) strides
    if precision.channels_last:
        return x.contiguous(memory_format=torch.channels_last)  # no copy: it already is
    return x.contiguous()


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (timings of asynchronous CUDA kernels would be too short)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    _synchronize(device)
    start = time.perf_counter()
    x = _model_input(frames, precision, device)
    terms = loss_fn(model, x)
    model.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if optimizer is not None:
        optimizer.step()
    _synchronize(device)
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
    _check_frames(frames, "frames")
    start = time.perf_counter()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    world_size = distributed.current().world_size
    n = frames.shape[0]
    rng = np.random.default_rng(seed)
    batch = np.asarray(frames[np.sort(rng.choice(n, size=min(batch_size, n), replace=False))])
    screen_batch = batch[:SCREEN_FRAMES]
    losses = {name: _step_loss(PRECISIONS[name], loss_fn, 1.0, kl_tolerance, device.type) for name in PRECISIONS}
    trial = PrecisionTrial(reason="measured")
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=cuda_devices))  # the CPU's generator and this GPU's
        trial_model = copy.deepcopy(model).to(device).train()
        optimizer = adam(trial_model.parameters(), lr, device)
        stack.enter_context(_fast_kernels(trial_model, device))  # the kernels fit's steps run

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


def _auto_precision(
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


class _ThreadChooser:
    """Picks, while ``fit`` trains, the faster of PyTorch's thread count and one thread.

    With several OpenMP threads on a CPU that other processes also use, every parallel region
    waits at a barrier for a thread that is not running: on a busy 2-core machine a small VAE's
    step took 4-8x longer with 2 threads than with 1, the World Models ``ConvVAE``'s 2x
    (benchmarks/bench_training.py); on an idle machine more threads are faster. So the first
    steps are timed with each (after one warm-up step each) and the faster is kept; the other
    is tried again for two steps at exponentially spaced steps, as the load changes. The choice
    is remembered for :attr:`REMEMBER_SECONDS` per ``key`` (the model class, batch size and
    precision), so that the next ``fit`` of the same kind starts with it, skips the trial and
    checks the other count after :attr:`REMEMBERED_CHECK` steps.

    Off, leaving the thread count alone, when it is pinned (``OMP_NUM_THREADS`` set, as the
    autograder does, or ``COURSE_THREADS`` set, which ``fit`` then uses), when PyTorch already
    uses one thread, off the CPU, and for runs shorter than :attr:`MIN_STEPS` steps. The thread
    count changes only the rounding of some float sums (tests/test_speed_equivalence.py).
    """

    MIN_STEPS = 40
    FIRST_CHECK = 50
    SWITCH_MARGIN = 0.9
    #: A choice made for the same kind of run this recently is reused without the first trial,
    #: and checked after :attr:`REMEMBERED_CHECK` steps: the load it was made under may be gone
    #: (a choice of one thread made while other jobs ran then halves the speed of an idle 2-core
    #: machine, benchmarks/bench_training.py), and two steps on the other count cost little.
    REMEMBER_SECONDS = 600.0
    REMEMBERED_CHECK = 4
    #: A remembered choice of PyTorch's own count is kept without that check while its steps take
    #: at most this many times the step time it was chosen with (the machine as busy as then).
    SAME_LOAD = 1.25
    #: ``{key: (threads, time.monotonic() of the decision, median seconds of a step with them)}``,
    #: shared by the ``fit`` calls of a process.
    choices: ClassVar[dict[Hashable, tuple[int, float, float]]] = {}

    def __init__(
        self,
        device: torch.device,
        total_steps: int,
        clock: Callable[[], float] = time.perf_counter,
        key: Hashable = None,
    ):
        self.clock = clock
        self.key = (key, torch.get_num_threads())
        self.default = torch.get_num_threads()
        pinned = os.environ.get("COURSE_THREADS")
        if pinned:
            torch.set_num_threads(max(1, int(pinned)))
        self.enabled = (
            not pinned
            and "OMP_NUM_THREADS" not in os.environ
            and device.type == "cpu"
            and self.default > 1
            and total_steps >= self.MIN_STEPS
        )
        self.other = {self.default: 1, 1: self.default}
        self.choice = self.default
        # (threads, timed?) for the first steps: warm each up once, then time two steps of each
        self.plan = [(self.default, False), (1, False)] + [(self.default, True), (1, True)] * 2
        self.timings: dict[int, list[float]] = {self.default: [], 1: []}
        self.k = 0
        self.next_check = len(self.plan) + self.FIRST_CHECK
        self.interval = self.FIRST_CHECK
        self.remembered_seconds: float | None = None
        remembered = self.choices.get(self.key)
        if self.enabled and key is not None and remembered and time.monotonic() - remembered[1] < self.REMEMBER_SECONDS:
            # start with it, and check it early: the load may have changed since
            self.choice, self.plan = remembered[0], []
            self.next_check = self.REMEMBERED_CHECK
            self.remembered_seconds = remembered[2]
        self.current: tuple[int, bool] = (self.default, False)
        self.start = 0.0

    def before_step(self) -> None:
        """Set the thread count for the next step (and start its clock)."""
        if not self.enabled:
            return
        if self.k == self.next_check and self.remembered_seconds is not None and self.choice == self.default:
            # one thread only gets faster than PyTorch's count when the machine got busier: skip the
            # early check while the steps take what they took when the choice was made
            if float(np.median(self.timings[self.choice])) <= self.SAME_LOAD * self.remembered_seconds:
                self.next_check = self.FIRST_CHECK
            self.remembered_seconds = None
        if self.k < len(self.plan):
            self.current = self.plan[self.k]
        elif self.k in (self.next_check, self.next_check + 1):
            self.current = (self.other[self.choice], True)
        else:
            self.current = (self.choice, True)
        torch.set_num_threads(self.current[0])
        self.start = self.clock()

    def after_step(self) -> None:
        """Record the step's time and decide, at the end of a trial, which count to keep."""
        if not self.enabled:
            return
        seconds = self.clock() - self.start
        threads, timed = self.current
        if timed:
            self.timings[threads] = [*self.timings[threads][-7:], seconds]
        if self.k == len(self.plan) - 1:
            self.choice = min(self.timings, key=lambda t: float(np.median(self.timings[t])))
            self._remember()
        elif self.k == self.next_check + 1:
            other = self.other[self.choice]
            current = float(np.median(self.timings[self.choice]))
            if float(np.mean(self.timings[other][-2:])) < self.SWITCH_MARGIN * current:
                self.choice = other
            self._remember()
            self.interval *= 2
            self.next_check += self.interval
        self.k += 1

    def _remember(self) -> None:
        """Keep the choice, when it was made and its steps' median time, for the next run of this kind."""
        self.choices[self.key] = (self.choice, time.monotonic(), float(np.median(self.timings[self.choice])))

    def restore(self) -> None:
        """Give PyTorch back the thread count it had before ``fit``."""
        torch.set_num_threads(self.default)


@dataclass
class History:
    """What :func:`fit` measured.

    Attributes:
        train: one dict per optimiser step with the floats of every loss term, plus ``beta``.
        val: one dict per epoch: ``epoch``, ``step``, the mean loss terms on the validation
            frames, and ``mse`` (per pixel value, model in eval mode). The validation ``loss`` is
            the plain negative ELBO (``beta = 1``, the run's ``kl_tolerance``) whatever ``beta``
            training used, so that runs with different ``beta`` can be compared.
        seconds: wall time spent in ``fit``.
        steps: optimiser steps taken in total (including earlier runs resumed from a checkpoint).
        epochs: epochs completed in total.
        precision: the :data:`PRECISIONS` path the last ``fit`` call trained with.
        precision_trial: with ``precision="auto"``, what the choice was based on (the fields of
            :class:`PrecisionTrial`: ``chosen``, ``reason``, ``images_per_s`` of each path measured,
            ``screen_images_per_s``, ``seconds``, ``errors``); empty otherwise.

    Under ``torchrun`` the ``train`` terms are those of the global batch (averaged over all
    processes), and only rank 0's history has ``val`` entries.
    """

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    epochs: int = 0
    precision: str = "float32"
    precision_trial: dict[str, Any] = field(default_factory=dict)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of ``fit``'s batches: consecutive slices of a permutation drawn from ``rng``, sorted."""
    return distributed.DistributedBatches(n, batch_size, rng).global_batches()


def _check_frames(frames: Any, name: str) -> None:
    shape = getattr(frames, "shape", None)
    dtype = getattr(frames, "dtype", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 frames of shape (N, 64, 64, 3), got {type(frames).__name__} "
            f"with shape {shape} and dtype {dtype}"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty")


def _loss_and_reconstruction(
    model: nn.Module, x: torch.Tensor, loss_fn: LossFn
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``loss_fn(model, x)`` and the reconstruction ``x_hat`` of ``x``, with one forward pass if possible.

    The forward pass made inside ``loss_fn`` is reused when it was the only one, took ``x`` itself
    and drew no random numbers (eval mode of a model that uses ``mu``, like ``SmallVAE``): a second
    pass would return the same tensor. Otherwise (a model that samples ``z`` in eval mode, a
    ``loss_fn`` that calls ``encode``/``decode`` or changes ``x``, a GPU) the model runs again, as
    before, so the random stream is consumed exactly as it always was.
    """
    if x.device.type != "cpu":
        return loss_fn(model, x), unpack(model(x))[0]
    calls: list[Any] = []

    def record(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        calls.append(output if len(args) == 1 and args[0] is x else None)

    rng = torch.get_rng_state()
    handle = model.register_forward_hook(record)
    try:
        terms = loss_fn(model, x)
    finally:
        handle.remove()
    if len(calls) == 1 and calls[0] is not None and torch.equal(torch.get_rng_state(), rng):
        try:
            return terms, unpack(calls[0])[0]
        except TypeError:
            pass
    return terms, unpack(model(x))[0]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    frames: Any,
    loss_fn: LossFn | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean loss terms and per-pixel MSE of ``model`` on ``frames``, in eval mode.

    Args:
        model: a VAE as accepted by :func:`fit`.
        frames: ``uint8 (N, 64, 64, 3)`` array, or anything indexable by an index array that
            returns one (e.g. :class:`course_lib.data.ShardDataset`).
        loss_fn: as in :func:`fit` (default: the plain VAE loss).
        batch_size: frames per forward pass.
        device: where to run (default: where the model is).

    Returns:
        Dict with the batch-weighted mean of each loss term and ``mse``: the mean squared error
        per pixel value of the reconstruction, comparable with :func:`mean_image_baseline`.
    """
    _check_frames(frames, "frames")
    loss_fn = loss_fn or make_vae_loss()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    n = frames.shape[0]
    try:
        for start in range(0, n, batch_size):
            x = to_tensor(np.asarray(frames[start : start + batch_size])).to(device)
            terms, x_hat = _loss_and_reconstruction(model, x, loss_fn)
            terms = {**terms, "mse": per_pixel_mse(x, x_hat)}
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value) * x.shape[0]
    finally:
        model.train(was_training)
    return {key: value / n for key, value in totals.items()}


def mean_image_baseline(train_frames: Any, val_frames: Any) -> float:
    """Per-pixel MSE on ``val_frames`` of always predicting the mean training image.

    A model that does not beat this has learned nothing about individual frames.
    """
    _check_frames(train_frames, "train_frames")
    _check_frames(val_frames, "val_frames")
    total = np.zeros(train_frames.shape[1:], dtype=np.float64)
    for start in range(0, train_frames.shape[0], 1024):
        total += np.asarray(train_frames[start : start + 1024], dtype=np.float64).sum(axis=0)
    mean_image = total / train_frames.shape[0] / 255.0
    err = 0.0
    for start in range(0, val_frames.shape[0], 1024):
        batch = np.asarray(val_frames[start : start + 1024], dtype=np.float64) / 255.0
        err += float(((batch - mean_image) ** 2).sum())
    return err / float(np.prod(val_frames.shape))


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    history: History | None = None,
    **extra: Any,
) -> Path:
    """Save model (and optimiser) state and the history so that training can resume.

    The file is written to a temporary name and renamed, so an interrupted save never leaves
    a truncated checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": asdict(history) if history is not None else None,
        "extra": extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``).

    Returns:
        The checkpoint dict; ``"history"`` is a :class:`History`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        RuntimeError: if the weights do not fit ``model`` (message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location=map_location, weights_only=False)
    return _restore_checkpoint(state, path, model, optimizer)


def _restore_checkpoint(
    state: dict[str, Any], path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Load a checkpoint's ``state`` (read from ``path``) into ``model`` and ``optimizer`` (:func:`load_checkpoint`)."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise RuntimeError(f"checkpoint {path} does not fit {type(model).__name__}: {err}") from err
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    state["history"] = History(**state["history"]) if state.get("history") else History()
    return state


def fit(
    model: nn.Module,
    train_frames: Any,
    val_frames: Any | None = None,
    *,
    num_epochs: int = 1,
    batch_size: int = 64,
    lr: float = 1e-3,
    beta: float | Callable[[int, int], float] = 1.0,
    kl_tolerance: float = 0.0,
    loss_fn: LossFn | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    progress: bool = True,
    precision: str = "float32",
) -> History:
    """Train ``model`` with Adam on ``uint8`` frames and return the :class:`History`.

    Under ``torchrun``, once :func:`course_lib.distributed.from_torchrun` has set up the process
    group, every process calls ``fit`` with the same arguments: the model is wrapped in
    ``DistributedDataParallel`` (gradients averaged over the processes), each process reads its
    share of every global batch of ``batch_size`` frames (:class:`course_lib.distributed.DistributedBatches`:
    the same global order for any number of processes), and rank 0 alone shows progress,
    validates and writes the checkpoint (the un-wrapped model's state), which any number of
    processes can resume. The reparameterisation noise is drawn by each process from
    ``seed + rank``, so only a model that draws none gives the losses of one process exactly
    (to float rounding). A ``loss_fn`` must then call ``model(x)`` (the wrapper's forward
    prepares the gradient averaging) and return batch means.

    Args:
        model: a VAE returning ``(x_hat, mu, logvar)`` or ``[x_hat, x, mu, logvar]``.
        train_frames: ``uint8 (N, 64, 64, 3)`` array or an indexable dataset of such frames.
        val_frames: frames for the end-of-epoch validation (optional; only rank 0 uses them).
        num_epochs: passes over ``train_frames``.
        batch_size: frames per step (all processes together).
        lr: Adam's learning rate.
        beta: KL weight, or a function ``beta(step, total_steps)`` such as
            :func:`course_lib.losses.cyclical_beta`.
        kl_tolerance: free nats per latent dimension (World Models: 0.5).
        loss_fn: ``loss_fn(model, x) -> dict`` overriding the VAE loss (``beta`` and
            ``kl_tolerance`` are then ignored).
        max_steps: stop after this many optimiser steps in total.
        seed: seeds the shuffling and PyTorch's generator.
        device: where to train (default: :func:`get_device`).
        checkpoint_path: if given, resume from it when it exists and save to it after every
            epoch.
        progress: show a tqdm progress bar.
        precision: one of :data:`PRECISIONS` or ``"auto"``. ``"float32"`` (default: results do
            not depend on the CPU); ``"bfloat16"``: the forward pass runs under
            ``torch.autocast(dtype=torch.bfloat16)`` (the loss of ``loss_fn``, if given, too) on
            NCHW input, weights and optimiser stay float32, about 1.5x faster for the World Models
            ``ConvVAE`` on a CPU with AVX512-BF16; ``"bfloat16-channels-last"``: the same on
            channels-last input (1.5x a plain float32 loop on a Xeon with AMX, 1.2x for NCHW;
            10x slower or worse on CPUs that emulate bfloat16); losses agree with float32 to
            within 3% over 12 steps (tests/test_speed_equivalence.py). ``"auto"``: measure the three on a copy of the
            model at the start (:func:`choose_precision`, in runs of :data:`TRIAL_MIN_STEPS`
            steps or more) and train with the fastest; ``History.precision`` and
            ``History.precision_trial`` say which and why. Validation is always float32.

    Returns:
        The :class:`History` of this and any resumed run.

    Raises:
        NonFiniteLossError: when a loss term becomes NaN or infinite (names the step and terms).
        ValueError: on frames of the wrong shape or dtype, an unknown ``precision``, or a
            ``batch_size`` that does not divide evenly over the processes.
    """
    if precision not in PRECISIONS and precision != AUTO:
        raise ValueError(f"precision must be one of {[*PRECISIONS, AUTO]}, got {precision!r}")
    _check_frames(train_frames, "train_frames")
    if val_frames is not None:
        _check_frames(val_frames, "val_frames")
    processes = distributed.current()
    local_batch = distributed.local_batch_size(batch_size, processes.world_size)
    device = get_device() if device is None else torch.device(device)
    torch.manual_seed(seed + processes.rank)
    model.to(device)
    optimizer = adam(model.parameters(), lr, device)
    history = History()
    if checkpoint_path is not None:
        history = _resume(Path(checkpoint_path), model, optimizer, device, processes) or history
    n = train_frames.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total_steps = num_epochs * steps_per_epoch if max_steps is None else min(max_steps, num_epochs * steps_per_epoch)
    rng = np.random.default_rng(seed + history.epochs)
    start_time = time.perf_counter()
    seconds_before = history.seconds  # of the runs this one resumes
    history.precision, history.precision_trial = precision, {}
    if precision == AUTO:
        trial = _auto_precision(
            model,
            train_frames,
            total_steps - history.steps,
            batch_size=local_batch,
            device=device,
            loss_fn=loss_fn,
            kl_tolerance=kl_tolerance,
            lr=lr,
            seed=seed,
        )
        history.precision, history.precision_trial = trial.chosen, asdict(trial)
    path = PRECISIONS[history.precision]
    if path.channels_last and device.type in CHANNELS_LAST_DEVICES:
        model.to(memory_format=torch.channels_last)  # in place: the optimiser keeps the same parameters
    # DistributedDataParallel broadcasts rank 0's weights, then averages the gradients in backward
    train_model = model
    if processes.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    batches = distributed.DistributedBatches(n, batch_size, rng, processes.rank, processes.world_size)

    bar = tqdm(
        total=total_steps,
        initial=min(history.steps, total_steps),
        disable=not (progress and processes.is_main),
        desc="fit",
    )
    threads = _ThreadChooser(
        device, total_steps - history.steps, key=(type(model).__qualname__, local_batch, history.precision)
    )
    with _fast_kernels(model, device):  # transposed convolutions as a matrix product, a phase convolution (CPU)
        try:
            while history.epochs < num_epochs and history.steps < total_steps:
                model.train()
                for share in batches:
                    if history.steps >= total_steps:
                        break
                    threads.before_step()
                    with record_function(StepStage.BATCH):
                        # (b, 3, 64, 64) float32 in [0, 1], channels-last or NCHW as the precision asks
                        x = _model_input(np.asarray(train_frames[share.index]), path, device)
                    with record_function(StepStage.FORWARD):
                        step_beta = beta(history.steps, total_steps) if callable(beta) else beta
                        terms = _step_loss(path, loss_fn, step_beta, kl_tolerance, device.type)(train_model, x)
                        values = {key: float(value.detach()) for key, value in terms.items()}
                        finite = all(math.isfinite(v) for v in values.values())
                        if processes.distributed:
                            values, finite = _global_terms(values, finite, share.weight)
                    if not finite:
                        raise NonFiniteLossError(
                            f"loss became non-finite at step {history.steps} (epoch {history.epochs}): "
                            f"{values}. Try a lower learning rate (lr={lr}) or check the data and the model."
                        )
                    with record_function(StepStage.BACKWARD):
                        optimizer.zero_grad(set_to_none=True)
                        loss = terms["loss"]
                        scale = share.weight * processes.world_size
                        if processes.distributed and scale != 1.0:  # an uneven last batch: weigh by frames
                            loss = loss * scale
                        loss.backward()
                    with record_function(StepStage.OPTIMIZER):
                        optimizer.step()
                    threads.after_step()
                    with record_function(StepStage.PROGRESS):
                        history.train.append({**values, "beta": float(step_beta)})
                        history.steps += 1
                        bar.set_postfix(loss=f"{values['loss']:.3g}", refresh=False)  # shown by update's own refresh
                        bar.update(1)
                else:
                    history.epochs += 1
                    if processes.is_main and val_frames is not None:
                        scores = evaluate(model, val_frames, loss_fn or make_vae_loss(1.0, kl_tolerance), device=device)
                        history.val.append({"epoch": history.epochs, "step": history.steps, **scores})
                    if processes.is_main and checkpoint_path is not None:
                        history.seconds = (
                            seconds_before + time.perf_counter() - start_time
                        )  # a killed run keeps its time
                        save_checkpoint(checkpoint_path, model, optimizer, history)
                    continue
                break
            bar.close()
            history.seconds = seconds_before + time.perf_counter() - start_time
            if (
                processes.is_main
                and val_frames is not None
                and (not history.val or history.val[-1]["step"] != history.steps)
            ):
                scores = evaluate(model, val_frames, loss_fn or make_vae_loss(1.0, kl_tolerance), device=device)
                history.val.append({"epoch": history.epochs, "step": history.steps, **scores})
        finally:
            threads.restore()
    if processes.is_main and checkpoint_path is not None:
        save_checkpoint(checkpoint_path, model, optimizer, history)
    model.eval()
    return history


def _resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    processes: distributed.Processes,
) -> History | None:
    """Load the checkpoint at ``path`` into ``model`` and ``optimizer`` if there is one; its history.

    Under ``torchrun`` rank 0 reads the file and sends its bytes to the others, so the checkpoint
    needs to be only where rank 0 runs, and every process resumes from the same state whatever
    the number of processes that wrote it (it holds the un-wrapped model's weights).
    """
    if not processes.distributed:
        return load_checkpoint(path, model, optimizer, map_location=device)["history"] if path.exists() else None
    blob = distributed.broadcast(path.read_bytes() if processes.is_main and path.exists() else None)
    if blob is None:
        return None
    state = torch.load(io.BytesIO(blob), map_location=device, weights_only=False)
    return _restore_checkpoint(state, path, model, optimizer)["history"]


def _global_terms(values: dict[str, float], finite: bool, weight: float) -> tuple[dict[str, float], bool]:
    """The loss terms of the global batch from each process's ``values`` on its share, and whether all are finite.

    Each process's terms are means over its share, weighted by the share's part of the global
    batch (``weight``; 0 for a process with no frame), and summed over the processes: one
    ``all_reduce``, after which every process sees the same terms (so all stop together on a
    non-finite loss).
    """
    keys = list(values)
    local = [weight * values[key] if weight > 0 else 0.0 for key in keys]
    reduced = distributed.all_reduce([*local, 0.0 if finite else 1.0])
    terms = dict(zip(keys, reduced[:-1], strict=True))
    return terms, reduced[-1] == 0.0 and all(math.isfinite(v) for v in terms.values())
