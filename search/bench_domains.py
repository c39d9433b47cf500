"""Benchmark: one multi-domain trial against three one-domain trials of the same setting.

Scratch baselines are computed first and shared (a study computes them once, whatever its
trials); then the paper setting runs once on code, math and web together, and once per domain
with a cold pre-pre-training cache each time (three separate studies, nothing shared). Prints
the wall time and training tokens of both and their ratio.

    python -m search.bench_domains [--data ../shared/data] [--preset tiny] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lm.presets import PRESETS
from ncaio.cli import OneLineParser
from search.config import DOMAINS, config_from_dict
from search.plan import resolve
from search.space import setting_from_params
from search.trial import TrialContext, make_context, run_trial, scratch_baseline, scratch_runs

PAPER = setting_from_params({"source": "nca", "band": "0.3-0.4", "alphabet": 10})


def _context(data: Path, cache: Path, preset: str, seeds: list[int], domains: tuple[str, ...]
             ) -> TrialContext:
    study: dict[str, Any] = {"name": "bench", "domains": list(domains), "preset": preset,
                             "seeds": seeds, "cache_dir": str(cache),
                             "data": {d: str(data / d) for d in domains}}
    return make_context(config_from_dict({"study": study}))


def _timed(context: TrialContext, cache: Path) -> tuple[float, int]:
    """Seconds and training tokens of one trial with no pre-pre-trained checkpoint cached."""
    shutil.rmtree(cache / "ppt", ignore_errors=True)
    shutil.rmtree(cache / "nca", ignore_errors=True)
    start = time.perf_counter()
    record = run_trial(PAPER, context).record()
    return time.perf_counter() - start, record.tokens * len(context.seeds)


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of ints") from None


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.bench_domains", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path,
                   default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--preset", default="tiny", choices=PRESETS)
    p.add_argument("--seeds", type=_seeds, default="0,1")
    args = p.parse_args(argv)
    seeds = args.seeds
    with tempfile.TemporaryDirectory(prefix="bench-domains-") as tmp:
        cache = Path(tmp)
        multi = _context(args.data, cache, args.preset, seeds, DOMAINS)
        for one in multi.per_domain():  # the scratch runs every study computes once
            for seed in seeds:
                for run in scratch_runs(resolve(PAPER, one), one):
                    scratch_baseline(one, run, seed)
        multi_s, multi_tokens = _timed(multi, cache)
        single = [_timed(_context(args.data, cache, args.preset, seeds, (d,)), cache)
                  for d in DOMAINS]
    single_s, single_tokens = sum(s for s, _ in single), sum(t for _, t in single)
    print(f"multi-domain trial:     {multi_s:7.1f} s  {multi_tokens:>10,} tokens")
    print(f"3 one-domain trials:    {single_s:7.1f} s  {single_tokens:>10,} tokens")
    print(f"ratio (multi / three):  {multi_s / single_s:7.2f} wall  "
          f"{multi_tokens / single_tokens:.2f} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
