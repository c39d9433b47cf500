"""Why a transferred model starts where it starts: its residual stream and gradients at step 0.

A pre-pre-trained model whose copied blocks write a large, nearly constant vector into the
residual stream drowns its new embedding: the stream no longer says which token is where, and
the gradients reaching the embedding shrink. `probe` measures exactly that on one batch, for
any model (the NCA arm after transfer, or its scratch twin):

- residual RMS after the last block (the input of the final norm);
- the share of the residual's second moment in the one direction common to all positions,
  ||mean_n x_n||^2 / mean_n ||x_n||^2 (1 = every position carries the same vector);
- R^2 of the residual on the current token's identity: 1 - within-token / total sum of
  squares (how much of the stream is explained by which token sits there);
- the gradient norms of the input embedding and of all blocks for that batch's loss.

Nothing is trained: gradients are computed and then cleared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lm.batches import IGNORE, to_device_xy
from lm.data import SequenceDataset
from lm.model import Transformer

__all__ = ["ResidualProbe", "probe"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ResidualProbe:
    """A model's residual stream and gradients on one batch, before any training."""

    residual_rms: float
    """Root mean square of the residual after the last block."""
    mean_direction_share: float
    """||mean residual||^2 / mean ||residual||^2, in [0, 1]."""
    token_r2: float
    """Fraction of the residual's variance explained by the current token's identity."""
    grad_norm_embedding: float
    """Gradient norm of the input embedding."""
    grad_norm_blocks: float
    """Gradient norm of all transformer blocks together."""
    loss: float
    """The batch's loss (nats/token)."""

    def as_dict(self) -> dict[str, float]:
        """JSON-friendly form."""
        return {"residual_rms": self.residual_rms,
                "mean_direction_share": self.mean_direction_share, "token_r2": self.token_r2,
                "grad_norm_embedding": self.grad_norm_embedding,
                "grad_norm_blocks": self.grad_norm_blocks, "loss": self.loss}


def probe(model: Transformer, ds: SequenceDataset, *, n_sequences: int = 8,
          device: torch.device | str = "cpu") -> ResidualProbe:
    """Probe ``model`` on the first ``n_sequences`` sequences of ``ds`` (fp32, no autocast)."""
    device = torch.device(device)
    n = min(n_sequences, len(ds))
    tokens, mask = ds.get(np.arange(n))
    x, y = to_device_xy(tokens, mask, device)
    captured: list[torch.Tensor] = []
    hook = model.norm_f.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    was_training = model.training
    model.to(device).train()
    try:
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE)
        model.zero_grad(set_to_none=True)
        loss.backward()
        grads = _grad_norms(model)
    finally:
        hook.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    residual = captured[0].detach().float().flatten(0, 1)  # (B*T, C)
    rms, share, r2 = _residual_stats(residual, x.flatten())
    return ResidualProbe(residual_rms=rms, mean_direction_share=share, token_r2=r2,
                         grad_norm_embedding=grads[0], grad_norm_blocks=grads[1],
                         loss=float(loss.detach()))


def _grad_norms(model: Transformer) -> tuple[float, float]:
    def norm(params: list[torch.Tensor]) -> float:
        grads = [p.grad.float().norm() for p in params if p.grad is not None]
        return float(torch.stack(grads).norm()) if grads else 0.0

    return norm([model.tok_emb.weight]), norm(list(model.blocks.parameters()))


def _residual_stats(residual: torch.Tensor, token_ids: torch.Tensor) -> tuple[float, float, float]:
    """(rms, mean-direction share, R^2 on token identity) of residual vectors (N, C)."""
    second_moment = residual.pow(2).sum(1).mean()  # mean ||x||^2
    mean = residual.mean(0)  # (C,)
    total = (residual - mean).pow(2).sum()
    _, group = torch.unique(token_ids, return_inverse=True)
    sums = torch.zeros(int(group.max()) + 1, residual.shape[1],
                       device=residual.device).index_add_(0, group, residual)
    counts = torch.bincount(group).unsqueeze(1).float()
    within = (residual - (sums / counts)[group]).pow(2).sum()
    rms = float(second_moment.div(residual.shape[1]).sqrt())
    share = float(mean.pow(2).sum() / second_moment)
    r2 = float(1.0 - within / total) if total > 0 else 0.0
    return rms, share, r2
