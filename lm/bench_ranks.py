"""Benchmark: training tokens/s of one process against N data-parallel ones (lm.trainer under
lm.distributed), the same global batch, on random tokens.

    python -m lm.bench_ranks --preset cpu-proxy --ranks 2               # this machine's CPUs, gloo
    python -m lm.bench_ranks --device cuda --preset gpu-proxy --ranks 8 # one GPU per rank, NCCL
    python -m lm.bench_ranks --json

Each run is ``lm.trainer.train`` itself for ``--steps`` optimiser steps of the preset's domain
stage (its global batch; one evaluation at the start, outside the timed steps), in fresh
spawned processes joined by a process group; the figure is the global batch's tokens over the
median time between rank 0's optimiser steps, the first two left out (allocation, set-up). On
the CPU each process gets ``--threads`` torch threads (default: the CPUs this process may use,
shared by the ranks), so the ratio says what splitting the same cores over processes costs or
gains; on GPUs each rank has a device of its own. The ratio is N-process tokens/s over one
process's; the ideal is N on separate devices and about 1 on shared cores.

JSON: {"preset", "device", "steps", "global_batch_tokens", "runs": [{"ranks", "threads",
"tokens_per_s", "final_train_loss"}], "ratio"}. The runs take the same steps, so their last train
losses agree to float rounding (bf16 autocast on GPUs rounds more): a check that the N-process
run trained the same model, not a timing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from typing import Any

import numpy as np

_VOCAB = 257
"""Byte-level text: the domain stage's alphabet."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, port: int, args: dict[str, Any], out: Any) -> None:
    """One rank: join the group, train, and (rank 0) put the rate on ``out``."""
    import torch

    from lm import distributed
    from lm.data import TokenArrayDataset
    from lm.presets import build_model, get_preset
    from lm.trainer import train

    torch.set_num_threads(args["threads"])
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.init_from_env()
    try:
        preset = get_preset(args["preset"])
        cfg = _config(args["preset"], args["steps"])
        rows = cfg.batch_size * cfg.grad_accum
        rng = np.random.default_rng(0)  # every rank holds the same tokens, as with a real corpus
        train_ds = TokenArrayDataset(rng.integers(0, _VOCAB, (4 * rows, preset.seq_len)), _VOCAB)
        val_ds = TokenArrayDataset(rng.integers(0, _VOCAB, (rows, preset.seq_len)), _VOCAB)
        device = f"cuda:{rank}" if args["device"] == "cuda" else "cpu"
        stamps: list[float] = []  # rank 0's clock after each optimiser step
        result = train(build_model(preset, _VOCAB, seed=0), train_ds, val_ds, cfg,
                       device=device,
                       progress=lambda tokens, total: stamps.append(time.perf_counter()))
        if rank == 0:  # the first two steps pay for allocation (and NCCL's set-up)
            step_s = statistics.median(np.diff(stamps[1:]).tolist())
            out.put((rows * (preset.seq_len - 1) / step_s, result.final_train_loss))
    finally:
        distributed.shutdown()


def _config(name: str, steps: int) -> Any:
    from lm.presets import get_preset

    preset = get_preset(name)
    cfg = preset.train_config("domain", seq_len=preset.seq_len, seed=0)
    step_tokens = cfg.batch_size * cfg.grad_accum * (preset.seq_len - 1)
    # evaluate once (at the start, outside the timed steps) on one micro-batch
    return preset.train_config("domain", seq_len=preset.seq_len, seed=0,
                               total_tokens=steps * step_tokens, eval_every_tokens=10**15,
                               eval_sequences=cfg.batch_size)


def measure(preset: str, device: str, ranks: int, steps: int, threads: int
            ) -> tuple[float, float]:
    """Tokens/s of ``ranks`` processes training ``preset`` for ``steps`` steps, and the last
    step's train loss (rank 0's)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    args = {"preset": preset, "device": device, "steps": steps, "threads": threads}
    procs = [ctx.Process(target=_rank, args=(r, ranks, port, args, out)) for r in range(ranks)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [r for r, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"rank(s) {failed} of {ranks} exited with "
                           f"{[procs[r].exitcode for r in failed]}")
    rate, loss = out.get(timeout=10)
    return float(rate), float(loss)


def run(preset: str, device: str, ranks: int, steps: int, threads: int | None) -> dict[str, Any]:
    """One process, then ``ranks``; the JSON-ready result."""
    cores = len(os.sched_getaffinity(0))
    runs = []
    for world in (1, ranks):
        each = threads or (max(1, cores // world) if device == "cpu" else 1)
        rate, loss = measure(preset, device, world, steps, each)
        runs.append({"ranks": world, "threads": each, "tokens_per_s": rate,
                     "final_train_loss": loss})
    cfg = _config(preset, steps)
    from lm.presets import get_preset

    return {"preset": preset, "device": device, "steps": steps,
            "global_batch_tokens": cfg.batch_size * cfg.grad_accum
            * (get_preset(preset).seq_len - 1),
            "runs": runs, "ratio": runs[1]["tokens_per_s"] / runs[0]["tokens_per_s"]}


def _main(argv: list[str]) -> int:
    from lm.presets import PRESETS

    ap = argparse.ArgumentParser(prog="python -m lm.bench_ranks",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-proxy", help=f"one of {', '.join(PRESETS)}")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--ranks", type=int, default=2, help="processes of the parallel run (>= 2)")
    ap.add_argument("--steps", type=int, default=8,
                    help="optimiser steps per run (>= 4; the median of all but the first two)")
    ap.add_argument("--threads", type=int, help="torch threads per process (CPU)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.preset not in PRESETS:
        ap.error(f"--preset {args.preset!r}: not a preset; valid: {', '.join(PRESETS)}")
    if args.ranks < 2:
        ap.error(f"--ranks {args.ranks}: give an integer >= 2")
    if args.steps < 4:
        ap.error(f"--steps {args.steps}: give an integer >= 4")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads {args.threads}: give an integer >= 1")
    if args.device == "cuda":
        import torch

        if torch.cuda.device_count() < args.ranks:
            ap.error(f"--ranks {args.ranks}: this machine has {torch.cuda.device_count()} "
                     "GPU(s); each rank needs one")
    out = run(args.preset, args.device, args.ranks, args.steps, args.threads)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['preset']} on {out['device']}, {out['steps']} steps of "
          f"{out['global_batch_tokens']:,} tokens (the same global batch in every run)")
    for r in out["runs"]:
        print(f"  {r['ranks']} process(es) x {r['threads']} thread(s): "
              f"{r['tokens_per_s']:>10,.0f} tokens/s, last train loss {r['final_train_loss']:.6f}")
    print(f"  ratio {out['runs'][1]['ranks']} processes / 1 = {out['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
