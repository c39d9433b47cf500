"""Training recipes: how the NCA stage, the transfer and the domain stage are optimised.

A preset fixes the model's shape and its budgets; a recipe fixes everything else that decides
whether pre-pre-training helps: the initialisation of the new embedding and head, the NCA stage's
optimiser and schedule, its peak learning rate relative to the domain stage's, and the domain
stage's warmup, anneal floor and weight decay. Two named recipes:

- ``paper``: the reference code's (danihyunlee/nca-pre-pretraining at bdd1c71) in miniature,
  ratio for ratio. New embedding ``nn.Embedding``'s default N(0, 1) and head ``nn.Linear``'s
  default (Kaiming-uniform, bound 1/sqrt(C)); NCA stage Adam (betas 0.9/0.999, no weight decay)
  whose checkpoint is taken at the end of a linear warmup (the paper transfers epoch 10 of a
  100-epoch schedule whose warmup is 10 epochs: it is never annealed); NCA peak lr 0.5x the
  downstream lr for code (1e-4 vs 2e-4), 0.2x for web and math (1e-4 vs 5e-4); downstream
  AdamW (0.9/0.999), cosine to 0, warmup 10% and weight decay 1e-4 (web, math) or 750 of ~24k
  steps (3%) and none (code).
- ``proxy``: this project's first recipe, kept for comparison: N(0, 0.02) embedding and head,
  AdamW (0.9/0.95, weight decay 0.1) in both stages with 5% warmup and cosine to 0.1x, the NCA
  stage at the downstream lr.

Learning rates stay the preset's (tuned to its size); only their ratio comes from the recipe.

Example:
    >>> recipe = get_recipe("paper", "code")
    >>> recipe.nca_lr_ratio, recipe.warmup_frac
    (0.5, 0.03)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from lm.corpora import DOMAINS
from lm.model import Transformer

if TYPE_CHECKING:  # lm.presets imports this module
    from lm.presets import Preset, Stage
    from lm.trainer import TrainConfig

__all__ = ["EMBED_INITS", "NCA_SCHEDULES", "RECIPES", "Recipe", "get_recipe", "head_std",
           "init_new_embeddings"]

EMBED_INITS = ("reference", "scaled")
NCA_SCHEDULES = ("warmup-only", "cosine")
RECIPES = ("paper", "proxy")

@dataclass(frozen=True, kw_only=True, slots=True)
class Recipe:
    """Everything about a trial's optimisation that is not the model's shape or its budgets."""

    name: str
    """``paper``, ``proxy`` or a custom name (a recipe with some fields overridden)."""
    embed_init: Literal["reference", "scaled"]
    """New embedding and head: ``reference`` = PyTorch's module defaults (N(0, 1) embedding,
    Kaiming-uniform head), as the paper; ``scaled`` = the model's N(0, init_std)."""
    nca_schedule: Literal["warmup-only", "cosine"]
    """``warmup-only``: linear warmup over the whole NCA stage, transferred at its peak lr;
    ``cosine``: the domain stage's warmup and cosine decay."""
    nca_lr_ratio: float
    """NCA-stage peak lr as a fraction of the domain stage's peak lr, > 0."""
    nca_beta2: float
    """Adam beta2 of the NCA stage."""
    nca_weight_decay: float
    """Decoupled weight decay of the NCA stage (0 makes AdamW exactly Adam)."""
    warmup_frac: float
    """Domain-stage (and scratch) warmup, as a fraction of its steps."""
    min_lr_ratio: float
    """Domain-stage cosine floor as a fraction of the peak lr."""
    weight_decay: float
    """Domain-stage decoupled weight decay on matrices."""
    beta2: float
    """Domain-stage Adam beta2."""
    embed_std: float = 0.0
    """A continuous scale for the new embedding and head that replaces ``embed_init`` when > 0:
    the embedding is drawn N(0, embed_std), the head at the scale that follows the same path
    between the two named points (see ``init_new_embeddings``)."""

    def __post_init__(self) -> None:
        if self.embed_init not in EMBED_INITS:
            raise ValueError(f"embed_init {self.embed_init!r} is not one of "
                             f"{', '.join(EMBED_INITS)}")
        if self.nca_schedule not in NCA_SCHEDULES:
            raise ValueError(f"nca_schedule {self.nca_schedule!r} is not one of "
                             f"{', '.join(NCA_SCHEDULES)}")
        if not (math.isfinite(self.nca_lr_ratio) and self.nca_lr_ratio > 0):
            raise ValueError(f"nca_lr_ratio {self.nca_lr_ratio!r} must be a finite number > 0")
        for name in ("warmup_frac", "nca_beta2", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} {getattr(self, name)!r} must be in [0, 1)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio {self.min_lr_ratio!r} must be in [0, 1]")
        if self.weight_decay < 0 or self.nca_weight_decay < 0:
            raise ValueError("weight decays must be >= 0")
        if not (math.isfinite(self.embed_std) and 0.0 <= self.embed_std <= 10.0):
            raise ValueError(f"embed_std {self.embed_std!r} must be in [0, 10] (0: embed_init's)")

    def nca_overrides(self, domain_lr: float) -> dict[str, Any]:
        """TrainConfig fields of the NCA stage, given the domain stage's peak lr."""
        schedule = {"schedule": "warmup-only"} if self.nca_schedule == "warmup-only" else {
            "warmup_frac": self.warmup_frac, "min_lr_ratio": self.min_lr_ratio}
        return {"lr": self.nca_lr_ratio * domain_lr, "beta2": self.nca_beta2,
                "weight_decay": self.nca_weight_decay, **schedule}

    def domain_overrides(self) -> dict[str, Any]:
        """TrainConfig fields of the domain stage and of its scratch baseline."""
        return {"warmup_frac": self.warmup_frac, "min_lr_ratio": self.min_lr_ratio,
                "weight_decay": self.weight_decay, "beta2": self.beta2}

    def stage_config(self, preset: Preset, stage: Stage, *, seed: int, seq_len: int,
                     tokens: int, domain_lr: float) -> TrainConfig:
        """TrainConfig of ``stage`` under this recipe: the one composition that the search trial
        (``search.plan``) and the ``lm.cli`` stages share.

        Args:
            preset: the model size and its defaults.
            stage: ``nca`` (pre-pre-training) or ``domain`` (also the scratch baseline).
            seed: batch-order seed.
            seq_len: tokens per sequence of the stage's dataset.
            tokens: the stage's budget in training tokens.
            domain_lr: the domain stage's peak lr (the NCA stage's is a ratio of it).
        """
        overrides = (self.nca_overrides(domain_lr) if stage == "nca"
                     else {"lr": domain_lr, **self.domain_overrides()})
        return preset.train_config(stage, seq_len=seq_len, seed=seed, total_tokens=tokens,
                                   **overrides)

    def replace(self, **changes: Any) -> Recipe:
        """This recipe with some fields changed (named ``<name>+`` when anything changed)."""
        changed = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changed:
            return self
        return dataclasses.replace(self, name=self.name.rstrip("+") + "+", **changed)


def get_recipe(name: str, domain: str) -> Recipe:
    """The named recipe as it applies to ``domain`` (the paper's downstream recipe differs
    between code and web/math).

    Raises:
        ValueError: unknown recipe or domain (the message lists the valid ones).
    """
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is not one of {', '.join(RECIPES)}")
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} is not one of {', '.join(DOMAINS)}")
    if name == "proxy":
        return Recipe(name="proxy", embed_init="scaled", nca_schedule="cosine", nca_lr_ratio=1.0,
                      nca_beta2=0.95, nca_weight_decay=0.1, warmup_frac=0.05, min_lr_ratio=0.1,
                      weight_decay=0.1, beta2=0.95)
    code = domain == "code"
    return Recipe(name="paper", embed_init="reference", nca_schedule="warmup-only",
                  nca_lr_ratio=0.5 if code else 0.2, nca_beta2=0.999, nca_weight_decay=0.0,
                  # code: 750 warmup steps of 24,033 (12.6B tokens at 524,288 per step)
                  warmup_frac=0.03 if code else 0.1, min_lr_ratio=0.0,
                  weight_decay=0.0 if code else 1e-4, beta2=0.999)


def head_std(embed_std: float, init_std: float, width: int) -> float:
    """The head's std that goes with an embedding std of ``embed_std``: log-linear between the
    two named points, ``scaled`` (embedding and head at ``init_std``) and ``reference``
    (embedding 1, head uniform(+-1/sqrt(C)), whose std is 1/sqrt(3C))."""
    t = math.log(embed_std / init_std) / math.log(1.0 / init_std)
    return math.exp((1 - t) * math.log(init_std) + t * math.log(1.0 / math.sqrt(3 * width)))


@torch.no_grad()
def init_new_embeddings(model: Transformer, embed_init: str, seed: int,
                        embed_std: float = 0.0) -> None:
    """Draw the input embedding and the output head as ``embed_init`` (or ``embed_std``) says.

    ``scaled`` keeps the model's own N(0, init_std) draw. ``reference`` redraws them as
    PyTorch's modules would: embedding N(0, 1), head uniform(+-1/sqrt(C)) (``nn.Linear``'s
    Kaiming-uniform with a = sqrt(5)). ``embed_std`` > 0 draws the embedding N(0, embed_std) and
    the head N(0, ``head_std``): at init_std it is ``scaled`` itself, at 1 ``reference``'s
    scales (with a normal head). The draw depends on ``seed`` only, so the NCA arm and its
    scratch run get the very same new tensors.
    """
    if embed_init not in EMBED_INITS:
        raise ValueError(f"embed_init {embed_init!r} is not one of {', '.join(EMBED_INITS)}")
    generator = torch.Generator().manual_seed(seed)
    emb, head = model.tok_emb.weight, model.lm_head.weight
    if embed_std > 0:
        std = head_std(embed_std, model.config.init_std, head.shape[1])
        emb.copy_(torch.empty(emb.shape, dtype=torch.float32).normal_(
            0.0, embed_std, generator=generator))
        head.copy_(torch.empty(head.shape, dtype=torch.float32).normal_(
            0.0, std, generator=generator))
        return
    if embed_init == "scaled":
        return
    fresh = torch.empty(emb.shape, dtype=torch.float32).normal_(0.0, 1.0, generator=generator)
    emb.copy_(fresh)
    bound = 1.0 / math.sqrt(head.shape[1])
    fresh = torch.empty(head.shape, dtype=torch.float32).uniform_(-bound, bound,
                                                                  generator=generator)
    head.copy_(fresh)
