"""Writing the NCA token stream of a curriculum: rule selection per stage, then rollouts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nca._util import derive_seed, ordered_map
from nca.bank import Progress, RuleSelection, ScoreStream, select_rules
from nca.config import Stage
from nca.curriculum import Curriculum
from nca.profiles import ComplexityProfile, complexity_profile
from nca.rollout import make_generator, rollout
from nca.rules import sample_rules
from nca.store import ShardWriter
from nca.tokens import frame_sequences, patch_tokens

GEN_CHUNK = 512
"""Sequences simulated per batch (and per generator seed); part of the generator's identity."""


@dataclass(frozen=True, slots=True)
class StagePlan:
    """A stage with its resolved band, its rules, and its sequence counts per split."""

    stage: Stage
    profile: ComplexityProfile
    selection: RuleSelection
    counts: dict[str, int]


def plan_stages(curriculum: Curriculum, counts: dict[str, list[int]], *, seed: int,
                sequences_per_rule: int, profile_rules: int, cache_dir: Path,
                device: str | torch.device, max_candidates: int,
                progress: Progress | None = None) -> list[StagePlan]:
    """Resolve every stage's band and select its rules (bounded; see `select_rules`)."""
    plans = []
    for j, stage in enumerate(curriculum.stages):
        stream = ScoreStream(stage.nca, seed, cache_dir, device)
        profile = complexity_profile(stage.nca, profile_rules, seed, stage.band.measure,
                                     cache_dir=cache_dir, stream=stream)
        band = profile.resolve(stage.band)
        stage_counts = {split: counts[split][j] for split in counts}
        n_rules = {split: -(-c // sequences_per_rule) for split, c in stage_counts.items()}
        profile.check_reachable(band, n_rules["train"] + n_rules["val"], max_candidates)
        selection = select_rules(stream, band, n_rules["train"], n_rules["val"],
                                 max_candidates=max_candidates, progress=progress)
        plans.append(StagePlan(stage=stage, profile=profile, selection=selection,
                               counts=stage_counts))
    return plans


def write_split(writer: ShardWriter, curriculum: Curriculum, plans: list[StagePlan], split: str, *,
                seed: int, sequences_per_rule: int, frames: int, device: str | torch.device,
                workers: int, progress: Progress | None = None, done: int = 0,
                total: int = 0) -> None:
    """Simulate and append one split's sequences in curriculum order.

    Chunks (GEN_CHUNK sequences of one stage, one generator seed each) are simulated on
    `workers` threads in the order the stream first needs them; the result does not depend on
    `workers`.
    """
    stage_of, index_of = curriculum.order([p.counts[split] for p in plans])
    chunk_of = index_of // GEN_CHUNK
    key = stage_of * (1 << 40) + chunk_of
    starts = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [len(key)]])
    _, first = np.unique(key, return_index=True)
    needed = [(int(stage_of[i]), int(chunk_of[i])) for i in np.sort(first)]

    def simulate(item: tuple[int, int]) -> np.ndarray:
        j, chunk = item
        return _simulate_chunk(plans[j], j, split, chunk, seed=seed,
                               vocab_size=curriculum.vocab_size,
                               sequences_per_rule=sequences_per_rule, frames=frames, device=device)

    chunks = ordered_map(simulate, needed, workers)
    current: dict[int, tuple[int, np.ndarray]] = {}  # stage -> (chunk, its tokens)
    for a, b in itertools.pairwise(starts):
        j, chunk = int(stage_of[a]), int(chunk_of[a])
        if current.get(j, (-1, None))[0] != chunk:
            current[j] = (chunk, next(chunks))
        writer.add(current[j][1][index_of[a:b] - chunk * GEN_CHUNK])
        if progress is not None:
            progress("generate", done + int(b), total)


def _simulate_chunk(plan: StagePlan, stage_index: int, split: str, chunk: int, *, seed: int,
                    vocab_size: int, sequences_per_rule: int, frames: int,
                    device: str | torch.device) -> np.ndarray:
    """Tokens (m, frames * frame_len) of sequences chunk*GEN_CHUNK... of a stage's split."""
    cfg = plan.stage.nca
    count = plan.counts[split]
    seq = np.arange(chunk * GEN_CHUNK, min((chunk + 1) * GEN_CHUNK, count))
    ids = plan.selection.train_ids if split == "train" else plan.selection.val_ids
    rule_ids, sim_rule = np.unique(ids[seq // sequences_per_rule], return_inverse=True)
    params = sample_rules(cfg.alphabet, seed, rule_ids).to(device)
    gen = make_generator(derive_seed("sims", seed, stage_index, split, chunk), device)
    states = rollout(params, cfg, frames, gen, torch.from_numpy(sim_rule.reshape(-1)))
    tokens = frame_sequences(patch_tokens(states, cfg), vocab_size - 2, vocab_size - 1)
    return tokens.cpu().numpy()


def _stats(scores: np.ndarray) -> dict[str, float] | None:
    if not len(scores):
        return None
    return {"mean": float(scores.mean()), "std": float(scores.std()), "min": float(scores.min()),
            "median": float(np.median(scores)), "max": float(scores.max())}


def stage_report(plan: StagePlan, sequences_per_rule: int) -> dict[str, Any]:
    """Manifest entry of a stage: resolved band, counts, acceptance and realised complexity."""
    sel = plan.selection
    used = {split: -(-plan.counts[split] // sequences_per_rule) for split in plan.counts}
    return {
        "nca": plan.stage.nca.to_dict(), "share": plan.stage.share,
        "band_requested": plan.stage.band.to_dict(), "band": sel.band.to_dict(),
        "sequences": plan.counts, "rules": used, "candidates_scored": sel.n_candidates,
        "acceptance_rate": sel.acceptance, "max_score_seen": sel.max_score,
        "complexity": _stats(sel.train_scores[: used["train"]]),
        "val_complexity": _stats(sel.val_scores[: used["val"]]),
        "profile": {k: v for k, v in plan.profile.summary().items() if k != "percentiles"},
    }
