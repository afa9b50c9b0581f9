"""Frames per second of data collection: the package's collector against a homework-template loop.

For CartPole-v1 (render 400x600, crop, resize to 64x64) and CarRacing-v3 (96x96 observation):

- **package**: :func:`course_lib.data.sample_frames` as shipped: episodes played without
  rendering, then rendered by replaying them in worker processes (``COURSE_WORKERS`` caps them);
- **package_serial_reference**: the previous implementation (render while playing, one process),
  kept as ``course_lib.data._sample_frames_serial``; its frames must equal the package's;
- **template_loop**: the CMPE 260 homework template's loop: one env, ``env.step``,
  ``env.render()``, a per-frame resize of the full render to 64x64 (cv2 is not installed: Pillow's
  bilinear resize of the whole render stands in for ``cv2.resize``), reset on episode end.

Each configuration runs ``--rounds`` times, interleaved; medians are reported with the load.

Usage: ``python benchmarks/bench_collection.py [--cartpole 3000] [--carracing 500] [--rounds 2] [--quick]``
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import gymnasium as gym
import numpy as np
from _common import OthersLoad, conditions, emit, log, machine, quiet_median, timed
from PIL import Image

from course_lib import data
from course_lib.data import collect_workers, sample_frames


def template_loop(env_id: str, n_frames: int, seed: int = 0) -> np.ndarray:
    """The homework template's collection loop: step, render, resize the full render per frame.

    Returns:
        ``uint8 (n_frames, 64, 64, 3)``.
    """
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    for i in range(n_frames):
        action = env.action_space.sample()
        _, _, terminated, truncated, _ = env.step(action)
        img = env.render()  # (400, 600, 3)
        frames[i] = np.asarray(Image.fromarray(img).resize((64, 64), Image.Resampling.BILINEAR))
        if terminated or truncated:
            env.reset()
    env.close()
    return frames


def bench_env(env_id: str, n_frames: int, policy: str, rounds: int) -> dict[str, Any]:
    """Time the three collectors on ``env_id`` and check the package's frames."""
    out: dict[str, np.ndarray] = {}
    collectors = {
        "template_loop": lambda: template_loop(env_id, n_frames),
        "package": lambda: out.update(package=sample_frames(env_id, n_frames, seed=0, policy=policy, progress=False)),
        "package_serial_reference": lambda: out.update(
            serial=data._sample_frames_serial(env_id, n_frames, 0, policy, env_id, False)
        ),
    }
    runs: dict[str, list[float]] = {k: [] for k in collectors}
    others: dict[str, list[float | None]] = {k: [] for k in collectors}
    identical = True
    for r in range(rounds):
        for name, collect in collectors.items():
            with OthersLoad() as load:
                seconds = timed(collect)
            runs[name].append(n_frames / seconds)
            others[name].append(load.percent)
        identical &= bool(np.array_equal(out["package"], out["serial"]))
        log(
            f"{env_id} round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {v[-1]:.0f} frames/s (others {others[k][-1]}%)" for k, v in runs.items())
        )
    rates = {k: round(quiet_median(v, others[k])[0], 1) for k, v in runs.items()}
    return {
        "n_frames": n_frames,
        "policy": policy,
        "frames_per_s": rates,
        "samples": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "others_cpu_percent": others,
        "speedup_vs_template_loop": round(rates["package"] / rates["template_loop"], 3),
        "speedup_vs_serial_reference": round(rates["package"] / rates["package_serial_reference"], 3),
        "same_frames_as_serial_reference": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cartpole", type=int, default=3000, help="CartPole frames per run")
    parser.add_argument("--carracing", type=int, default=500, help="CarRacing frames per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="600 CartPole and 150 CarRacing frames, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.cartpole, args.carracing, args.rounds = 600, 150, 1
    load_before = conditions()
    results = {
        "CartPole-v1": bench_env("CartPole-v1", args.cartpole, "random", args.rounds),
        "CarRacing-v3": bench_env("CarRacing-v3", args.carracing, "brown", args.rounds),
    }
    emit(
        {
            "benchmark": "collection",
            "machine": machine(),
            "workers": collect_workers(),
            "course_workers_env": os.environ.get("COURSE_WORKERS"),
            "conditions_before": load_before,
            "conditions_after": conditions(),
            "rounds": args.rounds,
            "medians_over": "rounds during which other processes used < 20% of the CPUs (all rounds if none)",
            "results": results,
            "targets": {
                "at_least_2x_template_loop": {k: v["speedup_vs_template_loop"] >= 2.0 for k, v in results.items()},
                "same_frames_for_same_seed": {k: v["same_frames_as_serial_reference"] for k, v in results.items()},
            },
        }
    )


if __name__ == "__main__":
    main()
