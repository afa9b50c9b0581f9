"""Do the shipped pretrained checkpoints load, pass their checks and reconstruct frames they never saw?

Every checkpoint in ``course_lib/pretrained`` is loaded through :func:`course_lib.pretrained.load`
(its SHA-256 and architecture checked against its card) and scored on a few rollouts recorded
here with seeds that no checkpoint was trained on. Kept to seconds: short rollouts, one forward pass.
"""

from __future__ import annotations

import json
import shutil
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import pretrained
from course_lib.data import record_rollouts
from course_lib.envs import BrownNoisePolicy, make_env
from course_lib.models import SmallVAE
from course_lib.pretrained.cards import BEGIN, END, render_card, render_cards
from course_lib.probe import CAR_RACING_TARGETS, car_racing_state, car_racing_states
from course_lib.train import evaluate, mean_image_baseline

ROOT = Path(__file__).resolve().parents[1]
NAMES = pretrained.available()
SMALL = [name for name in NAMES if name.startswith("small_vae_")]
#: Fresh rollouts per environment: (episodes, most steps, policy). CarRacing's first ~50 frames are its zoom-in.
FRESH = {
    "CarRacing-v3": (2, 90, "brown"),
    "CartPole-v1": (8, 100, "random"),
    "Pendulum-v1": (2, 80, "random"),
    "Acrobot-v1": (1, 150, "random"),
    "MountainCar-v0": (2, 80, "random"),
}
#: Seeds no checkpoint was trained on (the cards list theirs).
FRESH_SEED = 900_001


def test_the_course_ships_its_checkpoints() -> None:
    """Does the package hold the World Models ConvVAE and one SmallVAE per classic-control environment?"""
    assert set(NAMES) == {
        "conv_vae_carracing",
        "small_vae_cartpole",
        "small_vae_pendulum",
        "small_vae_acrobot",
        "small_vae_mountaincar",
    }


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_loads_checked_in_eval_mode_and_float32(name: str) -> None:
    """Does ``load`` return an eval-mode float32 model whose file has its card's hash, size and parameters?"""
    info = pretrained.card(name)
    path = pretrained.verify(name)
    assert path.stat().st_size == info["checkpoint"]["bytes"]
    model = pretrained.load(name)
    assert not model.training
    parameters = {k.removeprefix("scripted."): v for k, v in model.named_parameters()}
    assert {k: list(v.shape) for k, v in parameters.items()} == info["architecture"]["parameters"]
    assert all(p.dtype == torch.float32 for p in parameters.values())
    assert sum(p.numel() for p in parameters.values()) == info["architecture"]["n_parameters"]
    z_size = info["architecture"]["kwargs"]["z_size"]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        x_hat = model.decode(mu)
    assert mu.shape == logvar.shape == (2, z_size)
    assert x_hat.shape == (2, 3, 64, 64) and 0.0 <= float(x_hat.min()) <= float(x_hat.max()) <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_beats_the_mean_image_on_fresh_rollouts(name: str) -> None:
    """On rollouts recorded now with an unseen seed, is the reconstruction error below that of the
    frames' own mean image (a baseline stronger than the card's, whose mean comes from other frames)?"""
    env_id = pretrained.card(name)["data"]["env_id"]
    n, steps, policy = FRESH[env_id]
    rollouts = record_rollouts(env_id, n, max_steps=steps, policy=policy, seed=FRESH_SEED, progress=False)
    frames = np.concatenate([r.frames for r in rollouts])
    model = pretrained.load(name)
    torch.manual_seed(0)  # the ConvVAE's forward samples z
    mse = evaluate(model, frames)["mse"]
    baseline = mean_image_baseline(frames, frames)
    assert mse < baseline, f"{name}: MSE {mse:.5f} on fresh {env_id} frames, mean image of those frames {baseline:.5f}"


def _copy(name: str, directory: Path) -> Path:
    """Copy checkpoint ``name`` and its card into ``directory``; the copied checkpoint's path."""
    info = pretrained.card(name)
    shutil.copy(pretrained.DIRECTORY / f"{name}.json", directory / f"{name}.json")
    return Path(shutil.copy(pretrained.checkpoint_path(name), directory / info["checkpoint"]["file"]))


@pytest.mark.parametrize("name", ["conv_vae_carracing", "small_vae_cartpole"])
def test_a_corrupted_copy_is_refused_naming_the_file(name: str, tmp_path: Path) -> None:
    """Is a checkpoint with one byte changed refused with a ChecksumError that names the file?"""
    path = _copy(name, tmp_path)
    assert pretrained.load(name, directory=tmp_path) is not None  # the intact copy loads
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(pretrained.ChecksumError, match=str(path)):
        pretrained.load(name, directory=tmp_path)
    path.unlink()
    with pytest.raises(pretrained.ChecksumError, match="missing"):
        pretrained.load(name, directory=tmp_path)


def test_a_replaced_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    """Is a checkpoint whose card was re-hashed but whose parameters changed shape refused, naming them?"""
    path = _copy("small_vae_pendulum", tmp_path)
    torch.save({k: v.half() for k, v in SmallVAE(z_size=8, width=16).state_dict().items()}, path)
    card_path = tmp_path / "small_vae_pendulum.json"
    card = json.loads(card_path.read_text())
    card["checkpoint"]["sha256"] = pretrained.sha256(path)
    card_path.write_text(json.dumps(card))
    with pytest.raises(pretrained.ArchitectureError, match=r"fc_mu\.weight \[8, 2048\] \(card: \[16, 2048\]\)"):
        pretrained.load("small_vae_pendulum", directory=tmp_path)


def test_an_unknown_name_is_refused_listing_the_available_ones() -> None:
    """Does asking for a checkpoint that does not exist say which ones do?"""
    with pytest.raises(pretrained.UnknownCheckpointError, match="small_vae_cartpole"):
        pretrained.load("conv_vae_cartpole")


@pytest.mark.parametrize("name", SMALL)
def test_is_shipped_names_a_shipped_small_vae(name: str) -> None:
    """Does ``is_shipped`` name a shipped SmallVAE's weights, also after a tiny change, and only those?"""
    state = pretrained.load(name).state_dict()
    assert pretrained.is_shipped(state) == name
    g = torch.Generator().manual_seed(1)
    nudged = {k: v + 1e-4 * v.abs().mean() * torch.randn(v.shape, generator=g) for k, v in state.items()}
    assert pretrained.is_shipped(nudged) == name


def test_is_shipped_ignores_models_trained_elsewhere() -> None:
    """Are a fresh SmallVAE (even with a shipped one's background), one of another size and the ConvVAE's
    weights none of the shipped SmallVAEs?"""
    torch.manual_seed(0)
    fresh = SmallVAE(z_size=16, width=16).state_dict()
    assert pretrained.is_shipped(fresh) is None
    fresh["background"] = pretrained.load("small_vae_cartpole").state_dict()["background"].clone()
    assert pretrained.is_shipped(fresh) is None
    assert pretrained.is_shipped(SmallVAE(z_size=8, width=16).state_dict()) is None
    assert pretrained.is_shipped(pretrained.load("conv_vae_carracing").state_dict()) is None


def test_the_conv_vae_ships_without_its_python_source() -> None:
    """Is the ConvVAE a TorchScript archive without debug records (which quote the source) or the solutions' name?"""
    path = pretrained.verify("conv_vae_carracing")
    names = zipfile.ZipFile(path).namelist()
    assert not [n for n in names if n.endswith(".debug_pkl")]
    blob = path.read_bytes()
    assert b"solutions" not in blob and b"def forward(self, x: torch.Tensor)" not in blob
    model = pretrained.load("conv_vae_carracing")
    assert isinstance(model.scripted, torch.jit.ScriptModule) and model.z_size == 32
    assert not any(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())
    assert not hasattr(pretrained, "ConvVAE")


@pytest.mark.parametrize("name", NAMES)
def test_card_says_what_the_checkpoint_is_and_how_to_rebuild_it(name: str) -> None:
    """Does each card give its data, training, a validation MSE below the baseline, probe R^2 and the command?"""
    info = pretrained.card(name)
    data, training, evaluation = info["data"], info["training"], info["evaluation"]
    assert data["frames"] > 0 and data["val_rollouts"] >= 1 and data["crop"]
    assert training["epochs"] >= 1 and training["steps"] >= 1 and training["wall_time_s"] > 0 and training["hardware"]
    assert evaluation["val_mse"] < evaluation["baseline_mse"]
    assert info["probe"]["r2"] and info["probe"]["method"]
    assert info["reproduce"] == f"python -m course_lib.pretrained.build {name} --out DIR"
    assert f"### `{name}`" in render_card(info)


def test_conv_vae_card_meets_the_world_models_recipe() -> None:
    """Did the ConvVAE see at least 100 brown-noise rollouts and 50,000 frames for at least 10 epochs of batch 100?"""
    info = pretrained.card("conv_vae_carracing")
    assert info["data"]["rollouts"] >= 100 and info["data"]["frames"] >= 50_000
    assert info["data"]["policy"] == "brown-noise"
    assert info["training"]["epochs"] >= 10 and info["training"]["batch_size"] == 100
    assert info["training"]["kl_tolerance"] == 0.5 and info["architecture"]["kwargs"]["z_size"] == 32
    assert "course_lib.train_vae" in info["training"]["command"]


def test_car_racing_states_are_those_of_the_rendered_rollout() -> None:
    """Are CarRacing's probe targets, replayed without rendering, those of stepping the rendering
    environment, starting on the centre line and facing along the track?"""
    env = make_env("CarRacing-v3", seed=FRESH_SEED)
    policy = BrownNoisePolicy(env.action_space, seed=0)
    actions = np.stack([policy() for _ in range(30)])  # float32 (30, 3)
    stepped = []
    env.reset(seed=FRESH_SEED)
    for action in actions:
        stepped.append(car_racing_state(env))
        env.step(action)
    env.close()
    replayed = car_racing_states(FRESH_SEED, actions)
    for name in CAR_RACING_TARGETS:
        np.testing.assert_array_equal(replayed[name], [state[name] for state in stepped])
    assert replayed["heading_cos"][0] > 0.99 and abs(replayed["lateral_offset"][0]) < 0.5
    assert replayed["speed"][-1] > 0


def test_the_docs_show_the_cards_as_rendered() -> None:
    """Is the generated part of docs/pretrained.md exactly ``render_cards()`` (so it cannot drift from the cards)?"""
    text = (ROOT / "docs" / "pretrained.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert render_cards() in text


def test_the_checkpoints_are_package_data() -> None:
    """Does pyproject.toml declare the checkpoints and cards as package data, so that they ship in the wheel?"""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["course_lib.pretrained"]
    assert {"*.pt", "*.json"} <= set(patterns)
