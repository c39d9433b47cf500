"""What a trial returns: final loss, bits per byte, perplexity, gain and speedup over scratch."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Scores", "score", "tokens_to_reach"]

Curve = Sequence[tuple[int, float]] | Sequence[Sequence[float]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Scores:
    """Scores of one run against its scratch baseline (same domain, budget, preset, seed)."""

    final_loss: float
    """Final validation loss, nats/token."""
    bpb: float
    """Final validation loss in bits per UTF-8 byte (comparable across tokenizers)."""
    perplexity: float
    """exp(final_loss), per token."""
    scratch_final_loss: float | None
    """The baseline's final validation loss (None without a baseline)."""
    gain_pct: float | None
    """(scratch - final) / scratch * 100: positive = lower loss than scratch."""
    tokens_to_scratch_loss: float | None
    """Training tokens this run needed to reach the baseline's final loss (interpolated)."""
    speedup: float | None
    """Baseline's total tokens / tokens_to_scratch_loss; None when never reached, inf when
    reached at 0 tokens."""


def _points(curve: Curve) -> list[tuple[float, float]]:
    pts = [(float(t), float(v)) for t, v in curve]
    if not pts:
        raise ValueError("empty curve: expected [(tokens, val_loss), ...]")
    if any(b[0] <= a[0] for a, b in itertools.pairwise(pts)):
        raise ValueError("curve tokens must be strictly increasing")
    return pts


def tokens_to_reach(curve: Curve, target: float) -> float | None:
    """First token count at which `curve` reaches loss <= target, linearly interpolated
    between evaluations; None if it never does."""
    pts = _points(curve)
    if pts[0][1] <= target:
        return pts[0][0]
    for (t0, l0), (t1, l1) in itertools.pairwise(pts):
        if l1 <= target:  # l0 > target >= l1
            return t0 + (l0 - target) / (l0 - l1) * (t1 - t0)
    return None


def score(curve: Curve, baseline_curve: Curve | None, bytes_per_token: float) -> Scores:
    """Score a validation curve against the scratch baseline's curve.

    Args:
        curve: [(tokens_seen, val_loss), ...] of the run, tokens increasing.
        baseline_curve: the same for scratch training, or None (no gain/speedup).
        bytes_per_token: UTF-8 bytes per token of the validation split.

    Example:
        >>> score([(0, 5.0), (100, 2.0)], [(0, 5.0), (100, 3.0)], 1.0).speedup
        1.5
    """
    if not bytes_per_token > 0:
        raise ValueError(f"bytes_per_token={bytes_per_token!r}: expected > 0")
    final = _points(curve)[-1][1]
    scratch = gain = reach = speedup = None
    if baseline_curve is not None:
        base = _points(baseline_curve)
        scratch = base[-1][1]
        gain = (scratch - final) / scratch * 100.0
        reach = tokens_to_reach(curve, scratch)
        if reach is not None:
            speedup = base[-1][0] / reach if reach > 0 else math.inf
    return Scores(final_loss=final, bpb=final / math.log(2) / bytes_per_token,
                  perplexity=math.exp(final), scratch_final_loss=scratch, gain_pct=gain,
                  tokens_to_scratch_loss=reach, speedup=speedup)
