"""`build`: on-disk layout, manifest, held-out rules, cache hits, corruption recovery,
determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nca.dataset
from nca.bank import ScoreStream, select_rules
from nca.config import Band, BandUnreachableError, NCAConfig
from nca.dataset import build, dataset_key
from nca.rules import reference_logits, sample_rules
from nca.tokens import decode
from tests.nca._nca_helpers import small_spec

N_TOKENS = 20_000  # 20 sequences of 1026 tokens


def _follows_rule(frames: np.ndarray, alphabet: int, seed: int, rule_id: int) -> float:
    """Fraction of cell updates in `frames` (T, H, W) that are the rule's argmax."""
    params = sample_rules(alphabet, seed, [rule_id])
    x = torch.from_numpy(frames[:-1].astype(np.int64))
    pred = reference_logits(params.select(torch.zeros(len(x), dtype=torch.long)), x).argmax(1)
    return float((pred.numpy() == frames[1:]).mean())


def test_layout_manifest_and_held_out_rules(stream_cache: Path) -> None:
    spec = small_spec()
    built = build(spec, N_TOKENS, cache_dir=stream_cache, seed=0)
    m = built.manifest
    assert built.train.seq_len == m["seq_len"] == 1026 and built.train.vocab_size == 10_002
    assert len(built.train) == 20 and len(built.val) == 4
    assert m["tokens"] == {"train": 20 * 1026, "val": 4 * 1026}
    assert m["format"] == "ncasearch-tokens/1" and m["code_version"] and m["key"] == built.key
    assert np.load(built.path / m["splits"]["train"]["shards"][0]["tokens"]).dtype == np.uint16
    stage = m["stages"][0]
    assert stage["band"]["lower"] == 0.5 and stage["complexity"]["min"] >= 0.5
    assert 0.35 < m["acceptance_rate"] < 0.6 and m["complexity_mean"] >= 0.5
    tokens, mask = built.train.get(np.array([0, 19, 3]))
    assert tokens.shape == mask.shape == (3, 1026) and tokens.dtype == np.int64
    assert not mask[:, :38].any() and mask[:, 38:].all()
    frames = decode(tokens, NCAConfig())
    assert frames.shape == (3, 27, 12, 12)
    # sequences are simulations of the bank's rules; the val split uses held-out rules only
    stream = ScoreStream(NCAConfig(), 0, stream_cache)
    sel = select_rules(stream, Band(0.5, 1.0), 20, 4, max_candidates=10**5)
    assert _follows_rule(frames[0], 10, 0, int(sel.train_ids[0])) > 0.95
    val_frames = decode(built.val.get(np.array([0]))[0], NCAConfig())[0]
    assert _follows_rule(val_frames, 10, 0, int(sel.val_ids[0])) > 0.95
    assert _follows_rule(val_frames, 10, 0, int(sel.train_ids[0])) < 0.5


def test_second_build_is_a_cache_hit(tmp_path: Path) -> None:
    first = build(small_spec(), N_TOKENS, cache_dir=tmp_path, seed=1)
    again = build(small_spec(), N_TOKENS, cache_dir=tmp_path, seed=1)
    assert not first.hit and again.hit and again.key == first.key
    assert again.manifest == first.manifest
    assert [p.name for p in (tmp_path / "nca").iterdir()] == [first.key]  # no staging leftovers


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_corrupted_dataset_is_rebuilt_not_served(tmp_path: Path, damage: str) -> None:
    built = build(small_spec(), N_TOKENS, cache_dir=tmp_path, seed=2)
    clean = built.train.get(np.arange(len(built.train)))[0]
    shard = built.path / "train_00000.npy"
    data = shard.read_bytes()
    if damage == "flip":
        shard.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    elif damage == "truncate":
        shard.write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        shard.unlink()
    else:
        (built.path / "manifest.json").write_text("{")
    rebuilt = build(small_spec(), N_TOKENS, cache_dir=tmp_path, seed=2)
    assert not rebuilt.hit and rebuilt.manifest["rebuilt_because"]
    assert np.array_equal(rebuilt.train.get(np.arange(len(rebuilt.train)))[0], clean)


def test_same_seed_same_tokens_any_worker_count(tmp_path: Path, stream_cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    a = build(small_spec(), N_TOKENS, cache_dir=stream_cache, seed=0)
    monkeypatch.setattr(nca.dataset, "default_workers", lambda device: 1)
    b = build(small_spec(), N_TOKENS, cache_dir=tmp_path, seed=0)
    assert b.key == a.key and not b.hit
    assert a.manifest["splits"] == b.manifest["splits"]  # identical shard checksums


def test_key_covers_everything_that_changes_tokens() -> None:
    base = dataset_key(small_spec(), N_TOKENS, 0, 1024)
    variants = [
        dataset_key(small_spec(), N_TOKENS + 1, 0, 1024),
        dataset_key(small_spec(), N_TOKENS, 1, 1024),
        dataset_key(small_spec(), N_TOKENS, 0, 512),
        dataset_key(small_spec(Band(0.4, 1.0)), N_TOKENS, 0, 1024),
        dataset_key(small_spec(alphabet=9), N_TOKENS, 0, 1024),
        dataset_key(small_spec(val_fraction=0.1), N_TOKENS, 0, 1024),
        dataset_key(small_spec(sequences_per_rule=2), N_TOKENS, 0, 1024),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_unreachable_band_is_refused_before_any_search(tmp_path: Path) -> None:
    with pytest.raises(BandUnreachableError, match="unreachable for alphabet 4") as err:
        build(small_spec(Band(0.5, 1.0), alphabet=4), N_TOKENS, cache_dir=tmp_path, seed=0)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "nca").exists() or not any((tmp_path / "nca").iterdir())


def test_sequences_per_rule(stream_cache: Path) -> None:
    built = build(small_spec(sequences_per_rule=4), N_TOKENS, cache_dir=stream_cache, seed=0)
    assert built.manifest["stages"][0]["rules"] == {"train": 5, "val": 1}
    frames = decode(built.train.get(np.arange(8))[0], NCAConfig())
    stream = ScoreStream(NCAConfig(), 0, stream_cache)
    sel = select_rules(stream, Band(0.5, 1.0), 2, 1, max_candidates=10**5)
    for i in range(8):
        assert _follows_rule(frames[i], 10, 0, int(sel.train_ids[i // 4])) > 0.95
    assert not np.array_equal(frames[0], frames[1])  # same rule, different simulations


@pytest.mark.parametrize("bad", [{"n_tokens": 0}, {"seq_len": 0}, {"seed": -1}])
def test_bad_build_arguments(tmp_path: Path, bad: dict) -> None:
    kw = {"n_tokens": N_TOKENS, "seq_len": 1024, "seed": 0} | bad
    with pytest.raises(ValueError, match="accepted: an integer >="):
        build(small_spec(), kw.pop("n_tokens"), cache_dir=tmp_path, **kw)


def test_manifest_is_json_with_resolved_config(stream_cache: Path) -> None:
    built = build(small_spec(), N_TOKENS, cache_dir=stream_cache, seed=0)
    on_disk = json.loads((built.path / "manifest.json").read_text())
    assert on_disk["spec"]["curriculum"]["stages"][0]["nca"]["temperature"] == 1e-4
    assert on_disk["loss_mask"] == "loss_mask.npy" and on_disk["vocab_size"] == 10_002
