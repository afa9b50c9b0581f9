"""Train the World Models VAE on a folder of shards, at full scale: ``python -m course_lib.train_vae``.

As in Ha & Schmidhuber 2018, "World Models" (https://worldmodels.github.io), through :func:`course_lib.train.fit`;
``docs/training.md`` covers ``--precision``, ``--resume`` and several processes under ``torchrun``::

    python -m course_lib.train_vae --shards data/carracing --out runs/conv_vae.pt --epochs 10
    torchrun --standalone --nproc-per-node 4 -m course_lib.train_vae --shards data/carracing --out runs/conv_vae.pt

Students pass their own class from homework 2 (``--model my_vae.py:ConvVAE``): the student kit leaves out
the default, the reference ``course_lib.solutions.conv_vae:ConvVAE``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from course_lib import distributed
from course_lib.data import ShardDataset
from course_lib.precision import AUTO, PRECISIONS
from course_lib.train import fit, get_device, mean_image_baseline, seed_everything

DEFAULT_MODEL = "course_lib.solutions.conv_vae:ConvVAE"


class TrainVAEError(RuntimeError):
    """A problem with the command's arguments or inputs, reported without a traceback."""


def load_model_class(spec: str) -> type[nn.Module]:
    """The class named by ``MODULE:CLASS`` or ``path/to/file.py:CLASS``.

    Raises:
        TrainVAEError: if the module, file or class cannot be found.
    """
    if ":" not in spec:
        raise TrainVAEError(f"--model must look like MODULE:CLASS or FILE.py:CLASS, got {spec!r}")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py"):
        path = Path(where)
        if not path.exists():
            raise TrainVAEError(f"--model: no file {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as err:
            hint = ""
            if where.startswith("course_lib.solutions"):
                hint = (
                    " (the student kit has no course_lib.solutions: save your ConvVAE from homework 2 in a file and "
                    "pass --model my_vae.py:ConvVAE)"
                )
            raise TrainVAEError(f"--model: cannot import {where}: {err}{hint}") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TrainVAEError(f"--model: {where} has no nn.Module class {name!r}")
    return cls


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.train_vae", description=__doc__.splitlines()[0].split(": ")[0] + "."
    )
    parser.add_argument("--shards", required=True, help="folder of rollout_*.npy shards (uint8 (T, 64, 64, 3))")
    parser.add_argument("--out", required=True, help="checkpoint file to write (and to resume from)")
    parser.add_argument("--epochs", type=int, default=10, help="total epochs, counting resumed ones (default 10)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100,
        help="frames per step, all processes together under torchrun (World Models: 100)",
    )
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate (World Models: 1e-4)")
    parser.add_argument("--kl-tolerance", type=float, default=0.5, help="free nats per latent dimension (0.5)")
    parser.add_argument("--z-size", type=int, default=32, help="latent dimensions (32)")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="share of rollouts held out (0.05)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in total")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"MODULE:CLASS or FILE.py:CLASS ({DEFAULT_MODEL})")
    parser.add_argument(
        "--device",
        default=None,
        help="cuda, mps or cpu (default: the best available; under torchrun each process's own GPU, else cpu)",
    )
    parser.add_argument(
        "--precision",
        choices=[*PRECISIONS, AUTO],
        default="float32",
        help="bfloat16: forward pass under autocast (faster on recent GPUs and CPUs), weights in float32; "
        "bfloat16-channels-last: the same on channels-last input; auto: measure them at the start and "
        "keep the fastest (default float32)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def train(
    args: argparse.Namespace, processes: distributed.Processes | None = None, device: torch.device | None = None
) -> dict[str, Any]:
    """Run the training described by ``args``; return the final validation scores and the baseline.

    As Ha & Schmidhuber 2018, "World Models": frames of random rollouts, squared error summed over pixels
    plus the KL floored at ``kl_tolerance * z_size`` per frame (:func:`course_lib.losses.vae_loss`). The
    shards are memory-mapped (:class:`course_lib.data.ShardDataset`), so the data set may be far larger than
    memory; validation uses whole held-out rollouts. The checkpoint is written after every epoch, and a run
    with any number of processes can resume it; ``--precision auto`` measures float32 and the two bfloat16
    paths at the start and trains with the fastest. ``--model`` is any VAE whose ``__init__`` takes ``z_size``
    and whose ``forward`` returns ``(x_hat, mu, logvar)``.

    Args:
        args: the parsed command line (:func:`parse_args`).
        processes: this process's place among those ``torchrun`` started (default: one process).
            Every process calls ``train``; rank 0 alone reads the validation frames, computes the
            baseline, prints and writes the checkpoint.
        device: where this process trains (default: :func:`course_lib.train.get_device` of ``--device``).

    Returns:
        ``epochs`` and ``steps`` done in total, ``precision`` (the path trained with) and, on rank 0,
        ``mse`` and ``baseline``: the validation and mean-image per-pixel MSE.

    Raises:
        TrainVAEError: on a checkpoint that exists without ``--resume``, bad shards or model, or a
            ``--batch-size`` that does not divide evenly over the processes.
    """
    processes = processes or distributed.Processes()
    out = Path(args.out)
    _check_batch_size(args.batch_size, processes.world_size)
    if processes.is_main and out.exists() and not args.resume:
        raise TrainVAEError(f"{out} exists; pass --resume to continue training it, or choose another --out")
    try:
        dataset = ShardDataset(args.shards)
    except (ValueError, OSError) as err:
        raise TrainVAEError(str(err)) from None
    if len(dataset.paths) < 2:
        raise TrainVAEError(f"{args.shards} holds {len(dataset.paths)} shard; need at least two (one is held out)")
    train_set, val_set = dataset.split(val_fraction=args.val_fraction, seed=args.seed)
    device = device if device is not None else get_device(args.device)
    model_cls = load_model_class(args.model)
    seed_everything(args.seed)
    model = model_cls(z_size=args.z_size)
    val_frames, baseline = None, float("nan")
    if processes.is_main:
        val_frames = val_set[np.arange(len(val_set))]
        baseline = mean_image_baseline(train_set, val_frames)
        n_params = sum(p.numel() for p in model.parameters())
        where = f"{device}" if not processes.distributed else f"{processes.world_size} processes ({device} on rank 0)"
        print(
            f"{args.model}: {n_params:,} parameters on {where}; {len(dataset.paths)} rollouts, {len(train_set):,} "
            f"training and {len(val_set):,} validation frames; mean-image baseline MSE {baseline:.5f}",
            flush=True,
        )
    start = time.perf_counter()
    precision = {"precision": args.precision} if args.precision != "float32" else {}
    history = fit(
        model,
        train_set,
        val_frames,
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_tolerance=args.kl_tolerance,
        max_steps=args.max_steps,
        seed=args.seed,
        device=device,
        checkpoint_path=out,
        progress=not args.no_progress,
        **precision,
    )
    result: dict[str, Any] = {"epochs": history.epochs, "steps": history.steps, "precision": history.precision}
    if not processes.is_main:
        return result
    if args.precision == AUTO:
        trial = history.precision_trial
        print(f"precision auto: {history.precision} ({trial['reason']}{_rates(trial)})", flush=True)
    val = history.val[-1]
    # Record what the checkpoint holds, next to fit's model, optimiser and history.
    state = torch.load(out, map_location="cpu", weights_only=False)
    state["extra"] = {
        "model": args.model,
        "z_size": args.z_size,
        "kl_tolerance": args.kl_tolerance,
        "shards": str(args.shards),
        "val_mse": float(val["mse"]),
        "baseline_mse": float(baseline),
        "batch_size": args.batch_size,
        "processes": processes.world_size,
    }
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    print(
        f"epoch {history.epochs}, step {history.steps}: validation MSE {val['mse']:.5f} vs baseline {baseline:.5f} "
        f"(KL {val.get('kl_raw', val['kl']):.1f} nats); {time.perf_counter() - start:.0f} s; saved {out}",
        flush=True,
    )
    return {**result, "mse": float(val["mse"]), "baseline": float(baseline)}


def _check_batch_size(batch_size: int, world_size: int) -> None:
    """Raise :class:`TrainVAEError` unless the global ``--batch-size`` divides evenly over the processes."""
    try:
        distributed.local_batch_size(batch_size, world_size)
    except ValueError as err:
        raise TrainVAEError(f"--batch-size: {err}") from None


def _rates(trial: dict[str, Any]) -> str:
    """The images/s a precision trial measured, for the log line (empty when it measured nothing)."""
    parts = []
    for key, what in (("screen_images_per_s", "screening"), ("images_per_s", "training steps")):
        if trial.get(key):
            parts.append(f"; {what}, images/s: " + ", ".join(f"{k} {v:.0f}" for k, v in trial[key].items()))
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a usage problem).

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) it joins the process group
    first: NCCL when the processes have GPUs, gloo on CPUs.
    """
    args = parse_args(argv)
    try:
        ranks = distributed.from_environment()
        device = distributed.device_for(ranks, args.device) if ranks.distributed else get_device(args.device)
        if ranks.distributed:
            distributed.backend_for(device)  # a device without a backend: say so before joining
        _check_batch_size(args.batch_size, ranks.world_size)
    except (ValueError, TrainVAEError) as err:
        print(f"train_vae: {err}", file=sys.stderr)
        return 2
    try:
        with distributed.from_torchrun(device) as processes:
            train(args, processes, device)
    except TrainVAEError as err:
        print(f"train_vae: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a checkpoint of another model, a loss gone NaN: the message says which
        print(f"train_vae: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
