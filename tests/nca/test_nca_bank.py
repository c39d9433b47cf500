"""Score streams and rule banks: caching, held-out rules, bounded search, quantile bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nca.bank import SCORE_BLOCK, VAL_STRIDE, ScoreStream, select_rules
from nca.config import Band, BandUnreachableError, NCAConfig
from nca.profiles import complexity_profile


def test_stream_is_cached_and_deterministic(tmp_path: Path) -> None:
    cfg = NCAConfig(alphabet=4)
    a = ScoreStream(cfg, seed=0, cache_dir=tmp_path)
    first = a.scores("gzip", 600).copy()
    assert a.n_scored == 2 * SCORE_BLOCK
    b = ScoreStream(cfg, seed=0, cache_dir=tmp_path)
    assert b.n_scored == 2 * SCORE_BLOCK and np.array_equal(b.scores("gzip", 600), first)
    fresh = ScoreStream(cfg, seed=0, cache_dir=None, workers=1)
    assert np.array_equal(fresh.scores("gzip", 600), first)  # workers do not change scores
    assert not np.array_equal(ScoreStream(cfg, seed=1).scores("gzip", 600), first)


def test_corrupted_stream_cache_is_rescored(tmp_path: Path) -> None:
    cfg = NCAConfig(alphabet=3)
    a = ScoreStream(cfg, seed=0, cache_dir=tmp_path)
    scores = a.scores("gzip", 10).copy()
    assert a.path is not None
    (a.path / "scores.npy").write_bytes(b"garbage")
    b = ScoreStream(cfg, seed=0, cache_dir=tmp_path)
    assert b.n_scored == 0 and np.array_equal(b.scores("gzip", 10), scores)


def test_selection_holds_out_validation_rules(stream_cache: Path) -> None:
    stream = ScoreStream(NCAConfig(), seed=0, cache_dir=stream_cache)
    sel = select_rules(stream, Band(0.5, 1.0), 100, 10, max_candidates=10**5)
    assert len(sel.train_ids) == 100 and len(sel.val_ids) == 10
    assert not set(sel.train_ids) & set(sel.val_ids)
    assert np.all(sel.val_ids % VAL_STRIDE == VAL_STRIDE - 1)
    assert np.all(sel.train_ids % VAL_STRIDE != VAL_STRIDE - 1)
    assert np.all(sel.train_scores >= 0.5) and np.all(sel.val_scores >= 0.5)
    assert 0.35 < sel.acceptance < 0.6


def test_unfillable_band_fails_within_budget_with_one_line(tmp_path: Path) -> None:
    stream = ScoreStream(NCAConfig(alphabet=2), seed=0, cache_dir=tmp_path)
    with pytest.raises(BandUnreachableError) as err:
        select_rules(stream, Band(0.24, 0.2405), 50, 5, max_candidates=1024)
    msg = str(err.value)
    assert "\n" not in msg and "alphabet 2" in msg and "gzip[0.24, 0.2405)" in msg
    assert "acceptance" in msg and "highest score seen 0.2" in msg
    assert stream.n_scored <= 1024 + SCORE_BLOCK


def test_profile_refuses_unreachable_absolute_bands(stream_cache: Path) -> None:
    prof = complexity_profile(NCAConfig(alphabet=4), 1024, 0, cache_dir=stream_cache)
    with pytest.raises(BandUnreachableError, match=r"unreachable for alphabet 4: the highest gzip "
                                                   r"score of 1024 random rules is 0\.4"):
        prof.check_reachable(Band(0.5, 1.0), 10, 10**6)
    with pytest.raises(BandUnreachableError, match="over max_candidates=100"):
        prof.check_reachable(Band(0.3, 0.4), 100, 100)
    prof.check_reachable(Band(0.3, 0.4), 10, 10**6)


def test_quantile_bands_resolve_through_the_profile(stream_cache: Path) -> None:
    prof = complexity_profile(NCAConfig(alphabet=4), 1024, 0, cache_dir=stream_cache)
    top = prof.resolve(Band(0.8, 1.0, kind="quantile"))
    assert top.kind == "absolute" and top.upper == 1.0
    assert top.lower == pytest.approx(np.quantile(prof.scores, 0.8))
    assert prof.fraction_in(top) == pytest.approx(0.2, abs=0.02)
    assert len(prof.percentiles()) == 101 and list(prof.band_fractions()) == [
        "0-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5", "0.5-1"]
    assert list((stream_cache / "profiles").glob("*.json"))
