"""The transfer probe against a hand computation on a tiny model."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lm.probe import probe

from .conftest import counting_dataset, tiny_model


def _by_hand(model, tokens):
    x = torch.as_tensor(tokens[:, :-1])
    T = x.shape[1]
    h = model.tok_emb(x)
    for block in model.blocks:
        h = block(h, model.rope_cos[:T], model.rope_sin[:T])
    r = h.detach().reshape(-1, h.shape[-1]).double().numpy()  # (N, C)
    ids = x.reshape(-1).numpy()
    rms = np.sqrt((r ** 2).mean())
    share = (r.mean(0) ** 2).sum() / (r ** 2).sum(1).mean()
    total = ((r - r.mean(0)) ** 2).sum()
    within = sum(((r[ids == t] - r[ids == t].mean(0)) ** 2).sum() for t in np.unique(ids))
    logits = model.lm_head(model.norm_f(h))
    loss = F.cross_entropy(logits.flatten(0, 1), torch.as_tensor(tokens[:, 1:]).reshape(-1))
    model.zero_grad()
    loss.backward()
    emb = model.tok_emb.weight.grad.norm().item()
    blocks = torch.cat([p.grad.reshape(-1) for p in model.blocks.parameters()]).norm().item()
    model.zero_grad()
    return rms, share, 1 - within / total, emb, blocks, loss.item()


def test_probe_matches_a_hand_computation():
    model = tiny_model(vocab_size=64, seed=1)
    ds = counting_dataset(16, 33, 64, seed=0)
    got = probe(model, ds, n_sequences=4)
    tokens, _ = ds.get(np.arange(4))
    rms, share, r2, emb, blocks, loss = _by_hand(model, tokens)
    assert np.isclose(got.residual_rms, rms, rtol=1e-5)
    assert np.isclose(got.mean_direction_share, share, rtol=1e-4)
    assert np.isclose(got.token_r2, r2, rtol=1e-4)
    assert np.isclose(got.grad_norm_embedding, emb, rtol=1e-4)
    assert np.isclose(got.grad_norm_blocks, blocks, rtol=1e-4)
    assert np.isclose(got.loss, loss, rtol=1e-5)
    assert all(p.grad is None for p in model.parameters())  # nothing left behind


def test_a_constant_residual_is_all_mean_direction_and_explains_no_token():
    model = tiny_model(vocab_size=64, seed=1)
    with torch.no_grad():
        for block in model.blocks:  # blocks that write the same large vector everywhere
            block.mlp.down.weight.zero_()
            block.attn.out.weight.zero_()
        model.tok_emb.weight.zero_()
        model.tok_emb.weight[:, 0] = 5.0
    got = probe(model, counting_dataset(16, 33, 64, seed=0), n_sequences=4)
    assert np.isclose(got.mean_direction_share, 1.0) and got.token_r2 == 0.0
