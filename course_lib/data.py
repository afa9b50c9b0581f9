"""Frame data: rollouts recorded from gymnasium, ``.npy`` shards, and a lazy multi-shard dataset.

A *shard* is one ``.npy`` file of ``uint8`` frames ``(N, 64, 64, 3)``, optionally with a sibling
``<name>.actions.npy`` of ``float32`` actions ``(N, A)`` (one rollout per shard for CarRacing).
:class:`ShardDataset` reads only the frames a batch asks for, so memory is bounded by the batch, not by
the dataset.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from course_lib.envs import ENV_IDS, PIXEL_OBSERVATION_ENVS, BrownNoisePolicy, frame_of, make_env, random_policy
from course_lib.frames import FRAME_SIZE, Crop, preprocess_frame

#: Bytes of one ``uint8 (64, 64, 3)`` frame.
FRAME_BYTES = FRAME_SIZE * FRAME_SIZE * 3
#: Below this many frames, :func:`record_rollouts` and :func:`sample_frames` render in this
#: process: starting worker processes costs more than it saves.
PARALLEL_MIN_FRAMES = 400


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

    The episodes are played first without rendering (cheap: the physics of the course's environments
    costs microseconds per step), then rendered by replaying the same actions from the same reset seed,
    in worker processes (:func:`collect_workers`, capped by ``COURSE_WORKERS``) from
    :data:`PARALLEL_MIN_FRAMES` frames on. Rendering does not touch the environments' random generators,
    so the frames, actions and observations are exactly those of :func:`record_rollout` called episode
    after episode on one environment (tested).

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
    crop = env_id if crop is None else crop
    if not _replayable(env_id, policy):
        return _record_rollouts_serial(env_id, n_rollouts, max_steps, policy, seed, crop, progress, **env_kwargs)
    env = make_env(env_id, seed=seed, **env_kwargs)
    act = make_policy(env, policy, seed)
    try:
        plans = [_play(env, act, max_steps, seed + i) for i in range(n_rollouts)]
    finally:
        env.close()
    frames = _render_plans(env_id, seed, env_kwargs, crop, plans, progress, f"{env_id} rollouts")
    return [Rollout(f, p.action_array, p.observations) for f, p in zip(frames, plans, strict=True)]


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

    Episode ``k`` is reset with ``seed + k``; the last episode is cut where the count is reached.
    Rendered as in :func:`record_rollouts` (same frames as rendering while playing).

    Returns:
        ``uint8 (n_frames, 64, 64, 3)``.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    crop = env_id if crop is None else crop
    if not _replayable(env_id, policy):
        return _sample_frames_serial(env_id, n_frames, seed, policy, crop, progress, **env_kwargs)
    env = make_env(env_id, seed=seed, **env_kwargs)
    act = make_policy(env, policy, seed)
    plans, count = [], 0
    try:
        while count < n_frames:
            plans.append(_play(env, act, n_frames - count, seed + len(plans)))
            count += len(plans[-1])
    finally:
        env.close()
    frames = _render_plans(env_id, seed, env_kwargs, crop, plans, progress, f"{env_id} frames")
    return np.concatenate(frames)


# --- two-phase collection: play without rendering, then render by replaying ------------------


@dataclass
class _Plan:
    """One played episode: what is needed to replay and render it.

    Attributes:
        seed: the seed of its ``env.reset``.
        actions: the actions exactly as passed to ``env.step`` (``T`` of them).
        action_array: ``float32 (T, A)``, as stored in :class:`Rollout`.
        observations: ``float32 (T, D)``, as stored in :class:`Rollout`.
    """

    seed: int
    actions: list[Any]
    action_array: np.ndarray
    observations: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


def _replayable(env_id: str, policy: str | Callable[[Any], Any]) -> bool:
    """Can ``env_id`` be played without rendering and rendered later by replaying its actions?

    True for the course's environments, whose dynamics depend only on the reset seed and the
    actions. Where the observation is the image (CarRacing), only policies that ignore the
    observation (``"random"``, ``"brown"``) can play without rendering.
    """
    if env_id not in ENV_IDS:
        return False
    return env_id not in PIXEL_OBSERVATION_ENVS or policy in ("random", "brown")


@contextlib.contextmanager
def _without_rendering(env: gym.Env) -> Iterator[None]:
    """For CarRacing-like envs, skip drawing the observation inside ``step``/``reset``.

    The observation becomes a blank image of the right shape (the physics are untouched: the
    environment draws its observation after stepping the world). No-op for other envs.
    """
    base = env.unwrapped
    if env.spec is None or env.spec.id not in PIXEL_OBSERVATION_ENVS or not hasattr(base, "_render"):
        yield
        return
    shape, dtype = env.observation_space.shape, env.observation_space.dtype
    base._render = lambda mode: np.zeros(shape, dtype=dtype)  # instance attribute shadows the method
    try:
        yield
    finally:
        del base._render


def _play(env: gym.Env, policy: Callable[[Any], Any], max_steps: int, seed: int) -> _Plan:
    """The loop of :func:`record_rollout`, without rendering; returns what replaying needs."""
    pixels = env.spec is not None and env.spec.id in PIXEL_OBSERVATION_ENVS
    actions, action_rows, observations = [], [], []
    with _without_rendering(env):
        observation, _ = env.reset(seed=seed)
        for _ in range(max_steps):
            obs_array = np.zeros(0, np.float32) if pixels else np.asarray(observation, dtype=np.float32)
            observations.append(obs_array.ravel() if obs_array.ndim <= 1 else np.zeros(0, np.float32))
            action = policy(observation)
            actions.append(action.copy() if isinstance(action, np.ndarray) else action)  # a policy may reuse it
            action_rows.append(np.atleast_1d(np.asarray(action, dtype=np.float32)))
            observation, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    return _Plan(seed, actions, np.stack(action_rows), np.stack(observations))


@dataclass
class _Segment:
    """Frames ``start:stop`` of one planned episode: the unit of work of a render worker."""

    env_id: str
    env_seed: int
    env_kwargs: dict[str, Any]
    crop: Crop | str
    seed: int
    actions: list[Any]
    start: int
    stop: int
    observations: np.ndarray


_WORKER_ENV: dict[str, Any] = {}


def _worker_env(env_id: str, env_seed: int, env_kwargs: dict[str, Any]) -> gym.Env:
    """One environment per process, made as :func:`record_rollouts` makes it, reused across segments."""
    key = repr((env_id, env_seed, sorted(env_kwargs.items())))
    if _WORKER_ENV.get("key") != key:
        _close_worker_env()
        _WORKER_ENV.update(key=key, env=make_env(env_id, seed=env_seed, **env_kwargs))
    return _WORKER_ENV["env"]


def _close_worker_env() -> None:
    if "env" in _WORKER_ENV:
        _WORKER_ENV["env"].close()
    _WORKER_ENV.clear()


def _render_segment(segment: _Segment) -> np.ndarray:
    """Replay an episode from its reset seed and render frames ``start:stop``.

    Returns:
        ``uint8 (stop - start, 64, 64, 3)``.

    Raises:
        RuntimeError: if the replayed observations differ from the played ones (the environment
            is not deterministic given its seed and actions).
    """
    env = _worker_env(segment.env_id, segment.env_seed, segment.env_kwargs)
    pixels = segment.env_id in PIXEL_OBSERVATION_ENVS
    frames = np.empty((segment.stop - segment.start, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    # Pixel envs draw the observation while stepping: steps whose picture is not kept skip it.
    with _without_rendering(env) if pixels and segment.start > 0 else contextlib.nullcontext():
        observation, _ = env.reset(seed=segment.seed)
    for t in range(segment.stop):
        if not pixels and not np.array_equal(np.asarray(observation, np.float32).ravel(), segment.observations[t]):
            raise RuntimeError(f"{segment.env_id}: replaying seed {segment.seed} diverged at step {t}")
        if t >= segment.start:
            frames[t - segment.start] = preprocess_frame(frame_of(env, observation), segment.crop)
        if t < segment.stop - 1:
            skip = pixels and t + 1 < segment.start
            with _without_rendering(env) if skip else contextlib.nullcontext():
                observation, *_ = env.step(segment.actions[t])
    return frames


def collect_workers() -> int:
    """Worker processes for rendering: the usable CPUs, capped by ``COURSE_WORKERS`` if set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cap = os.environ.get("COURSE_WORKERS")
    return max(1, min(cpus, int(cap)) if cap else cpus)


def _render_plans(
    env_id: str,
    env_seed: int,
    env_kwargs: dict[str, Any],
    crop: Crop | str,
    plans: list[_Plan],
    progress: bool,
    desc: str,
) -> list[np.ndarray]:
    """Render every planned episode; returns ``uint8 (T_i, 64, 64, 3)`` per plan."""
    total = sum(len(p) for p in plans)
    workers = collect_workers() if total >= PARALLEL_MIN_FRAMES else 1
    # Segments small enough to balance the workers, large enough that replaying up to them is cheap.
    size = max(50, -(-total // (4 * workers)))
    segments = [
        _Segment(env_id, env_seed, env_kwargs, crop, p.seed, p.actions[: min(start + size, len(p))], start,
                 min(start + size, len(p)), p.observations[: min(start + size, len(p))])
        for p in plans
        for start in range(0, len(p), size)
    ]
    parts: list[np.ndarray] = []
    with tqdm(total=total, desc=desc, disable=not progress) as bar:
        if workers > 1:
            try:
                # fork is cheap and inherits the imports; elsewhere (macOS, Windows) spawn.
                method = "fork" if sys.platform.startswith("linux") else "spawn"
                with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
                    for part in pool.map(_render_segment, segments):
                        parts.append(part)
                        bar.update(len(part))
            except (OSError, BrokenProcessPool):  # no processes allowed (sandbox limits), or a worker died
                parts = []
                bar.reset()
        if not parts:
            try:
                for segment in segments:
                    parts.append(_render_segment(segment))
                    bar.update(len(parts[-1]))
            finally:
                _close_worker_env()
    out, k = [], 0
    for p in plans:
        n = -(-len(p) // size)
        out.append(np.concatenate(parts[k : k + n]))
        k += n
    return out


def _record_rollouts_serial(
    env_id: str,
    n_rollouts: int,
    max_steps: int,
    policy: str | Callable[[Any], Any],
    seed: int,
    crop: Crop | str,
    progress: bool,
    **env_kwargs: Any,
) -> list[Rollout]:
    """:func:`record_rollouts` rendering while playing, one episode after the other (the reference)."""
    env = make_env(env_id, seed=seed, **env_kwargs)
    act = make_policy(env, policy, seed)
    try:
        return [
            record_rollout(env, act, max_steps, crop, seed=seed + i)
            for i in tqdm(range(n_rollouts), desc=f"{env_id} rollouts", disable=not progress)
        ]
    finally:
        env.close()


def _sample_frames_serial(
    env_id: str,
    n_frames: int,
    seed: int,
    policy: str | Callable[[Any], Any],
    crop: Crop | str,
    progress: bool,
    **env_kwargs: Any,
) -> np.ndarray:
    """:func:`sample_frames` rendering while playing (the reference)."""
    env = make_env(env_id, seed=seed, **env_kwargs)
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
    only the requested frames are read from disk (shards are memory-mapped, batches read with
    ``os.preadv`` where the platform has it, so resident memory stays at the batch size even after a
    pass over a dataset larger than RAM). Works as ``train_frames`` for :func:`course_lib.train.fit`.
    Sampling across shards can be weighted, as a convolutional VAE for MineRL images does (lazily
    loaded files with per-file weights).

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
            return self[np.array([int(key) % len(self)])][0]
        index = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        out = np.empty((len(index), FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        shards, rows = self.locate(index)
        for s in np.unique(shards):
            positions = np.flatnonzero(shards == s)
            if positions[-1] - positions[0] + 1 == len(positions):  # one block of the output
                self._read_rows(s, rows[positions], out[positions[0] : positions[-1] + 1])
            else:
                block = np.empty((len(positions), FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
                self._read_rows(s, rows[positions], block)
                out[positions] = block
        return out

    def _read_rows(self, shard: int, rows: np.ndarray, out: np.ndarray) -> None:
        """Read frames ``rows`` of shard ``shard`` into ``out`` (``uint8 (len(rows), 64, 64, 3)``).

        Runs of consecutive rows are read with one ``os.preadv`` each, straight into ``out``:
        nothing stays mapped, so the process's resident memory does not grow with the pages
        read (a memory map keeps every page it has touched resident). Falls back to fancy
        indexing of the memory map where ``preadv`` is missing or the array is not C-ordered.
        """
        array = self.arrays[shard]
        if not hasattr(os, "preadv") or not array.flags.c_contiguous or not out.flags.c_contiguous:
            out[...] = array[rows]  # fancy indexing reads only these rows
            return
        starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)  # first position of each run
        ends = np.append(starts[1:], len(rows))
        fd = os.open(self.paths[shard], os.O_RDONLY)
        try:
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                view = memoryview(out[a:b]).cast("B")
                offset = array.offset + int(rows[a]) * FRAME_BYTES
                done = 0
                while done < len(view):
                    n = os.preadv(fd, [view[done:]], offset + done)
                    if n <= 0:
                        raise ShardError(f"{self.paths[shard]}: file ended while reading row {int(rows[a])}")
                    done += n
        finally:
            os.close(fd)

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
