"""Token layout of NCA frames, exactly as the paper's `NCA_Tokenizer` writes it.

A frame of a (grid x grid) state is cut into patch x patch patches in row-major order over the
patch grid; a patch's token is `sum_k cell_k * n**k` with k over the patch's cells in row-major
order (little-endian digits). Each frame is `[start, patches..., end]`; a sequence is consecutive
frames of one simulation, and its first frame is not a training target.
"""

from __future__ import annotations

import numpy as np
import torch

from nca.config import NCAConfig


def patch_tokens(frames: torch.Tensor, config: NCAConfig) -> torch.Tensor:
    """Patch tokens of frames.

    Args:
        frames: (B, T, grid, grid) integer states.
        config: generator settings (alphabet, grid, patch).

    Returns:
        (B, T, patches_per_frame) int32 tokens in [0, alphabet**(patch**2)).
    """
    b, t = frames.shape[:2]
    p, side = config.patch, config.grid // config.patch
    cells = frames.to(torch.int32).reshape(b, t, side, p, side, p).permute(0, 1, 2, 4, 3, 5)
    cells = cells.reshape(b, t, side * side, p * p)
    tokens = cells[..., p * p - 1].clone()
    for k in range(p * p - 2, -1, -1):  # Horner: little-endian digits
        tokens.mul_(config.alphabet).add_(cells[..., k])
    return tokens


def frame_sequences(patches: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Wrap every frame in delimiters and concatenate the frames of each simulation.

    Args:
        patches: (B, T, P) patch tokens.
        start: start-of-frame token.
        end: end-of-frame token.

    Returns:
        (B, T * (P + 2)) int64 tokens.
    """
    b, t, _ = patches.shape
    starts = torch.full((b, t, 1), start, dtype=torch.int64, device=patches.device)
    ends = torch.full((b, t, 1), end, dtype=torch.int64, device=patches.device)
    return torch.cat([starts, patches.long(), ends], dim=2).reshape(b, -1)


def decode(tokens: np.ndarray, config: NCAConfig) -> np.ndarray:
    """Frames back from sequences of whole frames (inverse of tokenisation).

    Args:
        tokens: (..., T * frame_len) tokens; each frame opens and closes with a delimiter.
        config: generator settings the tokens were made with.

    Returns:
        (..., T, grid, grid) uint8 states.

    Raises:
        ValueError: the length is not whole frames, or a token is out of range for `config`.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    fl = config.frame_len
    if tokens.shape[-1] % fl:
        raise ValueError(f"{tokens.shape[-1]} tokens is not a whole number of {fl}-token frames")
    frames = tokens.reshape(tokens.shape[:-1] + (-1, fl))[..., 1:-1]
    if frames.size and (frames.min() < 0 or frames.max() >= config.patch_values):
        raise ValueError(f"patch tokens must be in [0, {config.patch_values}) for this config")
    p, side = config.patch, config.grid // config.patch
    digits = (frames[..., None] // config.alphabet ** np.arange(p * p)) % config.alphabet
    lead = digits.shape[:-3]
    cells = digits.reshape(lead + (-1, side, side, p, p)).swapaxes(-3, -2)
    return cells.reshape(lead + (-1, config.grid, config.grid)).astype(np.uint8)


def frames_per_sequence(seq_len: int, frame_len: int) -> int:
    """Whole frames per stored sequence: enough for `seq_len` model inputs plus one target.

    The paper builds ceil(seq_len / frame_len) frames (1026 tokens for seq_len 1024, grid 12)
    and trains on the first seq_len + 1 of them; we store whole frames, so that is 27 frames.
    """
    return -(-(seq_len + 1) // frame_len)


def nca_loss_mask(n_tokens: int, frame_len: int) -> np.ndarray:
    """(n_tokens,) bool: every position after the first frame is a target (delimiters too)."""
    mask = np.ones(n_tokens, dtype=bool)
    mask[:frame_len] = False
    return mask
