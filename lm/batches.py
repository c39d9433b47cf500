"""Batches: which sequences (a pure function of seed and position), on which device, in which
precision."""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = ["IGNORE", "autocast_context", "batch_indices", "resolve_autocast", "to_device_xy"]

Autocast = Literal["auto", "bf16", "off"]
IGNORE = -100
"""Target id that the loss skips (positions whose loss_mask is False)."""


def _cpu_has_amx_bf16() -> bool:
    # avx512_bf16 alone is not enough: on a 2-core avx512_bf16 machine (no AMX) bf16 autocast
    # trained cpu-proxy at 11.3k tokens/s against 16.3k in fp32 (python -m lm.bench, same run)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def resolve_autocast(mode: Autocast, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for `mode` on `device`; None means plain fp32.

    'auto' is bf16 on CUDA (when supported) and on CPUs with AMX tiles; fp32 elsewhere.
    """
    device = torch.device(device)
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and _cpu_has_amx_bf16() else None


@lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, start: int) -> np.ndarray:
    """Indices of samples start .. start + batch_size - 1 of the endless shuffled stream.

    Epoch e is a permutation of range(n) drawn from (seed, e), so any batch is a pure function
    of (seed, position): no sampler state needs saving.
    """
    out = np.empty(batch_size, dtype=np.int64)
    filled, pos = 0, start
    while filled < batch_size:  # at most batch_size // n + 2 rounds
        epoch, offset = divmod(pos, n)
        take = min(batch_size - filled, n - offset)
        out[filled:filled + take] = _epoch_permutation(n, seed, epoch)[offset:offset + take]
        filled, pos = filled + take, pos + take
    return out


def to_device_xy(tokens: np.ndarray, mask: np.ndarray, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x = tokens[:, :-1] and targets y = tokens[:, 1:], IGNORE where not masked."""
    t = torch.from_numpy(tokens).to(device, non_blocking=True)
    m = torch.from_numpy(mask).to(device, non_blocking=True)
    x, y = t[:, :-1], t[:, 1:].masked_fill(~m[:, 1:], IGNORE)  # (B, L-1) each
    return x, y


def autocast_context(device: torch.device, dtype: torch.dtype | None
                     ) -> AbstractContextManager:
    """torch.autocast to `dtype` on `device`, or a no-op when dtype is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
