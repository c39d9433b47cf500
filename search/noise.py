"""What earlier studies measured of the seed noise, kept in the cache for the dry run's power.

After a study, ``search.run`` records the standard deviation of its paired per-seed net effects
(pooled within settings, ``analysis.confirmation.noise_summary``) under
``<cache_dir>/noise/<domain>-<preset>.json``, one entry per study. ``known`` pools the entries of
every study of the same domain and preset, so a new study's dry run can say what its seeds will
be able to detect before it runs, or that it is not known yet.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ncaio import atomic_write_json
from search.config import StudyConfig
from search.trial import TrialContext

__all__ = ["known", "noise_path", "record"]


def noise_path(cache_dir: str | Path, domain: str, preset: str) -> Path:
    return Path(cache_dir) / "noise" / f"{domain}-{preset}.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(config: StudyConfig, context: TrialContext, noise: dict[str, float]) -> None:
    """Keep the study's pooled seed noise (``sd``, the ``settings`` and ``seeds`` behind it)."""
    if not math.isfinite(noise.get("sd", math.nan)) or noise.get("settings", 0) < 1:
        return
    path = noise_path(context.cache_dir, context.domain, context.preset)
    entries = _read(path)
    entries[config.study.name] = {**noise, "updated": time.time()}
    atomic_write_json(path, entries)


def known(context: TrialContext) -> dict[str, float] | None:
    """The noise of every earlier study of this domain and preset, pooled (the variances
    weighted by their degrees of freedom); None when there is none."""
    entries = [e for e in _read(noise_path(context.cache_dir, context.domain,
                                           context.preset)).values()
               if isinstance(e, dict) and math.isfinite(e.get("sd", math.nan))]
    dof = [max(0, int(e["seeds"]) - int(e["settings"])) for e in entries]
    if not entries or sum(dof) == 0:
        return None
    var = sum(d * e["sd"] ** 2 for d, e in zip(dof, entries, strict=True)) / sum(dof)
    return {"sd": math.sqrt(var), "studies": len(entries),
            "seeds": sum(e["seeds"] for e in entries)}
