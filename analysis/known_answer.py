"""Known-answer studies: does the search find the best setting where one is planted?

Each family (``studies/known-answer/``) has a synthetic downstream domain whose best
pre-pre-training is known by construction (``search.synthetic``): Dyck-8 brackets, where the
``dyck`` source is planted, or NCA data of one band, where that band is. Its journal holds:

- the **ground truth** (``ka-<family>-grid``): every setting on 5 seeds, which measures whether
  the planted setting really is the best and by how much (its margin over the runner-up, paired
  by seed, with a 95% interval);
- **repeats** of the default search (``ka-<family>-<sampler>-r<r>``, TPE and random sampling)
  with their confirmations (``<study>.confirm``).

A repeat **recovers** the optimum when its confirmed winner (the finalist with the largest
confirmed NCA effect on the test split) is the planted setting. The search's own winner after
each trial count (its best setting so far by its objective) gives the recovery curve; rates get
95% Wilson intervals.

    python -m analysis.known_answer \\
        --storage studies/results/known-answer/runs/bands/journal.log \\
        --storage studies/results/known-answer/runs/sources/journal.log \\
        --out studies/results/known-answer
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from optuna.trial import TrialState

from analysis.confirmation import confirmed_table
from analysis.frame import StudyRecord, load_for_command
from analysis.stats import mean_ci, paired_test
from ncaio import atomic_write_bytes
from ncaio.cli import OneLineParser
from search.storage import StorageError

__all__ = ["ground_truth", "main", "planted", "recovery", "recovery_curves", "wilson"]

_REPEAT = re.compile(r"^ka-(?P<family>\w+)-(?P<sampler>tpe|random)-r(?P<r>\d+)$")
_GRID = re.compile(r"^ka-(?P<family>\w+)-grid$")


def planted(setting: dict[str, Any], domain: str, data: str) -> bool:
    """Whether ``setting`` (a trial's ``setting`` attribute, parsed) pre-pre-trains on the very
    data the synthetic ``domain`` (with ``data``) is."""
    given = dict(re.findall(r"(\w+)=(\S+)", data))
    if domain == "dyck":
        return setting["source"] == "dyck" and int(setting["dyck_k"]) == int(given.get("k", 8))
    if domain == "nca":
        lo, hi = (float(x) for x in given.get("band", "0.5-1.0").split("-"))
        return (setting["source"] == "nca" and int(setting["alphabet"]) == int(
            given.get("alphabet", 10)) and np.allclose(setting["band"], [lo, hi]))
    raise ValueError(f"domain {domain!r} is not a synthetic domain (nca, dyck)")


def _context(rec: StudyRecord) -> dict[str, Any]:
    context: dict[str, Any] = rec.config.get("context", {})
    return context


def _settings(rec: StudyRecord) -> list[tuple[Any, dict[str, Any], float]]:
    """(trial, setting, value) of the study's counted, completed trials, in trial order."""
    out = []
    for t in rec.trials:
        if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs and t.values:
            out.append((t, json.loads(t.user_attrs["setting"]), float(t.values[0])))
    return out


def ground_truth(grid: StudyRecord) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every setting of the ground-truth grid with its NCA effect over seeds, ranked, and the
    planted setting's margin over the runner-up (paired by seed)."""
    ctx = _context(grid)
    rows, per_seed = [], {}
    for t, setting, _ in _settings(grid):
        gains = t.user_attrs["gains_pct"]
        mean, low, high = mean_ci(gains)
        key = t.user_attrs.get("describe", "")
        per_seed[key] = dict(zip(t.user_attrs["seeds"], gains, strict=True))
        rows.append({"family": _family(grid.name), "setting": key, "seeds": len(gains),
                     "nca_effect": mean, "ci_low": low, "ci_high": high,
                     "planted": planted(setting, ctx["domain"], ctx.get("data", ""))})
    table = pd.DataFrame(rows).sort_values("nca_effect", ascending=False, ignore_index=True)
    table.insert(1, "rank", np.arange(1, len(table) + 1))
    best = table.iloc[0]
    margin: dict[str, Any] = {"family": _family(grid.name),
                              "planted_is_best": bool(best["planted"])}
    if len(table) > 1 and table["planted"].any():
        top = table[table["planted"]].iloc[0]
        other = table[~table["planted"]].iloc[0]
        seeds = sorted(per_seed[top["setting"]])
        diff = [per_seed[top["setting"]][s] - per_seed[other["setting"]][s] for s in seeds]
        test = paired_test(diff)
        margin.update(runner_up=other["setting"], margin=test.mean, ci_low=test.ci_low,
                      ci_high=test.ci_high, p=test.p_value)
    return table, margin


def _family(name: str) -> str:
    m = _REPEAT.match(name) or _GRID.match(name)
    return m["family"] if m else name


def recovery(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """One row per repeat: its sampler, its confirmed winner and whether it is the planted
    setting, and the trial count at which the search's best first was."""
    by_name = {r.name: r for r in records}
    rows = []
    for rec in records:
        m = _REPEAT.match(rec.name)
        if m is None:
            continue
        ctx = _context(rec)
        found = _settings(rec)
        confirm = by_name.get(f"{rec.name}.confirm")
        table = confirmed_table(confirm) if confirm is not None else pd.DataFrame()
        winner = None
        if not table.empty:
            arm = table.loc[table["nca_mean"].idxmax(), "finalist"]
            winner = next(((t, s) for t, s, _ in found if f"#{t.number}" == arm), None)
        rows.append({"family": m["family"], "sampler": m["sampler"], "repeat": int(m["r"]),
                     "trials": len(found), "confirmed": winner is not None,
                     "winner": winner[0].user_attrs.get("describe", "") if winner else "",
                     "recovered": bool(winner is not None and planted(
                         winner[1], ctx["domain"], ctx.get("data", "")))})
    return pd.DataFrame(rows)


def recovery_curves(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """Per family, sampler and trial count k: the share of repeats whose search winner after k
    counted trials (best objective so far) is the planted setting."""
    rows = []
    for rec in records:
        m = _REPEAT.match(rec.name)
        if m is None:
            continue
        ctx = _context(rec)
        maximize = rec.directions[0] == "maximize"
        best: tuple[float, dict[str, Any]] | None = None
        for k, (_, setting, value) in enumerate(_settings(rec), start=1):
            if best is None or (value > best[0] if maximize else value < best[0]):
                best = (value, setting)
            rows.append({"family": m["family"], "sampler": m["sampler"], "repeat": int(m["r"]),
                         "trials": k, "recovered": planted(best[1], ctx["domain"],
                                                           ctx.get("data", ""))})
    d = pd.DataFrame(rows)
    if d.empty:
        return d
    out = d.groupby(["family", "sampler", "trials"])["recovered"].agg(["sum", "count"])
    out = out.reset_index().rename(columns={"sum": "recovered", "count": "repeats"})
    bounds = [wilson(int(r), int(n)) for r, n in zip(out["recovered"], out["repeats"],
                                                     strict=True)]
    out["rate"] = out["recovered"] / out["repeats"]
    out["ci_low"], out["ci_high"] = zip(*bounds, strict=True)
    return out


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _summary(repeats: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per family and sampler: how many confirmed repeats recovered the planted setting, and how
    many ended on the ground truth's best setting (the same unless the planted one is not best)."""
    rows = []
    for (family, sampler), d in repeats.groupby(["family", "sampler"], sort=True):
        done = d[d["confirmed"]]
        grid = truth[truth["family"] == family] if not truth.empty else truth
        best = grid["setting"].iloc[0] if not grid.empty else None
        found = int((done["winner"] == best).sum()) if best is not None else 0
        low, high = wilson(int(done["recovered"].sum()), len(done))
        rows.append({"family": family, "sampler": sampler, "repeats": len(done),
                     "recovered": int(done["recovered"].sum()),
                     "rate": done["recovered"].mean() if len(done) else math.nan,
                     "ci_low": low, "ci_high": high,
                     "found_grid_best": found if best is not None else math.nan})
    return pd.DataFrame(rows)


def _pct(x: float) -> str:
    return f"{x:+.2f}"


def _verdict(margin: pd.Series) -> str:
    """What the grid says of the planted setting, no stronger than its margin's interval."""
    if margin["ci_low"] > 0:
        return "is the best setting, by a margin its seeds resolve"
    if margin["ci_high"] < 0:
        return "is not the best setting: another beats it by a margin its seeds resolve"
    rank = "ranks first" if margin["planted_is_best"] else "does not rank first"
    return (f"{rank}, but its seeds cannot tell it from the runner-up: there is no measurable "
            "optimum to recover here, and seed noise decides a repeat's winner")


def _family_text(family: str, truth: pd.DataFrame, margin: pd.Series | None,
                 summary: pd.DataFrame, repeats: pd.DataFrame) -> list[str]:
    """The family's paragraph: the ground truth, then what the repeats recovered."""
    lines = [f"## {family}", ""]
    grid = truth[truth["family"] == family] if not truth.empty else truth
    if not grid.empty:
        lines += ["| rank | setting | seeds | NCA effect % [95% CI] | planted |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r.rank} | {r.setting} | {r.seeds} | {_pct(r.nca_effect)} "
                  f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}] | {'yes' if r.planted else ''} |"
                  for r in grid.itertuples()]
        lines.append("")
    if margin is not None and isinstance(margin.get("runner_up"), str):
        lines.append(f"Ground truth: the planted setting {_verdict(margin)}; planted minus the "
                     f"best other setting ({margin['runner_up']}), paired by seed: "
                     f"{_pct(margin['margin'])} points [{_pct(margin['ci_low'])}, "
                     f"{_pct(margin['ci_high'])}], p = {margin['p']:.2g}.")
    fam = summary[summary["family"] == family] if not summary.empty else summary
    for r in fam.itertuples():
        trials = repeats[(repeats["family"] == family) & (repeats["sampler"] == r.sampler)]
        lines.append(f"- {r.sampler}: the confirmed winner was the planted setting in "
                     f"{r.recovered} of {r.repeats} repeats ({r.rate:.0%}, 95% Wilson "
                     f"[{r.ci_low:.0%}, {r.ci_high:.0%}]); the ground truth's best in "
                     f"{r.found_grid_best} of {r.repeats}; {int(trials['trials'].median())} "
                     "counted trials per repeat (median).")
    counted = repeats[repeats["family"] == family]["trials"] if not repeats.empty else None
    median = float(counted.median()) if counted is not None and len(counted) else 0.0
    if not grid.empty and median >= len(grid) / 2:
        seen = "every setting" if median >= len(grid) else "most of the space"
        lines.append(f"\nThe space has {len(grid)} settings and a repeat counts "
                     f"{int(median)} trials, so it sees {seen}: these "
                     "repeats test whether the search's seeds and the confirmation pick the best "
                     "setting under seed noise, not how efficiently a sampler explores a large "
                     "space.")
    return lines + [""]


def _markdown(truth: pd.DataFrame, margins: pd.DataFrame, summary: pd.DataFrame,
              repeats: pd.DataFrame, command: str) -> str:
    families = sorted(set(truth.get("family", [])) | set(repeats.get("family", [])))
    lines = ["# Known-answer studies", "",
             ("Does the search, with its confirmation, end on the best setting where the best "
              "is known? Ground truth: every setting on 5 seeds. Repeats: the default search "
              "with other sampler, training and confirmation seeds."), ""]
    for family in families:
        m = margins[margins["family"] == family] if not margins.empty else margins
        lines += _family_text(family, truth, m.iloc[0] if not m.empty else None, summary, repeats)
    return "\n".join(lines + [f"Regenerate with `{command}`.", ""])


def _figure(curves: pd.DataFrame, summary: pd.DataFrame) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted(curves["family"].unique())
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 3.8), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        for offset, (sampler, color) in enumerate((("tpe", "tab:blue"),
                                                   ("random", "tab:orange")), start=1):
            c = curves[(curves["family"] == family) & (curves["sampler"] == sampler)]
            if c.empty:
                continue
            ax.plot(c["trials"], c["rate"], "o-", color=color, label=f"{sampler}: search's best")
            ax.fill_between(c["trials"], c["ci_low"], c["ci_high"], color=color, alpha=0.15)
            s = summary[(summary["family"] == family) & (summary["sampler"] == sampler)]
            if not s.empty:
                x = int(c["trials"].max()) + 0.1 * offset  # side by side, not on top
                ax.errorbar([x], s["rate"], yerr=[s["rate"] - s["ci_low"],
                                                        s["ci_high"] - s["rate"]],
                            fmt="s", color=color, capsize=3, label=f"{sampler}: confirmed")
        ax.set_title(f"{family}: planted optimum recovered")
        ax.set_xlabel("trials (counted)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("share of repeats (95% Wilson)")
        ax.set_ylim(-0.03, 1.03)
        ax.axhline(0.9, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(prog="python -m analysis.known_answer", description=__doc__.splitlines()[0])
    p.add_argument("--storage", action="append", required=True,
                   help="a known-answer family's journal; repeat for several")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    args = p.parse_args(argv)
    try:
        records = load_for_command(args.storage, args.out)
    except (ValueError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    grids = [r for r in records if _GRID.match(r.name)]
    truths = [ground_truth(g) for g in grids]
    # Families in name order, whatever the order of --storage, so the tables do not depend on it.
    truths.sort(key=lambda tm: tm[1]["family"])
    truth = pd.concat([t for t, _ in truths], ignore_index=True) if truths else pd.DataFrame()
    margins = pd.DataFrame([m for _, m in truths])
    repeats, curves = recovery(records), recovery_curves(records)
    if not repeats.empty:
        repeats = repeats.sort_values(["family", "sampler", "repeat"], ignore_index=True)
    summary = _summary(repeats, truth) if not repeats.empty else pd.DataFrame()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("ground_truth", truth), ("margins", margins), ("repeats", repeats),
                        ("recovery_curves", curves), ("recovery", summary)):
        atomic_write_bytes(args.out / f"{name}.csv", frame.to_csv(index=False).encode())
    command = "python -m analysis.known_answer " + " ".join(
        f"--storage {s}" for s in args.storage) + f" --out {args.out}"
    atomic_write_bytes(args.out / "known_answer.md",
                       _markdown(truth, margins, summary, repeats, command).encode())
    if not curves.empty:
        (args.out / "figures").mkdir(exist_ok=True)
        fig = _figure(curves, summary)
        fig.savefig(args.out / "figures" / "recovery.png", dpi=110)
    print(f"wrote {args.out}: {len(grids)} ground truth(s), {len(repeats)} repeat(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
