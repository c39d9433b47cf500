"""Benchmark: training tokens/s per preset next to the machine's measured matmul rate.

    python -m lm.bench                      # table, default device (CUDA if present, else CPU)
    python -m lm.bench --json               # one JSON object (see below)
    python -m lm.bench --device cpu --threads 2 --presets tiny,cpu-proxy --autocast off
    python -m lm.bench --nca                # also the NCA stage (vocab 10**4 + 2, the preset's
                                            # NCA context)

JSON: {"device": ..., "matmul_gflops": ..., "presets": {"<name>": {"tokens_per_s": ...,
"model_gflops": ..., "mfu": ...}}, "skipped": {"<name>": "<why>"}}.

Model FLOPs per token = 6 * (non-embedding parameters, head included) + 6 * n_layer * T * C for
causal attention (QK^T and AV over T/2 keys on average, forward and backward); mfu is the model
rate over the matmul rate measured in the same run (fp32 on CPU; the autocast dtype on CUDA).
Every figure is the median of several timed runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from lm.batches import resolve_autocast
from lm.data import TokenArrayDataset
from lm.presets import PRESETS, Preset, build_model
from lm.trainer import TrainConfig, make_optimizer, train_step

_TEXT_VOCAB = 257
_NCA_VOCAB = 10 ** 4 + 2
_CPU_MICRO_TOKENS = 8_192  # CPU runs one micro-batch of at most this many tokens per step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, dtype: torch.dtype, repeats: int = 7) -> float:
    """Median GFLOP/s of a square matmul big enough to run near the device's peak."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        tic = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:  # the first calls pay for allocation and kernel selection
            times.append(time.perf_counter() - tic)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def flops_per_token(preset: Preset, vocab: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 N (no input embedding) + causal attention."""
    return 6 * preset.num_params(vocab, embedding=False) + \
        6 * preset.n_layer * (seq_len - 1) * preset.n_embd


def bench_preset(preset: Preset, device: torch.device, *, vocab: int, seq_len: int,
                 autocast: str, steps: int) -> dict[str, Any]:
    """Median tokens/s of full optimiser steps on random tokens."""
    micro = preset.micro_batch_tokens
    if device.type == "cpu":
        micro = min(micro, _CPU_MICRO_TOKENS)
    batch = max(1, micro // (seq_len - 1))
    rng = np.random.default_rng(0)
    ds = TokenArrayDataset(rng.integers(0, vocab, (4 * batch, seq_len)), vocab)
    model = build_model(preset, vocab).to(device)
    cfg = TrainConfig(total_tokens=10 ** 9, batch_size=batch, lr=1e-4, eval_every_tokens=10 ** 9,
                      autocast=autocast)  # type: ignore[arg-type]
    opt = make_optimizer(model, cfg)
    dtype = resolve_autocast(cfg.autocast, device)
    times = []
    for step in range(steps + 2):
        _sync(device)
        tic = time.perf_counter()
        train_step(model, opt, ds, cfg, step, device, dtype)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if step >= 2:
            times.append(time.perf_counter() - tic)
    tokens_per_s = batch * (seq_len - 1) / statistics.median(times)
    return {"tokens_per_s": tokens_per_s,
            "model_gflops": flops_per_token(preset, vocab, seq_len) * tokens_per_s / 1e9,
            "batch_tokens": batch * (seq_len - 1),
            "autocast": "bf16" if dtype is not None else "fp32"}


def _too_slow(preset: Preset, device: torch.device, rate: float, max_step_s: float
              ) -> str | None:
    micro = preset.micro_batch_tokens
    if device.type == "cpu":
        micro = min(micro, _CPU_MICRO_TOKENS)
    estimate = flops_per_token(preset, _TEXT_VOCAB, preset.seq_len) * micro / (0.5 * rate * 1e9)
    memory_gb = preset.num_params(_TEXT_VOCAB) * 16 / 1e9  # fp32 weights, grads, Adam m and v
    if device.type == "cuda":
        free_gb = torch.cuda.mem_get_info(device)[0] / 1e9
        if memory_gb > 0.8 * free_gb:
            return f"needs ~{memory_gb:.0f} GB for weights and optimiser; {free_gb:.0f} GB free"
    if estimate > max_step_s:
        return f"~{estimate:.0f} s per step estimated on {device.type} (> {max_step_s:.0f} s)"
    return None


def run(device: torch.device, names: list[str], *, autocast: str, steps: int, nca: bool,
        max_step_s: float) -> dict[str, Any]:
    """Benchmark `names` on `device`; returns the JSON-ready result."""
    dtype = resolve_autocast(autocast, device) if device.type == "cuda" else None  # type: ignore
    rate = matmul_gflops(device, dtype or torch.float32)
    out: dict[str, Any] = {"device": str(device) if device.type == "cpu" else
                           torch.cuda.get_device_name(device),
                           "threads": torch.get_num_threads(), "matmul_gflops": rate,
                           "matmul_dtype": str(dtype or torch.float32).replace("torch.", ""),
                           "presets": {}, "skipped": {}}
    for name in names:
        preset = PRESETS[name]
        reason = _too_slow(preset, device, rate, max_step_s)
        if reason:
            out["skipped"][name] = reason
            continue
        runs = [(name, _TEXT_VOCAB, preset.seq_len)]
        if nca:
            runs.append((f"{name}/nca", _NCA_VOCAB, preset.nca_seq_len + 1))
        for key, vocab, seq_len in runs:
            r = bench_preset(preset, device, vocab=vocab, seq_len=seq_len, autocast=autocast,
                             steps=steps)
            out["presets"][key] = {**r, "mfu": r["model_gflops"] / rate}
    return out


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m lm.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated names")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--autocast", default="auto", choices=["auto", "bf16", "off"])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per preset (median)")
    ap.add_argument("--nca", action="store_true", help="also time the NCA-stage shape")
    ap.add_argument("--max-step-s", type=float, default=10.0,
                    help="skip presets whose estimated step exceeds this many seconds")
    args = ap.parse_args(argv)
    names = [n for n in args.presets.split(",") if n]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        ap.error(f"{unknown} not presets; valid: {', '.join(PRESETS)}")
    for name in ("threads", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} {value}: give an integer >= 1")
    if args.max_step_s <= 0:
        ap.error(f"--max-step-s {args.max_step_s:g}: give seconds > 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = run(torch.device(args.device), names, autocast=args.autocast, steps=args.steps,
              nca=args.nca, max_step_s=args.max_step_s)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"device {out['device']}, {out['threads']} threads, matmul "
          f"{out['matmul_gflops']:.0f} GFLOP/s ({out['matmul_dtype']})")
    for name, r in out["presets"].items():
        print(f"  {name:<14} {r['tokens_per_s']:>10,.0f} tok/s {r['model_gflops']:>8.1f} "
              f"GFLOP/s  MFU {100 * r['mfu']:5.1f}%  ({r['autocast']}, "
              f"{r['batch_tokens']} tokens/step)")
    for name, why in out["skipped"].items():
        print(f"  {name:<14} skipped: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
