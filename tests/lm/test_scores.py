from __future__ import annotations

import math

import pytest

from lm.scores import score, tokens_to_reach

SCRATCH = [(0, 5.0), (100, 4.0), (200, 3.0), (300, 2.5), (400, 2.0)]


def test_speedup_interpolates_between_evaluations():
    # reaches scratch's final 2.0 halfway between 100 (2.4) and 200 (1.6): 150 tokens
    run = [(0, 5.0), (100, 2.4), (200, 1.6), (300, 1.5), (400, 1.4)]
    s = score(run, SCRATCH, bytes_per_token=1.0)
    assert s.tokens_to_scratch_loss == pytest.approx(150.0)
    assert s.speedup == pytest.approx(400 / 150)
    assert s.gain_pct == pytest.approx((2.0 - 1.4) / 2.0 * 100)
    assert s.scratch_final_loss == 2.0


def test_not_reached_gives_none_and_a_negative_gain():
    run = [(0, 5.0), (200, 3.0), (400, 2.2)]
    s = score(run, SCRATCH, bytes_per_token=1.0)
    assert s.speedup is None and s.tokens_to_scratch_loss is None
    assert s.gain_pct == pytest.approx(-10.0)


def test_exact_hit_on_an_evaluation_and_scratch_against_itself():
    assert tokens_to_reach([(0, 5.0), (300, 2.0), (400, 1.0)], 2.0) == 300
    s = score(SCRATCH, SCRATCH, bytes_per_token=1.0)
    assert s.speedup == pytest.approx(1.0) and s.gain_pct == 0.0


def test_bits_per_byte_and_perplexity():
    s = score([(0, 5.0), (10, math.log(2) * 2)], None, bytes_per_token=4.0)
    assert s.bpb == pytest.approx(0.5) and s.perplexity == pytest.approx(4.0)
    assert s.gain_pct is None and s.speedup is None


def test_bad_curves_are_refused():
    with pytest.raises(ValueError, match="empty"):
        score([], SCRATCH, 1.0)
    with pytest.raises(ValueError, match="increasing"):
        score([(0, 3.0), (0, 2.0)], SCRATCH, 1.0)
    with pytest.raises(ValueError, match="bytes_per_token"):
        score(SCRATCH, SCRATCH, 0.0)
