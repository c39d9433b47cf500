"""Verified checkpoint files: written atomically with a sha256 sidecar, checked before loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ncaio import CorruptCacheError, save_verified, verify_file

__all__ = ["CorruptCacheError", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` with torch.save so that `path` is either the old file or the new one.

    The sha256 of the file goes to `<path>.sha256` after it (see ncaio.save_verified).
    """
    return save_verified(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` onto the CPU, after verifying its hash.

    Raises:
        ValueError: the file does not exist.
        CorruptCacheError (a ValueError): the bytes do not match the recorded sha256, or none
            was recorded (a write that did not finish).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {str(path)!r}")
    verify_file(path)
    # weights_only=False: the file also holds RNG states and plain dicts written by us
    return torch.load(path, map_location="cpu", weights_only=False)
