"""The paper's findings and the cross-domain table that sets ours next to them.

Lee, Han, Kumar and Agrawal (2026), 1.6B model, 164M NCA tokens: the best complexity band is
50%+ for web and math and 30-40% for code; final perplexity falls by 5.7% (web), 5.2% (math) and
4.2% (code); scratch's final perplexity is reached up to 1.6x sooner.

Example:
    >>> PAPER["code"].best_band
    '30-40%'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.frame import domain_key
from analysis.stats import best_setting

__all__ = ["PAPER", "PAPER_BAND_LABELS", "PAPER_MAX_SPEEDUP", "PaperFinding", "band_anchors",
           "band_table", "cross_domain_table"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PaperFinding:
    """What the paper reports for one domain."""

    best_band: str
    """Best complexity band, named as :func:`analysis.frame.band_label` names it."""
    band: tuple[float, float]
    """That band's (lower, upper) gzip ratio."""
    ppl_gain_pct: float
    """Reduction of final perplexity vs scratch, %."""


PAPER: dict[str, PaperFinding] = {
    "web": PaperFinding(best_band="50%+", band=(0.5, 1.0), ppl_gain_pct=5.7),
    "math": PaperFinding(best_band="50%+", band=(0.5, 1.0), ppl_gain_pct=5.2),
    "code": PaperFinding(best_band="30-40%", band=(0.3, 0.4), ppl_gain_pct=4.2),
}
"""Per-domain findings of the paper."""
PAPER_MAX_SPEEDUP = 1.6
"""The paper's largest speedup to scratch's final perplexity (x)."""

_TESTED = ("gain", "harm")


PAPER_BAND_LABELS = ("20-30%", "30-40%", "40-50%", "50%+")
"""The paper's four bands (``nca.PAPER_BANDS``) as :func:`analysis.frame.band_label` names
them; ``nca.bands.parse_band`` reads each back (tests pin both)."""


def band_anchors(s: pd.DataFrame) -> pd.DataFrame:
    """The paper-band anchors: anchors named ``paper`` or ``band-*`` at one of the paper's bands
    with alphabet 10. Other anchors at those bands (one knob changed) are not band references."""
    label = s["label"].astype(str)
    named = label.str.contains(r"(?:^|= )(?:paper|band-)", regex=True)
    return s[named & s["band"].isin(PAPER_BAND_LABELS) & (s["alphabet"] == 10)]


def _fmt_gain(row: pd.Series) -> str:
    if row["n_seeds"] < 2:
        return f"{row['gain_mean']:+.2f} (1 seed)"
    return f"{row['gain_mean']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


def _ranked_anchors(s: pd.DataFrame) -> pd.DataFrame:
    """One study's (on one domain) paper-band anchors, best mean NCA effect first: the first
    is its best band, in the cross-domain table and the band table alike."""
    return band_anchors(s).sort_values("gain_mean", ascending=False)


def _band_cells(s: pd.DataFrame, paper: PaperFinding | None) -> dict[str, str]:
    anchors = _ranked_anchors(s)
    if anchors.empty:
        return {"band ranking (anchors)": "no band anchors", "best band": "n.a.",
                "band agrees": "n.a."}
    best = anchors.iloc[0]
    ranking = " > ".join(f"{b} ({g:+.2f})"
                         for b, g in zip(anchors["band"], anchors["gain_mean"], strict=True))
    agrees = "n.a." if paper is None else ("yes" if best["band"] == paper.best_band else "no")
    if len(anchors) > 1 and agrees != "n.a.":
        second = anchors.iloc[1]
        # A band "wins" only by a margin the seeds can resolve; otherwise say so.
        if np.isfinite(best["ci_low"]) and best["ci_low"] <= second["gain_mean"]:
            agrees += " (not resolved by seeds)"
    return {"band ranking (anchors)": ranking, "best band": str(best["band"]),
            "band agrees": agrees}


def _gain_agrees(best: pd.Series, paper: PaperFinding | None, alpha: float) -> str:
    """``yes`` only for a significant gain that survives Holm's correction over the study's
    settings: the best of many settings is chosen *because* it looks good."""
    if paper is None:
        return "n.a."
    verdict = str(best["verdict"])
    if verdict == "gain":
        holm = best.get("p_holm", np.nan)
        return "yes" if np.isfinite(holm) and holm < alpha else "no: not after Holm correction"
    return "no: harm" if verdict == "harm" else f"no: {verdict}"


def cross_domain_table(settings: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per study and domain: best band among the paper-band anchors, best setting, the
    paper. A multi-domain study has a row per domain, scored as a one-domain study on it would be.

    The best setting is the one with the highest mean gain among settings run on at least two
    seeds (any setting when none is). The paper's numbers are perplexity reductions, so ours
    are shown both as % of loss and as perplexity reduction.

    Args:
        settings: :func:`analysis.stats.setting_stats` output.
        alpha: Significance level for ``gain agrees``.
    """
    rows = []
    for (study, _), s in settings.groupby(["study", domain_key(settings)], sort=True):
        domain = s["domain"].iloc[0]
        paper = PAPER.get(str(domain))
        best = best_setting(s, str(study))
        speed = best["speedup_mean"]
        rows.append({
            "study": study, "domain": domain, **_band_cells(s, paper),
            "paper best band": paper.best_band if paper else "n.a.",
            "best setting": best["label"], "its band": best["band"],
            "its alphabet": int(best["alphabet"]) if pd.notna(best["alphabet"]) else None,
            "gain % [95% CI]": _fmt_gain(best),
            "ppl gain %": round(float(best["ppl_gain_mean"]), 2),
            "paper ppl gain %": paper.ppl_gain_pct if paper else np.nan,
            "p (test)": _fmt_p(best),
            "p (Holm)": _fmt_num(best.get("p_holm", np.nan)), "verdict": best["verdict"],
            "speedup": "not reached" if not np.isfinite(speed) else f"{speed:.2f}x",
            "gain agrees": _gain_agrees(best, paper, alpha),
        })
    return pd.DataFrame(rows)


def _fmt_num(p: float) -> str:
    return "n.a." if not np.isfinite(p) else f"{p:.3g}"


def _fmt_p(row: pd.Series) -> str:
    p = row["p_value"]
    return "n.a." if not np.isfinite(p) else f"{p:.3g} ({row['test']})"


_BAND_COLUMNS = ("gain_mean", "ci_low", "ci_high", "net_mean", "net_ci_low", "net_ci_high",
                 "verdict", "net_verdict")


def band_table(settings: pd.DataFrame) -> pd.DataFrame:
    """One row per paper-band anchor of each study and domain: the paper's "optimal complexity
    by domain" chart as a table.

    Columns ``study, domain, band, label, n_seeds``, the NCA effect (``gain_mean, ci_low,
    ci_high, verdict``) and the net effect (``net_mean, net_ci_low, net_ci_high, net_verdict``;
    NaN when the seeds do not carry it) with their 95% intervals over seeds, ``best`` (our best
    band: the highest mean NCA effect, as the cross-domain table's ``best band``) and
    ``paper_best`` (the paper's best band for that domain). Rows in the paper's band order.

    Args:
        settings: :func:`analysis.stats.setting_stats` output.
    """
    columns = ["study", "domain", "band", "label", "n_seeds", *_BAND_COLUMNS, "best",
               "paper_best"]
    if settings.empty:
        return pd.DataFrame(columns=columns)
    order = {b: i for i, b in enumerate(PAPER_BAND_LABELS)}
    parts = []
    for _, s in settings.groupby(["study", domain_key(settings)], sort=True):
        ranked = _ranked_anchors(s).reindex(columns=[*columns[:5], *_BAND_COLUMNS])
        if ranked.empty:
            continue
        paper = PAPER.get(str(s["domain"].iloc[0]))
        ranked["best"] = np.arange(len(ranked)) == 0
        ranked["paper_best"] = ranked["band"] == (paper.best_band if paper else None)
        parts.append(ranked.sort_values(["band", "label"], key=lambda c: c.map(order)
                                        if c.name == "band" else c, kind="stable"))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]
