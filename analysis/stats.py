"""Statistics over seeds: is a setting's gain over scratch real or seed noise?

Every trial records, per seed, its final loss and the scratch baseline's final loss *of the same
seed*, so the natural test is paired: it works on the per-seed gains
``100 * (scratch - loss) / scratch`` and asks whether their centre is zero.

- 95% interval: Student t over seeds, ``mean ± t(0.975, n-1) * sd / sqrt(n)``.
- Test: Wilcoxon signed-rank (two-sided, exact for small n) when there are at least
  :data:`WILCOXON_MIN_N` seeds; below that a paired t-test, because the exact signed-rank test on
  n ≤ 5 pairs cannot reach p < 0.05 at all (its smallest two-sided p is ``2 / 2**n`` =
  0.0625 at n = 5), so it could never call anything a gain.
- Verdict: ``gain`` / ``harm`` only when p < alpha *and* the interval excludes 0; otherwise
  ``not distinguishable from noise``. A single seed gets no test.
- Holm's step-down adjustment across the settings of one study, since a search tests many.

Example:
    >>> r = paired_test([1.2, 0.8, 1.1])
    >>> r.test, round(r.p_value, 4), r.verdict
    ('paired t', 0.0133, 'gain')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from analysis.frame import SCRATCH_SOURCES, domain_key

__all__ = [
    "NOISE", "POWER", "WILCOXON_MIN_N", "LineFit", "PairedTest", "best_setting", "holm",
    "lack_of_fit_p", "line_fit", "mean_ci", "min_detectable_effect", "paired_t_power",
    "paired_test", "seed_noise", "seeds_for_effect", "setting_stats",
]

WILCOXON_MIN_N = 6
"""Smallest number of seeds for which the signed-rank test is used instead of a paired t-test."""
NOISE = "not distinguishable from noise"
"""Verdict of a setting whose gain over scratch is not significant."""
_SINGLE = "single seed (no test)"
_CONSTANT = "not testable (identical per-seed gains)"


@dataclass(frozen=True, kw_only=True, slots=True)
class PairedTest:
    """Summary of one setting's per-seed gains against scratch."""

    n: int
    """Number of seeds (pairs)."""
    mean: float
    """Mean gain, % of scratch loss (positive = better than scratch)."""
    sd: float
    """Sample standard deviation of the per-seed gains (NaN for one seed)."""
    ci_low: float
    """Lower end of the 95% t-interval of the mean (NaN for one seed)."""
    ci_high: float
    """Upper end of the 95% t-interval of the mean (NaN for one seed)."""
    test: str
    """``wilcoxon``, ``paired t`` or ``none``."""
    statistic: float
    """The test statistic (W or t; NaN when no test)."""
    p_value: float
    """Two-sided p-value (NaN when no test)."""
    verdict: str
    """``gain``, ``harm``, :data:`NOISE`, or why no test was possible."""


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95
            ) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval: ``(mean, low, high)``; NaN bounds for n < 2."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value; got none")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = special.stdtrit(x.size - 1, 0.5 + confidence / 2) * x.std(ddof=1) / np.sqrt(x.size)
    return mean, mean - float(half), mean + float(half)


def _verdict(mean: float, low: float, high: float, p: float, alpha: float) -> str:
    if p < alpha and (low > 0 or high < 0):
        return "gain" if mean > 0 else "harm"
    return NOISE


def paired_test(gains: Sequence[float] | np.ndarray, alpha: float = 0.05) -> PairedTest:
    """Test per-seed gains (paired differences vs scratch of the same seeds) against zero.

    Args:
        gains: Per-seed gain %, i.e. ``100 * (scratch_i - loss_i) / scratch_i``.
        alpha: Significance level for the verdict.

    Returns:
        The interval, the test used, its p-value and the verdict.
    """
    x = np.asarray(gains, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("paired_test needs at least one finite gain; got none")
    mean, low, high = mean_ci(x)
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    if x.size == 1:
        return PairedTest(n=1, mean=mean, sd=sd, ci_low=low, ci_high=high, test="none",
                          statistic=float("nan"), p_value=float("nan"), verdict=_SINGLE)
    if np.all(x == 0):
        return PairedTest(n=x.size, mean=0.0, sd=0.0, ci_low=0.0, ci_high=0.0, test="none",
                          statistic=0.0, p_value=1.0, verdict=NOISE)
    if sd == 0:
        return PairedTest(n=x.size, mean=mean, sd=sd, ci_low=low, ci_high=high, test="none",
                          statistic=float("nan"), p_value=float("nan"), verdict=_CONSTANT)
    if x.size >= WILCOXON_MIN_N:
        from scipy.stats import wilcoxon  # scipy.stats takes seconds to import; rarely needed

        res = wilcoxon(x)
        test, statistic, p = "wilcoxon", float(res.statistic), float(res.pvalue)
    else:
        test, statistic, p = "paired t", *_t_test(mean, sd, x.size)
    return PairedTest(n=int(x.size), mean=mean, sd=sd, ci_low=low, ci_high=high, test=test,
                      statistic=statistic, p_value=p, verdict=_verdict(mean, low, high, p, alpha))


def _t_test(mean: float, sd: float, n: int) -> tuple[float, float]:
    """One-sample t statistic against 0 and its two-sided p-value (Student t, n - 1 dof)."""
    t = mean / (sd / np.sqrt(n))
    return float(t), float(2 * special.stdtr(n - 1, -abs(t)))


def lack_of_fit_p(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """p-value of the lack-of-fit F test of a straight line ``y = a + b x`` whose ``x`` values
    repeat (seeds at each budget): the spread of the group means around the line against the
    spread within the groups. A small p says a line does not describe the groups. NaN with
    fewer than three distinct ``x``, or no repeats to measure the spread within groups."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    levels = np.unique(xs)
    k, n = levels.size, xs.size
    if k < 3 or n <= k:
        return float("nan")
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = float(np.sum((ys - (intercept + slope * xs)) ** 2))
    pure = float(sum(np.sum((ys[xs == v] - ys[xs == v].mean()) ** 2) for v in levels))
    if pure == 0.0:
        return float("nan")
    f = max(0.0, residual - pure) / (k - 2) / (pure / (n - k))
    return float(special.fdtrc(k - 2, n - k, f))


@dataclass(frozen=True, kw_only=True, slots=True)
class LineFit:
    """A least-squares line ``y = intercept + slope x`` with t-intervals (n - 2 dof)."""

    slope: float
    """Change in y per unit of x."""
    intercept: float
    """y at x = 0."""
    slope_ci: tuple[float, float]
    """95% t-interval of the slope: exact coverage for normal errors, at any n >= 3."""
    crossing: float
    """Where the line crosses y = 0 (NaN for a flat line)."""
    crossing_ci: tuple[float, float]
    """Fieller's 95% interval of the crossing; NaN where the slope is not distinguishable
    from 0 (the interval is then unbounded)."""


def line_fit(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
             confidence: float = 0.95) -> LineFit:
    """Ordinary least squares with its t-interval for the slope and Fieller's interval for
    the x where the line crosses zero. Bootstrapping seeds within a handful of budgets gives
    intervals that are too narrow at n = 3 per budget; these have the stated coverage under
    normal errors (tests/analysis/test_stats.py checks it by simulation)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = xs.size
    if n < 3 or np.unique(xs).size < 2:
        raise ValueError(f"line_fit needs 3 or more points at 2 or more x; got {n}")
    mean_x = xs.mean()
    sxx = float(np.sum((xs - mean_x) ** 2))
    slope = float(np.sum((xs - mean_x) * (ys - ys.mean())) / sxx)
    intercept = float(ys.mean() - slope * mean_x)
    s2 = float(np.sum((ys - intercept - slope * xs) ** 2)) / (n - 2)
    t = float(special.stdtrit(n - 2, 0.5 + confidence / 2))
    half = t * np.sqrt(s2 / sxx)
    crossing = -intercept / slope if slope != 0 else float("nan")
    # Fieller: the x0 where |a + b x0| <= t s sqrt(1/n + (x0 - mean_x)^2 / sxx)
    q = t * t * s2
    a2, b1, c0 = (slope ** 2 - q / sxx, 2 * (intercept * slope + q * mean_x / sxx),
                  intercept ** 2 - q / n - q * mean_x ** 2 / sxx)
    if a2 > 0:
        root = np.sqrt(max(0.0, b1 * b1 - 4 * a2 * c0))
        low, high = sorted(((-b1 - root) / (2 * a2), (-b1 + root) / (2 * a2)))
    else:
        low = high = float("nan")
    return LineFit(slope=slope, intercept=intercept, slope_ci=(slope - half, slope + half),
                   crossing=crossing, crossing_ci=(float(low), float(high)))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN stays NaN and does not count as a test."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(stepped, 1.0)
    return out


def setting_stats(seeds: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per setting and domain with its seed statistics, test, p-values and verdict.

    Rows whose ``source`` is ``none``/``scratch`` are left out: scratch is the reference every
    gain is measured against, not a setting. Each domain of a multi-domain study is a study of
    its own here: a setting has a row per domain, and Holm's correction runs over one domain's
    settings.

    Args:
        seeds: :func:`analysis.frame.seeds_frame` output.
        alpha: Significance level for the verdict.

    Returns:
        Columns ``study, setting, domain, label, band, band_lower, band_upper, alphabet, source,
        describe, trials, n_seeds, gain_mean, gain_sd, ci_low, ci_high, ppl_gain_mean,
        speedup_mean, n_reached, test, statistic, p_value, p_holm, verdict`` (the NCA effect:
        vs scratch with the same recipe) and, when the seeds carry it, ``net_mean, net_ci_low,
        net_ci_high, net_p_value, net_p_holm, net_verdict`` (the net effect: vs the best scratch
        recipe), sorted by study, domain, then mean gain (best first).
    """
    d = seeds.dropna(subset=["gain_pct"])
    if "source" in d:
        d = d[~d["source"].isin(SCRATCH_SOURCES)]
    if d.empty:
        return pd.DataFrame()
    g = d.groupby(_setting_key(d), sort=False)
    out = g.agg(study=("study", "first"), setting=("setting", "first"),
                domain=("domain", "first"), label=("label", "first"), band=("band", "first"),
                band_lower=("band_lower", "first"), band_upper=("band_upper", "first"),
                alphabet=("alphabet", "first"), source=("source", "first"),
                describe=("describe", "first"),
                n_seeds=("gain_pct", "size"),
                gain_mean=("gain_pct", "mean"), gain_sd=("gain_pct", "std"),
                ppl_gain_mean=("ppl_gain_pct", "mean"), speedup_mean=("speedup", "mean"),
                n_reached=("speedup", "count")).reset_index(drop=True)
    out.insert(out.columns.get_loc("n_seeds"), "trials", _trial_lists(d, out))
    out = out.join(_tests(d, out, alpha).drop(columns="mean"))
    out["p_holm"] = np.nan
    for idx in out.groupby(["study", domain_key(out)]).groups.values():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_value"].to_numpy())
    out = out[[*out.columns.drop(["verdict"]), "verdict"]]
    net = _net_columns(d, out, alpha)
    if not net.empty or len(net.columns):
        out = out.join(net)
        out.insert(out.columns.get_loc("net_verdict"), "net_p_holm", np.nan)
        for idx in out.groupby(["study", domain_key(out)]).groups.values():
            out.loc[idx, "net_p_holm"] = holm(out.loc[idx, "net_p_value"].to_numpy())
    out = out.assign(_domain=domain_key(out))
    out = out.sort_values(["study", "_domain", "gain_mean"], ascending=[True, True, False])
    return out.drop(columns="_domain").reset_index(drop=True)


def _setting_key(frame: pd.DataFrame) -> pd.Series:
    """One setting on one domain of one study, as one string (study, domain and setting joined
    by NUL, which none of them contains)."""
    return frame["study"] + "\0" + domain_key(frame) + "\0" + frame["setting"]


def _trial_lists(d: pd.DataFrame, out: pd.DataFrame) -> np.ndarray:
    """Comma-separated trial numbers per setting, in ``out``'s row order (Python only for the
    few settings that span several trials)."""
    u = d.assign(key=_setting_key(d))[["key", "number"]].drop_duplicates().sort_values("number")
    key = u["key"]
    many = key.duplicated(keep=False)
    text = dict(zip(key[~many], u["number"][~many].astype(str), strict=True))
    for k, numbers in u["number"][many].astype(str).groupby(key[many]):
        text[k] = ",".join(numbers)
    return _setting_key(out).map(text).to_numpy()


def _tests(d: pd.DataFrame, out: pd.DataFrame, alpha: float, column: str = "gain_pct"
           ) -> pd.DataFrame:
    """The t-interval and paired t-test of ``column`` vectorised over settings; exact tests per
    setting only where they differ (n >= WILCOXON_MIN_N, or degenerate samples)."""
    keys = _setting_key(out)
    valid = d.dropna(subset=[column])
    groups = valid.groupby(_setting_key(valid), sort=False)[column]
    agg = groups.agg(["size", "mean", "std"]).reindex(keys)
    n = agg["size"].to_numpy(dtype=np.float64)
    mean, sd = agg["mean"].to_numpy(dtype=np.float64), agg["std"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = sd / np.sqrt(n)
        half = special.stdtrit(n - 1, 0.975) * se
        t = mean / se
        p = 2 * special.stdtr(n - 1, -np.abs(t))
    res = pd.DataFrame({"mean": mean, "ci_low": mean - half, "ci_high": mean + half,
                        "test": "paired t", "statistic": t, "p_value": p}, index=out.index)
    res["verdict"] = [_verdict(m, lo, hi, pv, alpha)
                      for m, lo, hi, pv in zip(mean, res["ci_low"], res["ci_high"], p, strict=True)]
    exact = np.flatnonzero(((n >= WILCOXON_MIN_N) | (n < 2) | ~(sd > 0)) & (n > 0))
    for i in exact:
        r = paired_test(groups.get_group(keys.iloc[i]).to_numpy(), alpha)
        res.loc[out.index[i]] = [r.mean, r.ci_low, r.ci_high, r.test, r.statistic, r.p_value,
                                 r.verdict]
    return res


def _net_columns(d: pd.DataFrame, out: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The net effect (vs the best scratch recipe) of each setting: mean, interval, p, verdict."""
    if "net_gain_pct" not in d:
        return pd.DataFrame(index=out.index)
    res = _tests(d, out, alpha, column="net_gain_pct")
    return pd.DataFrame({"net_mean": res["mean"], "net_ci_low": res["ci_low"],
                         "net_ci_high": res["ci_high"], "net_p_value": res["p_value"],
                         "net_verdict": res["verdict"]}, index=out.index)


def seed_noise(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per study and domain (each domain of a multi-domain study on its own): how much seeds
    alone move the numbers.

    Returns:
        Columns ``study, domain, scratch_loss_mean, scratch_loss_sd`` (over distinct seeds),
        ``gain_sd_pooled`` (within-setting SD of per-seed gains, pooled over settings with at
        least two seeds) and ``settings_pooled``.
    """
    rows = []
    for (study, _), d in seeds.groupby(["study", domain_key(seeds)], sort=True):
        scratch = d.drop_duplicates("seed")["scratch_loss"].dropna()
        multi = d.dropna(subset=["gain_pct"]).groupby("setting")["gain_pct"]
        dof = multi.size() - 1
        var = multi.var(ddof=1)
        keep = dof > 0
        pooled = float(np.sqrt((var[keep] * dof[keep]).sum() / dof[keep].sum())) if keep.any() \
            else float("nan")
        rows.append({"study": study, "domain": d["domain"].iloc[0],
                     "scratch_loss_mean": scratch.mean(),
                     "scratch_loss_sd": scratch.std(ddof=1), "gain_sd_pooled": pooled,
                     "settings_pooled": int(keep.sum())})
    return pd.DataFrame(rows)


POWER = 0.8
"""Power of the minimum detectable effect and of the seed counts the reports state."""
MAX_SEEDS_STATED = 10_000
"""Above this many seeds a study is said to be unable to detect the effect at all."""


def paired_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs to detect a true
    mean difference ``effect`` when the differences have standard deviation ``sd`` (the
    noncentral t distribution, not a normal approximation: exact at small n)."""
    if n < 2 or not sd > 0:
        return float("nan")
    crit = special.stdtrit(n - 1, 1 - alpha / 2)
    nc = effect / (sd / np.sqrt(n))
    return float(special.nctdtr(n - 1, nc, -crit) + 1 - special.nctdtr(n - 1, nc, crit))


def min_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest true mean difference the paired t-test with ``n`` pairs detects with
    probability ``power`` (bisection on :func:`paired_t_power`; NaN below two pairs)."""
    if n < 2 or not sd > 0:
        return float("nan")
    low, high = 0.0, sd
    while paired_t_power(high, sd, n, alpha) < power:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if paired_t_power(mid, sd, n, alpha) < power else (low, mid)
    return high


def seeds_for_effect(effect: float, sd: float, alpha: float = 0.05,
                     power: float = POWER) -> int | None:
    """The fewest pairs (seeds) with which the paired t-test detects ``effect`` with probability
    ``power``; None above :data:`MAX_SEEDS_STATED`."""
    if not sd > 0:
        return 2
    n = 2
    while paired_t_power(effect, sd, n, alpha) < power:
        n = n + 1 if n < 64 else int(n * 1.25)
        if n > MAX_SEEDS_STATED:
            return None
    if n > 64:  # the coarse steps overshot: walk back to the first n that suffices
        while n > 2 and paired_t_power(effect, sd, n - 1, alpha) >= power:
            n -= 1
    return n


def best_setting(settings: pd.DataFrame, study: str, domain: str | None = None) -> pd.Series:
    """The study's setting with the highest mean gain among those run on at least two seeds
    (any setting when none was), on ``domain`` when given (a multi-domain study has a row per
    setting and domain).

    Raises:
        ValueError: If the study (on that domain) has no setting with a recorded gain.
    """
    s = settings[settings["study"] == study]
    if domain is not None:
        s = s[s["domain"] == domain]
    if s.empty:
        where = f"study {study!r}" + (f" on {domain}" if domain is not None else "")
        raise ValueError(f"{where} has no setting with a recorded gain")
    multi = s[s["n_seeds"] >= 2]
    pool = multi if not multi.empty else s
    return pool.loc[pool["gain_mean"].idxmax()]
