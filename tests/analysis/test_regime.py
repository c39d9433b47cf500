"""The regime map on studies with known effects: cells, Holm, the sign-flip fit, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from analysis import regime
from analysis.stats import mean_ci
from tests._published import table_differences


def _effect(recipe: str, tokens: int, seed: int) -> tuple[float, float]:
    """(NCA effect, net effect) %: paper's grows 4 points per decade of budget, crossing zero
    at 10M tokens; proxy's is a constant -10."""
    noise = (seed - 1) * 0.3
    if recipe == "paper":
        nca = 4.0 * math.log10(tokens / 1e7) + noise
        return nca, nca - 2.0
    return -10.0 + noise, -10.0 + noise


def _journal(path, budgets=(100_000, 1_000_000, 10_000_000, 100_000_000),
             recipes=("paper", "proxy"), name="regime", seeds=(0, 1, 2)):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for recipe in recipes:
        for tokens in budgets:
            t = study.ask()
            seeds = list(seeds)
            effects = [_effect(recipe, tokens, s) for s in seeds]
            scratch = [3.0 + 0.1 * s for s in seeds]
            losses = [sc * (1 - e[0] / 100) for sc, e in zip(scratch, effects, strict=True)]
            best = [loss / (1 - e[1] / 100) for loss, e in zip(losses, effects, strict=True)]
            attrs = {
                "setting": json.dumps({"source": "nca", "band": [0.3, 0.4], "alphabet": 10,
                                       "recipe": recipe, "domain_tokens": tokens}),
                "source": "nca", "band": [0.3, 0.4], "alphabet": 10, "seeds": seeds,
                "losses": losses, "scratch_losses": scratch,
                "gains_pct": [e[0] for e in effects], "net_effects_pct": [e[1] for e in effects],
                "best_scratch_losses": best, "best_scratch_recipes": ["proxy"] * len(seeds),
                "recipe": {"name": recipe}, "domain_tokens": tokens,
                "nca_tokens": int(0.04 * tokens),
            }
            for k, v in attrs.items():
                t.set_user_attr(k, v)
            study.tell(t, float(np.mean([e[1] for e in effects])))
    return path


def test_cells_hold_both_effects_with_intervals_and_holm(tmp_path):
    out = tmp_path / "out"
    assert regime.main(["--storage", str(_journal(tmp_path / "j.log")), "--out", str(out)]) == 0
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 8 and set(cells["nca_fraction"]) == {0.04}
    row = cells[(cells["recipe"] == "paper") & (cells["domain_tokens"] == 100_000)].iloc[0]
    expected = [_effect("paper", 100_000, s)[0] for s in range(3)]
    mean, low, high = mean_ci(expected)
    assert row["nca_effect"] == pytest.approx(mean, abs=1e-6)
    assert (row["nca_ci_low"], row["nca_ci_high"]) == pytest.approx((low, high), abs=1e-6)
    assert row["net_effect"] == pytest.approx(mean - 2.0, abs=1e-6)
    assert (cells["nca_p_holm"] >= cells["nca_p"] - 1e-12).all()
    assert (out / "figures" / "regime_heat.png").stat().st_size > 1000
    assert "NCA effect" in (out / "regime.md").read_text()


def test_sign_flip_is_placed_where_the_line_crosses_zero_or_declared_unidentified(tmp_path):
    out = tmp_path / "out"
    regime.main(["--storage", str(_journal(tmp_path / "j.log")), "--out", str(out)])
    flips = pd.read_csv(out / "sign_flip.csv").set_index(["recipe", "effect"])
    paper = flips.loc[("paper", "nca")]
    assert paper["slope_per_decade"] == pytest.approx(4.0, abs=1e-6)
    assert paper["flip_tokens"] == pytest.approx(1e7, rel=1e-3)
    assert paper["flip_low"] < 1e7 < paper["flip_high"]
    assert flips.loc[("paper", "net"), "flip_tokens"] == pytest.approx(10 ** 7.5, rel=1e-3)
    assert "extrapolated" not in flips.loc[("paper", "nca"), "flip"]  # 1e7: inside 1e5-1e8
    assert str(flips.loc[("proxy", "nca"), "flip"]).startswith("not identified")


def test_a_crossing_outside_the_measured_budgets_says_it_is_extrapolated(tmp_path):
    out = tmp_path / "out"
    regime.main(["--storage", str(_journal(tmp_path / "j.log", budgets=(1e5, 1e6))),
                 "--out", str(out)])
    flip = pd.read_csv(out / "sign_flip.csv").set_index(["recipe", "effect"]).loc[("paper", "nca")]
    assert flip["flip_tokens"] == pytest.approx(1e7, rel=1e-3)
    assert flip["flip"].endswith("extrapolated above the measured 0.1M-1.0M"), flip["flip"]


def test_a_longer_cell_from_another_study_joins_the_map(tmp_path):
    """As published: the grid's journal, and a second study's one cell at a longer budget for
    one recipe only. The map holds 5 cells (the missing ones left blank), and the line of that
    recipe runs through its 3 budgets, so its crossing is no longer extrapolated."""
    out = tmp_path / "out"
    grid = _journal(tmp_path / "grid.log", budgets=(1e5, 1e6))
    longer = _journal(tmp_path / "long.log", budgets=(1e8,), recipes=("paper",), name="long")
    assert regime.main(["--storage", str(grid), "--storage", str(longer), "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "cells.csv")) == 5
    flips = pd.read_csv(out / "sign_flip.csv").set_index(["recipe", "effect"])
    paper, proxy = flips.loc[("paper", "nca")], flips.loc[("proxy", "nca")]
    assert paper["budgets"] == "0.1M, 1.0M, 100.0M" and proxy["budgets"] == "0.1M, 1.0M"
    assert (paper["flip_tokens"] == pytest.approx(1e7, rel=1e-3)
            and "extrapolated" not in paper["flip"])
    assert (out / "figures" / "regime_heat.png").stat().st_size > 1000


def test_a_cell_run_as_one_study_per_seed_is_the_cell_run_as_one_study(tmp_path):
    """A cell too long for one session runs as a study per seed (README: Regime map): given all
    their journals, the map pools the seeds into the one cell a 3-seed study gives."""
    grid = _journal(tmp_path / "grid.log", budgets=(1e5, 1e6))
    whole = _journal(tmp_path / "long.log", budgets=(1e8,), recipes=("paper",), name="long")
    split = [_journal(tmp_path / f"long-s{s}.log", budgets=(1e8,), recipes=("paper",),
                      name=f"long-s{s}", seeds=(s,)) for s in (0, 1, 2)]
    tables = []
    for journals in ([grid, whole], [grid, *split]):
        out = tmp_path / f"out{len(tables)}"
        args = [a for j in journals for a in ("--storage", str(j))]
        assert regime.main([*args, "--out", str(out)]) == 0
        tables.append(pd.read_csv(out / "cells.csv").drop(columns="trials"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[1]["n_seeds"].tolist() == [3] * 5


def test_no_crossing_where_a_line_does_not_fit_the_budgets():
    """Down then up over three budgets (3 seeds each): a line through them has a clear slope and
    a crossing, but it describes none of the budgets, and the lack-of-fit test says so."""
    d = pd.DataFrame([{"recipe": "paper", "nca_fraction": 0.04, "domain_tokens": tokens,
                       "gain_pct": effect + noise, "net_gain_pct": effect + noise}
                      for tokens, effect in ((1e6, -4.0), (1e7, -11.0), (1e8, -2.0))
                      for noise in (-0.5, 0.0, 0.5)])
    flips = regime.sign_flips(d)
    assert len(flips) == 2 and (flips["lack_of_fit_p"] < 0.001).all()
    assert flips["flip"].str.startswith("not identified: a line does not fit").all()
    assert flips["flip_tokens"].isna().all()


def test_missing_storage_or_no_trials_exits_2_with_one_line(tmp_path, capsys):
    assert regime.main(["--storage", str(tmp_path / "none.log"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.log" in err[0]
    assert not (tmp_path / "regime.md").exists()


@pytest.mark.parametrize("command", ["regime", "bands"])
def test_published_regime_results_regenerate_identically(command, tmp_path, monkeypatch):
    """studies/results/regime/ (the regime map, the band sweep) is what its committed journals
    give today, by the commands studies/results/README.md names."""
    from analysis import report

    root = Path(__file__).resolve().parents[2]
    runs = "studies/results/regime/runs"
    published = root / "studies" / "results" / "regime" / ("" if command == "regime" else "bands")
    out = tmp_path / command
    monkeypatch.chdir(root)  # the reports name the storage as given, relative to the repository
    if command == "regime":  # the grid, then the 13.1M cell's seed studies as published
        journals = [f"{runs}/regime/journal.log"] + sorted(
            str(j.relative_to(root)) for j in (root / runs).glob("regime-long*/journal.log"))
        assert regime.main([arg for j in journals for arg in ("--storage", j)]
                           + ["--out", str(out)]) == 0
    else:
        assert report.main(["--storage", f"{runs}/regime-bands-code/journal.log",
                            "--storage", f"{runs}/regime-bands-web/journal.log",
                            "--out", str(out)]) == 0
    written = sorted(p.relative_to(out) for p in out.glob("*") if p.suffix in (".csv", ".md"))
    assert len(written) >= 4
    for rel in written:
        text = (out / rel).read_text().replace(str(out), str(published.relative_to(root)))
        assert not table_differences(text, (published / rel).read_text()), (
            f"{rel} differs from the published one: "
            f"{table_differences(text, (published / rel).read_text())[:3]}")


def _table_rows(markdown: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace("**", "") for cell in line.strip("|").split("|")])
    return rows


def test_the_results_readme_quotes_the_published_regime_map():
    """studies/results/README.md copies regime.md's table (with prose around it) and its
    regeneration command: both must say what regime.md says, cell for cell."""
    root = Path(__file__).resolve().parents[2] / "studies" / "results"
    readme = (root / "README.md").read_text()
    regime_md = (root / "regime" / "regime.md").read_text()
    command = regime_md.split("Regenerate with `", 1)[1].split("`", 1)[0]
    assert f"`{command}`" in readme
    head = "| recipe | downstream | NCA share | seeds |"
    quoted, published = _table_rows(readme, head), _table_rows(regime_md, head)
    assert len(quoted) == len(published) == 9

    def interval(cell: str) -> str:  # "+0.11 [-2.8, +3.1]" of either table's wording
        return cell.split("]")[0] + "]"

    for q, p in zip(quoted, published, strict=True):
        assert q[:4] == p[:4]  # recipe, downstream, share, seeds
        assert (interval(q[4]), interval(q[5])) == (interval(p[4]), interval(p[5])), q[:4]


def test_a_series_interval_does_not_move_when_another_series_gains_seeds():
    """Each series (recipe, NCA share, effect) is fitted on its own seeds, so a cell added to
    the paper recipe leaves the proxy recipe's published intervals as they were."""
    rng = np.random.default_rng(0)

    def seeds(recipe, budgets):
        return [{"recipe": recipe, "nca_fraction": 0.04, "domain_tokens": tokens,
                 "gain_pct": rng.normal(), "net_gain_pct": rng.normal()}
                for tokens in budgets for _ in range(3)]

    grid = pd.DataFrame(seeds("paper", (1e5, 1e6)) + seeds("proxy", (1e5, 1e6)))
    longer = pd.concat([grid, pd.DataFrame(seeds("paper", (1e7,)))], ignore_index=True)
    before, after = (regime.sign_flips(d).set_index(["recipe", "effect"]) for d in (grid, longer))
    pd.testing.assert_frame_equal(before.loc["proxy"], after.loc["proxy"])
    assert before.loc[("paper", "nca"), "budgets"] != after.loc[("paper", "nca"), "budgets"]


def _cells_and_seeds(tmp_path):
    from analysis.frame import load_studies, seeds_frame

    path = _journal(tmp_path / "j.log", budgets=(1_000_000, 10_000_000))
    d = regime.regime_seeds(seeds_frame(load_studies(str(path))))
    return regime.cell_table(d), d


def test_the_heat_map_marks_cells_not_run_and_gives_each_recipe_its_scale(tmp_path):
    """A cell that was not run is hatched and says so (it was painted as zero), and each recipe
    has its own colour scale (proxy's -10 no longer washes out paper's small effects)."""
    cells, _ = _cells_and_seeds(tmp_path)
    cells = cells[~((cells["recipe"] == "paper") & (cells["domain_tokens"] == 10_000_000))]
    fig = regime.heat_maps(cells, tmp_path / "heat.png")
    axes = [ax for ax in fig.axes if ax.get_title()]
    texts = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in axes}
    assert "not run" in texts["NCA effect, recipe paper"]
    assert "not run" not in texts["NCA effect, recipe proxy"]
    limits = {ax.get_title(): ax.images[0].get_clim() for ax in axes}
    assert limits["NCA effect, recipe paper"] != limits["NCA effect, recipe proxy"]
    assert limits["NCA effect, recipe paper"][1] < 10


def test_the_budget_figure_draws_fits_over_the_measured_budgets_only(tmp_path):
    """Solid fitted lines stay within the budgets measured (they ran to 4x the largest); a
    crossing beyond them is reached by a dashed grey extension, labelled as extrapolated."""
    _, d = _cells_and_seeds(tmp_path)
    flips = regime.sign_flips(d)
    fig = regime.budget_plot(d, flips, tmp_path / "budget.png")
    measured = (d["domain_tokens"].min(), d["domain_tokens"].max())
    solid = [line for ax in fig.axes for line in ax.get_lines()
             if line.get_linestyle() == "-" and len(line.get_xdata()) > 2]
    assert solid and all(measured[0] * 0.999 <= min(line.get_xdata())
                         and max(line.get_xdata()) <= measured[1] * 1.001 for line in solid)
    dashed = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"]
    outside = flips["flip_tokens"].dropna()
    outside = outside[(outside < measured[0]) | (outside > measured[1])]
    assert len(dashed) >= 1 if len(outside) else not dashed


def test_the_published_wording_is_no_stronger_than_the_numbers():
    """The band sweep's code 30-40% row is the regime cell's seeds again: labelled a re-run,
    with its p-value in the 9-cell family it was first tested in; the 3.3M/16% cell is the only
    one whose interval excludes 0, not the only positive one."""
    root = Path(__file__).resolve().parents[2]
    results = (root / "studies" / "results" / "README.md").read_text()
    row = next(line for line in results.splitlines() if line.startswith("| 30-40%"))
    assert "re-run" in row and "0.059 over the regime's 9 cells" in row
    assert "only positive effect" not in results
    assert "the only effect in the map\n  whose interval excludes 0" in results
    assert "significant after Holm" not in row
