"""Build the pretrained checkpoints that ship in ``course_lib/pretrained``, each with its model card.

Instructors only, and left out of the student wheel (:data:`autograder.release.INSTRUCTOR_ONLY`): it
imports homework 2's answer. Every stage (data, training, conversion, card) resumes or reuses what a
previous run left in ``<out>/<name>/``; :func:`build` lists them. ``--install`` copies the results
into ``course_lib/pretrained/`` and regenerates the cards in docs/pretrained.md.

Usage::

    python -m course_lib.pretrained.build conv_vae_carracing --out runs/pretrained
    python -m course_lib.pretrained.build all --out runs/pretrained --install
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from course_lib import pretrained
from course_lib.data import Rollout, ShardDataset, record_rollouts, save_rollouts
from course_lib.frames import CROPS, Crop, to_tensor
from course_lib.models import SmallVAE
from course_lib.pretrained.cards import render_cards, replace_generated
from course_lib.probe import PROBE_TARGETS, car_racing_states, encode_mu, linear_probe
from course_lib.train import evaluate, fit, mean_image_baseline, seed_everything

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "pretrained.md"
#: The command that runs this module (the cards' ``reproduce``).
PROG = "python -m course_lib.pretrained.build"
MANIFEST = "recording.json"
OBSERVATIONS = "observations.npz"


@dataclass(frozen=True)
class Recording:
    """How a checkpoint's frames are recorded (:func:`course_lib.data.record_rollouts`).

    Attributes:
        env_id: the gymnasium id; frames get its crop preset (:data:`course_lib.frames.CROPS`).
        n_rollouts: episodes recorded first; episode ``i`` is reset with ``seed + i``.
        max_steps: most steps per episode.
        policy: ``"brown"`` or ``"random"``.
        seed: base seed of the episodes (and of the policy).
        min_frames: if the episodes hold fewer frames, more are recorded, ``top_up`` at a time, from
            the next seeds (episode ``i`` is still reset with ``seed + i``; each call seeds its own
            policy with its first episode's seed).
        top_up: episodes per extra call.
    """

    env_id: str
    n_rollouts: int
    max_steps: int
    policy: str
    seed: int
    min_frames: int = 0
    top_up: int = 4


@dataclass(frozen=True)
class Spec:
    """One shipped checkpoint: its data, model and training.

    Attributes:
        name: the checkpoint's name (``course_lib.pretrained.load(name)``).
        kind: ``"conv_vae"`` (World Models ConvVAE, TorchScript) or ``"small_vae"`` (``SmallVAE``, state dict).
        title: one line for the card's heading.
        summary: a paragraph for the card.
        recording: its frames.
        z_size, width: of the model (``width`` for ``SmallVAE`` only).
        epochs, batch_size, lr, beta, kl_tolerance: training (Adam).
        val_fraction: share of the rollouts held out, whole (``ShardDataset.split``).
        seed: of the split and of the training.
        probe: ``{target: observation column}`` for environments whose observation is the state
            (empty: CarRacing's targets come from :func:`course_lib.probe.car_racing_states`).
        notes: caveats for the card.
    """

    name: str
    kind: str
    title: str
    summary: str
    recording: Recording
    z_size: int
    epochs: int
    batch_size: int
    lr: float
    beta: float
    kl_tolerance: float
    val_fraction: float
    seed: int
    width: int = 0
    probe: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _small(
    env: str,
    env_id: str,
    n_rollouts: int,
    max_steps: int,
    probe: dict[str, int],
    what: str,
    notes: tuple[str, ...] = (),
) -> Spec:
    """A ``SmallVAE`` spec: notebook 02's training (batch 32, beta 0.1) at width 16, z 16, lr 1e-3.

    Notebook 02's lr 3e-3 (at width 8) made the KL of width 16 diverge after a few epochs.
    """
    return Spec(
        name=f"small_vae_{env}",
        kind="small_vae",
        title=f"SmallVAE on {env_id}",
        summary=(
            f"A `course_lib.models.SmallVAE` trained briefly on random-policy frames of {env_id} ({what}), "
            "as companion notebook 02 trains one: for looking at a latent space at once (the explorer, traversals, "
            "interpolations) without waiting for training. It is not an answer to any homework activity: graders "
            "refuse its weights where a student's own training is asked for (`course_lib.pretrained.is_shipped`)."
        ),
        recording=Recording(env_id, n_rollouts, max_steps, "random", seed=31_415, min_frames=4_000, top_up=8),
        z_size=16,
        width=16,
        epochs=12,
        batch_size=32,
        lr=1e-3,
        beta=0.1,
        kl_tolerance=0.0,
        val_fraction=0.2,
        seed=31_415,
        probe=probe,
        notes=notes,
    )


#: What can be built, by name.
SPECS: dict[str, Spec] = {
    "conv_vae_carracing": Spec(
        name="conv_vae_carracing",
        kind="conv_vae",
        title="World Models ConvVAE on CarRacing-v3",
        summary=(
            'The VAE ("V") of World Models (Ha & Schmidhuber 2018), trained with `course train-vae` at the paper\'s '
            "settings on brown-noise CarRacing rollouts. Use it where a lab needs a CarRacing VAE and training one "
            "would take hours (lab 07's dream). It ships as a TorchScript module, not as Python source: its class is "
            "homework 2's graded answer (see docs/pretrained.md for what the archive does and does not reveal)."
        ),
        recording=Recording("CarRacing-v3", 100, 500, "brown", seed=0, min_frames=50_000),
        z_size=32,
        epochs=10,
        batch_size=100,
        lr=1e-4,
        beta=1.0,
        kl_tolerance=0.5,
        val_fraction=0.05,
        seed=0,
        notes=(
            "World Models trained on 10,000 rollouts of 1,000 frames; this one saw 100 rollouts of 500 frames, so "
            "its reconstructions are blurrier than the paper's, and it knows little of sharp bends and of the car "
            "far off the road.",
            "`reparameterize` samples whatever the mode (as in the paper's VAE): `forward(x)` decodes a sample; "
            "use `decode(encode(x)[0])` for the mean reconstruction.",
            "The first ~50 frames of every rollout are CarRacing's zoom-in; the data include them.",
        ),
    ),
    "small_vae_cartpole": _small(
        "cartpole", "CartPole-v1", 160, 500, PROBE_TARGETS["CartPole-v1"], "episodes end when the pole falls"
    ),
    "small_vae_pendulum": _small(
        "pendulum", "Pendulum-v1", 20, 200, PROBE_TARGETS["Pendulum-v1"], "the rod swings from random starts"
    ),
    "small_vae_acrobot": _small(
        "acrobot",
        "Acrobot-v1",
        8,
        500,
        {"cos_theta1": 0, "sin_theta1": 1, "cos_theta2": 2, "sin_theta2": 3},
        "a two-link arm under random torques",
        notes=(
            "theta2 is the second link's angle relative to the first, while a frame shows its absolute angle "
            "theta1 + theta2: a linear probe reads theta2 less well than theta1.",
        ),
    ),
    "small_vae_mountaincar": _small(
        "mountaincar",
        "MountainCar-v0",
        20,
        200,
        {"position": 0},
        "the car rocks at the bottom of the valley",
        notes=(
            "Random actions never bring the car far up the slopes: it has seen positions from about -0.86 to -0.14 "
            "(the track spans -1.2 to 0.6, the flag is at 0.5), so frames of a car near the flag are out of its "
            "training distribution.",
        ),
    ),
}


# --- 1. data ---------------------------------------------------------------------------------------


def record(recording: Recording, progress: bool = True) -> list[Rollout]:
    """The rollouts of ``recording``: deterministic given its fields.

    Returns:
        At least ``recording.n_rollouts`` rollouts holding at least ``recording.min_frames`` frames.
    """
    rollouts = record_rollouts(
        recording.env_id,
        recording.n_rollouts,
        max_steps=recording.max_steps,
        policy=recording.policy,
        seed=recording.seed,
        progress=progress,
    )
    while sum(len(r) for r in rollouts) < recording.min_frames:
        rollouts += record_rollouts(
            recording.env_id,
            recording.top_up,
            max_steps=recording.max_steps,
            policy=recording.policy,
            seed=recording.seed + len(rollouts),
            progress=progress,
        )
    return rollouts


def record_shards(recording: Recording, directory: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Record ``recording`` into ``directory`` as shards (one per rollout), unless it is there already.

    A ``recording.json`` manifest beside the shards says what they hold; a directory whose manifest
    matches ``recording`` is reused as it is. The observations (the state, for classic control) go
    to ``observations.npz``, one array per shard, keyed by the shard's stem.

    Returns:
        The manifest: the recording's fields plus ``rollouts``, ``frames`` and ``lengths``.

    Raises:
        FileExistsError: if ``directory`` holds shards of another recording.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in asdict(recording)} != asdict(recording):
            raise FileExistsError(f"{directory} holds another recording ({manifest_path}); choose another --out")
        return manifest
    if any(directory.glob("*.npy")):
        raise FileExistsError(f"{directory} holds shards without a {MANIFEST}; choose another --out")
    rollouts = record(recording, progress=progress)
    paths = save_rollouts(rollouts, directory)
    if rollouts[0].observations.shape[1] > 0:
        np.savez(directory / OBSERVATIONS, **{p.stem: r.observations for p, r in zip(paths, rollouts, strict=True)})
    lengths = [len(r) for r in rollouts]
    manifest = {**asdict(recording), "rollouts": len(rollouts), "frames": int(np.sum(lengths)), "lengths": lengths}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# --- 2. training -----------------------------------------------------------------------------------


def train_command(spec: Spec, data: Path, checkpoint: Path) -> list[str]:
    """The ``course train-vae`` command line that trains the ConvVAE of ``spec`` (resuming ``checkpoint``)."""
    return [
        sys.executable, "-m", "course_lib.train_vae",
        "--shards", str(data), "--out", str(checkpoint), "--resume",
        "--epochs", str(spec.epochs), "--batch-size", str(spec.batch_size), "--lr", f"{spec.lr:g}",
        "--kl-tolerance", f"{spec.kl_tolerance:g}", "--z-size", str(spec.z_size),
        "--val-fraction", f"{spec.val_fraction:g}", "--seed", str(spec.seed), "--device", "cpu",
    ]  # fmt: skip


def train_conv_vae(spec: Spec, data: Path, checkpoint: Path) -> dict[str, Any]:
    """Train (or finish training) the ConvVAE with ``python -m course_lib.train_vae``; return its history.

    Raises:
        RuntimeError: if the command fails (its exit status).
    """
    command = train_command(spec, data, checkpoint)
    print(" ".join(command), flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"course train-vae failed with exit status {result.returncode}: {' '.join(command)}")
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["history"]


def train_small_vae(spec: Spec, train_frames: np.ndarray, val_frames: np.ndarray, checkpoint: Path) -> dict[str, Any]:
    """Train the ``SmallVAE`` of ``spec`` with :func:`course_lib.train.fit` (resuming ``checkpoint``); its history."""
    seed_everything(spec.seed)
    model = SmallVAE(z_size=spec.z_size, width=spec.width).init_background(train_frames)
    history = fit(
        model, train_frames, val_frames, num_epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
        beta=spec.beta, kl_tolerance=spec.kl_tolerance, seed=spec.seed, device="cpu", checkpoint_path=checkpoint,
    )  # fmt: skip
    return asdict(history)


# --- 3. conversion ---------------------------------------------------------------------------------


def reproducible_zip(blob: bytes) -> bytes:
    """A ``torch.save`` / ``torch.jit.save`` archive rewritten without debug records or random ids.

    Drops ``*.debug_pkl`` (TorchScript's source ranges, which quote the original Python source with
    its comments and file path) and ``.data/serialization_id`` (random per save); gives every entry
    the same timestamp and no compression, so the same weights give the same bytes (and hash).
    ``torch.load`` and ``torch.jit.load`` read the result as they read the original.
    """
    source = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            if info.filename.endswith((".debug_pkl", "serialization_id")):
                continue
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            target.writestr(entry, source.read(info))
    return out.getvalue()


def export_conv_vae(state: dict[str, torch.Tensor], z_size: int, path: Path) -> None:
    """Write the ConvVAE with weights ``state`` as a float16 TorchScript archive at ``path``.

    The class is scripted under the qualified name ``world_models.ConvVAE``, so the archive does not
    name the course's solutions module.
    """
    from course_lib.solutions.conv_vae import ConvVAE

    renamed = type("ConvVAE", (ConvVAE,), {"__module__": "world_models", "__doc__": None})
    model = renamed(z_size=z_size)
    model.load_state_dict(state)
    model.eval()
    scripted = torch.jit.script(model).half()
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    path.write_bytes(reproducible_zip(buffer.getvalue()))


def export_small_vae(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` as a float16 state dict at ``path`` (``torch.load(..., weights_only=True)`` reads it)."""
    buffer = io.BytesIO()
    torch.save({key: value.detach().to(torch.float16).contiguous() for key, value in state.items()}, buffer)
    path.write_bytes(reproducible_zip(buffer.getvalue()))


# --- 4. evaluation and card ------------------------------------------------------------------------


@torch.no_grad()
def mse_at_mu(model: nn.Module, frames: np.ndarray, batch_size: int = 256) -> float:
    """Per-pixel MSE of ``decode(encode(x)[0])``: the reconstruction at the posterior mean, no sampling."""
    model.eval()
    total = 0.0
    for start in range(0, len(frames), batch_size):
        x = to_tensor(np.asarray(frames[start : start + batch_size]))
        total += float(((model.decode(model.encode(x)[0]) - x) ** 2).sum())
    return total / float(np.prod(frames.shape))


def describe_crop(crop: Crop) -> str:
    """A crop preset in words, e.g. ``"rows 0-84 of 96"`` or ``"rows 40%-100%, columns 0%-100%"``."""
    if crop.rows is not None:
        return f"rows {crop.rows[0]}-{crop.rows[1]} of the observation"
    return (
        f"rows {crop.top:.0%}-{crop.bottom:.0%}, columns {crop.left:.0%}-{crop.right:.0%} of the render, "
        "resized to 64x64"
    )


def hardware() -> str:
    """The CPU or GPU, its cores and PyTorch's threads, for the card."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    pinned = os.environ.get("COURSE_THREADS")
    if pinned:
        threads = f"{pinned} PyTorch thread(s), pinned by COURSE_THREADS"
    else:
        threads = f"fit trains with 1 or {os.cpu_count()} PyTorch threads, whichever is faster under the load"
    return f"{model} CPU, {os.cpu_count()} cores ({threads}), torch {torch.__version__}"


def load_average() -> float:
    """The 1-minute load average (``nan`` where the platform has none): training time depends on it."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def probe_states(spec: Spec, data: Path, manifest: dict[str, Any], dataset: ShardDataset) -> dict[str, np.ndarray]:
    """The probe targets of every frame of ``dataset`` in order: ``{name: float64 (N,)}``."""
    if spec.recording.env_id == "CarRacing-v3":
        states = [car_racing_states(spec.recording.seed + i, dataset.actions(i)) for i in range(len(dataset.paths))]
        return {name: np.concatenate([s[name] for s in states]) for name in states[0]}
    observations = np.load(data / OBSERVATIONS)
    stacked = np.concatenate([observations[p.stem] for p in dataset.paths]).astype(np.float64)  # (N, D)
    return {name: stacked[:, column] for name, column in spec.probe.items()}


PROBE_TEXT = {
    "conv_vae_carracing": (
        "least squares on mu of the training rollouts, R² on the held-out ones; targets replayed from the simulator "
        "(`course_lib.probe.car_racing_states`): speed, sine and cosine of the heading relative to the track, "
        "signed distance from the centre line"
    ),
}


def _architecture(spec: Spec, parameters: dict[str, torch.Tensor]) -> dict[str, Any]:
    if spec.kind == "conv_vae":
        cls, kwargs = "World Models ConvVAE (TorchScript)", {"z_size": spec.z_size}
        source = "Ha & Schmidhuber 2018, World Models, appendix A.1"
    else:
        cls, kwargs = "course_lib.models.SmallVAE", {"z_size": spec.z_size, "width": spec.width}
        source = "course_lib.models (Kingma & Welling 2014)"
    return {
        "class": cls,
        "kwargs": kwargs,
        "source": source,
        "n_parameters": int(sum(p.numel() for p in parameters.values())),
        "parameters": {key: list(value.shape) for key, value in parameters.items()},
    }


def _checkpoint_info(path: Path, fmt: str) -> dict[str, Any]:
    return {
        "file": path.name,
        "format": fmt,
        "dtype": "float16",
        "bytes": path.stat().st_size,
        "sha256": pretrained.sha256(path),
    }


def _loss_text(spec: Spec) -> str:
    if spec.kl_tolerance > 0:
        free = spec.kl_tolerance * spec.z_size
        return (
            f"squared error summed over pixels + KL floored at kl_tolerance {spec.kl_tolerance:g} x {spec.z_size} = "
            f"{free:g} nats (beta {spec.beta:g})"
        )
    return f"squared error summed over pixels + beta {spec.beta:g} x KL (no free bits)"


def build(name: str, out: Path, progress: bool = True) -> dict[str, Any]:
    """Data, training, conversion and card of checkpoint ``name`` in ``<out>/<name>/``; returns the card.

    1. **data**: rollouts recorded with :func:`course_lib.data.record_rollouts` and saved as shards in
       ``data/`` with a ``recording.json`` manifest; a matching ``data/`` is reused.
    2. **training**: the World Models ConvVAE with ``python -m course_lib.train_vae`` (batch 100, Adam,
       ``kl_tolerance`` 0.5, z 32; Ha & Schmidhuber 2018, https://worldmodels.github.io), a ``SmallVAE``
       with :func:`course_lib.train.fit` as companion notebook 02 trains it; ``train.pt`` is written
       every epoch and a rerun resumes it.
    3. **conversion**: the ConvVAE to TorchScript with float16 parameters and without the debug records
       that would quote its source, in reproducible bytes (:func:`export_conv_vae`); the SmallVAE to a
       float16 state dict.
    4. **card**: the held-out rollouts' per-pixel MSE of the shipped model against the mean-image
       baseline, a linear probe's R^2 (:mod:`course_lib.probe`) and how to reproduce it, in ``<name>.json``.

    Raises:
        KeyError: for a name not in :data:`SPECS`.
        RuntimeError: if training fails, or the model does not beat the mean-image baseline on the
            held-out rollouts (the card is written in ``<out>/<name>/`` for inspection, nothing is shipped).
    """
    spec = SPECS[name]
    work = out / name
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    manifest = record_shards(spec.recording, data, progress=progress)
    print(f"{name}: {manifest['rollouts']} rollouts, {manifest['frames']:,} frames in {data}", flush=True)
    dataset = ShardDataset(data)
    train_set, val_set = dataset.split(val_fraction=spec.val_fraction, seed=spec.seed)
    val_frames = val_set[np.arange(len(val_set))]
    checkpoint = work / "train.pt"
    load_before = load_average()
    if spec.kind == "conv_vae":
        history = train_conv_vae(spec, data, checkpoint)
        placeholder = Path("DIR") / name
        command = " ".join(["python", *train_command(spec, placeholder / "data", placeholder / "train.pt")[1:]])
    else:
        train_frames = train_set[np.arange(len(train_set))]
        history = train_small_vae(spec, train_frames, val_frames, checkpoint)
        command = "course_lib.train.fit (see course_lib/pretrained/build.py: train_small_vae)"
    load_after = load_average()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    target = work / f"{name}.pt"
    if spec.kind == "conv_vae":
        export_conv_vae(state, spec.z_size, target)
        fmt = "torchscript"
    else:
        export_small_vae(state, target)
        fmt = "state_dict"
    card: dict[str, Any] = {
        "name": name,
        "title": spec.title,
        "summary": spec.summary,
        "checkpoint": _checkpoint_info(target, fmt),
        "architecture": _architecture(spec, state),
    }
    (work / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    model = pretrained.load(name, directory=work)  # the shipped file, through the loader students use

    print(f"{name}: evaluating on {len(val_frames):,} held-out frames", flush=True)
    seed_everything(spec.seed)  # the ConvVAE's forward samples z, in eval mode too
    val_mse = evaluate(model, val_frames)["mse"]
    val_mse_at_mu = mse_at_mu(model, val_frames)
    baseline = mean_image_baseline(train_set, val_frames)
    states = probe_states(spec, data, manifest, dataset)
    train_mu = encode_mu(model, train_set)
    val_mu = encode_mu(model, val_frames)
    r2 = linear_probe(
        train_mu,
        {k: v[train_set.indices] for k, v in states.items()},
        val_mu,
        {k: v[val_set.indices] for k, v in states.items()},
    )
    n_val = len(np.unique(dataset.locate(val_set.indices)[0]))
    seeds = f"{spec.recording.seed}-{spec.recording.seed + manifest['rollouts'] - 1}"
    card |= {
        "data": {
            "env_id": spec.recording.env_id,
            "policy": {"brown": "brown-noise", "random": "uniform random"}[spec.recording.policy],
            "rollouts": manifest["rollouts"],
            "frames": manifest["frames"],
            "max_steps": spec.recording.max_steps,
            "reset_seeds": seeds,
            "seed": spec.recording.seed,
            "crop": describe_crop(CROPS[spec.recording.env_id]),
            "train_rollouts": manifest["rollouts"] - n_val,
            "train_frames": len(train_set),
            "val_rollouts": n_val,
            "val_frames": len(val_set),
            "split": f"whole rollouts, ShardDataset.split(val_fraction={spec.val_fraction:g}, seed={spec.seed})",
        },
        "training": {
            "command": command,
            "epochs": history["epochs"],
            "steps": history["steps"],
            "batch_size": spec.batch_size,
            "optimizer": "Adam",
            "lr": spec.lr,
            "beta": spec.beta,
            "kl_tolerance": spec.kl_tolerance,
            "loss": _loss_text(spec),
            "precision": history.get("precision", "float32"),
            "seed": spec.seed,
            "hardware": f"{hardware()}; load average {load_before:.1f} before and {load_after:.1f} after training",
            "wall_time_s": round(float(history["seconds"]), 1),
            "val_mse_float32": float(history["val"][-1]["mse"]),
        },
        "evaluation": {
            "val_mse": float(val_mse),
            "val_mse_at_mu": float(val_mse_at_mu),
            "baseline_mse": float(baseline),
            "on": f"{len(val_set):,} frames of {n_val} held-out rollouts, shipped float16 weights",
        },
        "probe": {
            "r2": {k: round(float(v), 4) for k, v in r2.items()},
            "method": PROBE_TEXT.get(
                name,
                "least squares on mu of the training rollouts, R² on the held-out ones; targets: observation columns "
                + ", ".join(f"{k} = obs[{c}]" for k, c in spec.probe.items()),
            ),
        },
        "reproduce": f"{PROG} {name} --out DIR",
        "notes": list(spec.notes),
    }
    (work / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    ratio = baseline / val_mse
    if not val_mse < baseline:
        raise RuntimeError(
            f"{name}: validation MSE {val_mse:.5f} is not below the mean-image baseline {baseline:.5f}; not shipping "
            f"it (see {work / f'{name}.json'} and the history in {checkpoint})"
        )
    print(
        f"{name}: val MSE {val_mse:.5f} vs baseline {baseline:.5f} ({ratio:.2f}x), R^2 {card['probe']['r2']}; "
        f"{time.perf_counter() - start:.0f} s in all",
        flush=True,
    )
    return card


def install(names: Sequence[str], out: Path, docs: Path = DOCS) -> None:
    """Copy the built checkpoints and cards into ``course_lib/pretrained`` and regenerate ``docs``' card section."""
    for name in names:
        for suffix in (".pt", ".json"):
            shutil.copy2(out / name / f"{name}{suffix}", pretrained.DIRECTORY / f"{name}{suffix}")
    if docs.exists():
        docs.write_text(replace_generated(docs.read_text(), render_cards()))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m course_lib.pretrained.build NAME [NAME ...] --out DIR [--install]``; returns the exit status.

    A checkpoint that fails (training, or not beating the baseline) is reported and skipped; the
    others are still built and installed; the status is then 1.
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help=f"checkpoints to build: {', '.join(SPECS)} or all")
    parser.add_argument("--out", required=True, type=Path, help="work folder (data, training checkpoints, cards)")
    parser.add_argument("--install", action="store_true", help="copy into course_lib/pretrained, update the docs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    names = list(SPECS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        print(f"{PROG}: unknown checkpoint {unknown}; choose from {list(SPECS)} or all", file=sys.stderr)
        return 2
    built, failed = [], []
    for name in names:
        try:
            build(name, args.out, progress=not args.no_progress)
            built.append(name)
        except RuntimeError as err:
            print(f"{PROG}: {err}", file=sys.stderr)
            failed.append(name)
    if args.install and built:
        install(built, args.out)
        print(f"installed {built} into {pretrained.DIRECTORY}; regenerated {DOCS}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
