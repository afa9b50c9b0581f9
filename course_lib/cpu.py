"""What this CPU can run fast: its model name and feature flags, read from Linux's ``/proc/cpuinfo``.

``fit(precision="auto")`` (:func:`course_lib.precision.choose_precision`) asks :func:`fast_bfloat16`
before it tries a bfloat16 path: without AVX512-BF16 or AMX, oneDNN emulates bfloat16 products
(measured 1.3 GFLOP/s against float32's 131 on a 2-core AMD EPYC with AVX2 only,
benchmarks/results/training.json), so the trial would only pay for a path that cannot win.
Flag names are the kernel's (``arch/x86/include/asm/cpufeatures.h``).
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
#: The flags with native bfloat16 products: AVX512-BF16 (Cooper Lake, Zen 4 and later) and
#: AMX-BF16 (Sapphire Rapids and later).
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _first_field(name: str, cpuinfo: Path) -> str | None:
    """The value of the first ``name : value`` line of ``cpuinfo`` (None where it or the line is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first CPU's feature flags (``avx2``, ``avx512_bf16``, ...); empty where ``cpuinfo`` is unreadable."""
    return frozenset((_first_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (``platform.processor()`` or ``"unknown"`` where ``cpuinfo`` has none)."""
    return _first_field("model name", cpuinfo) or platform.processor() or "unknown"


def fast_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU multiplies bfloat16 natively: :data:`BFLOAT16_FLAGS` among its flags.

    Where ``cpuinfo`` cannot be read (not Linux, or no x86 flags line) the answer is True, so that a
    machine which cannot say is measured rather than assumed slow.
    """
    flags = cpu_flags(cpuinfo)
    return not flags or bool(flags & BFLOAT16_FLAGS)


def native_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU's flags are known and list native bfloat16 (:data:`BFLOAT16_FLAGS`).

    Unlike :func:`fast_bfloat16`, False where ``cpuinfo`` cannot be read: the CPU did not say.
    """
    return bool(cpu_flags(cpuinfo) & BFLOAT16_FLAGS)
