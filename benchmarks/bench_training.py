"""Training throughput of the World Models ConvVAE at batch 100 on the CPU, against a plain loop.

- **package**: :func:`course_lib.train.fit` on a :class:`course_lib.data.ShardDataset` of ``uint8``
  ``.npy`` shards in a temporary folder: reading the batch from disk, converting it to float,
  forward, loss, backward, Adam; timed from the call to the return (data loading included), with
  each of its precisions (``float32``, the default; ``bfloat16``; ``bfloat16-channels-last``) and
  with ``precision="auto"``, which trains with the path its start-of-run trial picked
  (:func:`course_lib.train.choose_precision`: run once first and reported under ``auto.trial``,
  with its cost in steps of the chosen path; ``fit`` calls shorter than ``TRIAL_MIN_STEPS``, as
  the timed ones are by default, reuse its choice, longer ones measure again inside the timing).
- **baseline**: a plain PyTorch loop on ``float32 (N, 3, 64, 64)`` tensors already in memory,
  Adam (lr 1e-4), the loss of World Models (squared error summed over pixels, KL floored at
  ``0.5 * z_size``, both averaged over the batch).
- **FLOP rate**: training FLOPs per image (forward + backward, ``torch.utils.flop_counter``) times
  images per second, divided by this process's float32 matmul rate and by its bfloat16 matmul
  rate (loops of 2048x2048 products; for bfloat16 smaller where one product would take over a
  quarter of a second, as on CPUs without bfloat16 instructions), each the faster of PyTorch's thread
  count and one thread: a float32 path is measured against the float32 limit, a bfloat16 path
  against the bfloat16 one, and every path against the faster of the two (``fraction_of_best_matmul``).
- **levers**: the same plain loop with one thing changed (threads, channels-last, bf16 autocast,
  torch.compile), and the data path alone (per-frame vs batched uint8-to-float conversion, a
  DataLoader with a worker process).

Every configuration is measured in interleaved rounds and the median is reported, so that a
burst of load from other processes does not favour one configuration.

Usage: ``python benchmarks/bench_training.py [--rounds 3] [--steps 5] [--quick] [--smoke] [--no-compile]``
(``--smoke``: batch 8, one step of everything, to check that it runs and what it prints; its
numbers mean nothing).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import OthersLoad, conditions, emit, log, machine, matmul_gflops, quiet_median, timed
from torch.utils.flop_counter import FlopCounterMode

from course_lib.data import ShardDataset, save_shard
from course_lib.frames import to_tensor
from course_lib.solutions.conv_vae import ConvVAE
from course_lib.train import PRECISIONS, PrecisionTrial, choose_precision, fit

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
    """The baseline: a model, Adam and a fixed set of float batches in memory.

    Args:
        model: a ConvVAE (moved to channels-last if ``channels_last``).
        batches: float32 ``(B, 3, 64, 64)`` tensors, cycled through.
        autocast: run the forward pass under bf16 autocast.
        channels_last: convert the model and the inputs to channels-last.
        compile: wrap the model in ``torch.compile``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batches: list[torch.Tensor],
        autocast: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ):
        self.model = model
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
        self.batches = batches
        self.autocast = autocast
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.forward = torch.compile(self.model) if compile else self.model
        self.k = 0

    def step(self) -> float:
        """One optimiser step; returns the loss."""
        x = self.batches[self.k % len(self.batches)]
        self.k += 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            x_hat, mu, logvar = self.forward(x)
        loss = seed000_loss(x, x_hat.float(), mu.float(), logvar.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def run(self, steps: int) -> float:
        """Images per second over ``steps`` steps."""
        return steps * BATCH / timed(lambda: [self.step() for _ in range(steps)])


def training_flops_per_image(model: torch.nn.Module) -> float:
    """FLOPs of one forward + backward pass per image at batch 100 (matmuls and convolutions)."""
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
    configs: dict[str, Callable[[], float]], rounds: int, matmul_seconds: float
) -> tuple[Samples, Samples, dict[str, int]]:
    """Run every configuration once per round (interleaved), and the matmul probes each round.

    Returns:
        ``(rates, others, sizes)``: per configuration and :data:`MATMULS` probe the samples and
        the CPU share other processes took while each was measured (:class:`OthersLoad`); the
        matrix size of each probe.
    """
    rates: Samples = {name: [] for name in [*MATMULS, *configs]}
    others: Samples = {name: [] for name in rates}
    sizes = {name: matmul_size(dtype, matmul_seconds) for name, (dtype, _) in MATMULS.items()}

    def matmul(name: str) -> float:
        dtype, one_thread = MATMULS[name]
        threads = torch.get_num_threads()
        if one_thread:
            torch.set_num_threads(1)
        try:
            return matmul_gflops(n=sizes[name], seconds=matmul_seconds, dtype=dtype)
        finally:
            torch.set_num_threads(threads)

    runs = {**{name: lambda name=name: matmul(name) for name in MATMULS}, **configs}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
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
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile lever (slow to compile)")
    args = parser.parse_args()
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

    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        n_frames = max(2000, BATCH * (args.fit_steps + 2))
        data = write_shards(Path(tmp), n_frames)
        rng = np.random.default_rng(2)
        batches = [to_tensor(data[np.sort(rng.choice(n_frames, BATCH, replace=False))]).contiguous() for _ in range(4)]

        def fresh() -> torch.nn.Module:
            return copy.deepcopy(reference)

        loops: dict[str, PlainLoop] = {"baseline": PlainLoop(fresh(), batches)}
        precisions = [*PRECISIONS, "auto"]
        models = {f"package_{p}": fresh() for p in precisions}
        configs: dict[str, Callable[[], float]] = {"baseline": lambda: loops["baseline"].run(args.steps)}
        for p in precisions:
            configs[f"package_{p}"] = lambda p=p: package_rate(models[f"package_{p}"], data, args.fit_steps, p, 0)
        log("precision trial (what fit(precision='auto') measures at the start of a run)")
        trial = auto_trial(fresh(), data)
        log(f"auto: {trial.chosen} ({trial.seconds:.1f} s)")
        if not args.quick:
            lever_loops = {
                "channels_last_input": PlainLoop(
                    fresh(), [b.contiguous(memory_format=torch.channels_last) for b in batches]
                ),
                "channels_last_model_and_input": PlainLoop(fresh(), batches, channels_last=True),
                "bf16_autocast": PlainLoop(fresh(), batches, autocast=True),
                "bf16_autocast_channels_last_input": PlainLoop(
                    fresh(), [b.contiguous(memory_format=torch.channels_last) for b in batches], autocast=True
                ),
                "bf16_autocast_channels_last_model_and_input": PlainLoop(
                    fresh(), batches, autocast=True, channels_last=True
                ),
            }
            loops.update(lever_loops)
            for name in lever_loops:
                configs[name] = lambda name=name: loops[name].run(args.steps)

            def one_thread() -> float:
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    return loops["baseline"].run(args.steps)
                finally:
                    torch.set_num_threads(threads)

            configs["baseline_1_thread"] = one_thread
            dl_model = fresh()
            configs["dataloader_1_worker"] = lambda: dataloader_rate(dl_model, data, args.steps, workers=1)

        log("warm-up (oneDNN primitive creation)")
        for name in configs:
            if name.startswith("package"):
                package_rate(models[name], data, 2, name.removeprefix("package_"), 99)
            elif name in loops:
                loops[name].run(2)
        THREADS_USED.clear()
        rates, others, matmul_sizes = measure(configs, args.rounds, matmul_seconds=1.0)

        compile_result: dict[str, Any] | None = None
        if not args.quick and not args.no_compile:
            log("torch.compile lever (compiles first: slow)")
            try:
                loop = PlainLoop(fresh(), batches, compile=True)
                compile_seconds = timed(lambda: loop.run(2))
                pairs: Samples = {"compiled": [], "baseline": [], "others": []}
                for _ in range(args.rounds):  # interleaved with the baseline, load recorded
                    with OthersLoad() as load:
                        pairs["compiled"].append(loop.run(args.steps))
                        pairs["baseline"].append(loops["baseline"].run(args.steps))
                    pairs["others"].append(load.percent)
                compile_result = {
                    "compile_seconds": round(compile_seconds, 1),
                    "images_per_s": round(quiet_median(pairs["compiled"], pairs["others"])[0], 1),
                    "baseline_same_time_images_per_s": round(quiet_median(pairs["baseline"], pairs["others"])[0], 1),
                    "others_cpu_percent": pairs["others"],
                }
            except Exception as err:  # torch.compile needs a C++ compiler; report instead of failing
                compile_result = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        data_ms = data_path_ms(data)

    # The machine's limits for this process: per dtype, the faster of the default-threads and one-thread loops.
    matmuls = {name: matmul_summary(name, rates, others, matmul_sizes[name]) for name in MATMULS}
    for name in MATMULS:
        rates.pop(name), others.pop(name)
    matmul_rate = max(matmuls["matmul"]["median"], matmuls["matmul_1_thread"]["median"])
    matmul_bf16_rate = max(matmuls["matmul_bf16"]["median"], matmuls["matmul_bf16_1_thread"]["median"])

    def summary(name: str) -> dict[str, Any]:
        ips, used = quiet_median(rates[name], others[name])
        gflops = flops * ips / 1e9
        return {
            "images_per_s": round(ips, 1),
            "gflop_per_s": round(gflops, 1),
            "fraction_of_matmul": round(gflops / matmul_rate, 3),
            "fraction_of_matmul_bf16": round(gflops / matmul_bf16_rate, 3),
            "fraction_of_best_matmul": round(gflops / max(matmul_rate, matmul_bf16_rate), 3),
            "samples": [round(x, 1) for x in rates[name]],
            "others_cpu_percent": others[name],
            "quiet_samples_used": used,
        }

    results = {name: summary(name) for name in rates}
    base = results["baseline"]["images_per_s"]
    package = {k.removeprefix("package_"): v for k, v in results.items() if k.startswith("package_")}
    levers = {k: v for k, v in results.items() if k != "baseline" and not k.startswith("package_")}
    for v in [*package.values(), *levers.values()]:
        v["speedup_vs_baseline"] = round(v["images_per_s"] / base, 3)
    if compile_result and "images_per_s" in compile_result:
        compile_result["speedup_vs_baseline"] = round(
            compile_result["images_per_s"] / compile_result["baseline_same_time_images_per_s"], 3
        )
    step_ms = 1e3 * BATCH / package["float32"]["images_per_s"]
    best = max(package, key=lambda k: package[k]["images_per_s"])
    package["auto"]["trial"] = asdict(trial)
    package["auto"]["trial_cost_in_steps"] = round(trial.seconds * package["auto"]["images_per_s"] / BATCH, 1)
    limit = {p: "fraction_of_matmul_bf16" if PRECISIONS[p].autocast else "fraction_of_matmul" for p in PRECISIONS}
    emit(
        {
            "benchmark": "training",
            "model": "World Models ConvVAE (course_lib.solutions.conv_vae), z=32, 4.35 M parameters",
            "batch_size": BATCH,
            "rounds": args.rounds,
            "loop_steps_per_round": args.steps,
            "fit_steps_per_call": args.fit_steps,
            "machine": machine(),
            "conditions_before": load_before,
            "conditions_after": conditions(),
            "training_gflop_per_image": round(flops / 1e9, 4),
            "matmul_fp32_gflop_per_s": round(matmul_rate, 1),
            "matmul_bf16_gflop_per_s": round(matmul_bf16_rate, 1),
            "matmul_fp32_default_threads": matmuls["matmul"],
            "matmul_fp32_one_thread": matmuls["matmul_1_thread"],
            "matmul_bf16_default_threads": matmuls["matmul_bf16"],
            "matmul_bf16_one_thread": matmuls["matmul_bf16_1_thread"],
            "medians_over": "rounds during which other processes used < 20% of the CPUs (all rounds if none)",
            "package_threads_used": {k: {str(t): v.count(t) for t in sorted(set(v))} for k, v in THREADS_USED.items()},
            "baseline": results["baseline"],
            "package": package,
            "levers": {
                **levers,
                **({"torch_compile": compile_result} if compile_result else {}),
                "data_path_ms_per_batch": {k: round(v, 3) for k, v in data_ms.items()},
                "data_path_share_of_float32_step": round((data_ms["read"] + data_ms["convert_batched"]) / step_ms, 4),
            },
            "targets": {
                # each path against the matmul rate of its own dtype; auto against the faster of the two
                "fraction_of_own_matmul_at_least_0.75": {
                    **{p: package[p][limit[p]] >= 0.75 for p in PRECISIONS},
                    "auto": package["auto"]["fraction_of_best_matmul"] >= 0.75,
                },
                "not_slower_than_baseline": {k: v["speedup_vs_baseline"] >= 1.0 for k, v in package.items()},
                "best_package_precision": best,
                "auto_picked": trial.chosen,
                "auto_within_5_percent_of_best": package["auto"]["images_per_s"]
                >= 0.95 * package[best]["images_per_s"],
            },
        }
    )


if __name__ == "__main__":
    main()
