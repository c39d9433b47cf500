"""Pictures of NCA rules: `python -m nca.show --alphabet 10 --out pictures/`.

For each band (the paper's four by default, or those given with --band), samples rules from the
band, writes a contact sheet of their trajectories (`sheet.png`) and, for the first rule of each
band, a PNG strip and an animated GIF.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nca._cli import add_nca_arguments, nca_config_from_args
from nca.bands import parse_band
from nca.config import PAPER_BANDS
from nca.render import contact_sheet, save_gif, save_png
from nca.trajectories import band_trajectories
from ncaio.cli import OneLineParser, run_cli


def main(argv: list[str] | None = None) -> int:
    """CLI: write pictures of sample rules per band."""
    parser = OneLineParser(prog="python -m nca.show", description=__doc__.split("\n")[0])
    add_nca_arguments(parser)
    parser.add_argument("--band", action="append", default=None,
                        help="LOWER:UPPER, or qLOWER:UPPER for profile quantiles (or any "
                             "spelling of nca.bands.parse_band); repeatable "
                             "(default: the paper's four)")
    parser.add_argument("--rules", type=int, default=4, help="sample rules per band (default 4)")
    parser.add_argument("--frames", type=int, default=24, help="frames per trajectory (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: none)")
    parser.add_argument("--max-candidates", type=int, default=200_000,
                        help="rules scored per band at most (default 200000)")

    def run(args: argparse.Namespace) -> int:
        cfg = nca_config_from_args(args)
        for name in ("rules", "frames", "max_candidates"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} is invalid; "
                                 f"accepted: an integer >= 1")
        # File names follow the text typed (the paper's bands: band_0.2-0.3, ...).
        texts = args.band or [f"{b.lower:g}:{b.upper:g}" for b in PAPER_BANDS]
        bands = [(text, parse_band(text)) for text in texts]  # every typo before any work
        args.out.mkdir(parents=True, exist_ok=True)
        rows = []
        for text, band in bands:
            label, frames = band_trajectories(cfg, band, args.rules, args.frames, args.seed,
                                              args.cache_dir, args.max_candidates)
            rows.append((label, frames))
            stem = "band_" + text.strip().replace(":", "-")
            save_png(frames[0], args.out / f"{stem}.png")
            save_gif(frames[0], args.out / f"{stem}.gif")
            print(f"{label}: {args.out / stem}.png, .gif")
        contact_sheet(rows, args.out / "sheet.png")
        print(f"contact sheet: {args.out / 'sheet.png'}")
        return 0

    return run_cli(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
