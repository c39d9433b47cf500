"""One trainer for both stages (NCA pre-pre-training and the language domain).

AdamW with linear warmup and cosine decay, gradient accumulation and clipping, bf16 autocast
where the hardware has it, optional torch.compile, evaluation on a fixed held-out split every N
tokens, resumable checkpoints. Batches are a pure function of (seed, step), so a checkpoint needs
only the step to restore the data position, and a resumed run retraces an uninterrupted one.

Data-parallel when a process group of several processes is initialised (lm.distributed): each
rank trains on its share of every optimiser step's sequences under DDP, so the steps are the ones
one process would take (to float rounding); rank 0 alone evaluates, checkpoints and calls the
callbacks, and every rank sees the same curve and stops at the same step.

Example:
    >>> result = train(model, corpus.train, corpus.val, TrainConfig(total_tokens=100_000,
    ...                batch_size=8, lr=3e-3, eval_every_tokens=20_000), device="cpu")
    >>> result.curve[-1]           # (tokens_seen, val_loss)
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F

from lm import distributed
from lm.batches import (
    IGNORE,
    autocast_context,
    batch_indices,
    resolve_autocast,
    to_device_xy,
)
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.data import SequenceDataset
from lm.model import Transformer

__all__ = [
    "DivergenceError",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "batch_indices",
    "evaluate",
    "resolve_autocast",
    "train",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    """Optimisation and evaluation settings for one training run."""

    total_tokens: int
    """Training budget in input tokens (steps = total_tokens // tokens per step, at least 1)."""
    batch_size: int
    """Sequences per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimiser step."""
    lr: float
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine decay, as a fraction of lr, in [0, 1]."""
    warmup_frac: float = 0.05
    """Fraction of the steps spent in linear warmup, in [0, 1)."""
    schedule: Literal["cosine", "warmup-only"] = "cosine"
    """``cosine``: warmup, then cosine decay to min_lr; ``warmup-only``: linear warmup over all
    steps, ending at lr (a checkpoint taken mid-schedule, as the paper transfers its NCA model)."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices (not on norms), >= 0."""
    beta1: float = 0.9
    """AdamW beta1, in [0, 1)."""
    beta2: float = 0.95
    """AdamW beta2, in [0, 1)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables clipping."""
    eval_every_tokens: int
    """Evaluate each time this many more training tokens have been seen (also at 0 and at end)."""
    eval_sequences: int | None = None
    """Validation sequences per evaluation, evenly spread over the split; None = all."""
    eval_batch_size: int | None = None
    """Sequences per evaluation forward pass; None = batch_size."""
    seed: int = 0
    """Seed of the batch order."""
    autocast: Literal["auto", "bf16", "off"] = "auto"
    """'auto' = bf16 on CUDA and on CPUs with AMX, else fp32 (see lm.batches); 'bf16'; 'off'."""
    compile: bool = False
    """Wrap the model in torch.compile (does not change the trajectory's definition)."""
    diverge_factor: float = 3.0
    """Stop with DivergenceError when the train loss exceeds this times ln(vocab_size)."""

    def __post_init__(self) -> None:
        for name in ("total_tokens", "batch_size", "grad_accum", "eval_every_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name}={value!r}: expected an integer >= 1")
        for name in ("eval_sequences", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"TrainConfig.{name}={value!r}: expected None or an integer >= 1")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr={self.lr!r}: expected > 0")
        _check_range("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, closed=True)
        for name in ("warmup_frac", "beta1", "beta2"):
            _check_range(name, getattr(self, name), 0.0, 1.0, closed=False)
        if self.weight_decay < 0 or self.grad_clip < 0 or not self.diverge_factor > 1:
            raise ValueError("TrainConfig: weight_decay and grad_clip must be >= 0, "
                             f"diverge_factor > 1 (got {self.weight_decay}, {self.grad_clip}, "
                             f"{self.diverge_factor})")
        if self.schedule not in ("cosine", "warmup-only"):
            raise ValueError(f"TrainConfig.schedule={self.schedule!r}: "
                             "valid: 'cosine', 'warmup-only'")
        if self.autocast not in ("auto", "bf16", "off"):
            raise ValueError(f"TrainConfig.autocast={self.autocast!r}: "
                             "valid: 'auto', 'bf16', 'off'")

    @property
    def min_lr(self) -> float:
        """Learning rate at the end of the cosine decay."""
        return self.lr * self.min_lr_ratio


def _check_range(name: str, value: float, lo: float, hi: float, *, closed: bool) -> None:
    ok = lo <= value <= hi if closed else lo <= value < hi
    if not ok:
        bracket = "]" if closed else ")"
        raise ValueError(f"TrainConfig.{name}={value!r}: expected in [{lo}, {hi}{bracket}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainResult:
    """What one training run produced."""

    curve: list[tuple[int, float]]
    """Validation loss (nats/token) after each evaluation, keyed by training tokens seen."""
    final_val_loss: float
    """Validation loss at the end of training (nats/token)."""
    final_train_loss: float
    """Training loss of the last optimiser step (nats/token)."""
    tokens_seen: int
    """Training input tokens processed."""
    steps: int
    """Optimiser steps taken."""
    wall_s: float
    """Seconds spent in this run, evaluation included, summed over resumed segments."""
    train_tokens_per_s: float
    """Training throughput of the last segment, evaluation excluded."""
    autocast: str
    """Precision actually used: 'bf16' or 'fp32'."""
    device: str
    """Device trained on."""
    resumed_from_step: int
    """Step the run was resumed from (0 = fresh start)."""


class DivergenceError(RuntimeError):
    """The loss or gradient became non-finite or exploded."""

    def __init__(self, step: int, value: float, what: str = "train loss") -> None:
        super().__init__(f"training diverged at step {step}: {what} = {value}")
        self.step, self.value, self.what = step, value, what

    def __reduce__(self) -> tuple[type, tuple[int, float, str]]:
        # picklable with its fields, so another rank or process raises the same
        return type(self), (self.step, self.value, self.what)


class TrainingInterrupted(Exception):
    """`should_stop()` returned True; the checkpoint (if any) holds the state to resume from."""

    def __init__(self, step: int, tokens_seen: int, checkpoint_path: Path | None) -> None:
        where = f"checkpoint {checkpoint_path}" if checkpoint_path else "no checkpoint path given"
        super().__init__(f"training stopped at step {step} ({tokens_seen} tokens); {where}")
        self.step, self.tokens_seen, self.checkpoint_path = step, tokens_seen, checkpoint_path

    def __reduce__(self) -> tuple[type, tuple[int, int, Path | None]]:
        return type(self), (self.step, self.tokens_seen, self.checkpoint_path)


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds: SequenceDataset, *, n_sequences: int | None = None,
             batch_size: int = 16, device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None) -> float:
    """Mean next-token loss (nats/token) over masked targets of `n_sequences` evenly spread
    sequences of `ds` (all if None). Deterministic: no sampling."""
    device = torch.device(device)
    n = len(ds) if n_sequences is None else min(n_sequences, len(ds))
    chosen = np.unique(np.linspace(0, len(ds) - 1, n).round().astype(np.int64))
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    was_training = model.training
    model.eval()
    for start in range(0, len(chosen), batch_size):
        tokens, mask = ds.get(chosen[start:start + batch_size])
        x, y = to_device_xy(tokens, mask, device)
        with autocast_context(device, dtype):
            logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(),
                               ignore_index=IGNORE, reduction="sum")
        total += loss.double()
        count += int((y != IGNORE).sum())
    model.train(was_training)
    return float(total) / max(count, 1)


def _lr_at(step: int, max_steps: int, cfg: TrainConfig) -> float:
    # 0) warmup-only: one linear ramp over the whole run, the last step at lr
    if cfg.schedule == "warmup-only":
        return cfg.lr * (step + 1) / max_steps
    warmup = int(cfg.warmup_frac * max_steps)
    # 1) linear warmup from lr / warmup to lr
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    # 2) cosine decay from lr to min_lr over the remaining steps
    progress = (step - warmup) / max(1, max_steps - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: Transformer, cfg: TrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)


@dataclass(kw_only=True, slots=True)
class _Run:
    """Mutable progress of a run: exactly what a checkpoint must carry besides the tensors."""

    step: int = 0
    curve: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    train_loss: float = float("nan")
    wall_before_s: float = 0.0
    resumed_from_step: int = 0


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ds: SequenceDataset,
               cfg: TrainConfig, step: int, device: torch.device, dtype: torch.dtype | None
               ) -> tuple[float, float]:
    """One optimiser step's forward and backward passes (gradients accumulated, clipped, not
    applied); returns (train loss, gradient norm before clipping)."""
    total = torch.zeros((), device=device)
    for micro in range(cfg.grad_accum):
        start = (step * cfg.grad_accum + micro) * cfg.batch_size
        tokens, mask = ds.get(batch_indices(len(ds), cfg.batch_size, cfg.seed, start))
        x, y = to_device_xy(tokens, mask, device)
        with autocast_context(device, dtype):
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        (loss / cfg.grad_accum).backward()
        total += loss.detach() / cfg.grad_accum
    params = [p for group in opt.param_groups for p in group["params"]]
    clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    return float(total), float(grad_norm)


def step_rows(cfg: TrainConfig, rank: int, world: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of every optimiser step's ``batch_size * grad_accum`` sequences
    that rank ``rank`` of ``world`` trains on: an equal, contiguous share each.

    Raises:
        ValueError: the step's sequences do not split evenly over ``world`` ranks.
    """
    total = cfg.batch_size * cfg.grad_accum
    if total % world:
        raise ValueError(f"batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum} = {total} "
                         f"sequences per step do not split evenly over {world} ranks")
    per = total // world
    return rank * per, (rank + 1) * per


def data_parallel_step(ddp: torch.nn.parallel.DistributedDataParallel,
                       opt: torch.optim.Optimizer, ds: SequenceDataset, cfg: TrainConfig,
                       step: int, device: torch.device, dtype: torch.dtype | None,
                       rows: tuple[int, int]) -> tuple[float, float]:
    """`train_step` on this rank's ``rows`` of the step, gradients averaged over the ranks.

    The step's loss is train_step's (the mean over micro-batches of each one's token mean): every
    row is weighted by 1 / (its micro-batch's target count x grad_accum), the counts summed over
    the ranks first, and by the world size because DDP averages the ranks' gradients.
    """
    world = distributed.world()[1]
    start, stop = rows
    tokens, mask = ds.get(batch_indices(len(ds), stop - start, cfg.seed,
                                        step * cfg.batch_size * cfg.grad_accum + start))
    x, y = to_device_xy(tokens, mask, device)  # (n, L-1) each, n = stop - start
    micro = torch.arange(start, stop, device=device) // cfg.batch_size  # (n,)
    counts = torch.zeros(cfg.grad_accum, dtype=torch.float64, device=device)
    counts.index_add_(0, micro, (y != IGNORE).sum(1, dtype=torch.float64))
    distributed.all_sum(counts, f"the target count of step {step}")
    weight = (world / (counts.clamp(min=1) * cfg.grad_accum))[micro].float()  # (n,)
    total = torch.zeros((), device=device)
    pieces = range(0, stop - start, cfg.batch_size)  # no piece larger than a micro-batch
    for lo in pieces:
        piece = slice(lo, lo + cfg.batch_size)
        last = lo == pieces[-1]  # gradients are averaged once, after the step's last backward
        with contextlib.nullcontext() if last else ddp.no_sync():
            with autocast_context(device, dtype):
                logits = ddp(x[piece])  # (b, L-1, V)
                per_token = F.cross_entropy(logits.flatten(0, 1), y[piece].flatten(),
                                            ignore_index=IGNORE, reduction="none")
                loss = (per_token.view(y[piece].shape).sum(1) * weight[piece]).sum()
            with distributed.collective(f"the gradient average of step {step}"):
                loss.backward()
        total += loss.detach() / world
    distributed.all_sum(total, f"the train loss of step {step}")
    params = [p for group in opt.param_groups for p in group["params"]]
    clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    return float(total), float(grad_norm)


def _data_parallel(module: torch.nn.Module, device: torch.device
                   ) -> torch.nn.parallel.DistributedDataParallel:
    """``module`` under DDP; its construction copies rank 0's weights to every rank."""
    ids = [torch.cuda.current_device() if device.index is None else device.index] \
        if device.type == "cuda" else None
    # No buffer sync in forward: the model's buffers (rotary tables) are the same everywhere,
    # and a broadcast in a forward that only some ranks run would hang (torch 2.13 renamed it)
    ddp = torch.nn.parallel.DistributedDataParallel
    no_sync: dict[str, Any] = ({"forward_sync_buffers": False}
               if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})
    with distributed.collective("the start of data-parallel training"):
        return ddp(module, device_ids=ids, **no_sync)


def _checkpoint_state(model: Transformer, opt: torch.optim.Optimizer, cfg: TrainConfig,
                      run: _Run, wall_s: float, done: bool) -> dict[str, Any]:
    return {
        "format": "ncasearch-lm-checkpoint/1",
        "model": model.state_dict(),
        "model_config": dataclasses.asdict(model.config),
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "optimizer": opt.state_dict(),
        "train_config": dataclasses.asdict(cfg),
        "step": run.step,
        "curve": list(run.curve),
        "train_loss": run.train_loss,
        "wall_s": wall_s,
        "done": done,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }


def _restore(path: Path, model: Transformer, opt: torch.optim.Optimizer, cfg: TrainConfig
             ) -> tuple[_Run, bool]:
    state = load_checkpoint(path)
    mine = dataclasses.asdict(cfg)
    theirs = state["train_config"]
    diff = [k for k in mine if k != "compile" and mine[k] != theirs.get(k)]
    if diff or state["model_config"] != dataclasses.asdict(model.config):
        what = ", ".join(f"{k}: {theirs.get(k)!r} != {mine[k]!r}" for k in diff) or "model_config"
        raise ValueError(f"checkpoint {str(path)!r} belongs to another run ({what})")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    run = _Run(step=state["step"], curve=[tuple(p) for p in state["curve"]],
               train_loss=state["train_loss"], wall_before_s=state["wall_s"],
               resumed_from_step=state["step"])
    return run, bool(state["done"])


def _check_inputs(model: Transformer, train_ds: SequenceDataset, val_ds: SequenceDataset) -> None:
    for name, ds in (("train_ds", train_ds), ("val_ds", val_ds)):
        if len(ds) < 1:
            raise ValueError(f"{name} is empty")
        if ds.vocab_size > model.config.vocab_size:
            raise ValueError(f"{name}.vocab_size={ds.vocab_size} > the model's vocab_size="
                             f"{model.config.vocab_size}")
        if ds.seq_len - 1 > model.config.max_seq_len:
            raise ValueError(f"{name}.seq_len={ds.seq_len}: the model attends over at most "
                             f"max_seq_len={model.config.max_seq_len} tokens")


def _check_divergence(step: int, loss: float, grad_norm: float, vocab: int,
                      cfg: TrainConfig) -> None:
    if not math.isfinite(loss) or loss > cfg.diverge_factor * math.log(vocab):
        raise DivergenceError(step, loss)
    if not math.isfinite(grad_norm):
        raise DivergenceError(step, grad_norm, "gradient norm")


def _crossed(tokens: int, step_tokens: int, every: int) -> bool:
    return tokens // every > (tokens - step_tokens) // every


def train(model: Transformer, train_ds: SequenceDataset, val_ds: SequenceDataset,
          cfg: TrainConfig, *, device: torch.device | str = "cpu",
          callback: Callable[[int, float], None] | None = None,
          checkpoint_path: str | Path | None = None, checkpoint_every_tokens: int | None = None,
          should_stop: Callable[[], bool] | None = None,
          progress: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train `model` in place and return its validation curve.

    Args:
        model: the transformer (moved to `device`); parameters with requires_grad=False stay
            frozen.
        train_ds: sequences to train on; batch order is a function of (cfg.seed, step).
        val_ds: fixed held-out sequences, evaluated at 0 tokens, every cfg.eval_every_tokens and
            at the end.
        cfg: optimisation settings.
        device: where to train.
        callback: called as callback(tokens_seen, val_loss) after each evaluation; whatever it
            raises (e.g. optuna.TrialPruned) propagates. Data-parallel: called on rank 0 only,
            and what it raises is raised on every rank.
        checkpoint_path: resume from this file if it exists (a finished run returns at once);
            written atomically every `checkpoint_every_tokens`, on interruption and at the end.
            Data-parallel: rank 0 writes it; every rank reads it (a filesystem they share).
        checkpoint_every_tokens: checkpoint period in training tokens; None = only at the end.
        should_stop: polled after every step (rank 0's answer counts); True → checkpoint and
            raise TrainingInterrupted.
        progress: called as progress(tokens_seen, total_tokens) after each optimiser step (for
            live displays; it must be cheap, since it runs every step); on rank 0 only.

    Raises:
        DivergenceError: the train loss or the gradient norm became non-finite or exploded.
        TrainingInterrupted: `should_stop()` returned True.
        ValueError: datasets that do not fit the model, a checkpoint of another run, or a step
            whose sequences do not split evenly over the ranks.
        lm.distributed.PeerLostError: another rank died or stopped (data-parallel only).
    """
    device = torch.device(device)
    _check_inputs(model, train_ds, val_ds)
    step_tokens = cfg.batch_size * cfg.grad_accum * (train_ds.seq_len - 1)
    max_steps = max(1, cfg.total_tokens // step_tokens)
    rank, world = distributed.world()
    rows = step_rows(cfg, rank, world) if world > 1 else None
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    # rank 0 decides, so that every rank resumes (from the same file) or none does
    resume = path is not None and distributed.from_main(path.exists, "the resume decision")
    run, done = _restore(path, model, opt, cfg) if path and resume else (_Run(), False)
    dtype = resolve_autocast(cfg.autocast, device)
    fwd = cast(torch.nn.Module, torch.compile(model)) if cfg.compile else model
    ddp = _data_parallel(fwd, device) if rows is not None else None
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    t0, train_s, first_step = time.perf_counter(), 0.0, run.step

    def record(tokens: int) -> None:
        def evaluate_and_tell() -> float:
            loss = evaluate(fwd, val_ds, n_sequences=cfg.eval_sequences, batch_size=eval_bs,
                            device=device, dtype=dtype)
            if callback is not None:
                callback(tokens, loss)
            return loss

        # what the callback raises (a pruned trial) stops every rank
        run.curve.append((tokens, distributed.from_main(
            evaluate_and_tell, f"the evaluation at {tokens} tokens")))

    def checkpoint(done: bool) -> None:
        if path is not None:
            wall = run.wall_before_s + time.perf_counter() - t0
            distributed.main_only(lambda: save_checkpoint(
                path, _checkpoint_state(model, opt, cfg, run, wall, done)), "a checkpoint")

    if not run.curve:
        record(0)
    while not done and run.step < max_steps:
        for group in opt.param_groups:
            group["lr"] = _lr_at(run.step, max_steps, cfg)
        tic = time.perf_counter()
        if ddp is not None and rows is not None:
            loss, grad_norm = data_parallel_step(ddp, opt, train_ds, cfg, run.step, device,
                                                 dtype, rows)
        else:
            loss, grad_norm = train_step(fwd, opt, train_ds, cfg, run.step, device, dtype)
        _check_divergence(run.step, loss, grad_norm, model.config.vocab_size, cfg)
        opt.step()
        opt.zero_grad(set_to_none=True)
        train_s += time.perf_counter() - tic
        run.step, run.train_loss = run.step + 1, loss
        tokens = run.step * step_tokens
        if progress is not None and rank == 0:
            progress(tokens, max_steps * step_tokens)
        if run.step == max_steps or _crossed(tokens, step_tokens, cfg.eval_every_tokens):
            record(tokens)
        if run.step == max_steps:
            checkpoint(done=True)
        elif checkpoint_every_tokens and _crossed(tokens, step_tokens, checkpoint_every_tokens):
            checkpoint(done=False)
        if run.step < max_steps and should_stop is not None and distributed.from_main(
                should_stop, f"the stop poll after step {run.step}"):
            checkpoint(done=False)
            raise TrainingInterrupted(run.step, tokens, path)
    return TrainResult(
        curve=list(run.curve), final_val_loss=run.curve[-1][1], final_train_loss=run.train_loss,
        tokens_seen=run.step * step_tokens, steps=run.step,
        wall_s=run.wall_before_s + time.perf_counter() - t0,
        train_tokens_per_s=(run.step - first_step) * step_tokens / train_s if train_s else 0.0,
        autocast="bf16" if dtype is not None else "fp32", device=str(device),
        resumed_from_step=run.resumed_from_step)
