"""Move a pre-pre-trained model to a new vocabulary: the paper's transfer and its ablations.

By default the input embedding and the output head are re-initialised for the target vocabulary
and every other tensor (attention, MLP, norms of all blocks, final norm) is copied. Options
re-initialise or freeze whole groups ("attention", "mlp", "norm") in all blocks or in a range of
blocks. The report lists every tensor under exactly one of copied / re-initialised, and frozen
ones again under frozen.

Example:
    >>> model, report = transfer("ppt.pt", 257, TransferConfig(freeze=("attention",)))
    >>> print(report.summary())
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lm.checkpoint import PRETRAINED_KEYS, load_checkpoint
from lm.model import ModelConfig, Transformer
from lm.recipe import EMBED_INITS, init_new_embeddings

__all__ = ["GROUPS", "TransferConfig", "TransferReport", "transfer"]

GROUPS = ("attention", "mlp", "norm")
_OUTPUT_PROJECTIONS = ("attn.out.weight", "mlp.down.weight")
_BLOCK = re.compile(r"blocks\.(\d+)\.(attn_norm|mlp_norm|attn|mlp)\.")


@dataclass(frozen=True, kw_only=True, slots=True)
class TransferConfig:
    """Which copied tensors to re-initialise or freeze (embedding and head are always new)."""

    reinit: tuple[str, ...] = ()
    """Groups to re-initialise instead of copying: any of 'attention', 'mlp', 'norm'."""
    reinit_layers: tuple[int, int] | None = None
    """Blocks [start, stop) that `reinit` applies to; None = all blocks (and 'norm' then also
    covers the final norm)."""
    freeze: tuple[str, ...] = ()
    """Groups whose tensors get requires_grad=False in the target model."""
    freeze_layers: tuple[int, int] | None = None
    """Blocks [start, stop) that `freeze` applies to; None = all blocks (+ final norm)."""
    seed: int = 0
    """Seed of the fresh embedding, head and re-initialised tensors."""
    embed_init: str = "scaled"
    """How the new embedding and head are drawn: see lm.recipe.init_new_embeddings."""
    embed_std: float = 0.0
    """Their continuous scale instead, when > 0 (lm.recipe.init_new_embeddings)."""
    out_scale: float = 1.0
    """Factor on the copied blocks' residual output projections (attention's ``out`` and the
    MLP's ``down``): below 1 the copied blocks write less into the residual stream at first, so
    they drown a small new embedding less."""

    def __post_init__(self) -> None:
        if not (0.0 < self.out_scale <= 10.0) or not (0.0 <= self.embed_std <= 10.0):
            raise ValueError(f"TransferConfig.out_scale={self.out_scale!r} and embed_std="
                             f"{self.embed_std!r}: expected 0 < out_scale <= 10 and "
                             "0 <= embed_std <= 10")
        if self.embed_init not in EMBED_INITS:
            raise ValueError(f"TransferConfig.embed_init={self.embed_init!r}: expected one of "
                             f"{', '.join(map(repr, EMBED_INITS))}")
        for name in ("reinit", "freeze"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not set(value) <= set(GROUPS):
                raise ValueError(f"TransferConfig.{name}={value!r}: expected a tuple of "
                                 f"{', '.join(map(repr, GROUPS))}")
        for name in ("reinit_layers", "freeze_layers"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, tuple) and len(value) == 2
                                          and 0 <= value[0] < value[1]):
                raise ValueError(f"TransferConfig.{name}={value!r}: expected None or "
                                 "(start, stop) with 0 <= start < stop")


@dataclass(frozen=True, kw_only=True, slots=True)
class TransferReport:
    """Exactly what happened to each tensor of the target model."""

    copied: tuple[str, ...]
    """Tensors copied from the source."""
    reinitialized: tuple[str, ...]
    """Tensors freshly initialised (embedding, head and any re-initialised groups)."""
    frozen: tuple[str, ...]
    """Tensors with requires_grad=False (a subset of copied or reinitialized)."""

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-friendly form."""
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def summary(self) -> str:
        """One line per category with counts and names."""
        return "\n".join(f"{f.name} ({len(getattr(self, f.name))}): "
                         f"{', '.join(getattr(self, f.name)) or '-'}"
                         for f in dataclasses.fields(self))


def _group(name: str) -> tuple[str, int | None]:
    """(group, block index) of a parameter name; block None for non-block tensors."""
    if name == "tok_emb.weight":
        return "embedding", None
    if name == "lm_head.weight":
        return "head", None
    if name == "norm_f.weight":
        return "norm", None
    m = _BLOCK.match(name)
    if m is None:
        raise ValueError(f"unexpected parameter {name!r} in the source state dict")
    part = m.group(2)
    group = "norm" if part.endswith("_norm") else "attention" if part == "attn" else "mlp"
    return group, int(m.group(1))


def _selected(name: str, groups: tuple[str, ...], layers: tuple[int, int] | None) -> bool:
    group, block = _group(name)
    if group not in groups:
        return False
    if layers is None:
        return True
    return block is not None and layers[0] <= block < layers[1]


_ACCEPTED = ("accepted: a pre-pre-trained checkpoint {'model': state_dict, 'upstream': {...}} "
             "(lm.checkpoint), the path of one, or a Transformer.state_dict()")


def _unpack(source: Any) -> tuple[Mapping[str, torch.Tensor], ModelConfig]:
    """The weights and config of `source`: the layout lm.checkpoint defines, or its state dict
    (which carries its ModelConfig under `_extra_state`), and nothing else."""
    state = load_checkpoint(source) if isinstance(source, (str, Path)) else source
    if isinstance(state, Mapping) and set(state) == PRETRAINED_KEYS:
        state = state["model"]
    if isinstance(state, Mapping) and isinstance(state.get("_extra_state"), dict):
        return state, ModelConfig(**state["_extra_state"])
    where = f"{str(source)!r} holding " if isinstance(source, (str, Path)) else ""
    raise ValueError(f"transfer source: got {where}{_describe(state)}; {_ACCEPTED}")


def _describe(value: Any) -> str:
    """A short name for what a transfer source was, for the one-line error."""
    if isinstance(value, Mapping):
        keys = sorted(map(str, value))
        more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
        return f"a {type(value).__name__} with keys {keys[:4]}{more}"
    return f"a {type(value).__name__}"


def transfer(source: Any, target_vocab_size: int, cfg: TransferConfig = TransferConfig()
             ) -> tuple[Transformer, TransferReport]:
    """Build a model for `target_vocab_size` tokens from a pre-pre-trained source.

    Args:
        source: a pre-pre-trained checkpoint (the layout lm.checkpoint defines:
            {"model": state_dict, "upstream": ...}), the path of one, or a
            Transformer.state_dict() (it carries its config).
        target_vocab_size: vocabulary of the target stage (the text tokenizer's).
        cfg: re-initialise / freeze options.

    Returns:
        The target model (on the CPU) and the report of what was copied, re-initialised, frozen.

    Raises:
        ValueError: a source of another shape, missing or unexpected tensors, shape mismatches,
            a layer range beyond the model's blocks.
    """
    state, src_cfg = _unpack(source)
    for name in ("reinit_layers", "freeze_layers"):
        rng = getattr(cfg, name)
        if rng is not None and rng[1] > src_cfg.n_layer:
            raise ValueError(f"TransferConfig.{name}={rng}: the model has {src_cfg.n_layer} "
                             "blocks")
    target_cfg = dataclasses.replace(src_cfg, vocab_size=target_vocab_size)
    model = Transformer(target_cfg, generator=torch.Generator().manual_seed(cfg.seed))
    init_new_embeddings(model, cfg.embed_init, cfg.seed, cfg.embed_std)
    params = dict(model.named_parameters())
    tensors = {k for k in state if k != "_extra_state"}
    missing, unexpected = sorted(set(params) - tensors), sorted(tensors - set(params))
    if missing or unexpected:
        raise ValueError(f"source state dict does not fit: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    copied, fresh, frozen = [], [], []
    with torch.no_grad():
        for name, p in params.items():
            group, _ = _group(name)
            if group in ("embedding", "head") or _selected(name, cfg.reinit, cfg.reinit_layers):
                fresh.append(name)
            else:
                if tuple(state[name].shape) != tuple(p.shape):
                    raise ValueError(f"{name}: source shape {tuple(state[name].shape)} != "
                                     f"target shape {tuple(p.shape)}")
                p.copy_(state[name])
                if cfg.out_scale != 1.0 and name.endswith(_OUTPUT_PROJECTIONS):
                    p.mul_(cfg.out_scale)
                copied.append(name)
            if _selected(name, cfg.freeze, cfg.freeze_layers):
                p.requires_grad_(False)
                frozen.append(name)
    return model, TransferReport(copied=tuple(copied), reinitialized=tuple(fresh),
                                 frozen=tuple(frozen))
