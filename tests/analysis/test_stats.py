"""Statistics on hand-made data whose answers are worked out by hand (or by scipy directly)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.stats import (
    NOISE,
    WILCOXON_MIN_N,
    best_setting,
    holm,
    lack_of_fit_p,
    mean_ci,
    paired_test,
    seed_noise,
    setting_stats,
)

T_975_DF2 = 4.302652729749464  # Student t table, 97.5% quantile, 2 degrees of freedom
T_975_DF3 = 3.182446305284263  # ... 3 degrees of freedom


def test_mean_ci_by_hand():
    # [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3).
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = T_975_DF2 / math.sqrt(3)
    assert mean == 2.0
    assert lo == pytest.approx(2.0 - half, rel=1e-12)
    assert hi == pytest.approx(2.0 + half, rel=1e-12)


def test_mean_ci_single_value_has_no_interval():
    mean, lo, hi = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(lo) and math.isnan(hi)


def test_mean_ci_rejects_empty():
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])


def test_paired_t_on_three_seeds_matches_hand_and_scipy_ttest_rel():
    scratch = np.array([1.50, 1.46, 1.52])
    loss = np.array([1.482, 1.4483, 1.5033])
    gains = 100 * (scratch - loss) / scratch
    r = paired_test(gains)
    # By hand: t = mean / (sd / sqrt(n)), two-sided p from the t distribution with n-1 dof.
    d = gains
    sd = math.sqrt(sum((x - d.mean()) ** 2 for x in d) / 2)
    t = d.mean() / (sd / math.sqrt(3))
    assert r.test == "paired t" and r.n == 3
    assert r.statistic == pytest.approx(t, rel=1e-10)
    assert r.sd == pytest.approx(sd, rel=1e-10)
    assert r.ci_low == pytest.approx(d.mean() - T_975_DF2 * sd / math.sqrt(3), rel=1e-10)
    # The same numbers through scipy's paired test on relative losses (scratch = 100).
    expected = sps.ttest_rel(100 * scratch / scratch, 100 * loss / scratch)
    assert r.p_value == pytest.approx(expected.pvalue, rel=1e-10)


def test_paired_t_docstring_example():
    r = paired_test([1.2, 0.8, 1.1])
    # mean 31/30, sd sqrt(0.13/3), t = 8.5862...; p = 2 * P(T_2 > t).
    t = (31 / 30) / (math.sqrt(0.13 / 3) / math.sqrt(3))
    p = 2 * (1 - sps.t.cdf(t, 2))
    assert r.statistic == pytest.approx(t, rel=1e-9)
    assert r.p_value == pytest.approx(p, rel=1e-9)
    assert r.verdict == "gain"


def test_wilcoxon_six_positive_pairs_exact_p():
    # n = 6, all differences positive: W- = 0; exact two-sided p = 2 * 1 / 2**6 = 0.03125.
    r = paired_test([0.4, 1.1, 0.9, 2.0, 0.6, 1.4])
    assert WILCOXON_MIN_N == 6
    assert r.test == "wilcoxon"
    assert r.p_value == pytest.approx(2 / 64, abs=1e-12)
    assert r.statistic == 0.0
    assert r.verdict == "gain"


def test_wilcoxon_mixed_signs_exact_p_by_enumeration():
    # |d| ranks: 0.3->1, 0.6->2, 0.8->3, 1.1->4, 1.5->5, 1.7->6, 2.0->7, 2.5->8; W- = 1 + 4 = 5.
    # Subsets of {1..8} with rank sum <= 5: {}, {1}, {2}, {3}, {1,2}, {4}, {1,3}, {5}, {1,4},
    # {2,3} -> 10 of 256, so the exact two-sided p is 2 * 10 / 256 = 0.078125.
    d = [1.5, -0.3, 2.0, 0.8, -1.1, 2.5, 0.6, 1.7]
    r = paired_test(d)
    assert r.test == "wilcoxon"
    assert r.statistic == 5.0
    assert r.p_value == pytest.approx(20 / 256, abs=1e-12)
    assert r.verdict == NOISE
    assert r.p_value == pytest.approx(sps.wilcoxon(d).pvalue, abs=1e-12)


def test_five_seeds_use_the_t_test():
    # Exact signed-rank could not go below 2/32 = 0.0625 here; the t-test can.
    r = paired_test([1.0, 1.2, 0.9, 1.1, 1.05])
    assert r.test == "paired t"
    assert r.p_value < 0.05 and r.verdict == "gain"


def test_harm_is_labelled():
    r = paired_test([-2.0, -2.2, -1.9])
    assert r.verdict == "harm" and r.ci_high < 0


def test_noise_when_interval_covers_zero():
    r = paired_test([1.5, -0.5, 0.4])
    assert r.ci_low < 0 < r.ci_high and r.p_value >= 0.05
    assert r.verdict == NOISE


def test_single_seed_gets_no_test():
    r = paired_test([3.0])
    assert r.test == "none" and math.isnan(r.p_value) and r.verdict.startswith("single seed")


def test_all_zero_differences_are_noise_with_p_one():
    r = paired_test([0.0, 0.0, 0.0])
    assert r.p_value == 1.0 and r.verdict == NOISE


def test_identical_nonzero_gains_are_not_testable():
    r = paired_test([1.0, 1.0, 1.0])
    assert math.isnan(r.p_value) and r.verdict.startswith("not testable")


def test_holm_by_hand():
    # Sorted p: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.03, 0.06, 0.06.
    out = holm([0.01, 0.04, 0.03, float("nan")])
    np.testing.assert_allclose(out[:3], [0.03, 0.06, 0.06])
    assert math.isnan(out[3])


def test_lack_of_fit_by_hand():
    """Seeds at three budgets going up then down: the means (0.5, 3.5, 0.5) lie on no line. The
    line is flat at 1.5: residual SS 13.5, within-budget SS 1.5 (3 df), lack of fit 12 (1 df),
    F = 12 / (1.5 / 3) = 24."""
    x, y = [0, 0, 1, 1, 2, 2], [0, 1, 3, 4, 0, 1]
    assert lack_of_fit_p(x, y) == pytest.approx(sps.f.sf(24.0, 1, 3)) and lack_of_fit_p(x, y) < 0.05
    straight = [0, 1, 1, 2, 2, 3]  # means on the line y = 0.5 + x, the same spread at each x
    assert lack_of_fit_p(x, straight) == pytest.approx(1.0)


def test_lack_of_fit_needs_three_budgets_and_repeats():
    assert np.isnan(lack_of_fit_p([0, 0, 1, 1], [0, 1, 2, 3]))  # two budgets: a line fits any
    assert np.isnan(lack_of_fit_p([0, 1, 2], [0, 5, 0]))  # no seed spread to compare with


def test_holm_caps_at_one():
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])


def _seeds(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """(setting, label, seed, gain) rows of one study, like seeds_frame makes them."""
    return pd.DataFrame([{
        "study": "s", "domain": "code", "number": i, "setting": st, "label": lb,
        "kind": "search", "describe": None, "source": "none" if lb == "scratch" else "nca",
        "band": "30-40%", "band_lower": 0.3, "band_upper": 0.4, "alphabet": 10, "seed": sd,
        "loss": 1.0, "scratch_loss": 1.0, "gain_pct": g, "ppl_gain_pct": g, "speedup": None,
    } for i, (st, lb, sd, g) in enumerate(rows)])


def test_setting_stats_on_hand_made_frame():
    seeds = _seeds([
        ("a", "A", 0, 1.2), ("a", "A", 1, 0.8), ("a", "A", 2, 1.1),   # clear gain
        ("b", "B", 0, 1.5), ("b", "B", 1, -0.5), ("b", "B", 2, 0.4),  # noise
        ("c", "C", 0, 3.0),                                           # one seed
        ("z", "scratch", 0, 0.0), ("z", "scratch", 1, 0.0),           # the reference
    ])
    out = setting_stats(seeds).set_index("setting")
    assert set(out.index) == {"a", "b", "c"}, "scratch itself is not a setting"
    a, b = paired_test([1.2, 0.8, 1.1]), paired_test([1.5, -0.5, 0.4])
    for key, ref in (("a", a), ("b", b)):
        row = out.loc[key]
        assert row["p_value"] == pytest.approx(ref.p_value, rel=1e-10)
        assert row["ci_low"] == pytest.approx(ref.ci_low, rel=1e-10)
        assert row["verdict"] == ref.verdict and row["test"] == "paired t"
    np.testing.assert_allclose(out.loc[["a", "b"], "p_holm"], holm([a.p_value, b.p_value]))
    assert out.loc["c", "verdict"].startswith("single seed")
    assert list(setting_stats(seeds)["label"]) == ["C", "A", "B"], "sorted by mean gain"
    assert out.loc["a", "trials"] == "0,1,2"


def test_setting_stats_vectorised_path_equals_paired_test():
    rng = np.random.default_rng(0)
    rows = [(f"s{k}", f"#{k}", seed, float(rng.normal(0.5, 1.0)))
            for k in range(30) for seed in range(int(rng.integers(2, 8)))]
    out = setting_stats(_seeds(rows))
    for _, row in out.iterrows():
        gains = [g for st, _, _, g in rows if st == row["setting"]]
        ref = paired_test(gains)
        assert row["test"] == ref.test
        assert row["p_value"] == pytest.approx(ref.p_value, rel=1e-9)
        assert row["ci_high"] == pytest.approx(ref.ci_high, rel=1e-9)
        assert row["verdict"] == ref.verdict


def test_seed_noise_pools_within_setting_variance():
    # Setting a: var 1 (2 dof); setting b: gains 2, 4 -> var 2 (1 dof); pooled sqrt(4/3).
    seeds = _seeds([("a", "A", 0, 1.0), ("a", "A", 1, 2.0), ("a", "A", 2, 3.0),
                    ("b", "B", 0, 2.0), ("b", "B", 1, 4.0), ("c", "C", 0, 9.0)])
    seeds["scratch_loss"] = seeds["seed"].map({0: 1.4, 1: 1.5, 2: 1.6})
    row = seed_noise(seeds).iloc[0]
    assert row["gain_sd_pooled"] == pytest.approx(math.sqrt(4 / 3))
    assert row["settings_pooled"] == 2
    assert row["scratch_loss_sd"] == pytest.approx(0.1)


def test_best_setting_prefers_several_seeds():
    seeds = _seeds([("a", "A", 0, 1.2), ("a", "A", 1, 0.8), ("c", "C", 0, 9.0)])
    assert best_setting(setting_stats(seeds), "s")["label"] == "A"
    with pytest.raises(ValueError, match="no setting"):
        best_setting(setting_stats(seeds), "other")


def test_line_fit_intervals_have_their_stated_coverage_at_three_seeds_per_budget():
    """The regime map's setting: 3 seeds at each of 2 budgets. The slope's t-interval covers
    the true slope 95% of the time (a bootstrap over seeds covered far less), and Fieller's
    crossing set (unbounded where the slope is not told from 0) covers the true crossing at
    least 95% of the time."""
    from analysis.stats import line_fit

    rng = np.random.default_rng(11)
    x = np.repeat(np.log10([0.8e6, 3.3e6]), 3)
    slope_hits = crossing_hits = 0
    n = 4000
    for _ in range(n):
        y = -2 + 4 * (x - 6) + rng.normal(0, 1.5, x.size)
        fit = line_fit(x, y)
        slope_hits += fit.slope_ci[0] <= 4 <= fit.slope_ci[1]
        low, high = fit.crossing_ci
        crossing_hits += (not np.isfinite(low)) or low <= 6.5 <= high
    assert 0.935 <= slope_hits / n <= 0.965
    assert crossing_hits / n >= 0.935


def test_a_bootstrap_over_three_seeds_per_budget_is_too_narrow():
    """Why the regime map no longer bootstraps: resampling 3 seeds within each budget covers
    the true slope well below 95% of the time."""
    rng = np.random.default_rng(12)
    x = np.repeat(np.log10([0.8e6, 3.3e6]), 3)
    groups = [np.flatnonzero(x == v) for v in np.unique(x)]
    hits, n = 0, 400
    for _ in range(n):
        y = 4 * x + rng.normal(0, 1.5, x.size)
        slopes = []
        for _ in range(400):
            idx = np.concatenate([rng.choice(g, size=g.size) for g in groups])
            slopes.append(np.polyfit(x[idx], y[idx], 1)[0])
        lo, hi = np.percentile(slopes, [2.5, 97.5])
        hits += lo <= 4 <= hi
    assert hits / n < 0.88
