from __future__ import annotations

import json

import numpy as np
import pytest

from lm.data import SequenceDataset, TextDataset, open_token_dataset, write_token_dataset


def test_token_dataset_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    train, val = rng.integers(0, 10002, (10, 12)), rng.integers(0, 10002, (3, 12))
    mask = np.arange(12) >= 4
    write_token_dataset(tmp_path, {"train": train, "val": val}, vocab_size=10002, loss_mask=mask,
                        shard_sequences=4, extra={"producer": "test"})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["splits"]["train"]["shards"]) == 3 and manifest["producer"] == "test"
    assert np.load(tmp_path / "train_00000.npy").dtype == np.uint16
    ds = open_token_dataset(tmp_path, "train")
    assert isinstance(ds, SequenceDataset)
    assert (len(ds), ds.seq_len, ds.vocab_size) == (10, 12, 10002)
    tokens, got_mask = ds.get(np.array([9, 0, 5]))
    assert np.array_equal(tokens, train[[9, 0, 5]]) and tokens.dtype == np.int64
    assert np.array_equal(got_mask[1], mask)


def test_corrupt_or_wrong_directories_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no manifest.json"):
        open_token_dataset(tmp_path, "train")
    write_token_dataset(tmp_path, {"train": np.zeros((2, 5), int)}, vocab_size=7)
    with pytest.raises(ValueError, match=r"'val' is not a split.*\['train'\]"):
        open_token_dataset(tmp_path, "val")
    np.save(tmp_path / "train_00000.npy", np.ones((2, 5), np.uint16))
    with pytest.raises(ValueError, match="sha256"):
        open_token_dataset(tmp_path, "train")


def test_text_windows_overlap_by_one_token():
    ds = TextDataset(np.arange(21, dtype=np.uint16), vocab_size=257, seq_len=5, bytes_per_token=1.0)
    assert len(ds) == 5
    tokens, mask = ds.get(np.array([0, 4]))
    assert tokens.tolist() == [[0, 1, 2, 3, 4], [16, 17, 18, 19, 20]] and mask.all()
    with pytest.raises(IndexError):
        ds.get(np.array([5]))
