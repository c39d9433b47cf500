"""Report figures, drawn on bare ``matplotlib.figure.Figure`` objects (no pyplot state).

Each function returns a Figure, or raises :class:`FigureSkipped` saying why the figure does not
apply (e.g. no multi-objective study for a Pareto front). Inputs are the DataFrames of
:mod:`analysis.frame` and :mod:`analysis.stats`, plus the study records for curves.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

from analysis.frame import SCRATCH_SOURCES, StudyRecord, domain_key, setting_text
from analysis.paper import PAPER, band_anchors
from analysis.pareto import pareto_mask
from search.record import TrialRecord

__all__ = [
    "MIN_TRIALS_FOR_IMPORTANCE",
    "FigureSkipped",
    "plot_best_band_by_domain",
    "plot_curves",
    "plot_gain_by_alphabet",
    "plot_gain_by_band",
    "plot_history",
    "plot_importances",
    "plot_pareto",
]

MIN_TRIALS_FOR_IMPORTANCE = 20
"""PED-ANOVA compares the top 10% of trials with the rest; below this it says nothing."""
_SEARCH_COLOR = "#9a9a9a"
_BAND_COLORS = {"20-30%": "#1f77b4", "30-40%": "#2ca02c", "40-50%": "#9467bd", "50%+": "#ff7f0e"}
_OTHER_ANCHOR_COLOR = "#8c564b"
_PAPER_COLOR = "#d62728"
_BEST_COLOR = "#17becf"


class FigureSkipped(Exception):
    """A figure that does not apply to these studies; the message says why."""


def _anchor_color(band: object, source: object = None) -> str:
    """Anchors are coloured by band (the paper's four have fixed colours); scratch is black."""
    if source in SCRATCH_SOURCES:
        return "black"
    return _BAND_COLORS.get(str(band), _OTHER_ANCHOR_COLOR)


def _is_anchor(labels: pd.Series) -> pd.Series:
    """Anchors carry their name as label; searched settings are ``#<trial>``."""
    return ~labels.astype(str).str.startswith("#")


def _panels(n: int, width: float = 5.6, height: float = 4.0, max_cols: int = 2
            ) -> tuple[Figure, np.ndarray]:
    """A grid of ``n`` axes, at most ``max_cols`` per row; unused cells are hidden."""
    cols = min(n, max_cols)
    rows = -(-n // cols)
    # At least 8 inches wide so a one-panel figure still fits its title and legend.
    fig = Figure(figsize=(max(width * cols, 8.0), height * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _shared_legend(fig: Figure, axes: np.ndarray) -> None:
    """One legend under the panels with every distinct label."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center",
               ncols=min(len(seen), 4), fontsize=8, frameon=False)


def _dot_alpha(n: int) -> float:
    """Opaque dots for small studies; translucent ones so thousands still show density."""
    return 1.0 if n < 500 else 0.25


def _title(study: str, domain: object) -> str:
    return f"{domain}" if domain == study else f"{study} ({domain})"


def _units(s: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per study and domain (a multi-domain study has one per domain), sorted."""
    return [(str(study), d) for (study, _), d in s.groupby(["study", domain_key(s)], sort=True)]


def _reference_line(ax: Axes, name: str, t: pd.DataFrame) -> None:
    """Where scratch sits on this objective: its mean loss, or zero gain."""
    if name == "loss" and "scratch_loss_mean" in t and t["scratch_loss_mean"].notna().any():
        ax.axhline(t["scratch_loss_mean"].median(), color="black", ls="--", lw=0.9,
                   label="scratch (mean over seeds)")
    elif name == "gain":
        ax.axhline(0.0, color="black", ls="--", lw=0.9, label="scratch")


def plot_history(rec: StudyRecord, trials: pd.DataFrame) -> Figure:
    """Objective value per trial number, anchors highlighted, best-so-far as a step line."""
    t = trials[(trials["study"] == rec.name) & (trials["state"] == "COMPLETE")]
    if t.empty:
        raise FigureSkipped(f"study {rec.name!r} has no completed trial")
    cols = ["value"] if not rec.is_multi_objective else [f"values_{m}" for m in rec.metric_names]
    fig, axes = _panels(len(cols), width=6.5)
    anchor = t["kind"].astype(str).str.startswith("anchor:") if "kind" in t else t["number"] < 0
    size = 30 if len(t) < 200 else 8
    for ax, col, name, direction in zip(axes, cols, rec.metric_names, rec.directions, strict=True):
        y = t[col].to_numpy(dtype=np.float64)
        ax.scatter(t["number"][~anchor], y[~anchor], s=size, c=_SEARCH_COLOR, label="search",
                   alpha=_dot_alpha(len(t)), lw=0, rasterized=True)
        for label, g in t[anchor].groupby("label"):
            color = _anchor_color(g["band"].iloc[0], g["source"].iloc[0] if "source" in g else None)
            ax.scatter(g["number"], g[col], s=50, c=color, marker="D",
                       edgecolors="white", linewidths=0.5, label=str(label), zorder=3)
        best = np.fmax.accumulate(y) if direction == "maximize" else np.fmin.accumulate(y)
        ax.step(t["number"], best, where="post", c="black", lw=1.2, label="best so far")
        _reference_line(ax, name, t)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number")
        ax.set_ylabel(f"{name} ({direction})")
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes)
    fig.suptitle(f"Optimisation history: {rec.name}")
    return fig


def plot_gain_by_band(settings: pd.DataFrame) -> Figure:
    """Gain vs complexity band, one panel per study and domain: the paper's "optimal complexity"
    chart over every setting.

    Anchors are drawn as a horizontal bar across their band at their mean gain with the 95%
    interval as a vertical error bar; searched settings are grey dots at their band's middle.
    """
    if settings.empty:
        raise FigureSkipped("no completed trial records per-seed gains")
    s = settings.dropna(subset=["band_lower", "band_upper"])
    if s.empty:
        raise FigureSkipped("no setting records a complexity band")
    units = _units(s)
    fig, axes = _panels(len(units))
    for ax, (study, d) in zip(axes, units, strict=True):
        domain = d["domain"].iloc[0]
        upper = np.minimum(d["band_upper"], 1.0) * 100
        mid = (d["band_lower"] * 100 + upper) / 2
        anchor = _is_anchor(d["label"])
        ax.scatter(mid[~anchor], d["gain_mean"][~anchor], s=10, c=_SEARCH_COLOR, lw=0,
                   alpha=_dot_alpha(int((~anchor).sum())), rasterized=True,
                   label="searched settings (at band middle)")
        for i in np.flatnonzero(anchor.to_numpy()):
            row = d.iloc[i]
            color = _anchor_color(row["band"])
            lo, hi = row["band_lower"] * 100, upper.iloc[i]
            ax.hlines(row["gain_mean"], lo, hi, colors=color, lw=3, zorder=3,
                      label=f"anchor at {setting_text(row)}")
            if "paper" in str(row["label"]).split(" = "):
                ax.scatter([mid.iloc[i]], [row["gain_mean"]], marker="*", s=160, zorder=4,
                           c=_PAPER_COLOR, edgecolors="white", label="the paper's setting")
            if np.isfinite(row["ci_low"]):
                ax.errorbar(mid.iloc[i], row["gain_mean"], capsize=4, color=color, lw=1.2, zorder=3,
                            yerr=[[row["gain_mean"] - row["ci_low"]],
                                  [row["ci_high"] - row["gain_mean"]]])
        paper = PAPER.get(str(domain))
        if paper is not None:
            lo, hi = (100 * b for b in paper.band)
            ax.axvspan(lo, hi, color="#ffd54f", alpha=0.3, label="paper's best band")
        ax.axhline(0, color="black", lw=0.8, ls="--")
        ax.set_xlim(0, 100)
        ax.set_xlabel("complexity band (gzip ratio, %)")
        ax.set_ylabel("gain vs scratch (% of loss)")
        ax.set_title(_title(study, domain))
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes)
    fig.suptitle("Downstream gain by complexity band (anchors: bar = band, whisker = 95% CI "
                 "over seeds)")
    return fig


def plot_gain_by_alphabet(settings: pd.DataFrame, seed: int = 0) -> Figure:
    """Gain vs NCA alphabet size, one panel per study and domain: settings as dots, mean ± 95%
    CI per size."""
    if settings.empty:
        raise FigureSkipped("no completed trial records per-seed gains")
    s = settings.dropna(subset=["alphabet"])
    if s.empty:
        raise FigureSkipped("no setting records an alphabet size")
    units = _units(s)
    fig, axes = _panels(len(units))
    jitter = np.random.default_rng(seed)
    for ax, (study, d) in zip(axes, units, strict=True):
        x = d["alphabet"].to_numpy(dtype=np.float64)
        ax.scatter(x + jitter.uniform(-0.15, 0.15, x.size), d["gain_mean"], s=10, lw=0,
                   c=_SEARCH_COLOR, alpha=_dot_alpha(x.size), rasterized=True,
                   label="settings (mean over their seeds)")
        agg = d.groupby("alphabet")["gain_mean"].agg(["mean", "std", "count"])
        half = 1.96 * agg["std"] / np.sqrt(agg["count"])
        ax.errorbar(agg.index, agg["mean"], yerr=half.fillna(0), fmt="o-", color="black",
                    capsize=3, lw=1.2, zorder=3, label="mean over settings ± 95% CI")
        ax.axhline(0, color="black", lw=0.8, ls="--")
        ax.set_xlabel("alphabet size n (states per cell)")
        ax.set_ylabel("gain vs scratch (% of loss)")
        ax.set_title(_title(study, d["domain"].iloc[0]))
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes)
    fig.suptitle("Downstream gain by alphabet size (all settings, other knobs vary)")
    return fig


def _setting_curves(rec: StudyRecord, numbers: Sequence[int], scratch: bool,
                    domain: str | None = None) -> dict[int, np.ndarray]:
    """Per seed, the ``(k, 2)`` curve (the matched scratch run's with ``scratch``) of the latest
    trial among ``numbers``, on ``domain`` of a multi-domain trial (default: its first)."""
    wanted, by_seed = set(numbers), {}
    for t in rec.trials:
        if t.number not in wanted or t.state != TrialState.COMPLETE:
            continue
        record = TrialRecord.from_attrs(t.user_attrs)
        if record is None or (domain is not None and record.domains
                              and domain not in record.domains):
            continue
        if domain is not None:
            record = record.for_domain(domain)
        for s in record.seeds:
            curve = s.scratch_curve if scratch else s.curve
            if curve:
                by_seed[s.seed] = np.asarray(curve, dtype=np.float64)
    return by_seed


def _on_grid(curves: dict[int, np.ndarray], grid: np.ndarray) -> np.ndarray:
    """Each seed's losses interpolated at ``grid`` tokens, ``(seeds, len(grid))``."""
    return np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves.values()])


def plot_curves(rec: StudyRecord, settings: pd.DataFrame, best_label: str,
                domain: str | None = None) -> Figure:
    """Validation curves of scratch, the paper's setting and the best setting (mean, seed range),
    on ``domain`` of a multi-domain study.

    Left: loss vs tokens. Right: the same as gain over scratch of the same seed, in %.
    """
    s = settings[settings["study"] == rec.name]
    if domain is not None:
        s = s[s["domain"] == domain]
    picks = [("paper", s[s["label"].astype(str).str.contains("paper")]),
             ("best", s[s["label"] == best_label])]
    numbers = [int(n) for _, p in picks for n in ",".join(p["trials"]).split(",") if n]
    scratch = _setting_curves(rec, numbers, True, domain)
    if not scratch:
        raise FigureSkipped(f"study {rec.name!r}: no scratch curves recorded")
    grid = next(iter(scratch.values()))[:, 0]
    grid = grid[grid > 0]  # the evaluation at 0 tokens has no place on a log axis
    fig, (ax, axg) = _panels(2, width=6.0)
    _band_line(ax, grid, _on_grid(scratch, grid), "scratch", "black")
    for name, p in picks:
        if p.empty:
            continue
        row = p.iloc[0]
        curves = _setting_curves(rec, [int(n) for n in row["trials"].split(",")], False, domain)
        seeds = [k for k in curves if k in scratch]
        if not seeds:
            continue
        y = _on_grid({k: curves[k] for k in seeds}, grid)
        color = _BEST_COLOR if name == "best" else _PAPER_COLOR
        text = f"{name}: {row['label']} ({setting_text(row)})"
        _band_line(ax, grid, y, text, color)
        ref = _on_grid({k: scratch[k] for k in seeds}, grid)
        _band_line(axg, grid, 100 * (ref - y) / ref, text, color)
    ax.set_xscale("log")
    ax.set_ylabel("validation loss (nats/token)")
    axg.axhline(0, color="black", lw=0.8, ls="--")
    axg.set_xscale("log")
    axg.set_ylabel("gain vs scratch, same seed (%)")
    for a in (ax, axg):
        a.set_xlabel("downstream training tokens")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=8)
    where = rec.name if domain is None else f"{rec.name} on {domain}"
    fig.suptitle(f"Validation curves: {where} (mean over seeds, shaded: seed range)")
    return fig


def _band_line(ax: Axes, x: np.ndarray, ys: np.ndarray, label: str, color: str) -> None:
    ax.plot(x, ys.mean(axis=0), color=color, lw=1.6, label=f"{label} [{len(ys)} seeds]")
    if len(ys) > 1:
        ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.18, lw=0)


def plot_importances(rec: StudyRecord) -> Figure:
    """PED-ANOVA parameter importances (Optuna's default evaluator) of the study's objective(s)."""
    n_done = sum(t.state == TrialState.COMPLETE for t in rec.trials)
    if n_done < MIN_TRIALS_FOR_IMPORTANCE:
        raise FigureSkipped(f"study {rec.name!r}: {n_done} completed trials, PED-ANOVA needs "
                            f"at least {MIN_TRIALS_FOR_IMPORTANCE}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # "Some regimes have less than 2 trials": expected on small studies, noted in the title.
        warnings.simplefilter("ignore", UserWarning)
        imp = optuna.importance.get_param_importances(rec.study)
    if not imp:
        raise FigureSkipped(f"study {rec.name!r}: no parameter varies across trials")
    names, values = list(imp)[::-1], list(imp.values())[::-1]
    fig = Figure(figsize=(6.5, 0.45 * len(names) + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, values, color="#4c72b0")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.15)
    ax.set_xlabel("importance (PED-ANOVA, normalised)")
    target = ", ".join(rec.metric_names)
    ax.set_title(f"Parameter importances: {rec.name} ({target}, {n_done} trials)")
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_pareto(rec: StudyRecord, trials: pd.DataFrame) -> Figure:
    """Each pair of objectives of a multi-objective study (one panel per pair), the Pareto front
    over all objectives highlighted and the paper-band anchors marked: between domains, for a
    study with an objective per domain."""
    if not rec.is_multi_objective:
        raise FigureSkipped(f"study {rec.name!r} has a single objective")
    t = trials[(trials["study"] == rec.name) & (trials["state"] == "COMPLETE")]
    cols = [f"values_{m}" for m in rec.metric_names]
    t = t.dropna(subset=cols)
    if t.empty:
        raise FigureSkipped(f"study {rec.name!r} has no completed trial")
    v = t[cols].to_numpy(dtype=np.float64)
    front = pareto_mask(v, rec.directions)
    anchors = t.index.isin(band_anchors(t).index)
    pairs = list(itertools.combinations(range(len(cols)), 2))
    fig, axes = _panels(len(pairs), width=5.0, height=4.2, max_cols=3)
    for ax, pair in zip(axes, pairs, strict=True):
        _pareto_panel(ax, rec, t, v, front, anchors, pair)
    _shared_legend(fig, axes)
    fig.suptitle(f"Pareto front: {rec.name} ({front.sum()} of {len(t)} trials on the front)")
    return fig


def _pareto_panel(ax: Axes, rec: StudyRecord, t: pd.DataFrame, v: np.ndarray, front: np.ndarray,
                  anchors: np.ndarray, pair: tuple[int, int]) -> None:
    """Objectives ``pair`` of every trial; front trials numbered when few; anchors by band."""
    i, j = pair
    ax.scatter(v[~front, i], v[~front, j], s=10, c=_SEARCH_COLOR, label="trials", rasterized=True)
    if len(rec.directions) == 2:  # with more objectives the front's projection is no staircase
        f = v[front][np.argsort(v[front, i])]
        ax.step(f[:, i], f[:, j], where="post", c=_PAPER_COLOR, lw=1)
    ax.scatter(v[front, i], v[front, j], s=30, c=_PAPER_COLOR,
               label=f"Pareto front ({front.sum()})", zorder=3)
    numbers = t["number"].to_numpy()[front] if front.sum() <= 25 else []
    for number, x, y in zip(numbers, v[front, i], v[front, j], strict=True):
        ax.annotate(f"#{number}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for label, rows in pd.Series(np.flatnonzero(anchors)).groupby(
            t["label"].to_numpy()[anchors], sort=True):
        band = t["band"].to_numpy()[rows.iloc[0]]
        ax.scatter(v[rows, i], v[rows, j], s=70, marker="D", c=_anchor_color(band),
                   edgecolors="black", linewidths=0.6, zorder=4, label=f"{label} ({band})")
    ax.set_xlabel(f"{rec.metric_names[i]} ({rec.directions[i]})")
    ax.set_ylabel(f"{rec.metric_names[j]} ({rec.directions[j]})")
    if np.all(v[:, j] > 0) and v[:, j].max() / v[:, j].min() > 100:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


_EFFECT_STYLES = ((("gain_mean", "ci_low", "ci_high"), "NCA effect (vs matched scratch)", "o",
                   "#4c72b0", -0.14),
                  (("net_mean", "net_ci_low", "net_ci_high"), "net effect (vs best scratch)", "s",
                   "#dd8452", 0.14))
"""Per effect: its mean and 95% interval columns of ``band_table``, legend, marker, colour and
offset from the band's position (the two effects side by side)."""


def plot_best_band_by_domain(bands: pd.DataFrame) -> Figure:
    """The paper's "optimal complexity by domain" chart from our anchors: one panel per study
    and domain, each paper band's NCA and net effect (mean over seeds, whisker: 95% CI), our best
    band shaded and the paper's best band outlined.

    Args:
        bands: :func:`analysis.paper.band_table` output.
    """
    if bands.empty:
        raise FigureSkipped("no paper-band anchors (anchors named paper or band-* at the "
                            "paper's bands, alphabet 10)")
    units = _units(bands)
    fig, axes = _panels(len(units), width=4.6, max_cols=3)
    for ax, (study, d) in zip(axes, units, strict=True):
        x = np.arange(len(d), dtype=np.float64)
        for columns, name, marker, color, offset in _EFFECT_STYLES:
            _effect_bars(ax, d, x + offset, columns, name, marker, color)
        for flags, style in ((d["best"], {"color": _BEST_COLOR, "alpha": 0.25,
                                          "label": "our best band (NCA effect)"}),
                             (d["paper_best"], {"fill": False, "ec": _PAPER_COLOR, "ls": "--",
                                                "lw": 1.5, "label": "the paper's best band"})):
            for at in x[flags.to_numpy(dtype=bool)]:
                ax.axvspan(at - 0.45, at + 0.45, **style)
        twice = d["band"].duplicated(keep=False).to_numpy()
        ax.set_xticks(x, [f"{b}\n{lb}" if dup else str(b)
                          for b, lb, dup in zip(d["band"], d["label"], twice, strict=True)])
        ax.set_xlim(-0.6, len(d) - 0.4)
        ax.axhline(0, color="black", lw=0.8, ls="--")
        ax.set_xlabel("complexity band (gzip ratio)")
        ax.set_ylabel("effect (% of scratch's final loss)")
        ax.set_title(_title(study, d["domain"].iloc[0]))
        ax.grid(alpha=0.3, axis="y")
    _shared_legend(fig, axes)
    fig.suptitle("Best complexity band by domain (paper-band anchors; whisker: 95% CI over seeds)")
    return fig


def _effect_bars(ax: Axes, d: pd.DataFrame, x: np.ndarray, columns: tuple[str, str, str],
                 name: str, marker: str, color: str) -> None:
    """Mean and 95% interval from ``columns`` (mean, low, high); nothing when the seeds do not
    carry that effect."""
    mean, lo, hi = (d[c].to_numpy(dtype=np.float64) for c in columns)
    if np.isnan(mean).all():
        return
    err = np.nan_to_num(np.stack([mean - lo, hi - mean]))  # one seed: no interval to draw
    ax.errorbar(x, mean, yerr=err, fmt=marker, color=color, capsize=3, ms=6, lw=1.2, label=name,
                zorder=3)
