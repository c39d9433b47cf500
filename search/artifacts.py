"""Dashboard artifacts of a trial: validation curves (PNG), an NCA sample (GIF), its config (JSON).

They are uploaded from inside the trial's job, before the driver tells the result: Optuna
refuses artifacts on finished trials.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.space import Setting
from search.trial import TrialContext, TrialOutcome

_GIF_FRAMES = 24
_GIF_CANDIDATES = 200_000


def write_artifacts(outcome: TrialOutcome, context: TrialContext, out_dir: Path) -> list[Path]:
    """Write the trial's artifact files into ``out_dir`` and return their paths."""
    from analysis.trial_figure import save_trial_curves

    seeds = outcome.record().seeds
    paths = [save_trial_curves([s.curve for s in seeds], [s.scratch_curve for s in seeds],
                               [s.seed for s in seeds], outcome.setting.describe(),
                               out_dir / "curve.png")]
    config = out_dir / "config.json"
    config.write_text(json.dumps({"setting": _plain(outcome.setting), "context": context.to_dict()},
                                 indent=2, sort_keys=True))
    paths.append(config)
    if outcome.setting.source == "nca":
        paths.append(_nca_gif(outcome.setting, context, out_dir / "nca_sample.gif"))
    return paths


def upload(outcome: TrialOutcome, context: TrialContext,
           upload_file: Callable[[Path], Any]) -> None:
    """Write the artifacts to a temporary folder and hand each to ``upload_file``."""
    with tempfile.TemporaryDirectory(prefix="ncasearch-artifacts-") as tmp:
        for path in write_artifacts(outcome, context, Path(tmp)):
            upload_file(path)


def _nca_gif(setting: Setting, context: TrialContext, path: Path) -> Path:
    from nca.render import save_gif
    from nca.trajectories import band_trajectories

    _, frames = band_trajectories(setting.nca_config(), setting.nca_band(), 1, _GIF_FRAMES,
                                  context.seeds[0], Path(context.cache_dir), _GIF_CANDIDATES)
    return save_gif(frames[0], path)


def _plain(setting: Setting) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(setting)
