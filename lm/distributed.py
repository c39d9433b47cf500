"""Data-parallel runs: the process group, and what rank 0 decides for every rank.

A run is data-parallel when a ``torch.distributed`` process group of more than one process is
initialised (``init_from_env``, from the ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` variables that torchrun, submitit's ``TorchDistributedEnvironment`` or search's
local executor set). Every rank runs the same program, and ``lm.trainer`` splits each optimiser
step's sequences over the ranks. Whatever reaches outside the process (a file written, a report
to Optuna, a cache read whose answer decides what to train) is done by rank 0 alone, and its
answer or its exception goes to every rank (``from_main``, ``main_only``), so that all ranks
take the same branches and meet at the same collectives.

Every collective is bounded by the group's timeout (``DEFAULT_TIMEOUT_S`` unless
``init_from_env`` is told otherwise): a rank whose peers died, hung or failed elsewhere raises
``PeerLostError`` instead of waiting forever.

Example:
    >>> init_from_env()                    # in each of the N processes
    >>> result = train(model, train_ds, val_ds, cfg)   # the same call on every rank
    >>> shutdown()
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "PeerLostError",
    "all_sum",
    "collective",
    "from_main",
    "init_from_env",
    "is_distributed",
    "is_main",
    "main_only",
    "raised_on_main",
    "rank_hosts",
    "shutdown",
    "world",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 1800.0
"""Longest a rank waits at a collective for the others (torch's own default for gloo): long
enough for rank 0 to wait on a cache entry another trial is computing, short enough that a rank
whose peers hang (NCCL does not notice a dead peer by itself) does not hold its GPU for hours."""


class PeerLostError(RuntimeError):
    """A collective failed: another rank died, timed out or stopped on an error of its own."""


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return world()[1] > 1


def is_main() -> bool:
    """True on rank 0 (and in a plain single process): the rank that writes."""
    return world()[0] == 0


def init_from_env(*, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group the environment describes (``WORLD_SIZE`` > 1); NCCL when CUDA is
    available, gloo otherwise. Returns False, doing nothing, outside such an environment.

    Raises:
        ValueError: ``WORLD_SIZE`` or ``RANK`` is not an integer, or the rank is out of range.
    """
    try:
        size, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}, RANK="
                         f"{os.environ.get('RANK')!r}: expected integers") from None
    if size <= 1:
        return False
    if not 0 <= rank < size:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={size})")
    cuda = torch.cuda.is_available()
    if cuda:  # one GPU per rank: LOCAL_RANK among those this process sees
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return True


def shutdown() -> None:
    """Leave the process group, if any (each rank on its own: no collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is what a collective raises when another rank is gone (gloo raises a plain
    RuntimeError naming itself; NCCL a DistError)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and ("gloo" in text or "NCCL" in text))


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a failed collective inside the block into a PeerLostError saying what this rank was
    doing and where it runs."""
    try:
        yield
    except RuntimeError as exc:
        if isinstance(exc, PeerLostError) or not _is_peer_failure(exc):
            raise
        rank, size = world()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PeerLostError(f"rank {rank} of {size} on {socket.gethostname()} lost its peers "
                            f"during {what}: {first[:300]}") from exc


def _broadcast(value: object, what: str) -> object:
    box = [value]
    with collective(what):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def _portable(exc: Exception) -> Exception:
    """``exc`` when it survives pickling (the other ranks raise the same), else a RuntimeError
    with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any pickling failure: send its text instead
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def from_main(fn: Callable[[], T], what: str) -> T:
    """``fn()`` run on rank 0 alone, its value (or exception) handed to every rank; plain
    ``fn()`` outside a process group. ``what`` names the step in a PeerLostError.

    The value travels pickled: keep it small (a decision, a loss, a record; not weights).
    """
    if not is_distributed():
        return fn()
    if is_main():
        try:
            value = fn()
        except Exception as exc:
            _broadcast((False, _portable(exc)), what)
            raise
        _broadcast((True, value), what)
        return value
    ok, value = cast(tuple[bool, Any], _broadcast(None, what))
    if not ok:
        error = cast(Exception, value)
        error.add_note(_RAISED_ON_MAIN)
        raise error
    return cast(T, value)


_RAISED_ON_MAIN = "(raised on rank 0 and handed to this rank)"


def raised_on_main(exc: BaseException) -> bool:
    """True when ``exc`` is rank 0's, raised here by ``from_main``: rank 0 reports it, so the
    other ranks need not."""
    return _RAISED_ON_MAIN in getattr(exc, "__notes__", ())


def main_only(fn: Callable[[], T], what: str) -> T | None:
    """``fn()`` run on rank 0 alone (a write); the other ranks get None, or its exception."""
    if not is_distributed():
        return fn()
    box: list[T | None] = [None]

    def run() -> None:
        box[0] = fn()

    from_main(run, what)
    return box[0]


def all_sum(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place (unchanged outside a process group)."""
    if is_distributed():
        with collective(what):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def rank_hosts() -> list[tuple[str, int]]:
    """``(host, pid)`` of every rank, in rank order (this process alone outside a group)."""
    me = (socket.gethostname(), os.getpid())
    if not is_distributed():
        return [me]
    out: list[Any] = [None] * world()[1]
    with collective("the ranks' roll call"):
        dist.all_gather_object(out, me)
    return [(str(host), int(pid)) for host, pid in out]
