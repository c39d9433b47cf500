"""The confirmation phase: a study's winners run again, on fresh seeds and the test split,
against scratch tuned exactly as much as they are.

A search picks its best settings by their mean over the same seeds and validation text it then
reports them on, so the winner's score is biased upward (the winner's curse), and its scratch
runs used one learning rate while the NCA arm's knobs were searched. The confirmation removes
both: its **finalists** (the study's ``top`` settings by its first objective, and its ``paper``
anchor) and every **scratch arm** (each named recipe, and each finalist's own downstream recipe,
at the finalist's budget) each run at every point of the same learning-rate grid, on
``[confirm] seeds`` the search never saw. Each arm's grid point is chosen by its mean validation
loss; the chosen points are compared on the **test** split, seed by seed
(``analysis.confirmation``).

It runs as an Optuna study of its own, ``<study>.confirm``, in the same storage: one trial per arm
and grid point, every trial enqueued up front, driven by the same ``Driver`` and executors as
the search (cached, resumable, retried, on the board, in ``search.status`` and the dashboard).
A finalist's NCA stage keeps the learning rate it searched with (its ``ppt_lr``), so it is
trained once per seed and shared by the grid points.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from lm.presets import get_preset
from lm.recipe import RECIPES
from search import study as study_lib
from search._proposals import setting_from_json, setting_json
from search.config import PrunerSection, SamplerSection, StudyConfig
from search.driver import Driver, DriverEvents, StudyStopped
from search.executors import BaseExecutor
from search.plan import resolve
from search.record import CONFIRMS_ATTR, PLAN_ATTR
from search.space import Setting
from search.tracking import TrackingConfig
from search.trial import TrialContext

__all__ = ["Finalist", "Run", "confirm_config", "confirm_context", "confirm_name", "drive",
           "finalists", "open_confirm_study", "plan_runs"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Finalist:
    """A setting the search found, to confirm."""

    arm: str
    """Its arm's label: ``#<search trial>``."""
    number: int
    """Its trial in the search study."""
    setting: Setting
    search_value: float
    """The search's estimate of the study's first objective (its seeds, val)."""
    search_effects: dict[str, float | None]
    """The search's NCA effect and net effect (``nca``, ``net``), its seeds and val."""
    why: str
    """``top 1``, ``top 2``, ``paper anchor``, or both."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """One trial of the confirmation study: one arm at one point of the grid."""

    arm: str
    """``#12`` (a finalist) or ``scratch:paper`` (a scratch recipe, with its budget when it is
    not the study's)."""
    lr_x: float
    """Multiplier of the preset's downstream learning rate."""
    setting: Setting


def confirm_name(study_name: str) -> str:
    """The confirmation study's name."""
    return f"{study_name}.confirm"


def finalists(study: optuna.Study, config: StudyConfig) -> list[Finalist]:
    """The search's ``top`` distinct settings by its first objective, then its paper anchor
    when it is not one of them (completed trials only; repeats are their first trial)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "duplicate_of" not in t.user_attrs and t.values]
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    ranked = sorted(done, key=lambda t: (sign * t.values[0], t.number))
    picked: dict[str, tuple[optuna.trial.FrozenTrial, list[str]]] = {}
    for t in ranked:
        if len(picked) == config.confirm.top:
            break
        if t.user_attrs["setting"] not in picked:  # a setting run twice is one finalist
            picked[t.user_attrs["setting"]] = (t, [f"top {len(picked) + 1}"])
    paper = [t for t in done if t.user_attrs.get("kind") == "anchor:paper"]
    for t in paper[:1]:
        picked.setdefault(t.user_attrs["setting"], (t, []))[1].append("paper anchor")
    return [Finalist(arm=f"#{t.number}", number=t.number,
                     setting=setting_from_json(t.user_attrs["setting"]),
                     search_value=float(t.values[0]), why=", ".join(why),
                     search_effects={"nca": t.user_attrs.get("nca_effect_pct"),
                                     "net": t.user_attrs.get("net_effect_pct")})
            for t, why in picked.values()]


def _scratch_arms(finalist: Finalist, context: TrialContext) -> tuple[dict[str, Setting], str]:
    """The scratch runs ``finalist`` is scored against, as settings, and which of them is its
    matched one: every named recipe (the net effect's candidates) at its budget, and its own
    downstream recipe (the NCA effect's arm) where no named one is the same."""
    s = finalist.setting
    budget = f"@{s.domain_tokens}" if s.domain_tokens else ""
    matched = Setting(source="none", recipe=s.recipe, embed_init=s.embed_init,
                      embed_std=s.embed_std, warmup=s.warmup, domain_tokens=s.domain_tokens)
    arms = {f"scratch:{name}{budget}": Setting(source="none", recipe=name,
                                               domain_tokens=s.domain_tokens)
            for name in RECIPES}
    own = resolve(matched, context).recipe
    same = next((label for label, a in arms.items() if resolve(a, context).recipe == own), None)
    if same is not None:
        return arms, same
    label = f"scratch:matched{finalist.arm}"
    return arms | {label: matched}, label


def plan_runs(found: list[Finalist], config: StudyConfig, context: TrialContext
              ) -> tuple[list[Run], dict[str, Any]]:
    """Every confirmation trial, grid point by grid point (so the workers start on different
    arms), and the plan the analysis reads back: each finalist's matched and candidate scratch
    arms, the grid and the seeds."""
    lr = get_preset(context.preset).lr
    arms: dict[str, Setting] = {}
    plan_finalists = []
    for f in found:
        scratch, matched = _scratch_arms(f, context)
        # the NCA stage keeps the lr it searched with: one NCA stage per seed for the grid
        arms[f.arm] = (dataclasses.replace(f.setting, ppt_lr=resolve(f.setting, context).nca_lr)
                       if f.setting.source != "none" else f.setting)
        arms.update(scratch)
        plan_finalists.append({"arm": f.arm, "number": f.number, "why": f.why,
                               "search_value": f.search_value, "search": f.search_effects,
                               "describe": f.setting.describe(), "matched": matched,
                               "scratch": sorted(scratch)})
    runs = [Run(arm=arm, lr_x=m, setting=dataclasses.replace(setting, lr=m * lr))
            for m in config.confirm.lr_grid for arm, setting in arms.items()]
    plan = {"finalists": plan_finalists,
            "scratch": sorted({a for a in arms if a.startswith("scratch")}),
            "lr_grid": list(config.confirm.lr_grid), "seeds": list(config.confirm.seeds),
            "objective": config.study.objectives[0], "search_seeds": list(config.study.seeds)}
    return runs, plan


def confirm_config(config: StudyConfig, n_runs: int) -> StudyConfig:
    """The confirmation study's config: its runs are all enqueued (nothing is sampled or
    pruned), on the confirmation's seeds, each scored by its mean validation loss; it lives in
    the search's storage, its work folders under ``<run_dir>/confirm``."""
    s = config.study
    study = dataclasses.replace(
        s, name=confirm_name(s.name), n_trials=n_runs, seeds=config.confirm.seeds,
        objectives=("loss",), storage=config.storage_url,  # the search's journal
        run_dir=str(config.run_dir / "confirm"))
    return dataclasses.replace(config, study=study, sampler=SamplerSection(name="random"),
                               pruner=PrunerSection(name="none"), space=(), anchors=(),
                               confirm=dataclasses.replace(config.confirm, enabled=False))


def confirm_context(context: TrialContext, config: StudyConfig) -> TrialContext:
    """The search's context on the confirmation's seeds, scoring every model on test too."""
    return dataclasses.replace(context, seeds=config.confirm.seeds, evaluate_test=True)


def open_confirm_study(study: optuna.Study, config: StudyConfig, runs: list[Run],
                       plan: dict[str, Any]) -> None:
    """Enqueue ``runs`` in the (new) confirmation ``study`` once, and record its plan; a resumed
    confirmation keeps the runs it has.

    Raises:
        ValueError: the study was planned with other finalists, grid or seeds.
    """
    stored = study.user_attrs.get(PLAN_ATTR)
    if stored is not None:
        if json.loads(stored) != plan:
            raise ValueError(f"study {study.study_name!r} was planned with other finalists, "
                             "grid or seeds; give the study a new --name to confirm again")
        return
    for run in runs:
        kind = f"confirm:{run.arm.removeprefix('scratch:')}"
        study.enqueue_trial({}, user_attrs={"setting": setting_json(run.setting), "kind": kind,
                                            "arm": run.arm, "lr_x": run.lr_x},
                            skip_if_exists=False)
    study.set_user_attr(CONFIRMS_ATTR, config.study.name)
    study.set_user_attr("anchors_enqueued", True)  # its runs are its anchors
    study.set_user_attr(PLAN_ATTR, json.dumps(plan, sort_keys=True))


def drive(search: optuna.Study, config: StudyConfig, context: TrialContext,
          executor: BaseExecutor, events: DriverEvents, *, say: Callable[[str], None],
          tick: Callable[[Driver], None], tracking: TrackingConfig | None = None
          ) -> optuna.Study:
    """Plan (or resume) the confirmation of ``search`` and run it to its last trial, with the
    search's executor, in the search's storage; returns the confirmation study. With
    ``tracking``, its runs join the search's experiment, tagged ``phase=confirmation``.

    Raises:
        StudyStopped: the search has no completed trial, or was confirmed with another plan.
        StudyBusyError: another driver holds the confirmation study.
    """
    found = finalists(search, config)
    if not found:
        raise StudyStopped(f"study {config.study.name!r} has no completed trial to confirm")
    runs, plan = plan_runs(found, config, context)
    cfg, ctx = confirm_config(config, len(runs)), confirm_context(context, config)
    lock = study_lib.take_study(cfg)
    try:
        study = study_lib.open_study(cfg, ctx)
        try:
            open_confirm_study(study, config, runs, plan)
        except ValueError as exc:
            raise StudyStopped(str(exc)) from None
        scratch = len(plan["scratch"])
        say(f"confirmation {cfg.study.name!r}: {len(found)} finalist(s) "
            f"({', '.join(f'{f.arm} {f.why}' for f in found)}) and {scratch} scratch arm(s), "
            f"each at lr x {', '.join(f'{m:g}' for m in config.confirm.lr_grid)}, on fresh "
            f"seeds {list(config.confirm.seeds)}, scored on the test split")
        driver = Driver(config=cfg, study=study, executor=executor, context=ctx, events=events,
                        max_in_flight=cfg.trials_at_once, heartbeat=lock.renew,
                        tracking=dataclasses.replace(tracking, phase="confirmation")
                        if tracking else None)
        driver.run()
        tick(driver)
    finally:
        with suppress(OSError):
            lock.release()
    return study
