"""The per-trial validation-curve figure that every trial uploads as a dashboard artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Curve = Sequence[Sequence[float]]


def save_trial_curves(curves: Sequence[Curve], scratch_curves: Sequence[Curve], seeds: Sequence[int],
                      title: str, path: Path) -> Path:
    """Plot each seed's downstream validation loss next to its scratch run; write a PNG."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for i, (curve, scratch, seed) in enumerate(zip(curves, scratch_curves, seeds)):
        color = f"C{i % 10}"
        x, y = zip(*curve)
        sx, sy = zip(*scratch)
        ax.plot(x, y, color=color, lw=1.8, label=f"transferred, seed {seed}")
        ax.plot(sx, sy, color=color, lw=1.2, ls="--", label=f"scratch, seed {seed}")
    ax.set_xlabel("downstream training tokens")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
