"""Fixtures of the lm tests: tiny models and small token datasets made in memory."""

from __future__ import annotations

import numpy as np
import pytest

from lm.data import TokenArrayDataset
from lm.model import ModelConfig, Transformer


def tiny_config(vocab_size: int = 64, **overrides) -> ModelConfig:
    fields = {"vocab_size": vocab_size, "n_layer": 2, "n_embd": 32, "n_head": 2, "mlp_hidden": 64,
                  "max_seq_len": 128}
    return ModelConfig(**{**fields, **overrides})


def tiny_model(vocab_size: int = 64, seed: int = 0, **overrides) -> Transformer:
    import torch

    return Transformer(tiny_config(vocab_size, **overrides),
                       generator=torch.Generator().manual_seed(seed))


def counting_dataset(n: int, seq_len: int, vocab: int, seed: int) -> TokenArrayDataset:
    """Sequences that count up by one modulo `vocab` from a random start: easy to learn."""
    start = np.random.default_rng(seed).integers(0, vocab, size=(n, 1))
    return TokenArrayDataset((start + np.arange(seq_len)) % vocab, vocab)


@pytest.fixture
def counting() -> tuple[TokenArrayDataset, TokenArrayDataset]:
    return counting_dataset(256, 33, 64, seed=0), counting_dataset(32, 33, 64, seed=1)
