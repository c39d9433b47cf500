"""Benchmark: what live progress costs training.

Trains the same preset on the domain corpus with and without progress reporting, alternating
the two so drifting machine load hits both alike, and prints the medians of each and the overhead:
by CPU time of the process (what the writer itself costs; robust on a shared machine) and by wall
time (which also carries other processes' noise). Each overhead is the median over the pairs.
"With" is the path a real trial takes: the trainer's per-step ``progress`` callback into
the worker's Optuna reporter (``search.jobs._OptunaReporter``), which writes
``<work_dir>/progress.json`` every 2 s and the ``progress`` user attribute every 10 s to a journal
storage. It also times the callback alone (calls per second), which bounds the overhead free of
the noise of a shared machine.

    python -m search.bench_progress [--preset tiny|cpu-proxy] [--tokens N] [--runs 5] [--json]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from lm.presets import PRESETS
from ncaio.cli import OneLineParser


def _reporter(root: Path, preset: str) -> Any:
    from search._optuna import trial_id
    from search.config import PrunerSection
    from search.jobs import TrialPayload, _OptunaReporter
    from search.space import Setting
    from search.storage import open_storage
    from search.trial import TrialContext

    storage = str(root / "journal.log")
    study = optuna.create_study(study_name="bench", storage=open_storage(storage))
    trial = study.ask()
    context = TrialContext(domain="code", data="", tokenizer="byte", preset=preset,
                           nca_tokens=1, domain_tokens=1, seeds=(0,), cache_dir=str(root))
    payload = TrialPayload(storage=storage, study_name="bench", trial_id=trial_id(trial),
                           setting=Setting(), context=context, pruner=PrunerSection(),
                           objectives=("loss",), work_dir=str(root / "trial"))
    return _OptunaReporter(payload)


def _train_once(preset_name: str, tokens: int, corpus: Any, progress: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one training run."""
    from lm.presets import build_model, get_preset
    from lm.trainer import train

    preset = get_preset(preset_name)
    cfg = preset.train_config("domain", seq_len=corpus.train.seq_len, seed=0, total_tokens=tokens)
    model = build_model(preset, corpus.vocab_size, seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    train(model, corpus.train, corpus.val, cfg, progress=progress)
    return time.perf_counter() - t0, time.process_time() - c0


def _call_cost_s(reporter: Any, calls: int = 20_000) -> float:
    """Seconds per call of the per-step callback (rate-limited: almost every call returns early)."""
    t0 = time.perf_counter()
    for k in range(calls):
        reporter.progress("domain", 0, k, calls)
    return (time.perf_counter() - t0) / calls


def _paired_pct(off: list[float], on: list[float]) -> float:
    return 100 * statistics.median((b - a) / a for a, b in zip(off, on, strict=True))


def run(preset: str, tokens: int, runs: int) -> dict[str, Any]:
    from lm.corpora import load_domain
    from lm.presets import get_preset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="ncasearch-bench-progress-") as tmp:
        root = Path(tmp)
        corpus = load_domain("code", cache_dir=root / "cache", seq_len=get_preset(preset).seq_len)
        reporter = _reporter(root, preset)

        def with_progress(n: int, total: int) -> None:
            reporter.progress("domain", 0, n, total)

        for _ in range(2):  # warm-up: allocator, caches, thread pool
            _train_once(preset, tokens, corpus, None)
        off, on = [], []
        for _ in range(runs):
            off.append(_train_once(preset, tokens, corpus, None))
            on.append(_train_once(preset, tokens, corpus, with_progress))
        per_call = _call_cost_s(reporter)
        written = json.loads((root / "trial" / "progress.json").read_text())
    from lm.presets import get_preset as preset_of

    p = preset_of(preset)
    steps = max(1, tokens // p.batch_tokens)
    off_wall, off_cpu = (list(x) for x in zip(*off, strict=True))
    on_wall, on_cpu = (list(x) for x in zip(*on, strict=True))
    return {
        "preset": preset, "tokens": tokens, "runs": runs, "threads": torch.get_num_threads(),
        "without_wall_s": off_wall, "with_wall_s": on_wall,
        "without_cpu_s": off_cpu, "with_cpu_s": on_cpu,
        "median_without_cpu_s": statistics.median(off_cpu),
        "median_with_cpu_s": statistics.median(on_cpu),
        "median_without_wall_s": statistics.median(off_wall),
        "median_with_wall_s": statistics.median(on_wall),
        "overhead_cpu_pct": _paired_pct(off_cpu, on_cpu),
        "overhead_wall_pct": _paired_pct(off_wall, on_wall),
        "callback_us": per_call * 1e6,
        "callback_overhead_pct": 100 * per_call * steps / statistics.median(off_wall),
        "last_record_stage": written["stage"],
    }


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.bench_progress", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=PRESETS, help="tiny (most steps per second: "
                   "the worst case for a per-step callback) or cpu-proxy")
    p.add_argument("--tokens", type=int, default=0,
                   help="training tokens per run (default: 64 steps of the preset)")
    p.add_argument("--runs", type=int, default=7, help="runs with and without, alternating")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a trial's "
                   "share of a 2-core machine with 2 workers)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from lm.presets import get_preset

    torch.set_num_threads(args.threads)
    tokens = args.tokens or 64 * get_preset(args.preset).batch_tokens
    r = run(args.preset, tokens, args.runs)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"preset {r['preset']}, {r['tokens']} tokens per run, {r['runs']} runs each, "
          f"{r['threads']} torch threads")
    for label, key in (("without progress", "without"), ("with progress   ", "with")):
        print(f"  {label}: CPU median {r[f'median_{key}_cpu_s']:.3f} s "
              f"({', '.join(f'{x:.3f}' for x in r[f'{key}_cpu_s'])}); wall median "
              f"{r[f'median_{key}_wall_s']:.3f} s")
    print(f"  overhead: {r['overhead_cpu_pct']:+.2f}% CPU time, "
          f"{r['overhead_wall_pct']:+.2f}% wall time "
          f"(median of paired runs; wall time carries the machine's other load)")
    print(f"  the callback alone: {r['callback_us']:.2f} us per step = "
          f"{r['callback_overhead_pct']:.4f}% of training time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
