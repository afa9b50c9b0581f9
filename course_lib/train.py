"""Model-agnostic training: ``fit``, evaluation against the mean-image baseline, checkpoints.

``fit`` trains any module whose forward pass returns ``(x_hat, mu, logvar)`` (the World Models
``ConvVAE``, :class:`course_lib.models.SmallVAE`) or ``[x_hat, x, mu, logvar]`` (homework 1's
``MyVAE``) with Adam on ``uint8`` frames, converting one batch at a time to float, so memory is
bounded by the batch. It stops with :class:`NonFiniteLossError` when the loss goes NaN or inf.

Speed (benchmarks/bench_training.py): the float batch keeps the channels-last layout of the
``uint8`` frames (``to_tensor`` permutes without copying), which oneDNN's convolutions prefer;
``precision="bfloat16"`` runs the model's forward pass under ``torch.autocast`` (about 1.5x faster
on CPUs with AVX512-BF16 or AMX) while the loss, the gradients' accumulation into float32
weights and the optimiser stay in float32.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib.frames import to_tensor
from course_lib.losses import per_pixel_mse, vae_loss

LossFn = Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]

#: Values of ``fit(precision=...)`` and the autocast dtype each stands for (None: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


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


class _ThreadChooser:
    """Picks, while ``fit`` trains, the faster of PyTorch's thread count and one thread.

    With several OpenMP threads on a CPU that other processes also use, every parallel region
    waits at a barrier for a thread that is not running: on a busy 2-core machine a small VAE's
    step took 4-8x longer with 2 threads than with 1, the World Models ``ConvVAE``'s 2x
    (benchmarks/bench_training.py); on an idle machine more threads are faster. So the first
    steps are timed with each (after one warm-up step each) and the faster is kept; the other
    is tried again for two steps at exponentially spaced steps, as the load changes. The choice
    is remembered for :attr:`REMEMBER_SECONDS` per ``key`` (the model class, batch size and
    precision), so that the next ``fit`` of the same kind starts with it and skips the trial.

    Off, leaving the thread count alone, when it is pinned (``OMP_NUM_THREADS`` set, as the
    autograder does, or ``COURSE_THREADS`` set, which ``fit`` then uses), when PyTorch already
    uses one thread, off the CPU, and for runs shorter than :attr:`MIN_STEPS` steps. The thread
    count changes only the rounding of some float sums (tests/test_speed_equivalence.py).
    """

    MIN_STEPS = 40
    FIRST_CHECK = 50
    SWITCH_MARGIN = 0.9
    #: A choice made for the same kind of run this recently is reused without the first trial,
    #: and checked after :attr:`REMEMBERED_CHECK` steps in runs of :attr:`LONG_RUN` steps or more.
    REMEMBER_SECONDS = 600.0
    REMEMBERED_CHECK = 16
    LONG_RUN = 200
    #: ``{key: (threads, time.monotonic() of the decision)}``, shared by the ``fit`` calls of a process.
    choices: ClassVar[dict[Hashable, tuple[int, float]]] = {}

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
        remembered = self.choices.get(self.key)
        if self.enabled and key is not None and remembered and time.monotonic() - remembered[1] < self.REMEMBER_SECONDS:
            # start with it; check it early in a long run (the load may have changed since), while a
            # short run keeps it: two steps on the other count would cost it a few percent
            self.choice, self.plan = remembered[0], []
            self.next_check = self.REMEMBERED_CHECK if total_steps >= self.LONG_RUN else self.FIRST_CHECK
        self.current: tuple[int, bool] = (self.default, False)
        self.start = 0.0

    def before_step(self) -> None:
        """Set the thread count for the next step (and start its clock)."""
        if not self.enabled:
            return
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
            self.choices[self.key] = (self.choice, time.monotonic())
        elif self.k == self.next_check + 1:
            other = self.other[self.choice]
            current = float(np.median(self.timings[self.choice]))
            if float(np.mean(self.timings[other][-2:])) < self.SWITCH_MARGIN * current:
                self.choice = other
            self.choices[self.key] = (self.choice, time.monotonic())
            self.interval *= 2
            self.next_check += self.interval
        self.k += 1

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
    """

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    epochs: int = 0


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [np.sort(order[i : i + batch_size]) for i in range(0, n, batch_size)]


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

    Args:
        model: a VAE returning ``(x_hat, mu, logvar)`` or ``[x_hat, x, mu, logvar]``.
        train_frames: ``uint8 (N, 64, 64, 3)`` array or an indexable dataset of such frames.
        val_frames: frames for the end-of-epoch validation (optional).
        num_epochs: passes over ``train_frames``.
        batch_size: frames per step.
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
        precision: ``"float32"`` (default: results do not depend on the CPU) or ``"bfloat16"``:
            the forward pass runs under ``torch.autocast(dtype=torch.bfloat16)`` (the loss of
            ``loss_fn``, if given, too), weights and optimiser stay float32. About 1.5x faster
            for the World Models ``ConvVAE`` on a CPU with AVX512-BF16; losses agree with float32
            to about 1% (tests/test_speed_equivalence.py). Validation is always float32.

    Returns:
        The :class:`History` of this and any resumed run.

    Raises:
        NonFiniteLossError: when a loss term becomes NaN or infinite (names the step and terms).
        ValueError: on frames of the wrong shape or dtype, or an unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    _check_frames(train_frames, "train_frames")
    if val_frames is not None:
        _check_frames(val_frames, "val_frames")
    device = get_device() if device is None else torch.device(device)
    torch.manual_seed(seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = History()
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        history = load_checkpoint(checkpoint_path, model, optimizer, map_location=device)["history"]
    n = train_frames.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total_steps = num_epochs * steps_per_epoch if max_steps is None else min(max_steps, num_epochs * steps_per_epoch)
    rng = np.random.default_rng(seed + history.epochs)
    autocast_dtype = PRECISIONS[precision]

    def step_loss(step_beta: float) -> LossFn:
        """The training loss of one step, under autocast when ``precision`` asks for it."""
        if autocast_dtype is None:
            return loss_fn or make_vae_loss(step_beta, kl_tolerance)
        if loss_fn is None:
            return _autocast_vae_loss(step_beta, kl_tolerance, device.type, autocast_dtype)
        return _autocast_loss(loss_fn, device.type, autocast_dtype)

    start_time = time.perf_counter()
    bar = tqdm(total=total_steps, initial=min(history.steps, total_steps), disable=not progress, desc="fit")
    threads = _ThreadChooser(
        device, total_steps - history.steps, key=(type(model).__qualname__, batch_size, precision)
    )
    try:
        while history.epochs < num_epochs and history.steps < total_steps:
            model.train()
            for index in _batches(n, batch_size, rng):
                if history.steps >= total_steps:
                    break
                threads.before_step()
                # (B, 3, 64, 64) float32 in [0, 1], channels-last strides (a permuted view, converted once)
                x = to_tensor(np.asarray(train_frames[index])).to(device)
                if autocast_dtype is not None:
                    x = x.contiguous()  # oneDNN's bf16 convolutions measured faster on NCHW input
                step_beta = beta(history.steps, total_steps) if callable(beta) else beta
                terms = step_loss(step_beta)(model, x)
                values = {key: float(value.detach()) for key, value in terms.items()}
                if not all(math.isfinite(v) for v in values.values()):
                    raise NonFiniteLossError(
                        f"loss became non-finite at step {history.steps} (epoch {history.epochs}): "
                        f"{values}. Try a lower learning rate (lr={lr}) or check the data and the model."
                    )
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimizer.step()
                threads.after_step()
                history.train.append({**values, "beta": float(step_beta)})
                history.steps += 1
                bar.set_postfix(loss=f"{values['loss']:.3g}", refresh=False)  # shown by update's own refresh
                bar.update(1)
            else:
                history.epochs += 1
                if val_frames is not None:
                    scores = evaluate(model, val_frames, loss_fn or make_vae_loss(1.0, kl_tolerance), device=device)
                    history.val.append({"epoch": history.epochs, "step": history.steps, **scores})
                if checkpoint_path is not None:
                    save_checkpoint(checkpoint_path, model, optimizer, history)
                continue
            break
        bar.close()
        history.seconds += time.perf_counter() - start_time
        if val_frames is not None and (not history.val or history.val[-1]["step"] != history.steps):
            scores = evaluate(model, val_frames, loss_fn or make_vae_loss(1.0, kl_tolerance), device=device)
            history.val.append({"epoch": history.epochs, "step": history.steps, **scores})
    finally:
        threads.restore()
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, model, optimizer, history)
    model.eval()
    return history
