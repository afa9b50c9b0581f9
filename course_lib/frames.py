"""Frame preprocessing: crop, resize to 64x64 with Pillow, and convert to model tensors.

Conventions (DESIGN.md): frames are stored as ``uint8`` arrays ``(N, 64, 64, 3)`` (height,
width, channel), never transposed; models take ``float32`` tensors ``(N, 3, 64, 64)`` in [0, 1].

Crops follow the sources: CartPole keeps rows 40%-100% of the render (the homework template of
the CMPE 260 homework), CarRacing keeps rows 0-84 of the 96x96 observation, which drops the dashboard
(World Models, Ha & Schmidhuber 2018, https://worldmodels.github.io).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from course_lib import recording

FRAME_SIZE = 64


@dataclass(frozen=True)
class Crop:
    """A rectangular crop, given as fractions of the image height and width.

    Attributes:
        top: first kept row, as a fraction of the height in [0, 1).
        bottom: one past the last kept row, as a fraction of the height in (top, 1].
        left: first kept column, as a fraction of the width in [0, 1).
        right: one past the last kept column, as a fraction of the width in (left, 1].
        rows: if given, absolute ``(first, stop)`` rows in pixels; overrides ``top``/``bottom``.
            Used where a source states pixels (CarRacing keeps rows 0-84 of 96).
    """

    top: float = 0.0
    bottom: float = 1.0
    left: float = 0.0
    right: float = 1.0
    rows: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not (0.0 <= self.top < self.bottom <= 1.0 and 0.0 <= self.left < self.right <= 1.0):
            raise ValueError(
                f"crop fractions must satisfy 0 <= top < bottom <= 1 and 0 <= left < right <= 1, got {self}"
            )
        if self.rows is not None and not (0 <= self.rows[0] < self.rows[1]):
            raise ValueError(f"crop rows must be (first, stop) with 0 <= first < stop, got {self.rows}")

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Pixel box ``(row0, row1, col0, col1)`` of this crop on a ``height`` x ``width`` image."""
        if self.rows is not None:
            if self.rows[1] > height:
                raise ValueError(f"crop rows {self.rows} do not fit an image of height {height}")
            row0, row1 = self.rows
        else:
            row0, row1 = round(self.top * height), round(self.bottom * height)
        col0, col1 = round(self.left * width), round(self.right * width)
        return row0, row1, col0, col1


#: Crop presets per environment id. The classic-control renders are 400x600 (CartPole,
#: MountainCar) or 500x500 (Pendulum, Acrobot); CarRacing's observation is 96x96.
CROPS: dict[str, Crop] = {
    "CartPole-v1": Crop(top=0.4, bottom=1.0),
    "Pendulum-v1": Crop(top=0.2, bottom=0.8, left=0.2, right=0.8),
    "Acrobot-v1": Crop(top=0.1, bottom=0.9, left=0.1, right=0.9),
    "MountainCar-v0": Crop(top=0.1, bottom=1.0),
    "CarRacing-v3": Crop(rows=(0, 84)),
}

NO_CROP = Crop()


def preprocess_frame(
    image: np.ndarray, crop: Crop | str | tuple[int, int, int, int] | None = None, size: int = FRAME_SIZE
) -> np.ndarray:
    """Crop an RGB frame and resize it to ``size`` x ``size`` with Pillow's bilinear filter.

    Args:
        image: ``uint8`` array ``(H, W, 3)``, as returned by ``env.render()`` or CarRacing's
            observation.
        crop: a :class:`Crop`, an environment id naming a preset in :data:`CROPS`, or ``None``
            for the whole image.
        size: output side in pixels.

    Returns:
        ``uint8`` array ``(size, size, 3)``.

    Raises:
        ValueError: if ``image`` is not ``uint8 (H, W, 3)`` or the crop is empty.
        KeyError: if ``crop`` names an environment without a preset.

    Inside :func:`course_lib.recording.recording`, each call is noted (the digests of ``image`` and
    of the frame, and the pixel box), so that a grader can recompute the frame from its own render.
    """
    image = np.asarray(image)
    frame = crop_and_resize(image, crop, size)
    log = recording.active()
    if log is not None:
        box = (*pixel_box(image, crop), size)
        log.frames.append((recording.digest(image), box, recording.digest(frame)))
    return frame


def pixel_box(image: np.ndarray, crop: Crop | str | tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    """The ``(row0, row1, col0, col1)`` pixels ``crop`` keeps of ``image`` (see :func:`preprocess_frame`;
    a pixel box is its own).

    Raises:
        ValueError: if ``image`` is not ``uint8 (H, W, 3)``.
        KeyError: if ``crop`` names an environment without a preset.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 RGB frame of shape (H, W, 3), got dtype {image.dtype} and shape {image.shape}"
        )
    if isinstance(crop, tuple):
        return crop
    if isinstance(crop, str):
        if crop not in CROPS:
            raise KeyError(f"no crop preset for {crop!r}; presets exist for {sorted(CROPS)}")
        crop = CROPS[crop]
    return (crop or NO_CROP).box(*image.shape[:2])


def crop_and_resize(
    image: np.ndarray, crop: Crop | str | tuple[int, int, int, int] | None = None, size: int = FRAME_SIZE
) -> np.ndarray:
    """What :func:`preprocess_frame` returns, without noting the call; ``crop`` may also be a pixel
    box ``(row0, row1, col0, col1)``. ``uint8 (size, size, 3)``."""
    image = np.asarray(image)
    row0, row1, col0, col1 = box = pixel_box(image, crop)
    cropped = image[row0:row1, col0:col1]  # (h, w, 3)
    if cropped.size == 0:
        raise ValueError(f"the crop {box} keeps no pixel of a {image.shape[0]}x{image.shape[1]} image")
    resized = Image.fromarray(cropped).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)  # (size, size, 3)


def to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convert ``uint8`` frames ``(N, H, W, 3)`` (or one frame ``(H, W, 3)``) to model input.

    Args:
        frames: ``uint8`` array or tensor, channels last.

    Returns:
        ``float32`` tensor ``(N, 3, H, W)`` in [0, 1] (a single frame gets ``N = 1``).

    Raises:
        ValueError: if the input is not ``uint8`` with 3 channels last.
    """
    x = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if x.dtype != torch.uint8 or x.shape[-1] != 3 or x.ndim not in (3, 4):
        raise ValueError(
            f"expected uint8 frames of shape (N, H, W, 3) or (H, W, 3), got dtype {x.dtype} and shape {tuple(x.shape)}"
        )
    if x.ndim == 3:
        x = x.unsqueeze(0)  # (1, H, W, 3)
    return x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W)


def to_frames(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor`: ``float (N, 3, H, W)`` in [0, 1] to ``uint8 (N, H, W, 3)``.

    Values outside [0, 1] are clipped.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a tensor of shape (N, 3, H, W), got {tuple(x.shape)}")
    x = x.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, 3)


def is_blank(frame: np.ndarray) -> bool:
    """True if a frame has a single colour everywhere (e.g. an all-black placeholder)."""
    frame = np.asarray(frame)
    return bool(frame.min() == frame.max())
