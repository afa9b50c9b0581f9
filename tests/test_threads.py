"""The thread chooser: does ``fit`` train with the faster of PyTorch's thread count and one thread,
follow the load, remember its choice, stay off when pinned, and leave the losses alone?"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.models import SmallVAE
from course_lib.threads import ThreadChooser
from course_lib.train import fit


class FakeClock:
    """A clock where a step takes ``cost[threads]`` seconds (``cost`` can change mid-run)."""

    def __init__(self, cost):
        self.cost, self.now, self.calls = cost, 0.0, 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:  # the second read of a step: advance by the step's cost
            self.now += self.cost[torch.get_num_threads()]
        return self.now


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("COURSE_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    ThreadChooser.choices.clear()
    yield
    ThreadChooser.choices.clear()
    torch.set_num_threads(before)


def run_chooser(chooser, steps):
    used = []
    for _ in range(steps):
        chooser.before_step()
        used.append(torch.get_num_threads())
        chooser.after_step()
    return used


@pytest.mark.parametrize(("cost", "expected"), [({1: 1.0, 2: 4.0}, 1), ({1: 1.0, 2: 0.6}, 2)])
def test_thread_chooser_keeps_the_faster(two_threads, cost, expected):
    """After the first six steps, is every step run with the thread count whose steps were faster?"""
    chooser = ThreadChooser(torch.device("cpu"), 100, clock=FakeClock(cost))
    used = run_chooser(chooser, 50)
    assert used[:6] == [2, 1, 2, 1, 2, 1]
    assert set(used[6:]) == {expected}
    chooser.restore()
    assert torch.get_num_threads() == 2


def test_thread_chooser_follows_the_load(two_threads):
    """When two threads become slow mid-run (a busy machine), does a later check switch to one?"""
    cost = {1: 1.0, 2: 0.6}
    chooser = ThreadChooser(torch.device("cpu"), 1000, clock=FakeClock(cost))
    used = run_chooser(chooser, 20)
    assert used[-1] == 2
    cost[2] = 5.0
    used = run_chooser(chooser, 200)
    assert used[-1] == 1


def test_thread_chooser_remembers_per_key(two_threads):
    """Does a second run of the same kind start with the remembered choice, skipping the trial, check
    the other count early, and switch when the load that made the choice has gone?"""
    first = ThreadChooser(torch.device("cpu"), 100, clock=FakeClock({1: 1.0, 2: 4.0}), key=("ConvVAE", 100))
    run_chooser(first, 10)
    first.restore()
    same = ThreadChooser(torch.device("cpu"), 48, clock=FakeClock({1: 1.0, 2: 4.0}), key=("ConvVAE", 100))
    used = run_chooser(same, 48)
    assert used[:4] == [1] * 4 and used[4:6] == [2, 2] and set(used[6:]) == {1}  # one early check, kept
    same.restore()
    idle = ThreadChooser(torch.device("cpu"), 48, clock=FakeClock({1: 1.0, 2: 0.5}), key=("ConvVAE", 100))
    used = run_chooser(idle, 48)
    assert used[:4] == [1] * 4 and set(used[4:]) == {2}  # two threads are faster now: switched at the check
    idle.restore()
    again = ThreadChooser(torch.device("cpu"), 48, clock=FakeClock({1: 1.0, 2: 0.5}), key=("ConvVAE", 100))
    assert run_chooser(again, 48) == [2] * 48  # starts with it; steps as fast as when chosen: no check
    again.restore()
    busy = ThreadChooser(torch.device("cpu"), 48, clock=FakeClock({1: 1.0, 2: 4.0}), key=("ConvVAE", 100))
    used = run_chooser(busy, 48)
    assert used[:4] == [2] * 4 and set(used[4:]) == {1}  # two threads got slower: checked one, switched
    busy.restore()
    other = ThreadChooser(torch.device("cpu"), 100, clock=FakeClock({1: 1.0, 2: 4.0}), key=("SmallVAE", 32))
    assert run_chooser(other, 6) == [2, 1, 2, 1, 2, 1]


def test_thread_chooser_off_when_pinned(two_threads, monkeypatch):
    """Is the thread count left alone with OMP_NUM_THREADS set, and fixed by COURSE_THREADS?"""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    chooser = ThreadChooser(torch.device("cpu"), 100, clock=FakeClock({1: 1.0, 2: 9.0}))
    assert set(run_chooser(chooser, 20)) == {2}
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("COURSE_THREADS", "1")
    chooser = ThreadChooser(torch.device("cpu"), 100, clock=FakeClock({1: 9.0, 2: 1.0}))
    assert set(run_chooser(chooser, 20)) == {1}
    chooser.restore()
    assert torch.get_num_threads() == 2
    monkeypatch.delenv("COURSE_THREADS")
    assert not ThreadChooser(torch.device("cpu"), 10).enabled  # too short to be worth timing


def test_fit_with_thread_choice_same_losses(two_threads, cartpole_frames):
    """Does fit choosing threads give the losses of a fit on one thread (SmallVAE), and restore the count?"""
    runs = []
    for pinned in (None, "1"):
        if pinned:
            torch.set_num_threads(1)
        torch.manual_seed(0)
        history = fit(
            SmallVAE(z_size=4, width=8),
            cartpole_frames,
            batch_size=16,
            max_steps=48,
            seed=0,
            device="cpu",
            progress=False,
        )
        runs.append([h["loss"] for h in history.train])
        assert torch.get_num_threads() == (1 if pinned else 2)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)
