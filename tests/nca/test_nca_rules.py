"""Fidelity of the rule network: layout, channel-wrap padding, initialisation, fused form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nca.config import NCAConfig
from nca.rollout import _Stepper, initial_states, make_generator
from nca.rules import RuleParams, fused_table, reference_logits, sample_rules


def test_layer_shapes_and_fan_in_scaling() -> None:
    n, r = 10, 256
    p = sample_rules(n, seed=0, ids=np.arange(r))
    assert p.w1.shape == (r, 4, n + 2, 3, 3)  # the 3x3 conv sees n + 2 channels
    assert p.w2.shape == (r, 16, 4) and p.w3.shape == (r, n, 16)
    for w, fan_in in ((p.w1, 9 * (n + 2)), (p.w2, 4), (p.w3, 16)):
        scale = math.sqrt(1 / fan_in)
        z = (w / scale).flatten().double()
        # truncated at +-2 standard deviations of the untruncated normal (2 / 0.8796 in units of
        # the final std), rescaled so the std is exactly sqrt(1 / fan_in)
        assert z.abs().max() <= 2 / 0.87962566103423978 + 1e-5
        se = 1 / math.sqrt(len(z))
        assert abs(z.std().item() - 1) < 6 * se and abs(z.mean().item()) < 6 * se
        # a truncated normal has fewer extreme values than a normal: P(|z| > 1.76) ~ 3.2%
        tail = (z.abs() > 0.9 * 2 / 0.87962566103423978).double().mean().item()
        assert 0.02 < tail < 0.045


def test_rules_are_addressed_by_id() -> None:
    a = sample_rules(10, 3, [5, 7, 9])
    b = sample_rules(10, 3, [9, 5])
    torch.testing.assert_close(a.w1[2], b.w1[0], rtol=0, atol=0)
    torch.testing.assert_close(a.w3[0], b.w3[1], rtol=0, atol=0)
    c = sample_rules(10, 4, [5])
    assert not torch.equal(a.w1[0], c.w1[0])


def test_channel_axis_is_wrap_padded() -> None:
    """Padded channel 0 holds state n-1 and padded channel n+1 holds state 0 (jnp.pad 'wrap')."""
    n = 5
    w1 = torch.zeros(1, 4, n + 2, 3, 3)
    w1[0, 0, 0, 1, 1] = 1.0  # centre tap of padded channel 0 -> hidden unit 0
    w1[0, 1, n + 1, 1, 1] = 1.0  # centre tap of padded channel n+1 -> hidden unit 1
    w2 = torch.zeros(1, 16, 4)
    w2[0, 0, 0] = w2[0, 1, 1] = 1.0
    w3 = torch.zeros(1, n, 16)
    w3[0, 0, 0] = 1.0  # logit 0 reads padded channel 0
    w3[0, 1, 1] = 1.0  # logit 1 reads padded channel n+1
    params = RuleParams(w1, w2, w3)
    for state, expect in ((n - 1, (1.0, 0.0)), (0, (0.0, 1.0)), (2, (0.0, 0.0))):
        grid = torch.full((1, 4, 4), state)
        logits = reference_logits(params, grid)[0, :2, 0, 0]
        assert logits.tolist() == list(expect)
        fast = _Stepper(params, torch.zeros(1, dtype=torch.long), NCAConfig(alphabet=n, grid=4))
        assert fast.logits(grid.int()).view(n, 16)[:2, 0].tolist() == list(expect)


@pytest.mark.parametrize("n", [2, 4, 10, 15])
def test_fused_network_matches_reference(n: int) -> None:
    cfg = NCAConfig(alphabet=n)
    params = sample_rules(n, seed=1, ids=np.arange(16))
    states = initial_states(16, cfg, make_generator(0))
    ref = reference_logits(params, states)
    fast = _Stepper(params, torch.arange(16), cfg).logits(states).view(16, n, 12, 12)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    assert fused_table(params).shape == (16, 9, n, 16)


def test_spatial_wrap_is_periodic() -> None:
    cfg = NCAConfig()
    params = sample_rules(10, seed=2, ids=[0])
    states = initial_states(1, cfg, make_generator(1))
    shifted = torch.roll(states, shifts=(3, -5), dims=(1, 2))
    a = reference_logits(params, states)
    b = reference_logits(params, shifted)
    torch.testing.assert_close(torch.roll(a, shifts=(3, -5), dims=(2, 3)), b)
