"""Rule banks: the cached score stream of random rules, and bounded selection of a band's rules.

For given generator settings and seed, rules 0, 1, 2, ... are scored once, in blocks, with every
registered measure; the scores are cached under `cache_dir/rules/<key>/`. Scores do not depend on
the band, so one stream serves every band, the complexity profile (its first N scores) and the
quantile-band resolution. A band's bank is the ids of the stream's rules inside the band; rules
with `id % VAL_STRIDE == VAL_STRIDE - 1` are held out for validation, never used for training.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nca._util import code_version, default_workers, derive_seed, ordered_map
from nca.complexity import MEASURES
from nca.config import Band, BandUnreachableError, NCAConfig
from nca.rollout import make_generator, rollout
from nca.rules import sample_rules
from nca.tokens import patch_tokens
from ncaio import atomic_write_npy, atomic_write_text, content_key

SCORE_BLOCK = 512
"""Rules scored per batch (one rollout, one seed); part of the stream's identity."""
VAL_STRIDE = 16
"""Every 16th rule id is a held-out (validation) rule."""
_SAVE_EVERY = 32  # blocks between checkpoints of a long extension

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total) callback."""


class ScoreStream:
    """Scores of rules 0, 1, 2, ... of stream `seed` under `config`, cached on disk.

    Args:
        config: generator settings.
        seed: stream seed (rule weights and scoring rollouts derive from it).
        cache_dir: cache root, or None for an in-memory stream.
        device: where rollouts run.
        workers: blocks scored in parallel (default: one per torch thread on CPU).
    """

    def __init__(self, config: NCAConfig, seed: int, cache_dir: Path | None = None,
                 device: str | torch.device = "cpu", workers: int | None = None) -> None:
        self.config, self.seed, self.device = config, seed, torch.device(device)
        self.measures = sorted(MEASURES)
        self.key = content_key({"kind": "score-stream", "nca": config.to_dict(), "seed": seed,
                                "block": SCORE_BLOCK, "measures": self.measures,
                                "code": code_version()})
        self.path = None if cache_dir is None else Path(cache_dir) / "rules" / self.key
        self.workers = workers or default_workers(device)
        self._scores = self._load()

    @property
    def n_scored(self) -> int:
        """Rules scored so far."""
        return len(self._scores)

    def scores(self, measure: str, n: int | None = None) -> np.ndarray:
        """(n,) float64 scores of rules 0..n-1 under `measure`, scoring more rules if needed."""
        if n is not None and n > self.n_scored:
            self.extend(n)
        col = self._scores[:, self.measures.index(measure)]
        return col if n is None else col[:n]

    def extend(self, n: int, progress: Progress | None = None) -> None:
        """Score rules until at least `n` are scored (whole blocks)."""
        target = -(-n // SCORE_BLOCK)
        start = self.n_scored // SCORE_BLOCK
        if target <= start:
            return
        parts, saved = [self._scores], start
        blocks = ordered_map(self._score_block, range(start, target), self.workers)
        for block, scores in enumerate(blocks, start=start):
            parts.append(scores)
            if progress is not None:
                progress("score", (block + 1 - start) * SCORE_BLOCK, (target - start) * SCORE_BLOCK)
            # Checkpoint a long extension now and then (every quarter of the stream at least, so
            # rewriting the whole file stays linear in the stream's length).
            if block + 1 == target or block + 1 - saved >= max(_SAVE_EVERY, saved // 4):
                self._scores = np.concatenate(parts)
                parts, saved = [self._scores], block + 1
                self._save()

    def _score_block(self, block: int) -> np.ndarray:
        ids = np.arange(block * SCORE_BLOCK, (block + 1) * SCORE_BLOCK)
        cfg = self.config
        params = sample_rules(cfg.alphabet, self.seed, ids).to(self.device)
        gen = make_generator(derive_seed("score", self.seed, block), self.device)
        frames = rollout(params, cfg, cfg.score_frames, gen)
        tokens = patch_tokens(frames, cfg).cpu().numpy()
        frames_np = frames.cpu().numpy()
        # Blocks already run in parallel, so each block compresses its rules serially.
        cols = [MEASURES[m].score(frames_np, tokens, None) for m in self.measures]
        return np.stack(cols, axis=1)

    def _load(self) -> np.ndarray:
        empty = np.zeros((0, len(self.measures)))
        if self.path is None or not (self.path / "scores.npy").exists():
            return empty
        try:
            scores = np.load(self.path / "scores.npy")
        except (OSError, ValueError):
            return empty  # unreadable: the stream is deterministic, so it is simply rescored
        ok = (scores.ndim == 2 and scores.shape[1] == len(self.measures)
              and not len(scores) % SCORE_BLOCK)
        return scores.astype(np.float64) if ok else empty

    def _save(self) -> None:
        if self.path is None:
            return
        atomic_write_npy(self.path / "scores.npy", self._scores)
        meta = {"nca": self.config.to_dict(), "seed": self.seed, "measures": self.measures,
                "block": SCORE_BLOCK, "n_scored": self.n_scored, "code_version": code_version()}
        atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=1))


@dataclass(frozen=True, slots=True)
class RuleSelection:
    """Rules of one band, split into training and held-out rules.

    Attributes:
        band: the absolute band the rules were selected with.
        train_ids, val_ids: rule ids in stream order.
        train_scores, val_scores: their scores under the band's measure.
        n_candidates: rules scored in the stream when the selection was made.
        acceptance: fraction of the scored rules inside the band.
        max_score: highest score among the scored rules.
    """

    band: Band
    train_ids: np.ndarray
    val_ids: np.ndarray
    train_scores: np.ndarray
    val_scores: np.ndarray
    n_candidates: int
    acceptance: float
    max_score: float


def select_rules(stream: ScoreStream, band: Band, n_train: int, n_val: int, *,
                 max_candidates: int, progress: Progress | None = None) -> RuleSelection:
    """The first `n_train` training and `n_val` held-out rules of `stream` inside `band`.

    Scores more of the stream as needed, at most `max_candidates` rules in total.

    Raises:
        BandUnreachableError: the band is not filled within `max_candidates` rules.
    """
    while True:
        scores = stream.scores(band.measure)
        ids = np.flatnonzero(band.contains(scores))
        is_val = ids % VAL_STRIDE == VAL_STRIDE - 1
        train, val = ids[~is_val], ids[is_val]
        if len(train) >= n_train and len(val) >= n_val:
            break
        if stream.n_scored >= max_candidates:
            top = float(scores.max()) if len(scores) else float("nan")
            raise BandUnreachableError(
                f"band {band} for alphabet {stream.config.alphabet} not filled: "
                f"{len(train)}/{n_train} training and {len(val)}/{n_val} held-out rules in "
                f"{stream.n_scored} candidates (acceptance {len(ids) / max(1, len(scores)):.3%}), "
                f"highest score seen {top:.4f}; widen the band or raise max_candidates"
            )
        stream.extend(_next_size(stream.n_scored, len(train), len(val), n_train, n_val,
                                 max_candidates, stream.workers), progress)
    train, val = train[:n_train], val[:n_val]
    return RuleSelection(
        band=band, train_ids=train, val_ids=val, train_scores=scores[train],
        val_scores=scores[val], n_candidates=stream.n_scored,
        acceptance=len(ids) / len(scores), max_score=float(scores.max()),
    )


def _next_size(n_scored: int, n_train_found: int, n_val_found: int, n_train: int, n_val: int,
               max_candidates: int, workers: int) -> int:
    """How far to extend the stream: the estimated need plus 10%, capped by the budget.

    At least one block per worker (parallel blocks cost the time of one), at most doubling.
    """
    rate_train = max(n_train_found, 1) / max(n_scored, 1)
    rate_val = max(n_val_found, 1) / max(n_scored, 1)
    more = max((n_train - n_train_found) / rate_train, (n_val - n_val_found) / rate_val, 0.0)
    grow = int(min(max(1.1 * more, workers * SCORE_BLOCK), 64 * SCORE_BLOCK + n_scored))
    return min(n_scored + grow, max_candidates)
