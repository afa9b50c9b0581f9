"""The CPU's flags decide whether ``fit(precision="auto")`` tries bfloat16 at all."""

from __future__ import annotations

import pytest
import torch

from course_lib import cpu, precision
from course_lib.models import SmallVAE
from course_lib.precision import PRECISIONS, choose_precision

# The first lines of /proc/cpuinfo of a 2-core AMD EPYC with AVX2 only, and of a Xeon with AMX.
AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 avx avx2 fma bmi2
"""
AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16
"""
ZEN4 = "model name\t: AMD EPYC 9654\nflags\t\t: avx2 avx512f avx512_bf16\n"


@pytest.mark.parametrize(("text", "fast"), [(AVX2_ONLY, False), (AMX, True), (ZEN4, True), ("processor : 0\n", True)])
def test_fast_bfloat16_reads_the_flags(tmp_path, text, fast):
    """Is bfloat16 fast exactly with avx512_bf16 or amx_bf16 among the flags (or when no flags are listed)?"""
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert cpu.fast_bfloat16(path) is fast
    assert cpu.native_bfloat16(path) is (fast and text != "processor : 0\n")  # native only where the flags say so


def test_model_and_flags(tmp_path):
    """Are the model name and the flags those of the file, and empty flags where it is missing?"""
    path = tmp_path / "cpuinfo"
    path.write_text(AMX)
    assert cpu.cpu_model(path) == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"amx_bf16", "avx2"} <= cpu.cpu_flags(path)
    assert cpu.cpu_flags(tmp_path / "missing") == frozenset()
    assert cpu.fast_bfloat16(tmp_path / "missing")


def test_auto_never_runs_bfloat16_without_the_instructions(monkeypatch, small_frames):
    """On a CPU without AVX512-BF16 or AMX, does the trial run no bfloat16 step and pick float32 unmeasured?"""
    monkeypatch.setattr(cpu, "fast_bfloat16", lambda cpuinfo=None: False)
    ran = []
    real_step = precision._timed_step
    monkeypatch.setattr(precision, "_timed_step", lambda *args: ran.append(args[3]) or real_step(*args))
    trial = choose_precision(SmallVAE(z_size=4, width=8), small_frames, batch_size=16, device="cpu")
    assert ran == []
    assert trial.chosen == "float32" and trial.reason.startswith("not measured")
    assert trial.dropped == {name: "cpu flags" for name in PRECISIONS if PRECISIONS[name].autocast == torch.bfloat16}
    assert trial.images_per_s == trial.screen_images_per_s == {}


def test_auto_measures_bfloat16_with_the_instructions(monkeypatch, small_frames):
    """With native bfloat16, are all the paths measured?"""
    monkeypatch.setattr(cpu, "fast_bfloat16", lambda cpuinfo=None: True)
    ran = []
    real_step = precision._timed_step
    monkeypatch.setattr(precision, "_timed_step", lambda *args: ran.append(args[3]) or real_step(*args))
    trial = choose_precision(SmallVAE(z_size=4, width=8), small_frames, batch_size=16, device="cpu")
    assert trial.reason == "measured" and "cpu flags" not in trial.dropped.values()
    assert set(ran) == set(PRECISIONS.values())
