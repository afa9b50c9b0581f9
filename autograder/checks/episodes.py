"""Judging a frame collector from its episode log: replay the log on a fresh environment.

The probe records each environment's call log (resets with seeds, steps with actions, renders) and a
digest of each returned frame; the judge replays the log in the grader, renders and preprocesses its
own frames, and requires every returned frame to be one of them. So a frame's image, episode and
state are known from the replay, never from the kernel. A broken rule (``make_env``, seeding,
``preprocess_frame``) fails with its message from :data:`course_lib.rules.RULES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from autograder.checks import Record, expect
from autograder.records import RecordError
from course_lib import rules
from course_lib.envs import CALL_RENDER, CALL_RESET, CALL_STEP, EpisodeRecorder
from course_lib.frames import FRAME_SIZE, crop_and_resize, is_blank
from course_lib.recording import Recording, digest

#: Bytes of a frame digest (SHA-1).
DIGEST_BYTES = 20


def frame_digests(frames: np.ndarray) -> np.ndarray:
    """``uint8 (n, 20)``: the SHA-1 of each ``uint8 (64, 64, 3)`` frame's bytes."""
    return _digest_array([digest(f) for f in frames])


def _digest_array(digests: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), DIGEST_BYTES)


def collector_values(prefix: str, frames: object, recorder: EpisodeRecorder | None = None) -> dict[str, object]:
    """What a probe records of one collector call: the frames' shape, dtype, digests and blank flags,
    and the environment's call log (``<prefix>_kind``, ...). Kernel side.

    Frames of another shape or dtype are recorded by their shape and dtype only; the judge fails them.
    Shape, dtype and blank flags only ever make a judge fail a call; what passes it is the digests,
    matched to the judge's own frames.
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


#: What a render can become: the frames (``uint8 (64, 64, 3)``) a collector may have made of the image.
FramesOf = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class Replay:
    """What fresh environments did when given a collector's resets and actions.

    Episodes are numbered like :class:`~course_lib.envs.EpisodeRecorder`'s: 0 before the first
    reset, then one more per reset (counted on across the environments of a recording).

    Attributes:
        renders: every render, in order.
        digests: the digest of every frame the judge made of a render, with the renders it came from.
        images: the judge's own frame of each digest.
        crops: the pixel box ``(row0, row1, col0, col1)`` each digest's frame was cropped with, where
            the collector chose its own crop (:func:`replay_recording`).
    """

    renders: list[Render] = field(default_factory=list)
    digests: dict[bytes, list[int]] = field(default_factory=dict)
    images: dict[bytes, np.ndarray] = field(default_factory=dict)
    crops: dict[bytes, tuple[int, int, int, int]] = field(default_factory=dict)
    step_episodes: list[int] = field(default_factory=list)
    step_ended: list[bool] = field(default_factory=list)
    visited: list[np.ndarray] = field(default_factory=list)
    episodes: int = 0

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

    def match(
        self, digests: np.ndarray, what: str, preprocessed: str = "preprocess_frame(frame, 'CartPole-v1')"
    ) -> list[int]:
        """The render each frame is, in order: the first matching render after the previous frame's.

        Identical 64x64 frames occur in several episodes (reset states look alike), hence the order.
        Frames that match no render, or whose image the judge finds blank, fail.

        Raises:
            CheckFailed: if a frame is not a render of this environment, preprocessed as ``preprocessed``.
        """
        found, last = [], -1
        for i, key in enumerate(digests):
            candidates = self.digests.get(bytes(key), [])
            expect(candidates, rules.message("preprocess", i=i, what=what, preprocessed=preprocessed))
            expect(not is_blank(self.images[bytes(key)]), f"frame {i} of {what} is blank")
            later = [c for c in candidates if c > last]
            last = later[0] if later else candidates[-1]
            found.append(last)
        return found

    def frames(self, digests: np.ndarray) -> np.ndarray:
        """The judge's own frames of ``digests`` (each matched already), ``uint8 (n, 64, 64, 3)``."""
        return np.stack([self.images[bytes(key)] for key in digests]).astype(np.uint8)


def _call_log(record: Record, prefix: str) -> dict[str, np.ndarray]:
    return {
        "kind": record.array(f"{prefix}_kind", "int8"),
        "seed": record.array(f"{prefix}_seed", "int64"),
        "action": record.array(f"{prefix}_action", "float64"),
        "observation": record.array(f"{prefix}_observation", "float64"),
    }


def _replay_env(env: gym.Env, log: dict[str, np.ndarray], what: str, frames_of: FramesOf, out: Replay) -> list[int]:
    """Replay one environment's call log into ``out``; the seeds of its seeded resets, in order."""
    kinds, seeds, actions, observations = (log[k] for k in ("kind", "seed", "action", "observation"))
    expect(
        len(kinds) == len(seeds) == len(actions) == len(observations) and len(kinds) <= 100_000,
        f"{what}: the environment's log is inconsistent",
    )
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    seeded: list[int] = []
    for i, kind in enumerate(kinds):
        if not seeded and not (kind == CALL_RESET and seeds[i] >= 0):
            # before the first seeded reset: a reset without a seed leaves no trace, anything else
            # happens in a state nobody can replay
            expect(kind == CALL_RESET, rules.message("seed_before_use", what=what))
            continue
        if kind == CALL_RENDER:
            image = np.asarray(env.render(), dtype=np.uint8)
            for frame in frames_of(image):
                key = digest(frame)
                out.digests.setdefault(key, []).append(len(out.renders))
                out.images.setdefault(key, frame)
            state = getattr(env.unwrapped, "state", None)
            out.renders.append(Render(out.episodes, np.array(state if state is not None else [], dtype=np.float64)))
            continue
        if kind == CALL_RESET:
            observation, _ = env.reset(seed=None if seeds[i] < 0 else int(seeds[i]))
            out.episodes += 1
            if seeds[i] >= 0:
                seeded.append(int(seeds[i]))
        elif kind == CALL_STEP:
            action = (
                int(actions[i, 0])
                if discrete
                else actions[i, : env.action_space.shape[0]].astype(env.action_space.dtype)
            )
            expect(
                env.action_space.contains(action) or not discrete,
                f"{what} took an action the environment does not have ({actions[i, 0]})",
            )
            observation, _, terminated, truncated, _ = env.step(action)
            out.step_episodes.append(out.episodes)
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
    return seeded


def replay(make_env: Callable[[], gym.Env], record: Record, prefix: str, crop: str, what: str, seed: int) -> Replay:
    """Replay the call log ``<prefix>_*`` of ``record`` on ``make_env()`` (grader side), with every
    render preprocessed with the preset ``crop``.

    ``seed`` is the one the collector was called with: its first seeded reset must use it (the
    notebooks ask for ``env.reset(seed=seed)``), which also ties the log to this grading run's inputs.

    Raises:
        CheckFailed: if the first seeded reset does not use ``seed``, the environment is used before
            it is seeded, an observation differs from the logged one (the collector changed the
            environment by other means than reset and step) or an action is not the environment's.
    """
    out = Replay()
    seeds = _replay_env(make_env(), _call_log(record, prefix), what, lambda image: [crop_and_resize(image, crop)], out)
    expect(seeds and seeds[0] == seed, rules.message("seed_first", what=what))
    return out


# ---------------------------------------------------------------- collectors that build their own environment
#: Keyword arguments of ``make_env`` the judge passes on when it rebuilds an environment.
_ENV_KWARGS = {"max_episode_steps"}
#: Most environments and preprocessed frames one recorded collector call may log.
_MAX_ENVS, _MAX_FRAMES = 16, 20_000


def recording_values(prefix: str, frames: object, log: Recording) -> dict[str, object]:
    """What a probe records of one call of a collector that builds its own environments, run inside
    :func:`course_lib.recording.recording` (kernel side): the frames as :func:`collector_values`
    records them, each environment's id, ``make_env`` arguments and call log, and the
    ``preprocess_frame`` calls (input digest, pixel box and size, output digest)."""
    values = collector_values(prefix, frames)
    envs = [
        [env_id, {k: v for k, v in kwargs.items() if isinstance(v, int | float | bool | str)}]
        for env_id, kwargs, _ in log.envs
    ]
    values[f"{prefix}_envs"] = json.dumps(envs)
    for j, (_, _, recorder) in enumerate(log.envs):
        values.update({f"{prefix}_env{j}_{key}": value for key, value in recorder.call_log().items()})
    values[f"{prefix}_pre_in"] = _digest_array([f[0] for f in log.frames])
    values[f"{prefix}_pre_box"] = np.array([f[1] for f in log.frames], dtype=np.int64).reshape(-1, 5)
    values[f"{prefix}_pre_out"] = _digest_array([f[2] for f in log.frames])
    return values


def replay_recording(
    record: Record, prefix: str, env_ids: tuple[str, ...], what: str, seed: int
) -> tuple[Replay, set[str]]:
    """Replay what :func:`recording_values` recorded under ``prefix`` (grader side): every environment
    the collector built, each render cropped with the boxes ``preprocess_frame`` was given for that
    very image. Returns the replay and the ids of the environments built.

    The first seeded reset must use ``seed``: that ties the log to the grading run's inputs (a log
    recorded before grading fails), and asks the collector to seed its environment.

    Raises:
        CheckFailed: if no environment of ``env_ids`` was built with ``make_env``, the first seeded
            reset does not use ``seed``, or a replay differs from its log (see :func:`replay`).
        RecordError: if the logs are malformed, or a logged frame is not what ``preprocess_frame``
            makes of the judge's render (a log no honest probe writes).
    """
    envs = record.json(f"{prefix}_envs")
    if not isinstance(envs, list) or len(envs) > _MAX_ENVS:
        raise RecordError(f"the record's {prefix}_envs is not a list of at most {_MAX_ENVS} environments")
    expect(envs, rules.message("make_env", what=what))
    inputs, boxes, outputs = (
        record.array(f"{prefix}_pre_{k}", d) for k, d in (("in", "uint8"), ("box", "int64"), ("out", "uint8"))
    )
    if not (len(inputs) == len(boxes) == len(outputs) <= _MAX_FRAMES and boxes.shape[1:] == (5,)):
        raise RecordError(f"the record's preprocess_frame log of {prefix} is inconsistent")
    crops: dict[bytes, list[tuple[tuple[int, ...], bytes]]] = {}
    for key, box, made in zip(inputs, boxes, outputs, strict=True):
        crops.setdefault(bytes(key), []).append((tuple(int(b) for b in box), bytes(made)))
    out, built, first = Replay(), set(), []

    def frames_of(image: np.ndarray) -> list[np.ndarray]:
        made = []
        for box, logged in crops.get(digest(image), []):
            size = box[4]
            if not (
                0 <= box[0] < box[1] <= image.shape[0] and 0 <= box[2] < box[3] <= image.shape[1] and size == FRAME_SIZE
            ):
                raise RecordError(f"the record's crop {box} does not fit a {image.shape} render")
            frame = crop_and_resize(image, box[:4], size)
            if digest(frame) != logged:
                raise RecordError(
                    "a frame in the record's preprocess_frame log is not what that crop makes of the render"
                )
            out.crops.setdefault(logged, box[:4])
            made.append(frame)
        return made

    for j, entry in enumerate(envs):
        if not (
            isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict)
        ):
            raise RecordError(f"the record's environment {j} of {prefix} is malformed")
        env_id, kwargs = entry
        expect(env_id in env_ids, f"{what} built a {env_id} environment; expected one of {env_ids}")
        kwargs = {k: v for k, v in kwargs.items() if k in _ENV_KWARGS and isinstance(v, int) and 0 < v <= 100_000}
        env = gym.make(env_id, render_mode="rgb_array", **kwargs)
        seeds = _replay_env(env, _call_log(record, f"{prefix}_env{j}"), what, frames_of, out)
        first = first or seeds
        built.add(env_id)
    expect(first and first[0] == seed, rules.message("seed_given", what=what))
    return out, built
