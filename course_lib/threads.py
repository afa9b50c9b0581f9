"""``fit``'s choice, while it trains, between PyTorch's thread count and one thread."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable
from typing import ClassVar

import numpy as np
import torch


class ThreadChooser:
    """Picks, while ``fit`` trains, the faster of PyTorch's thread count and one thread.

    With several OpenMP threads on a CPU that other processes also use, every parallel region
    waits at a barrier for a thread that is not running: on a busy 2-core machine a small VAE's
    step took 4-8x longer with 2 threads than with 1, the World Models ``ConvVAE``'s 2x
    (benchmarks/bench_training.py); on an idle machine more threads are faster. So the first
    steps are timed with each (after one warm-up step each) and the faster is kept; the other
    is tried again for two steps at exponentially spaced steps, as the load changes. The choice
    is remembered for :attr:`REMEMBER_SECONDS` per ``key`` (the model class, batch size and
    precision), so that the next ``fit`` of the same kind starts with it, skips the trial and
    checks the other count after :attr:`REMEMBERED_CHECK` steps.

    Off, leaving the thread count alone, when it is pinned (``OMP_NUM_THREADS`` set, as the
    autograder does, or ``COURSE_THREADS`` set, which ``fit`` then uses), when PyTorch already
    uses one thread, off the CPU, and for runs shorter than :attr:`MIN_STEPS` steps. The thread
    count changes only the rounding of some float sums (tests/test_threads.py).

    Args:
        device: where ``fit`` trains.
        total_steps: the steps the run has left.
        clock: seconds, read before and after each step (tests pass a fake one).
        key: the kind of run a choice is remembered for.

    Used as a context manager, it gives PyTorch back its thread count on the way out (:meth:`restore`).
    """

    MIN_STEPS = 40
    FIRST_CHECK = 50
    SWITCH_MARGIN = 0.9
    #: A choice made for the same kind of run this recently is reused without the first trial,
    #: and checked after :attr:`REMEMBERED_CHECK` steps: the load it was made under may be gone
    #: (a choice of one thread made while other jobs ran then halves the speed of an idle 2-core
    #: machine, benchmarks/bench_training.py), and two steps on the other count cost little.
    REMEMBER_SECONDS = 600.0
    REMEMBERED_CHECK = 4
    #: A remembered choice of PyTorch's own count is kept without that check while its steps take
    #: at most this many times the step time it was chosen with (the machine as busy as then).
    SAME_LOAD = 1.25
    #: ``{key: (threads, time.monotonic() of the decision, median seconds of a step with them)}``,
    #: shared by the ``fit`` calls of a process.
    choices: ClassVar[dict[Hashable, tuple[int, float, float]]] = {}

    def __init__(
        self,
        device: torch.device,
        total_steps: int,
        clock: Callable[[], float] = time.perf_counter,
        key: Hashable = None,
    ):
        self.clock = clock
        self.key = (key, torch.get_num_threads())
        self.default = torch.get_num_threads()
        pinned = os.environ.get("COURSE_THREADS")
        if pinned:
            torch.set_num_threads(max(1, int(pinned)))
        self.enabled = (
            not pinned
            and "OMP_NUM_THREADS" not in os.environ
            and device.type == "cpu"
            and self.default > 1
            and total_steps >= self.MIN_STEPS
        )
        self.other = {self.default: 1, 1: self.default}
        self.choice = self.default
        # (threads, timed?) for the first steps: warm each up once, then time two steps of each
        self.plan = [(self.default, False), (1, False)] + [(self.default, True), (1, True)] * 2
        self.timings: dict[int, list[float]] = {self.default: [], 1: []}
        self.k = 0
        self.next_check = len(self.plan) + self.FIRST_CHECK
        self.interval = self.FIRST_CHECK
        self.remembered_seconds: float | None = None
        remembered = self.choices.get(self.key)
        if self.enabled and key is not None and remembered and time.monotonic() - remembered[1] < self.REMEMBER_SECONDS:
            # start with it, and check it early: the load may have changed since
            self.choice, self.plan = remembered[0], []
            self.next_check = self.REMEMBERED_CHECK
            self.remembered_seconds = remembered[2]
        self.current: tuple[int, bool] = (self.default, False)
        self.start = 0.0

    def before_step(self) -> None:
        """Set the thread count for the next step (and start its clock)."""
        if not self.enabled:
            return
        if self.k == self.next_check and self.remembered_seconds is not None and self.choice == self.default:
            # one thread only gets faster than PyTorch's count when the machine got busier: skip the
            # early check while the steps take what they took when the choice was made
            if float(np.median(self.timings[self.choice])) <= self.SAME_LOAD * self.remembered_seconds:
                self.next_check = self.FIRST_CHECK
            self.remembered_seconds = None
        if self.k < len(self.plan):
            self.current = self.plan[self.k]
        elif self.k in (self.next_check, self.next_check + 1):
            self.current = (self.other[self.choice], True)
        else:
            self.current = (self.choice, True)
        torch.set_num_threads(self.current[0])
        self.start = self.clock()

    def after_step(self) -> None:
        """Record the step's time and decide, at the end of a trial, which count to keep."""
        if not self.enabled:
            return
        seconds = self.clock() - self.start
        threads, timed = self.current
        if timed:
            self.timings[threads] = [*self.timings[threads][-7:], seconds]
        if self.k == len(self.plan) - 1:
            self.choice = min(self.timings, key=lambda t: float(np.median(self.timings[t])))
            self._remember()
        elif self.k == self.next_check + 1:
            other = self.other[self.choice]
            current = float(np.median(self.timings[self.choice]))
            if float(np.mean(self.timings[other][-2:])) < self.SWITCH_MARGIN * current:
                self.choice = other
            self._remember()
            self.interval *= 2
            self.next_check += self.interval
        self.k += 1

    def _remember(self) -> None:
        """Keep the choice, when it was made and its steps' median time, for the next run of this kind."""
        self.choices[self.key] = (self.choice, time.monotonic(), float(np.median(self.timings[self.choice])))

    def restore(self) -> None:
        """Give PyTorch back the thread count it had before ``fit``."""
        torch.set_num_threads(self.default)

    def __enter__(self) -> ThreadChooser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
