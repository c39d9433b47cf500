"""The confirmed table: a search's finalists on fresh seeds and the test split, each against
scratch tuned exactly as much (``search.confirm`` runs it), and the study's power.

For every arm (a finalist, or a scratch recipe) the grid point with the lowest mean validation
loss over the confirmation's seeds is chosen; the chosen points are then compared on the test
split, seed by seed:

- **NCA effect**: % lower test loss than the finalist's matched scratch arm (its own downstream
  recipe), each at its own chosen learning rate;
- **net effect**: % lower test loss than the best tuned scratch arm (lowest validation loss among
  the named recipes and the matched one, at the finalist's budget).

Each effect gets a 95% t-interval over the seeds, a paired t-test and Holm's adjustment over the
finalists. Verdicts: **bankable** where the net effect is significant after Holm and its interval
is above 0; **NCA effect only** where only the NCA effect is; **not confirmed** otherwise. The
search's own estimate stands beside the confirmed one: the gap is the winner's curse and the
tuning the search did not give scratch.

The power lines state what the study's seeds could detect: the standard deviation of the
paired per-seed net effects (pooled within settings), the minimum detectable effect at 80% power
and alpha 0.05 for its seed count, and the seeds a 1% effect would need.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.frame import StudyRecord
from analysis.stats import (
    holm,
    min_detectable_effect,
    paired_test,
    seeds_for_effect,
)
from search.record import PLAN_ATTR, TrialRecord

__all__ = ["VERDICTS", "arm_choices", "arm_frame", "confirmed_table", "confirmed_text",
           "noise_summary", "plan_of", "power_table", "power_text"]

VERDICTS = ("bankable", "NCA effect only", "not confirmed")


def plan_of(confirm: StudyRecord) -> dict[str, Any]:
    """The confirmation's plan (finalists, scratch arms, grid, seeds)."""
    text = confirm.study.user_attrs.get(PLAN_ATTR)
    if not isinstance(text, str):
        raise TypeError(f"study {confirm.name!r} is not a confirmation (no {PLAN_ATTR})")
    plan: dict[str, Any] = json.loads(text)
    return plan


def arm_frame(confirm: StudyRecord) -> pd.DataFrame:
    """One row per (domain, arm, grid point, seed) of the finished confirmation runs: their final
    validation and test losses."""
    rows = []
    domains = confirm.domains or (confirm.domain or "",)
    for t in confirm.trials:
        record = TrialRecord.from_attrs(t.user_attrs)
        if record is None or t.state.name != "COMPLETE":
            continue
        for domain in domains:
            one = record.for_domain(domain) if record.domains else record
            rows += [{"domain": domain, "arm": t.user_attrs["arm"],
                      "lr_x": float(t.user_attrs["lr_x"]), "seed": s.seed, "val_loss": s.loss,
                      "test_loss": s.test_loss, "trial": t.number} for s in one.seeds]
    return pd.DataFrame(rows, columns=["domain", "arm", "lr_x", "seed", "val_loss", "test_loss",
                                       "trial"])


def arm_choices(arms: pd.DataFrame, grid: Sequence[float], seeds: Sequence[int]) -> pd.DataFrame:
    """Per domain and arm, the grid point with the lowest mean validation loss among those run on
    every seed (the arm is ``complete`` when every grid point was), and its test losses."""
    rows = []
    for (domain, arm), d in arms.groupby(["domain", "arm"], sort=False):
        means = {lr: g["val_loss"].mean() for lr, g in d.groupby("lr_x")
                 if set(g["seed"]) >= set(seeds)}
        if not means:
            continue
        lr = min(means, key=lambda k: (means[k], k))
        chosen = d[d["lr_x"] == lr].set_index("seed")["test_loss"]
        rows.append({"domain": domain, "arm": arm, "lr_x": lr, "val_mean": means[lr],
                     "grid_run": sorted(means), "complete": set(means) == set(grid),
                     "test": {int(s): float(v) for s, v in chosen.items()}})
    return pd.DataFrame(rows)


def confirmed_table(confirm: StudyRecord, alpha: float = 0.05) -> pd.DataFrame:
    """One row per domain and finalist: chosen learning rates, both effects on test with their
    intervals and Holm-adjusted p-values, the search's estimates and the verdict."""
    plan = plan_of(confirm)
    choices = arm_choices(arm_frame(confirm), plan["lr_grid"], plan["seeds"])
    rows = []
    for domain, c in (choices.groupby("domain", sort=False) if not choices.empty else []):
        chosen = c.set_index("arm")
        found = [_finalist_row(f, chosen, domain, plan["seeds"]) for f in plan["finalists"]]
        part = [r for r in found if r is not None]
        for effect in ("nca", "net"):
            adjusted = holm([r[f"{effect}_p"] for r in part])
            for r, p in zip(part, adjusted, strict=True):
                r[f"{effect}_p_holm"] = p
        for r in part:
            r["verdict"] = _verdict(r, alpha)
            r["lr_at_edge"] = _at_grid_edge(r, plan["lr_grid"])
        rows += part
    return pd.DataFrame(rows)


def _at_grid_edge(row: dict[str, Any], grid: Sequence[float]) -> str:
    """The arms of a finalist's comparison whose chosen learning rate is the grid's smallest or
    largest point ("#5 at 2x, scratch:paper at 2x"), or "": their best may lie outside the grid,
    so the comparison is of arms tuned only as far as the grid reaches."""
    if len(set(grid)) < 2:
        return ""
    edges = (min(grid), max(grid))
    arms = {row["finalist"]: row["lr_x"], row["matched"]: row["matched_lr_x"],
            row["best_scratch"]: row["best_scratch_lr_x"]}
    return ", ".join(f"{arm} at {lr:g}x" for arm, lr in arms.items() if lr in edges)


def _finalist_row(f: dict[str, Any], chosen: pd.DataFrame, domain: str,
                  seeds: Sequence[int]) -> dict[str, Any] | None:
    """A finalist's row, or None until it and its scratch arms have a chosen grid point."""
    needed = [f["arm"], f["matched"], *f["scratch"]]
    if not all(a in chosen.index for a in needed):
        return None
    best = min(f["scratch"], key=lambda a: (chosen.loc[a, "val_mean"], a))
    arm = chosen.loc[f["arm"], "test"]
    row: dict[str, Any] = {
        "domain": domain, "finalist": f["arm"], "describe": f["describe"], "why": f["why"],
        "lr_x": chosen.loc[f["arm"], "lr_x"], "matched": f["matched"],
        "matched_lr_x": chosen.loc[f["matched"], "lr_x"], "best_scratch": best,
        "best_scratch_lr_x": chosen.loc[best, "lr_x"],
        "complete": bool(all(chosen.loc[a, "complete"] for a in needed)),
        "search_nca": (f.get("search") or {}).get("nca"),
        "search_net": (f.get("search") or {}).get("net")}
    for effect, scratch in (("nca", chosen.loc[f["matched"], "test"]),
                            ("net", chosen.loc[best, "test"])):
        gains = [100.0 * (scratch[s] - arm[s]) / scratch[s] for s in seeds]
        test = paired_test(gains)
        row.update({f"{effect}_mean": test.mean, f"{effect}_ci_low": test.ci_low,
                    f"{effect}_ci_high": test.ci_high, f"{effect}_p": test.p_value,
                    "n_seeds": test.n})
    net = row["search_net"]
    row["shrinkage"] = (net - row["net_mean"]) if isinstance(net, (int, float)) else math.nan
    return row


def _verdict(row: dict[str, Any], alpha: float) -> str:
    """``bankable`` / ``NCA effect only`` / ``not confirmed`` (see the module docstring)."""
    def holds(effect: str) -> bool:
        p = row[f"{effect}_p_holm"]
        return bool(np.isfinite(p) and p < alpha and row[f"{effect}_ci_low"] > 0)

    if holds("net"):
        return VERDICTS[0]
    return VERDICTS[1] if holds("nca") else VERDICTS[2]


def noise_summary(seeds: pd.DataFrame, column: str = "net_gain_pct") -> dict[str, float]:
    """The pooled within-setting standard deviation of ``column`` (paired per-seed effects, %)
    over settings with at least two seeds, and the pairs behind it."""
    d = seeds.dropna(subset=[column]) if column in seeds else pd.DataFrame()
    if d.empty:
        return {"sd": math.nan, "settings": 0, "seeds": 0}
    groups = d.groupby(["study", "setting"])[column]
    dof = groups.size() - 1
    keep = dof > 0
    if not keep.any():
        return {"sd": math.nan, "settings": 0, "seeds": 0}
    var = groups.var(ddof=1)[keep]
    sd = float(np.sqrt((var * dof[keep]).sum() / dof[keep].sum()))
    return {"sd": sd, "settings": int(keep.sum()), "seeds": int((dof[keep] + 1).sum())}


def power_table(seeds: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per study and domain: the seed noise of the paired per-seed net effects, the seeds it
    ran each setting on, the minimum detectable effect at 80% power and the seeds a 1% effect
    needs."""
    rows = []
    for (study, domain), d in seeds.groupby(["study", "domain"], sort=False, dropna=False):
        noise = noise_summary(d)
        n = int(d.groupby("setting")["seed"].nunique().max())
        need = seeds_for_effect(1.0, noise["sd"], alpha) if math.isfinite(noise["sd"]) else None
        rows.append({"study": study, "domain": domain, "seeds": n, "sd": noise["sd"],
                     "settings_pooled": noise["settings"],
                     "min_detectable_effect": min_detectable_effect(noise["sd"], n, alpha),
                     "seeds_for_1pct": need})
    return pd.DataFrame(rows)


def power_text(sd: float, n_seeds: int, alpha: float = 0.05) -> str:
    """What a study with ``n_seeds`` seeds could see, given the paired effects' sd."""
    if not math.isfinite(sd):
        return "seed noise: not known yet (no setting ran on two seeds or more)"
    mde = min_detectable_effect(sd, n_seeds, alpha)
    need = seeds_for_effect(1.0, sd, alpha)
    seeds_1 = f"{need} seeds" if need is not None else "more than 10,000 seeds"
    mde_text = f"{mde:.2f}%" if math.isfinite(mde) else "none (one seed: no test)"
    return (f"seed noise: sd of the paired per-seed effects {sd:.2f} points; with {n_seeds} "
            f"seed(s) the smallest effect found 80% of the time (alpha {alpha}) is {mde_text}; "
            f"a 1% effect needs {seeds_1}")


def confirmed_text(table: pd.DataFrame) -> str:
    """The confirmed table as the closing lines of ``search.run``."""
    if table.empty:
        return "confirmed: no finalist has finished all its runs yet"
    lines = []
    for domain, part in table.groupby("domain", sort=False):
        first = part.iloc[0]
        lines.append(f"confirmed on {first['n_seeds']} fresh seed(s) and the test split"
                     + (f" ({domain})" if domain else "") + "; every arm tuned over the same "
                     "lr grid, chosen on val:")
        lines.append(f"  {'finalist':<8} {'lr':>5}  {'NCA effect % [95% CI] (Holm p)':<34} "
                     f"{'net effect % [95% CI] (Holm p)':<34} {'search net':>10}  verdict")
        for _, r in part.iterrows():
            lines.append(
                f"  {r['finalist']:<8} {r['lr_x']:>4g}x  {_effect(r, 'nca'):<34} "
                f"{_effect(r, 'net'):<34} {_num(r['search_net']):>10}  {r['verdict']}"
                + ("" if r["complete"] else "  (grid not complete)"))
        lines.append("  net effect vs " + ", ".join(
            f"{r['finalist']}: {r['best_scratch']} at {r['best_scratch_lr_x']:g}x"
            for _, r in part.iterrows()))
        edge = sorted({a for text in part["lr_at_edge"] if text for a in text.split(", ")})
        if edge:
            lines.append(f"  chosen at the edge of the lr grid: {', '.join(edge)}; the best "
                         "learning rate may lie beyond it: widen [confirm] lr_grid to check")
    return "\n".join(lines)


def _effect(r: pd.Series, effect: str) -> str:
    return (f"{r[f'{effect}_mean']:+.2f} [{r[f'{effect}_ci_low']:+.2f}, "
            f"{r[f'{effect}_ci_high']:+.2f}] ({_num(r[f'{effect}_p_holm'], '{:.2g}')})")


def _num(value: Any, fmt: str = "{:+.2f}%") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)
