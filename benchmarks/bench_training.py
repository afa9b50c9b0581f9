"""Training throughput of the World Models ConvVAE at batch 100 on the CPU, against a plain loop.

Each measurement is a function below (:func:`cpu_benchmark` runs them in order). Every
configuration is measured in interleaved rounds, and medians and ratios are taken over the rounds
during which other processes were quiet, each ratio within its round, so that a burst of load does
not favour one. On a CPU without native bfloat16 (no ``avx512_bf16`` or ``amx_bf16`` flag) the
bfloat16 paths and levers are not timed: they run at about 1/40 of float32 there.

Usage: ``python benchmarks/bench_training.py [--rounds 3] [--steps 8] [--quick] [--smoke] [--no-compile]``;
``--profile``: only the profile of one epoch (``--profile-frames``, default 2000), as JSON;
``--device cuda``: ``course train-vae`` on the GPU (:mod:`training_cuda`; an error without one).
``--smoke``: batch 8, one step of everything, to check that it runs; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    OthersLoad,
    conditions,
    emit,
    log,
    machine,
    matmul_gflops,
    paired_median_ratio,
    quiet_median,
    timed,
)
from torch.utils.flop_counter import FlopCounterMode
from training_cli import LONG, train_vae_rate
from training_cuda import NoGPUError, cuda_benchmark
from training_profile import profile_fit
from training_trial import trial_cost

from course_lib.cpu import fast_bfloat16
from course_lib.data import ShardDataset, save_shard
from course_lib.frames import to_tensor
from course_lib.kernels import fast_transposed_convolutions
from course_lib.precision import PRECISIONS, TRIAL_MIN_STEPS, PrecisionTrial, choose_precision
from course_lib.solutions.conv_vae import ConvVAE
from course_lib.train import fit

BATCH = 100
LR = 1e-4
KL_TOLERANCE = 0.5


def seed000_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """World Models' loss: ``mean_b sum (x - x_hat)^2 + mean_b max(KL_b, kl_tolerance * z_size)``."""
    r_loss = (x - x_hat).pow(2).sum(dim=(1, 2, 3)).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)  # (B,)
    kl = torch.clamp(kl, min=KL_TOLERANCE * mu.shape[1]).mean()
    return r_loss + kl


class PlainLoop:
    """The baseline: a model, Adam and a fixed set of batches in memory, or one lever of it.

    The anchor every ratio is taken against: float32 ``(N, 3, 64, 64)`` NCHW tensors already in
    memory, Adam (lr 1e-4), World Models' loss (:func:`seed000_loss`).

    Args:
        model: a ConvVAE (moved to channels-last if ``channels_last``).
        batches: float32 ``(B, 3, 64, 64)`` NCHW tensors, cycled through; with ``uint8`` the same
            frames as ``uint8 (B, 64, 64, 3)``, converted to float in each step.
        autocast: run the forward pass under bf16 autocast.
        channels_last: convert the model and the inputs to channels-last.
        compile: ``torch.compile`` the step's conversion, forward pass and loss as one function.
        uint8: the batches are ``uint8`` frames (inside the compiled graph with ``compile``).
        fused_adam: Adam's fused kernel (``fused=True``) instead of its default implementation.
        dense: transposed convolutions of 1x1 maps as matrix products
            (:func:`course_lib.kernels.dense_forward`, as ``fit`` runs them on the CPU).
        phase: transposed convolutions with few output channels as phase convolutions
            (:func:`course_lib.kernels.phase_forward`, as ``fit`` runs them on the CPU).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batches: list[torch.Tensor],
        autocast: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        uint8: bool = False,
        fused_adam: bool = False,
        dense: bool = False,
        phase: bool = False,
    ):
        self.model = model
        self.dense, self.phase = dense, phase
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            if not uint8:
                batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
        self.batches = batches
        self.batch_size = batches[0].shape[0]
        self.autocast = autocast
        self.uint8 = uint8
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR, fused=True if fused_adam else None)
        self.loss = torch.compile(self.forward_loss) if compile else self.forward_loss
        self.k = 0

    def forward_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The loss of one batch (``uint8`` frames converted first)."""
        if self.uint8:
            x = x.permute(0, 3, 1, 2).float().div(255.0)  # (B, 3, 64, 64), channels-last strides
        kernels = fast_transposed_convolutions(self.model, dense=self.dense, phase=self.phase)
        with kernels, torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            x_hat, mu, logvar = self.model(x)
        return seed000_loss(x, x_hat.float(), mu.float(), logvar.float())

    def step(self) -> float:
        """One optimiser step; returns the loss."""
        x = self.batches[self.k % len(self.batches)]
        self.k += 1
        loss = self.loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def run(self, steps: int) -> float:
        """Images per second over ``steps`` steps."""
        return steps * self.batch_size / timed(lambda: [self.step() for _ in range(steps)])


def training_flops_per_image(model: torch.nn.Module) -> float:
    """FLOPs of one forward + backward pass per image at batch 100 (matmuls and convolutions).

    Times images per second, over the matmul rate of the same round, this gives each configuration's
    fraction of the machine's float32 (or bfloat16) matmul rate.
    """
    model = copy.deepcopy(model)
    x = torch.rand(BATCH, 3, 64, 64)
    with FlopCounterMode(display=False) as counter:
        x_hat, mu, logvar = model(x)
        seed000_loss(x, x_hat, mu, logvar).backward()
    return counter.get_total_flops() / BATCH


def write_shards(directory: Path, n_frames: int, n_shards: int = 4) -> ShardDataset:
    """``n_frames`` seeded random ``uint8`` frames in ``n_shards`` ``.npy`` shards."""
    rng = np.random.default_rng(0)
    for k, part in enumerate(np.array_split(np.arange(n_frames), n_shards)):
        save_shard(directory / f"shard_{k}.npy", rng.integers(0, 256, (len(part), 64, 64, 3), dtype=np.uint8))
    return ShardDataset(directory)


THREADS_USED: dict[str, list[int]] = {}


def package_rate(model: torch.nn.Module, data: ShardDataset, steps: int, precision: str, seed: int) -> float:
    """Images per second of ``fit`` for ``steps`` steps, timed around the whole call.

    The thread count of each forward pass is recorded in ``THREADS_USED[precision]`` (``fit``
    chooses between PyTorch's count and one thread on runs of 40 steps or more).
    """
    used = THREADS_USED.setdefault(precision, [])
    handle = model.register_forward_pre_hook(lambda module, args: used.append(torch.get_num_threads()))
    start = time.perf_counter()
    fit(
        model,
        data,
        batch_size=BATCH,
        lr=LR,
        kl_tolerance=KL_TOLERANCE,
        max_steps=steps,
        num_epochs=1,
        seed=seed,
        device="cpu",
        progress=False,
        precision=precision,
    )
    seconds = time.perf_counter() - start
    handle.remove()
    return steps * BATCH / seconds


def data_path_ms(data: ShardDataset, reps: int = 20) -> dict[str, float]:
    """Milliseconds per batch of 100 for reading from the shards and converting to float.

    ``read``: ``ShardDataset[index]`` of 100 random sorted indices (``os.preadv`` per run);
    ``convert_batched``: one ``to_tensor`` of the ``(100, 64, 64, 3)`` batch;
    ``convert_per_frame``: ``torch.stack`` of 100 single-frame conversions (the naive way).
    """
    rng = np.random.default_rng(1)
    indices = [np.sort(rng.choice(len(data), BATCH, replace=False)) for _ in range(reps)]
    read = timed(lambda: [data[i] for i in indices]) / reps
    batch = data[indices[0]]
    batched = timed(lambda: [to_tensor(batch) for _ in range(reps)]) / reps
    per_frame = timed(lambda: [torch.cat([to_tensor(f) for f in batch]) for _ in range(reps)]) / reps
    return {"read": read * 1e3, "convert_batched": batched * 1e3, "convert_per_frame": per_frame * 1e3}


def dataloader_rate(model: torch.nn.Module, data: ShardDataset, steps: int, workers: int) -> float:
    """Images per second of the plain loop fed by a torch DataLoader over the shards.

    The loader yields ``uint8`` batches (one ``ShardDataset`` read per batch, in ``workers``
    processes with prefetching), converted with ``to_tensor`` in the loop.
    """
    generator = torch.Generator().manual_seed(0)
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(range(len(data)), generator=generator), BATCH, drop_last=True
    )
    # batch_size=None: the sampler's index lists go to ShardDataset.__getitem__ whole (one read per batch)
    loader = torch.utils.data.DataLoader(
        data, sampler=sampler, batch_size=None, num_workers=workers, prefetch_factor=2 if workers else None
    )
    loop = PlainLoop(model, [torch.zeros(1)])
    it = iter(loader)
    start = time.perf_counter()
    for _ in range(steps):
        x = to_tensor(next(it))
        loop.batches = [x]
        loop.k = 0
        loop.step()
    return steps * BATCH / (time.perf_counter() - start)


def auto_trial(model: torch.nn.Module, data: ShardDataset) -> PrecisionTrial:
    """What ``fit(precision="auto")`` measures at the start of a run on this machine (then remembered)."""
    return choose_precision(model, data, batch_size=BATCH, device="cpu", kl_tolerance=KL_TOLERANCE, lr=LR)


Samples = dict[str, list[float]]

#: The matmul probes of every round: ``name: (dtype, one thread?)``.
MATMULS = {
    "matmul": (torch.float32, False),
    "matmul_1_thread": (torch.float32, True),
    "matmul_bf16": (torch.bfloat16, False),
    "matmul_bf16_1_thread": (torch.bfloat16, True),
}


def matmul_size(dtype: torch.dtype, seconds: float) -> int:
    """2048 for float32; for bfloat16 2048, or the largest of 1024, 512, 256 whose product takes under ``seconds / 4``.

    Estimated from the fastest of three 256x256 products (cubic in the size): a bfloat16 product of
    2048 takes tens of seconds on a CPU that emulates bfloat16, where the probe would otherwise run
    for minutes. Float32 keeps 2048, the size of earlier results.
    """
    if dtype == torch.float32:
        return 2048
    a = torch.randn(256, 256, dtype=dtype)
    torch.mm(a, a)
    one = min(timed(lambda: torch.mm(a, a)) for _ in range(3))
    for n in (2048, 1024, 512):
        if one * (n / 256) ** 3 < seconds / 4:
            return n
    return 256


def measure(
    configs: dict[str, Callable[[], float]], rounds: int, matmul_seconds: float, bfloat16: bool
) -> tuple[Samples, Samples, dict[str, int]]:
    """Run every configuration once per round (interleaved), and the matmul probes each round.

    The bfloat16 probes only with ``bfloat16`` (a CPU with native bfloat16).

    Returns:
        ``(rates, others, sizes)``: per configuration and :data:`MATMULS` probe the samples and
        the CPU share other processes took while each was measured (:class:`OthersLoad`); the
        matrix size of each probe run.
    """
    probes = [name for name, (dtype, _) in MATMULS.items() if bfloat16 or dtype == torch.float32]
    rates: Samples = {name: [] for name in [*probes, *configs]}
    others: Samples = {name: [] for name in rates}
    sizes = {name: matmul_size(MATMULS[name][0], matmul_seconds) for name in probes}

    def matmul(name: str) -> float:
        dtype, one_thread = MATMULS[name]
        threads = torch.get_num_threads()
        if one_thread:
            torch.set_num_threads(1)
        try:
            return matmul_gflops(n=sizes[name], seconds=matmul_seconds, dtype=dtype)
        finally:
            torch.set_num_threads(threads)

    runs = {**{name: lambda name=name: matmul(name) for name in probes}, **configs}
    for r in range(rounds):
        for name, run in runs.items():
            with OthersLoad() as load:
                rates[name].append(run())
            others[name].append(load.percent)
            log(f"round {r + 1}/{rounds} {name}: {rates[name][-1]:.1f} (others used {load.percent}% of the CPUs)")
    return rates, others, sizes


def matmul_summary(name: str, rates: Samples, others: Samples, size: int) -> dict[str, Any]:
    """The median (over quiet rounds) and the samples of one matmul probe."""
    median, _ = quiet_median(rates[name], others[name])
    return {
        "median": round(median, 1),
        "matrix_size": size,
        "samples": [round(m, 1) for m in rates[name]],
        "others_cpu_percent": others[name],
    }


#: The levers' tolerances on the plain loop's losses (those of tests/test_speed_equivalence.py).
FLOAT32_RTOL, BFLOAT16_RTOL = 1e-4, 0.03
#: Steps over which a lever's losses are compared with the plain loop's.
CHECK_STEPS = 3


def lever_loops(
    fresh: Callable[[], torch.nn.Module],
    batches: list[torch.Tensor],
    frames: list[torch.Tensor],
    bfloat16: bool,
    compile: bool,
) -> dict[str, tuple[PlainLoop, float]]:
    """The levers: ``name: (loop, relative tolerance on the plain loop's losses)``.

    The plain loop with one thing changed: channels-last input, channels-last model and input,
    Adam's fused kernel, the transposed convolutions as a matrix product or a phase convolution
    (:mod:`course_lib.kernels`), all of them together (what ``fit`` does by default, and under bf16
    autocast), ``torch.compile`` of the model and the loss, bf16 autocast, batch sizes 50 and 200.

    ``batches`` are the float32 NCHW batches, ``frames`` the same as ``uint8 (B, 64, 64, 3)``;
    bfloat16 levers only with ``bfloat16``, compiled ones only with ``compile``.
    """
    channels_last = [b.contiguous(memory_format=torch.channels_last) for b in batches]
    loops: dict[str, tuple[PlainLoop, float]] = {
        "channels_last_input": (PlainLoop(fresh(), channels_last), FLOAT32_RTOL),
        "channels_last_model_and_input": (PlainLoop(fresh(), batches, channels_last=True), FLOAT32_RTOL),
        "fused_adam": (PlainLoop(fresh(), batches, fused_adam=True), FLOAT32_RTOL),
        "channels_last_and_fused_adam": (
            PlainLoop(fresh(), batches, channels_last=True, fused_adam=True),
            FLOAT32_RTOL,
        ),
        "dense_first_transposed_convolution": (PlainLoop(fresh(), batches, dense=True), FLOAT32_RTOL),
        "phase_last_transposed_convolution": (PlainLoop(fresh(), batches, phase=True), FLOAT32_RTOL),
        "fast_kernels_channels_last_and_fused_adam": (
            PlainLoop(fresh(), batches, channels_last=True, fused_adam=True, dense=True, phase=True),
            FLOAT32_RTOL,
        ),
        "batch_50": (PlainLoop(fresh(), [b[:50] for b in batches]), math.nan),
        "batch_200": (PlainLoop(fresh(), [torch.cat([b, b.flip(0)]) for b in batches]), math.nan),
    }
    if bfloat16:
        loops |= {
            "bf16_autocast": (PlainLoop(fresh(), batches, autocast=True), BFLOAT16_RTOL),
            "bf16_autocast_channels_last_model_and_input": (
                PlainLoop(fresh(), batches, autocast=True, channels_last=True),
                BFLOAT16_RTOL,
            ),
            "bf16_autocast_dense_first_transposed_convolution": (
                PlainLoop(fresh(), batches, autocast=True, dense=True),
                BFLOAT16_RTOL,
            ),
            "bf16_autocast_fast_kernels_channels_last_and_fused_adam": (
                PlainLoop(fresh(), batches, autocast=True, channels_last=True, fused_adam=True, dense=True, phase=True),
                BFLOAT16_RTOL,
            ),
        }
    if compile:
        loops |= {
            "compile_model_and_loss": (PlainLoop(fresh(), batches, compile=True), FLOAT32_RTOL),
            "compile_channels_last": (PlainLoop(fresh(), batches, compile=True, channels_last=True), FLOAT32_RTOL),
            "compile_with_uint8_conversion": (
                PlainLoop(fresh(), frames, compile=True, channels_last=True, uint8=True),
                FLOAT32_RTOL,
            ),
        }
    return loops


def check_losses(loops: dict[str, tuple[PlainLoop, float]], baseline: PlainLoop) -> dict[str, dict[str, Any]]:
    """Each lever's first :data:`CHECK_STEPS` losses against the plain loop's, from the same seed.

    A lever's first call also compiles it; its seconds are reported. Batch-size levers see other
    batches, so they have no tolerance (``nan``) and are only reported.
    """
    torch.manual_seed(0)
    reference = np.array([baseline.step() for _ in range(CHECK_STEPS)])
    checks = {}
    for name, (loop, rtol) in loops.items():
        torch.manual_seed(0)
        start = time.perf_counter()
        losses = np.array([loop.step() for _ in range(CHECK_STEPS)])
        seconds = time.perf_counter() - start
        worst = float(np.max(np.abs(losses - reference) / np.abs(reference)))
        checks[name] = {
            "first_steps_seconds": round(seconds, 1),
            "max_relative_loss_difference": round(worst, 6),
            "tolerance": None if math.isnan(rtol) else rtol,
            "losses_match_plain_loop": None if math.isnan(rtol) else worst <= rtol,
        }
        log(f"{name}: losses within {worst:.2e} of the plain loop's ({seconds:.1f} s for the first steps)")
    return checks


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per plain-loop configuration and round")
    parser.add_argument(
        "--fit-steps",
        type=int,
        default=48,
        help="steps per fit call (>= 40: fit then chooses its thread count, as in real use)",
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 3 loop steps, 10 fit steps, no levers")
    parser.add_argument(
        "--smoke", action="store_true", help="--quick at batch 8 with 1 step each: checks that it runs, not the speed"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile levers (slow to compile)")
    parser.add_argument("--profile", action="store_true", help="only profile one fit epoch (torch.profiler), as JSON")
    parser.add_argument("--profile-frames", type=int, default=2000, help="frames of the profiled epoch (2000)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: course train-vae on the GPU")
    return parser.parse_args()


def best_matmul(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """The faster of PyTorch's thread count and one thread for ``dtype`` matmuls, in GFLOP/s (one sample each)."""
    rates = [matmul_gflops(n=matmul_size(dtype, seconds), seconds=seconds, dtype=dtype)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates.append(matmul_gflops(n=matmul_size(dtype, seconds), seconds=seconds, dtype=dtype))
    finally:
        torch.set_num_threads(threads)
    return max(rates)


#: The speed targets of issue 20, for ``fit``'s defaults and for ``course train-vae``, which runs them.
VS_PLAIN_LOOP, FRACTION_OF_MATMUL = 1.1, 0.75


def speed_targets(name: str, row: dict[str, Any]) -> dict[str, Any]:
    """``{name}_vs_plain_loop`` and ``{name}_fraction_of_fp32_matmul``: ``row``'s figures against the targets."""
    return {
        f"{name}_vs_plain_loop": {
            "ratio": row["speedup_vs_baseline"],
            "target": VS_PLAIN_LOOP,
            "met": row["speedup_vs_baseline"] >= VS_PLAIN_LOOP,
        },
        f"{name}_fraction_of_fp32_matmul": {
            "fraction": row["fraction_of_own_matmul"],
            "target": FRACTION_OF_MATMUL,
            "met": row["fraction_of_own_matmul"] >= FRACTION_OF_MATMUL,
        },
    }


@dataclass
class Workload:
    """What the CPU measurements train on: the reference model's weights and the same frames for all.

    Attributes:
        reference: the ConvVAE every configuration starts from (copied by :meth:`fresh`).
        data: the ``uint8`` shards ``fit`` reads.
        frames: four ``uint8 (B, 64, 64, 3)`` batches drawn from ``data``.
        batches: the same as float32 ``(B, 3, 64, 64)`` NCHW tensors, for the plain loops.
    """

    reference: torch.nn.Module
    data: ShardDataset
    frames: list[torch.Tensor]
    batches: list[torch.Tensor]

    def fresh(self) -> torch.nn.Module:
        """A copy of the reference model."""
        return copy.deepcopy(self.reference)


def workload(directory: Path, reference: torch.nn.Module, fit_steps: int) -> Workload:
    """Shards in ``directory`` long enough for ``fit_steps`` steps of a batch, and four batches of them."""
    n_frames = max(2000, BATCH * (fit_steps + 2))
    data = write_shards(directory, n_frames)
    rng = np.random.default_rng(2)
    frames = [torch.from_numpy(data[np.sort(rng.choice(n_frames, BATCH, replace=False))]) for _ in range(4)]
    return Workload(reference, data, frames, [to_tensor(f.numpy()).contiguous() for f in frames])


@dataclass
class Configs:
    """The configurations measured in every round.

    Attributes:
        runs: ``name: images/s of one sample``, in the order the rounds run them.
        loops: the plain loops (``baseline`` and the levers) some of them run.
        models: ``fit``'s model of each ``package_<precision>``.
    """

    runs: dict[str, Callable[[], float]] = field(default_factory=dict)
    loops: dict[str, PlainLoop] = field(default_factory=dict)
    models: dict[str, torch.nn.Module] = field(default_factory=dict)


def package_configs(work: Workload, precisions: list[str], steps: int, fit_steps: int) -> Configs:
    """The plain loop (``baseline``) and ``fit`` with each of ``precisions`` (``package_<precision>``).

    ``fit`` reads the shards, converts each batch to float and steps, timed from the call to the
    return; with ``"auto"`` it trains with the path its trial picked (:func:`auto_trial`, run once
    first: calls shorter than ``TRIAL_MIN_STEPS`` reuse its choice).
    """
    configs = Configs()
    configs.loops["baseline"] = PlainLoop(work.fresh(), work.batches)
    configs.models = {f"package_{p}": work.fresh() for p in precisions}
    configs.runs["baseline"] = lambda: configs.loops["baseline"].run(steps)
    for p in precisions:
        configs.runs[f"package_{p}"] = lambda p=p: package_rate(
            configs.models[f"package_{p}"], work.data, fit_steps, p, 0
        )
    return configs


def add_levers(configs: Configs, work: Workload, bfloat16: bool, compile: bool, steps: int) -> dict[str, dict]:
    """Add the levers, one thread and a DataLoader worker to ``configs``; each lever's loss check.

    Without a C++ compiler ``torch.compile`` fails: the other levers are checked and measured, and
    the error is reported under ``torch_compile``.
    """
    levers = lever_loops(work.fresh, work.batches, work.frames, bfloat16, compile=compile)
    log("levers: the first steps of each against the plain loop's losses (compiles first: slow)")
    try:
        checks = check_losses(levers, PlainLoop(work.fresh(), work.batches))
    except Exception as err:  # torch.compile needs a C++ compiler; report the others instead of failing
        log(f"a lever failed ({type(err).__name__}: {err}); measuring without torch.compile")
        levers = lever_loops(work.fresh, work.batches, work.frames, bfloat16, compile=False)
        checks = check_losses(levers, PlainLoop(work.fresh(), work.batches))
        checks["torch_compile"] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    configs.loops |= {name: loop for name, (loop, _) in levers.items()}
    for name in levers:
        configs.runs[name] = lambda name=name: configs.loops[name].run(steps)

    def one_thread() -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return configs.loops["baseline"].run(steps)
        finally:
            torch.set_num_threads(threads)

    configs.runs["baseline_1_thread"] = one_thread
    dl_model = work.fresh()
    configs.runs["dataloader_1_worker"] = lambda: dataloader_rate(dl_model, work.data, steps, workers=1)
    return checks


def warm_up(configs: Configs, data: ShardDataset) -> None:
    """Two steps of every ``fit`` model and plain loop, so that oneDNN's primitives exist before the rounds."""
    log("warm-up (oneDNN primitive creation)")
    for name in configs.runs:
        if name.startswith("package"):
            package_rate(configs.models[name], data, 2, name.removeprefix("package_"), 99)
        elif name in configs.loops:
            configs.loops[name].run(2)
    THREADS_USED.clear()


def measure_trial_cost(directory: Path, quick: bool) -> dict[str, Any]:
    """What ``fit(precision="auto")``'s trial adds to a run, in fresh processes (:mod:`training_trial`).

    Set against a run of ``TRIAL_MIN_STEPS`` steps, the shortest that pays for a trial (:func:`package_result`).
    """
    log("the trial's cost to a run: fresh processes with and without it")
    cost = trial_cost(directory, BATCH, LR, KL_TOLERANCE, rounds=1 if quick else 3)
    log(f"trial: {cost['seconds']:.2f} s more than a run without it ({cost['trial_seconds']:.2f} s of its own)")
    return cost


def measure_train_vae(directory: Path, quick: bool, anchor: Callable[[], float]) -> dict[str, Any]:
    """``course train-vae``'s images/s in fresh processes of two lengths (:mod:`training_cli`); ``anchor`` per round."""
    log("course train-vae: fresh processes of two lengths")
    shards = directory / "train_vae"
    shards.mkdir()
    # 2 of 40 shards held out (--val-fraction 0.05): LONG steps within the first epoch
    write_shards(shards, math.ceil(BATCH * LONG / 0.9), n_shards=40)
    cli = train_vae_rate(shards, BATCH, rounds=1 if quick else 3, anchor=anchor)
    log(f"course train-vae: {cli['images_per_s']:.0f} images/s")
    return cli


def measure_profile(work: Workload, matmul_rate: float, smoke: bool) -> dict[str, Any]:
    """One short ``fit`` epoch under ``torch.profiler`` (:mod:`training_profile`), on one or two shards."""
    log("profile of one short fit epoch")
    return profile_fit(
        work.fresh(),
        ShardDataset(work.data.paths[:1] if smoke else work.data.paths[:2]),
        batch_size=BATCH,
        lr=LR,
        kl_tolerance=KL_TOLERANCE,
        matmul_gflop_per_s=matmul_rate,
        top=8,
    )


@dataclass
class Rounds:
    """The samples of the interleaved rounds (:func:`measure`), split into the matmul probes and the rest.

    Attributes:
        rates: images/s of each configuration, per round.
        others: the CPU share other processes took during each sample.
        matmuls: each probe's summary (:func:`matmul_summary`).
        limits: each round's matmul rate (the faster of both thread counts) and the others' CPU share
            then, by "multiplies in bfloat16".
        matmul_bf16_rate: the bfloat16 matmul rate (None without native bfloat16).
    """

    rates: Samples
    others: Samples
    matmuls: dict[str, dict[str, Any]]
    limits: dict[bool, tuple[list[float], list[float | None]]]
    matmul_bf16_rate: float | None

    @classmethod
    def split(cls, rates: Samples, others: Samples, sizes: dict[str, int], bfloat16: bool) -> Rounds:
        """The probes of ``sizes`` taken out of ``rates`` and ``others`` (changed in place)."""
        matmuls = {name: matmul_summary(name, rates, others, sizes[name]) for name in sizes}
        probes = {name: (rates.pop(name), others.pop(name)) for name in sizes}
        matmul_bf16_rate = (
            max(matmuls["matmul_bf16"]["median"], matmuls["matmul_bf16_1_thread"]["median"]) if bfloat16 else None
        )

        def round_limits(multi: str, single: str) -> tuple[list[float], list[float | None]]:
            """Each round's matmul rate (the faster of both thread counts) and the others' CPU share then."""
            (rate_m, busy_m), (rate_s, busy_s) = probes[multi], probes[single]
            limits = [max(a, b) for a, b in zip(rate_m, rate_s, strict=True)]
            busy = [None if None in (a, b) else max(a, b) for a, b in zip(busy_m, busy_s, strict=True)]
            return limits, busy

        limits = {False: round_limits("matmul", "matmul_1_thread")}  # by "multiplies in bfloat16"
        if bfloat16:
            limits[True] = round_limits("matmul_bf16", "matmul_bf16_1_thread")
        return cls(rates, others, matmuls, limits, matmul_bf16_rate)

    def summary(self, name: str, flops: float, bf16_limit: bool) -> dict[str, Any]:
        """Configuration ``name``'s images/s, GFLOP/s and its per-round ratios to the plain loop and the matmul rate."""
        rates, others = self.rates, self.others
        ips, used = quiet_median(rates[name], others[name])
        gflops = [flops * x / 1e9 for x in rates[name]]
        limits, busy = self.limits[bf16_limit]
        fraction, _ = paired_median_ratio(gflops, limits, others[name], busy)
        speedup, _ = paired_median_ratio(rates[name], rates["baseline"], others[name], others["baseline"])
        return {
            "images_per_s": round(ips, 1),
            "gflop_per_s": round(flops * ips / 1e9, 1),
            "fraction_of_own_matmul": round(fraction, 3),
            "speedup_vs_baseline": round(speedup, 3),
            "samples": [round(x, 1) for x in rates[name]],
            "others_cpu_percent": others[name],
            "quiet_samples_used": used,
        }


def multiplies_in_bf16(name: str, configs: Configs, trial: PrecisionTrial, matmul_bf16_rate: float | None) -> bool:
    """Whether configuration ``name`` multiplies in bfloat16 (its limit is the bfloat16 matmul rate)."""
    path = name.removeprefix("package_")
    path = trial.chosen if path == "auto" else path
    in_loop = name in configs.loops and configs.loops[name].autocast
    bf16 = PRECISIONS[path].autocast is not None if path in PRECISIONS else in_loop
    return bool(bf16 and matmul_bf16_rate)


def package_result(
    results: dict[str, dict[str, Any]], trial: PrecisionTrial, cost: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], float]:
    """``fit``'s row per precision, ``auto``'s with its trial and cost; the trial's share of the shortest run
    that pays for one (:data:`TRIAL_MIN_STEPS` steps at the rate of the path ``auto`` trains with)."""
    package = {k.removeprefix("package_"): v for k, v in results.items() if k.startswith("package_")}
    package["auto"]["trial"] = asdict(trial)
    auto_step_s = BATCH / package["auto"]["images_per_s"]
    trial_share = cost["seconds"] / (TRIAL_MIN_STEPS * auto_step_s)
    package["auto"]["trial_cost"] = cost
    package["auto"]["trial_share_of_shortest_measured_run"] = round(trial_share, 4)
    return package, trial_share


def levers_result(
    results: dict[str, dict[str, Any]], checks: dict[str, dict], data_ms: dict[str, float], float32_rate: float
) -> dict[str, Any]:
    """The levers' rows with their loss checks, and the data path against a float32 ``fit`` step."""
    levers = {k: v for k, v in results.items() if k != "baseline" and not k.startswith("package_")}
    for name, check in checks.items():
        levers.setdefault(name, {}).update(check)
    step_ms = 1e3 * BATCH / float32_rate
    return {
        **levers,
        "data_path_ms_per_batch": {k: round(v, 3) for k, v in data_ms.items()},
        "data_path_share_of_float32_step": round((data_ms["read"] + data_ms["convert_batched"]) / step_ms, 4),
    }


def train_vae_result(cli: dict[str, Any] | None, flops: float, matmul_rate: float) -> dict[str, Any] | None:
    """``course train-vae``'s row: its rate against the matmul rate and the plain loop of each round."""
    if cli is None:
        return None
    gflops = flops * cli["images_per_s"] / 1e9
    return {
        **cli,
        "gflop_per_s": round(gflops, 1),
        "fraction_of_own_matmul": round(gflops / matmul_rate, 3),
        # against the plain loop measured just before each round
        "speedup_vs_baseline": round(paired_median_ratio(cli["samples"], cli["anchor_samples"])[0], 3),
    }


def targets_result(
    package: dict[str, Any],
    train_vae: dict[str, Any] | None,
    profiled: dict[str, Any],
    trial: PrecisionTrial,
    cost: dict[str, Any],
    trial_share: float,
    bfloat16: bool,
) -> dict[str, Any]:
    """The targets of issue 20 and what held ``fit`` back, for the report."""
    targets = speed_targets("fit_defaults", package["float32"])
    holds = profiled["holds_back"][0]  # the operator furthest below the matmul rate
    targets["fit_defaults_fraction_of_fp32_matmul"] |= {
        "held_back_by": holds["category"],
        "held_back_seconds": holds["seconds"],
        "held_back_seconds_at_matmul_rate": holds["seconds_at_matmul_rate"],
        "held_back_excess_share_of_epoch": holds["excess_share_of_epoch"],
    }
    return {
        **targets,
        **({} if train_vae is None else speed_targets("train_vae", train_vae)),
        "auto_trial_share_of_shortest_measured_run": {
            "run_steps": TRIAL_MIN_STEPS,
            "seconds": cost["seconds"],
            "share": round(trial_share, 4),
            "target": 0.05,
            "met": trial_share <= 0.05,
        },
        "auto_picked": trial.chosen,
        "auto_never_tries_bfloat16_without_native_support": bfloat16
        or not any(
            name in trial.images_per_s or name in trial.screen_images_per_s for name in PRECISIONS if name != "float32"
        ),
    }


def cpu_benchmark(
    reference: torch.nn.Module, flops: float, args: argparse.Namespace, load_before: dict[str, Any]
) -> dict[str, Any]:
    """Every CPU measurement, in order, and the benchmark's JSON."""
    bfloat16 = fast_bfloat16()
    precisions = [
        p for p in [*PRECISIONS, "auto"] if bfloat16 or PRECISIONS.get(p, PRECISIONS["float32"]).autocast is None
    ]
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        work = workload(Path(tmp), reference, args.fit_steps)
        configs = package_configs(work, precisions, args.steps, args.fit_steps)
        log("precision trial (what fit(precision='auto') measures at the start of a run)")
        trial = auto_trial(work.fresh(), work.data)
        log(f"auto: {trial.chosen} ({trial.seconds:.2f} s, {trial.reason})")
        checks = {} if args.quick else add_levers(configs, work, bfloat16, not args.no_compile, args.steps)
        warm_up(configs, work.data)
        rates, others, matmul_sizes = measure(configs.runs, args.rounds, matmul_seconds=1.0, bfloat16=bfloat16)
        data_ms = data_path_ms(work.data)
        cost = measure_trial_cost(Path(tmp), args.quick)
        cli = None if args.smoke else measure_train_vae(Path(tmp), args.quick, anchor=configs.runs["baseline"])
        matmul_rate = max(quiet_median(rates[n], others[n])[0] for n in ("matmul", "matmul_1_thread"))
        profiled = measure_profile(work, matmul_rate, args.smoke)

    rounds = Rounds.split(rates, others, matmul_sizes, bfloat16)
    results = {
        name: rounds.summary(name, flops, multiplies_in_bf16(name, configs, trial, rounds.matmul_bf16_rate))
        for name in rounds.rates
    }
    package, trial_share = package_result(results, trial, cost)
    train_vae = train_vae_result(cli, flops, matmul_rate)
    return {
        "benchmark": "training",
        "model": "World Models ConvVAE (course_lib.solutions.conv_vae), z=32, 4.35 M parameters",
        "batch_size": BATCH,
        "rounds": args.rounds,
        "loop_steps_per_round": args.steps,
        "fit_steps_per_call": args.fit_steps,
        "machine": machine(),
        "native_bfloat16": bfloat16,
        "conditions_before": load_before,
        "conditions_after": conditions(),
        "training_gflop_per_image": round(flops / 1e9, 4),
        "matmul_fp32_gflop_per_s": round(matmul_rate, 1),
        "matmul_bf16_gflop_per_s": None if rounds.matmul_bf16_rate is None else round(rounds.matmul_bf16_rate, 1),
        "matmul": rounds.matmuls,
        "medians_over": "rounds during which other processes used < 20% of the CPUs (all rounds if none); "
        "ratios to the plain loop and to the matmul rate are medians of each round's own ratio",
        "package_threads_used": {k: {str(t): v.count(t) for t in sorted(set(v))} for k, v in THREADS_USED.items()},
        "baseline": results["baseline"],
        "package": package,
        "train_vae": train_vae,
        "levers": levers_result(results, checks, data_ms, package["float32"]["images_per_s"]),
        "profile": profiled,
        "targets": targets_result(package, train_vae, profiled, trial, cost, trial_share, bfloat16),
    }


def profile_benchmark(reference: torch.nn.Module, frames: int) -> dict[str, Any]:
    """``--profile``: one ``fit`` epoch of ``frames`` under ``torch.profiler``, against this machine's matmul rate."""
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        data = write_shards(Path(tmp), frames)
        rate = best_matmul(torch.float32)
        with OthersLoad() as load:
            model = copy.deepcopy(reference)
            result = profile_fit(
                model, data, batch_size=BATCH, lr=LR, kl_tolerance=KL_TOLERANCE, matmul_gflop_per_s=rate
            )
    return {"others_cpu_percent": load.percent, **result}


def main() -> None:
    """Measure what the arguments ask for (:func:`parse_args`) and print it as one JSON object."""
    args = parse_args()
    global BATCH
    if args.quick or args.smoke:
        args.quick, args.rounds, args.steps, args.fit_steps = True, 1, 3, 10
    if args.smoke:
        BATCH, args.steps, args.fit_steps = 8, 1, 1
    load_before = conditions()
    torch.manual_seed(0)
    reference = ConvVAE()
    flops = training_flops_per_image(reference)
    log(f"training FLOPs per image: {flops / 1e9:.3f} GFLOP")
    if args.device == "cuda":
        try:
            result = cuda_benchmark(flops)
        except NoGPUError as err:
            raise SystemExit(f"bench_training.py: {err}") from None
        emit({"benchmark": "training_cuda", "machine": machine(), "conditions_before": load_before, **result})
    elif args.profile:
        result = profile_benchmark(reference, args.profile_frames)
        emit({"benchmark": "training_profile", "machine": machine(), "conditions_before": load_before, **result})
    else:
        emit(cpu_benchmark(reference, flops, args, load_before))


if __name__ == "__main__":
    main()
