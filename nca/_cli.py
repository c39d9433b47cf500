"""Shared command-line plumbing of nca: NCA flags and their checks (one-line errors and exit
status 2 come from ncaio.cli)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nca.config import NCAConfig
from ncaio.cli import check_output_folder


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
    parser.add_argument("--dt", type=int, default=d.dt,
                        help=f"steps between frames (default {d.dt})")
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
    check_output_folder(path, "--cache-dir")
