"""The baseline phase: every seed's scratch baseline, computed before the first trial.

Trials score themselves against the scratch baseline of each seed, so the driver computes the
missing ones first, in parallel. A lost baseline job (killed worker, lost Slurm job) is
submitted again, like a lost trial, up to ``max_retries`` times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from search.executors import BaseJob


@dataclass(frozen=True, slots=True)
class LostBaseline:
    """A seed whose baseline job was lost more than ``max_retries`` times."""

    seed: int
    attempts: int
    reason: str
    """The last line of the last loss (the exception, when it is a traceback)."""


def compute(seeds: Sequence[int], submit: Callable[[int], BaseJob], *, at_once: int,
            max_retries: int, wait: Callable[[], None], say: Callable[[str], None],
            on_lost: Callable[[int, str], None] | None = None) -> LostBaseline | None:
    """Run a baseline job per seed, ``at_once`` at a time, until every one has finished.

    Args:
        seeds: seeds without a cached baseline.
        submit: starts the baseline job of a seed.
        at_once: jobs in flight at most: the trials the study runs side by side, so baseline
            jobs share the machine's cores as its trials do (more would oversubscribe them).
        wait: called between two polls of the jobs; it sleeps and keeps the driver alive.
        say: a line for the user.
        on_lost: told ``(seed, reason)`` of each lost job before it is retried; it may raise
            to stop the phase (a full disk).

    Returns:
        None once every baseline finished, or the first seed lost too often (the other jobs
        are then cancelled).
    """
    waiting = list(seeds)
    running: dict[int, BaseJob] = {}
    attempts = dict.fromkeys(seeds, 0)

    def fill() -> None:
        while waiting and len(running) < max(1, at_once):
            seed = waiting.pop(0)
            running[seed] = submit(seed)

    fill()
    while running:
        wait()
        for seed, job in list(running.items()):
            if not job.done():
                continue
            out = job.outcome()
            del running[seed]
            if out.ok:
                continue
            if on_lost is not None:
                on_lost(seed, out.reason)
            attempts[seed] += 1
            if attempts[seed] > max_retries:
                for other in running.values():
                    other.cancel()
                return LostBaseline(seed, attempts[seed], last_line(out.reason))
            say(f"scratch baseline for seed {seed} lost: {last_line(out.reason)}; "
                f"retrying (attempt {attempts[seed]})")
            waiting.insert(0, seed)
        fill()
    return None


def last_line(text: str) -> str:
    """The last non-empty line: the exception itself when ``text`` is a traceback."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no reason given"
