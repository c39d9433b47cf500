"""Random NCA rules: the paper's network, its initialisation, and a fused form for fast rollout.

A rule is a random network (after SakanaAI/asal, as in the paper's `utils/nca.py`): the one-hot
state (H, W, n) is wrap-padded by 1 on **both spatial axes and the channel axis** (so the first
conv sees n+2 channels, `[s_{n-1}, s_0..s_{n-1}, s_0]`), then a 3x3 valid conv to 4 channels, a
1x1 conv to 16, ReLU, and a 1x1 conv to n logits. Kernels follow flax's default `lecun_normal`:
a normal truncated at +-2 and rescaled so the std is sqrt(1 / fan_in), fan_in = 9(n+2), 4, 16;
biases start at zero and rules are never trained, so they are left out.

Rule `i` of a stream `seed` is drawn from its own generator, so any rule can be rebuilt from its
id alone: a rule bank stores ids and scores, not weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nca._util import derive_seed

HIDDEN_1 = 4
"""Channels of the 3x3 conv."""
HIDDEN_2 = 16
"""Channels of the first 1x1 conv."""
_TRUNC = 2.0
_TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2] (flax's constant)


@dataclass(frozen=True, slots=True)
class RuleParams:
    """Weights of R rules (torch conv layout).

    Attributes:
        w1: (R, 4, n+2, 3, 3) the 3x3 conv over the channel-padded one-hot state.
        w2: (R, 16, 4) the first 1x1 conv.
        w3: (R, n, 16) the last 1x1 conv (logits).
    """

    w1: torch.Tensor
    w2: torch.Tensor
    w3: torch.Tensor

    def __len__(self) -> int:
        return self.w1.shape[0]

    @property
    def alphabet(self) -> int:
        """Number of cell states n."""
        return self.w3.shape[1]

    def to(self, device: torch.device | str) -> RuleParams:
        """The same weights on `device`."""
        return RuleParams(self.w1.to(device), self.w2.to(device), self.w3.to(device))

    def select(self, index: torch.Tensor) -> RuleParams:
        """Rules at `index` (a 1-D integer tensor)."""
        return RuleParams(self.w1[index], self.w2[index], self.w3[index])


def _layer_sizes(alphabet: int) -> tuple[tuple[int, int], ...]:
    """(number of weights, fan_in) per layer."""
    c_in = alphabet + 2
    return (
        (HIDDEN_1 * c_in * 9, 9 * c_in),
        (HIDDEN_2 * HIDDEN_1, HIDDEN_1),
        (alphabet * HIDDEN_2, HIDDEN_2),
    )


def rule_seed(alphabet: int, seed: int, rule_id: int) -> int:
    """32-bit generator seed of rule `rule_id` in stream `seed` (distinct ids, distinct seeds)."""
    return (derive_seed("rule", alphabet, seed) + rule_id) % 2**32


def sample_rules(alphabet: int, seed: int, ids: np.ndarray | list[int]) -> RuleParams:
    """Weights of rules `ids` of stream `seed`, on CPU (the same on every machine).

    Args:
        alphabet: number of cell states n.
        seed: stream seed.
        ids: rule ids (non-negative integers).

    Returns:
        RuleParams with len(ids) rules in the order of `ids`.
    """
    ids = np.asarray(ids, dtype=np.int64)
    sizes = _layer_sizes(alphabet)
    n_weights = sum(size for size, _ in sizes)
    uniform = torch.empty(len(ids), n_weights)
    gen = torch.Generator()
    for row, rule_id in enumerate(ids.tolist()):
        gen.manual_seed(rule_seed(alphabet, seed, rule_id))
        torch.rand(n_weights, generator=gen, out=uniform[row])
    normal = _truncated_normal(uniform)
    parts = torch.split(normal, [size for size, _ in sizes], dim=1)
    w1, w2, w3 = (p * (math.sqrt(1.0 / fan_in) / _TRUNC_STD)
                  for p, (_, fan_in) in zip(parts, sizes, strict=True))
    r = len(ids)
    return RuleParams(
        w1.reshape(r, HIDDEN_1, alphabet + 2, 3, 3).contiguous(),
        w2.reshape(r, HIDDEN_2, HIDDEN_1).contiguous(),
        w3.reshape(r, alphabet, HIDDEN_2).contiguous(),
    )


def _truncated_normal(uniform: torch.Tensor) -> torch.Tensor:
    """Standard normal truncated to [-2, 2] by the inverse CDF of uniforms in [0, 1)."""
    lo = 0.5 * math.erfc(_TRUNC / math.sqrt(2.0))  # Phi(-2)
    x = torch.special.ndtri(uniform.mul_(1.0 - 2.0 * lo).add_(lo))
    return x.clamp_(-_TRUNC, _TRUNC)


def reference_logits(params: RuleParams, states: torch.Tensor) -> torch.Tensor:
    """Logits computed literally as the paper's network does (slow; for tests and checks).

    Args:
        params: weights of B rules.
        states: (B, H, W) integer states, simulation b run by rule b.

    Returns:
        (B, n, H, W) float32 logits.
    """
    b, h, w = states.shape
    n = params.alphabet
    x = F.one_hot(states.long(), n).float()  # (B, H, W, n)
    x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)  # channel wrap: (B, H, W, n+2)
    x = x.permute(0, 3, 1, 2)  # (B, n+2, H, W)
    x = F.pad(x, (1, 1, 1, 1), mode="circular")  # spatial wrap: (B, n+2, H+2, W+2)
    y = F.conv2d(x.reshape(1, b * (n + 2), h + 2, w + 2),
                 params.w1.reshape(b * HIDDEN_1, n + 2, 3, 3), groups=b).reshape(b, HIDDEN_1, h, w)
    y = torch.einsum("bkc,bchw->bkhw", params.w2, y).relu()
    return torch.einsum("bnk,bkhw->bnhw", params.w3, y)


def fused_table(params: RuleParams) -> torch.Tensor:
    """Per-rule lookup table of the network up to the ReLU.

    With a one-hot input the 3x3 conv is a sum over the 9 neighbours of a per-(offset, state)
    vector, and the 1x1 conv before the ReLU is linear, so both fold into one table:
    pre_relu(cell) = sum_p table[p, state(neighbour p)].

    Returns:
        (R, 9, n, 16) float32, p = 3*dy + dx over the offsets (dy - 1, dx - 1).
    """
    r, _, c_in, _, _ = params.w1.shape
    n = c_in - 2
    w = params.w1.permute(0, 3, 4, 2, 1).reshape(r, 9, c_in, HIDDEN_1)  # (R, 9, n+2, 4)
    embed = w[:, :, 1 : n + 1].clone()  # padded channel c+1 is state c
    embed[:, :, n - 1] += w[:, :, 0]  # padded channel 0 wraps to state n-1
    embed[:, :, 0] += w[:, :, n + 1]  # padded channel n+1 wraps to state 0
    return torch.einsum("rpsc,rkc->rpsk", embed, params.w2).contiguous()
