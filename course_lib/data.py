"""Frame data: rollouts recorded from gymnasium, ``.npy`` shards, and a lazy multi-shard dataset.

A *shard* is one ``.npy`` file of ``uint8`` frames ``(N, 64, 64, 3)``, optionally with a sibling
``<name>.actions.npy`` of ``float32`` actions ``(N, A)`` (one rollout per shard for CarRacing).
:class:`ShardDataset` opens shards with ``np.load(..., mmap_mode="r")``, so reading a batch
reads only that batch from disk; memory is bounded by the batch, not by the dataset. Sampling
across shards can be weighted (seed 003: lazily loaded datasets with per-file weights).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from course_lib.envs import BrownNoisePolicy, frame_of, make_env, random_policy
from course_lib.frames import FRAME_SIZE, Crop, preprocess_frame


class ShardError(ValueError):
    """A shard file is unreadable or does not hold ``uint8 (N, 64, 64, 3)`` frames."""


@dataclass
class Rollout:
    """One episode: the frames the agent saw and the actions it took.

    Attributes:
        frames: ``uint8 (T, 64, 64, 3)``; ``frames[t]`` shows the state in which ``actions[t]``
            was taken.
        actions: ``float32 (T, A)`` (discrete actions are stored as ``(T, 1)``).
        observations: ``float32 (T, D)`` environment observations matching ``frames`` (for
            CarRacing, where the observation is the image, an empty ``(T, 0)`` array).
    """

    frames: np.ndarray
    actions: np.ndarray
    observations: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def make_policy(env: gym.Env, policy: str | Callable[[Any], Any], seed: int | None) -> Callable[[Any], Any]:
    """A policy by name (``"random"`` or ``"brown"``) or the callable itself."""
    if callable(policy):
        return policy
    if policy == "random":
        return random_policy(env)
    if policy == "brown":
        return BrownNoisePolicy(env.action_space, seed=seed)
    raise ValueError(f"unknown policy {policy!r}; expected 'random', 'brown' or a callable")


def record_rollout(
    env: gym.Env,
    policy: Callable[[Any], Any],
    max_steps: int,
    crop: Crop | str | None,
    seed: int | None = None,
) -> Rollout:
    """Run one episode (up to ``max_steps`` steps) and keep every frame, preprocessed to 64x64.

    The frame of the state *before* each action is kept, so ``frames[0]`` is the reset state.

    Args:
        env: an environment made by :func:`course_lib.envs.make_env`.
        policy: ``policy(observation) -> action``.
        max_steps: most steps to take; the episode also ends on termination or truncation.
        crop: passed to :func:`course_lib.frames.preprocess_frame`.
        seed: passed to ``env.reset``.
    """
    observation, _ = env.reset(seed=seed)
    frames, actions, observations = [], [], []
    for _ in range(max_steps):
        frames.append(preprocess_frame(frame_of(env, observation), crop))
        obs_array = np.asarray(observation, dtype=np.float32)
        observations.append(obs_array.ravel() if obs_array.ndim <= 1 else np.zeros(0, np.float32))
        action = policy(observation)
        actions.append(np.atleast_1d(np.asarray(action, dtype=np.float32)))
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    return Rollout(np.stack(frames), np.stack(actions), np.stack(observations))


def record_rollouts(
    env_id: str,
    n_rollouts: int,
    max_steps: int = 1000,
    policy: str | Callable[[Any], Any] = "random",
    seed: int = 0,
    crop: Crop | str | None = None,
    progress: bool = True,
    **env_kwargs: Any,
) -> list[Rollout]:
    """Record ``n_rollouts`` episodes of ``env_id``; episode ``i`` is reset with ``seed + i``.

    Args:
        env_id: a gymnasium id (see :data:`course_lib.envs.ENV_IDS`).
        n_rollouts: number of episodes.
        max_steps: most steps per episode.
        policy: ``"random"``, ``"brown"`` (CarRacing) or a callable.
        seed: base seed; the same seed gives the same frames.
        crop: crop (default: the preset of ``env_id``).
        progress: show a tqdm bar.
        **env_kwargs: passed to ``gymnasium.make``.

    Returns:
        One :class:`Rollout` per episode.
    """
    env = make_env(env_id, seed=seed, **env_kwargs)
    crop = env_id if crop is None else crop
    act = make_policy(env, policy, seed)
    try:
        return [
            record_rollout(env, act, max_steps, crop, seed=seed + i)
            for i in tqdm(range(n_rollouts), desc=f"{env_id} rollouts", disable=not progress)
        ]
    finally:
        env.close()


def sample_frames(
    env_id: str,
    n_frames: int,
    seed: int = 0,
    policy: str | Callable[[Any], Any] = "random",
    crop: Crop | str | None = None,
    progress: bool = True,
    **env_kwargs: Any,
) -> np.ndarray:
    """Exactly ``n_frames`` frames from whole random episodes of ``env_id``.

    Returns:
        ``uint8 (n_frames, 64, 64, 3)``.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    env = make_env(env_id, seed=seed, **env_kwargs)
    crop = env_id if crop is None else crop
    act = make_policy(env, policy, seed)
    frames = np.empty((n_frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    count, episode = 0, 0
    with tqdm(total=n_frames, desc=f"{env_id} frames", disable=not progress) as bar:
        while count < n_frames:
            rollout = record_rollout(env, act, n_frames - count, crop, seed=seed + episode)
            frames[count : count + len(rollout)] = rollout.frames
            count += len(rollout)
            episode += 1
            bar.update(len(rollout))
    env.close()
    return frames


def train_val_split(frames: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``frames`` with ``seed`` and split off the last ``val_fraction`` for validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(frames))
    n_val = max(1, round(len(frames) * val_fraction))
    return frames[np.sort(order[n_val:])], frames[np.sort(order[:n_val])]


def actions_path(shard: str | os.PathLike) -> Path:
    """The actions file that goes with a frames shard: ``x.npy`` -> ``x.actions.npy``."""
    shard = Path(shard)
    return shard.with_name(shard.stem + ".actions.npy")


def save_shard(path: str | os.PathLike, frames: np.ndarray, actions: np.ndarray | None = None) -> Path:
    """Write ``frames`` (``uint8 (N, 64, 64, 3)``) to ``path`` (``.npy``), and the actions beside it.

    Raises:
        ShardError: if the frames have the wrong dtype or shape, or actions do not match.
    """
    path = Path(path)
    if path.suffix != ".npy":
        raise ShardError(f"shards are .npy files, got {path}")
    _check_frame_array(frames, path)
    if actions is not None and len(actions) != len(frames):
        raise ShardError(f"{path}: {len(actions)} actions for {len(frames)} frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(frames))
    if actions is not None:
        np.save(actions_path(path), np.asarray(actions, dtype=np.float32))
    return path


def save_rollouts(rollouts: Sequence[Rollout], directory: str | os.PathLike, prefix: str = "rollout") -> list[Path]:
    """Save each rollout as one shard ``<prefix>_<i>.npy`` with its actions; return the paths."""
    directory = Path(directory)
    return [save_shard(directory / f"{prefix}_{i:04d}.npy", r.frames, r.actions) for i, r in enumerate(rollouts)]


def _check_frame_array(frames: Any, path: Path) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3):
        raise ShardError(
            f"{path}: expected uint8 frames of shape (N, {FRAME_SIZE}, {FRAME_SIZE}, 3), got "
            f"dtype {frames.dtype} and shape {frames.shape}"
        )


def open_shard(path: str | os.PathLike) -> np.ndarray:
    """Memory-map one shard read-only, checking what it holds.

    Raises:
        ShardError: naming ``path`` if the file is missing, corrupt or holds the wrong array.
    """
    path = Path(path)
    try:
        frames = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ShardError(f"{path}: not a readable .npy shard ({err})") from err
    _check_frame_array(frames, path)
    return frames


class ShardDataset:
    """Frames from many shards, read lazily; indexable like one ``(N, 64, 64, 3)`` array.

    ``dataset[i]`` is one frame, ``dataset[index_array]`` a batch, ``dataset[a:b]`` a slice;
    only the requested frames are read from disk. Works as ``train_frames`` for
    :func:`course_lib.train.fit`.

    Args:
        shards: ``.npy`` files, or one directory whose ``*.npy`` files (other than
            ``*.actions.npy``) are the shards, in sorted order.
        weights: relative sampling weight of each shard for :meth:`sample_indices` (default:
            proportional to shard length, i.e. uniform over frames).

    Raises:
        ShardError: if there are no shards, or one of them is corrupt (named in the message).
    """

    def __init__(self, shards: str | os.PathLike | Iterable[str | os.PathLike], weights: Sequence[float] | None = None):
        if isinstance(shards, (str, os.PathLike)) and Path(shards).is_dir():
            paths = sorted(p for p in Path(shards).glob("*.npy") if not p.name.endswith(".actions.npy"))
        elif isinstance(shards, (str, os.PathLike)):
            paths = [Path(shards)]
        else:
            paths = [Path(p) for p in shards]
        if not paths:
            raise ShardError(f"no .npy shards found in {shards}")
        self.paths = paths
        self.arrays = [open_shard(p) for p in paths]
        self.lengths = np.array([len(a) for a in self.arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        if weights is None:
            weights = self.lengths.astype(np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(paths),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"need one non-negative weight per shard ({len(paths)}), not all zero; got {weights}")
        self.weights = weights / weights.sum()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (int(self.offsets[-1]), FRAME_SIZE, FRAME_SIZE, 3)

    dtype = np.dtype(np.uint8)

    @property
    def nbytes(self) -> int:
        """Bytes the frames take on disk (not in memory: they are memory-mapped)."""
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shard number and row within the shard of each global index."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} frames")
        shard = np.searchsorted(self.offsets, index, side="right") - 1
        return shard, index - self.offsets[shard]

    def __getitem__(self, key: int | slice | np.ndarray | Sequence[int]) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            # Negative indices count from the end; out of range raises IndexError (as for an
            # array), which also ends ``for frame in dataset``.
            if not -len(self) <= int(key) < len(self):
                raise IndexError(f"index {int(key)} out of range for {len(self)} frames")
            shard, row = self.locate(np.array([int(key) % len(self)]))
            return np.array(self.arrays[shard[0]][row[0]])
        index = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        out = np.empty((len(index), FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        shards, rows = self.locate(index)
        for s in np.unique(shards):
            mask = shards == s
            out[mask] = self.arrays[s][rows[mask]]  # fancy indexing reads only these rows
        return out

    def actions(self, shard: int) -> np.ndarray:
        """The actions saved with shard number ``shard`` (``float32 (T, A)``)."""
        path = actions_path(self.paths[shard])
        if not path.exists():
            raise ShardError(f"{self.paths[shard]} has no actions file {path.name}")
        return np.load(path)

    def sample_indices(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` global indices: a shard drawn by weight, then a frame uniformly within it (sorted)."""
        rng = np.random.default_rng(seed)
        shards = rng.choice(len(self.paths), size=n, p=self.weights)
        rows = (rng.random(n) * self.lengths[shards]).astype(np.int64)
        return np.sort(self.offsets[shards] + rows)

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[FrameSubset, FrameSubset]:
        """Disjoint train and validation views, split by whole shards when there are several.

        Splitting by shard keeps frames of one rollout on one side, so validation frames are
        not near-copies of training frames.
        """
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        rng = np.random.default_rng(seed)
        if len(self.paths) >= 2:
            order = rng.permutation(len(self.paths))
            n_val = max(1, round(len(self.paths) * val_fraction))
            val_shards = set(order[:n_val].tolist())
            val_idx = np.concatenate([np.arange(self.offsets[s], self.offsets[s + 1]) for s in sorted(val_shards)])
            train_idx = np.setdiff1d(np.arange(len(self)), val_idx)
        else:
            order = rng.permutation(len(self))
            n_val = max(1, round(len(self) * val_fraction))
            val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        return FrameSubset(self, train_idx), FrameSubset(self, val_idx)


class FrameSubset:
    """A view of some frames of a :class:`ShardDataset`, indexable like an array."""

    dtype = np.dtype(np.uint8)

    def __init__(self, dataset: ShardDataset, indices: np.ndarray):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.indices), FRAME_SIZE, FRAME_SIZE, 3)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | slice | np.ndarray | Sequence[int]) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.dataset[int(self.indices[key])]
        return self.dataset[self.indices[key]]
