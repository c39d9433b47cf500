"""The per-trial validation-curve figure that every trial uploads as a dashboard artifact."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# A Figure drawn without pyplot needs no GUI backend, so nothing switches the process-wide
# matplotlib backend (importing this module used to call matplotlib.use("Agg")).
from matplotlib.figure import Figure

Curve = Sequence[Sequence[float]]


def save_trial_curves(curves: Sequence[Curve], scratch_curves: Sequence[Curve],
                      seeds: Sequence[int], title: str, path: Path) -> Path:
    """Plot each seed's downstream validation loss next to its scratch run; write a PNG."""
    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    ax = fig.subplots()
    for i, (curve, scratch, seed) in enumerate(zip(curves, scratch_curves, seeds, strict=True)):
        color = f"C{i % 10}"
        x, y = zip(*curve, strict=True)
        sx, sy = zip(*scratch, strict=True)
        ax.plot(x, y, color=color, lw=1.8, label=f"transferred, seed {seed}")
        ax.plot(sx, sy, color=color, lw=1.2, ls="--", label=f"scratch, seed {seed}")
    ax.set_xlabel("downstream training tokens")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
