from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lm.corpora import load_domain
from lm.presets import build_model, get_preset
from lm.trainer import (
    DivergenceError,
    TrainConfig,
    TrainingInterrupted,
    _lr_at,
    batch_indices,
    evaluate,
    resolve_autocast,
    train,
)

from .conftest import tiny_model


def _cfg(**overrides) -> TrainConfig:
    fields = {"total_tokens": 32 * 8 * 12, "batch_size": 8, "lr": 3e-3,
              "eval_every_tokens": 32 * 8 * 4, "eval_sequences": 16, "seed": 0,
              "autocast": "off"}
    return TrainConfig(**{**fields, **overrides})


def test_loss_decreases_on_the_real_code_sample(shared_data, tmp_path):
    preset = get_preset("tiny")
    corpus = load_domain("code", source=str(shared_data / "code"), cache_dir=tmp_path,
                         seq_len=preset.seq_len)
    cfg = preset.train_config("domain", seq_len=preset.seq_len, seed=0, total_tokens=40_000,
                              autocast="off")
    result = train(build_model(preset, corpus.vocab_size), corpus.train, corpus.val, cfg)
    (t0, first), (t_end, last) = result.curve[0], result.curve[-1]
    assert t0 == 0 and abs(first - math.log(257)) < 0.3  # starts near uniform guessing
    assert t_end == result.tokens_seen >= 39_000
    assert last < first - 1.5, result.curve  # bytes of Python: well below ln(257) = 5.55
    assert len(result.curve) == preset.evals_per_stage + 1


def test_resume_retraces_an_uninterrupted_run_bit_for_bit(counting, tmp_path):
    train_ds, val_ds = counting
    cfg = _cfg()
    reference = train(tiny_model(), train_ds, val_ds, cfg)
    path, polls = tmp_path / "run.pt", iter(range(100))
    with pytest.raises(TrainingInterrupted) as err:
        train(tiny_model(), train_ds, val_ds, cfg, checkpoint_path=path,
              should_stop=lambda: next(polls) == 6)
    assert err.value.step == 7 and err.value.checkpoint_path == path
    resumed = train(tiny_model(), train_ds, val_ds, cfg, checkpoint_path=path,
                    checkpoint_every_tokens=256)
    assert resumed.resumed_from_step == 7
    assert resumed.curve == reference.curve
    assert resumed.final_train_loss == reference.final_train_loss
    again = train(tiny_model(), train_ds, val_ds, cfg, checkpoint_path=path)  # finished run
    assert again.curve == reference.curve and again.steps == reference.steps
    # no temp files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt", "run.pt.sha256"]


def test_checkpoint_of_another_run_is_refused(counting, tmp_path):
    train_ds, val_ds = counting
    path = tmp_path / "run.pt"
    train(tiny_model(), train_ds, val_ds, _cfg(total_tokens=512), checkpoint_path=path)
    with pytest.raises(ValueError, match="another run.*lr"):
        train(tiny_model(), train_ds, val_ds, _cfg(total_tokens=512, lr=1e-3),
              checkpoint_path=path)


def test_nan_loss_raises_divergence_with_step_and_value(counting):
    train_ds, val_ds = counting
    model = tiny_model()
    with torch.no_grad():
        model.blocks[0].mlp.down.weight[0, 0] = float("nan")
    with pytest.raises(DivergenceError) as err:
        train(model, train_ds, val_ds, _cfg())
    assert err.value.step == 0 and math.isnan(err.value.value)


def test_exploding_loss_raises_divergence(counting):
    train_ds, val_ds = counting
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.mul_(2000.0)  # confident and wrong: loss >> 3 ln(V)
    with pytest.raises(DivergenceError, match="train loss") as err:
        train(model, train_ds, val_ds, _cfg())
    assert err.value.value > 3 * math.log(64)


def test_callback_sees_every_evaluation_and_its_exception_propagates(counting):
    train_ds, val_ds = counting
    seen = []
    train(tiny_model(), train_ds, val_ds, _cfg(), callback=lambda t, v: seen.append(t))
    assert seen == [0, 1024, 2048, 3072]

    class Pruned(Exception):
        pass

    def prune(tokens, loss):
        if tokens > 0:
            raise Pruned

    with pytest.raises(Pruned):
        train(tiny_model(), train_ds, val_ds, _cfg(), callback=prune)


def test_frozen_parameters_do_not_move(counting):
    train_ds, val_ds = counting
    model = tiny_model()
    frozen = model.blocks[0].attn.qkv.weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    train(model, train_ds, val_ds, _cfg(total_tokens=1024))
    assert torch.equal(frozen, before)


def test_gradient_accumulation_matches_a_big_batch(counting):
    train_ds, val_ds = counting
    big = train(tiny_model(), train_ds, val_ds, _cfg(batch_size=8, total_tokens=1024))
    acc = train(tiny_model(), train_ds, val_ds, _cfg(batch_size=4, grad_accum=2,
                                                     total_tokens=1024))
    assert big.steps == acc.steps == 4
    assert abs(big.final_val_loss - acc.final_val_loss) < 1e-4


def test_batches_are_a_function_of_seed_and_position():
    a = batch_indices(10, 7, seed=1, start=5)
    assert np.array_equal(a, batch_indices(10, 7, seed=1, start=5))
    epoch = np.concatenate([batch_indices(10, 5, seed=1, start=s) for s in (0, 5)])
    assert sorted(epoch) == list(range(10))  # one epoch visits every sequence once
    assert not np.array_equal(epoch, batch_indices(10, 10, seed=2, start=0))
    assert np.array_equal(batch_indices(10, 25, seed=1, start=0)[:10], epoch)


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = _cfg(lr=1.0, warmup_frac=0.1, min_lr_ratio=0.1)
    lrs = [_lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_evaluate_is_deterministic_and_uses_the_mask(counting):
    _, val_ds = counting
    model = tiny_model()
    assert evaluate(model, val_ds) == evaluate(model, val_ds)
    val_ds.loss_mask[: val_ds.seq_len // 2] = False  # score only the second half
    assert evaluate(model, val_ds) != evaluate(model, val_ds, n_sequences=1)


@pytest.mark.parametrize("field,value", [("total_tokens", 0), ("lr", 0.0), ("warmup_frac", 1.0),
                                         ("autocast", "fp16"), ("eval_sequences", 0)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        _cfg(**{field: value})


def test_datasets_that_do_not_fit_the_model_are_refused(counting):
    train_ds, val_ds = counting
    with pytest.raises(ValueError, match="vocab_size"):
        train(tiny_model(vocab_size=32), train_ds, val_ds, _cfg())


def test_auto_precision_is_bf16_only_where_it_is_faster(monkeypatch):
    import lm.batches

    assert resolve_autocast("off", "cpu") is None
    assert resolve_autocast("bf16", "cpu") is torch.bfloat16
    monkeypatch.setattr(lm.batches, "_cpu_has_amx_bf16", lambda: False)
    assert resolve_autocast("auto", "cpu") is None
    monkeypatch.setattr(lm.batches, "_cpu_has_amx_bf16", lambda: True)
    assert resolve_autocast("auto", "cpu") is torch.bfloat16
