"""Running a command's ``main`` in this process and checking it refused its input cleanly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def tree(root: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under ``root`` with its size and mtime: what "nothing written"
    means."""
    out = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out.append((str(path.relative_to(root)), st.st_size if path.is_file() else 0,
                    st.st_mtime_ns))
    return out


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def refused(capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int],
            argv: list[str], root: Path) -> str:
    """Run ``main(argv)``: it must exit 2 with one line on stderr and leave ``root`` as it was;
    returns the line."""
    before = tree(root)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert tree(root) == before, "a refusal wrote something"
    return one_line(err)
