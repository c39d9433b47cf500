"""Control sources: Dyck-k and natural text, with the same dataset interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nca.controls import check_dyck, dyck_sequences
from nca.dataset import build
from nca.spec import DataSpec


def test_dyck_sequences_are_well_nested() -> None:
    seqs = dyck_sequences(64, 300, 3, np.random.default_rng(0))
    assert seqs.min() >= 0 and seqs.max() < 6
    assert all(check_dyck(s, 3) for s in seqs)
    assert not check_dyck(np.array([0, 4]), 3)  # opens type 0, closes type 1
    assert (seqs >= 3).mean() > 0.3  # real closing work, not only opens


def test_dyck_dataset(tmp_path: Path) -> None:
    built = build(DataSpec(source="dyck", dyck_k=4, min_val_sequences=3), 5000, cache_dir=tmp_path,
                  seed=0, seq_len=256)
    assert built.train.vocab_size == 8 and built.train.seq_len == 257
    tokens, mask = built.train.get(np.arange(len(built.train)))
    assert len(tokens) == 20 and all(check_dyck(t, 4) for t in tokens)
    assert not mask[:, 0].any() and mask[:, 1:].all()
    val = built.val.get(np.arange(3))[0]
    assert not any(np.array_equal(v, t) for v in val for t in tokens)
    assert build(DataSpec(source="dyck", dyck_k=4, min_val_sequences=3), 5000, cache_dir=tmp_path,
                 seed=0, seq_len=256).hit


def _corpus(path: Path, n_docs: int) -> bytes:
    docs = [f"document {i}: the quick brown fox jumps over the lazy dog." for i in range(n_docs)]
    path.write_text("\n".join(json.dumps({"text": d}) for d in docs))
    return "\n".join(docs).encode()


def test_text_dataset_reads_bytes_and_holds_out_the_end(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl", 200)
    spec = DataSpec(source="text", text_path=tmp_path / "c.jsonl", min_val_sequences=2)
    built = build(spec, 1000, cache_dir=tmp_path / "cache", seed=0, seq_len=99)
    assert built.train.vocab_size == 256 and built.train.bytes_per_token == 1.0
    tokens = built.train.get(np.arange(len(built.train)))[0]
    assert bytes(tokens.reshape(-1).astype(np.uint8)) == corpus[: tokens.size]
    val = built.val.get(np.arange(2))[0]
    assert bytes(val.reshape(-1).astype(np.uint8)) == corpus[-val.size :]
    # content-addressed: the same corpus at another path is the same dataset
    (tmp_path / "moved.jsonl").write_bytes((tmp_path / "c.jsonl").read_bytes())
    moved = DataSpec(source="text", text_path=tmp_path / "moved.jsonl", min_val_sequences=2)
    assert build(moved, 1000, cache_dir=tmp_path / "cache", seed=0, seq_len=99).hit


def test_text_corpus_too_small(tmp_path: Path) -> None:
    _corpus(tmp_path / "c.jsonl", 3)
    spec = DataSpec(source="text", text_path=tmp_path / "c.jsonl")
    with pytest.raises(ValueError, match=r"text corpus has \d+ bytes; \d+ needed"):
        build(spec, 10_000, cache_dir=tmp_path, seed=0)
    with pytest.raises(ValueError, match="is not a file"):
        build(DataSpec(source="text", text_path=tmp_path / "nope.txt"), 10, cache_dir=tmp_path)


def test_text_dataset_on_the_shared_corpus(tmp_path: Path, shared_data: Path) -> None:
    spec = DataSpec(source="text", text_path=shared_data / "web" / "train.jsonl")
    built = build(spec, 50_000, cache_dir=tmp_path, seed=0)
    tokens = built.train.get(np.arange(4))[0]
    text = bytes(tokens.reshape(-1).astype(np.uint8)).decode("utf-8", errors="replace")
    assert sum(c.isalpha() for c in text) > 0.5 * len(text)
