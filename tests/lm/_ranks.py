"""Run a function in N local processes joined by a gloo process group (tests of lm.distributed).

Each process sets the torchrun variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), joins the group with ``lm.distributed.init_from_env``, runs ``fn(*args)`` and
pickles what it returned, or the exception it raised, to ``<folder>/rank<r>.pkl``. Every wait is
bounded: the group's collectives by ``group_timeout_s``, the processes by ``timeout_s``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(fn: Callable[..., Any], args: tuple, rank: int, world: int, port: int,
               folder: str, group_timeout_s: float) -> None:
    import torch

    from lm import distributed

    torch.set_num_threads(1)  # two ranks on a 2-core machine
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.init_from_env(timeout_s=group_timeout_s)
    try:
        value: Any = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        value = exc
    finally:
        distributed.shutdown()
    with open(Path(folder) / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(value, f)


def run_ranks(fn: Callable[..., Any], args: tuple, world: int, folder: Path, *,
              timeout_s: float = 240.0, group_timeout_s: float = 60.0) -> list[Any]:
    """``fn(*args)`` on ranks 0..world-1; each rank's value or exception (None when the rank
    left no result: it was killed). Raises TimeoutError when a process outlives ``timeout_s``."""
    folder.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_rank_main, args=(fn, args, r, world, port, str(folder),
                                                  group_timeout_s)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
        p.join(5)
    if alive:
        raise TimeoutError(f"{len(alive)} rank(s) still running after {timeout_s:.0f} s")
    out = []
    for r in range(world):
        path = folder / f"rank{r}.pkl"
        out.append(pickle.loads(path.read_bytes()) if path.is_file() else None)
    return out
