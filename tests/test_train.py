"""``fit``, evaluation, the mean-image baseline, checkpoints, devices and workload budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.frames import to_tensor
from course_lib.models import SmallVAE
from course_lib.train import (
    History,
    NonFiniteLossError,
    budget,
    evaluate,
    fit,
    get_device,
    load_checkpoint,
    make_vae_loss,
    mean_image_baseline,
    quick,
    save_checkpoint,
    seed_everything,
    unpack,
)

FIT = {"batch_size": 16, "seed": 0, "device": "cpu", "progress": False}


def small_model(seed: int = 0) -> SmallVAE:
    torch.manual_seed(seed)
    return SmallVAE(z_size=4, width=8)


def assert_state_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_optimizer_state_equal(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index, state in a["state"].items():
        for key, value in state.items():
            other = b["state"][index][key]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), (index, key)


def test_history_lengths(small_frames):
    """Does fit log one entry per step and one validation entry per epoch?"""
    train, val = small_frames[:48], small_frames[48:]
    history = fit(small_model(), train, val, num_epochs=2, **FIT)
    assert history.steps == 6 and len(history.train) == 6  # 48 frames / 16 per batch, 2 epochs
    assert history.epochs == 2
    assert [v["epoch"] for v in history.val] == [1, 2]
    assert [v["step"] for v in history.val] == [3, 6]
    assert {"loss", "recon", "kl", "kl_raw", "beta"} <= set(history.train[0])
    assert {"loss", "recon", "kl", "mse"} <= set(history.val[0])
    assert history.seconds > 0


def test_last_partial_batch_counts(small_frames):
    """Is a smaller last batch still a step (ceil(N / batch_size) steps per epoch)?"""
    history = fit(small_model(), small_frames[:40], num_epochs=1, **FIT)
    assert history.steps == 3 and history.epochs == 1
    assert history.val == []


def test_max_steps_respected(small_frames):
    """Does fit stop after max_steps, mid-epoch, and still validate at the last step?"""
    train, val = small_frames[:48], small_frames[48:]
    history = fit(small_model(), train, val, num_epochs=5, max_steps=4, **FIT)
    assert history.steps == 4 and len(history.train) == 4
    assert history.epochs == 1
    assert [v["step"] for v in history.val] == [3, 4]


def test_seeded_fit_reproducible(small_frames):
    """Do two runs with the same seeds give identical losses and weights?"""
    runs = []
    for _ in range(2):
        model = small_model(seed=1)
        history = fit(model, small_frames, num_epochs=1, **FIT)
        runs.append((history.train, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert_state_equal(runs[0][1], runs[1][1])


def test_different_seed_differs(small_frames):
    """Does another shuffling seed give other losses?"""
    a = fit(small_model(), small_frames, num_epochs=1, **FIT)
    b = fit(small_model(), small_frames, num_epochs=1, **{**FIT, "seed": 1})
    assert [h["loss"] for h in a.train] != [h["loss"] for h in b.train]


def test_fit_leaves_eval_mode(small_frames):
    """Is the model left in eval mode after training?"""
    model = small_model()
    fit(model, small_frames[:16], **FIT)
    assert not model.training


def test_callable_beta(small_frames):
    """Is a callable beta evaluated at every step with (step, total_steps)?"""
    calls = []

    def beta(step: int, total: int) -> float:
        calls.append((step, total))
        return step / total

    history = fit(small_model(), small_frames[:48], num_epochs=2, beta=beta, **FIT)
    assert calls == [(s, 6) for s in range(6)]
    assert [h["beta"] for h in history.train] == [s / 6 for s in range(6)]


def test_checkpoint_round_trip(tmp_path, small_frames):
    """Do save_checkpoint and load_checkpoint restore weights, optimiser state and history?"""
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = make_vae_loss()
    for _ in range(2):
        optimizer.zero_grad()
        loss_fn(model, to_tensor(small_frames[:8]))["loss"].backward()
        optimizer.step()
    history = History(train=[{"loss": 1.0}], val=[], seconds=2.5, steps=2, epochs=0)
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", model, optimizer, history, note="x")
    assert path.exists() and not path.with_name("ckpt.pt.tmp").exists()

    fresh = small_model(seed=99)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    state = load_checkpoint(path, fresh, fresh_optimizer)
    assert_state_equal(fresh.state_dict(), model.state_dict())
    assert_optimizer_state_equal(fresh_optimizer.state_dict(), optimizer.state_dict())
    assert state["history"] == history
    assert state["extra"] == {"note": "x"}


def test_load_checkpoint_errors(tmp_path):
    """Are a missing file and weights of another architecture reported, naming the file?"""
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt", small_model())
    path = save_checkpoint(tmp_path / "wide.pt", SmallVAE(z_size=4, width=16))
    with pytest.raises(RuntimeError, match=r"wide\.pt"):
        load_checkpoint(path, small_model())


def test_resume_from_checkpoint(tmp_path, small_frames):
    """Does fit resume from its checkpoint: loaded weights, then only the missing epochs?"""
    train, val = small_frames[:48], small_frames[48:]
    path = tmp_path / "run.pt"
    first_model = small_model()
    first = fit(first_model, train, val, num_epochs=2, checkpoint_path=path, **FIT)
    assert first.epochs == 2 and first.steps == 6 and path.exists()

    # Asking for the epochs already done loads the weights and takes no step.
    again_model = small_model(seed=5)
    again = fit(again_model, train, val, num_epochs=2, checkpoint_path=path, **FIT)
    assert again.steps == 6 and again.train == first.train
    assert_state_equal(again_model.state_dict(), first_model.state_dict())

    resumed_model = small_model(seed=7)
    resumed = fit(resumed_model, train, val, num_epochs=3, checkpoint_path=path, **FIT)
    assert resumed.epochs == 3
    assert resumed.steps == 9 and len(resumed.train) == 9
    assert resumed.train[:6] == first.train
    assert [v["epoch"] for v in resumed.val] == [1, 2, 3]
    assert load_checkpoint(path, small_model())["history"].epochs == 3


def test_resumed_run_starts_from_trained_weights(tmp_path, small_frames):
    """Is the first resumed loss far below a fresh model's, like the last trained loss?"""
    path = tmp_path / "run.pt"
    first = fit(small_model(), small_frames, num_epochs=4, lr=3e-3, checkpoint_path=path, **FIT)
    resumed = fit(small_model(), small_frames, num_epochs=5, lr=3e-3, checkpoint_path=path, **FIT)
    fresh_loss = first.train[0]["loss"]
    last_loss = first.train[-1]["loss"]
    assert last_loss < 0.5 * fresh_loss
    assert resumed.train[len(first.train)]["loss"] < 0.5 * fresh_loss


class NaNModel(nn.Module):
    """Returns NaN reconstructions: the NaN guard must stop training."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x):
        b = x.shape[0]
        return x * self.weight * float("nan"), torch.zeros(b, 2), torch.zeros(b, 2)


def test_nan_loss_raises(small_frames):
    """Is NonFiniteLossError raised, naming the step, when the loss becomes NaN?"""
    with pytest.raises(NonFiniteLossError, match="step 0"):
        fit(NaNModel(), small_frames[:16], **FIT)


def test_inf_loss_raises_at_right_step(small_frames):
    """Is the guard triggered at the step where the loss first becomes infinite?"""
    calls = {"n": 0}

    def loss_fn(model, x):
        calls["n"] += 1
        terms = make_vae_loss()(model, x)
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("inf")
        return terms

    with pytest.raises(NonFiniteLossError, match="step 2"):
        fit(small_model(), small_frames, loss_fn=loss_fn, **FIT)


def test_evaluate_returns_mse(small_frames):
    """Does evaluate return the loss terms and the per-pixel MSE of the eval-mode model?"""
    model = small_model().train()
    scores = evaluate(model, small_frames, batch_size=50)  # batches of 50 and 14
    assert {"loss", "recon", "kl", "kl_raw", "mse"} <= set(scores)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        x = to_tensor(small_frames)
        x_hat = model(x)[0]
        expected = make_vae_loss()(model, x)
    assert scores["mse"] == pytest.approx(float(((x - x_hat) ** 2).mean()), rel=1e-5)
    assert scores["loss"] == pytest.approx(float(expected["loss"]), rel=1e-5)


def test_mean_image_baseline(small_frames):
    """Does mean_image_baseline equal the MSE of the mean training image, computed directly?"""
    train, val = small_frames[:40], small_frames[40:]
    mean_image = train.astype(np.float64).mean(axis=0) / 255.0
    expected = ((val.astype(np.float64) / 255.0 - mean_image) ** 2).mean()
    assert mean_image_baseline(train, val) == pytest.approx(expected, rel=1e-10)
    assert mean_image_baseline(train, train[:1].repeat(3, axis=0)) > 0
    same = np.repeat(val[:1], 5, axis=0)
    assert mean_image_baseline(same, same) == pytest.approx(0.0, abs=1e-12)


def test_get_device_cpu():
    """Is the CPU chosen on a machine without an accelerator, and ``prefer`` honoured?"""
    if torch.cuda.is_available():
        pytest.skip("an accelerator is present")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("an accelerator is present")
    assert get_device() == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, 100), ({"NBGRADER_EXECUTION": "autograde"}, 5), ({"COURSE_QUICK": "1"}, 5)],
    ids=["normal", "nbgrader", "course-quick"],
)
def test_budget(monkeypatch, env, expected):
    """Does budget pick the quick value while nbgrader grades or COURSE_QUICK is set?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("COURSE_QUICK", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert budget(100, 5) == expected
    assert quick() is (expected == 5)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((8, 64, 64, 3), dtype=np.float32),
        np.zeros((8, 64, 64), dtype=np.uint8),
        np.zeros((0, 64, 64, 3), dtype=np.uint8),
        [[1, 2, 3]],
    ],
    ids=["float", "grey", "empty", "list"],
)
def test_fit_rejects_bad_frames(frames):
    """Is a ValueError raised for frames that are not a non-empty uint8 (N, 64, 64, 3) array?"""
    with pytest.raises(ValueError, match="train_frames"):
        fit(small_model(), frames, **FIT)


def test_fit_rejects_bad_val_frames(small_frames):
    """Is a ValueError raised for bad validation frames before any training?"""
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="val_frames"):
        fit(model, small_frames, small_frames.astype(np.float32), **FIT)
    assert_state_equal(model.state_dict(), before)


def test_unpack():
    """Does unpack read both output conventions and reject others?"""
    a, b, c, d = (torch.full((1,), float(i)) for i in range(4))
    assert unpack((a, b, c)) == (a, b, c)
    assert unpack([a, b, c, d]) == (a, c, d)
    with pytest.raises(TypeError):
        unpack(a)
    with pytest.raises(TypeError):
        unpack((a, b))


def test_seed_everything():
    """Does seed_everything make numpy and torch draws repeatable?"""
    seed_everything(3)
    first = (np.random.rand(3), torch.rand(3))
    seed_everything(3)
    second = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


def test_unknown_precision_names_auto(small_frames):
    """Does the error for an unknown precision list "auto" among the choices?"""
    with pytest.raises(ValueError, match="'auto'"):
        fit(small_model(), small_frames, precision="fastest", **FIT)
