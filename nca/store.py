"""Token datasets on disk (`ncasearch-tokens/1`): sharded .npy arrays, a manifest, a loss mask.

Layout (see docs/interfaces.md, section 1b): `manifest.json`, `loss_mask.npy` (seq_len,) bool
shared by every sequence, and per split shards `<split>_<i:05d>.npy` of shape (n, seq_len),
uint16 while the vocabulary fits, else uint32. Shards are written into a staging directory that
is renamed into place, and every shard's sha256 is in the manifest, so a corrupted or truncated
shard is detected before it is served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ncaio import TOKEN_FORMAT, atomic_write_text, sha256_file

"""Format tag in every manifest."""
SHARD_SEQUENCES = 8192
"""Sequences per shard (about 17 MB at the paper's 1026 tokens and uint16)."""
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while the vocabulary fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends sequences of one split to shards in `directory`."""

    def __init__(self, directory: Path, split: str, seq_len: int, vocab_size: int) -> None:
        self.directory, self.split, self.seq_len = directory, split, seq_len
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = vocab_size
        self.shards: list[dict[str, Any]] = []
        self._buffer: list[np.ndarray] = []
        self._buffered = 0

    @property
    def n_sequences(self) -> int:
        """Sequences written or buffered."""
        return sum(s["n_sequences"] for s in self.shards) + self._buffered

    def add(self, tokens: np.ndarray) -> None:
        """Append (B, seq_len) tokens in [0, vocab_size)."""
        if tokens.ndim != 2 or tokens.shape[1] != self.seq_len:
            raise ValueError(f"expected (B, {self.seq_len}) tokens, got {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"tokens outside [0, {self.vocab_size})")
        self._buffer.append(np.asarray(tokens).astype(self.dtype, copy=False))
        self._buffered += len(tokens)
        while self._buffered >= SHARD_SEQUENCES:
            self._flush(SHARD_SEQUENCES)

    def close(self) -> dict[str, Any]:
        """Flush the last shard; the split's manifest entry."""
        if self._buffered:
            self._flush(self._buffered)
        return {"n_sequences": self.n_sequences, "shards": self.shards}

    def _flush(self, n: int) -> None:
        data = np.concatenate(self._buffer)
        shard, rest = data[:n], data[n:]
        name = f"{self.split}_{len(self.shards):05d}.npy"
        np.save(self.directory / name, shard)
        self.shards.append({"tokens": name, "n_sequences": int(n),
                            "sha256": sha256_file(self.directory / name)})
        self._buffer, self._buffered = ([rest], len(rest)) if len(rest) else ([], 0)


def write_manifest(directory: Path, manifest: dict[str, Any], loss_mask: np.ndarray) -> None:
    """Write the loss mask and the manifest (last, so a manifest means a complete dataset)."""
    np.save(directory / "loss_mask.npy", loss_mask.astype(bool))
    manifest = dict(manifest, format=TOKEN_FORMAT, loss_mask="loss_mask.npy",
                    loss_mask_sha256=sha256_file(directory / "loss_mask.npy"))
    atomic_write_text(directory / "manifest.json", json.dumps(manifest, indent=1))


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a dataset directory."""
    manifest: dict[str, Any] = json.loads((Path(directory) / "manifest.json").read_text())
    return manifest


def verify(directory: Path) -> str | None:
    """Why the dataset in `directory` cannot be served, or None when every checksum matches."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except (OSError, ValueError) as err:
        return f"manifest unreadable ({type(err).__name__})"
    if manifest.get("format") != TOKEN_FORMAT:
        return f"format {manifest.get('format')!r} is not {TOKEN_FORMAT!r}"
    files = [(manifest["loss_mask"], manifest.get("loss_mask_sha256"))]
    for split in SPLITS:
        files += [(s["tokens"], s["sha256"]) for s in manifest["splits"][split]["shards"]]
    for name, digest in files:
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != digest:
            return f"{name} fails its sha256 check"
    return None


class TokenDataset:
    """One split of an on-disk token dataset, memory-mapped (the `SequenceDataset` protocol).

    Attributes:
        vocab_size: tokens are in [0, vocab_size).
        seq_len: tokens per sequence.
        bytes_per_token: UTF-8 bytes per token (text datasets only).
    """

    def __init__(self, directory: Path, split: str, manifest: dict[str, Any] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is invalid; valid: {list(SPLITS)}")
        self.directory = Path(directory)
        self.manifest = manifest or read_manifest(self.directory)
        self.vocab_size: int = int(self.manifest["vocab_size"])
        self.seq_len: int = int(self.manifest["seq_len"])
        if "bytes_per_token" in self.manifest:
            self.bytes_per_token = float(self.manifest["bytes_per_token"])
        entry = self.manifest["splits"][split]
        self._shards = [np.load(self.directory / s["tokens"], mmap_mode="r")
                        for s in entry["shards"]]
        sizes = [len(s) for s in self._shards]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._mask = np.load(self.directory / self.manifest["loss_mask"])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequences at `indices`: tokens (B, L) int64 and loss_mask (B, L) bool."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices must be in [0, {len(self)})")
        shard = np.searchsorted(self._starts, indices, side="right") - 1
        tokens = np.empty((len(indices), self.seq_len), dtype=np.int64)
        for s in np.unique(shard):
            rows = shard == s
            tokens[rows] = self._shards[s][indices[rows] - self._starts[s]]
        mask = np.broadcast_to(self._mask, tokens.shape).copy()
        return tokens, mask
