"""The proxy language model: a Llama-style decoder-only transformer.

RMSNorm, rotary position embeddings, a SwiGLU MLP and causal scaled-dot-product attention, no
biases and no dropout. The input embedding (`tok_emb`) and the output head (`lm_head`) are
separate, so a model pre-pre-trained on one vocabulary (NCA tokens) can keep its blocks and get a
fresh embedding and head for another (text). Parameter names spell the transfer groups:

    _extra_state                       the ModelConfig as a dict (no tensor)
    tok_emb.weight                     input embedding      (V, C)
    blocks.{i}.attn_norm.weight        norm                 (C,)
    blocks.{i}.attn.qkv.weight         attention            (3C, C)
    blocks.{i}.attn.out.weight         attention            (C, C)
    blocks.{i}.mlp_norm.weight         norm                 (C,)
    blocks.{i}.mlp.up.weight           mlp (gate and up)    (2H, C)
    blocks.{i}.mlp.down.weight         mlp                  (C, H)
    norm_f.weight                      final norm           (C,)
    lm_head.weight                     output head          (V, C)

No I/O, optimiser or logging lives here (see lm.trainer).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModelConfig", "Transformer"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """Shape of a Transformer. Everything that changes the parameter tensors is here."""

    vocab_size: int
    """Tokens are in [0, vocab_size); sets the embedding and the head."""
    n_layer: int
    """Number of transformer blocks."""
    n_embd: int
    """Residual stream width C."""
    n_head: int
    """Attention heads; n_embd must be a multiple, with an even head size (RoPE)."""
    mlp_hidden: int
    """SwiGLU hidden width H (the paper's models use 4 * n_embd)."""
    max_seq_len: int = 4096
    """Longest input the rotary tables cover, in tokens (no parameters depend on it)."""
    rope_theta: float = 10_000.0
    """RoPE base frequency."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    init_std: float = 0.02
    """Std of the normal init; residual output projections get init_std / sqrt(2 * n_layer)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "mlp_hidden", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name}={value!r}: expected an integer >= 1")
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"ModelConfig.n_head={self.n_head}: n_embd={self.n_embd} must split into heads "
                "of an even size (RoPE rotates pairs)"
            )
        if not (self.rope_theta > 0 and self.norm_eps > 0 and self.init_std > 0):
            raise ValueError("ModelConfig.rope_theta, norm_eps and init_std must be > 0")

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.n_embd // self.n_head


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def _rope_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64) / half)  # (hs/2,)
    angles = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()  # (max_T, hs/2) each


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # rotate-half convention: channel j pairs with channel j + hs/2
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.out = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.out(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        # gate and up projections in one matmul: bigger GEMMs run closer to peak on CPU
        self.up = nn.Linear(cfg.n_embd, 2 * cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.up(x).chunk(2, dim=-1)  # (B, T, H) each
        return self.down(F.silu(gate) * up)  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        x = x + self.mlp(self.mlp_norm(x))
        return x


class Transformer(nn.Module):
    """Decoder-only language model.

    Args:
        config: the model's shape.
        generator: CPU generator for the initial weights; ``None`` uses a fresh generator seeded
            with 0, so construction never touches the global RNG.

    Example:
        >>> cfg = ModelConfig(vocab_size=257, n_layer=2, n_embd=32, n_head=2, mlp_hidden=128)
        >>> model = Transformer(cfg)
        >>> model(torch.zeros(1, 5, dtype=torch.long)).shape
        torch.Size([1, 5, 257])
    """

    rope_cos: torch.Tensor
    rope_sin: torch.Tensor

    def __init__(self, config: ModelConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        # build on the meta device, then allocate once and fill from `generator`
        with torch.device("meta"):
            self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
            self.norm_f = RMSNorm(config.n_embd, config.norm_eps)
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.to_empty(device="cpu")
        cos, sin = _rope_tables(config)
        # not persistent: state dicts hold parameters only, whatever max_seq_len is
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every parameter: normal(0, init_std) weights, residual projections scaled
        down by sqrt(2 * n_layer) (GPT-2), norms at one."""
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        for name, p in self.named_parameters():
            self.init_parameter(name, p, generator)

    @torch.no_grad()
    def init_parameter(self, name: str, p: torch.Tensor, generator: torch.Generator) -> None:
        """Initialise the parameter called `name` in place (used by lm.transfer too)."""
        cfg = self.config
        if name.endswith("norm.weight") or name == "norm_f.weight":
            p.fill_(1.0)
            return
        std = cfg.init_std
        if name.endswith(("attn.out.weight", "mlp.down.weight")):
            std = cfg.init_std / math.sqrt(2 * cfg.n_layer)
        fresh = torch.empty(p.shape, dtype=torch.float32)  # draw on CPU: same values anywhere
        fresh.normal_(0.0, std, generator=generator)
        p.copy_(fresh)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits.

        Args:
            idx: token ids, shape (B, T), T <= max_seq_len.

        Returns:
            logits, shape (B, T, vocab_size); position t sees tokens 0..t only.
        """
        T = idx.shape[1]
        if self.config.max_seq_len < T:
            raise ValueError(f"sequence of {T} tokens > max_seq_len={self.config.max_seq_len}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, hs/2)
        x = self.tok_emb(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin)  # (B, T, C)
        return self.lm_head(self.norm_f(x))  # (B, T, V)

    def get_extra_state(self) -> dict:
        """The config travels in state_dict() under `_extra_state`, so a bare state dict is
        enough to rebuild (or transfer) the model."""
        return dataclasses.asdict(self.config)

    def set_extra_state(self, state: dict) -> None:
        if state != dataclasses.asdict(self.config):
            raise ValueError(f"state dict is of another model: {state} != {self.config}")

    def num_params(self, *, embedding: bool = False) -> int:
        """Parameter count; without the input embedding unless `embedding` (a lookup, no FLOPs)."""
        n = sum(p.numel() for p in self.parameters())
        return n if embedding else n - self.tok_emb.weight.numel()
