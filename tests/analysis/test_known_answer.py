"""analysis.known_answer: the planted setting, Wilson intervals, the ground truth's ranking and
margin, recovery by repeat, and the published tables regenerated from their committed journals."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from analysis import known_answer
from analysis.frame import load_studies
from tests._published import table_differences

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "studies" / "results" / "known-answer"
SOURCES = RESULTS / "runs" / "sources" / "journal.log"


def test_wilson_matches_the_textbook_values():
    # The 95% Wilson score intervals of 5/10 and 10/10, to four places.
    low, high = known_answer.wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = known_answer.wilson(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0, abs=1e-12)
    assert known_answer.wilson(0, 10)[0] == 0.0
    assert all(math.isnan(x) for x in known_answer.wilson(0, 0))


def test_planted_is_the_domain_own_data_and_nothing_else():
    dyck = {"source": "dyck", "dyck_k": 8}
    assert known_answer.planted(dyck, "dyck", "k=8")
    assert not known_answer.planted(dyck, "dyck", "k=4")
    assert not known_answer.planted({"source": "text"}, "dyck", "k=8")
    band = {"source": "nca", "alphabet": 4, "band": [0.3, 0.4]}
    assert known_answer.planted(band, "nca", "band=0.3-0.4 alphabet=4")
    assert not known_answer.planted(band, "nca", "band=0.2-0.3 alphabet=4")
    assert not known_answer.planted(band, "nca", "band=0.3-0.4 alphabet=10")
    with pytest.raises(ValueError, match="not a synthetic domain"):
        known_answer.planted(dyck, "code", "")


def _grid():
    if not SOURCES.exists():
        pytest.skip(f"{SOURCES} is not committed")
    return next(r for r in load_studies(SOURCES) if r.name == "ka-sources-grid")


def test_ground_truth_ranks_every_setting_and_measures_the_planted_margin():
    table, margin = known_answer.ground_truth(_grid())
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert table["nca_effect"].is_monotonic_decreasing and (table["seeds"] == 5).all()
    assert table["planted"].sum() == 1
    planted = table[table["planted"]].iloc[0]
    best_other = table[~table["planted"]]["nca_effect"].max()
    # The paired margin's mean is the difference of the two means (same 5 seeds in both arms).
    assert margin["margin"] == pytest.approx(planted["nca_effect"] - best_other, rel=1e-9)
    assert margin["ci_low"] < margin["margin"] < margin["ci_high"]


def test_a_planted_setting_that_is_not_best_is_reported_as_such():
    """The same grid read as if the NCA band had been planted: it ranks below dyck, and the
    margin says so with a negative sign."""
    grid = _grid()
    context = {**grid.config["context"], "domain": "nca", "data": "band=0.2-0.3 alphabet=4"}
    table, margin = known_answer.ground_truth(
        dataclasses.replace(grid, config={**grid.config, "context": context}))
    assert table["planted"].sum() == 1 and not table.iloc[0]["planted"]
    assert not margin["planted_is_best"]
    assert margin["runner_up"].startswith("dyck") and margin["margin"] < 0


def test_missing_storage_exits_2_with_one_line(tmp_path, capsys):
    assert known_answer.main(["--storage", str(tmp_path / "none.log"),
                              "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.log" in err[0]
    assert not (tmp_path / "out").exists()


def test_published_known_answer_results_regenerate(tmp_path, monkeypatch):
    """studies/results/known-answer/ is what its committed journals give today."""
    journals = sorted(RESULTS.glob("runs/*/journal.log"))
    if not journals:
        pytest.skip(f"no journals under {RESULTS / 'runs'}")
    monkeypatch.chdir(ROOT)  # the report names the storage as given, relative to the repository
    out = tmp_path / "known-answer"
    args = [a for j in journals for a in ("--storage", str(j.relative_to(ROOT)))]
    assert known_answer.main(args + ["--out", str(out)]) == 0
    written = sorted(p.name for p in out.glob("*") if p.suffix in (".csv", ".md"))
    assert "known_answer.md" in written and "recovery.csv" in written
    for name in written:
        text = (out / name).read_text().replace(str(out), str(RESULTS.relative_to(ROOT)))
        published = (RESULTS / name).read_text()
        assert not table_differences(text, published), (
            f"{name} differs from the published one: {table_differences(text, published)[:3]}")
