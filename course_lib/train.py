"""Model-agnostic training: ``fit``, evaluation against the mean-image baseline, checkpoints.

``fit`` reads top to bottom: set up, choose the precision path (:mod:`course_lib.precision`), then
epochs of :class:`_Step` with the thread count :mod:`course_lib.threads` picks, validating and
saving after each. What makes the step fast is in :mod:`course_lib.step`; docs/training.md and
docs/performance.md say what each choice is worth.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm.auto import tqdm

from course_lib import distributed
from course_lib.frames import to_tensor
from course_lib.losses import per_pixel_mse
from course_lib.precision import AUTO, PRECISIONS, Precision, auto_precision
from course_lib.step import (
    LossFn,
    StepStage,
    adam,
    channels_last_weights,
    check_frames,
    fast_kernels,
    make_vae_loss,
    model_input,
    step_loss,
    unpack,
)
from course_lib.threads import ThreadChooser


class NonFiniteLossError(RuntimeError):
    """Raised by :func:`fit` when a loss term becomes NaN or infinite."""


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
        precision: the :data:`course_lib.precision.PRECISIONS` path the last ``fit`` call trained with.
        precision_trial: with ``precision="auto"``, what the choice was based on (the fields of
            :class:`course_lib.precision.PrecisionTrial`: ``chosen``, ``reason``, ``images_per_s`` of each
            path measured, ``screen_images_per_s``, ``seconds``, ``errors``); empty otherwise.

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
    check_frames(frames, "frames")
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
    check_frames(train_frames, "train_frames")
    check_frames(val_frames, "val_frames")
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
    """Train ``model`` with Adam (Kingma & Ba 2015) on ``uint8`` frames and return the :class:`History`.

    Under ``torchrun`` (:func:`course_lib.distributed.from_torchrun`) every process calls ``fit`` alike
    and reads its share of each global batch; rank 0 alone validates, saves and shows progress.

    Args:
        model: a VAE returning ``(x_hat, mu, logvar)`` or ``[x_hat, x, mu, logvar]``.
        train_frames: ``uint8 (N, 64, 64, 3)`` array or an indexable dataset of such frames.
        val_frames: frames for the end-of-epoch validation (optional).
        num_epochs: passes over ``train_frames``.
        batch_size: frames per step (all processes together).
        lr: Adam's learning rate.
        beta: KL weight, or ``beta(step, total_steps)`` such as :func:`course_lib.losses.cyclical_beta`.
        kl_tolerance: free nats per latent dimension (World Models: 0.5).
        loss_fn: ``loss_fn(model, x) -> dict`` of batch means replacing the VAE loss (``beta`` unused then).
        max_steps: stop after this many optimiser steps in total.
        seed: seeds the shuffling and PyTorch's generator (``seed + rank`` under ``torchrun``).
        device: where to train (default: :func:`get_device`).
        checkpoint_path: resume from it when it exists; save to it after every epoch.
        progress: show a tqdm progress bar.
        precision: a :data:`course_lib.precision.PRECISIONS` name (``"float32"``: results that do not
            depend on the CPU) or ``"auto"``: the fastest of them, measured at the start (docs/training.md).

    Raises:
        NonFiniteLossError: when a loss term becomes NaN or infinite (names the step and terms).
        ValueError: on frames of the wrong shape or dtype, an unknown ``precision``, or a
            ``batch_size`` that does not divide evenly over the processes.
    """
    _check_arguments(train_frames, val_frames, precision)
    processes = distributed.current()
    local_batch = distributed.local_batch_size(batch_size, processes.world_size)
    device = get_device() if device is None else torch.device(device)
    torch.manual_seed(seed + processes.rank)
    model.to(device)
    optimizer = adam(model.parameters(), lr, device)
    history = _resume(checkpoint_path, model, optimizer, device, processes) or History()
    if not processes.is_main:  # rank 0 alone validates and saves
        val_frames = checkpoint_path = None
    rng = np.random.default_rng(seed + history.epochs)
    n = train_frames.shape[0]
    batches = distributed.DistributedBatches(n, batch_size, rng, processes.rank, processes.world_size)
    total_steps = num_epochs * len(batches) if max_steps is None else min(max_steps, num_epochs * len(batches))
    start_time, seconds_before = time.perf_counter(), history.seconds  # of the runs this one resumes
    path = _precision_path(
        history, precision, model, train_frames, total_steps - history.steps,
        batch_size=local_batch, device=device, loss_fn=loss_fn, kl_tolerance=kl_tolerance, lr=lr, seed=seed,
    )
    kind = (type(model).__qualname__, local_batch, history.precision)  # of run, for a remembered thread count
    threads = ThreadChooser(device, total_steps - history.steps, key=kind)
    train_model = _prepared(model, path, device, processes)
    step = _Step(train_model, optimizer, path, device, loss_fn, beta, kl_tolerance, lr, total_steps, threads, processes)
    bar = _progress_bar(total_steps, history.steps, progress and processes.is_main)
    with fast_kernels(model, device), threads:  # transposed convolutions as a matrix product, a phase convolution (CPU)
        while history.epochs < num_epochs and history.steps < total_steps:
            model.train()
            whole_epoch = len(batches) <= total_steps - history.steps
            for share in itertools.islice(batches, total_steps - history.steps):
                _record(history, step(train_frames, share, history), bar)
            if not whole_epoch:
                break
            history.epochs += 1
            _validate(model, val_frames, loss_fn, kl_tolerance, device, history)
            history.seconds = seconds_before + time.perf_counter() - start_time  # a killed run keeps its time
            _save(checkpoint_path, model, optimizer, history)
        bar.close()
        history.seconds = seconds_before + time.perf_counter() - start_time
        _validate(model, val_frames, loss_fn, kl_tolerance, device, history)  # unless the last epoch ended here
    _save(checkpoint_path, model, optimizer, history)
    model.eval()
    return history


def _check_arguments(train_frames: Any, val_frames: Any | None, precision: str) -> None:
    """Raise ValueError for :func:`fit`'s frames of the wrong shape or dtype, or an unknown ``precision``."""
    if precision not in PRECISIONS and precision != AUTO:
        raise ValueError(f"precision must be one of {[*PRECISIONS, AUTO]}, got {precision!r}")
    check_frames(train_frames, "train_frames")
    if val_frames is not None:
        check_frames(val_frames, "val_frames")


def _precision_path(
    history: History, precision: str, model: nn.Module, frames: Any, steps: int, **trial_options: Any
) -> Precision:
    """The path :func:`fit` trains along, recorded in ``history``: ``precision``'s, or with ``"auto"`` the trial's.

    The trial (:func:`course_lib.precision.auto_precision`, given ``trial_options``) runs on a copy of
    ``model`` for a run of ``steps`` more steps, or reuses a recent choice for a short run.
    """
    history.precision, history.precision_trial = precision, {}
    if precision == AUTO:
        trial = auto_precision(model, frames, steps, **trial_options)
        history.precision, history.precision_trial = trial.chosen, asdict(trial)
    return PRECISIONS[history.precision]


def _prepared(model: nn.Module, path: Precision, device: torch.device, processes: distributed.Processes) -> nn.Module:
    """The module a step calls: ``model`` with its weights laid out for ``path``, wrapped under ``torchrun``.

    ``DistributedDataParallel`` broadcasts rank 0's weights, then averages the gradients in backward.
    """
    if path.channels_last:
        channels_last_weights(model, device)  # in place: the optimiser keeps the same parameters
    if not processes.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _progress_bar(total_steps: int, steps: int, show: bool) -> tqdm:
    """``fit``'s progress bar over ``total_steps`` steps, ``steps`` of them done before."""
    return tqdm(total=total_steps, initial=min(steps, total_steps), disable=not show, desc="fit")


@dataclass(frozen=True)
class _Step:
    """One optimiser step of :func:`fit` (its step body), with what stays the same over the run.

    ``model`` is the module to call (``fit``'s model, or its ``DistributedDataParallel`` wrapper);
    ``threads`` times the step for the thread count it runs with.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    path: Precision
    device: torch.device
    loss_fn: LossFn | None
    beta: float | Callable[[int, int], float]
    kl_tolerance: float
    lr: float
    total_steps: int
    threads: ThreadChooser
    processes: distributed.Processes

    def __call__(self, frames: Any, share: distributed.LocalBatch, history: History) -> dict[str, float]:
        """Train on this process's ``share`` of a global batch of ``frames``; the step's entry of ``history.train``.

        Returns:
            The loss terms as floats (of the global batch under ``torchrun``), and ``beta``.

        Raises:
            NonFiniteLossError: when a term is NaN or infinite (before the backward pass).
        """
        self.threads.before_step()
        with record_function(StepStage.BATCH):
            # (b, 3, 64, 64) float32 in [0, 1], channels-last or NCHW as the precision asks
            x = model_input(np.asarray(frames[share.index]), self.path.channels_last, self.device)
        with record_function(StepStage.FORWARD):
            beta = self.beta(history.steps, self.total_steps) if callable(self.beta) else self.beta
            loss_fn = step_loss(self.path.autocast, self.loss_fn, beta, self.kl_tolerance, self.device.type)
            terms = loss_fn(self.model, x)
            values = {key: float(value.detach()) for key, value in terms.items()}
            finite = all(math.isfinite(v) for v in values.values())
            if self.processes.distributed:
                values, finite = _global_terms(values, finite, share.weight)
        if not finite:
            raise NonFiniteLossError(
                f"loss became non-finite at step {history.steps} (epoch {history.epochs}): "
                f"{values}. Try a lower learning rate (lr={self.lr}) or check the data and the model."
            )
        with record_function(StepStage.BACKWARD):
            self.optimizer.zero_grad(set_to_none=True)
            loss = terms["loss"]
            scale = share.weight * self.processes.world_size
            if self.processes.distributed and scale != 1.0:  # an uneven last batch: weigh by frames
                loss = loss * scale
            loss.backward()
        with record_function(StepStage.OPTIMIZER):
            self.optimizer.step()
        self.threads.after_step()
        return {**values, "beta": float(beta)}


def _record(history: History, entry: dict[str, float], bar: tqdm) -> None:
    """Append a step's ``entry`` to ``history`` and show its loss on the progress ``bar``."""
    with record_function(StepStage.PROGRESS):
        history.train.append(entry)
        history.steps += 1
        bar.set_postfix(loss=f"{entry['loss']:.3g}", refresh=False)  # shown by update's own refresh
        bar.update(1)


def _validate(
    model: nn.Module,
    frames: Any | None,
    loss_fn: LossFn | None,
    kl_tolerance: float,
    device: torch.device,
    history: History,
) -> None:
    """Append the scores of :func:`evaluate` on ``frames`` to ``history.val``, unless there are none or
    the last entry is of this step already. The loss is the plain negative ELBO (``beta`` = 1)."""
    if frames is None or (history.val and history.val[-1]["step"] == history.steps):
        return
    scores = evaluate(model, frames, loss_fn or make_vae_loss(1.0, kl_tolerance), device=device)
    history.val.append({"epoch": history.epochs, "step": history.steps, **scores})


def _save(path: str | os.PathLike | None, model: nn.Module, optimizer: torch.optim.Optimizer, history: History) -> None:
    """:func:`save_checkpoint` to ``path``, unless it is None."""
    if path is not None:
        save_checkpoint(path, model, optimizer, history)


def _resume(
    path: str | os.PathLike | None,
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
    if path is None:
        return None
    path = Path(path)
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
