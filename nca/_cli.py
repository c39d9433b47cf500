"""Shared command-line plumbing: NCA flags, one-line errors, exit status 2 on bad values."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from nca.config import NCAConfig


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_nca_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `NCAConfig` (defaults are the paper's)."""
    d = NCAConfig()
    parser.add_argument("--alphabet", type=int, default=d.alphabet,
                        help=f"cell states n, 2..15 (default {d.alphabet})")
    parser.add_argument("--grid", type=int, default=d.grid,
                        help=f"grid side in cells, a multiple of --patch (default {d.grid})")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help=f"update temperature, > 0 (default {d.temperature:g})")
    parser.add_argument("--identity-bias", type=float, default=d.identity_bias,
                        help=f"logit bonus for keeping a state (default {d.identity_bias:g})")
    parser.add_argument("--burn-in", type=int, default=d.burn_in,
                        help=f"steps before the first frame (default {d.burn_in})")
    parser.add_argument("--dt", type=int, default=d.dt, help=f"steps between frames (default {d.dt})")
    parser.add_argument("--patch", type=int, default=d.patch,
                        help=f"patch side in cells per token (default {d.patch})")


def nca_config_from_args(args: argparse.Namespace) -> NCAConfig:
    """The NCAConfig the flags describe (raises ValueError naming a bad value)."""
    return NCAConfig(alphabet=args.alphabet, grid=args.grid, temperature=args.temperature,
                     identity_bias=args.identity_bias, burn_in=args.burn_in, dt=args.dt,
                     patch=args.patch)


def parse_shares(text: str | None) -> list[float] | None:
    """`0.5,0.5` as token shares per band (None stays None)."""
    if text is None:
        return None
    try:
        shares = [float(x) for x in text.split(",")]
    except ValueError:
        shares = []
    if not shares or not all(math.isfinite(s) and s > 0 for s in shares):
        raise ValueError(f"--shares {text!r} is invalid; accepted: comma-separated positive "
                         f"numbers, one per --band (e.g. 0.5,0.5)")
    return shares


def check_cache_dir(path: Path) -> None:
    """Refuse a cache root that is not a usable folder, before anything is computed."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--cache-dir {str(path)!r} is not a folder; accepted: a folder "
                         f"(created if missing)")
    parent = path if path.exists() else next(p for p in path.absolute().parents if p.exists())
    if not os.access(parent, os.W_OK):
        raise ValueError(f"--cache-dir {str(path)!r}: {str(parent)!r} is not writable")


def check_device(text: str) -> None:
    """Refuse a torch device that does not exist here (torch would fail deep in a rollout)."""
    import torch

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


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
            argv: list[str] | None) -> int:
    """Parse `argv` and call `run`; a ValueError becomes one line on stderr and status 2."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
