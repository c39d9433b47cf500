"""The evidence report: per-domain reports, every setting, proxy fidelity (Spearman)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.evidence import knob_effects, main, spearman_by_domain
from analysis.paper import band_anchors
from analysis.synthetic import create_synthetic_study
from tests._published import table_differences
from tests.analysis.conftest import journal_storage


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for i, domain in enumerate(("code", "math", "web")):
        for kind, seed in (("evidence", i), ("fidelity", 10 + i)):
            folder = root / f"{kind}-{domain}"
            folder.mkdir()
            create_synthetic_study(journal_storage(folder / "journal.log"), f"{kind}-{domain}",
                                   domain=domain, n_search=4, seed=seed)
    return root


def test_writes_reports_tables_and_fidelity(run_dir, tmp_path):
    out = tmp_path / "results"
    assert main(["--run-dir", str(run_dir), "--out", str(out)]) == 0
    for domain in ("code", "math", "web"):
        assert (out / domain / "report.md").stat().st_size > 0
    fidelity = pd.read_csv(out / "fidelity.csv")
    assert len(fidelity) == 12 and set(fidelity["domain"]) == {"code", "math", "web"}
    settings = pd.read_csv(out / "settings.csv")
    # four bands (the paper anchor shares one) and four sampled settings; scratch has no gain
    assert settings.groupby("domain").size().to_dict() == {"code": 8, "math": 8, "web": 8}
    summary = (out / "summary.md").read_text()
    every_trial = summary.split("## Every trial")[1].split("## ")[0]
    assert every_trial.count("| code |") == len(pd.read_csv(out / "code" / "trials.csv"))
    assert "python -m analysis.evidence --run-dir" in summary and "| all | 12 |" in summary


def test_band_anchors_leave_out_single_knob_anchors():
    s = pd.DataFrame({"label": ["band-30-40 = paper", "nca-quarter", "band-20-30", "#7"],
                      "band": ["30-40%", "30-40%", "20-30%", "30-40%"], "alphabet": [10] * 4})
    assert list(band_anchors(s)["label"]) == ["band-30-40 = paper", "band-20-30"]


def test_spearman_per_domain_and_pooled():
    frame = pd.DataFrame({"domain": ["a"] * 4 + ["b"] * 4,
                          "gain_small": [1, 2, 3, 4, 1, 2, 3, 4],
                          "gain_large": [10, 20, 30, 40, 4, 3, 2, 1]})
    rho = spearman_by_domain(frame).set_index("domain")["spearman"]
    assert rho["a"] == pytest.approx(1.0) and rho["b"] == pytest.approx(-1.0)
    assert rho["all"] == pytest.approx(pd.Series([1, 2, 3, 4] * 2).rank().corr(
        pd.Series([10, 20, 30, 40, 4, 3, 2, 1]).rank()))


def test_missing_study_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["--run-dir", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no journal at") and "evidence-code" in err and "\n" not in err
    assert not out.exists()


def test_knob_effects_pair_seeds_against_the_base_anchor():
    rows = []
    for seed, (base, knob) in enumerate([(-20.0, -10.0), (-22.0, -11.0), (-18.0, -9.5)]):
        rows += [{"domain": "code", "label": "band-30-40", "band": "30-40%", "alphabet": 10,
                  "seed": seed, "gain_pct": base},
                 {"domain": "code", "label": "nca-quarter", "band": "30-40%", "alphabet": 10,
                  "seed": seed, "gain_pct": knob},
                 {"domain": "code", "label": "#5", "band": "20-30%", "alphabet": 2,
                  "seed": seed, "gain_pct": 0.0}]
    table = knob_effects(pd.DataFrame(rows))
    assert list(table["knob"]) == ["nca-quarter"], "sampled trials and band anchors are not knobs"
    row = table.iloc[0]
    assert row["delta"] == pytest.approx(9.833333) and row["n"] == 3
    assert row["verdict"] == "helps" and row["p"] < 0.05 and row["p_holm"] == row["p"]

    other = pd.DataFrame(rows).assign(domain="web")
    pooled = knob_effects(pd.concat([pd.DataFrame(rows), other])).set_index("domain")
    assert pooled.loc["all", "n"] == 6 and pooled.loc["all", "delta"] == pytest.approx(9.833333)


def test_committed_tables_regenerate_identically(tmp_path, monkeypatch):
    """The published evidence (CSV and markdown) is what its committed journals give today."""
    root = Path(__file__).resolve().parents[2]
    results = root / "studies" / "results"
    out = tmp_path / "results"
    monkeypatch.chdir(root)  # the reports name the storage as given, relative to the repository
    assert main(["--run-dir", "studies/results/runs", "--out", str(out)]) == 0
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in (".csv", ".md"))
    assert len(written) >= 10
    for rel in written:
        text = (out / rel).read_text().replace(str(out), "studies/results")
        differences = table_differences(text, (results / rel).read_text())
        assert not differences, f"{rel} differs from the committed table: {differences[:3]}"
