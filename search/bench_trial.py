"""Benchmark: one trial end to end, without Optuna, on any preset and the machine's device.

Trains the seed's scratch runs (every recipe's, as a study's baseline phase does), then runs the
paper setting (band 30-40%, n = 10) as a study's trial does: NCA data, pre-pre-training,
transfer, downstream. Prints each phase's wall time, training tokens and tokens/s, and the
trial's NCA and net effect. ``--domain-tokens`` cuts the budget so that a large preset fits a
short device slot (the NCA budget follows as ``--nca-fraction`` of it). It imports neither
Optuna nor submitit, so it runs where only torch and numpy are installed (``PYTHONPATH=.``):

    python -m search.bench_trial --preset gpu-proxy --domain-tokens 20000000 --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lm.presets import PRESETS
from ncaio.cli import OneLineParser, run_cli
from search.config import config_from_dict
from search.plan import resolve
from search.space import setting_from_params
from search.trial import TrialContext, make_context, run_trial, scratch_baseline, scratch_runs

PAPER = setting_from_params({"source": "nca", "band": "0.3-0.4", "alphabet": 10})


def bench_trial(preset: str, domain_tokens: int, nca_fraction: float, seed: int,
                cache_dir: Path) -> dict[str, Any]:
    """Wall time, tokens and tokens/s of one seed's scratch runs and of the paper trial."""
    context = _context(preset, domain_tokens, nca_fraction, seed, cache_dir)
    plan = resolve(PAPER, context)
    runs = {run.plan for run in scratch_runs(plan, context)}  # matched = paper's: trained once
    start = time.perf_counter()
    for run in scratch_runs(plan, context):
        scratch_baseline(context, run, seed)
    scratch_s = time.perf_counter() - start
    scratch_tokens = len(runs) * plan.domain_tokens
    start = time.perf_counter()
    record = run_trial(PAPER, context).record()
    trial_s = time.perf_counter() - start
    return {
        "preset": context.preset, "device": context.device, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if context.device == "cuda" else None,
        "nca_tokens": plan.nca_tokens, "domain_tokens": plan.domain_tokens,
        "scratch_runs": len(runs), "scratch_s": scratch_s,
        "scratch_tokens_per_s": scratch_tokens / scratch_s,
        "trial_s": trial_s, "trial_tokens": record.tokens,
        "trial_tokens_per_s": record.tokens / trial_s,
        "loss": record.objective("loss"), "nca_effect_pct": record.objective("nca-effect"),
        "net_effect_pct": record.objective("net-effect"),
        "best_scratch": record.seeds[0].best_scratch_recipe,
    }


def _context(preset: str, domain_tokens: int, nca_fraction: float, seed: int, cache_dir: Path
             ) -> TrialContext:
    study = {"name": "bench-trial", "domain": "code", "preset": preset, "seeds": [seed],
             "cache_dir": str(cache_dir)}
    budget = {"domain_tokens": domain_tokens, "nca_fraction": nca_fraction}
    return make_context(config_from_dict({"study": study, "budget": budget}))


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.bench_trial", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=PRESETS)
    p.add_argument("--domain-tokens", type=int, default=0, help="0: the preset's budget")
    p.add_argument("--nca-fraction", type=float, default=0.02,
                   help="NCA tokens as a share of the downstream budget (the paper: 0.013-0.039)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--json", action="store_true")
    return run_cli(p, _main, argv)


def _main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-trial-") as tmp:
        out = bench_trial(args.preset, args.domain_tokens, args.nca_fraction, args.seed,
                          args.cache_dir or Path(tmp))
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['preset']} on {out['gpu'] or out['device']} (torch {out['torch']}): "
          f"{out['nca_tokens']:,} NCA + {out['domain_tokens']:,} downstream tokens, "
          f"seed {args.seed}")
    print(f"scratch runs ({out['scratch_runs']}):  {out['scratch_s']:8.1f} s  "
          f"{out['scratch_tokens_per_s']:>12,.0f} tokens/s")
    print(f"paper trial:        {out['trial_s']:8.1f} s  "
          f"{out['trial_tokens_per_s']:>12,.0f} tokens/s "
          f"({out['trial_tokens']:,} tokens)")
    print(f"loss {out['loss']:.4f}, NCA effect {out['nca_effect_pct']:+.2f}%, "
          f"net effect {out['net_effect_pct']:+.2f}% (best scratch: {out['best_scratch']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
