"""The report's sections as document blocks (what is said, not how it is rendered)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import plots
from analysis.document import Block, FigureBlock, Heading, Para, Table
from analysis.frame import StudyRecord
from analysis.paper import PAPER, PAPER_MAX_SPEEDUP
from analysis.stats import WILCOXON_MIN_N, best_setting
from analysis.trajectories import plot_contact_sheet

if TYPE_CHECKING:
    from analysis.report import Analysis

__all__ = ["method_notes", "overview", "study_section"]

Saver = Callable[[str, str, Callable[[], Figure]], FigureBlock]
_TOP_SEARCHED = 15


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def overview(a: Analysis, source: str, hint: str | None, save: Saver) -> list[Block]:
    """Title, what was read, the cross-domain table with the paper, cross-study figures."""
    studies = "; ".join(
        f"`{r.name}` ({_domain_text(r)}, {r.preset or 'preset not set'}, "
        f"{len(r.trials)} trials)" for r in a.records)
    blocks: list[Block] = [Heading(text="NCA pre-pre-training search report"),
                           Para(text=f"Storage `{source}`. Studies: {studies}.")]
    if hint:
        blocks.append(Para(text=f"Every trial with its artifacts in the dashboard: `{hint}`"))
    blocks += _confirmed_blocks(a) + _power_blocks(a)
    blocks.append(Heading(text="Across domains, next to the paper", level=2))
    paper = "; ".join(f"{d}: best band {p.best_band}, perplexity -{p.ppl_gain_pct}%"
                      for d, p in PAPER.items())
    blocks.append(Para(text=(
        f"The paper (1.6B model, 164M NCA tokens) reports {paper}; speedups up to "
        f"{PAPER_MAX_SPEEDUP}x. Ours: best band among the paper-band anchors (alphabet 10), and "
        "the best setting among those run on at least two seeds, with its gain as % of scratch's "
        "final loss [95% CI], as perplexity reduction, its paired test against scratch and "
        "its speedup. `gain agrees` is yes only for a significant positive gain that survives "
        "Holm's correction over the study's settings, since the best of many settings is "
        "picked for looking good.")))
    if a.cross_domain.empty:
        blocks.append(Para(text="No completed trial records per-seed losses yet."))
    else:
        blocks.append(Table(frame=a.cross_domain))
    blocks.append(save("gain_by_band", "Gain by complexity band per study",
                       lambda: plots.plot_gain_by_band(a.settings)))
    blocks.append(save("gain_by_alphabet", "Gain by alphabet size per study",
                       lambda: plots.plot_gain_by_alphabet(a.settings)))
    if len(a.domains) > 1:
        blocks += _best_band_blocks(a, save)
    if not a.noise.empty:
        blocks += [Heading(text="Seed noise", level=2), Para(text=(
            "How far seeds alone move the numbers: the scratch baseline's final loss over seeds, "
            "and the within-setting SD of per-seed gains pooled over settings run on several "
            "seeds. With three seeds, a gain smaller than about twice the pooled SD is hard to "
            "tell from noise.")), Table(frame=_fmt_noise(a.noise))]
    return blocks


def _confirmed_blocks(a: Analysis) -> list[Block]:
    """The confirmed table first: what a user can act on (analysis.confirmation)."""
    if a.confirmed.empty:
        return [Heading(text="Confirmed", level=2), Para(text=(
            "No confirmation has run: the numbers below are the search's own, chosen and "
            "reported on the same seeds and validation text (biased upward). Run "
            "`python -m search.run ... --confirm-only` to confirm the winners."))]
    c = a.confirmed
    seeds = int(c["n_seeds"].max())
    return [Heading(text="Confirmed on fresh seeds and the test split", level=2), Para(text=(
        f"The search's finalists (its top settings and its paper anchor) ran again on {seeds} "
        "fresh seeds. Every arm, finalists and scratch recipes alike, ran at every point of "
        "the same learning-rate grid; each arm's point was chosen on validation and its losses "
        "on the test split compared seed by seed. NCA effect: vs the finalist's matched "
        "scratch arm; net effect: vs the best tuned scratch arm; % of scratch's test loss, "
        "mean [95% CI], Holm over the finalists. `bankable` only where the net effect's "
        "interval is above 0 and it survives Holm; `search net` is the search's own estimate, "
        "so the gap to the confirmed net effect is what selection and untuned scratch added.")),
        Table(frame=pd.DataFrame({
            "study": c["study"], "domain": c["domain"], "finalist": c["finalist"],
            "setting": c["describe"], "why": c["why"], "lr": [f"{v:g}x" for v in c["lr_x"]],
            "NCA effect % [95% CI]": _fmt_ci(c["nca_mean"], c["n_seeds"], c["nca_ci_low"],
                                             c["nca_ci_high"]),
            "Holm p (NCA)": [_fmt(v, ".2g") for v in c["nca_p_holm"]],
            "net effect % [95% CI]": _fmt_ci(c["net_mean"], c["n_seeds"], c["net_ci_low"],
                                             c["net_ci_high"]),
            "Holm p (net)": [_fmt(v, ".2g") for v in c["net_p_holm"]],
            "best scratch": [f"{b} at {x:g}x" for b, x in zip(c["best_scratch"],
                                                               c["best_scratch_lr_x"],
                                                               strict=True)],
            "search net %": [_fmt(v, "+.2f") for v in c["search_net"]],
            "verdict": c["verdict"]})), *_grid_edge_blocks(c)]


def _grid_edge_blocks(c: pd.DataFrame) -> list[Block]:
    """A warning where an arm's chosen learning rate is at the edge of the grid."""
    edge = sorted({a for text in c["lr_at_edge"] if text for a in text.split(", ")})
    if not edge:
        return []
    return [Para(text=(
        f"Chosen at the edge of the learning-rate grid: {', '.join(edge)}. The best learning "
        "rate of these arms may lie beyond the grid, so they were tuned only as far as it "
        "reaches; widen `[confirm] lr_grid` before banking the comparison."))]


def _power_blocks(a: Analysis) -> list[Block]:
    """What each study's seeds could detect."""
    if a.power.empty:
        return []
    p = a.power
    return [Heading(text="Power", level=2), Para(text=(
        "What each study's seeds could have detected: the SD of the paired per-seed net "
        "effects (pooled within settings run on two seeds or more), the smallest true effect a "
        "paired t-test over the study's seeds finds 80% of the time at alpha 0.05, and the "
        "seeds a 1% effect would need. A difference smaller than the detectable effect is not "
        "evidence of no difference.")), Table(frame=pd.DataFrame({
            "study": p["study"], "domain": p["domain"], "seeds": p["seeds"],
            "sd of paired effects (points)": [_fmt(v, ".2f") for v in p["sd"]],
            "min detectable effect %": [_fmt(v, ".2f") for v in p["min_detectable_effect"]],
            "seeds for a 1% effect": [
                "not known" if not np.isfinite(sd) else _fmt(v, ".0f") or "> 10,000"
                for sd, v in zip(p["sd"], p["seeds_for_1pct"], strict=True)]}))]


def _domain_text(rec: StudyRecord) -> str:
    return ", ".join(rec.domains) if rec.is_multi_domain else rec.domain or "domain not set"


def _fmt_ci(mean: pd.Series, n: pd.Series, low: pd.Series, high: pd.Series) -> list[str]:
    """``+1.23 [+0.50, +1.96]``, or the mean alone for one seed or no interval."""
    return [_fmt(m, "+.2f") if k < 2 or not np.isfinite(lo) else
            f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"
            for m, k, lo, hi in zip(mean, n, low, high, strict=True)]


def _best_band_blocks(a: Analysis, save: Saver) -> list[Block]:
    """Each domain's paper-band anchors with both effects, ours and the paper's best band."""
    blocks: list[Block] = [Heading(text="Best complexity band by domain", level=2), Para(text=(
        "The paper's bands on each domain, from the anchors named `paper` or `band-*` at the "
        "paper's bands with alphabet 10: the NCA effect (vs the scratch run of the same recipe) "
        "and the net effect (vs the best scratch run of the seed), % of scratch's final loss, "
        "mean over seeds [95% CI]. `ours` marks the band with the highest mean NCA effect (the "
        "table above's best band), `paper` the paper's best band for the domain. A "
        "multi-domain study is read per domain, each domain against its own scratch runs. "
        "Every row is in `bands.csv`."))]
    if a.bands.empty:
        blocks.append(Para(text="No study has paper-band anchors with per-seed results."))
    else:
        b = a.bands
        blocks.append(Table(frame=pd.DataFrame({
            "study": b["study"], "domain": b["domain"], "band": b["band"], "anchor": b["label"],
            "seeds": b["n_seeds"],
            "NCA effect % [95% CI]": _fmt_ci(b["gain_mean"], b["n_seeds"], b["ci_low"],
                                             b["ci_high"]),
            "net effect % [95% CI]": _fmt_ci(b["net_mean"], b["n_seeds"], b["net_ci_low"],
                                             b["net_ci_high"]),
            "verdict": b["verdict"], "net verdict": b["net_verdict"],
            "best": [" + ".join(w for w, f in (("ours", o), ("paper", p)) if f)
                     for o, p in zip(b["best"], b["paper_best"], strict=True)],
        })))
    blocks.append(save("best_band_by_domain", "Best complexity band by domain: NCA and net "
                       "effect of each paper band (95% CI); ours shaded, the paper's outlined",
                       lambda: plots.plot_best_band_by_domain(a.bands)))
    return blocks


def _fmt_noise(noise: pd.DataFrame) -> pd.DataFrame:
    # A multi-domain study has a row per domain; a one-domain study's row is named as before.
    several = noise["study"].duplicated(keep=False)
    study = noise["study"].where(~several, noise["study"] + " (" + noise["domain"].astype(str)
                                 + ")")
    return pd.DataFrame({
        "study": study,
        "scratch loss (mean ± sd)": [f"{m:.4f} ± {_fmt(s, '.4f')}" for m, s in
                                     zip(noise["scratch_loss_mean"], noise["scratch_loss_sd"],
                                         strict=True)],
        "pooled gain sd (%)": [_fmt(v, ".3f") for v in noise["gain_sd_pooled"]],
        "settings pooled": noise["settings_pooled"],
    })


def _fmt_settings(s: pd.DataFrame) -> pd.DataFrame:
    gain = [f"{m:+.2f}" if n < 2 else f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"
            for m, n, lo, hi in zip(s["gain_mean"], s["n_seeds"], s["ci_low"], s["ci_high"],
                                    strict=True)]
    out = pd.DataFrame({
        "setting": s["label"], "trials": s["trials"], "band": s["band"],
        "alphabet": [_fmt(v, ".0f") for v in s["alphabet"]], "seeds": s["n_seeds"],
        "gain % [95% CI]": gain, "ppl gain %": [_fmt(v, "+.2f") for v in s["ppl_gain_mean"]],
        "speedup": [f"{v:.2f}x" if pd.notna(v) else "not reached" for v in s["speedup_mean"]],
        "test": s["test"], "p": [_fmt(v, ".3g") for v in s["p_value"]],
        "p (Holm)": [_fmt(v, ".3g") for v in s["p_holm"]], "verdict": s["verdict"],
    })
    if "net_mean" in s:  # vs the best scratch recipe; "gain" is vs scratch of the same recipe
        out.insert(out.columns.get_loc("ppl gain %"), "net effect % [95% CI]", [
            f"{m:+.2f}" if n < 2 else f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" for m, n, lo, hi in
            zip(s["net_mean"], s["n_seeds"], s["net_ci_low"], s["net_ci_high"], strict=True)])
        out["net verdict"] = s["net_verdict"]
    if "upstream_learned" in s:
        out["NCA learned"] = s["upstream_learned"].map({True: "yes", False: "no"})
    return out


def _state_counts(rec: StudyRecord, trials: pd.DataFrame) -> str:
    t = trials[trials["study"] == rec.name]
    counts = t["state"].value_counts()
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items())


def _upstream_text(t: pd.DataFrame) -> str:
    if "upstream_learned" not in t or t["upstream_learned"].isna().all():
        return "No trial records the upstream diagnostic."
    nca = t[t.get("source", pd.Series("nca", index=t.index)) != "scratch"]
    learned = nca["upstream_learned"].dropna().astype(bool)
    return (f"NCA stage learned (validation loss below the unigram loss) in {learned.sum()} of "
            f"{len(learned)} trials; median NCA loss {nca['upstream_val_loss'].median():.2f} "
            f"vs unigram {nca['upstream_unigram_loss'].median():.2f} nats.")


def _param_text(spec: Any) -> str:
    """``band in ['0.2-0.3', ...]``, ``lr in [1e-4, 1e-2] log`` or ``source = "nca"``."""
    if not isinstance(spec, dict):
        return str(spec)
    name = spec.get("name", "?")
    if spec.get("fixed") is not None:
        return f"{name} = {json.dumps(spec['fixed'])}"
    if spec.get("choices") is not None:
        return f"{name} in {json.dumps(spec['choices'])}"
    return f"{name} in [{spec.get('low')}, {spec.get('high')}]{' log' if spec.get('log') else ''}"


def _config_paras(rec: StudyRecord) -> list[Block]:
    """The study's notes and search space, from its resolved configuration."""
    study = rec.config.get("study", {})
    out: list[Block] = []
    notes = study.get("notes") if isinstance(study, dict) else None
    if notes:
        out.append(Para(text=" ".join(str(notes).split())))
    space = rec.config.get("space")
    if isinstance(space, dict):  # {name: spec} as in the TOML
        space = [{"name": k, **v} if isinstance(v, dict) else {"name": k, "fixed": v}
                 for k, v in space.items()]
    if isinstance(space, list) and space:
        out.append(Para(text="Search space: " + "; ".join(f"`{_param_text(p)}`" for p in space)
                    + "."))
    return out


def study_section(a: Analysis, rec: StudyRecord, save: Saver, store: Any | None,
                  render_nca: bool = True) -> list[Block]:
    """Counts, settings table, history, curves, importances, Pareto front, contact sheet; a
    multi-domain study's settings and curves per domain, and its Pareto front as a table."""
    t = a.trials[(a.trials["study"] == rec.name) & (a.trials["state"] == "COMPLETE")]
    s = a.settings[a.settings["study"] == rec.name] if not a.settings.empty else a.settings
    objective = ", ".join(f"{m} ({d})"
                          for m, d in zip(rec.metric_names, rec.directions, strict=True))
    domain = ", ".join(rec.domains) if rec.is_multi_domain else rec.domain
    blocks: list[Block] = [
        Heading(text=f"Study `{rec.name}`: {domain}, preset {rec.preset}", level=2),
        *_config_paras(rec),
        Para(text=f"Trials: {_state_counts(rec, a.trials)}. Objective: {objective}. "
                  f"{_upstream_text(t)}")]
    if s.empty:
        return [*blocks, Para(text="No completed trial with per-seed losses.")]
    name = rec.name
    history = save(f"{name}_history", f"Optimisation history of {name}",
                   lambda: plots.plot_history(rec, a.trials))
    importances = save(f"{name}_importances", f"Parameter importances (PED-ANOVA) of {name}",
                       lambda: plots.plot_importances(rec))
    if rec.is_multi_domain:
        blocks += [b for d in rec.domains for b in _domain_blocks(a, rec, s, d, save)]
        blocks += [history, importances]
        first = next((d for d in rec.domains if (s["domain"] == d).any()), None)
        best = best_setting(s, name, first)  # the contact sheet's: best on the first domain
    else:
        best = best_setting(a.settings, rec.name)
        blocks += [*_settings_blocks(s, "Settings"), history,
                   save(f"{name}_curves", f"Validation curves of {name}: scratch, paper, best",
                        lambda: plots.plot_curves(rec, a.settings, str(best["label"]))),
                   importances]
    if rec.is_multi_objective:
        blocks.append(save(f"{name}_pareto", f"Pareto front of {name}",
                           lambda: plots.plot_pareto(rec, a.trials)))
        if rec.is_multi_domain:
            blocks += _pareto_blocks(a, rec)
    same = a.trials[(a.trials["study"] == name) & (a.trials["setting"] == best["setting"])]
    numbers = same.sort_values("number", ascending=False)["number"].tolist()
    where = f" (best on {best['domain']})" if rec.is_multi_domain else ""
    blocks.append(save(f"{name}_trajectories",
                       f"NCA trajectories of the best setting of {name}{where}",
                       lambda: plot_contact_sheet(rec, best, numbers, store, render_nca)))
    return blocks


def _settings_blocks(s: pd.DataFrame, title: str) -> list[Block]:
    """Anchors, then the best searched settings by mean gain (``s``: one study, one domain)."""
    anchor = ~s["label"].astype(str).str.startswith("#")
    searched = s[~anchor]
    shown = searched.head(_TOP_SEARCHED)  # already sorted by mean gain
    return [Heading(text=title, level=3), Para(text=(
        f"Anchors ({int(anchor.sum())}), then the best {len(shown)} of {len(searched)} "
        "searched settings by mean gain. All settings are in `settings.csv`, all trials in "
        "`trials.csv`, every seed in `seeds.csv`.")),
        Table(frame=_fmt_settings(pd.concat([s[anchor], shown])))]


def _domain_blocks(a: Analysis, rec: StudyRecord, s: pd.DataFrame, domain: str, save: Saver
                   ) -> list[Block]:
    """One domain of a multi-domain study, as a one-domain study on it would be reported."""
    on = s[s["domain"] == domain]
    title = f"Settings on {domain}"
    if on.empty:
        return [Heading(text=title, level=3), Para(text="No completed trial with per-seed "
                                                       f"losses on {domain}.")]
    best = best_setting(on, rec.name)
    return [*_settings_blocks(on, title),
            save(f"{rec.name}_{domain}_curves",
                 f"Validation curves of {rec.name} on {domain}: scratch, paper, best",
                 lambda: plots.plot_curves(rec, a.settings, str(best["label"]), domain))]


def _pareto_blocks(a: Analysis, rec: StudyRecord) -> list[Block]:
    """The trials on the Pareto front between the study's objectives, per domain."""
    front = a.pareto[a.pareto["study"] == rec.name] if not a.pareto.empty else a.pareto
    blocks: list[Block] = [Heading(text="Pareto front", level=3)]
    if front.empty:
        return [*blocks, Para(text="No completed trial has every objective.")]
    shown = front.dropna(axis=1, how="all").head(_TOP_SEARCHED)
    which = (f"The {len(front)} trials" if len(shown) == len(front) else
             f"The first {len(shown)} of the {len(front)} trials")
    blocks.append(Para(text=(
        f"{which} on the Pareto front over {', '.join(rec.metric_names)}, best first on "
        f"{rec.metric_names[0]}: no other trial is at least as good on every objective and "
        "better on one. Per domain, `nca-effect` and `net-effect` are % of that domain's "
        "scratch loss, mean over seeds. All are in `pareto.csv`.")))
    table = shown.drop(columns="study").assign(number=[f"#{n}" for n in shown["number"]])
    if "alphabet" in table:
        table["alphabet"] = [_fmt(v, ".0f") for v in table["alphabet"]]
    return [*blocks, Table(frame=table.round(3))]


def method_notes() -> list[Block]:
    """How the statistics were computed."""
    return [Heading(text="How the statistics are computed", level=2), Para(text=(
        "Per seed, gain = 100 * (scratch loss - loss) / scratch loss, with the scratch run of the "
        "same seed (paired). Per setting: mean and 95% Student-t interval over seeds; a two-sided "
        f"Wilcoxon signed-rank test when there are at least {WILCOXON_MIN_N} seeds, otherwise a "
        "paired t-test (the exact signed-rank test cannot reach p < 0.05 with five pairs or "
        "fewer). A gain is claimed (verdict `gain` or `harm`) only when p < alpha and the "
        "interval excludes 0; otherwise the verdict is `not distinguishable from noise`. "
        "`p (Holm)` adjusts for testing every setting of a study. Perplexity gain = "
        "100 * (1 - exp(loss - scratch loss)), the quantity the paper reports. Speedup = "
        "tokens scratch needs for its final loss / tokens the setting needs for it, averaged over "
        "the seeds that reach it.")), ]
