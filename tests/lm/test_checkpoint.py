"""Checkpoints are verified before torch.load: a damaged or unfinished one is refused."""

from __future__ import annotations

import pytest
import torch

from lm.checkpoint import CorruptCacheError, load_checkpoint, save_checkpoint
from ncaio import sidecar_path


def test_round_trip_and_flipped_byte_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(1000.0)})
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(1000.0))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError, match="sha256"):
        load_checkpoint(path)


def test_checkpoint_without_recorded_hash_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": 1})
    sidecar_path(path).unlink()  # as if the writer died between the file and its sidecar
    with pytest.raises(CorruptCacheError, match="no sha256"):
        load_checkpoint(path)
    assert isinstance(CorruptCacheError(path, "x"), ValueError)
