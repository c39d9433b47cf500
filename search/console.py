"""What the CLI prints: one live line per finished trial and the closing summary table."""

from __future__ import annotations

import math
import statistics
from typing import TextIO

import optuna
from optuna.trial import TrialState

from search.tally import is_infeasible, trial_counts


def trial_line(t: optuna.trial.FrozenTrial, elapsed_s: float) -> str:
    """``#3  anchor:paper  nca band=... loss 1.532  nca +0.4%  net -1.2%  1.10x  COMPLETE  95s``:
    the NCA effect is against scratch with the same recipe, the net effect against the best
    scratch recipe."""
    attrs = t.user_attrs
    loss = _fmt(_mean(attrs.get("losses")), "{:.4f}")
    gain = _fmt(attrs.get("gain_pct"), "{:+.2f}%")
    net = _fmt(attrs.get("net_effect_pct"), "{:+.2f}%")
    speed = _fmt(attrs.get("speedup"), "{:.2f}x")
    state = t.state.name
    why = attrs.get("pruned_reason") or (attrs.get("fail_reason") if state == "FAIL" else "")
    if "duplicate_of" in attrs and state == "COMPLETE":
        why = f"same setting as #{attrs['duplicate_of']}: result reused"
    elif "shared_seeds" in attrs:
        why = f"{attrs['shared_seeds']} seed(s) read back from another study's"
    tail = f"  ({why})" if why else ""
    return (
        f"#{t.number:<3d} {attrs.get('kind', 'search'):<18s} {attrs.get('describe', ''):<52s} "
        f"loss {loss:>7s}  nca {gain:>7s}  net {net:>7s}  speedup {speed:>6s}  {state:<8s} "
        f"{elapsed_s:6.0f}s{tail}{_by_domain(attrs)}"
    )


def _by_domain(attrs: dict) -> str:
    """``  | net code -1.20%, math +0.30%, web +0.50%`` for a multi-domain trial (its loss,
    NCA and net columns are the first domain's); nothing for one domain."""
    by_domain = attrs.get("by_domain")
    if not by_domain:
        return ""
    return "  | net " + ", ".join(f"{d} {_fmt(v.get('net_effect_pct'), '{:+.2f}%')}"
                                  for d, v in by_domain.items())


def summary(study: optuna.Study, scratch_losses: dict[str, list[float]], out: TextIO) -> None:
    """Per domain (``scratch_losses``' keys, in order): scratch, the paper's setting and the best
    setting found on that domain, with mean and spread over seeds."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    for domain, losses in scratch_losses.items():
        if len(scratch_losses) > 1:
            out.write(f"\n{domain}:")
        _table(done, domain if len(scratch_losses) > 1 else "", losses, out)
    out.write("NCA effect: vs scratch with the same recipe and seed; net effect: vs the best "
              "scratch recipe (paper, proxy or matched) at the same budget and seed.\n")
    out.write(_counts_line(study.get_trials(deepcopy=False)) + "\n")


def _counts_line(trials: list[optuna.trial.FrozenTrial]) -> str:
    """The trials counted as the board counts them, then the attempts it leaves out."""
    counts = trial_counts(trials)
    repeats = sum("duplicate_of" in t.user_attrs for t in trials)
    infeasible = sum(is_infeasible(t) for t in trials)
    lost = sum(t.state == TrialState.FAIL for t in trials) - counts["failed"]
    line = "trials: " + ", ".join(f"{v} {k}" for k, v in counts.items())
    if infeasible:
        line += f", {infeasible} infeasible (not counted)"
    if repeats:
        line += f", {repeats} repeat(s) of a setting already run (not counted)"
    if lost:
        line += f"; {lost} attempt(s) lost or interrupted (not counted: run again or never started)"
    return line


def _table(done: list[optuna.trial.FrozenTrial], domain: str, scratch_losses: list[float],
           out: TextIO) -> None:
    """The summary table of one domain (``""``: a one-domain study's)."""
    rows = [("scratch", "no pre-pre-training", scratch_losses, None, None, None)]
    paper = [t for t in done if t.user_attrs.get("kind") == "anchor:paper"]
    if paper:
        rows.append(_row("paper setting", paper[0], domain))
    searched = [t for t in done if t.user_attrs.get("losses")]
    if searched:
        # settings may differ in budget, so losses need not compare: rank by the net effect
        if all(_attrs(t, domain).get("net_effect_pct") is not None for t in searched):
            best = max(searched, key=lambda t: float(_attrs(t, domain)["net_effect_pct"]))
        else:
            best = min(searched, key=lambda t: statistics.fmean(_attrs(t, domain)["losses"]))
        rows.append(_row(f"best (#{best.number})", best, domain))
    out.write(f"\n{'':16s} {'setting':<52s} {'loss mean ± sd':>18s} {'NCA eff %':>9s} "
              f"{'net eff %':>9s} {'speedup':>8s}\n")
    for name, desc, losses, gain, net, speed in rows:
        spread = statistics.stdev(losses) if len(losses) > 1 else float("nan")
        out.write(
            f"{name:16s} {desc:<52s} {_mean(losses):>9.4f} ± {spread:<6.4f} "
            f"{_fmt(gain, '{:+.2f}'):>9s} {_fmt(net, '{:+.2f}'):>9s} {_fmt(speed, '{:.2f}x'):>8s}\n"
        )


def _attrs(t: optuna.trial.FrozenTrial, domain: str) -> dict:
    """The trial's per-seed attributes on ``domain`` (``""``: its own, one domain)."""
    return t.user_attrs["by_domain"][domain] if domain else t.user_attrs


def _row(name: str, t: optuna.trial.FrozenTrial, domain: str) -> tuple:
    a = _attrs(t, domain)
    return (name, t.user_attrs.get("describe", ""), a["losses"], a.get("gain_pct"),
            a.get("net_effect_pct"), a.get("speedup"))


def _mean(values: list[float] | None) -> float | None:
    return statistics.fmean(values) if values else None


def _fmt(value: float | None, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)
