"""Token layout: patch order, digit order, delimiters, frame length, round trip, loss mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nca.config import NCAConfig
from nca.tokens import decode, frame_sequences, frames_per_sequence, nca_loss_mask, patch_tokens


def test_patch_tokens_row_major_patches_little_endian_digits() -> None:
    cfg = NCAConfig(alphabet=10, grid=4)
    grid = torch.tensor([[1, 2, 3, 4],
                         [5, 6, 7, 8],
                         [9, 0, 1, 2],
                         [3, 4, 5, 6]]).view(1, 1, 4, 4)
    tokens = patch_tokens(grid, cfg)[0, 0].tolist()
    # patch (0,0) holds cells 1,2 / 5,6 -> 1 + 2*10 + 5*100 + 6*1000
    assert tokens == [6521, 8743, 4309, 6521]


def test_frame_layout_paper_settings() -> None:
    cfg = NCAConfig()
    frames = torch.randint(0, 10, (2, 3, 12, 12))
    seq = frame_sequences(patch_tokens(frames, cfg), cfg.patch_values, cfg.patch_values + 1)
    assert seq.shape == (2, 3 * 38) and cfg.frame_len == 38
    assert (seq[:, ::38] == 10_000).all() and (seq[:, 37::38] == 10_001).all()
    assert seq.dtype == torch.int64 and seq.max() <= 10_001


@pytest.mark.parametrize(("n", "patch", "grid"), [(10, 2, 12), (2, 2, 8), (15, 2, 6), (4, 3, 9),
                                                 (3, 1, 5)])
def test_decode_round_trips(n: int, patch: int, grid: int) -> None:
    cfg = NCAConfig(alphabet=n, patch=patch, grid=grid)
    frames = torch.randint(0, n, (3, 5, grid, grid), generator=torch.Generator().manual_seed(n))
    seq = frame_sequences(patch_tokens(frames, cfg), cfg.patch_values, cfg.patch_values + 1)
    assert np.array_equal(decode(seq.numpy(), cfg), frames.numpy())


def test_decode_rejects_bad_input() -> None:
    cfg = NCAConfig()
    with pytest.raises(ValueError, match="whole number of 38-token frames"):
        decode(np.zeros(40, dtype=np.int64), cfg)
    bad = np.full(38, 10_000)
    with pytest.raises(ValueError, match="patch tokens must be in"):
        decode(bad, cfg)


def test_sequence_length_is_whole_frames_like_the_paper() -> None:
    assert frames_per_sequence(1024, 38) == 27  # 1026 tokens, the paper's ceil(1024 / 38) frames
    assert frames_per_sequence(37, 38) == 1 and frames_per_sequence(38, 38) == 2
    mask = nca_loss_mask(1026, 38)
    assert not mask[:38].any() and mask[38:].all()
