"""Named model sizes with their default training knobs and budgets.

Run `python -m lm.cli presets` to list them with parameter counts.

Example:
    >>> preset = get_preset("tiny")
    >>> model = build_model(preset, vocab_size=257)
    >>> cfg = preset.train_config("domain", seq_len=preset.seq_len, seed=0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lm.model import ModelConfig, Transformer
from lm.recipe import RECIPES
from lm.trainer import TrainConfig

__all__ = ["PRESETS", "Preset", "build_model", "get_preset"]

Stage = Literal["nca", "domain"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Preset:
    """A model shape plus the training defaults a study uses with it."""

    name: str
    """Registry name."""
    description: str
    """What the preset is for."""
    n_layer: int
    """Transformer blocks."""
    n_embd: int
    """Residual width."""
    n_head: int
    """Attention heads."""
    mlp_hidden: int
    """SwiGLU hidden width (the paper's models: 4 * n_embd)."""
    seq_len: int
    """Tokens per text training sequence L (the model attends over L - 1)."""
    nca_seq_len: int
    """Model context of the NCA stage, in tokens; sequences hold whole frames (38 tokens each
    for grid 12), so 1024 is the paper's 27 frames and 493 is 13."""
    batch_tokens: int
    """Input tokens per optimiser step; sequences per step = batch_tokens // (L - 1)."""
    micro_batch_tokens: int
    """Input tokens per forward pass (bounds activation memory); the rest is accumulation."""
    nca_batch_tokens: int
    """Input tokens per optimiser step of the NCA stage (its budgets are smaller)."""
    lr: float
    """Peak learning rate of the domain stage (and of the scratch baseline)."""
    nca_lr: float
    """Peak learning rate of the NCA (pre-pre-training) stage."""
    warmup_frac: float = 0.05
    """Fraction of steps in linear warmup."""
    min_lr_ratio: float = 0.1
    """Cosine floor as a fraction of the peak lr."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices."""
    nca_tokens: int
    """Default NCA-stage budget, in training tokens."""
    domain_tokens: int
    """Default domain-stage budget (and scratch baseline), in training tokens."""
    evals_per_stage: int = 10
    """Evaluations per stage besides the one at 0 tokens (sets eval_every_tokens)."""
    eval_sequences: int
    """Validation sequences per evaluation of the domain stage."""
    nca_eval_sequences: int
    """Validation sequences per evaluation of the NCA stage."""
    autocast: Literal["auto", "bf16", "off"] = "auto"
    """Mixed precision: see TrainConfig.autocast."""
    recipe: str = "paper"
    """Default training recipe (lm.recipe): the paper's, so a trial measures NCA data rather
    than a recipe of our own making."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ValueError(f"Preset.{f.name}={value!r}: expected >= 1")
        if self.micro_batch_tokens > max(self.batch_tokens, self.nca_batch_tokens):
            raise ValueError(f"Preset.micro_batch_tokens={self.micro_batch_tokens} > "
                             f"batch_tokens={self.batch_tokens}")
        if self.recipe not in RECIPES:
            raise ValueError(f"Preset.recipe={self.recipe!r}: valid: {', '.join(RECIPES)}")
        self.model_config(vocab_size=2)  # validates the shape

    @property
    def test_sequences(self) -> int:
        """Test-split sequences a confirmation run is scored on: four evaluations' worth, so
        the score it reports is less noisy than the val losses it was selected on."""
        return 4 * self.eval_sequences

    def model_config(self, vocab_size: int, max_seq_len: int = 4096) -> ModelConfig:
        """The ModelConfig of this preset for a vocabulary of `vocab_size` tokens."""
        return ModelConfig(vocab_size=vocab_size, n_layer=self.n_layer, n_embd=self.n_embd,
                           n_head=self.n_head, mlp_hidden=self.mlp_hidden,
                           max_seq_len=max_seq_len)

    def num_params(self, vocab_size: int, *, embedding: bool = True) -> int:
        """Parameter count for `vocab_size` (computed, nothing allocated)."""
        C, H = self.n_embd, self.mlp_hidden
        block = 4 * C * C + 3 * C * H + 2 * C
        return self.n_layer * block + C + vocab_size * C * (2 if embedding else 1)

    def train_config(self, stage: Stage, *, seq_len: int, seed: int, **overrides: Any
                     ) -> TrainConfig:
        """Default TrainConfig for a stage on sequences of `seq_len` tokens.

        Args:
            stage: "nca" (pre-pre-training) or "domain" (also the scratch baseline).
            seq_len: tokens per sequence of the dataset (L).
            seed: batch-order seed.
            overrides: TrainConfig fields to replace (e.g. total_tokens, lr).
        """
        if stage not in ("nca", "domain"):
            raise ValueError(f"{stage!r} is not a stage; valid: 'nca', 'domain'")
        per_seq = seq_len - 1
        batch_tokens = self.nca_batch_tokens if stage == "nca" else self.batch_tokens
        micro = max(1, min(self.micro_batch_tokens, batch_tokens) // per_seq)
        total = overrides.get("total_tokens") or (
            self.nca_tokens if stage == "nca" else self.domain_tokens)
        fields = {
            "total_tokens": total, "batch_size": micro,
            "grad_accum": max(1, batch_tokens // (micro * per_seq)),
            "lr": self.nca_lr if stage == "nca" else self.lr, "warmup_frac": self.warmup_frac,
            "min_lr_ratio": self.min_lr_ratio, "weight_decay": self.weight_decay,
            "eval_every_tokens": max(1, total // self.evals_per_stage),
            "eval_sequences": self.nca_eval_sequences if stage == "nca" else self.eval_sequences,
            "seed": seed, "autocast": self.autocast}
        valid = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"{unknown} are not TrainConfig fields; valid: {sorted(valid)}")
        return TrainConfig(**{**fields, **overrides})


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(name="tiny", description="tests and smoke runs: a whole trial in seconds",
               n_layer=2, n_embd=32, n_head=2, mlp_hidden=128, seq_len=65, nca_seq_len=64,
               batch_tokens=512, micro_batch_tokens=512, nca_batch_tokens=512, lr=3e-3,
               nca_lr=3e-3,
               nca_tokens=8_192, domain_tokens=16_384, evals_per_stage=4,
               eval_sequences=32, nca_eval_sequences=8),
        # Calibrated on 2 cores (avx512, fp32; python -m lm.bench: 16.3k tokens/s on text, 6.4k
        # on NCA vocab 10**4+2): per seed, NCA data ~1 s + NCA stage 13 s + diagnose 1 s + domain
        # stage 29 s (evaluations included) = ~45 s, so a 2-seed trial takes ~1.5 minutes once
        # the scratch baselines are cached. The budgets are half of what they were until the
        # confirmation phase (issue 27) made a default study's runs about 3x as many, aiming at
        # an hour for the whole default code study on 2 idle cores (not yet measured idle; see
        # docs/confirmation.md, "The default code study"). Studies that
        # need the earlier 819,200 / 131,072 (evidence, regime) set them in [budget].
        Preset(name="cpu-proxy",
               description="default study on 2 CPU cores: a 2-seed trial in about 1.5 minutes",
               n_layer=4, n_embd=128, n_head=4, mlp_hidden=512, seq_len=257, nca_seq_len=493,
               batch_tokens=8_192, micro_batch_tokens=8_192, nca_batch_tokens=2_048, lr=2e-3,
               nca_lr=2e-3, nca_tokens=65_536, domain_tokens=409_600, evals_per_stage=10,
               eval_sequences=128, nca_eval_sequences=32),
        Preset(name="gpu-proxy", description="one GPU: ~113M parameters (GPT-2 small shape)",
               n_layer=12, n_embd=768, n_head=12, mlp_hidden=3072, seq_len=1025,
               nca_seq_len=1024,
               batch_tokens=262_144, micro_batch_tokens=32_768, nca_batch_tokens=262_144,
               lr=6e-4, nca_lr=6e-4,
               nca_tokens=100_000_000, domain_tokens=500_000_000, evals_per_stage=20,
               eval_sequences=512, nca_eval_sequences=128),
        Preset(name="paper-1.6b", description="the paper's model: 24 layers, width 2048",
               n_layer=24, n_embd=2048, n_head=32, mlp_hidden=8192, seq_len=1025,
               nca_seq_len=1024,
               batch_tokens=524_288, micro_batch_tokens=16_384, nca_batch_tokens=524_288,
               lr=3e-4, nca_lr=3e-4,
               nca_tokens=160_000_000, domain_tokens=2_000_000_000, evals_per_stage=20,
               eval_sequences=1024, nca_eval_sequences=256),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called `name`.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in PRESETS:
        raise ValueError(f"{name!r} is not a preset; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def build_model(preset: Preset | str, vocab_size: int, *, seed: int = 0,
                max_seq_len: int = 4096) -> Transformer:
    """A freshly initialised Transformer of `preset`'s shape (weights drawn from `seed`)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    generator = torch.Generator().manual_seed(seed)
    return Transformer(preset.model_config(vocab_size, max_seq_len), generator=generator)

