"""What the trainer trains on: the `SequenceDataset` protocol and its array-backed forms.

Three implementations live here:

- `TokenArrayDataset`: fixed-length sequences in an (N, L) array plus one (L,) loss mask
  (NCA data, read from disk with `open_token_dataset`);
- `TextDataset`: a 1-D token stream cut into windows of L tokens that overlap by one token, so
  every token after the first is a prediction target exactly once;
- the on-disk format of docs/interfaces.md §1b (`open_token_dataset`, `write_token_dataset`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ncaio import TOKEN_FORMAT, atomic_write, atomic_write_text, sha256_file

__all__ = [
    "TOKEN_FORMAT",
    "SequenceDataset",
    "TextDataset",
    "TokenArrayDataset",
    "open_token_dataset",
    "write_token_dataset",
]



@runtime_checkable
class SequenceDataset(Protocol):
    """Anything the trainer can train on (docs/interfaces.md §1)."""

    vocab_size: int
    seq_len: int

    def __len__(self) -> int: ...

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tokens (B, L) int64 and loss_mask (B, L) bool for the sequences at `indices`."""
        ...


class TokenArrayDataset:
    """Sequences stored as rows of an (N, L) integer array (memmap or in memory).

    Args:
        tokens: (N, L) array of token ids in [0, vocab_size).
        vocab_size: size of the token alphabet.
        loss_mask: (L,) bool, True where a token is a prediction target; all True if None.
    """

    def __init__(self, tokens: np.ndarray, vocab_size: int, loss_mask: np.ndarray | None = None):
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError(f"tokens must be (N, L) with L >= 2, got shape {tokens.shape}")
        self.tokens = tokens
        self.vocab_size = int(vocab_size)
        self.seq_len = int(tokens.shape[1])
        mask = np.ones(self.seq_len, bool) if loss_mask is None else np.asarray(loss_mask, bool)
        if mask.shape != (self.seq_len,):
            raise ValueError(f"loss_mask shape {mask.shape} != ({self.seq_len},)")
        self.loss_mask = mask

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        # sorted reads are sequential on a memmap; put rows back in the asked order after
        order = np.argsort(idx, kind="stable")
        rows = np.empty((len(idx), self.seq_len), dtype=np.int64)
        rows[order] = self.tokens[idx[order]]
        return rows, np.broadcast_to(self.loss_mask, rows.shape).copy()


class TextDataset:
    """Windows of `seq_len` tokens over a 1-D token stream, consecutive windows sharing one token.

    Args:
        stream: 1-D array of token ids (memmap or in memory).
        vocab_size: tokenizer vocabulary size.
        seq_len: tokens per window L (the model sees L - 1 and predicts L - 1).
        bytes_per_token: UTF-8 bytes per token over this split, to convert losses to bits/byte.
    """

    def __init__(self, stream: np.ndarray, vocab_size: int, seq_len: int, bytes_per_token: float):
        if stream.ndim != 1:
            raise ValueError(f"stream must be 1-D, got shape {stream.shape}")
        if seq_len < 2 or len(stream) < seq_len:
            raise ValueError(
                f"seq_len={seq_len}: need 2 <= seq_len <= stream length ({len(stream)} tokens)"
            )
        self.stream = stream
        self.vocab_size = int(vocab_size)
        self.seq_len = int(seq_len)
        self.bytes_per_token = float(bytes_per_token)

    def __len__(self) -> int:
        return (len(self.stream) - 1) // (self.seq_len - 1)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window index out of range [0, {len(self)})")
        pos = idx[:, None] * (self.seq_len - 1) + np.arange(self.seq_len)  # (B, L)
        rows = self.stream[pos].astype(np.int64)
        return rows, np.ones(rows.shape, dtype=bool)


def open_token_dataset(root: str | Path, split: str, *, verify: bool = True) -> TokenArrayDataset:
    """Open one split of a token-dataset directory (docs/interfaces.md §1b), memory-mapped.

    Args:
        root: directory holding `manifest.json`, the token shards and `loss_mask.npy`.
        split: a split named in the manifest, e.g. "train" or "val".
        verify: check every shard's sha256 against the manifest (reads the shards once).

    Raises:
        ValueError: missing or malformed manifest, unknown split, bad shard shape or checksum.
    """
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        raise ValueError(f"{str(root)!r} is not a token dataset: no manifest.json in it")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != TOKEN_FORMAT:
        raise ValueError(f"{str(path)!r}: format {manifest.get('format')!r} != {TOKEN_FORMAT!r}")
    splits = manifest["splits"]
    if split not in splits:
        raise ValueError(f"{split!r} is not a split of {str(root)!r}; valid: {sorted(splits)}")
    seq_len, vocab = int(manifest["seq_len"]), int(manifest["vocab_size"])
    shards = []
    for shard in splits[split]["shards"]:
        file = root / shard["tokens"]
        if verify and sha256_file(file) != shard["sha256"]:
            raise ValueError(f"{str(file)!r}: sha256 does not match the manifest")
        arr = np.load(file, mmap_mode="r")
        if arr.ndim != 2 or arr.shape[1] != seq_len or arr.shape[0] != shard["n_sequences"]:
            raise ValueError(f"{str(file)!r}: shape {arr.shape} does not match the manifest")
        shards.append(arr)
    tokens = shards[0] if len(shards) == 1 else np.concatenate(shards)
    mask = np.load(root / manifest["loss_mask"]) if manifest.get("loss_mask") else None
    return TokenArrayDataset(tokens, vocab, mask)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, array)


def write_token_dataset(
    root: str | Path,
    splits: dict[str, np.ndarray],
    *,
    vocab_size: int,
    loss_mask: np.ndarray | None = None,
    shard_sequences: int = 65_536,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write token splits in the §1b format; the manifest is written last, atomically.

    Args:
        root: target directory (created).
        splits: split name → (N, L) token array.
        vocab_size: token alphabet size; shards are uint16 up to 65536, else uint32.
        loss_mask: (L,) bool shared by every sequence; all True if None.
        shard_sequences: sequences per shard file.
        extra: producer-specific manifest fields.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    seq_len = {a.shape[1] for a in splits.values()}
    if len(seq_len) != 1:
        raise ValueError(f"splits disagree on seq_len: {sorted(seq_len)}")
    (L,) = seq_len
    dtype = np.uint16 if vocab_size <= 65_536 else np.uint32
    mask = np.ones(L, bool) if loss_mask is None else np.asarray(loss_mask, bool)
    _atomic_save(root / "loss_mask.npy", mask)
    manifest: dict[str, Any] = {**(extra or {}), "format": TOKEN_FORMAT,
                                "vocab_size": int(vocab_size), "seq_len": int(L),
                                "loss_mask": "loss_mask.npy", "splits": {}}
    for name, arr in splits.items():
        shards = []
        for k, start in enumerate(range(0, len(arr), shard_sequences)):
            file = root / f"{name}_{k:05d}.npy"
            _atomic_save(file, np.asarray(arr[start:start + shard_sequences], dtype=dtype))
            n = min(shard_sequences, len(arr) - start)
            shards.append({"tokens": file.name, "n_sequences": n, "sha256": sha256_file(file)})
        manifest["splits"][name] = {"n_sequences": len(arr), "shards": shards}
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=1))
    return root
