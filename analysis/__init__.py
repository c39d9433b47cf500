"""Reports on search studies: tidy DataFrames, seed statistics, figures, Markdown/HTML.

Example:
    >>> from analysis import analyze, write_report
    >>> a = analyze("runs/code/journal.log")            # doctest: +SKIP
    >>> a.settings[["label", "gain_mean", "p_value", "verdict"]]   # doctest: +SKIP
    >>> write_report(a, Path("reports/code"))           # doctest: +SKIP

CLI: ``python -m analysis.report --storage <journal-or-url> [--study NAME ...] --out DIR``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> defining module (``analysis.<module>``, or a dotted module elsewhere). Loaded on
# first use, so ``python -m analysis.report`` does not import analysis.report twice and
# ``import analysis`` stays light.
_EXPORTS = {
    "dashboard_command": "dashboard",
    "SCRATCH_SOURCES": "frame", "StudyRecord": "frame", "band_label": "frame",
    "load_studies": "frame", "seeds_frame": "frame", "trials_frame": "frame",
    "PAPER": "paper", "PAPER_MAX_SPEEDUP": "paper", "PaperFinding": "paper",
    "band_anchors": "paper", "band_table": "paper", "cross_domain_table": "paper",
    "pareto_mask": "pareto", "pareto_table": "pareto",
    "Analysis": "report", "analyze": "report", "write_report": "report",
    "NOISE": "stats", "WILCOXON_MIN_N": "stats", "PairedTest": "stats", "best_setting": "stats",
    "holm": "stats", "mean_ci": "stats", "paired_test": "stats", "seed_noise": "stats",
    "setting_stats": "stats",
    # The one storage opener, shared with the search (it imports no torch).
    "StorageError": "search.storage", "open_storage": "search.storage",
    "resolve_study_names": "search.storage",
}
__all__ = [
    "NOISE", "PAPER", "PAPER_MAX_SPEEDUP", "SCRATCH_SOURCES", "WILCOXON_MIN_N", "Analysis",
    "PairedTest", "PaperFinding", "StorageError", "StudyRecord", "analyze", "band_anchors",
    "band_label", "band_table", "best_setting", "cross_domain_table", "dashboard_command", "holm",
    "load_studies", "mean_ci", "open_storage", "paired_test", "pareto_mask", "pareto_table",
    "resolve_study_names", "seed_noise", "seeds_frame", "setting_stats", "trials_frame",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(importlib.import_module(module if "." in module else f"analysis.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
