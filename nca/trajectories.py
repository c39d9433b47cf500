"""Trajectories of sample rules from a complexity band: what `nca.show`, the search's trial
artifacts and the analysis report draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nca._util import derive_seed
from nca.bank import ScoreStream, select_rules
from nca.config import Band, NCAConfig
from nca.profiles import complexity_profile
from nca.rollout import make_generator, rollout
from nca.rules import sample_rules

PROFILE_RULES = 1024
"""Random rules in the profile that resolves a quantile band and refuses an unreachable one."""


def band_trajectories(config: NCAConfig, band: Band, n_rules: int, n_frames: int, seed: int,
                      cache_dir: Path | None, max_candidates: int) -> tuple[str, np.ndarray]:
    """(label, (R, T, H, W) frames) of `n_rules` rules drawn from `band`.

    Raises:
        ValueError: The band is unreachable for `config` (`nca.BandUnreachableError`), or
            `max_candidates` scored rules do not hold `n_rules` of it.
    """
    stream = ScoreStream(config, seed, cache_dir)
    profile = complexity_profile(config, PROFILE_RULES, seed, band.measure, stream=stream)
    resolved = profile.resolve(band)
    profile.check_reachable(resolved, n_rules, max_candidates)
    sel = select_rules(stream, resolved, n_rules, 0, max_candidates=max_candidates)
    frames = rollout(sample_rules(config.alphabet, seed, sel.train_ids), config, n_frames,
                     make_generator(derive_seed("show", seed, str(band))))
    scores = ", ".join(f"{s:.3f}" for s in sel.train_scores)
    return f"{band}  n={config.alphabet}  scores: {scores}", frames.numpy()
