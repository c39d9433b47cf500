"""A multi-domain study (issue 15) reads as one study per domain: seeds, settings, the
cross-domain table, the best band per domain, and the Pareto front between domains."""

from __future__ import annotations

import re

import numpy as np
import optuna
import pandas as pd
import pytest

from analysis import plots
from analysis.frame import load_studies
from analysis.paper import PAPER
from analysis.pareto import pareto_mask, pareto_table
from analysis.report import analyze, main
from analysis.stats import best_setting, holm
from analysis.synthetic import create_synthetic_study, synthetic_best_band
from search.record import TrialRecord
from tests.analysis.conftest import journal_storage

DOMAINS = ("code", "math", "web")
OBJECTIVES = tuple(f"net-effect:{d}" for d in DOMAINS)
# Twelve seeds per anchor: the synthetic code domain's best band leads its neighbours by 0.6
# points, which fewer seeds of the per-seed transfer noise (sd 1) do not resolve.
ANCHOR_SEEDS = tuple(range(12))


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    path = tmp_path_factory.mktemp("domains") / "studies.journal"
    storage = journal_storage(path)
    create_synthetic_study(storage, "multi", domains=DOMAINS, n_search=24, seed=0,
                           anchor_seeds=ANCHOR_SEEDS, objectives=OBJECTIVES)
    create_synthetic_study(storage, "multi-mean", domains=DOMAINS, n_search=4, seed=1,
                           objectives=("mean-net-effect",))
    return path


@pytest.fixture(scope="module")
def a(journal):
    return analyze(journal)


def _rec(a, name):
    return next(r for r in a.records if r.name == name)


def _records(rec):
    return {t.number: TrialRecord.from_attrs(t.user_attrs) for t in rec.trials}


def test_load_studies_keeps_the_domains(a):
    rec = _rec(a, "multi")
    assert rec.domains == DOMAINS and rec.domain == "code" and rec.is_multi_domain
    assert rec.metric_names == OBJECTIVES and rec.is_multi_objective
    assert a.domains == DOMAINS


def test_seeds_have_a_row_per_domain_as_for_domain_scores_it(a):
    rec = _rec(a, "multi")
    seeds = a.seeds[a.seeds["study"] == "multi"]
    checked = 0
    for number, record in _records(rec).items():
        for domain in DOMAINS:
            rows = seeds[(seeds["number"] == number) & (seeds["domain"] == domain)]
            want = record.for_domain(domain).seeds
            assert list(rows["seed"]) == [s.seed for s in want]
            for column, field in (("loss", "loss"), ("scratch_loss", "scratch_loss"),
                                  ("gain_pct", "gain_pct"), ("net_gain_pct", "net_gain_pct"),
                                  ("best_scratch_loss", "best_scratch_loss")):
                assert list(rows[column]) == [getattr(s, field) for s in want], column
            checked += len(rows)
    assert checked == len(seeds) == sum(len(r.seeds) for r in _records(rec).values()) * 3
    scratch = seeds.drop_duplicates(["domain", "seed"]).pivot(index="seed", columns="domain",
                                                              values="scratch_loss")
    assert (scratch["code"] != scratch["math"]).all(), "each domain has its own scratch runs"


def _one_domain_copy(rec, domain: str) -> optuna.storages.BaseStorage:
    """A storage with the study as one-domain trials on ``domain`` would have recorded it."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name=rec.name, direction="maximize")
    study.set_user_attr("domain", domain)
    for t in rec.trials:
        record = TrialRecord.from_attrs(t.user_attrs).for_domain(domain)
        attrs = {k: v for k, v in t.user_attrs.items() if k not in ("domains", "by_domain")}
        study.add_trial(optuna.trial.create_trial(
            value=record.objective("net-effect"), params=t.params,
            distributions=t.distributions, user_attrs=attrs | record.to_attrs()))
    return storage


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_domain_reads_as_a_one_domain_study_on_it(a, domain):
    rec = _rec(a, "multi")
    one = analyze(load_studies(_one_domain_copy(rec, domain)))
    ours = a.settings[(a.settings["study"] == "multi") & (a.settings["domain"] == domain)]
    assert len(ours) == len(one.settings) == len(rec.trials) - 1, "every setting but scratch"
    pd.testing.assert_frame_equal(ours.reset_index(drop=True).drop(columns="trials"),
                                  one.settings.drop(columns="trials"), check_dtype=False)
    cross = a.cross_domain.set_index(["study", "domain"]).loc[("multi", domain)]
    theirs = one.cross_domain.set_index(["study", "domain"]).loc[("multi", domain)]
    pd.testing.assert_series_equal(cross, theirs, check_dtype=False)
    # Holm's correction runs over the settings of one domain, as in the one-domain study.
    np.testing.assert_allclose(ours["p_holm"], holm(ours["p_value"].to_numpy()))


def test_cross_domain_table_has_a_row_per_domain(a):
    rows = a.cross_domain[a.cross_domain["study"] == "multi"]
    assert list(rows["domain"]) == list(DOMAINS)
    for _, row in rows.iterrows():
        assert row["paper best band"] == PAPER[row["domain"]].best_band
        assert row["best setting"] == best_setting(a.settings, "multi", row["domain"])["label"]


def test_best_band_per_domain_matches_the_synthetic_truth(a):
    bands = a.bands[a.bands["study"] == "multi"]
    assert len(bands) == 4 * len(DOMAINS), "the four paper bands on each domain"
    best = bands[bands["best"]].set_index("domain")
    assert best["label"].to_dict() == {d: synthetic_best_band(d) for d in DOMAINS}
    # Like the paper: code best at 30-40%, math and web at 50%+.
    assert best["band"].to_dict() == {d: PAPER[d].best_band for d in DOMAINS}
    assert (bands["paper_best"] == (bands["band"] == bands["domain"].map(
        {d: PAPER[d].best_band for d in DOMAINS}))).all()
    cross = a.cross_domain.set_index(["study", "domain"])
    for domain, row in best.iterrows():
        assert cross.loc[("multi", domain), "best band"] == row["band"]
    s = a.settings.set_index(["study", "domain", "label"])
    for _, row in bands.iterrows():
        stats = s.loc[("multi", row["domain"], row["label"])]
        assert row["gain_mean"] == stats["gain_mean"] and row["net_mean"] == stats["net_mean"]
    assert (bands["net_mean"] != bands["gain_mean"]).any(), "net effect is its own column"


def _effects(ax, label):
    container = next(c for c in ax.containers if c.get_label() == label)
    return list(container.lines[0].get_ydata())


def _span_centres(ax, label):
    """Middles of the ``axvspan`` rectangles labelled ``label``, in band positions."""
    return [round(p.get_x() + p.get_width() / 2, 6) for p in ax.patches if p.get_label() == label]


def test_best_band_figure_shows_both_effects_and_both_best_bands(a):
    bands = a.bands[a.bands["study"] == "multi"].reset_index(drop=True)
    fig = plots.plot_best_band_by_domain(bands)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"multi ({d})" for d in DOMAINS]
    for ax, domain in zip(axes, DOMAINS, strict=True):
        d = bands[bands["domain"] == domain].reset_index(drop=True)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(d["band"])
        np.testing.assert_allclose(_effects(ax, "NCA effect (vs matched scratch)"), d["gain_mean"])
        np.testing.assert_allclose(_effects(ax, "net effect (vs best scratch)"), d["net_mean"])
        assert _span_centres(ax, "our best band (NCA effect)") == [float(d.index[d["best"]][0])]
        assert _span_centres(ax, "the paper's best band") == [float(d.index[d["paper_best"]][0])]


def test_best_band_figure_of_several_one_domain_studies(synthetic_journal):
    a = analyze(synthetic_journal)
    assert a.domains == ("code", "math", "web")
    fig = plots.plot_best_band_by_domain(a.bands)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["code", "code-mo (code)", "math", "web"]
    with pytest.raises(plots.FigureSkipped, match="no paper-band anchors"):
        plots.plot_best_band_by_domain(a.bands.iloc[:0])


def test_curves_of_a_domain_come_from_that_domain(a):
    rec = _rec(a, "multi")
    for domain in ("code", "web"):
        best = best_setting(a.settings, "multi", domain)
        fig = plots.plot_curves(rec, a.settings, best["label"], domain)
        right = fig.axes[1]
        line = next(x for x in right.get_lines() if x.get_label().startswith("best"))
        assert line.get_ydata()[-1] == pytest.approx(best["gain_mean"], rel=1e-9)
        assert f"on {domain}" in fig.get_suptitle()


def test_pareto_table_is_the_front_with_per_domain_effects(a):
    rec = _rec(a, "multi")
    table = pareto_table(rec, a.trials)
    t = a.trials[a.trials["study"] == "multi"]
    values = t[[f"values_{o}" for o in OBJECTIVES]].to_numpy()
    front = set(t["number"][pareto_mask(values, rec.directions)])
    assert set(table["number"]) == front and 1 <= len(front) < len(t)
    assert table["net-effect:code"].is_monotonic_decreasing, "best first on the first objective"
    records = _records(rec)
    for _, row in table.iterrows():
        record = records[row["number"]]
        for domain in DOMAINS:
            assert row[f"net-effect:{domain}"] == pytest.approx(
                record.for_domain(domain).objective("net-effect"))
            assert row[f"nca-effect:{domain}"] == record.for_domain(domain).objective("nca-effect")
    pd.testing.assert_frame_equal(a.pareto, table, check_dtype=False)
    assert pareto_table(_rec(a, "multi-mean"), a.trials).empty, "one objective: no front"


def test_pareto_figure_has_a_panel_per_pair_and_marks_the_paper_bands(a):
    rec = _rec(a, "multi")
    fig = plots.plot_pareto(rec, a.trials)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [(ax.get_xlabel().split()[0], ax.get_ylabel().split()[0]) for ax in axes] == [
        ("net-effect:code", "net-effect:math"), ("net-effect:code", "net-effect:web"),
        ("net-effect:math", "net-effect:web")]
    n_front = len(pareto_table(rec, a.trials))
    for ax in axes:
        labels = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
        assert labels[f"Pareto front ({n_front})"] == n_front
        assert {k for k in labels if k.startswith("band-")} == {
            "band-20-30 (20-30%)", "band-30-40 (30-40%)", "band-40-50 (40-50%)",
            "band-50-100 (50%+)"}
    with pytest.raises(plots.FigureSkipped, match="single objective"):
        plots.plot_pareto(_rec(a, "multi-mean"), a.trials)


def test_pareto_mask_with_three_objectives():
    v = np.array([[1, 1, 3], [1, 2, 1], [2, 2, 2], [1, 1, 3], [0, 3, 3]], dtype=float)
    # Row 2 is dominated by row 1; row 3 repeats row 0 (one of equal rows is kept).
    np.testing.assert_array_equal(pareto_mask(v, ["minimize"] * 3),
                                  [True, True, False, False, True])
    # Maximised, row 1 is dominated by row 2, and row 0 (best third value) is not.
    np.testing.assert_array_equal(pareto_mask(v, ["maximize"] * 3),
                                  [True, False, True, False, True])
    # A constant third objective changes nothing: the same front as the two-objective sweep.
    rng = np.random.default_rng(0)
    two = rng.integers(0, 6, size=(200, 2)).astype(float)
    three = np.column_stack([two, np.zeros(200)])
    np.testing.assert_array_equal(pareto_mask(three, ["maximize", "minimize", "minimize"]),
                                  pareto_mask(two, ["maximize", "minimize"]))


def test_report_of_a_multi_domain_study(journal, tmp_path):
    out = tmp_path / "report"
    assert main(["--storage", str(journal), "--out", str(out), "--no-nca-render"]) == 0
    md = (out / "report.md").read_text()
    linked = set(re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md))
    assert {"figures/best_band_by_domain.png", "figures/multi_pareto.png",
            *(f"figures/multi_{d}_curves.png" for d in DOMAINS)} <= linked
    for heading in ("## Best complexity band by domain", "### Settings on code",
                    "### Settings on web", "### Pareto front"):
        assert heading in md, heading
    assert "| multi (math) |" in md, "seed noise per domain"
    pareto = pd.read_csv(out / "pareto.csv")
    assert set(pareto["study"]) == {"multi"} and "nca-effect:web" in pareto
    bands = pd.read_csv(out / "bands.csv")
    assert len(bands) == 2 * 4 * len(DOMAINS)
    cross = pd.read_csv(out / "cross_domain.csv")
    assert list(cross["domain"]) == [*DOMAINS, *DOMAINS]
    seeds = pd.read_csv(out / "seeds.csv")
    assert set(seeds.groupby("study")["domain"].nunique()) == {3}


@pytest.mark.parametrize("kwargs, message", [
    ({"domain": "code", "domains": DOMAINS}, "give domain or domains"),
    ({}, "give domain or domains"),
    ({"domains": ("code",)}, "needs two or more"),
    ({"domains": ("code", "code")}, "each once"),
    ({"domains": ("code", "law")}, "each once"),
    ({"domain": "code", "objectives": ("net-effect:code",)}, "invalid for domains"),
    ({"domains": DOMAINS, "objectives": ("net-effect:law",)}, "invalid for domains"),
    ({"domains": DOMAINS, "objectives": ("speed",)}, "invalid"),
])
def test_synthetic_study_refuses_bad_domains_and_objectives(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_synthetic_study(None, "bad", n_search=0, **kwargs)


def test_synthetic_multi_domain_trials_are_version_3_records(a):
    rec = _rec(a, "multi")
    for t in rec.trials:
        record = TrialRecord.from_attrs(t.user_attrs)
        assert record.version == 3 and tuple(record.domains) == DOMAINS
        assert t.values == [record.objective(o) for o in OBJECTIVES]
    kinds = [t.user_attrs["kind"] for t in rec.trials[:5]]
    assert kinds == ["anchor:scratch", "anchor:band-20-30", "anchor:band-30-40",
                     "anchor:band-40-50", "anchor:band-50-100"]
