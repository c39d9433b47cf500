"""Verified checkpoint files, and the one layout of a pre-pre-trained model.

Every checkpoint is written atomically with a sha256 sidecar and checked before loading. A
pre-pre-trained (NCA-stage) checkpoint is ``{"model": Transformer.state_dict(), "upstream":
UpstreamDiagnostic as a dict}``; the state dict carries its ModelConfig under ``_extra_state``.
The search trial caches it under ``ppt/``, ``python -m lm.cli nca`` writes it and
``lm.transfer`` reads it. (The trainer's resumable checkpoint, see lm.trainer, is another file:
the state of a run in progress, never a transfer source.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ncaio import CorruptCacheError, save_verified, verify_file

__all__ = ["PRETRAINED_KEYS", "CorruptCacheError", "load_checkpoint", "save_checkpoint",
           "save_pretrained"]

PRETRAINED_KEYS = frozenset({"model", "upstream"})
"""The keys of a pre-pre-trained checkpoint, exactly."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` with torch.save so that `path` is either the old file or the new one.

    The sha256 of the file goes to `<path>.sha256` after it (see ncaio.save_verified).
    """
    return save_verified(path, lambda f: torch.save(state, f))


def save_pretrained(path: str | Path, model: torch.nn.Module, upstream: Mapping[str, Any]
                    ) -> Path:
    """Write a pre-pre-trained checkpoint: the model's weights and its upstream diagnostic."""
    return save_checkpoint(path, {"model": model.state_dict(), "upstream": dict(upstream)})


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
