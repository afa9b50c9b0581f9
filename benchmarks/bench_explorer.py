"""Latency of the latent explorer: from a slider change to the new image bytes (target: < 50 ms).

For each model, a :class:`course_lib.explorer.LatentExplorer` is built on seeded random frames
(timing does not depend on the weights being trained), then the top slider is moved repeatedly:

- **sync**: the slider's ``value`` is set and the image's PNG is read back; outside a kernel the
  explorer decodes synchronously, so this is the whole path of one update (observer, code from the
  sliders, ``decode`` in eval mode without gradients, ``uint8`` conversion, 4x nearest upscaling,
  PNG encoding, the ``Image`` widget's trait update), measured with the explorer's default of one
  PyTorch thread per decode (``decode_threads=1``) and with PyTorch's own setting
  (``decode_threads=None``);
- **threaded**: as in a kernel, the worker thread decodes; timed from setting the value to the
  image widget's change notification;
- **burst**: as a dragged slider does, 50 values set back to back in threaded mode; reported: the
  decodes actually run (overtaken values are dropped) and the time from the last value to its image.

Also reported: ``decode`` alone and ``png_bytes`` alone (median ms). Models: the World Models
``ConvVAE`` (z = 32), ``SmallVAE(z_size=16, width=8)`` (notebook 02) and
``SmallVAE(z_size=32, width=16)`` (notebook 07). Rounds interleave the models, so a burst of load
from other processes does not favour one.

Usage: ``python benchmarks/bench_explorer.py [--rounds 5] [--moves 20] [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import conditions, emit, log, machine
from torch import nn

from course_lib.explorer import LatentExplorer, png_bytes
from course_lib.models import SmallVAE
from course_lib.solutions.conv_vae import ConvVAE

TARGET_MS = 50.0
MODELS: dict[str, Callable[[], nn.Module]] = {
    "conv_vae_z32": lambda: ConvVAE(z_size=32),
    "small_vae_z16_w8": lambda: SmallVAE(z_size=16, width=8),
    "small_vae_z32_w16": lambda: SmallVAE(z_size=32, width=16),
}


def summary(seconds: list[float]) -> dict[str, float]:
    """Median and 90th percentile, in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    return {"median_ms": round(float(np.median(ms)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2), "n": len(ms)}


def slider_values(moves: int, round_index: int) -> list[float]:
    """Distinct values for the top slider (each move must change the code)."""
    return [float(v) for v in np.linspace(-2.0, 2.0, moves) + 0.001 * round_index]


def sync_latencies(ex: LatentExplorer, values: list[float]) -> list[float]:
    """Seconds from setting the top slider to the image bytes being there (synchronous explorer)."""
    out = []
    for value in values:
        before = ex.image.value
        start = time.perf_counter()
        ex.sliders[0].value = value
        image = ex.image.value
        out.append(time.perf_counter() - start)
        assert image != before, "the image did not change"
    return out


def threaded_latencies(ex: LatentExplorer, values: list[float]) -> list[float]:
    """Seconds from setting the top slider to the image widget's change, with the worker thread."""
    changed = threading.Event()

    def notify(_change: dict) -> None:
        changed.set()

    ex.image.observe(notify, names="value")
    out = []
    try:
        for value in values:
            changed.clear()
            start = time.perf_counter()
            ex.sliders[0].value = value
            if not changed.wait(10):
                raise RuntimeError("no image after 10 s")
            out.append(time.perf_counter() - start)
            ex.flush()
    finally:
        ex.image.unobserve(notify, names="value")
    return out


def burst(ex: LatentExplorer, values: list[float]) -> dict[str, Any]:
    """Set all values back to back (threaded); decodes run and time from the last value to its image."""
    ex.flush()
    renders = ex.renders
    for value in values[:-1]:
        ex.sliders[0].value = value
    start = time.perf_counter()
    ex.sliders[0].value = values[-1]
    ex.flush(30)
    last_to_image = time.perf_counter() - start
    return {
        "moves": len(values),
        "decodes": ex.renders - renders,
        "last_move_to_image_ms": round(last_to_image * 1000, 2),
    }


def component_times(ex: LatentExplorer, repeats: int) -> dict[str, float]:
    """Median ms of decode alone and of png_bytes alone."""
    z = ex.z
    decode = []
    for _ in range(repeats):
        start = time.perf_counter()
        frame = ex.decode(z)[0]
        decode.append(time.perf_counter() - start)
    png = []
    for _ in range(repeats):
        start = time.perf_counter()
        png_bytes(frame, ex.scale)
        png.append(time.perf_counter() - start)
    return {
        "decode_median_ms": round(statistics.median(decode) * 1000, 2),
        "png_median_ms": round(statistics.median(png) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the models")
    parser.add_argument("--moves", type=int, default=20, help="slider moves per model and round")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 8 moves")
    args = parser.parse_args()
    rounds, moves = (2, 8) if args.quick else (args.rounds, args.moves)

    before = conditions()
    frames = np.random.default_rng(0).integers(0, 256, size=(64, 64, 64, 3), dtype=np.uint8)
    explorers: dict[str, dict[str, LatentExplorer]] = {}
    for name, make in MODELS.items():
        torch.manual_seed(0)
        model = make()
        explorers[name] = {
            "sync_1_thread": LatentExplorer(model, frames, threaded=False, decode_threads=1),
            "sync_torch_threads": LatentExplorer(model, frames, threaded=False, decode_threads=None),
            "threaded": LatentExplorer(model, frames, threaded=True, decode_threads=1),
        }
        for kind, ex in explorers[name].items():  # warm-up: first calls allocate
            (threaded_latencies if kind == "threaded" else sync_latencies)(ex, [0.5, -0.5])
        log(f"built {name}")

    samples: dict[str, dict[str, list[float]]] = {n: {k: [] for k in e} for n, e in explorers.items()}
    for r in range(rounds):
        for name, configs in explorers.items():
            for kind, ex in configs.items():
                measure = threaded_latencies if kind == "threaded" else sync_latencies
                samples[name][kind] += measure(ex, slider_values(moves, r))
        log(f"round {r + 1}/{rounds}")

    results: dict[str, Any] = {}
    for name, configs in explorers.items():
        results[name] = {kind: summary(s) for kind, s in samples[name].items()}
        results[name]["burst"] = burst(configs["threaded"], slider_values(50, rounds + 1))
        results[name]["components"] = component_times(configs["sync_1_thread"], 4 * moves)
        results[name]["z_size"] = configs["sync_1_thread"].z_size
    conv = results["conv_vae_z32"]["sync_1_thread"]
    emit(
        {
            "benchmark": "explorer_latency",
            "what": "ms from a top-slider change to the new PNG bytes in the explorer's image widget",
            "target_ms": TARGET_MS,
            "conv_vae_median_under_target": conv["median_ms"] < TARGET_MS,
            "conv_vae_p90_under_target": conv["p90_ms"] < TARGET_MS,
            "rounds": rounds,
            "moves_per_round": moves,
            "results": results,
            "machine": machine(),
            "conditions_before": before,
            "conditions_after": conditions(),
        }
    )


if __name__ == "__main__":
    main()
