from __future__ import annotations

import dataclasses

import pytest
import torch

from lm.model import Transformer
from lm.presets import PRESETS, build_model

from .conftest import tiny_config, tiny_model


def test_future_tokens_never_change_past_logits():
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 64, (2, 40), generator=g)
    with torch.no_grad():
        ref = model(idx)
        for t in (0, 17, 38):
            changed = idx.clone()
            changed[:, t + 1:] = torch.randint(0, 64, changed[:, t + 1:].shape, generator=g)
            out = model(changed)
            torch.testing.assert_close(out[:, : t + 1], ref[:, : t + 1])
            assert not torch.allclose(out[:, t + 1:], ref[:, t + 1:])


def test_shapes_and_param_names_spell_the_transfer_groups():
    model = tiny_model(vocab_size=50)
    assert model(torch.zeros(3, 7, dtype=torch.long)).shape == (3, 7, 50)
    names = set(dict(model.named_parameters()))
    assert {"tok_emb.weight", "lm_head.weight", "norm_f.weight", "blocks.1.attn.qkv.weight",
            "blocks.1.attn.out.weight", "blocks.1.mlp.up.weight", "blocks.1.mlp.down.weight",
            "blocks.1.attn_norm.weight", "blocks.1.mlp_norm.weight"} <= names
    assert not any(n.endswith("bias") for n in names)


def test_init_is_a_function_of_the_generator_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = tiny_model(seed=3), tiny_model(seed=3), tiny_model(seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    for (n, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q)
        if not n.endswith("norm.weight") and n != "norm_f.weight":
            assert not torch.equal(p, r)


def test_state_dict_carries_its_config():
    model = tiny_model()
    sd = model.state_dict()
    assert sd["_extra_state"] == dataclasses.asdict(model.config)
    other = Transformer(tiny_config(n_head=4))
    with pytest.raises(ValueError, match="another model"):
        other.load_state_dict(sd)


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="max_seq_len"):
        tiny_model()(torch.zeros(1, 129, dtype=torch.long))


@pytest.mark.parametrize("field,value", [("n_layer", 0), ("n_head", 3), ("vocab_size", 1.5),
                                         ("n_embd", 34)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


@pytest.mark.parametrize("name", ["tiny", "cpu-proxy"])
def test_preset_param_count_matches_the_model(name):
    model = build_model(name, vocab_size=257)
    assert model.num_params(embedding=True) == PRESETS[name].num_params(257)
    assert model.num_params() == PRESETS[name].num_params(257, embedding=False)
