"""Generate (or fetch from the cache) a pre-pre-training dataset.

    python -m nca.generate --band 0.5:1.0 --tokens 2M --cache-dir cache/
    python -m nca.generate --curriculum ascending --band 0.2:0.3 --band 0.3:0.4 --band 0.5:1 \
        --tokens 10M --cache-dir cache/
    python -m nca.generate --source dyck --tokens 2M --cache-dir cache/

Bad values (a band with lower >= upper or outside (0, 1], an alphabet outside 2..15, a grid
not divisible by the patch, a non-positive token count) exit with status 2 and one line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nca._cli import (
    add_nca_arguments,
    check_cache_dir,
    nca_config_from_args,
    parse_shares,
)
from nca.bands import parse_band
from nca.curriculum import FAMILIES, Curriculum
from nca.dataset import DEFAULT_MAX_CANDIDATES, BuiltDataset, build
from nca.spec import SOURCES, DataSpec
from ncaio.cli import OneLineParser, check_device, run_cli

_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9}
MAX_TOKENS = 10**13
"""Most tokens one dataset may hold (the paper's largest NCA budget is about 10^9)."""


def parse_tokens(text: str) -> int:
    """`2000000`, `2e6`, `2M` or `500k` as a positive token count up to ``MAX_TOKENS``."""
    try:
        mult = _SUFFIX.get(text[-1:].lower(), 1)
        value = float(text[:-1] if mult > 1 else text) * mult
    except ValueError:
        value = -1
    if not 1 <= value <= MAX_TOKENS or value != int(value):
        raise ValueError(f"--tokens {text} is invalid; accepted: a positive integer up to "
                         f"{MAX_TOKENS:.0e} (e.g. 2000000, 2e6, 2M, 500k)")
    return int(value)


def spec_from_args(args: argparse.Namespace) -> DataSpec:
    """The DataSpec the flags describe."""
    if args.source != "nca":
        if args.band or args.shares or args.curriculum != "constant":
            raise ValueError(f"--band, --shares and --curriculum apply to --source nca, "
                             f"not {args.source}")
        return DataSpec(source=args.source, dyck_k=args.dyck_k, text_path=args.text)
    cfg = nca_config_from_args(args)
    bands = [parse_band(b) for b in (args.band or ["0.5:1.0"])]
    shares = parse_shares(args.shares)
    if args.curriculum == "constant":
        if len(bands) != 1 or shares is not None:
            raise ValueError("--curriculum constant takes one --band and no --shares; use "
                             "ascending, descending or mixture for several")
        cur = Curriculum.constant(cfg, bands[0])
    else:
        cur = getattr(Curriculum, args.curriculum)(cfg, bands, shares)
    return DataSpec(source="nca", curriculum=cur, sequences_per_rule=args.sequences_per_rule,
                    dyck_k=args.dyck_k, text_path=args.text)


def summary(built: BuiltDataset, wall_s: float) -> list[str]:
    """Closing lines: where, what, how many, how complex, how fast."""
    m = built.manifest
    tok = m["tokens"]
    lines = [
        f"{'cache hit' if built.hit else 'built'}: {built.path}",
        f"key {built.key}  source {m['source']}  vocab {m['vocab_size']}  seq_len {m['seq_len']}",
        (f"tokens: train {tok['train']:,} ({len(built.train):,} seq)  val {tok['val']:,} "
         f"({len(built.val):,} seq)"),
    ]
    for i, st in enumerate(m.get("stages") or []):
        c = st["complexity"] or {}
        lines.append(f"stage {i}: band {st['band']['lower']:.4f}-{st['band']['upper']:.4f} "
                     f"alphabet {st['nca']['alphabet']}  acceptance {st['acceptance_rate']:.1%}  "
                     f"complexity mean {c.get('mean', float('nan')):.4f}")
    rate = (tok["train"] + tok["val"]) / max(wall_s, 1e-9)
    lines.append(f"{wall_s:.2f} s" + ("" if built.hit else f" ({rate / 1e6:.2f}M tokens/s)"))
    return lines


def _progress_bars() -> tuple[Any, dict[str, tqdm]]:
    bars: dict[str, tqdm] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            unit = "rule" if phase == "score" else "seq"
            bars[phase] = tqdm(total=total, desc=phase, unit=unit, leave=False, file=sys.stderr)
        bar = bars[phase]
        if bar.total != total:
            bar.reset(total=total)
        bar.update(done - bar.n)

    return progress, bars


def main(argv: list[str] | None = None) -> int:
    """CLI: build a dataset and print a summary."""
    parser = OneLineParser(prog="python -m nca.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--source", choices=SOURCES, default="nca",
                        help="data source (default nca)")
    add_nca_arguments(parser)
    parser.add_argument("--band", action="append", default=None,
                        help="LOWER:UPPER absolute gzip band, or qLOWER:UPPER profile quantiles; "
                             "repeat for several stages (default 0.5:1.0)")
    parser.add_argument("--curriculum", choices=FAMILIES, default="constant",
                        help="stage order (default constant)")
    parser.add_argument("--shares", default=None, help="comma-separated token shares per band")
    parser.add_argument("--tokens", type=str, required=True, help="training tokens, e.g. 2M")
    parser.add_argument("--seq-len", type=int, default=1024, help="model context (default 1024)")
    parser.add_argument("--sequences-per-rule", type=int, default=1,
                        help="simulations per accepted rule (default 1, as the paper)")
    parser.add_argument("--dyck-k", type=int, default=None, help="bracket types (source dyck)")
    parser.add_argument("--text", type=Path, default=None, help="corpus file (source text)")
    parser.add_argument("--cache-dir", "--out", type=Path, required=True, dest="cache_dir",
                        help="cache root; the dataset goes to CACHE_DIR/nca/<key>/")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device for rollouts (default cpu)")
    parser.add_argument("--max-candidates", type=int, default=DEFAULT_MAX_CANDIDATES,
                        help=f"rules scored per stage at most (default {DEFAULT_MAX_CANDIDATES})")

    def run(args: argparse.Namespace) -> int:
        n_tokens = parse_tokens(args.tokens)
        spec = spec_from_args(args)
        check_cache_dir(args.cache_dir)
        check_device(args.device)
        progress, bars = _progress_bars()
        start = time.perf_counter()
        try:
            built = build(spec, n_tokens, cache_dir=args.cache_dir, seed=args.seed,
                          seq_len=args.seq_len, device=args.device,
                          max_candidates=args.max_candidates, progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
        print("\n".join(summary(built, time.perf_counter() - start)))
        return 0

    return run_cli(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
