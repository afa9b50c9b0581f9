"""The fast paths give the same results as the plain ones.

- Collection: frames played first and rendered later by replaying (in worker processes) equal
  the frames rendered while playing, bit for bit, for the same seed.
- Shards: batches read with ``os.preadv`` equal memory-map indexing, and do not stay resident.
- Training: ``fit`` matches a plain PyTorch loop; ``precision="bfloat16"`` and
  ``"bfloat16-channels-last"`` match float32 within a tolerance; ``precision="auto"`` gives exactly
  the losses of the path it picks (its measurement leaves the model and generators alone).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import data
from course_lib.data import ShardDataset, record_rollouts, sample_frames, save_shard
from course_lib.frames import to_tensor
from course_lib.losses import vae_loss
from course_lib.models import SmallVAE
from course_lib.precision import PRECISIONS
from course_lib.solutions.conv_vae import ConvVAE
from course_lib.train import _batches, fit


@pytest.fixture
def parallel(monkeypatch):
    """Render in two worker processes even for small collections."""
    monkeypatch.setattr(data, "PARALLEL_MIN_FRAMES", 1)
    monkeypatch.setenv("COURSE_WORKERS", "2")


def assert_rollouts_equal(fast, slow):
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.observations, b.observations)


@pytest.mark.parametrize(
    ("env_id", "n", "max_steps", "policy"),
    [
        ("CartPole-v1", 6, 500, "random"),
        ("Pendulum-v1", 2, 60, "random"),
        ("Acrobot-v1", 1, 40, "random"),
        ("MountainCar-v0", 1, 40, "random"),
        ("CarRacing-v3", 2, 40, "brown"),
    ],
)
def test_record_rollouts_same_as_rendering_while_playing(parallel, env_id, n, max_steps, policy):
    """Do replayed, parallel-rendered rollouts equal the serial ones (frames, actions, observations)?"""
    fast = record_rollouts(env_id, n, max_steps=max_steps, policy=policy, seed=7, progress=False)
    slow = data._record_rollouts_serial(env_id, n, max_steps, policy, 7, env_id, False)
    assert_rollouts_equal(fast, slow)


def test_record_rollouts_in_process_same(monkeypatch):
    """With one worker (rendering in this process) are the rollouts the same too?"""
    monkeypatch.setenv("COURSE_WORKERS", "1")
    monkeypatch.setattr(data, "PARALLEL_MIN_FRAMES", 1)
    fast = record_rollouts("CartPole-v1", 3, max_steps=100, seed=1, progress=False)
    assert_rollouts_equal(fast, data._record_rollouts_serial("CartPole-v1", 3, 100, "random", 1, "CartPole-v1", False))


def test_no_processes_falls_back_to_this_process(parallel, monkeypatch):
    """When worker processes cannot start (e.g. a sandbox's process limit), are the frames still rendered?"""

    def refuse(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(data, "ProcessPoolExecutor", refuse)
    fast = record_rollouts("CartPole-v1", 2, max_steps=50, seed=0, progress=False)
    assert_rollouts_equal(fast, data._record_rollouts_serial("CartPole-v1", 2, 50, "random", 0, "CartPole-v1", False))


def test_sample_frames_same_as_serial(parallel):
    """Are sampled frames (cut mid-episode, segments split across workers) those of the serial loop?"""
    fast = sample_frames("CartPole-v1", 230, seed=4, progress=False)
    slow = data._sample_frames_serial("CartPole-v1", 230, 4, "random", "CartPole-v1", False)
    np.testing.assert_array_equal(fast, slow)


def test_long_episode_split_into_segments(parallel, monkeypatch):
    """Is an episode rendered in several segments (replayed up to each start) still the same?"""
    fast = record_rollouts("Pendulum-v1", 1, max_steps=180, seed=2, progress=False)
    assert len(fast[0]) == 180  # more than one 50-frame segment
    assert_rollouts_equal(fast, data._record_rollouts_serial("Pendulum-v1", 1, 180, "random", 2, "Pendulum-v1", False))


def test_car_racing_segments_skip_drawing(parallel):
    """Do CarRacing segments that start mid-episode (physics-only fast-forward) give the same frames?"""
    fast = record_rollouts("CarRacing-v3", 1, max_steps=120, policy="random", seed=0, progress=False)
    slow = data._record_rollouts_serial("CarRacing-v3", 1, 120, "random", 0, "CarRacing-v3", False)
    assert_rollouts_equal(fast, slow)


def test_callable_policy_on_pixels_falls_back():
    """Does a CarRacing policy that may read the image use the serial path (and still work)?"""
    assert not data._replayable("CarRacing-v3", lambda obs: np.zeros(3, np.float32))
    assert data._replayable("CarRacing-v3", "brown") and data._replayable("CartPole-v1", lambda obs: 0)
    assert not data._replayable("LunarLander-v3", "random")


# --- shards --------------------------------------------------------------------------------


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (90, 64, 64, 3), dtype=np.uint8)
    for k, (a, b) in enumerate([(0, 40), (40, 45), (45, 90)]):
        save_shard(tmp_path / f"s{k}.npy", frames[a:b])
    return ShardDataset(tmp_path), frames


@pytest.mark.parametrize(
    "index",
    [
        np.arange(90),
        np.array([5, 6, 7, 41, 42, 80]),
        np.array([80, 3, 3, 44, 2, 81, 82, 0]),  # unsorted, repeated, across shards
        np.array([89]),
    ],
)
def test_preadv_reads_equal_memory_map(shards, index):
    """Does a batch read with preadv equal fancy indexing of the frames?"""
    ds, frames = shards
    np.testing.assert_array_equal(ds[index], frames[index])
    np.testing.assert_array_equal(ds[10:50:3], frames[10:50:3])
    np.testing.assert_array_equal(ds[44], frames[44])


def _rss_file_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssFile:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def test_full_pass_does_not_stay_resident(tmp_path):
    """After reading a 49 MB shard batch by batch, has the process's file-backed RSS grown by < 10 MB?"""
    if _rss_file_kb() is None:
        pytest.skip("needs /proc/self/status (Linux)")
    save_shard(tmp_path / "big.npy", np.full((4000, 64, 64, 3), 9, dtype=np.uint8))
    ds = ShardDataset(tmp_path)
    before = _rss_file_kb()
    for start in range(0, 4000, 100):
        ds[np.arange(start, start + 100)]
    assert _rss_file_kb() - before < 10_000


# --- training ------------------------------------------------------------------------------


def plain_loop(model, frames, steps, batch_size, lr, seed, kl_tolerance=0.0):
    """The straightforward loop: contiguous float batches, Adam, the VAE loss; fit's batch order."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for index in _batches(len(frames), batch_size, np.random.default_rng(seed))[:steps]:
        x = to_tensor(frames[index]).contiguous()  # (B, 3, 64, 64), plain NCHW
        x_hat, mu, logvar = model(x)
        loss = vae_loss(x, x_hat, mu, logvar, kl_tolerance=kl_tolerance)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_fit_matches_plain_loop(cartpole_frames):
    """Are fit's losses over 8 ConvVAE steps, with the model's weights and input channels-last and Adam's
    fused kernel, those of a plain PyTorch loop on NCHW tensors with the default Adam (to float32 rounding)?"""
    from course_lib.step import adam

    assert adam(ConvVAE().parameters(), 1e-4, torch.device("cpu")).defaults["fused"]  # what fit uses on a CPU
    torch.manual_seed(0)
    reference = ConvVAE()
    a, b = ConvVAE(), ConvVAE()
    a.load_state_dict(reference.state_dict())
    b.load_state_dict(reference.state_dict())
    history = fit(
        a, cartpole_frames, batch_size=32, lr=1e-4, kl_tolerance=0.5, max_steps=8, seed=0, device="cpu", progress=False
    )
    plain = plain_loop(b, cartpole_frames, 8, 32, 1e-4, 0, kl_tolerance=0.5)
    np.testing.assert_allclose([h["loss"] for h in history.train], plain, rtol=1e-4)
    assert a.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)  # fit's default path ran


@pytest.mark.parametrize("model_fn", [ConvVAE, lambda: SmallVAE(z_size=8, width=8)], ids=["ConvVAE", "SmallVAE"])
def test_bfloat16_matches_float32(cartpole_frames, model_fn):
    """Do bf16-autocast losses over 12 steps, on NCHW and on channels-last input, stay within 3% of
    float32's, and validation within 3%?"""
    runs = {}
    for precision in PRECISIONS:
        torch.manual_seed(0)
        model = model_fn()
        runs[precision] = fit(
            model,
            cartpole_frames[:192],
            cartpole_frames[192:],
            batch_size=32,
            lr=1e-3,
            max_steps=12,
            seed=0,
            device="cpu",
            progress=False,
            precision=precision,
        )
        assert runs[precision].precision == precision
    f32 = [h["loss"] for h in runs["float32"].train]
    for precision in ("bfloat16", "bfloat16-channels-last"):
        np.testing.assert_allclose([h["loss"] for h in runs[precision].train], f32, rtol=0.03, err_msg=precision)
        assert runs[precision].val[-1]["mse"] == pytest.approx(runs["float32"].val[-1]["mse"], rel=0.03)


def test_bfloat16_with_custom_loss(cartpole_frames):
    """Does a user's loss_fn run under bf16 autocast and still return float32 terms?"""

    def loss_fn(model, x):
        x_hat = model(x)[0]
        return {"loss": (x - x_hat).pow(2).mean()}

    torch.manual_seed(0)
    history = fit(
        SmallVAE(z_size=4, width=8),
        cartpole_frames[:64],
        loss_fn=loss_fn,
        batch_size=32,
        max_steps=2,
        device="cpu",
        progress=False,
        precision="bfloat16",
    )
    assert len(history.train) == 2 and np.isfinite(history.train[-1]["loss"])


@pytest.mark.parametrize("winner", list(PRECISIONS))
def test_auto_precision_same_losses_as_the_path_it_picks(cartpole_frames, monkeypatch, winner):
    """Does fit(precision="auto"), after real trial steps of every path on a copy, give exactly the
    losses and weights of a fit started with the path it picked (the trial changed neither the model
    nor the random generators), and report the choice and the rates?"""
    from course_lib import precision as precision_module

    real_step = precision_module._timed_step

    def winner_fastest(model, optimizer, frames, precision, loss_fn, device):
        real_step(model, optimizer, frames, precision, loss_fn, device)  # the real work, on the copy
        return 0.01 if precision == PRECISIONS[winner] else 0.015  # all within the screening margin

    monkeypatch.setattr(precision_module, "_timed_step", winner_fastest)
    monkeypatch.setattr(precision_module.cpu, "fast_bfloat16", lambda cpuinfo=None: True)  # try bfloat16 on any CPU
    monkeypatch.setattr(precision_module.cpu, "native_bfloat16", lambda cpuinfo=None: False)  # screen, on any CPU
    monkeypatch.setattr(precision_module, "TRIAL_MIN_STEPS", 0)  # measure even this short run
    monkeypatch.setattr(precision_module, "_PRECISION_CHOICES", {})
    runs, models = [], []
    for precision in ("auto", winner):
        torch.manual_seed(0)
        models.append(SmallVAE(z_size=4, width=8))
        runs.append(
            fit(
                models[-1],
                cartpole_frames[:96],
                batch_size=16,
                max_steps=12,
                seed=0,
                device="cpu",
                progress=False,
                precision=precision,
            )
        )
    auto, plain = runs
    trial = auto.precision_trial
    assert auto.precision == trial["chosen"] == winner and trial["reason"] == "measured"
    assert set(trial["screen_images_per_s"]) == set(trial["images_per_s"]) == set(PRECISIONS)
    assert trial["images_per_s"][winner] == 1600.0  # 16 frames in 0.01 s
    assert trial["errors"] == {} and trial["seconds"] > 0
    assert [h["loss"] for h in auto.train] == [h["loss"] for h in plain.train]
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_unknown_precision_rejected(small_frames):
    """Is an unknown precision a ValueError naming the choices?"""
    with pytest.raises(ValueError, match="bfloat16"):
        fit(SmallVAE(z_size=4, width=8), small_frames, precision="float16", progress=False)


def evaluate_two_passes(model, frames, batch_size=256):
    """The previous evaluate: the loss, then a second forward pass for the reconstruction."""
    from course_lib.losses import per_pixel_mse
    from course_lib.train import make_vae_loss, unpack

    loss_fn, totals = make_vae_loss(), {}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            x = to_tensor(frames[start : start + batch_size])
            terms = loss_fn(model, x)
            terms = {**terms, "mse": per_pixel_mse(x, unpack(model(x))[0])}
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value) * x.shape[0]
    return {key: value / len(frames) for key, value in totals.items()}


@pytest.mark.parametrize("model_fn", [ConvVAE, lambda: SmallVAE(z_size=8, width=8)], ids=["ConvVAE", "SmallVAE"])
def test_evaluate_same_as_two_passes(cartpole_frames, model_fn):
    """Does evaluate (one pass where the model is deterministic) give the same scores and leave the
    random generator where two passes left it?"""
    from course_lib.train import evaluate

    torch.manual_seed(0)
    model = model_fn()
    torch.manual_seed(1)
    fast = evaluate(model, cartpole_frames[:300], batch_size=128)
    after_fast = torch.get_rng_state()
    torch.manual_seed(1)
    slow = evaluate_two_passes(model, cartpole_frames[:300], batch_size=128)
    assert torch.equal(after_fast, torch.get_rng_state())
    assert fast == slow


def test_evaluate_runs_a_deterministic_model_once_per_batch(cartpole_frames):
    """Does evaluate reuse the loss's forward pass for a model that draws no random numbers in eval mode?"""
    from course_lib.train import evaluate

    model = SmallVAE(z_size=4, width=8)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    evaluate(model, cartpole_frames[:200], batch_size=64)
    assert len(calls) == 4  # 200 frames in batches of 64
