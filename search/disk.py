"""A full disk, told apart from a failing trial.

A cache, run folder or journal that fills up does not make a trial wrong: the same trial runs
once space is freed. So a study that meets a full disk stops with one line naming the folder,
its free space and roughly what a trial needs; its trials are re-enqueued without spending an
attempt, and every write was atomic (``ncaio``), so no partial file is left behind. The next run
of the same command resumes them from their checkpoints.

A full disk shows up in many forms: ``OSError`` ENOSPC or EDQUOT from Python, numpy's "Not
enough free space", torch's serializer ("unexpected pos", "PytorchStreamWriter failed"), or a
worker that died before it could write its result. ``is_disk_full`` reads the first ones from an
exception; ``low_on_space`` catches the rest by looking at the folders themselves.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import nca
from lm.presets import get_preset
from search.space import Setting, nca_data_spec

if TYPE_CHECKING:
    from search.trial import TrialContext

__all__ = ["DISK_FULL_TEXTS", "free_bytes", "is_disk_full", "low_on_space", "message",
           "short_message", "trial_bytes"]

DISK_FULL_TEXTS = ("No space left on device", "Not enough free space", "Disk quota exceeded",
                   "unexpected pos", "PytorchStreamWriter failed", "file write failed")
"""How a full disk reads in the messages of Python, numpy and torch's serializer."""

_MARGIN_BYTES = 1 << 20


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc``, or an exception it was raised from or during, is a full disk."""
    return any((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
               or any(text in str(e) for text in DISK_FULL_TEXTS) for e in _chain(exc))


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (or would hold it: its nearest existing
    ancestor)."""
    path = Path(path).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    return shutil.disk_usage(existing).free


def low_on_space(folders: Iterable[Path], needed_bytes: int) -> Path | None:
    """The first of ``folders`` whose filesystem has less than ``needed_bytes`` free, if any."""
    return next((f for f in folders if free_bytes(f) < needed_bytes + _MARGIN_BYTES), None)


def message(folder: Path, needed_bytes: int, what: str) -> str:
    """The one line a study stops with."""
    return (f"disk full: {what}; {str(folder)!r} has {_size(free_bytes(folder))} free and a trial "
            f"needs about {_size(needed_bytes)}; free space and run the same command again: "
            "finished work is kept and unfinished trials resume")


def short_message(exc: BaseException, folders: Iterable[Path]) -> str:
    """The one line for a full disk met outside a trial (the driver's journal, the corpus): it
    names the file's folder when the error does, else the fullest of ``folders``."""
    named = [Path(e.filename).parent for e in _chain(exc)
             if isinstance(e, OSError) and isinstance(e.filename, str)]
    where = named[0] if named else min(folders, key=free_bytes)
    lines = str(exc).strip().splitlines()
    return (f"disk full: {type(exc).__name__}: {lines[0] if lines else ''}; free space in "
            f"{str(where)!r} ({_size(free_bytes(where))} free) and run the same command "
            "again: finished work is kept and unfinished trials resume")


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during."""
    out: list[BaseException] = []
    while exc is not None and all(exc is not e for e in out):
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def trial_bytes(context: TrialContext) -> int:
    """Roughly the most a trial writes at once: its NCA data and two checkpoints of the model
    with Adam's moments (the finished stage's and the one in progress)."""
    preset = get_preset(context.preset)
    _, vocab, _ = nca.layout(nca_data_spec(Setting()), preset.nca_seq_len)
    checkpoint = 3 * 4 * preset.num_params(vocab)  # fp32 weights and two moments
    nca_tokens = round(context.nca_fraction * context.domain_tokens) or context.nca_tokens
    return 2 * checkpoint + 3 * nca_tokens  # uint16 tokens, train and val
