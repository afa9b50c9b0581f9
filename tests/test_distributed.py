"""Training in several processes: ``torchrun`` + ``DistributedDataParallel`` (gloo on this CPU).

The end-to-end test launches ``python -m torch.distributed.run --nproc-per-node 2 --standalone``
(that is ``torchrun``) on tiny shards with a tiny model that draws no random numbers (``z = mu``),
so that two processes must give the losses of one process with the same global batch up to float
rounding: each process averages over its half of the batch and DistributedDataParallel averages
the two gradients, where one process averages over the whole batch at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import distributed
from course_lib.data import save_shard
from course_lib.distributed import DistributedBatches, Processes, backend_for, from_environment, local_batch_size
from course_lib.train import _batches, fit
from course_lib.train_vae import main

REPO = Path(__file__).resolve().parents[1]

DETERMINISTIC_MODEL = '''
"""A tiny VAE-shaped model that draws no random numbers (z = mu), for exact comparisons."""
import os

import torch
from torch import nn


class DeterministicVAE(nn.Module):
    def __init__(self, z_size=4):
        super().__init__()
        self.z_size = z_size
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, kernel_size=8, stride=8), nn.ReLU(), nn.Flatten())  # (B, 256)
        self.fc_mu = nn.Linear(256, z_size)
        self.fc_logvar = nn.Linear(256, z_size)
        self.decoder = nn.Linear(z_size, 3 * 64 * 64)

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        return torch.sigmoid(self.decoder(mu)).view(-1, 3, 64, 64), mu, logvar  # (B, 3, 64, 64)


if os.environ.get("SAVE_LOG"):  # record which process writes each file torch.save writes
    _save = torch.save

    def _logged_save(obj, f, *args, **kwargs):
        with open(os.environ["SAVE_LOG"], "a") as log:
            log.write(f"{os.environ.get('RANK', 'none')} {f}\\n")
        return _save(obj, f, *args, **kwargs)

    torch.save = _logged_save
'''


# --- sampling: the same global batches for any number of processes ----------------------------


@pytest.mark.parametrize("n", [33, 40, 7])
def test_global_batches_do_not_depend_on_the_number_of_processes(n):
    """Do 1, 2 and 4 processes read, together, each step's global batch of fit's one-process order,
    every frame once per epoch, with weights that add up to the whole batch?"""
    rng = np.random.default_rng(3)
    expected = [_batches(n, 8, rng) for _ in range(2)]  # two epochs from one generator, as fit draws them
    for world in (1, 2, 4):
        samplers = [DistributedBatches(n, 8, np.random.default_rng(3), rank, world) for rank in range(world)]
        for epoch in range(2):
            shares = [list(s) for s in samplers]  # one epoch each
            assert all(len(s) == len(expected[epoch]) == len(samplers[0]) for s in shares)
            for step, batch in enumerate(expected[epoch]):
                parts = [shares[rank][step] for rank in range(world)]
                real = [p for p in parts if p.weight > 0]
                np.testing.assert_array_equal(np.concatenate([p.index for p in real]), batch)
                assert sum(p.weight for p in parts) == pytest.approx(1.0)
                assert all(p.global_size == len(batch) for p in parts)


def test_a_process_without_frames_runs_a_zero_weight_frame():
    """When the last batch has fewer frames than processes, does the process left without one run the
    batch's first frame with weight 0 (so that it still takes part in the step)?"""
    sampler = DistributedBatches(9, 8, np.random.default_rng(0), rank=1, world_size=2)
    last = list(sampler)[-1]  # a 1-frame batch
    assert last.weight == 0.0 and len(last.index) == 1 and last.global_size == 1
    first = list(DistributedBatches(9, 8, np.random.default_rng(0), rank=0, world_size=2))[-1]
    assert first.weight == 1.0 and first.index.tolist() == last.index.tolist()


def test_batch_size_must_divide_over_the_processes():
    """Is a global batch that does not split evenly refused, naming the sizes that would?"""
    assert local_batch_size(100, 4) == 25
    with pytest.raises(
        ValueError, match=r"100 is the global batch .* 3 processes; use a multiple of 3, e.g. 99 or 102"
    ):
        local_batch_size(100, 3)
    with pytest.raises(ValueError, match="divide evenly"):
        DistributedBatches(10, 5, np.random.default_rng(0), 0, 2)


def test_the_command_refuses_an_uneven_batch_before_starting(tmp_path, monkeypatch, capsys):
    """Under torchrun with 3 processes, is --batch-size 8 refused (exit 2) before joining the others?"""
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    args = ["--shards", str(tmp_path), "--out", str(tmp_path / "x.pt"), "--batch-size", "8", "--device", "cpu"]
    assert main(args) == 2
    assert "--batch-size: the batch size 8 is the global batch" in capsys.readouterr().err


def test_ranks_and_backends(monkeypatch):
    """Are torchrun's variables read (rank 0 of 1 without them), and NCCL/gloo picked from the device?"""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert from_environment() == Processes(0, 1, 0) and not from_environment().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert from_environment() == Processes(2, 4, 0) and not from_environment().is_main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK < WORLD_SIZE"):
        from_environment()
    assert backend_for(torch.device("cuda", 1)) == "nccl" and backend_for(torch.device("cpu")) == "gloo"
    with pytest.raises(ValueError, match="mps"):
        backend_for(torch.device("mps"))
    assert distributed.device_for(Processes(3, 4, 1), "cuda") == torch.device("cuda", 1)
    assert distributed.all_reduce([1, 2.5]) == [1.0, 2.5] and distributed.broadcast("x") == "x"  # no group


# --- fit in a process group of two ------------------------------------------------------------

FIT_WORKER = """
import sys

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, sys.argv[4])
from det_vae import DeterministicVAE

from course_lib import precision, train

rank, world, store, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
precision.TRIAL_MIN_STEPS = 0  # measure the precisions even in this short run
precision.cpu.fast_bfloat16 = lambda cpuinfo=None: True  # and on any CPU
torch.manual_seed(0)
frames = np.load(f"{folder}/frames.npy")
history = train.fit(
    DeterministicVAE(), frames, num_epochs=2, batch_size=8, lr=1e-2, seed=0, device="cpu", progress=False,
    precision="auto",
)
np.save(f"{folder}/losses_{rank}.npy", [h["loss"] for h in history.train])
with open(f"{folder}/precision_{rank}.txt", "w") as f:
    f.write(history.precision + " " + history.precision_trial["reason"])
dist.destroy_process_group()
"""


def test_fit_in_two_processes_with_a_one_frame_last_batch(tmp_path):
    """Does fit in a gloo group of two processes, whose last batch of each epoch holds one frame (the
    second process runs it with weight 0), train without hanging and report, on both processes, the
    losses of one process to float rounding (see the tolerance of the torchrun test below); and does
    precision="auto" measure in both and pick the same path?"""
    (tmp_path / "det_vae.py").write_text(DETERMINISTIC_MODEL)
    frames = np.random.default_rng(0).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)  # steps of 8 and 1
    np.save(tmp_path / "frames.npy", frames)
    (tmp_path / "worker.py").write_text(FIT_WORKER)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    store = tmp_path / "store"
    workers = [
        subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(rank), "2", str(store), str(tmp_path)],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(2)
    ]  # fmt: skip
    try:
        outputs = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], "\n".join(outputs)[-3000:]

    sys.path.insert(0, str(tmp_path))
    try:
        from det_vae import DeterministicVAE
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("det_vae", None)
    choices = {(tmp_path / f"precision_{rank}.txt").read_text() for rank in range(2)}
    assert len(choices) == 1
    precision, reason = choices.pop().split(" ", 1)
    assert reason == "measured"
    torch.manual_seed(0)
    one = fit(
        DeterministicVAE(),
        frames,
        num_epochs=2,
        batch_size=8,
        lr=1e-2,
        seed=0,
        device="cpu",
        progress=False,
        precision=precision,
    )
    reference = [h["loss"] for h in one.train]
    assert len(reference) == 4
    rtol = 1e-5 if precision == "float32" else 0.03  # bfloat16 rounds per half batch: the 3% of its own test
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"losses_{rank}.npy"), reference, rtol=rtol)


# --- end to end: torchrun with two gloo processes ------------------------------------------------


def write_rollouts(directory: Path, n: int = 4, length: int = 11) -> None:
    """``n`` rollouts of ``length`` frames: a light square moving on a background of the rollout's shade."""
    for i in range(n):
        frames = np.full((length, 64, 64, 3), (40, 110 + 20 * i, 40), dtype=np.uint8)
        for t, frame in enumerate(frames):
            frame[20:36, 4 * t : 4 * t + 16] = (200, 200, 200)
        save_shard(directory / f"rollout_{i:04d}.npy", frames)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Four rollouts of 11 frames (one is held out: 33 training frames) and the deterministic model."""
    write_rollouts(tmp_path / "shards")
    (tmp_path / "det_vae.py").write_text(DETERMINISTIC_MODEL)
    return tmp_path


def _args(run_dir: Path, out: Path, *extra: str) -> list[str]:
    # global batch 6: 33 frames make steps of 6 frames and a last of 3, split 2 and 1 over two processes
    return [
        "--shards", str(run_dir / "shards"), "--out", str(out), "--batch-size", "6", "--lr", "1e-2",
        "--val-fraction", "0.25", "--z-size", "4", "--model", f"{run_dir / 'det_vae.py'}:DeterministicVAE",
        "--device", "cpu", "--no-progress", *extra,
    ]  # fmt: skip


def _torchrun(run_dir: Path, nproc: int, *args: str, repo: Path = REPO) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node nproc -m course_lib.train_vae args``; its output once it succeeded.

    It runs in a session of its own, killed whole (launcher and workers) if it outlives the timeout.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAVE_LOG": str(run_dir / "saves.log")}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone"]
    command += ["-m", "course_lib.train_vae", *args]
    with subprocess.Popen(
        command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
    assert launcher.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr)


def _losses(path: Path) -> list[float]:
    return [h["loss"] for h in torch.load(path, map_location="cpu", weights_only=False)["history"]["train"]]


def test_two_processes_train_like_one_and_resume_in_one(run_dir, capsys):
    """Do two gloo processes under torchrun give, step by step, the losses of one process with the same
    global batch (to float rounding), with rank 0 alone printing and writing the checkpoint; and does
    one process resume that checkpoint at the right epoch and step, continuing as one process would?

    Tolerance: the model draws no random numbers and every step sees the same frames, so only the
    order of float32 sums differs (two half-batch means combined by the gradient all-reduce instead
    of one mean; the 3-frame last batch's shares of 2 and 1 weighted 4/3 and 2/3). Measured: at most
    4e-7 relative (float32's rounding), well inside rtol=1e-5, while leaving the last batch's shares
    unweighted moves the losses after it by 1e-4 to 3e-3.
    """
    one, two = run_dir / "one.pt", run_dir / "two.pt"
    assert main(_args(run_dir, one, "--epochs", "1")) == 0
    assert main(_args(run_dir, one, "--epochs", "2", "--resume")) == 0
    capsys.readouterr()
    reference = _losses(one)
    assert len(reference) == 12  # 6 steps per epoch

    done = _torchrun(run_dir, 2, *_args(run_dir, two, "--epochs", "1"))
    np.testing.assert_allclose(_losses(two), reference[:6], rtol=1e-5)
    assert done.stdout.count("mean-image baseline") == 1 and done.stdout.count("vs baseline") == 1
    assert "2 processes (cpu on rank 0)" in done.stdout
    saves = (run_dir / "saves.log").read_text().split()
    assert saves[::2] == ["0", "0", "0"]  # end of epoch, end of fit, the command's record: all rank 0
    state = torch.load(two, map_location="cpu", weights_only=False)
    assert state["extra"]["processes"] == 2 and state["history"]["epochs"] == 1 and state["history"]["steps"] == 6
    assert not any(key.startswith("module.") for key in state["model"])  # the un-wrapped model's weights

    resumed = run_dir / "resumed.pt"
    shutil.copy(two, resumed)
    assert main(_args(run_dir, resumed, "--epochs", "2", "--resume")) == 0
    state = torch.load(resumed, map_location="cpu", weights_only=False)
    assert state["history"]["epochs"] == 2 and state["history"]["steps"] == 12
    assert state["extra"]["processes"] == 1
    np.testing.assert_allclose(_losses(resumed), reference, rtol=1e-5)
