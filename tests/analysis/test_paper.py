"""The cross-domain table next to the paper, on hand-made settings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.paper import PAPER, cross_domain_table
from analysis.stats import NOISE


def _setting(study, domain, label, band, gain, ci, p, verdict, n=3, alphabet=10, speedup=1.2):
    return {"study": study, "domain": domain, "setting": f"{study}-{label}", "label": label,
            "band": band, "alphabet": alphabet, "n_seeds": n, "gain_mean": gain,
            "ci_low": gain - ci, "ci_high": gain + ci, "ppl_gain_mean": gain * 1.4,
            "speedup_mean": speedup, "p_value": p, "p_holm": min(1.0, 2 * p), "test": "paired t",
            "verdict": verdict}


def test_agreement_columns():
    rows = [
        # code: 30-40% wins clearly and is significant: agrees on both.
        _setting("c", "code", "band-20-30", "20-30%", 0.5, 0.3, 0.04, "gain"),
        _setting("c", "code", "paper", "30-40%", 2.0, 0.3, 0.01, "gain"),
        _setting("c", "code", "#9", "30-55%", 9.0, np.nan, np.nan, "single seed (no test)", n=1),
        # web: 30-40% beats 50%+ but within the seeds' interval; best gain is noise.
        _setting("w", "web", "band-30-40", "30-40%", 0.9, 2.0, 0.3, NOISE),
        _setting("w", "web", "paper", "50%+", 0.5, 2.0, 0.5, NOISE),
        # math: only harm, speedup never reached.
        _setting("m", "math", "paper", "50%+", -3.0, 1.0, 0.01, "harm", speedup=np.nan),
    ]
    out = cross_domain_table(pd.DataFrame(rows)).set_index("domain")
    code, web, math_ = out.loc["code"], out.loc["web"], out.loc["math"]
    assert code["best band"] == "30-40%" and code["band agrees"] == "yes"
    assert code["band ranking (anchors)"] == "30-40% (+2.00) > 20-30% (+0.50)"
    assert code["best setting"] == "paper", "single-seed #9 is not eligible"
    assert code["gain agrees"] == "yes" and code["paper ppl gain %"] == PAPER["code"].ppl_gain_pct
    assert code["gain % [95% CI]"] == "+2.00 [+1.70, +2.30]"
    assert web["best band"] == "30-40%"
    assert web["band agrees"] == "no (not resolved by seeds)"
    assert web["gain agrees"] == "no: not distinguishable from noise"
    assert math_["gain agrees"] == "no: harm" and math_["speedup"] == "not reached"
    assert math_["band ranking (anchors)"] == "50%+ (-3.00)"


def test_gain_must_survive_holm():
    rows = [_setting("c", "code", "paper", "30-40%", 2.0, 0.3, 0.03, "gain")]  # p_holm 0.06
    out = cross_domain_table(pd.DataFrame(rows)).iloc[0]
    assert out["gain agrees"] == "no: not after Holm correction" and out["p (Holm)"] == "0.06"


def test_searched_bands_are_not_anchors():
    rows = [_setting("c", "code", "#3", "30-40%", 2.0, 0.3, 0.01, "gain")]
    out = cross_domain_table(pd.DataFrame(rows)).iloc[0]
    assert out["band ranking (anchors)"] == "no band anchors" and out["band agrees"] == "n.a."
