"""What this machine computes fast: whether bfloat16 is native on its CPU, and the precision
``auto`` resolves to on a device. Imports nothing heavy (``rewards`` imports it and stays light)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["native_bf16", "resolve_precision"]


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX). Elsewhere bfloat16 is
    emulated: a bfloat16 matmul ran ~75× slower than a float32 one on an AVX2-only CPU. Read from
    the CPU flags the kernel reports (Linux); elsewhere: no."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_tile" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto``: ``bf16`` (autocast) on a GPU or a CPU with native bfloat16, else ``fp32``;
    ``fp32`` and ``bf16`` are taken as given."""
    if precision == "auto":
        kind = device if isinstance(device, str) else device.type
        return "bf16" if kind == "cuda" or native_bf16() else "fp32"
    return precision
