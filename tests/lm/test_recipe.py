"""The recipes: the paper's init and schedules on the tensors and the lr curve; validation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lm.presets import get_preset
from lm.recipe import Recipe, get_recipe, init_new_embeddings
from lm.trainer import TrainConfig, _lr_at, train
from lm.transfer import TransferConfig, transfer

from .conftest import counting_dataset, tiny_model


def test_paper_recipe_draws_pytorch_module_defaults_for_embedding_and_head():
    model = tiny_model(vocab_size=4096)
    init_new_embeddings(model, "reference", seed=3)
    emb, head = model.tok_emb.weight.detach(), model.lm_head.weight.detach()
    assert abs(float(emb.std()) - 1.0) < 0.02 and abs(float(emb.mean())) < 0.02  # N(0, 1)
    bound = 1 / math.sqrt(32)  # nn.Linear: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in))
    assert float(head.abs().max()) <= bound and float(head.abs().max()) > 0.99 * bound
    assert abs(float(head.std()) - bound / math.sqrt(3)) < 0.01  # std of U(-b, b)
    reference = torch.nn.Embedding(4096, 32).weight.detach()  # the module the paper's code builds
    assert abs(float(reference.std()) - float(emb.std())) < 0.03


def test_the_new_embedding_is_the_same_in_the_nca_arm_and_in_scratch():
    source = tiny_model(vocab_size=50, seed=7)
    nca_arm, _ = transfer(source.state_dict(), 64, TransferConfig(seed=2, embed_init="reference"))
    scratch = tiny_model(vocab_size=64, seed=2)
    init_new_embeddings(scratch, "reference", seed=2)
    assert torch.equal(nca_arm.tok_emb.weight, scratch.tok_emb.weight)
    assert torch.equal(nca_arm.lm_head.weight, scratch.lm_head.weight)
    scaled, _ = transfer(source.state_dict(), 64, TransferConfig(seed=2, embed_init="scaled"))
    assert abs(float(scaled.tok_emb.weight.detach().std()) - 0.02) < 0.002  # the model's own init


def test_warmup_only_schedule_is_one_linear_ramp_ending_at_the_peak():
    cfg = TrainConfig(total_tokens=10, batch_size=1, lr=1e-3, eval_every_tokens=10,
                      schedule="warmup-only")
    lrs = [_lr_at(step, 10, cfg) for step in range(10)]
    assert lrs == pytest.approx([1e-4 * (i + 1) for i in range(10)])
    cosine = dataclasses.replace(cfg, schedule="cosine", warmup_frac=0.1, min_lr_ratio=0.0)
    assert _lr_at(9, 10, cosine) < 0.05e-3  # the other schedule anneals


def test_paper_nca_stage_trains_with_adam_at_half_the_code_lr_and_is_transferred_at_its_peak():
    preset = get_preset("tiny")
    recipe = get_recipe("paper", "code")
    cfg = preset.train_config("nca", seq_len=33, seed=0, total_tokens=32 * 8,
                              **recipe.nca_overrides(preset.lr))
    assert cfg.lr == pytest.approx(0.5 * preset.lr) and cfg.beta2 == 0.999
    assert cfg.weight_decay == 0.0 and cfg.schedule == "warmup-only"
    model = tiny_model()
    seen = []
    opt_lrs = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        opt_lrs.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy  # type: ignore[method-assign]
    try:
        train(model, counting_dataset(64, 33, 64, 0), counting_dataset(8, 33, 64, 1),
              dataclasses.replace(cfg, batch_size=1, grad_accum=1, eval_every_tokens=10_000),
              callback=lambda t, v: seen.append(t))
    finally:
        torch.optim.AdamW.step = original  # type: ignore[method-assign]
    n = len(opt_lrs)
    assert opt_lrs == pytest.approx([cfg.lr * (i + 1) / n for i in range(n)])
    assert opt_lrs[-1] == pytest.approx(cfg.lr)  # the transferred weights saw the peak lr


def test_paper_downstream_recipes_by_domain_and_the_proxy_recipe():
    code, web = get_recipe("paper", "code"), get_recipe("paper", "web")
    assert (code.warmup_frac, code.weight_decay, code.min_lr_ratio, code.nca_lr_ratio) == (
        0.03, 0.0, 0.0, 0.5)
    assert (web.warmup_frac, web.weight_decay, web.nca_lr_ratio) == (0.1, 1e-4, 0.2)
    assert get_recipe("paper", "math") == web
    proxy = get_recipe("proxy", "code")
    preset = get_preset("cpu-proxy")  # the proxy recipe is the presets' original defaults
    assert (proxy.warmup_frac, proxy.min_lr_ratio, proxy.weight_decay) == (
        preset.warmup_frac, preset.min_lr_ratio, preset.weight_decay)
    assert proxy.embed_init == "scaled" and proxy.nca_lr_ratio == preset.nca_lr / preset.lr


@pytest.mark.parametrize("kwargs, needle", [
    ({"embed_init": "xavier"}, "reference, scaled"),
    ({"nca_schedule": "linear"}, "warmup-only, cosine"),
    ({"nca_lr_ratio": float("nan")}, "nca_lr_ratio"),
    ({"warmup_frac": 1.0}, "warmup_frac"),
])
def test_bad_recipe_fields_name_the_value_and_what_is_accepted(kwargs, needle):
    base = dataclasses.asdict(get_recipe("paper", "code"))
    with pytest.raises(ValueError, match=needle):
        Recipe(**{**base, **kwargs})


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ValueError, match="paper, proxy"):
        get_recipe("mine", "code")
    assert get_recipe("paper", "code").replace(warmup_frac=0.2).name == "paper+"


@pytest.mark.parametrize("embed_std", [0.02, 0.14, 1.0])
def test_a_continuous_embedding_scale_runs_between_the_two_named_points(embed_std):
    """embed_std draws the embedding N(0, embed_std) and the head on the log-linear path from
    scaled's 0.02 to reference's 1/sqrt(3C); the same tensors in the NCA arm and in scratch."""
    from lm.recipe import head_std

    width = 32
    model = tiny_model(vocab_size=4096)
    init_new_embeddings(model, "reference", seed=5, embed_std=embed_std)
    emb, head = model.tok_emb.weight.detach(), model.lm_head.weight.detach()
    assert abs(float(emb.std()) / embed_std - 1) < 0.03
    assert abs(float(head.std()) / head_std(embed_std, 0.02, width) - 1) < 0.03
    assert head_std(0.02, 0.02, width) == pytest.approx(0.02)  # scaled's head
    assert head_std(1.0, 0.02, width) == pytest.approx(1 / math.sqrt(3 * width))  # reference's
    source = tiny_model(vocab_size=50, seed=7)
    nca_arm, _ = transfer(source.state_dict(), 4096, TransferConfig(seed=5, embed_std=embed_std))
    assert torch.equal(nca_arm.tok_emb.weight, model.tok_emb.weight)
    assert torch.equal(nca_arm.lm_head.weight, model.lm_head.weight)
