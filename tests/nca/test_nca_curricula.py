"""Curricula on disk: the token order follows the family; mixed alphabets share a vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nca.complexity import gzip_ratio
from nca.config import Band, NCAConfig, Stage
from nca.curriculum import Curriculum
from nca.dataset import build
from nca.spec import DataSpec

SIMPLE, COMPLEX = Band(0.05, 0.25), Band(0.55, 1.0)
N_TOKENS = 24 * 1026


def _sequence_scores(tokens: np.ndarray, frame_len: int = 38) -> np.ndarray:
    """Gzip score of each sequence's first 10 frames (its own simulation, not the rule's)."""
    frames = tokens[:, : 10 * frame_len].reshape(len(tokens), 10, frame_len)[:, :, 1:-1]
    return np.array([gzip_ratio(f.astype("<i4").tobytes()) for f in frames])


def _spec(cur: Curriculum) -> DataSpec:
    return DataSpec(source="nca", curriculum=cur, profile_rules=512, min_val_sequences=2)


@pytest.mark.parametrize("family", ["ascending", "descending"])
def test_sequential_families_order_the_stream(stream_cache: Path, family: str) -> None:
    cur = getattr(Curriculum, family)(NCAConfig(), [COMPLEX, SIMPLE])
    built = build(_spec(cur), N_TOKENS, cache_dir=stream_cache, seed=0)
    assert built.manifest["stage_boundaries"] == [[0, 12], [12, 24]]
    scores = _sequence_scores(built.train.get(np.arange(24))[0])
    first, second = scores[:12].mean(), scores[12:].mean()
    assert (first < second) if family == "ascending" else (first > second)
    assert abs(first - second) > 0.2


def test_mixture_interleaves_stages(stream_cache: Path) -> None:
    cur = Curriculum.mixture(NCAConfig(), [SIMPLE, COMPLEX], shares=[0.25, 0.75])
    built = build(_spec(cur), N_TOKENS, cache_dir=stream_cache, seed=0)
    assert built.manifest["stage_boundaries"] is None
    stage, _ = cur.order(cur.sequence_counts(24))
    complex_seq = _sequence_scores(built.train.get(np.arange(24))[0]) > 0.4
    assert (complex_seq == (stage == 1)).mean() > 0.85
    assert stage[:8].tolist().count(0) == 2  # interleaved from the start, not appended


def test_mixed_alphabets_use_one_vocabulary(stream_cache: Path) -> None:
    cur = Curriculum(family="mixture", stages=(
        Stage(nca=NCAConfig(alphabet=4), band=Band(0.2, 0.45), share=0.5),
        Stage(nca=NCAConfig(alphabet=10), band=COMPLEX, share=0.5)))
    built = build(_spec(cur), 8 * 1026, cache_dir=stream_cache, seed=0)
    tokens = built.train.get(np.arange(8))[0]
    stage, _ = cur.order(cur.sequence_counts(8))
    assert built.train.vocab_size == 10_002
    assert (tokens[:, ::38] == 10_000).all() and (tokens[:, 37::38] == 10_001).all()
    patches = tokens.reshape(8, -1, 38)[:, :, 1:-1]
    assert patches[stage == 0].max() < 4**4 and patches[stage == 1].max() >= 4**4
