"""Helpers shared by the benchmarks: machine description, load average, timing, JSON output.

Every ``bench_*.py`` prints exactly one JSON object on stdout; progress goes to stderr. Timings on
a shared machine are noisy, so each result carries the load average before and after it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from course_lib.cpu import cpu_flags, cpu_model


def log(*args: Any) -> None:
    """Progress message on stderr (stdout is reserved for the JSON result)."""
    print(*args, file=sys.stderr, flush=True)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 2 decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_busy_percent(seconds: float = 2.0) -> float | None:
    """Percent of all CPUs that other processes kept busy over the next ``seconds`` (None without /proc).

    This process sleeps meanwhile (:class:`OthersLoad`). On some virtual machines the load average
    lags or freezes; this is the direct measure.
    """
    with OthersLoad() as load:
        time.sleep(seconds)
    return load.percent


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process and its waited-for children)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    mine = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return sum(values) - values[3] - values[4], mine


class OthersLoad:
    """Measures the CPU share that *other* processes took while a block ran.

    Usage::

        with OthersLoad() as load:
            work()
        load.percent  # busy CPU of everyone else, as % of all CPUs, during work()

    Used to keep, among interleaved measurement rounds, those taken while the machine was quiet.
    """

    def __enter__(self) -> OthersLoad:
        self.start, self.t0 = _cpu_ticks(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_ticks()
        wall = time.perf_counter() - self.t0
        if self.start is None or end is None or wall <= 0:
            self.percent = None
            return
        ticks = os.sysconf("SC_CLK_TCK") * wall * (os.cpu_count() or 1)
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        self.percent = round(max(0.0, min(100.0, 100.0 * others / ticks)), 1)


def quiet_median(samples: list[float], others: list[float | None], threshold: float = 20.0) -> tuple[float, int]:
    """Median of the samples taken while other processes used < ``threshold`` % of the CPUs.

    Returns ``(median, n_used)``; all samples are used (``n_used == len(samples)``) when none was quiet.
    """
    quiet = [s for s, o in zip(samples, others, strict=True) if o is not None and o < threshold]
    chosen = quiet or samples
    return float(statistics.median(chosen)), len(chosen)


def paired_median_ratio(
    samples: list[float],
    anchor: list[float],
    others: list[float | None] | None = None,
    anchor_others: list[float | None] | None = None,
    threshold: float = 20.0,
) -> tuple[float, int]:
    """Median over the rounds of ``samples[r] / anchor[r]``, both measured in round ``r``.

    A ratio within one round holds when the machine's speed drifts between rounds (a virtual
    machine's host busy for a minute) where a ratio of two medians does not. Only the rounds
    during which other processes used < ``threshold`` % of the CPUs for both count (all if none,
    or if the shares were not measured). Returns ``(median, n_used)``.
    """
    ratios = [s / a for s, a in zip(samples, anchor, strict=True)]
    unknown = [None] * len(ratios)
    quiet = [
        r
        for r, o, ao in zip(ratios, others or unknown, anchor_others or unknown, strict=True)
        if o is not None and ao is not None and max(o, ao) < threshold
    ]
    chosen = quiet or ratios
    return float(statistics.median(chosen)), len(chosen)


def conditions() -> dict[str, Any]:
    """The machine's load right now: load averages and the CPU busy percentage of other processes."""
    return {"load_average": load_average(), "cpu_busy_percent_others": cpu_busy_percent()}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "usable_cpus": usable,
        "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"}),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def matmul_gflops(n: int = 2048, seconds: float = 1.0, dtype: torch.dtype = torch.float32) -> float:
    """Rate of a loop of ``n x n`` matmuls in this process, in GFLOP/s (``2 n^3`` FLOP each).

    Runs for about ``seconds`` after two warm-up products.
    """
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b, out=out)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b, out=out)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def emit(result: dict[str, Any]) -> None:
    """Print ``result`` as the benchmark's one JSON object on stdout."""
    print(json.dumps(result, indent=1, sort_keys=False))
