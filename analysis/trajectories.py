"""Contact sheet of NCA trajectories for one setting.

First choice: the NCA sample GIFs the search uploaded as trial artifacts (one row per GIF, frames
left to right), read through the artifact store. Otherwise ``nca`` renders it: rules sampled
from the setting's band (``nca.trajectories.band_trajectories``) drawn by
``nca.render.contact_sheet`` (a few seconds on CPU). Otherwise the figure is skipped with the
reason.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.artifacts.exceptions import ArtifactNotFound
from PIL import Image, ImageSequence

from analysis.frame import StudyRecord, setting_text
from analysis.plots import FigureSkipped

__all__ = ["plot_contact_sheet", "trial_artifacts"]

_MAX_ROWS = 4
_MAX_FRAMES = 10
_MAX_CANDIDATES = 20_000  # rules nca may score to find the band's samples

def trial_artifacts(rec: StudyRecord, number: int) -> list[dict[str, Any]]:
    """Artifact metadata (``artifact_id``, ``filename``, ``mimetype``, ...) of one trial."""
    trial = next(t for t in rec.trials if t.number == number)
    metas = optuna.artifacts.get_all_artifact_meta(trial, storage=rec.storage)
    return [dataclasses.asdict(m) for m in metas]


def _is_gif(meta: dict[str, Any]) -> bool:
    return meta.get("mimetype") == "image/gif" or str(meta.get("filename", "")).endswith(".gif")


def _gif_frames(data: bytes, max_frames: int) -> list[tuple[int, np.ndarray]]:
    """Up to ``max_frames`` evenly spaced frames as (index, RGB array)."""
    with Image.open(io.BytesIO(data)) as im:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    keep = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))
    return [(int(i), frames[i]) for i in keep]


def _rows_from_artifacts(rec: StudyRecord, numbers: list[int], store: Any
                         ) -> list[tuple[str, list[tuple[int, np.ndarray]]]]:
    rows = []
    for number in numbers:
        for meta in filter(_is_gif, trial_artifacts(rec, number)):
            try:
                with store.open_reader(meta["artifact_id"]) as f:
                    data = f.read()
            except ArtifactNotFound:
                continue
            rows.append((f"trial #{number}: {meta['filename']}", _gif_frames(data, _MAX_FRAMES)))
            if len(rows) == _MAX_ROWS:
                return rows
    return rows


def _render_with_nca(setting: pd.Series, params: dict[str, Any]) -> np.ndarray:
    """Sample rules of the setting's band with nca and return its contact sheet as RGB.

    Raises:
        FigureSkipped: When nca's renderer is missing or cannot realise the band.
    """
    try:
        from nca import Band, NCAConfig
        from nca.render import contact_sheet
        from nca.trajectories import band_trajectories
    except ImportError as e:
        raise FigureSkipped(f"nca's renderer is not available ({e})") from e
    if not pd.notna(setting["band_lower"]):
        raise FigureSkipped("the setting has no absolute complexity band to render")
    # The knobs the search varies carry NCAConfig's names (search.space.Setting.nca_config).
    names = {f.name for f in dataclasses.fields(NCAConfig)}
    config = NCAConfig(**{k: v for k, v in params.items() if k in names})
    band = Band(float(setting["band_lower"]), float(setting["band_upper"]))
    try:
        rows = [band_trajectories(config, band, _MAX_ROWS, _MAX_FRAMES, 0, None,
                                  _MAX_CANDIDATES)]
    except ValueError as e:  # includes nca.BandUnreachableError
        raise FigureSkipped(f"nca could not sample band {band}: {e}") from e
    with tempfile.TemporaryDirectory() as tmp:
        path = contact_sheet(rows, Path(tmp) / "sheet.png")
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))


def plot_contact_sheet(rec: StudyRecord, setting: pd.Series, numbers: Sequence[int],
                       artifact_store: Any | None, render_nca: bool = True) -> Figure:
    """NCA trajectories of ``setting`` (a row of :func:`analysis.stats.setting_stats`).

    Args:
        rec: The setting's study.
        setting: The setting.
        numbers: Its trials (GIFs are taken from them in this order).
        artifact_store: Where the trials' GIF artifacts are (None: do not look).
        render_nca: Fall back to rendering with nca when no GIF is found.

    Raises:
        FigureSkipped: If neither a GIF artifact nor (allowed and working) nca rendering.
    """
    numbers = [int(n) for n in numbers]
    if not numbers:
        raise FigureSkipped(f"setting {setting['label']} has no trial")
    title = f"NCA trajectories of {setting['label']} ({setting_text(setting)})"
    rows = _rows_from_artifacts(rec, numbers, artifact_store) if artifact_store else []
    if rows:
        return _sheet(rows, f"{title}: {rec.name}, from the trials' GIF artifacts")
    trial = next(t for t in rec.trials if t.number == numbers[-1])
    params = _nca_params(trial)
    why = "no artifact store given" if artifact_store is None else "no GIF artifact on its trials"
    if not render_nca:
        raise FigureSkipped(f"{why}; rendering with nca was turned off")
    try:
        image = _render_with_nca(setting, params)
    except FigureSkipped as e:
        raise FigureSkipped(f"{why}; {e}") from e
    fig = Figure(figsize=(10, 10 * image.shape[0] / max(image.shape[1], 1) + 0.6),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(f"{title}: {rec.name}, rendered by nca")
    return fig


def _nca_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """NCA knobs of a trial: the search's ``setting`` JSON when recorded, else its params."""
    text = trial.user_attrs.get("setting")
    return json.loads(text) if isinstance(text, str) else dict(trial.params)


def _sheet(rows: list[tuple[str, list[tuple[int, np.ndarray]]]], title: str) -> Figure:
    n_cols = max(len(frames) for _, frames in rows)
    fig = Figure(figsize=(1.3 * n_cols + 0.5, 1.55 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (name, frames) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(frames):
                ax.set_axis_off()
                continue
            index, image = frames[c]
            ax.imshow(image, interpolation="nearest")
            ax.set_title(f"step {index}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name.split(":")[0], fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
