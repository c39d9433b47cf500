"""Benchmarks of the NCA engine at the paper's settings (n = 10, grid 12, 1024-token sequences).

    python -m nca.bench            # a table, CPU and (when present) CUDA
    python -m nca.bench --json     # one JSON object per device, one per line

Figures are medians over --runs runs: generation tokens/s (random rules, whole 1026-token
sequences: weights, rollout, tokenisation), complexity scoring rules/s (weights, 19-step rollout,
gzip), and accepted rules/s when searching the bands (0.5, 1.0) and (0.3, 0.4) from scratch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from nca._util import default_workers, derive_seed, ordered_map
from nca.bank import ScoreStream, select_rules
from nca.config import Band, NCAConfig
from nca.nca_source import GEN_CHUNK
from nca.rollout import make_generator, rollout
from nca.rules import sample_rules
from nca.tokens import frame_sequences, frames_per_sequence, patch_tokens
from ncaio.cli import OneLineParser, run_cli

PAPER = NCAConfig()
SEQ_LEN = 1024


def _median_rate(work: Callable[[int], float], runs: int) -> float:
    """Median of work(run) / seconds over `runs` runs, after one warm-up."""
    work(-1)
    rates = []
    for run in range(runs):
        start = time.perf_counter()
        amount = work(run)
        rates.append(amount / (time.perf_counter() - start))
    return statistics.median(rates)


def generate_rate(device: str, runs: int, n_chunks: int) -> float:
    """Tokens/s of sequence generation from random rules (no band search)."""
    frames = frames_per_sequence(SEQ_LEN, PAPER.frame_len)

    def chunk(item: tuple[int, int]) -> int:
        run, c = item
        ids = np.arange(GEN_CHUNK) + GEN_CHUNK * (c + n_chunks * (run + 1))
        params = sample_rules(PAPER.alphabet, 0, ids).to(device)
        states = rollout(params, PAPER, frames, make_generator(derive_seed(run, c), device))
        tokens = frame_sequences(patch_tokens(states, PAPER), PAPER.patch_values,
                                 PAPER.patch_values + 1).cpu().numpy()
        return int(tokens.size)

    def work(run: int) -> float:
        items = [(run, c) for c in range(n_chunks)]
        return sum(ordered_map(chunk, items, default_workers(device)))

    return _median_rate(work, runs)


def score_rate(device: str, runs: int, n_rules: int) -> float:
    """Rules/s of complexity scoring (fresh in-memory streams)."""

    def work(run: int) -> float:
        stream = ScoreStream(PAPER, seed=1000 + run, cache_dir=None, device=device)
        stream.extend(n_rules)
        return stream.n_scored

    return _median_rate(work, runs)


def accept_rate(device: str, runs: int, band: Band, n_accept: int) -> float:
    """Accepted rules/s when searching `band` from scratch."""

    def work(run: int) -> float:
        stream = ScoreStream(PAPER, seed=2000 + run, cache_dir=None, device=device)
        select_rules(stream, band, n_accept, 0, max_candidates=10**7)
        return n_accept

    return _median_rate(work, runs)


def bench(device: str, runs: int, scale: int) -> dict[str, float | str]:
    """All figures for one device."""
    return {
        "generate_tokens_per_s": generate_rate(device, runs, n_chunks=4 * scale),
        "score_rules_per_s": score_rate(device, runs, n_rules=2048 * scale),
        "accept_rules_per_s_0.5_1.0": accept_rate(device, runs, Band(0.5, 1.0), 1024 * scale),
        "accept_rules_per_s_0.3_0.4": accept_rate(device, runs, Band(0.3, 0.4), 256 * scale),
        "device": device,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: print the benchmark figures."""
    parser = OneLineParser(prog="python -m nca.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per device")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument("--scale", type=int, default=1, help="work per run multiplier (default 1)")
    parser.add_argument("--device", action="append", default=None,
                        help="device(s) to measure (default: cpu, and cuda when present)")

    def run(args: argparse.Namespace) -> int:
        if args.runs < 1 or args.scale < 1:
            raise ValueError("--runs and --scale must be integers >= 1")
        devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        for device in devices:
            figures = bench(device, args.runs, args.scale)
            if args.json:
                print(json.dumps(figures))
                continue
            print(f"device {device} (torch threads {torch.get_num_threads()}, medians of "
                  f"{args.runs} runs)")
            for key, value in figures.items():
                if key != "device":
                    print(f"  {key:28s} {value:14,.0f}")
        return 0

    return run_cli(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
