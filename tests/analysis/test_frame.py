"""Tidy frames from studies shaped like the search's (§4)."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from analysis.frame import band_label, load_studies, seeds_frame, trials_frame
from analysis.synthetic import SEARCH_SPACE

SECTION_4_KEYS = {
    "kind", "seeds", "losses", "scratch_losses", "bpb", "gain_pct", "gains_pct", "speedup",
    "speedups", "curves", "scratch_curves", "band", "alphabet", "source", "complexity_mean",
    "acceptance_rate", "upstream", "wall_s", "device", "record_version", "net_effects_pct",
    "best_scratch_losses", "best_scratch_recipes", "describe", "setting",
}


def test_synthetic_trials_carry_every_section_4_attribute(synthetic_journal):
    rec = load_studies(synthetic_journal, ["code"])[0]
    for t in rec.trials:
        assert set(t.user_attrs) >= SECTION_4_KEYS, SECTION_4_KEYS - set(t.user_attrs)
    assert rec.domain == "code" and rec.metric_names == ("loss",)


def test_trials_frame_agrees_with_optuna_trials_dataframe(synthetic_journal):
    records = load_studies(synthetic_journal, ["code-mo"])
    ours = trials_frame(records)
    theirs = records[0].study.trials_dataframe()
    assert len(ours) == len(theirs) == len(records[0].trials)
    np.testing.assert_array_equal(ours["number"], theirs["number"])
    # Optuna names unnamed objectives values_0, values_1; we use the search's objective names.
    for col, their in (("values_loss", "values_0"), ("values_compute", "values_1"),
                       ("params_band_lower", None), ("params_alphabet", None)):
        pd.testing.assert_series_equal(ours[col], theirs[their or col], check_names=False)
    assert (ours["state"] == theirs["state"]).all()


def test_trials_frame_tidy_columns_and_labels(synthetic_journal):
    t = trials_frame(synthetic_journal, ["code"])
    assert t["study"].eq("code").all() and t["number"].is_monotonic_increasing
    by_number = t.set_index("number")
    assert by_number.loc[0, "label"] == "scratch"
    assert by_number.loc[0, "source"] == "none" and pd.isna(by_number.loc[0, "band"])
    # The paper's code setting and the band-30-40 anchor are one setting.
    assert by_number.loc[1, "label"] == by_number.loc[3, "label"] == "band-30-40 = paper"
    assert by_number.loc[1, "setting"] == by_number.loc[3, "setting"]
    assert by_number.loc[2, "band"] == "20-30%" and by_number.loc[5, "band"] == "50%+"
    assert by_number.loc[10, "label"] == "#10"
    for col in ("upstream_val_loss", "upstream_learned", "gain_pct", "wall_s", "setting_json"):
        assert col in t.columns
    assert not any(c in t.columns for c in ("curves", "losses", "seeds"))


def test_seeds_frame_pairs_each_seed_and_dedupes_repeats(synthetic_journal):
    records = load_studies(synthetic_journal, ["code"])
    s = seeds_frame(records)
    rec = records[0]
    # Anchors 3 seeds each, but trial 1 and 3 are the same setting: 5 settings x 3 + 24 x 1.
    assert len(s) == 5 * 3 + 24
    paper = s[s["label"] == "band-30-40 = paper"]
    assert sorted(paper["seed"]) == [0, 1, 2] and (paper["number"] == 3).all()
    t3 = rec.trials[3].user_attrs
    row = paper.sort_values("seed").iloc[1]
    assert row["loss"] == t3["losses"][1] and row["scratch_loss"] == t3["scratch_losses"][1]
    assert row["gain_pct"] == t3["gains_pct"][1]
    expected = 100 * (1 - math.exp(row["loss"] - row["scratch_loss"]))
    assert row["ppl_gain_pct"] == pytest.approx(expected)


def test_setting_description_from_each_parameter_shape():
    cat = CategoricalDistribution(["0.2-0.3", "0.3-0.4", "0.5-1.0"])
    attrs = {"losses": [1.0], "scratch_losses": [1.1], "seeds": [0]}
    band_text = optuna.trial.create_trial(value=1.0, params={"band": "0.3-0.4", "alphabet": 4},
                                          distributions={"band": cat,
                                                         "alphabet": IntDistribution(2, 15)},
                                          user_attrs=attrs)
    lower_width = optuna.trial.create_trial(
        value=1.0, params={"band_lower": 0.5, "band_width": 0.6},
        distributions={"band_lower": SEARCH_SPACE["band_lower"],
                       "band_width": FloatDistribution(0.05, 0.8)}, user_attrs=attrs)
    quantile = optuna.trial.create_trial(value=1.0, params={}, distributions={}, user_attrs={
        **attrs, "setting": json.dumps({"source": "nca", "band": [0.3, 0.4],
                                        "band_kind": "quantile", "alphabet": 10})})
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="shapes")
    study.add_trials([band_text, lower_width, quantile])
    t = trials_frame(storage).set_index("number")
    assert (t.loc[0, "band"], t.loc[0, "band_lower"], t.loc[0, "alphabet"]) == ("30-40%", 0.3, 4)
    assert t.loc[1, "band"] == "50%+" and t.loc[1, "band_upper"] == 1.0, "width clipped at 1"
    assert t.loc[2, "band"] == "q0.30-0.40" and pd.isna(t.loc[2, "band_lower"])
    assert len({t.loc[i, "setting"] for i in range(3)}) == 3
    s = seeds_frame(storage)
    assert s.loc[0, "gain_pct"] == pytest.approx(100 * 0.1 / 1.1), "gain recomputed when absent"


def test_unfinished_trials_are_listed_but_not_in_seeds(synthetic_journal):
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="mixed", storage=storage)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"kind": "search"}))
    done = load_studies(synthetic_journal, ["code"])[0].trials[2]
    study.add_trial(optuna.trial.create_trial(value=1.0, params=done.params,
                                              distributions=done.distributions,
                                              user_attrs=done.user_attrs))
    t = trials_frame(storage)
    assert list(t["state"]) == ["FAIL", "COMPLETE"]
    assert seeds_frame(storage)["number"].unique().tolist() == [1]


def test_band_label():
    assert band_label(0.3, 0.4) == "30-40%"
    assert band_label(0.5, 1.0) == "50%+"
    assert band_label(0.3, 0.4, "quantile") == "q0.30-0.40"


def test_analysis_names_the_paper_bands_as_nca_defines_them():
    # analysis keeps torch-free copies (it imports nca only lazily); nca reads each one back.
    from analysis.paper import PAPER_BAND_LABELS
    from analysis.synthetic import PAPER_BANDS as ANCHOR_BANDS
    from nca import PAPER_BANDS, Band
    from nca.bands import parse_band

    assert tuple(band_label(b.lower, b.upper) for b in PAPER_BANDS) == PAPER_BAND_LABELS
    assert [parse_band(label) for label in PAPER_BAND_LABELS] == list(PAPER_BANDS)
    assert [parse_band(name) for name in ANCHOR_BANDS] == list(PAPER_BANDS)
    assert [Band(*bounds) for bounds in ANCHOR_BANDS.values()] == list(PAPER_BANDS)
    assert parse_band(band_label(0.3, 0.4, "quantile")) == Band(0.3, 0.4, "quantile")


def test_non_nca_sources_have_no_band_or_alphabet():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="controls")
    for source in ("dyck", "none"):
        setting = json.dumps({"source": source, "band": [0.5, 1.0], "alphabet": 10})
        study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={
            "setting": setting, "kind": f"anchor:{source}", "losses": [1.0],
            "scratch_losses": [1.1], "seeds": [0]}))
    t = trials_frame(storage)
    assert t["band"].isna().all() and t["alphabet"].isna().all()
    assert list(t["label"]) == ["dyck", "none"]
