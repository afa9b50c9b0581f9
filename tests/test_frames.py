"""Crop presets, ``preprocess_frame``, ``to_tensor`` and ``to_frames`` (course_lib.frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.envs import ENV_IDS, PIXEL_OBSERVATION_ENVS, make_env
from course_lib.frames import CROPS, NO_CROP, Crop, is_blank, preprocess_frame, to_frames, to_tensor


def real_frame(env_id: str) -> np.ndarray:
    """One real frame of ``env_id``: the render, or CarRacing's 96x96 observation."""
    env = make_env(env_id, seed=0)
    try:
        if env_id in PIXEL_OBSERVATION_ENVS:
            observation, _ = env.reset(seed=0)
            return np.asarray(observation)
        return env.render()
    finally:
        env.close()


@pytest.fixture(scope="module", params=ENV_IDS)
def env_frame(request) -> tuple[str, np.ndarray]:
    return request.param, real_frame(request.param)


def test_real_frame_is_uint8_rgb(env_frame):
    """Is each environment's raw frame a uint8 RGB image of the documented size?"""
    env_id, frame = env_frame
    assert frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[2] == 3
    expected = {"CartPole-v1": (400, 600), "MountainCar-v0": (400, 600), "Pendulum-v1": (500, 500),
                "Acrobot-v1": (500, 500), "CarRacing-v3": (96, 96)}
    assert frame.shape[:2] == expected[env_id]


def test_preprocess_real_frame(env_frame):
    """Does the preset preprocessing of a real frame give a non-blank uint8 (64, 64, 3) image?"""
    env_id, frame = env_frame
    out = preprocess_frame(frame, env_id)
    assert out.dtype == np.uint8
    assert out.shape == (64, 64, 3)
    assert not is_blank(out)


def test_preprocess_is_deterministic(env_frame):
    """Does preprocessing the same frame twice give identical pixels, without changing the input?"""
    env_id, frame = env_frame
    before = frame.copy()
    np.testing.assert_array_equal(preprocess_frame(frame, env_id), preprocess_frame(frame, env_id))
    np.testing.assert_array_equal(frame, before)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_crop_preset_exists(env_id):
    """Has every course environment a crop preset that fits its frames?"""
    assert isinstance(CROPS[env_id], Crop)
    height, width = (96, 96) if env_id in PIXEL_OBSERVATION_ENVS else (400, 600)
    row0, row1, col0, col1 = CROPS[env_id].box(height, width)
    assert 0 <= row0 < row1 <= height and 0 <= col0 < col1 <= width


def test_cartpole_crop_box():
    """Does the CartPole crop keep rows 160-400 (40%-100%) and every column of a 400x600 render?"""
    assert CROPS["CartPole-v1"].box(400, 600) == (160, 400, 0, 600)


def test_carracing_crop_box():
    """Does the CarRacing crop keep rows 0-84 and every column of the 96x96 observation?"""
    assert CROPS["CarRacing-v3"].box(96, 96) == (0, 84, 0, 96)


def test_carracing_crop_drops_dashboard():
    """Is nothing of rows 84-96 (the dashboard) left after CarRacing preprocessing?"""
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    image[:84, :, 2] = 255  # blue track area
    image[84:, :, 0] = 255  # red dashboard
    out = preprocess_frame(image, "CarRacing-v3")
    assert out[..., 0].max() == 0
    assert out[..., 2].min() == 255
    # Without the crop the red rows do show up: the check above can fail.
    assert preprocess_frame(image, None)[..., 0].max() > 0


def test_cartpole_crop_drops_top_rows():
    """Are the rows above 40% of a CartPole render absent after preprocessing?"""
    image = np.zeros((400, 600, 3), dtype=np.uint8)
    image[:160, :, 1] = 255  # green sky, cropped away
    assert preprocess_frame(image, "CartPole-v1")[..., 1].max() == 0
    assert preprocess_frame(image, NO_CROP)[..., 1].max() == 255


def test_crop_argument_forms_agree():
    """Do a preset name and the preset's Crop object give the same result?"""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        preprocess_frame(image, "CartPole-v1"), preprocess_frame(image, CROPS["CartPole-v1"])
    )


@pytest.mark.parametrize("size", [32, 64, 96])
def test_preprocess_size(size):
    """Does ``size`` set the output side?"""
    image = np.full((50, 70, 3), 7, dtype=np.uint8)
    assert preprocess_frame(image, size=size).shape == (size, size, 3)


def test_preprocess_keeps_constant_colour():
    """Is a uniform colour preserved exactly by the resize?"""
    image = np.empty((400, 600, 3), dtype=np.uint8)
    image[...] = (10, 200, 30)
    out = preprocess_frame(image, "CartPole-v1")
    assert (out == np.array([10, 200, 30], dtype=np.uint8)).all()


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64, 3), dtype=np.float32),  # float image
        np.zeros((64, 64), dtype=np.uint8),  # no channel axis
        np.zeros((64, 64, 4), dtype=np.uint8),  # RGBA
        np.zeros((2, 64, 64, 3), dtype=np.uint8),  # a batch, not one frame
    ],
    ids=["float", "grey", "rgba", "batch"],
)
def test_preprocess_rejects_bad_image(image):
    """Is a ValueError that states the expected format raised for a non-(H, W, 3) uint8 image?"""
    with pytest.raises(ValueError, match=r"uint8 RGB frame"):
        preprocess_frame(image)


def test_preprocess_unknown_preset():
    """Is a KeyError raised for a crop preset name that does not exist?"""
    with pytest.raises(KeyError, match="no crop preset"):
        preprocess_frame(np.zeros((64, 64, 3), dtype=np.uint8), "NoSuchEnv-v0")


@pytest.mark.parametrize(
    "kwargs",
    [{"top": 0.5, "bottom": 0.5}, {"left": 0.8, "right": 0.2}, {"bottom": 1.5}, {"rows": (10, 5)}],
)
def test_bad_crop_rejected(kwargs):
    """Is an empty or out-of-range crop rejected when it is made?"""
    with pytest.raises(ValueError, match="crop"):
        Crop(**kwargs)


def test_crop_rows_must_fit():
    """Is a ValueError raised when absolute crop rows exceed the image height?"""
    with pytest.raises(ValueError, match="do not fit"):
        Crop(rows=(0, 84)).box(64, 64)


def test_to_tensor_batch():
    """Does ``to_tensor`` give float32 (N, 3, H, W) in [0, 1] with 255 mapped to 1.0?"""
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    frames[0, 0, 0] = (0, 255, 128)
    x = to_tensor(frames)
    assert x.dtype == torch.float32
    assert x.shape == (5, 3, 64, 64)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert x[0, 0, 0, 0] == 0.0 and x[0, 1, 0, 0] == 1.0
    assert x[0, 2, 0, 0] == pytest.approx(128 / 255)
    torch.testing.assert_close(x, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)


def test_to_tensor_single_frame():
    """Does one (H, W, 3) frame become a batch of one?"""
    x = to_tensor(np.zeros((64, 64, 3), dtype=np.uint8))
    assert x.shape == (1, 3, 64, 64)


def test_to_tensor_accepts_uint8_tensor():
    """Does a uint8 torch tensor convert like the equivalent array, leaving the input unchanged?"""
    frames = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    t = torch.from_numpy(frames.copy())
    torch.testing.assert_close(to_tensor(t), to_tensor(frames))
    assert t.dtype == torch.uint8 and np.array_equal(t.numpy(), frames)


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_to_tensor_channel_order(channel):
    """Does a pure red (green, blue) frame put 1 in channel 0 (1, 2) and 0 elsewhere?"""
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    frame[..., channel] = 255
    x = to_tensor(frame)[0]
    for c in range(3):
        assert (x[c] == (1.0 if c == channel else 0.0)).all()


def test_round_trip_is_exact():
    """Does ``to_frames(to_tensor(x))`` give back every uint8 value exactly?"""
    values = np.arange(256, dtype=np.uint8)
    frames = np.stack([np.roll(values, k).reshape(8, 32) for k in range(3)], axis=-1)[None]
    frames = np.concatenate([frames, frames[:, ::-1]])  # (2, 8, 32, 3), every value in each channel
    back = to_frames(to_tensor(frames))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, frames)


def test_round_trip_real_frames(cartpole_frames):
    """Do real frames survive the round trip unchanged?"""
    np.testing.assert_array_equal(to_frames(to_tensor(cartpole_frames[:16])), cartpole_frames[:16])


def test_to_frames_clips():
    """Are values outside [0, 1] clipped to 0 and 255?"""
    x = torch.tensor([-0.5, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2).repeat(1, 3, 1, 1)
    out = to_frames(x)
    np.testing.assert_array_equal(out[0, :, :, 0], [[0, 0], [255, 255]])


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, 64, 64, 3), dtype=np.float32),  # float frames
        np.zeros((2, 3, 64, 64), dtype=np.uint8),  # channels first
        np.zeros((64, 64), dtype=np.uint8),  # grey
        np.zeros((1, 2, 64, 64, 3), dtype=np.uint8),  # too many axes
    ],
    ids=["float", "channels-first", "grey", "5d"],
)
def test_to_tensor_rejects_bad_input(frames):
    """Is a ValueError that states the expected format raised for non-(N, H, W, 3) uint8 input?"""
    with pytest.raises(ValueError, match=r"uint8 frames of shape"):
        to_tensor(frames)


def test_to_frames_rejects_bad_shape():
    """Is a ValueError raised when ``to_frames`` gets a channels-last tensor?"""
    with pytest.raises(ValueError, match="expected a tensor of shape"):
        to_frames(torch.zeros(2, 64, 64, 3))


def test_is_blank():
    """Is a one-colour frame blank and a frame with one different pixel not?"""
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    assert is_blank(frame)
    frame[5, 5, 1] = 1
    assert not is_blank(frame)
