"""THE distribution test: our random rules score like the reference's (grid 12, temp 1e-4).

Reference (danihyunlee/nca-pre-pretraining, 4,096 random rules, n = 10): fractions in
<0.2, [.2,.3), [.3,.4), [.4,.5), [.5,1] = 20.1, 5.9, 9.6, 18.2, 46.1 %; median 0.483; max 0.669.
For n = 4 the maximum is 0.427 and for n = 2 it is 0.251.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nca.config import NCAConfig
from nca.profiles import complexity_profile

REFERENCE_PERCENT = np.array([20.1, 5.9, 9.6, 18.2, 46.1])
N_RULES = 4096


def test_score_distribution_matches_the_reference(stream_cache: Path) -> None:
    prof = complexity_profile(NCAConfig(alphabet=10), N_RULES, seed=0, cache_dir=stream_cache)
    ours = np.array(list(prof.band_fractions().values())) * N_RULES
    ref = np.round(REFERENCE_PERCENT / 100 * N_RULES)
    # Both are samples of 4,096 rules: a two-sample (homogeneity) chi-square test, alpha 0.001.
    _, p_value, _, _ = stats.chi2_contingency(np.stack([ours, ref]))
    assert p_value > 1e-3, f"fractions {np.round(100 * ours / N_RULES, 1)} vs {REFERENCE_PERCENT}"
    # and each bin separately within 4 standard errors of the difference of two proportions
    p = REFERENCE_PERCENT / 100
    se = np.sqrt(2 * p * (1 - p) / N_RULES)
    assert np.all(np.abs(ours / N_RULES - p) < 4 * se)
    assert abs(np.median(prof.scores) - 0.483) < 0.01
    assert abs(prof.max - 0.669) < 0.015


@pytest.mark.parametrize(("alphabet", "reference_max"), [(4, 0.427), (2, 0.251)])
def test_small_alphabets_cannot_reach_the_top_band(stream_cache: Path, alphabet: int,
                                                   reference_max: float) -> None:
    prof = complexity_profile(NCAConfig(alphabet=alphabet), N_RULES, seed=0, cache_dir=stream_cache)
    assert abs(prof.max - reference_max) < 0.015
    assert prof.band_fractions()["0.5-1"] == 0.0
