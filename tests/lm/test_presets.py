from __future__ import annotations

import pytest

from lm.presets import PRESETS, get_preset


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        get_preset("huge")
    assert "'huge'" in str(err.value)
    for name in ("tiny", "cpu-proxy", "gpu-proxy", "paper-1.6b"):
        assert name in str(err.value)


def test_sizes_are_as_documented():
    assert 90e6 < PRESETS["gpu-proxy"].num_params(257) < 130e6
    paper = PRESETS["paper-1.6b"]
    assert (paper.n_layer, paper.n_embd, paper.n_head) == (24, 2048, 32)
    assert 1.55e9 < paper.num_params(0) < 1.65e9


def test_train_config_defaults_and_overrides():
    p = get_preset("cpu-proxy")
    cfg = p.train_config("domain", seq_len=p.seq_len, seed=3)
    assert cfg.total_tokens == p.domain_tokens and cfg.seed == 3 and cfg.lr == p.lr
    assert cfg.batch_size * cfg.grad_accum * (p.seq_len - 1) <= p.batch_tokens
    nca = p.train_config("nca", seq_len=305, seed=0, total_tokens=1000, lr=0.5)
    assert (nca.total_tokens, nca.lr) == (1000, 0.5)
    assert nca.eval_every_tokens == 1000 // p.evals_per_stage
    with pytest.raises(ValueError, match="not TrainConfig fields"):
        p.train_config("nca", seq_len=305, seed=0, learning_rate=1.0)
    with pytest.raises(ValueError, match="not a stage"):
        p.train_config("upstream", seq_len=305, seed=0)
