"""Figures show what the frames say (checked on the drawn artists, not just that they exist)."""

from __future__ import annotations

import io

import numpy as np
import optuna
import pytest
from PIL import Image

from analysis import plots
from analysis.frame import load_studies
from analysis.report import analyze
from analysis.stats import best_setting
from analysis.trajectories import plot_contact_sheet


@pytest.fixture(scope="module")
def a(synthetic_journal):
    return analyze(synthetic_journal)


def _rec(a, name):
    return next(r for r in a.records if r.name == name)


def _png_pixels(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return np.asarray(Image.open(buf).convert("L"), dtype=np.float64)


def test_gain_by_band_draws_each_anchor_at_its_mean(a):
    fig = plots.plot_gain_by_band(a.settings)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["code", "code-mo (code)", "math", "web"]
    code = a.settings[(a.settings["study"] == "code") & ~a.settings["label"].str.startswith("#")]
    segments = [seg for c in axes[0].collections if hasattr(c, "get_segments")
                for seg in c.get_segments() if len(seg) == 2 and seg[0][1] == seg[1][1]]
    drawn = sorted(round(seg[0][1], 9) for seg in segments)
    assert drawn == sorted(round(g, 9) for g in code["gain_mean"])
    assert _png_pixels(fig).std() > 10, "figure is blank"


def test_gain_by_alphabet_one_panel_per_study(a):
    fig = plots.plot_gain_by_alphabet(a.settings)
    assert sum(ax.get_visible() for ax in fig.axes) == 4


def test_history_plots_every_completed_trial_and_the_best(a):
    rec = _rec(a, "code")
    fig = plots.plot_history(rec, a.trials)
    ax = fig.axes[0]
    n_points = sum(len(c.get_offsets()) for c in ax.collections)
    assert n_points == len(rec.trials)
    best_line = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    assert best_line.get_ydata()[-1] == pytest.approx(rec.study.best_value)


def test_curves_right_panel_ends_at_the_mean_gain(a):
    rec = _rec(a, "math")
    best = best_setting(a.settings, "math")
    fig = plots.plot_curves(rec, a.settings, best["label"])
    left, right = fig.axes[:2]
    labels = [line.get_label() for line in left.get_lines()]
    assert labels[0].startswith("scratch") and any(x.startswith("paper") for x in labels)
    best_line = next(line for line in right.get_lines() if line.get_label().startswith("best"))
    assert best_line.get_ydata()[-1] == pytest.approx(best["gain_mean"], rel=1e-9)


def test_importances_name_the_searched_parameters(a):
    rec = _rec(a, "web")
    fig = plots.plot_importances(rec)
    names = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    assert names <= set(rec.trials[-1].params) | {"source"} and "band_lower" in names


def test_importances_skipped_on_small_study():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="tiny")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    with pytest.raises(plots.FigureSkipped, match="needs at least 20"):
        plots.plot_importances(load_studies(storage)[0])


def test_pareto_mask_by_hand():
    v = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3.5]], dtype=float)
    np.testing.assert_array_equal(plots.pareto_mask(v, ["minimize", "minimize"]),
                                  [True, True, False, True, False])
    # Maximising the first objective instead: (4, 1) dominates everything but (1, 5), (2, 3).
    np.testing.assert_array_equal(plots.pareto_mask(v, ["maximize", "minimize"]),
                                  [False, False, False, True, False])


def test_pareto_front_of_multi_objective_study(a):
    rec = _rec(a, "code-mo")
    fig = plots.plot_pareto(rec, a.trials)
    front = next(c for c in fig.axes[0].collections if "Pareto" in c.get_label())
    t = a.trials[a.trials["study"] == "code-mo"]
    mask = plots.pareto_mask(t[["values_loss", "values_compute"]].to_numpy(), rec.directions)
    assert len(front.get_offsets()) == mask.sum() >= 1
    with pytest.raises(plots.FigureSkipped, match="single objective"):
        plots.plot_pareto(_rec(a, "code"), a.trials)


def test_contact_sheet_from_gif_artifacts(served_study):
    a = analyze(served_study.journal)
    rec = a.records[0]
    best = best_setting(a.settings, rec.name)
    same = a.trials[a.trials["setting"] == best["setting"]]["number"].tolist()
    store = optuna.artifacts.FileSystemArtifactStore(str(served_study.artifact_dir))
    fig = plot_contact_sheet(rec, best, same, store, render_nca=False)
    images = [ax for ax in fig.axes if ax.get_images()]
    assert len(images) == len(same) * 10, "one row of 10 frames per trial's GIF"
    with pytest.raises(plots.FigureSkipped, match="no artifact store given; rendering with nca"):
        plot_contact_sheet(rec, best, same, None, render_nca=False)


def test_contact_sheet_rendered_by_nca(served_study):
    pytest.importorskip("nca.show", reason="nca's renderer is not built yet",
                        exc_type=ImportError)
    a = analyze(served_study.journal)
    best = best_setting(a.settings, a.records[0].name)
    fig = plot_contact_sheet(a.records[0], best, [int(best["trials"].split(",")[0])], None)
    assert "rendered by nca" in fig.texts[0].get_text()
    assert _png_pixels(fig).std() > 10
