"""Data-parallel training (lm.distributed, lm.trainer) in real gloo process groups on the CPU.

One process and two train the same `tiny` run with the same global batch to the same curve
(within RTOL: the ranks' gradients are summed in another order); a two-process run stopped and
resumed from its checkpoint retraces the uninterrupted one bit for bit; a rank that dies makes
the others fail promptly instead of waiting; rank 0's callback decides for every rank.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from lm.distributed import PeerLostError
from lm.presets import build_model, get_preset
from lm.trainer import TrainConfig, TrainingInterrupted, train

from ._ranks import run_ranks
from .conftest import counting_dataset

RTOL = 1e-5
"""Relative tolerance between one process and two: measured differences are ~1e-7 (float32
sums of the same gradients in another order), compounded over a few steps."""


def _data() -> tuple:
    preset = get_preset("tiny")
    return (counting_dataset(256, preset.seq_len, 64, seed=0),
            counting_dataset(32, preset.seq_len, 64, seed=1))


def _cfg(**overrides: object) -> TrainConfig:
    preset = get_preset("tiny")  # 8 sequences of 64 tokens per step, one micro-batch
    fields = {"total_tokens": 8 * 64 * 10, "autocast": "off", "eval_sequences": 16,
              **overrides}
    return preset.train_config("domain", seq_len=preset.seq_len, seed=0, **fields)


def _train(cfg: TrainConfig, checkpoint: str | None = None, stop_after: int = 0) -> object:
    """The same run on every rank: ``(curve, final train loss, steps)``; ``stop_after`` > 0
    makes rank 0's should_stop say yes after that many steps."""
    import torch

    torch.set_num_threads(1)
    train_ds, val_ds = _data()
    polls = iter(range(10**6))
    stop = (lambda: next(polls) + 1 == stop_after) if stop_after else None
    result = train(build_model("tiny", 64, seed=0), train_ds, val_ds, cfg,
                   checkpoint_path=checkpoint,
                   checkpoint_every_tokens=10**9 if checkpoint else None,
                   should_stop=stop)
    return result.curve, result.final_train_loss, result.steps


def _losses(run: object) -> np.ndarray:
    curve, final_train, _ = run  # type: ignore[misc]
    return np.array([v for _, v in curve] + [final_train])


@pytest.mark.parametrize("split", [{}, {"batch_size": 4, "grad_accum": 2}],
                         ids=["sequences-of-one-micro-batch", "whole-micro-batches"])
def test_two_ranks_follow_the_curve_of_one_process(tmp_path: Path, split: dict) -> None:
    cfg = _cfg(**split)
    one = _train(cfg)
    two = run_ranks(_train, (cfg,), 2, tmp_path)
    assert two[0] == two[1], "the ranks disagree on the curve"
    assert [t for t, _ in two[0][0]] == [t for t, _ in one[0]]  # same evaluations, same tokens
    assert two[0][2] == one[2] == 10
    np.testing.assert_allclose(_losses(two[0]), _losses(one), rtol=RTOL)


def test_two_ranks_resume_from_their_checkpoint_bit_for_bit(tmp_path: Path) -> None:
    cfg = _cfg()
    uninterrupted = run_ranks(_train, (cfg,), 2, tmp_path / "a")[0]
    ckpt = tmp_path / "run.pt"
    stopped = run_ranks(_train, (cfg, str(ckpt), 4), 2, tmp_path / "b")
    assert all(isinstance(r, TrainingInterrupted) and r.step == 4 for r in stopped), stopped
    resumed = run_ranks(_train, (cfg, str(ckpt)), 2, tmp_path / "c")
    assert resumed[0] == resumed[1] == uninterrupted
    assert sorted(p.name for p in tmp_path.glob("run.pt*")) == ["run.pt", "run.pt.sha256"]


def _die_at(step: int) -> object:
    """Rank 1 kills itself (SIGKILL, no cleanup) at its ``step``-th batch; rank 0 reports what
    it raised and how long it took."""
    import torch.distributed as dist

    train_ds, val_ds = _data()
    if dist.get_rank() == 1:
        calls = iter(range(10**6))
        get = train_ds.get

        def dying_get(indices: np.ndarray) -> tuple:
            if next(calls) == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return get(indices)

        train_ds.get = dying_get
    start = time.monotonic()
    try:
        train(build_model("tiny", 64, seed=0), train_ds, val_ds, _cfg())
    except PeerLostError as exc:
        return str(exc), time.monotonic() - start
    return "finished", time.monotonic() - start


def test_a_dead_rank_stops_the_others_promptly(tmp_path: Path) -> None:
    group_timeout_s = 60.0
    rank0, rank1 = run_ranks(_die_at, (3,), 2, tmp_path, group_timeout_s=group_timeout_s)
    assert rank1 is None  # killed: no result
    message, took_s = rank0
    assert message.startswith(f"rank 0 of 2 on {os.uname().nodename} "
                              "lost its peers during "), message
    assert took_s < group_timeout_s / 2  # gloo sees the closed socket; no timeout was waited


class _Pruned(Exception):
    pass


def _prune_at(tokens: int) -> object:
    import torch.distributed as dist

    def callback(seen: int, loss: float) -> None:
        assert dist.get_rank() == 0, "the callback ran on another rank than 0"
        if seen >= tokens:
            raise _Pruned(f"pruned at {seen}")

    train_ds, val_ds = _data()
    train(build_model("tiny", 64, seed=0), train_ds, val_ds, _cfg(), callback=callback)
    return "finished"


def test_rank_zero_callback_stops_every_rank(tmp_path: Path) -> None:
    results = run_ranks(_prune_at, (1,), 2, tmp_path)
    assert [type(r) for r in results] == [_Pruned, _Pruned], results
    assert str(results[1]) == str(results[0]) == "pruned at 1536"  # the first evaluation past 0


def test_a_step_that_does_not_split_over_the_ranks_is_refused(tmp_path: Path) -> None:
    results = run_ranks(_train, (_cfg(batch_size=3),), 2, tmp_path)
    assert all(isinstance(r, ValueError) for r in results), results
    assert str(results[0]) == ("batch_size 3 x grad_accum 1 = 3 sequences per step do not split "
                               "evenly over 2 ranks")
