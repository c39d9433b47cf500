"""Command-line plumbing every package's CLI shares: one-line errors and exit status 2.

A bad value (an argparse error, or a ValueError raised while the command checks its input)
becomes one line on stderr, ``<prog>: error: <what was given; what is accepted>``, and status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

__all__ = ["OneLineParser", "check_device", "check_output_folder", "run_cli"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
            argv: list[str] | None) -> int:
    """Parse `argv` and call `run`; a ValueError becomes one line on stderr and status 2."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2


def check_device(text: str) -> None:
    """Refuse a torch device that does not exist here (torch would fail deep in a run)."""
    import torch  # here, so that importing ncaio stays free of torch

    try:
        kind = torch.device(text).type
    except (RuntimeError, ValueError):
        kind = ""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available.get(kind, False):
        accepted = ", ".join(k for k, ok in available.items() if ok)
        raise ValueError(f"--device {text!r} is not available on this machine; accepted: "
                         f"{accepted}")


def check_output_folder(path: str | os.PathLike[str], flag: str) -> None:
    """Refuse a folder a command would write to, before it writes anything: it must be a folder
    (or not exist yet) and its nearest existing ancestor a folder this process may write in.

    Raises:
        ValueError: one line naming ``flag``, the value and what is accepted.
    """
    path = Path(path)
    existing = path if path.exists() else next(
        (p for p in path.absolute().parents if p.exists()), Path("/"))
    if not existing.is_dir():
        where = "" if existing == path else f" ({str(existing)!r} is a file)"
        raise ValueError(f"{flag} {str(path)!r} is not a folder{where}; accepted: a folder "
                         "(created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {str(path)!r}: {str(existing)!r} is not writable; accepted: "
                         "a folder this user may write in")
