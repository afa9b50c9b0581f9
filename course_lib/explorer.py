"""An interactive latent explorer: one slider per latent dimension, the decoded frame updating live.

``explore(model, frames)`` (or :class:`LatentExplorer`) takes any VAE with ``encode(x) -> (mu, logvar)``,
``decode(z)`` and a ``z_size`` or ``latent_dim`` (``SmallVAE``, the World Models ``ConvVAE``, homework 1's
``MyVAE``). Where widgets cannot render (nbconvert HTML without widget state, nbgrader feedback), a static
PNG stands in (:meth:`LatentExplorer.static_png`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image
from torch import nn

from course_lib.diagnostics import LatentUsage, latent_usage
from course_lib.frames import to_frames, to_tensor

T = TypeVar("T")

#: CSS classes given to the explorer's widgets (``widget.add_class``), by role; stable, for browser tests.
CSS_CLASSES: dict[str, str] = {
    "root": "course-explorer",
    "image": "course-explorer-image",  # the decoded frame (changes when a slider moves)
    "input": "course-explorer-input",  # frame A, the input
    "target": "course-explorer-target",  # frame B, the end of the interpolation
    "slider": "course-explorer-slider",  # every latent slider
    "active": "course-explorer-active",  # latent sliders of active dimensions
    "collapsed": "course-explorer-collapsed",  # latent sliders of collapsed dimensions
    "row": "course-explorer-row",  # a latent slider and its KL label
    "row_collapsed": "course-explorer-row-collapsed",  # the row of a collapsed dimension (drawn faded)
    "frame": "course-explorer-frame",  # the frame A picker
    "frame_b": "course-explorer-frame-b",  # the frame B picker
    "t": "course-explorer-t",  # the interpolation slider
    "prior": "course-explorer-prior",  # the prior sample button
    "interpolate": "course-explorer-interpolate",  # the interpolation button
    "reset": "course-explorer-reset",  # back to frame A's code
    "status": "course-explorer-status",  # one line saying where the code comes from
}

# Collapsed rows are drawn faded; the slider handles are grey too (``SliderStyle.handle_color``).
_STYLE = f"<style>.{CSS_CLASSES['row_collapsed']} {{ opacity: 0.45; }}</style>"
_COLLAPSED_COLOR = "lightgray"


def png_bytes(frame: np.ndarray, scale: int = 4) -> bytes:
    """Encode one ``uint8 (H, W, 3)`` frame as a PNG, upscaled ``scale`` times (nearest neighbour).

    Nearest-neighbour upscaling keeps the pixels sharp whatever the browser does; PNG compression
    level 1 keeps the encoding at about a millisecond for 64x64 frames at ``scale=4``.

    Raises:
        ValueError: if ``frame`` is not ``uint8 (H, W, 3)`` or ``scale < 1``.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame (H, W, 3), got dtype {frame.dtype} and shape {frame.shape}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    image = Image.fromarray(frame)
    if scale > 1:
        image = image.resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _strips_png(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], gap: int = 2) -> bytes:
    """PNG of rows of ``uint8 (64, 64, 3)`` frames, one titled strip per row, left-aligned.

    Each row is one image (frames side by side, ``gap`` white pixels apart), so the figure has one
    axes per row: a few times faster than one axes per frame.
    """
    from matplotlib.figure import Figure

    width = max(len(r) for r in rows) * (64 + gap) - gap
    fig = Figure(figsize=(width / 64 * 0.9, len(rows) * 1.15))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row, title in zip(axes, rows, titles, strict=True):
        strip = np.full((64, width, 3), 255, dtype=np.uint8)
        for j, frame in enumerate(row):
            strip[:, j * (64 + gap) : j * (64 + gap) + 64] = frame
        ax.imshow(strip, interpolation="nearest")
        ax.set_title(title, fontsize=8, loc="left")
        ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return buffer.getvalue()


class LatestOnly(Generic[T]):
    """Calls ``fn`` on the most recently submitted value, dropping the values overtaken meanwhile.

    Synchronous (``threaded=False``): :meth:`submit` calls ``fn`` at once and exceptions propagate.
    Threaded: :meth:`submit` stores the value and returns; a worker thread, started on demand and
    ending when nothing is pending, calls ``fn`` on the latest value. If ten values arrive while
    ``fn`` runs on the first, only the tenth is processed next. Exceptions in the worker go to
    ``on_error`` (the worker carries on).

    Args:
        fn: the work, e.g. decode a code and update an image.
        threaded: run ``fn`` in a worker thread.
        on_error: called with the exception raised by ``fn`` in the worker.
    """

    def __init__(
        self, fn: Callable[[T], Any], threaded: bool = False, on_error: Callable[[BaseException], Any] | None = None
    ):
        self.fn = fn
        self.threaded = threaded
        self.on_error = on_error
        self.submitted = 0  # values submitted
        self.processed = 0  # calls of fn
        self._lock = threading.Lock()
        self._pending: tuple[T] | None = None  # a 1-tuple, so that None can be a value
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, value: T) -> None:
        """Process ``value`` now (synchronous) or as soon as the worker is free (threaded)."""
        self.submitted += 1
        if not self.threaded:
            self.processed += 1
            self.fn(value)
            return
        with self._lock:
            self._pending = (value,)
            if not self._idle.is_set():
                return  # the running worker will pick it up
            self._idle.clear()
        threading.Thread(target=self._work, name="course-explorer-render", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._pending is None:
                    self._idle.set()
                    return
                (value,) = self._pending
                self._pending = None
            try:
                self.processed += 1
                self.fn(value)
            except Exception as err:
                if self.on_error is not None:
                    self.on_error(err)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every submitted value has been processed or dropped; ``False`` on timeout."""
        return self._idle.wait(timeout)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` PyTorch intra-op threads (``None``: unchanged), then restore the setting.

    Decoding one 64x64 frame is too small to gain from several threads, and on a CPU shared with
    other work (a training run, other kernels) waiting for busy threads made it 10-20x slower
    (14 ms with one thread against 270 ms with two, ConvVAE, on a loaded 2-core machine). With
    PyTorch's OpenMP backend the setting is per thread, so the explorer's worker leaves the
    kernel's own setting alone.
    """
    previous = torch.get_num_threads()
    if n is None or n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where a worker thread keeps the kernel free for slider events)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _as_frames(frames: Any) -> np.ndarray:
    """``uint8 (N, 64, 64, 3)`` from an array or a sliceable data set (``ShardDataset``, ``FrameSubset``)."""
    if not isinstance(frames, np.ndarray):
        try:
            frames = frames[np.arange(len(frames))]
        except (TypeError, IndexError, KeyError):
            frames = [frames[i] for i in range(len(frames))]
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != (64, 64, 3) or frames.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 frames of shape (N, 64, 64, 3), got dtype {frames.dtype} and shape {frames.shape}"
        )
    if len(frames) < 2:
        raise ValueError(f"need at least two frames (to rank the latent dimensions by KL), got {len(frames)}")
    return frames


def latent_size(model: nn.Module) -> int:
    """The model's number of latent dimensions: its ``z_size`` or ``latent_dim`` attribute.

    Raises:
        AttributeError: if the model has neither.
    """
    size = getattr(model, "z_size", None) or getattr(model, "latent_dim", None)
    if size is None:
        raise AttributeError(f"{type(model).__name__} has neither z_size nor latent_dim")
    return int(size)


class LatentExplorer:
    """Sliders over a VAE's latent code and the frame it decodes to, updated as the sliders move.

    Display it as the last expression of a cell (or with ``IPython.display.display``). The widget
    tree is :attr:`widget`; the parts a test or a student may drive are attributes:
    :attr:`sliders` (one ``FloatSlider`` per latent dimension, in :attr:`order`), :attr:`frame`
    and :attr:`frame_b` (frame pickers), :attr:`t`, :attr:`prior_button`,
    :attr:`interpolate_button`, :attr:`reset_button`, and the images :attr:`image` (decoded),
    :attr:`input_image` (frame A) and :attr:`target_image` (frame B), each holding PNG bytes.

    The sliders come most informative first: by decreasing KL from the prior
    (:func:`course_lib.diagnostics.latent_usage` on ``frames``), each labelled with its KL in nats; the
    collapsed dimensions (inactive units, Burda et al. 2016, "Importance Weighted Autoencoders") are greyed
    out: moving them should change nothing. A frame picker sets the sliders to the posterior mean ``mu`` of a
    real frame; the prior button draws ``z ~ N(0, I)``; the second picker and ``t`` set the code to
    ``(1 - t) mu_A + t mu_B``, the interpolation of notebook 02.

    Args:
        model: a VAE with ``encode(x) -> (mu, logvar)`` on ``float32 (B, 3, 64, 64)`` in [0, 1],
            ``decode(z)`` from ``(B, Z)`` to ``(B, 3, 64, 64)`` in [0, 1], and ``z_size`` or
            ``latent_dim``. It is put in eval mode.
        frames: ``uint8 (N, 64, 64, 3)`` real frames, ``N >= 2`` (a few hundred validation frames
            are plenty; all are encoded once), or a data set sliceable into them.
        usage: the model's :class:`~course_lib.diagnostics.LatentUsage` on ``frames``, if already
            computed; by default measured here.
        frame_index: the first frame A.
        span: the sliders reach at least ``-span .. span`` (further where real codes do).
        scale: upscaling of the 64x64 images, in screen pixels per frame pixel.
        seed: seed of the first prior sample; each click of the prior button draws the next one.
        n_static: latent dimensions shown in the static fallback's traversal.
        threaded: decode in a worker thread that keeps only the latest code (:class:`LatestOnly`), so
            the image never lags behind a fast-moving slider (``benchmarks/bench_explorer.py`` measures
            it); default: inside a Jupyter kernel only.
        decode_threads: PyTorch intra-op threads while decoding (see :func:`torch_threads`);
            ``None`` keeps PyTorch's setting.

    Raises:
        ValueError: if ``frames`` is not ``uint8 (N, 64, 64, 3)`` with ``N >= 2``, or the model's
            codes (or ``usage``) do not have its declared number of dimensions.
        AttributeError: if the model has neither ``z_size`` nor ``latent_dim``.
    """

    def __init__(
        self,
        model: nn.Module,
        frames: Any,
        usage: LatentUsage | None = None,
        frame_index: int = 0,
        span: float = 3.0,
        scale: int = 4,
        seed: int = 0,
        n_static: int = 4,
        threaded: bool | None = None,
        decode_threads: int | None = 1,
    ):
        self.model = model.eval()
        self.frames = _as_frames(frames)
        self.z_size = latent_size(model)
        self.span, self.scale, self.seed, self.n_static = float(span), int(scale), int(seed), int(n_static)
        self.decode_threads = decode_threads
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.mu = self._encode_all()  # (N, Z) float32
        if self.mu.shape[1] != self.z_size:
            raise ValueError(f"the model's codes have {self.mu.shape[1]} dimensions, its z_size says {self.z_size}")
        self.usage = usage if usage is not None else latent_usage(model, self.frames)
        if len(self.usage.kl) != self.z_size:
            raise ValueError(f"usage has {len(self.usage.kl)} dimensions, the model {self.z_size}")
        #: dimensions in slider order: decreasing KL (ties keep the dimension order)
        self.order = np.argsort(-self.usage.kl, kind="stable")
        self.prior_draws = 0
        self.status_text = ""
        self._holding = False
        self._renderer: LatestOnly[np.ndarray] = LatestOnly(
            self._render, threaded=_in_kernel() if threaded is None else threaded, on_error=self._report
        )
        self._build(int(frame_index))
        self.reset()
        self.flush()  # the first image is there before the explorer is displayed (or saved with the notebook)

    # ----------------------------------------------------------------- model
    @torch.inference_mode()
    def _encode_all(self, batch_size: int = 256) -> np.ndarray:
        mus = []
        for start in range(0, len(self.frames), batch_size):
            x = to_tensor(self.frames[start : start + batch_size]).to(self.device, self.dtype)  # (b, 3, 64, 64)
            mus.append(self.model.encode(x)[0].float().cpu())  # (b, Z)
        return torch.cat(mus).numpy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decode codes ``float (Z,)`` or ``(B, Z)`` to ``uint8 (B, 64, 64, 3)``, in eval mode, no gradients."""
        with torch.inference_mode(), torch_threads(self.decode_threads):
            if self.model.training:  # trained again since: BatchNorm must use its running statistics
                self.model.eval()
            z_t = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1, self.z_size)  # (B, Z)
            return to_frames(self.model.decode(z_t.to(self.device, self.dtype)))

    # ----------------------------------------------------------------- widgets
    def _build(self, frame_index: int) -> None:
        c = CSS_CLASSES
        side = f"{64 * self.scale}px"

        def image(value: bytes, css: str) -> widgets.Image:
            w = widgets.Image(value=value, format="png", layout=widgets.Layout(width=side, height=side))
            w.add_class(css)
            return w

        n = len(self.frames)
        frame_index = min(max(frame_index, 0), n - 1)
        frame_b_index = int(np.argmax(np.abs(self.mu[:, self.order[0]] - self.mu[frame_index, self.order[0]])))
        self.input_image = image(png_bytes(self.frames[frame_index], self.scale), c["input"])
        self.target_image = image(png_bytes(self.frames[frame_b_index], self.scale), c["target"])
        self.image = image(self.input_image.value, c["image"])

        self.frame = widgets.IntSlider(value=frame_index, min=0, max=n - 1, description="frame A")
        self.frame_b = widgets.IntSlider(value=frame_b_index, min=0, max=n - 1, description="frame B")
        self.t = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="t (A→B)")
        fit = widgets.Layout(width="auto")
        self.prior_button = widgets.Button(description="sample the prior", icon="random", layout=fit)
        self.interpolate_button = widgets.Button(description="interpolate A→B at t", layout=fit)
        self.reset_button = widgets.Button(description="back to frame A", layout=fit)
        self.status = widgets.Label()
        for w, css in [
            (self.frame, c["frame"]),
            (self.frame_b, c["frame_b"]),
            (self.t, c["t"]),
            (self.prior_button, c["prior"]),
            (self.interpolate_button, c["interpolate"]),
            (self.reset_button, c["reset"]),
            (self.status, c["status"]),
        ]:
            w.add_class(css)

        self.sliders: list[widgets.FloatSlider] = []
        self.kl_labels: list[widgets.Label] = []
        rows = []
        limits = np.maximum(self.span, np.ceil(np.abs(self.mu).max(axis=0) / 0.5) * 0.5)  # (Z,)
        for d in self.order:
            kl, active = float(self.usage.kl[d]), bool(self.usage.active[d])
            slider = widgets.FloatSlider(
                value=0.0,
                min=-float(limits[d]),
                max=float(limits[d]),
                step=0.01,
                description=f"z[{d}]",
                readout_format=".2f",
                continuous_update=True,
            )
            label = widgets.Label(f"KL {kl:.2f} nats" + ("" if active else " · collapsed"))
            slider.add_class(c["slider"])
            slider.add_class(c["active"] if active else c["collapsed"])
            row = widgets.HBox([slider, label])
            row.add_class(c["row"])
            if not active:
                slider.style.handle_color = _COLLAPSED_COLOR
                label.style.text_color = "gray"
                label.style.font_style = "italic"
                row.add_class(c["row_collapsed"])
            slider.observe(self._on_slider, names="value")
            self.sliders.append(slider)
            self.kl_labels.append(label)
            rows.append(row)

        self.frame.observe(self._on_frame, names="value")
        self.frame_b.observe(self._on_frame_b, names="value")
        self.t.observe(lambda _: self.interpolate(), names="value")
        self.prior_button.on_click(lambda _: self.sample_prior())
        self.interpolate_button.on_click(lambda _: self.interpolate())
        self.reset_button.on_click(lambda _: self.reset())

        def captioned(w: widgets.Widget, caption: str) -> widgets.VBox:
            return widgets.VBox([widgets.Label(caption), w])

        n_active = self.usage.n_active
        summary = widgets.Label(
            f"{self.z_size} latent dimensions, most informative first; {n_active} active, "
            f"{self.z_size - n_active} collapsed (grey); KL measured on {n} frames"
        )
        self.widget = widgets.VBox(
            [
                widgets.HTML(_STYLE),
                widgets.HBox(
                    [
                        captioned(self.input_image, "frame A (input)"),
                        captioned(self.image, "decoded from the sliders"),
                        captioned(self.target_image, "frame B"),
                    ]
                ),
                widgets.HBox([self.frame, self.reset_button]),
                widgets.HBox([self.frame_b, self.t, self.interpolate_button]),
                widgets.HBox([self.prior_button, self.status]),
                summary,
                widgets.VBox(rows),
            ]
        )
        self.widget.add_class(c["root"])

    # ----------------------------------------------------------------- state
    @property
    def z(self) -> np.ndarray:
        """The code the sliders show: ``float32 (Z,)``, in the model's dimension order."""
        z = np.zeros(self.z_size, dtype=np.float32)
        z[self.order] = [s.value for s in self.sliders]
        return z

    def set_z(self, z: np.ndarray | Sequence[float], status: str = "edited") -> None:
        """Move the sliders to ``z`` (``(Z,)``, model order; clipped to their ranges) and decode once."""
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        if z.shape != (self.z_size,):
            raise ValueError(f"expected a code of shape ({self.z_size},), got {z.shape}")
        self._holding = True  # one decode for the whole code, not one per slider
        try:
            for slider, d in zip(self.sliders, self.order, strict=True):
                slider.value = float(np.clip(z[d], slider.min, slider.max))
        finally:
            self._holding = False
        self._set_status(status)
        self._renderer.submit(self.z)

    def reset(self) -> None:
        """Set the sliders to the posterior mean ``mu`` of frame A."""
        self.set_z(self.mu[self.frame.value], f"z = mu of frame {self.frame.value}")

    def sample_prior(self) -> None:
        """Set the sliders to the next draw of ``z ~ N(0, I)`` (seeded: ``seed``, ``seed + 1``, ...)."""
        generator = torch.Generator().manual_seed(self.seed + self.prior_draws)
        self.prior_draws += 1
        self.set_z(torch.randn(self.z_size, generator=generator).numpy(), f"z ~ N(0, I), draw {self.prior_draws}")

    def interpolate(self) -> None:
        """Set the sliders to ``(1 - t) mu_A + t mu_B``, frames A and B from the pickers."""
        a, b, t = self.frame.value, self.frame_b.value, float(self.t.value)
        self.set_z((1 - t) * self.mu[a] + t * self.mu[b], f"z = {1 - t:.2f} mu(frame {a}) + {t:.2f} mu(frame {b})")

    def _on_slider(self, _change: dict) -> None:
        if not self._holding:
            self._set_status("edited by hand")
            self._renderer.submit(self.z)

    def _on_frame(self, change: dict) -> None:
        self.input_image.value = png_bytes(self.frames[change["new"]], self.scale)
        self.reset()

    def _on_frame_b(self, change: dict) -> None:
        self.target_image.value = png_bytes(self.frames[change["new"]], self.scale)
        self.interpolate()

    def _set_status(self, text: str) -> None:
        self.status_text = text
        self.status.value = text

    def _render(self, z: np.ndarray) -> None:
        self.image.value = png_bytes(self.decode(z)[0], self.scale)

    def _report(self, err: BaseException) -> None:
        self.status.value = f"decoding failed: {type(err).__name__}: {err}"

    @property
    def renders(self) -> int:
        """How many times the decoded image has been recomputed (overtaken codes are skipped)."""
        return self._renderer.processed

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until the image shows the latest code (threaded mode); ``False`` on timeout."""
        return self._renderer.flush(timeout)

    # ----------------------------------------------------------------- static fallback
    def static_png(self) -> bytes:
        """A PNG of what the explorer shows, for where widgets do not render.

        Top row: frame A, the frame decoded from the current code, frame B. Below, one row per
        dimension among the ``n_static`` of highest KL: that dimension moved from ``-span`` to
        ``span`` in 7 steps around the current code (a latent traversal, labelled with its KL in
        nats). Drawn on a bare matplotlib ``Figure`` (not pyplot), so no inline backend shows it twice.
        """
        z, steps = self.z, 7
        dims = [int(d) for d in self.order[: max(0, self.n_static)]]
        codes = np.repeat(z[None], len(dims) * steps + 1, axis=0)  # (k * steps + 1, Z); the last is z
        for i, d in enumerate(dims):
            codes[i * steps : (i + 1) * steps, d] = np.linspace(-self.span, self.span, steps)
        decoded = self.decode(codes)  # (k * steps + 1, 64, 64, 3)
        rows = [[self.frames[self.frame.value], decoded[-1], self.frames[self.frame_b.value]]]
        titles = ["frame A  |  decoded from the sliders  |  frame B"]
        for i, d in enumerate(dims):
            rows.append(list(decoded[i * steps : (i + 1) * steps]))
            collapsed = "" if self.usage.active[d] else ", collapsed"
            titles.append(f"z[{d}] from {-self.span:g} to {self.span:g} (KL {self.usage.kl[d]:.2f} nats{collapsed})")
        return _strips_png(rows, titles)

    def __repr__(self) -> str:
        return (
            f"LatentExplorer({type(self.model).__name__}, z_size={self.z_size}, "
            f"{self.usage.n_active} active, {len(self.frames)} frames)"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The widget view, with a static PNG and text next to it for frontends without widgets."""
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["text/plain"] = repr(self)
        bundle["image/png"] = base64.b64encode(self.static_png()).decode("ascii")
        return bundle


def explore(model: nn.Module, frames: Any, **kwargs: Any) -> LatentExplorer:
    """A :class:`LatentExplorer` of ``model`` on ``frames``; display it as a cell's last expression.

    Keyword arguments go to :class:`LatentExplorer`.
    """
    return LatentExplorer(model, frames, **kwargs)
