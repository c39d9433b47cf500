"""Batched NCA simulation in torch: many rules and simulations advance in one op per step.

Sampling: a step draws `next = categorical((logits + identity_bias * onehot) / temperature)`.
At the paper's temperature (1e-4) that is the argmax almost everywhere, so each step takes the
argmax, and only cells where another class is within `TIE_WINDOW * temperature` of the maximum
(where a class other than the argmax has probability above exp(-TIE_WINDOW)) are resampled
exactly with the Gumbel-max trick, argmax(logits + temperature * Gumbel noise). That is the
same distribution as torch.multinomial up to events of probability < n * exp(-40) ~ 1e-16 per
cell, without drawing n random numbers for every cell at every step, and it stays exact at any
temperature (at high temperature every cell takes the Gumbel path). Randomness comes only from
the explicit generator: the same generator state gives the same frames bit for bit on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nca.config import NCAConfig
from nca.rules import HIDDEN_2, RuleParams, fused_table

TIE_WINDOW = 40.0
"""Cells whose runner-up logit is within TIE_WINDOW * temperature of the max are sampled exactly."""


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed` (use 32-bit seeds; see `derive_seed`)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def initial_states(n_sims: int, config: NCAConfig, generator: torch.Generator) -> torch.Tensor:
    """Initial grids: per simulation, logits ~ N(0, 1) over the states, cells i.i.d. from them.

    Returns:
        (n_sims, grid, grid) int32 states on the generator's device.
    """
    n, cells = config.alphabet, config.grid**2
    device = generator.device
    logits = torch.randn(n_sims, n, generator=generator, device=device)
    cdf = torch.softmax(logits, dim=1).cumsum_(dim=1)
    u = torch.rand(n_sims, cells, generator=generator, device=device)
    states = torch.searchsorted(cdf, u, right=True).clamp_(max=n - 1)
    return states.to(torch.int32).reshape(n_sims, config.grid, config.grid)


class _Stepper:
    """Precomputed per-simulation tables for one batch of simulations."""

    def __init__(self, params: RuleParams, rule_index: torch.Tensor, config: NCAConfig) -> None:
        n, g = config.alphabet, config.grid
        device = params.w1.device
        self.config = config
        self.table = fused_table(params).reshape(-1, HIDDEN_2)  # (R*9*n, 16)
        self.w3 = params.w3[rule_index]  # (B, n, 16)
        offsets = torch.arange(9, device=device) * n + rule_index.view(-1, 1) * (9 * n)  # (B, 9)
        self.offsets = offsets.to(torch.int32).view(-1, 1, 1, 9).expand(-1, g, g, 9).contiguous()
        # Packs "how many classes are near the max" (low 4 bits, n <= 15) and the argmax.
        code = torch.arange(n, device=device, dtype=torch.float32) * 16 + 1
        self.code = code.view(1, 1, n).expand(len(rule_index), 1, n)
        self.index = torch.empty_like(self.offsets)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """(B, n, H*W) logits of the next state of every cell."""
        b, g, _ = state.shape
        padded = torch.cat([state[:, -1:], state, state[:, :1]], dim=1)
        padded = torch.cat([padded[:, :, -1:], padded, padded[:, :, :1]], dim=2)  # (B, H+2, W+2)
        for p in range(9):
            dy, dx = divmod(p, 3)
            self.index[..., p] = padded[:, dy : dy + g, dx : dx + g]
        self.index.add_(self.offsets)
        hidden = F.embedding_bag(self.index.view(-1, 9), self.table, mode="sum").relu_()
        return torch.bmm(self.w3, hidden.view(b, g * g, HIDDEN_2).transpose(1, 2))

    def step(self, state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Advance every simulation by one step."""
        b, g, _ = state.shape
        cfg = self.config
        z = self.logits(state)  # (B, n, C)
        if cfg.identity_bias:
            bias = torch.full((b, 1, g * g), float(cfg.identity_bias), device=z.device)
            z.scatter_add_(1, state.view(b, 1, -1).long(), bias)
        window = TIE_WINDOW * cfg.temperature
        near_max = z >= z.amax(dim=1, keepdim=True) - window
        packed = torch.bmm(self.code, near_max.float()).view(b, -1).to(torch.int32)  # (B, C)
        nxt = packed >> 4
        ties = ((packed & 15) > 1).nonzero(as_tuple=True)
        if ties[0].numel():
            z_ties = z[ties[0], :, ties[1]]  # (M, n)
            u = torch.rand(z_ties.shape, generator=generator, device=z.device)
            gumbel = -torch.log(-torch.log(u))
            nxt[ties] = (z_ties + cfg.temperature * gumbel).argmax(dim=1).to(torch.int32)
        return nxt.view(b, g, g)


def rollout(
    params: RuleParams,
    config: NCAConfig,
    n_frames: int,
    generator: torch.Generator,
    rule_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Simulate a batch and record frames burn_in, burn_in + dt, ... (paper: 10, 11, ...).

    Args:
        params: weights of R rules, on the generator's device.
        config: generator settings (alphabet must match the weights).
        n_frames: frames to record per simulation.
        generator: the only source of randomness (initial states and tie sampling).
        rule_index: (B,) rule of each simulation; default one simulation per rule.

    Returns:
        (B, n_frames, grid, grid) uint8 states on the generator's device.

    Example:
        >>> from nca.rules import sample_rules
        >>> cfg = NCAConfig()
        >>> frames = rollout(sample_rules(10, 0, [0, 1]), cfg, 4, make_generator(0))
        >>> tuple(frames.shape)
        (2, 4, 12, 12)
    """
    if params.alphabet != config.alphabet:
        raise ValueError(f"rules have alphabet {params.alphabet}, config has {config.alphabet}")
    device = generator.device
    if rule_index is None:
        rule_index = torch.arange(len(params), device=device)
    stepper = _Stepper(params, rule_index.to(device), config)
    state = initial_states(len(rule_index), config, generator)
    frames = torch.empty((len(rule_index), n_frames) + state.shape[1:], dtype=torch.uint8,
                         device=device)
    last = config.burn_in + (n_frames - 1) * config.dt
    for t in range(last + 1):
        if t >= config.burn_in and (t - config.burn_in) % config.dt == 0:
            frames[:, (t - config.burn_in) // config.dt] = state
        if t < last:
            state = stepper.step(state, generator)
    return frames
