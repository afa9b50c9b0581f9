"""Training in several processes with PyTorch's ``DistributedDataParallel``, launched by ``torchrun``.

:func:`from_torchrun` joins the process group ``torchrun`` set up; :func:`course_lib.train.fit` then wraps the
model in ``DistributedDataParallel`` and reads its frames through :class:`DistributedBatches`, which keeps a
run on 2 processes the same optimisation, step for step, as on 1. Outside ``torchrun`` (or with one process)
nothing here starts anything: :func:`current` reports rank 0 of 1 and the collectives return their input.
``docs/training.md`` shows the commands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

#: How long a process waits in a collective for the others. Rank 0 alone computes the mean-image
#: baseline, validates and writes checkpoints while the others wait for it at the next step, which
#: on a large validation set on CPUs can take longer than PyTorch's default of 10 (NCCL) or 30
#: minutes (gloo).
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Processes:
    """Where this process stands among the processes training together.

    Attributes:
        rank: this process's number, 0 to ``world_size - 1`` (rank 0 logs, validates and saves).
        world_size: how many processes train together (1 without ``torchrun``).
        local_rank: its number on this machine (picks its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that prints, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when several processes train together (a process group is running)."""
        return self.world_size > 1


def from_environment() -> Processes:
    """The ranks ``torchrun`` set in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without them (a plain ``python`` launch): rank 0 of 1.

    Raises:
        ValueError: if they are not integers, or the rank is outside ``[0, WORLD_SIZE)``.
    """
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them): {err}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world_size}")
    return Processes(rank=rank, world_size=world_size, local_rank=local_rank)


def current() -> Processes:
    """This process's place in the running process group (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Processes()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def backend_for(device: torch.device) -> str:
    """The ``torch.distributed`` backend for ``device``: ``"nccl"`` for CUDA, ``"gloo"`` for the CPU
    (https://pytorch.org/docs/stable/distributed.html).

    Raises:
        ValueError: for any other device (MPS has no collective backend).
    """
    if device.type == "cuda":
        return "nccl"
    if device.type == "cpu":
        return "gloo"
    raise ValueError(f"training in several processes runs on CUDA GPUs (NCCL) or CPUs (gloo), not on {device.type!r}")


def device_for(processes: Processes, prefer: str | None = None) -> torch.device:
    """The device of this process: its own GPU (``cuda:LOCAL_RANK``) when there are GPUs, else the CPU.

    ``prefer`` (``"cuda"``, ``"cpu"``, ``"cuda:1"``) overrides; a bare ``"cuda"`` still means this
    process's GPU.
    """
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", processes.local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", processes.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@contextlib.contextmanager
def from_torchrun(device: torch.device, timeout: timedelta = TIMEOUT) -> Iterator[Processes]:
    """Join the process group ``torchrun`` set up (if it did) for the duration of the block.

    With ``WORLD_SIZE > 1`` in the environment: ``init_process_group`` with the backend of
    :func:`backend_for` (rendezvous through ``MASTER_ADDR``/``MASTER_PORT``, set by ``torchrun``),
    and ``destroy_process_group`` on leaving. Otherwise it yields rank 0 of 1 and starts nothing.

    Args:
        device: this process's device (:func:`device_for`).
        timeout: how long collectives wait for a slow process (:data:`TIMEOUT`).

    Yields:
        This process's :class:`Processes`.

    Raises:
        ValueError: for a device without a backend, or malformed rank variables.
    """
    processes = from_environment()
    if not processes.distributed:
        yield processes
        return
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timeout)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Frames each process takes from a global batch of ``batch_size``.

    Raises:
        ValueError: when ``batch_size`` does not divide evenly over ``world_size`` processes.
    """
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size}")
    if batch_size % world_size:
        below, above = batch_size - batch_size % world_size, batch_size + world_size - batch_size % world_size
        raise ValueError(
            f"the batch size {batch_size} is the global batch (all processes together) and must divide evenly "
            f"over the {world_size} processes; use a multiple of {world_size}, e.g. {below or above} or {above}"
        )
    return batch_size // world_size


@dataclass(frozen=True)
class LocalBatch:
    """This process's share of one global batch.

    Attributes:
        index: sorted ``int64`` frame indices to read (never empty: see ``weight``).
        weight: this share's part of the global batch, ``len(share) / global_size``; 0 for a process
            that got no frame of a short last batch, which then runs the batch's first frame so that
            every process takes part in the step, with its loss multiplied by 0.
        global_size: frames in the global batch.
    """

    index: np.ndarray
    weight: float
    global_size: int


class DistributedBatches:
    """The global batches of :func:`course_lib.train.fit`, each cut into one share per process.

    Every process holds the same generator, so they all draw the same permutation of the ``n``
    frames each epoch (the same seed gives the same global order for any number of processes);
    the global batches are its consecutive ``batch_size`` slices, sorted (a sorted batch reads
    each shard in order), and process ``rank`` reads the ``rank``-th of ``world_size`` equal,
    contiguous parts. The last batch of an epoch may be shorter and split unevenly
    (:class:`LocalBatch`'s ``weight`` makes the averaged gradient that of the whole batch).

    It plays the part of ``torch.utils.data.DistributedSampler``, which pads the data set to a multiple of
    the number of processes and splits whole epochs, so that its global batches depend on that number;
    cutting each global batch instead keeps a run on 2 processes the same optimisation, step for step, as
    on 1 (``tests/test_distributed.py``).

    Args:
        n: frames in the data set.
        batch_size: frames per global batch (all processes together).
        rng: the shuffling generator, identical on every process; each iteration (epoch) draws the
            next permutation from it.
        rank: this process's rank.
        world_size: number of processes.

    Raises:
        ValueError: if ``batch_size`` does not divide evenly over ``world_size`` (:func:`local_batch_size`).
    """

    def __init__(self, n: int, batch_size: int, rng: np.random.Generator, rank: int = 0, world_size: int = 1):
        local_batch_size(batch_size, world_size)
        self.n, self.batch_size, self.rng = n, batch_size, rng
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        """Steps per epoch: ``ceil(n / batch_size)``."""
        return (self.n + self.batch_size - 1) // self.batch_size

    def global_batches(self) -> list[np.ndarray]:
        """The next epoch's global batches (sorted ``int64`` index arrays), drawing one permutation."""
        order = self.rng.permutation(self.n)
        return [np.sort(order[i : i + self.batch_size]) for i in range(0, self.n, self.batch_size)]

    def share(self, batch: np.ndarray) -> LocalBatch:
        """This process's part of the global ``batch``."""
        parts = np.array_split(batch, self.world_size)  # sizes differ by at most 1
        mine = parts[self.rank]
        if len(mine) == 0:
            return LocalBatch(batch[:1], 0.0, len(batch))
        return LocalBatch(mine, len(mine) / len(batch), len(batch))

    def __iter__(self) -> Iterator[LocalBatch]:
        """One epoch of this process's shares, drawing the epoch's permutation."""
        for batch in self.global_batches():
            yield self.share(batch)


def _collective_device() -> torch.device:
    """Where collective tensors live: the current GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(values: Sequence[float], op: str = "sum") -> list[float]:
    """``values`` combined element-wise over all processes (``op``: ``"sum"`` or ``"max"``), as floats.

    Float64 on the wire. Returns ``values`` unchanged (as floats) when there is no process group.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor.cpu().tolist()


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (pickled; ``obj`` as given when there is no group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]
