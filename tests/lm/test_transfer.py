from __future__ import annotations

import pytest
import torch

from lm.checkpoint import save_checkpoint, save_pretrained
from lm.transfer import TransferConfig, transfer

from .conftest import tiny_model

BLOCK_TENSORS = ("attn_norm.weight", "attn.qkv.weight", "attn.out.weight", "mlp_norm.weight",
                 "mlp.up.weight", "mlp.down.weight")


def _names(layers=(0, 1), parts=BLOCK_TENSORS):
    return {f"blocks.{i}.{p}" for i in layers for p in parts}


def test_default_copies_everything_but_embedding_and_head():
    source = tiny_model(vocab_size=10002 % 97 + 50)
    model, report = transfer(source.state_dict(), 257)
    assert model.config.vocab_size == 257 and model.lm_head.weight.shape == (257, 32)
    assert set(report.reinitialized) == {"tok_emb.weight", "lm_head.weight"}
    assert set(report.copied) == _names() | {"norm_f.weight"}
    assert report.frozen == ()
    src = dict(source.named_parameters())
    for name, p in model.named_parameters():
        assert p.requires_grad
        if name in report.copied:
            assert torch.equal(p, src[name])
    assert len(report.copied) + len(report.reinitialized) == len(list(model.parameters()))


def test_reinit_and_freeze_by_group_and_layer_range():
    source = tiny_model()
    cfg = TransferConfig(reinit=("attention",), reinit_layers=(1, 2), freeze=("mlp", "norm"))
    model, report = transfer(source.state_dict(), 100, cfg)
    attn1 = {"blocks.1.attn.qkv.weight", "blocks.1.attn.out.weight"}
    assert set(report.reinitialized) == {"tok_emb.weight", "lm_head.weight"} | attn1
    assert set(report.copied) == (_names() | {"norm_f.weight"}) - attn1
    frozen = _names(parts=("mlp.up.weight", "mlp.down.weight", "attn_norm.weight",
                           "mlp_norm.weight")) | {"norm_f.weight"}
    assert set(report.frozen) == frozen
    for name, p in model.named_parameters():
        assert p.requires_grad == (name not in frozen)
    assert not torch.equal(model.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)
    assert torch.equal(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_norm_group_with_a_layer_range_leaves_the_final_norm():
    _, report = transfer(tiny_model().state_dict(), 100,
                         TransferConfig(reinit=("norm",), reinit_layers=(0, 1)))
    assert set(report.reinitialized) == {"tok_emb.weight", "lm_head.weight",
                                         "blocks.0.attn_norm.weight", "blocks.0.mlp_norm.weight"}


def test_sources_accepted(tmp_path):
    source = tiny_model()
    sd = source.state_dict()
    path = save_pretrained(tmp_path / "ppt.pt", source, {"learned": True})
    for src in (sd, {"model": sd, "upstream": {}}, path, str(path)):
        model, _report = transfer(src, 80)
        assert torch.equal(model.blocks[1].mlp.up.weight, source.blocks[1].mlp.up.weight)


def test_any_other_source_is_refused_in_one_line_naming_it(tmp_path):
    sd = tiny_model().state_dict()
    bare = {k: v for k, v in sd.items() if k != "_extra_state"}
    trainer_state = {"model": sd, "model_config": {}, "optimizer": {}}
    save_checkpoint(tmp_path / "run.pt", trainer_state)
    for src, got in ((tiny_model(), "got a Transformer"), (bare, "'blocks.0.attn.out.weight'"),
                     (trainer_state, "'model_config'"),
                     (tmp_path / "run.pt", f"got {str(tmp_path / 'run.pt')!r} holding a dict")):
        with pytest.raises(ValueError, match="transfer source") as err:
            transfer(src, 80)
        message = str(err.value)
        assert got in message and "accepted: a pre-pre-trained checkpoint" in message
        assert "\n" not in message


def test_shape_mismatch_and_missing_tensors_are_reported():
    sd = tiny_model().state_dict()
    wrong = dict(sd, **{"blocks.0.mlp.down.weight": torch.zeros(32, 65)})
    with pytest.raises(ValueError, match=r"blocks.0.mlp.down.weight: source shape \(32, 65\)"):
        transfer(wrong, 80)
    missing = {k: v for k, v in sd.items() if k != "blocks.1.attn.out.weight"}
    with pytest.raises(ValueError, match="missing.*blocks.1.attn.out.weight"):
        transfer(missing, 80)


@pytest.mark.parametrize("kwargs,match", [
    ({"reinit": ("attn",)}, "reinit"), ({"freeze": ["mlp"]}, "freeze"),
    ({"reinit_layers": (2, 1)}, "reinit_layers"), ({"freeze_layers": (0,)}, "freeze_layers")])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransferConfig(**kwargs)


def test_layer_range_beyond_the_model_is_refused():
    with pytest.raises(ValueError, match="has 2 blocks"):
        transfer(tiny_model().state_dict(), 80,
                 TransferConfig(freeze=("mlp",), freeze_layers=(1, 3)))


def test_out_scale_shrinks_only_the_copied_output_projections():
    source = tiny_model()
    model, _ = transfer(source.state_dict(), 257, TransferConfig(out_scale=0.25))
    src = dict(source.named_parameters())
    for name, p in model.named_parameters():
        if name.endswith(("attn.out.weight", "mlp.down.weight")):
            assert torch.allclose(p, 0.25 * src[name])
        elif name not in ("tok_emb.weight", "lm_head.weight"):
            assert torch.equal(p, src[name])
    with pytest.raises(ValueError, match="out_scale"):
        TransferConfig(out_scale=0.0)
