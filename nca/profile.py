"""Print a complexity profile: `python -m nca.profile --alphabet 10 --rules 4096 --seed 0 --json`.

The profile is the score distribution of random rules for the given settings: the 101
percentiles 0..100 and the fractions of rules in the paper's bands (<0.2, 0.2-0.3, 0.3-0.4,
0.4-0.5, 0.5-1), plus max, median and mean (see `nca.profiles`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nca._cli import add_nca_arguments, nca_config_from_args
from nca.complexity import get_measure
from nca.profiles import complexity_profile
from ncaio.cli import OneLineParser, run_cli


def main(argv: list[str] | None = None) -> int:
    """CLI: print a complexity profile."""
    parser = OneLineParser(prog="python -m nca.profile", description=__doc__.split(":")[0])
    add_nca_arguments(parser)
    parser.add_argument("--rules", type=int, default=4096,
                        help="random rules to score (default 4096)")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    parser.add_argument("--measure", default="gzip", help="complexity measure (default gzip)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: none)")
    parser.add_argument("--device", default="cpu", help="torch device for rollouts (default cpu)")
    parser.add_argument("--json", action="store_true", help="print the profile as one JSON object")

    def run(args: argparse.Namespace) -> int:
        if args.rules < 1:
            raise ValueError(f"--rules {args.rules} is invalid; accepted: an integer >= 1")
        get_measure(args.measure)
        prof = complexity_profile(nca_config_from_args(args), args.rules, args.seed, args.measure,
                                  cache_dir=args.cache_dir, device=args.device)
        summary = prof.summary()
        if args.json:
            print(json.dumps(summary))
            return 0
        print(f"{args.measure} profile of {prof.n_rules} rules, alphabet {prof.config.alphabet}, "
              f"seed {args.seed}: median {summary['median']:.4f}, max {prof.max:.4f}")
        for name, frac in summary["band_fractions"].items():
            print(f"  {name:>8}: {100 * frac:5.1f}%")
        return 0

    return run_cli(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
