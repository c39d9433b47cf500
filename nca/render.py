"""Pictures of NCA dynamics: trajectory strips (PNG), animations (GIF), contact sheets per band."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
], dtype=np.uint8)
"""One colour per cell state (up to the largest alphabet, 15)."""
_GAP = 2  # pixels between frames
_LABEL_H = 14


def frame_rgb(frame: np.ndarray, scale: int = 8) -> np.ndarray:
    """(H*scale, W*scale, 3) uint8 image of one (H, W) state grid."""
    rgb = PALETTE[np.asarray(frame, dtype=np.int64) % len(PALETTE)]
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def strip(frames: np.ndarray, scale: int = 8) -> Image.Image:
    """Frames (T, H, W) side by side, left to right in time."""
    t, h, w = frames.shape
    out = np.full((h * scale, t * (w * scale + _GAP) - _GAP, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        x = i * (w * scale + _GAP)
        out[:, x : x + w * scale] = frame_rgb(frame, scale)
    return Image.fromarray(out)


def save_png(frames: np.ndarray, path: Path, scale: int = 8) -> Path:
    """Write a trajectory strip (T, H, W) to `path` as PNG."""
    strip(frames, scale).save(path, format="PNG")
    return Path(path)


def save_gif(frames: np.ndarray, path: Path, scale: int = 16, frame_ms: int = 150) -> Path:
    """Write a trajectory (T, H, W) to `path` as a looping animated GIF."""
    images = [Image.fromarray(frame_rgb(f, scale)) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=frame_ms, loop=0)
    return Path(path)


def contact_sheet(rows: Sequence[tuple[str, np.ndarray]], path: Path, scale: int = 4) -> Path:
    """One labelled block per band: each block stacks the strips of its sample rules.

    Args:
        rows: (label, frames) pairs; frames is (R, T, H, W) for R sample rules of that band.
        path: PNG to write.
        scale: pixels per cell.
    """
    blocks = []
    for label, frames in rows:
        strips = [np.asarray(strip(f, scale)) for f in frames]
        width = max(s.shape[1] for s in strips)
        label_img = Image.new("RGB", (width, _LABEL_H), "white")
        ImageDraw.Draw(label_img).text((2, 1), label, fill="black")
        parts = [np.asarray(label_img)]
        for s in strips:
            parts += [s, np.full((_GAP, width, 3), 255, np.uint8)]
        blocks.append(np.concatenate(parts))
    width = max(b.shape[1] for b in blocks)
    padded = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=255)
              for b in blocks]
    Image.fromarray(np.concatenate(padded)).save(path, format="PNG")
    return Path(path)
