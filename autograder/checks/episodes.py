"""Judging a frame collector from its episode log: replay the log on a fresh environment.

The probe hands the student's collector an :class:`~course_lib.envs.EpisodeRecorder` and records
its :meth:`~course_lib.envs.EpisodeRecorder.call_log` (every reset with its seed, every step with
its action, every render) and a digest of each frame the collector returned. The judge builds the
same environment in the grader's process, replays the resets and actions, checks that the
environment goes through the logged observations, and renders where the collector rendered. Each
returned frame must then be one of those renders, so the judge knows, from its own replay, the
episode and the state every frame shows: nothing the kernel claims about states or episodes is
taken on trust.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from autograder.checks import Record, expect
from course_lib.envs import CALL_RENDER, CALL_RESET, CALL_STEP, EpisodeRecorder
from course_lib.frames import FRAME_SIZE, is_blank, preprocess_frame

#: Bytes of a frame digest (SHA-1).
DIGEST_BYTES = 20


def frame_digests(frames: np.ndarray) -> np.ndarray:
    """``uint8 (n, 20)``: the SHA-1 of each ``uint8 (64, 64, 3)`` frame's bytes."""
    return np.array(
        [np.frombuffer(hashlib.sha1(np.ascontiguousarray(f).tobytes()).digest(), np.uint8) for f in frames],
        dtype=np.uint8,
    ).reshape(len(frames), DIGEST_BYTES)


def collector_values(prefix: str, frames: object, recorder: EpisodeRecorder | None = None) -> dict[str, object]:
    """What a probe records of one collector call: the frames' shape, dtype, digests and blank flags,
    and the environment's call log (``<prefix>_kind``, ...). Kernel side.

    Frames of another shape or dtype are recorded by their shape and dtype only; the judge fails them.
    """
    array = np.asarray(frames)
    good = array.ndim == 4 and array.shape[1:] == (FRAME_SIZE, FRAME_SIZE, 3) and array.dtype == np.uint8
    values: dict[str, object] = {
        f"{prefix}_shape": np.array(array.shape, dtype=np.int64),
        f"{prefix}_dtype": str(array.dtype),
        f"{prefix}_digests": frame_digests(array) if good else np.zeros((0, DIGEST_BYTES), np.uint8),
        f"{prefix}_blank": np.array([is_blank(f) for f in array], dtype=bool) if good else np.zeros(0, bool),
    }
    if recorder is not None:
        values.update({f"{prefix}_{key}": value for key, value in recorder.call_log().items()})
    return values


def expect_frames(record: Record, prefix: str, n_frames: int, what: str) -> np.ndarray:
    """Check the shape and dtype a collector call returned and that no frame is blank; its digests.

    Raises:
        CheckFailed: naming ``what`` (the call, as the student would write it).
    """
    shape = tuple(int(n) for n in record.array(f"{prefix}_shape", "int64"))
    dtype = record.text(f"{prefix}_dtype")
    want = (n_frames, FRAME_SIZE, FRAME_SIZE, 3)
    expect(shape == want, f"{what} returned shape {shape}, expected {want}")
    expect(dtype == "uint8", f"{what} returned dtype {dtype}, expected uint8")
    digests = record.array(f"{prefix}_digests", "uint8")
    blank = np.flatnonzero(record.array(f"{prefix}_blank", "bool"))
    expect(
        len(blank) == 0,
        f"{what} returned {len(blank)} blank frames (the first at index {int(blank[0]) if len(blank) else -1}); "
        "every frame must be a real render",
    )
    expect(digests.shape == (n_frames, DIGEST_BYTES), f"{what}: the record's digests do not fit its frames")
    return digests


@dataclass(frozen=True)
class Render:
    """One render during a replay: the episode it happened in and the state it showed."""

    episode: int
    state: np.ndarray


@dataclass
class Replay:
    """What a fresh environment did when given a collector's resets and actions.

    Episodes are numbered like :class:`~course_lib.envs.EpisodeRecorder`'s: 0 before the first
    reset, then one more per reset.
    """

    renders: list[Render] = field(default_factory=list)
    digests: dict[bytes, list[int]] = field(default_factory=dict)
    step_episodes: list[int] = field(default_factory=list)
    step_ended: list[bool] = field(default_factory=list)
    visited: list[np.ndarray] = field(default_factory=list)

    @property
    def episodes_ended(self) -> set[int]:
        """Episodes in which a step terminated or truncated the episode."""
        return {e for e, end in zip(self.step_episodes, self.step_ended, strict=True) if end}

    def steps_after_end(self) -> int:
        """Steps taken in an episode after it had terminated or been truncated."""
        count, ended = 0, set()
        for episode, end in zip(self.step_episodes, self.step_ended, strict=True):
            count += episode in ended
            if end:
                ended.add(episode)
        return count

    def match(self, digests: np.ndarray, what: str) -> list[int]:
        """The render each frame is, in order: the first matching render after the previous frame's.

        Identical 64x64 frames occur in several episodes (reset states look alike), hence the order.

        Raises:
            CheckFailed: if a frame is not a render of this environment, preprocessed for it.
        """
        found, last = [], -1
        for i, digest in enumerate(digests):
            candidates = self.digests.get(bytes(digest), [])
            expect(
                candidates,
                f"frame {i} of {what} is not a render of the environment passed in, preprocessed with "
                "preprocess_frame(frame, 'CartPole-v1')",
            )
            later = [c for c in candidates if c > last]
            last = later[0] if later else candidates[-1]
            found.append(last)
        return found


def replay(make_env: Callable[[], gym.Env], record: Record, prefix: str, crop: str, what: str, seed: int) -> Replay:
    """Replay the call log ``<prefix>_*`` of ``record`` on ``make_env()`` (grader side).

    ``seed`` is the one the collector was called with: its first reset must use it (the notebooks
    ask for ``env.reset(seed=seed)``), which also ties the log to this grading run's inputs.

    Raises:
        CheckFailed: if the first reset does not use ``seed``, an observation differs from the logged
            one (the collector changed the environment by other means than reset and step) or an
            action is not the environment's.
    """
    kinds = record.array(f"{prefix}_kind", "int8")
    seeds = record.array(f"{prefix}_seed", "int64")
    resets = seeds[kinds == CALL_RESET]
    expect(
        len(resets) > 0 and resets[0] == seed,
        f"{what} should start by seeding the environment it is given: env.reset(seed=seed)",
    )
    actions = record.array(f"{prefix}_action", "float64")
    observations = record.array(f"{prefix}_observation", "float64")
    expect(
        len(kinds) == len(seeds) == len(actions) == len(observations) and len(kinds) <= 100_000,
        f"{what}: the environment's log is inconsistent",
    )
    env = make_env()
    out, episode = Replay(), 0
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    for i, kind in enumerate(kinds):
        if kind == CALL_RENDER:
            frame = preprocess_frame(np.asarray(env.render(), dtype=np.uint8), crop)
            key = hashlib.sha1(np.ascontiguousarray(frame).tobytes()).digest()
            out.digests.setdefault(key, []).append(len(out.renders))
            out.renders.append(Render(episode, np.array(env.unwrapped.state, dtype=np.float64)))
            continue
        if kind == CALL_RESET:
            observation, _ = env.reset(seed=None if seeds[i] < 0 else int(seeds[i]))
            episode += 1
        elif kind == CALL_STEP:
            action = int(actions[i, 0]) if discrete else actions[i, : env.action_space.shape[0]]
            expect(
                env.action_space.contains(action) or not discrete,
                f"{what} took an action the environment does not have ({actions[i, 0]})",
            )
            observation, _, terminated, truncated, _ = env.step(action)
            out.step_episodes.append(episode)
            out.step_ended.append(bool(terminated or truncated))
            out.visited.append(np.array(observation, dtype=np.float64))
        else:
            expect(False, f"{what}: the environment's log holds an unknown call")
        flat = np.ravel(np.asarray(observation, dtype=np.float64))
        expect(
            np.array_equal(flat, observations[i, : flat.size]),
            f"{what}: the environment did not go through the states that its resets and actions lead to; "
            "drive it with env.reset and env.step only",
        )
    env.close()
    return out
