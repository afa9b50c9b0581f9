"""Seeded collection, ``.npy`` shards and the lazy multi-shard dataset (course_lib.data)."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
import torch
from numpy.lib.format import open_memmap

from course_lib.data import (
    FrameSubset,
    Rollout,
    ShardDataset,
    ShardError,
    actions_path,
    make_policy,
    open_shard,
    record_rollouts,
    sample_frames,
    save_rollouts,
    save_shard,
    train_val_split,
)
from course_lib.envs import make_env
from course_lib.frames import is_blank
from course_lib.models import SmallVAE
from course_lib.train import fit


def numbered_frames(n: int, start: int = 0) -> np.ndarray:
    """``uint8 (n, 64, 64, 3)`` frames whose pixels tell their number: frame i holds i % 251 etc."""
    i = np.arange(start, start + n)
    values = np.stack([i % 251, (i // 251) % 251, np.full_like(i, 7)], axis=1).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, :], (n, 64, 64, 3)).copy()


@pytest.fixture
def shard_dir(tmp_path):
    """Shards of 30, 10 and 20 numbered frames, with actions; returns (dir, frames, actions)."""
    lengths = [30, 10, 20]
    frames, actions, start = [], [], 0
    for k, n in enumerate(lengths):
        f = numbered_frames(n, start)
        a = np.random.default_rng(k).standard_normal((n, 3)).astype(np.float32)
        save_shard(tmp_path / f"shard_{k}.npy", f, a)
        frames.append(f)
        actions.append(a)
        start += n
    return tmp_path, np.concatenate(frames), actions


# --- collection -----------------------------------------------------------------------------


def test_sample_frames_seeded():
    """Does the same seed give the same frames, and another seed different frames?"""
    a = sample_frames("CartPole-v1", 40, seed=0, progress=False)
    b = sample_frames("CartPole-v1", 40, seed=0, progress=False)
    c = sample_frames("CartPole-v1", 40, seed=1, progress=False)
    assert a.shape == (40, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not any(is_blank(f) for f in a)


def test_sample_frames_are_whole_episodes():
    """Are sampled frames the frames of consecutive seeded episodes, cut at exactly n frames?"""
    frames = sample_frames("CartPole-v1", 60, seed=2, progress=False)
    rollouts = record_rollouts("CartPole-v1", 10, max_steps=500, seed=2, progress=False)
    episodes = np.concatenate([r.frames for r in rollouts])
    assert len(rollouts[0]) < 60 < len(episodes)  # several episodes are needed
    assert frames.shape == (60, 64, 64, 3)
    np.testing.assert_array_equal(frames, episodes[:60])


def test_sample_frames_rejects_zero():
    """Is a ValueError raised when no frame is asked for?"""
    with pytest.raises(ValueError, match="positive"):
        sample_frames("CartPole-v1", 0, progress=False)


def test_record_rollouts_seeded():
    """Do seeded rollouts repeat exactly, episode i being reset with seed + i?"""
    a = record_rollouts("CartPole-v1", 2, max_steps=15, seed=3, progress=False)
    b = record_rollouts("CartPole-v1", 2, max_steps=15, seed=3, progress=False)
    c = record_rollouts("CartPole-v1", 2, max_steps=15, seed=4, progress=False)
    assert len(a) == 2 and all(isinstance(r, Rollout) for r in a)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra.frames, rb.frames)
        np.testing.assert_array_equal(ra.actions, rb.actions)
        np.testing.assert_array_equal(ra.observations, rb.observations)
    assert not np.array_equal(a[0].frames, c[0].frames)
    # Episode 1 of seed 3 starts where episode 0 of seed 4 starts.
    np.testing.assert_array_equal(a[1].observations[0], c[0].observations[0])


def test_rollout_shapes_cartpole():
    """Do CartPole rollouts hold matching frames, (T, 1) actions and (T, 4) observations?"""
    (rollout,) = record_rollouts("CartPole-v1", 1, max_steps=12, seed=0, progress=False)
    t = len(rollout)
    assert 1 <= t <= 12
    assert rollout.frames.shape == (t, 64, 64, 3)
    assert rollout.actions.shape == (t, 1) and rollout.actions.dtype == np.float32
    assert set(np.unique(rollout.actions)) <= {0.0, 1.0}
    assert rollout.observations.shape == (t, 4)


def test_record_rollouts_car_racing_brown():
    """Does a brown-noise CarRacing rollout give 30 frames and 30 in-bounds (30, 3) actions?"""
    (rollout,) = record_rollouts(
        "CarRacing-v3", 1, max_steps=30, policy="brown", seed=0, progress=False
    )
    assert rollout.frames.shape == (30, 64, 64, 3) and rollout.frames.dtype == np.uint8
    assert rollout.actions.shape == (30, 3) and rollout.actions.dtype == np.float32
    low, high = np.array([-1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])
    assert (rollout.actions >= low).all() and (rollout.actions <= high).all()
    assert rollout.observations.shape == (30, 0)
    # Brown noise: consecutive actions are close (|N(0, 1/50)| < 0.75 for sure at 5 sigma).
    assert np.abs(np.diff(rollout.actions, axis=0)).max() < 0.75


def test_make_policy_unknown():
    """Is an unknown policy name rejected?"""
    env = make_env("CartPole-v1", seed=0)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy(env, "greedy", seed=0)
    env.close()


def test_train_val_split_arrays():
    """Does train_val_split partition the frames reproducibly?"""
    frames = numbered_frames(50)
    train, val = train_val_split(frames, 0.2, seed=0)
    assert len(train) == 40 and len(val) == 10
    ids = sorted(np.concatenate([train[:, 0, 0, 0], val[:, 0, 0, 0]]).tolist())
    assert ids == list(range(50))
    np.testing.assert_array_equal(train_val_split(frames, 0.2, seed=0)[1], val)
    with pytest.raises(ValueError):
        train_val_split(frames, 1.0)


# --- shards ---------------------------------------------------------------------------------


def test_save_rollouts_and_read_back(tmp_path):
    """Does ShardDataset(dir) give back the frames and actions of saved rollouts?"""
    rollouts = record_rollouts("CartPole-v1", 3, max_steps=10, seed=0, progress=False)
    paths = save_rollouts(rollouts, tmp_path)
    assert [p.name for p in paths] == ["rollout_0000.npy", "rollout_0001.npy", "rollout_0002.npy"]
    assert all(actions_path(p).exists() for p in paths)
    ds = ShardDataset(tmp_path)
    assert ds.paths == paths  # actions files are not shards
    frames = np.concatenate([r.frames for r in rollouts])
    assert len(ds) == len(frames) and ds.shape == frames.shape
    np.testing.assert_array_equal(ds[np.arange(len(ds))], frames)
    for i, r in enumerate(rollouts):
        np.testing.assert_array_equal(ds.actions(i), r.actions)


def test_indexing_matches_array(shard_dir):
    """Do int, negative int, array and slice indexing match indexing the concatenated frames?"""
    directory, frames, _ = shard_dir
    ds = ShardDataset(directory)
    assert len(ds) == 60 and ds.dtype == np.uint8 and ds.nbytes == frames.nbytes
    for i in (0, 29, 30, 39, 40, 59, -1, -60):
        np.testing.assert_array_equal(ds[i], frames[i])
    np.testing.assert_array_equal(ds[np.int64(35)], frames[35])
    index = np.array([0, 31, 5, 59, 40, 40])  # unsorted, across shards, repeated
    np.testing.assert_array_equal(ds[index], frames[index])
    np.testing.assert_array_equal(ds[[1, 2, 45]], frames[[1, 2, 45]])
    for key in (slice(25, 45), slice(None, None, 7), slice(-5, None), slice(10, 10)):
        np.testing.assert_array_equal(ds[key], frames[key])


@pytest.mark.parametrize("index", [60, -61, 1000])
def test_int_index_out_of_range(shard_dir, index):
    """Is an IndexError raised for an int index past either end (no wrap-around)?"""
    ds = ShardDataset(shard_dir[0])
    with pytest.raises(IndexError):
        ds[index]


def test_iteration_stops(shard_dir):
    """Does iterating over the dataset yield each frame once and stop?"""
    directory, frames, _ = shard_dir
    ds = ShardDataset(directory)
    seen = list(itertools.islice(ds, len(ds) + 5))  # capped: a wrap-around bug would never stop
    assert len(seen) == len(ds)
    np.testing.assert_array_equal(np.stack(seen), frames)


def test_array_index_out_of_range(shard_dir):
    """Is an IndexError raised for an index array reaching past the end?"""
    ds = ShardDataset(shard_dir[0])
    with pytest.raises(IndexError):
        ds[np.array([0, 60])]


def test_actions_round_trip(shard_dir):
    """Does ``actions(i)`` return the actions saved beside shard i?"""
    directory, _, actions = shard_dir
    ds = ShardDataset(directory)
    for i, a in enumerate(actions):
        got = ds.actions(i)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, a)


def test_missing_actions(tmp_path):
    """Is a ShardError raised when a shard has no actions file?"""
    save_shard(tmp_path / "a.npy", numbered_frames(4))
    with pytest.raises(ShardError, match=r"a\.actions\.npy"):
        ShardDataset(tmp_path).actions(0)


def test_shards_are_memory_mapped(shard_dir):
    """Are the shards opened as read-only memory maps, not loaded?"""
    ds = ShardDataset(shard_dir[0])
    assert all(isinstance(a, np.memmap) for a in ds.arrays)
    assert all(a.mode == "r" for a in ds.arrays)


def test_batch_read_is_lazy(tmp_path):
    """Does reading 64 frames of a 49 MB shard allocate about the batch, not the file?"""
    path = tmp_path / "big.npy"
    big = open_memmap(path, mode="w+", dtype=np.uint8, shape=(4000, 64, 64, 3))
    for start in range(0, 4000, 1000):
        big[start : start + 1000] = numbered_frames(1000, start)
    big.flush()
    del big
    assert path.stat().st_size > 49_000_000

    index = np.sort(np.random.default_rng(0).choice(4000, 64, replace=False))
    tracemalloc.start()
    try:
        ds = ShardDataset(path)
        ds[index[::-1].copy()]  # first call: numpy's one-off lazy setup is not what we measure
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        batch = ds[index]
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert isinstance(ds.arrays[0], np.memmap)
    assert batch.nbytes <= peak, "tracemalloc did not see the batch: the measurement is broken"
    assert peak < 2_000_000, f"reading 64 frames allocated {peak} bytes"
    np.testing.assert_array_equal(batch, numbered_frames(4000)[index])


def test_weighted_sampling(shard_dir):
    """With weights [0.5, 0.4, 0.1], do ~50%, 40% and 10% of 20000 indices come from each shard?"""
    ds = ShardDataset(shard_dir[0], weights=[5, 4, 1])
    np.testing.assert_allclose(ds.weights, [0.5, 0.4, 0.1])
    index = ds.sample_indices(20_000, seed=0)
    assert index.shape == (20_000,) and (np.diff(index) >= 0).all()
    shard, _ = ds.locate(index)
    fractions = np.bincount(shard, minlength=3) / len(index)
    np.testing.assert_allclose(fractions, [0.5, 0.4, 0.1], atol=0.02)
    # Within a shard, every frame can be drawn.
    assert set(index[shard == 1].tolist()) == set(range(30, 40))


def test_weighted_sampling_two_shards(tmp_path):
    """With two shards weighted [0.8, 0.2], do 80% +- 2% of 20000 draws come from shard 0?"""
    save_shard(tmp_path / "a.npy", numbered_frames(10))
    save_shard(tmp_path / "b.npy", numbered_frames(50, 10))
    ds = ShardDataset(tmp_path, weights=[0.8, 0.2])
    index = ds.sample_indices(20_000, seed=1)
    assert abs((index < 10).mean() - 0.8) < 0.02


def test_default_weights_follow_length(shard_dir):
    """Are the default weights proportional to shard length (uniform over frames)?"""
    ds = ShardDataset(shard_dir[0])
    np.testing.assert_allclose(ds.weights, [0.5, 1 / 6, 1 / 3])
    counts = np.bincount(ds.sample_indices(30_000, seed=2), minlength=60)
    assert counts.min() > 0.7 * 500 and counts.max() < 1.3 * 500


def test_sampling_seeded(shard_dir):
    """Does the same seed draw the same indices, and another seed others?"""
    ds = ShardDataset(shard_dir[0])
    np.testing.assert_array_equal(ds.sample_indices(100, seed=4), ds.sample_indices(100, seed=4))
    assert not np.array_equal(ds.sample_indices(100, seed=4), ds.sample_indices(100, seed=5))


@pytest.mark.parametrize("weights", [[1, 2], [1, -1, 1], [0, 0, 0]])
def test_bad_weights(shard_dir, weights):
    """Is a ValueError raised for the wrong number of weights, a negative weight or all zeros?"""
    with pytest.raises(ValueError, match="weight"):
        ShardDataset(shard_dir[0], weights=weights)


def test_split_by_shard(tmp_path):
    """With several shards, are train and val disjoint, complete, and made of whole shards?"""
    for k in range(5):
        save_shard(tmp_path / f"s{k}.npy", numbered_frames(10 + k, 100 * k))
    ds = ShardDataset(tmp_path)
    train, val = ds.split(val_fraction=0.4, seed=0)
    assert isinstance(train, FrameSubset) and isinstance(val, FrameSubset)
    assert set(train.indices).isdisjoint(val.indices)
    assert sorted([*train.indices, *val.indices]) == list(range(len(ds)))
    val_shards = set(ds.locate(val.indices)[0].tolist())
    train_shards = set(ds.locate(train.indices)[0].tolist())
    assert len(val_shards) == 2 and val_shards.isdisjoint(train_shards)
    for s in val_shards:  # whole shards only
        assert (ds.locate(val.indices)[0] == s).sum() == ds.lengths[s]
    # Same seed, same split.
    np.testing.assert_array_equal(ds.split(0.4, seed=0)[1].indices, val.indices)


def test_split_single_shard(tmp_path):
    """With one shard, is the split by frame, disjoint and complete?"""
    save_shard(tmp_path / "only.npy", numbered_frames(50))
    ds = ShardDataset(tmp_path / "only.npy")
    train, val = ds.split(val_fraction=0.2, seed=0)
    assert len(val) == 10 and len(train) == 40
    assert sorted([*train.indices, *val.indices]) == list(range(50))
    assert val.shape == (10, 64, 64, 3)
    np.testing.assert_array_equal(val[np.arange(10)], numbered_frames(50)[val.indices])
    np.testing.assert_array_equal(val[2], numbered_frames(50)[val.indices[2]])
    np.testing.assert_array_equal(val[1:4], numbered_frames(50)[val.indices[1:4]])
    with pytest.raises(ValueError):
        ds.split(val_fraction=0)


def test_shard_list_argument(shard_dir):
    """Does a list of shard paths work like the directory, in the given order?"""
    directory, frames, _ = shard_dir
    ds = ShardDataset([directory / "shard_1.npy", directory / "shard_0.npy"])
    np.testing.assert_array_equal(ds[0:10], frames[30:40])
    np.testing.assert_array_equal(ds[10:40], frames[0:30])


# --- broken shards --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"this is not a numpy file" * 20, b"", b"\x93NUMPY"],
    ids=["garbage", "empty", "bare-magic"],
)
def test_corrupt_shard(tmp_path, content):
    """Is a ShardError naming the file raised for a corrupt .npy file?"""
    save_shard(tmp_path / "good.npy", numbered_frames(3))
    (tmp_path / "broken_shard.npy").write_bytes(content)
    with pytest.raises(ShardError, match=r"broken_shard\.npy"):
        ShardDataset(tmp_path)


def test_truncated_shard(tmp_path):
    """Is a ShardError naming the file raised for a shard cut short (interrupted write)?"""
    path = save_shard(tmp_path / "cut.npy", numbered_frames(20))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ShardError, match=r"cut\.npy"):
        open_shard(path)


@pytest.mark.parametrize(
    ("array", "name"),
    [
        (np.zeros((4, 64, 64, 3), dtype=np.float32), "float_shard.npy"),
        (np.zeros((4, 32, 32, 3), dtype=np.uint8), "small_shard.npy"),
        (np.zeros((4, 3, 64, 64), dtype=np.uint8), "chw_shard.npy"),
    ],
)
def test_wrong_array_shard(tmp_path, array, name):
    """Is a ShardError naming the file raised for a shard of the wrong dtype or shape?"""
    np.save(tmp_path / name, array)
    with pytest.raises(ShardError, match=name.replace(".", r"\.")):
        ShardDataset(tmp_path)


def test_empty_directory(tmp_path):
    """Is a ShardError raised for a directory without shards?"""
    with pytest.raises(ShardError, match=r"no \.npy shards"):
        ShardDataset(tmp_path)


def test_save_shard_validates(tmp_path):
    """Does save_shard refuse bad frames, mismatched actions and non-.npy names?"""
    with pytest.raises(ShardError):
        save_shard(tmp_path / "f.npy", np.zeros((2, 64, 64, 3), dtype=np.float32))
    with pytest.raises(ShardError, match="actions"):
        save_shard(tmp_path / "f.npy", numbered_frames(2), np.zeros((3, 1)))
    with pytest.raises(ShardError, match=r"\.npy"):
        save_shard(tmp_path / "f.npz", numbered_frames(2))
    assert not list(tmp_path.iterdir())


# --- training from shards -------------------------------------------------------------------


def test_fit_on_shard_dataset(tmp_path, cartpole_frames):
    """Does fit train on a ShardDataset and validate on a FrameSubset of it?"""
    save_shard(tmp_path / "a.npy", cartpole_frames[:40])
    save_shard(tmp_path / "b.npy", cartpole_frames[40:64])
    ds = ShardDataset(tmp_path)
    train, val = ds.split(val_fraction=0.5, seed=0)
    torch.manual_seed(0)
    history = fit(SmallVAE(z_size=4, width=8), ds, val, num_epochs=1, batch_size=16, max_steps=3,
                  device="cpu", progress=False)
    assert history.steps == 3 and np.isfinite(history.train[-1]["loss"])
    assert history.val and np.isfinite(history.val[-1]["mse"])
    torch.manual_seed(0)
    history = fit(SmallVAE(z_size=4, width=8), train, num_epochs=1, batch_size=16,
                  device="cpu", progress=False)
    assert history.steps == -(-len(train) // 16)


def test_fit_shards_same_as_array(tmp_path, cartpole_frames):
    """Does training on shards give the same losses as training on the same frames in memory?"""
    frames = cartpole_frames[:48]
    save_shard(tmp_path / "a.npy", frames[:20])
    save_shard(tmp_path / "b.npy", frames[20:])
    runs = []
    for data in (frames, ShardDataset(tmp_path)):
        torch.manual_seed(0)
        history = fit(SmallVAE(z_size=4, width=8), data, num_epochs=1, batch_size=16,
                      device="cpu", progress=False)
        runs.append([h["loss"] for h in history.train])
    assert runs[0] == runs[1]
