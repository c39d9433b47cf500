"""Did the NCA stage learn anything? Compare its validation loss with trivial predictors.

Independent replications of the paper found runs where the NCA task was never learned: the
model only matched the token frequencies. `diagnose` reports the validation loss next to

- the uniform loss, ln(vocab_size): guessing blindly;
- the unigram loss: predicting every target from the train split's token frequencies
  (add-one smoothed), which a model reaches by learning no dynamics at all;

and the next-token accuracy. `learned` is True when the validation loss is below the unigram
loss by more than `margin` (a fraction of the unigram loss, 5% by default): a model that only
learned frequencies sits at the unigram loss, and evaluation noise is far below 5%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lm.batches import autocast_context, resolve_autocast, to_device_xy
from lm.data import SequenceDataset

__all__ = ["UpstreamDiagnostic", "diagnose", "unigram_counts", "unigram_loss"]

_COUNT_CHUNK = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class UpstreamDiagnostic:
    """How the NCA-stage model compares with trivial predictors (all losses nats/token)."""

    val_loss: float
    """The model's validation loss."""
    unigram_loss: float
    """Loss of the train-split unigram distribution on the validation targets."""
    uniform_loss: float
    """ln(vocab_size)."""
    accuracy: float
    """Fraction of validation targets predicted exactly (argmax)."""
    learned: bool
    """val_loss < (1 - margin) * unigram_loss."""

    def as_dict(self) -> dict[str, float | bool]:
        """JSON-friendly form (the trial's `upstream` attribute)."""
        return {"val_loss": self.val_loss, "unigram_loss": self.unigram_loss,
                "uniform_loss": self.uniform_loss, "accuracy": self.accuracy,
                "learned": self.learned}


def unigram_counts(ds: SequenceDataset, max_sequences: int | None = None) -> np.ndarray:
    """Counts of each token among the prediction targets of the first `max_sequences`."""
    n = len(ds) if max_sequences is None else min(max_sequences, len(ds))
    counts = np.zeros(ds.vocab_size, dtype=np.int64)
    for start in range(0, n, _COUNT_CHUNK):
        tokens, mask = ds.get(np.arange(start, min(n, start + _COUNT_CHUNK)))
        counts += np.bincount(tokens[:, 1:][mask[:, 1:]], minlength=ds.vocab_size)
    return counts


def unigram_loss(train_ds: SequenceDataset, val_ds: SequenceDataset,
                 max_sequences: int | None = 65_536) -> float:
    """Loss (nats/token) on `val_ds`'s targets of the add-one smoothed train unigram: what a
    model reaches by learning token frequencies and nothing else."""
    counts = unigram_counts(train_ds, max_sequences) + 1
    val = unigram_counts(val_ds, max_sequences)
    return float(-(val * np.log(counts / counts.sum())).sum() / max(1, val.sum()))


@torch.no_grad()
def diagnose(model: torch.nn.Module, train_ds: SequenceDataset, val_ds: SequenceDataset, *,
             device: torch.device | str = "cpu", val_sequences: int | None = 64,
             train_sequences: int | None = 65_536, batch_size: int = 8,
             autocast: str = "auto", margin: float = 0.05) -> UpstreamDiagnostic:
    """Compare `model` on `val_ds` with the uniform and the train-unigram predictors.

    Args:
        model: the trained NCA-stage transformer.
        train_ds: its training data (for the unigram counts).
        val_ds: held-out data; the first `val_sequences` sequences are scored (None = all).
        device: where to run the model.
        train_sequences: sequences of train_ds counted for the unigram (None = all).
        batch_size: sequences per forward pass.
        autocast: as TrainConfig.autocast.
        margin: `learned` needs val_loss below (1 - margin) * unigram_loss.
    """
    device = torch.device(device)
    dtype = resolve_autocast(autocast, device)  # type: ignore[arg-type]
    counts = unigram_counts(train_ds, train_sequences) + 1  # add-one smoothing
    log_p = torch.from_numpy(np.log(counts / counts.sum())).to(device)  # (V,)
    n = len(val_ds) if val_sequences is None else min(val_sequences, len(val_ds))
    loss = uni = 0.0
    correct = total = 0
    was_training = model.training
    model.eval()
    for start in range(0, n, batch_size):
        tokens, mask = val_ds.get(np.arange(start, min(n, start + batch_size)))
        x, y = to_device_xy(tokens, mask, device)
        with autocast_context(device, dtype):
            logits = model(x)  # (B, T, V)
        keep = y >= 0
        logits, y = logits[keep].float(), y[keep]  # (N, V), (N,)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        uni -= float(log_p[y].sum())
        correct += int((logits.argmax(-1) == y).sum())
        total += int(y.numel())
    model.train(was_training)
    val_loss, unigram = loss / max(total, 1), uni / max(total, 1)
    return UpstreamDiagnostic(val_loss=val_loss, unigram_loss=unigram,
                              uniform_loss=math.log(val_ds.vocab_size),
                              accuracy=correct / max(total, 1),
                              learned=val_loss < (1.0 - margin) * unigram)
