"""Finding and setting aside damaged records in the middle of an Optuna journal file.

A journal is one JSON record per line. A torn *last* record (a writer killed mid-append) is cut
off automatically when a study opens (``search.storage.repair_torn_journal``). A record damaged
*in the middle* (a flipped byte on disk, a bad copy) makes Optuna refuse the whole file, and with
it every intact record. ``scan`` names the damaged records; ``repair`` writes the journal again
with every intact record kept in order, and moves the damaged bytes to a side file, never
deleting them.

Trial ids in a journal are positional (the n-th trial-creating record makes trial id n), so a
damaged record that created a trial is replaced by a placeholder that creates one (WAITING, with
a ``journal_repair`` user attribute saying so); the intact records after it then still reach
their own trials. A record that breaks the JSON but is valid JSON of other content cannot be
told from a good one: the journal holds no checksums.

    python -m search.journal runs/code/journal.log            # which records are damaged
    python -m search.journal runs/code/journal.log --repair   # keep the intact ones
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import TrialState

from ncaio import atomic_write_bytes
from ncaio.cli import OneLineParser

__all__ = ["DamagedRecord", "main", "repair", "scan"]

_CREATE_TRIAL = 4
_TRIAL_ID = re.compile(rb'"trial_id"\s*:\s*(\d+)')
_CREATE_TRIAL_TEXT = re.compile(rb'"op_code"\s*:\s*4\b')
REPAIR_WORKER = "ncasearch-journal-repair"
"""``worker_id`` of the placeholder records a repair writes."""


@dataclass(frozen=True, slots=True)
class DamagedRecord:
    """One line of a journal that is not a journal record."""

    index: int
    """Its record number (0-based line)."""
    start: int
    """Byte offset of its first byte."""
    end: int
    """Byte offset just past its newline."""
    reason: str
    """Why it is not a record (not UTF-8, not JSON, no op_code)."""
    created_trial: bool
    """It created a trial (read from what is left of it, or from the records after it)."""


def scan(path: Path) -> list[DamagedRecord]:
    """The damaged records of the journal at ``path`` (a torn last line is not counted: the
    next writer cuts it off)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[dict[str, Any] | None] = []
    reasons: dict[int, str] = {}
    for i, line in enumerate(lines[:-1]):  # the last piece is "" or a torn tail
        record, reason = _parse(line)
        records.append(record)
        if reason:
            reasons[i] = reason
    damaged, offset, created = [], 0, 0
    for i, line in enumerate(lines[:-1]):
        end = offset + len(line) + 1
        if i in reasons:
            made = bool(_CREATE_TRIAL_TEXT.search(line)) or _next_refers_to(records, i, created)
            damaged.append(DamagedRecord(i, offset, end, reasons[i], made))
            created += made
        elif (records[i] or {}).get("op_code") == _CREATE_TRIAL:
            created += 1
        offset = end
    return damaged


def _parse(line: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte 0x{line[exc.start]:02x} at {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at {exc.pos})"
    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
        return None, "not a journal record (no op_code)"
    return record, ""


def _next_refers_to(records: Sequence[dict[str, Any] | None], index: int, trial_id: int) -> bool:
    """True when a record after ``index`` names ``trial_id`` before any intact record creates
    it: only the damaged record can then have created it."""
    for record in records[index + 1:]:
        if record is None:
            continue
        if record.get("op_code") == _CREATE_TRIAL:
            return False
        if record.get("trial_id") == trial_id:
            return True
    return False


def repair(path: Path) -> tuple[list[DamagedRecord], Path | None]:
    """Rewrite the journal at ``path`` without its damaged records, under the journal's lock.

    The damaged bytes go to ``<journal>.damaged-<UTC time>`` first (each record's line number
    and byte range in a header line before it); a record that created a trial becomes a
    placeholder that creates one. Returns the damaged records and the side file (None when
    there was nothing to repair).
    """
    lock = JournalFileOpenLock(str(path))
    lock.acquire()
    try:
        damaged = scan(path)
        if not damaged:
            return [], None
        data = path.read_bytes()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        side = path.with_name(f"{path.name}.damaged-{stamp}")
        atomic_write_bytes(side, b"".join(
            f"# record {d.index}, bytes {d.start}-{d.end}: {d.reason}\n".encode()
            + data[d.start:d.end] for d in damaged))
        atomic_write_bytes(path, _rewritten(data, damaged, side))
    finally:
        lock.release()
    return damaged, side


def _rewritten(data: bytes, damaged: list[DamagedRecord], side: Path) -> bytes:
    parts, offset = [], 0
    for d in damaged:
        parts.append(data[offset:d.start])
        if d.created_trial:
            parts.append(_placeholder(data[:d.start], side))
        offset = d.end
    parts.append(data[offset:])
    return b"".join(parts)


def _placeholder(before: bytes, side: Path) -> bytes:
    """A record creating a WAITING trial in the study of the last trial created before it."""
    study_id = 0
    for line in reversed(before.split(b"\n")):
        record, _ = _parse(line)
        if record is not None and record.get("op_code") == _CREATE_TRIAL:
            study_id = int(record.get("study_id", 0))
            break
    note = f"its creating record was damaged and set aside in {side.name}"
    return json.dumps({"op_code": _CREATE_TRIAL, "worker_id": REPAIR_WORKER, "study_id": study_id,
                       "datetime_start": None, "state": TrialState.WAITING.value,
                       "user_attrs": {"journal_repair": note}},
                      separators=(",", ":")).encode() + b"\n"


def damage_message(path: Path, damaged: list[DamagedRecord]) -> str:
    """The one line a tool refuses a damaged journal with."""
    first = damaged[0]
    more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
    return (f"journal {str(path)!r}: record {first.index} (bytes {first.start}-{first.end}) is "
            f"damaged: {first.reason}{more}; keep the intact records with: python -m "
            f"search.journal {path} --repair")


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.journal", description=__doc__.splitlines()[0])
    p.add_argument("journal", type=Path, help="an Optuna journal file")
    p.add_argument("--repair", action="store_true",
                   help="rewrite it without the damaged records (their bytes go to a side file)")
    args = p.parse_args(argv)
    if not args.journal.is_file():
        print(f"error: {str(args.journal)!r} is not a file; accepted: an Optuna journal file",
              file=sys.stderr)
        return 2
    if not args.repair:
        damaged = scan(args.journal)
        for d in damaged:
            print(f"record {d.index}: bytes {d.start}-{d.end}: {d.reason}"
                  + (" (it created a trial)" if d.created_trial else ""))
        print(f"{len(damaged)} damaged record(s) in {args.journal}"
              + (f"; repair with: python -m search.journal {args.journal} --repair"
                 if damaged else ""))
        return 0
    damaged, side = repair(args.journal)
    if side is None:
        print(f"{args.journal}: no damaged record; nothing changed")
        return 0
    placeholders = sum(d.created_trial for d in damaged)
    print(f"{args.journal}: set aside {len(damaged)} damaged record(s) in {side}"
          + (f"; {placeholders} trial(s) they created kept as placeholders" if placeholders
             else "") + f"; {os.path.getsize(args.journal)} bytes of intact records kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
