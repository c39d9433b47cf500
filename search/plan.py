"""A setting resolved against its study: recipe, budgets, stage configs and cache keys.

Everything a trial computes is keyed by the content of what it depends on, so two trials share
a cached pre-pre-trained checkpoint or scratch run exactly when they would compute the same one:

- a scratch run depends on the domain stage's resolved TrainConfig (budget, lr, warmup, anneal
  floor, weight decay, betas, seed), the new-embedding init, the model's shape, the corpus'
  token content, the device and the ``lm`` source; NCA-only knobs never enter its key;
- a pre-pre-trained checkpoint depends on the NCA data's key, the NCA stage's TrainConfig, the
  model's shape, the device and the ``lm`` source.

Example:
    >>> plan = resolve(Setting(recipe="paper", nca_fraction=0.04), context)
    >>> plan.recipe.nca_schedule, plan.nca_tokens
    ('warmup-only', 32768)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import lm
import ncaio
from lm.presets import Preset, get_preset
from lm.recipe import RECIPES, Recipe, get_recipe
from lm.trainer import TrainConfig
from search.space import Setting
from search.synthetic import recipe_domain

__all__ = ["Plan", "ScratchRun", "lm_source_key", "resolve", "scratch_runs"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """How one setting trains: its recipe and budgets, resolved against the study."""

    recipe: Recipe
    """The recipe with the setting's overrides applied."""
    nca_tokens: int
    """NCA-stage budget in tokens."""
    domain_tokens: int
    """Domain-stage (and scratch) budget in tokens."""
    domain_lr: float
    """Domain-stage peak lr."""

    @property
    def nca_lr(self) -> float:
        """NCA-stage peak lr (the recipe's ratio of the domain lr, unless the setting fixed it)."""
        return self.recipe.nca_lr_ratio * self.domain_lr

    def domain_config(self, preset: Preset, seed: int, seq_len: int) -> TrainConfig:
        """TrainConfig of the domain stage, shared by the NCA arm and its matched scratch run."""
        return self.recipe.stage_config(preset, "domain", seed=seed, seq_len=seq_len,
                                        tokens=self.domain_tokens, domain_lr=self.domain_lr)

    def nca_config(self, preset: Preset, seed: int, seq_len: int) -> TrainConfig:
        """TrainConfig of the NCA stage."""
        return self.recipe.stage_config(preset, "nca", seed=seed, seq_len=seq_len,
                                        tokens=self.nca_tokens, domain_lr=self.domain_lr)


@dataclass(frozen=True, kw_only=True, slots=True)
class ScratchRun:
    """One scratch baseline: a recipe's domain stage from a fresh model."""

    label: str
    """``matched`` (the trial's own downstream recipe) or a named recipe (``paper``, ``proxy``)."""
    plan: Plan
    """Whose domain stage it runs (its NCA fields play no part)."""


def resolve(setting: Setting, context: Any) -> Plan:
    """The setting's recipe and budgets, with the study's defaults filled in.

    Budget precedence for the NCA stage: the setting's ``nca_tokens``, then its ``nca_fraction``
    of the domain budget, then the study's ``nca_fraction``, then the study's ``nca_tokens``.
    """
    preset = get_preset(context.preset)
    recipe = get_recipe(setting.recipe or context.recipe, recipe_domain(context.domain))
    changes: dict[str, Any] = {}
    if setting.embed_init:
        changes["embed_init"] = setting.embed_init
    if setting.embed_std:
        changes["embed_std"] = setting.embed_std
    if setting.nca_schedule:
        changes["nca_schedule"] = setting.nca_schedule
    if setting.nca_lr_ratio:
        changes["nca_lr_ratio"] = setting.nca_lr_ratio
    if setting.warmup >= 0:
        changes["warmup_frac"] = setting.warmup
    domain_lr = setting.lr or preset.lr
    if setting.ppt_lr:  # an absolute NCA lr is the ratio that gives it
        changes["nca_lr_ratio"] = setting.ppt_lr / domain_lr
    domain_tokens = setting.domain_tokens or context.domain_tokens
    fraction = setting.nca_fraction or context.nca_fraction
    nca_tokens = setting.nca_tokens or (round(fraction * domain_tokens) if fraction
                                        else context.nca_tokens)
    return Plan(recipe=recipe.replace(**changes), nca_tokens=max(1, nca_tokens),
                domain_tokens=domain_tokens, domain_lr=domain_lr)


def scratch_runs(plan: Plan, context: Any) -> list[ScratchRun]:
    """The scratch runs a trial is scored against: its matched one, then every named recipe's
    at the same budget and the preset's lr (the candidates for the best scratch)."""
    preset = get_preset(context.preset)
    runs = [ScratchRun(label="matched", plan=plan)]
    for name in RECIPES:
        named = Plan(recipe=get_recipe(name, recipe_domain(context.domain)),
                     nca_tokens=plan.nca_tokens,
                     domain_tokens=plan.domain_tokens, domain_lr=preset.lr)
        runs.append(ScratchRun(label=name, plan=named))
    return runs


LM_COMMAND_LINES = frozenset({"bench.py", "bench_ranks.py", "cli.py"})
"""``python -m lm.bench``, ``lm.bench_ranks`` and ``lm.cli``: no library module imports them
(tests/test_imports.py), so they are left out of ``lm_source_key``."""


@cache
def lm_source_key() -> str:
    """Hash of the ``lm`` package's library source: editing a preset, the trainer or the model
    changes every key that depends on them, with no version to bump by hand; editing a command
    line (a benchmark's flags) retrains nothing."""
    files = sorted(Path(lm.__file__).resolve().parent.glob("*.py"))
    return ncaio.source_key([f for f in files if f.name not in LM_COMMAND_LINES])


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """A TrainConfig as key material (``compile`` does not change the trajectory's definition)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "compile"}
