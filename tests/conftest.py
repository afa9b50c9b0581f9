"""Shared fixtures: a headless display, two CPU threads, and real CartPole frames."""

from __future__ import annotations

import os

# Before gymnasium/pygame or matplotlib are imported anywhere: no screen, no GUI backend.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch

# One intra-op thread: the tensors here are tiny, and with two OpenMP threads on a busy
# 2-core machine (nbgrader, notebooks and pytest side by side) every elementwise op waits on a
# spinning barrier; measured 30x slower per training step than with one thread.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cartpole_frames() -> np.ndarray:
    """256 real CartPole frames ``uint8 (256, 64, 64, 3)`` from seeded random episodes.

    Shared by the whole session: tests must not modify them (copy first).
    """
    from course_lib.data import sample_frames

    return sample_frames("CartPole-v1", 256, seed=0, progress=False)


@pytest.fixture
def small_frames(cartpole_frames: np.ndarray) -> np.ndarray:
    """The first 64 CartPole frames (a writable copy)."""
    return cartpole_frames[:64].copy()


def _unavailable(err: Exception) -> None:
    """Skip a test whose system part (PostgreSQL, Slurm, users of the machine) is missing here, unless
    ``COURSE_REQUIRE_SYSTEM=1`` (set by `make test`, which installs them), where that is a failure."""
    if os.environ.get("COURSE_REQUIRE_SYSTEM") == "1":
        pytest.fail(f"required here: {err}")
    pytest.skip(str(err))


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server started for this test session (:mod:`tests.pg_server`)."""
    from pg_server import PostgresServer, PostgresUnavailableError

    try:
        server = PostgresServer().start()
    except PostgresUnavailableError as err:
        _unavailable(err)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slurm():
    """A one-node Slurm cluster started for this test session (:mod:`tests.slurm_cluster`)."""
    from slurm_cluster import SlurmCluster, SlurmUnavailableError

    try:
        cluster = SlurmCluster().start()
    except SlurmUnavailableError as err:
        _unavailable(err)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def installation():
    """The course installed by the ordinary grader account as a new instructor would (:mod:`tests.accounts`)."""
    from accounts import AccountsUnavailableError
    from accounts import installation as install

    try:
        return install()
    except AccountsUnavailableError as err:
        _unavailable(err)


def _module_seconds(item: pytest.Item) -> float:
    """The ``seconds`` its ``slow`` marker declares for the module of ``item`` (0 when unmarked)."""
    marker = item.get_closest_marker("slow")
    return float(marker.kwargs.get("seconds", 0)) if marker else 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest modules first, each module's tests kept together and in their order.

    ``make test`` hands whole modules to two processes (``pytest-xdist``'s ``--dist loadfile`` with
    ``--no-loadscope-reorder``) in this order, so that the longest ones start at once rather than
    last; module-scoped fixtures (a grading run) are still built once.
    """
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    cost = {module: max(_module_seconds(item) for item in group) for module, group in modules.items()}
    items[:] = [item for module in sorted(modules, key=lambda m: -cost[m]) for item in modules[module]]
