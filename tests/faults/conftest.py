"""Fault-injection suite: the faults, each against the undamaged reference run of the smoke study
(``reference`` in tests/conftest.py), and a table at the end.

Each test's docstring (first line) names the fault; a test may add what it saw with ``note``.
The table of faults and outcomes is printed after the run (``pytest_terminal_summary``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

_LABELS: dict[str, str] = {}
_NOTES: dict[str, list[str]] = {}
_ROWS: list[tuple[str, str, float, str]] = []


@pytest.fixture
def note(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to this fault's row of the summary table."""
    return _NOTES.setdefault(request.node.nodeid, []).append


def pytest_runtest_setup(item: pytest.Item) -> None:
    doc = (getattr(item, "function", None).__doc__ or item.name).strip().splitlines()[0]
    param = f" [{item.callspec.id}]" if hasattr(item, "callspec") else ""
    _LABELS[item.nodeid] = doc + param


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and report.passed:
        return
    if report.when == "teardown" and not report.failed:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfail (expected)" if report.skipped else "XPASS"
    else:
        outcome = report.outcome.upper() if not report.passed else "ok"
    _ROWS.append((_LABELS.get(report.nodeid, report.nodeid), outcome, report.duration,
                  "; ".join(_NOTES.get(report.nodeid, []))))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    terminalreporter.section("faults injected and outcomes")
    width = max(len(r[0]) for r in _ROWS)
    terminalreporter.write_line(f"{'fault':<{width}}  {'outcome':<16} {'s':>5}  what was seen")
    for label, outcome, duration, text in _ROWS:
        terminalreporter.write_line(f"{label:<{width}}  {outcome:<16} {duration:5.1f}  {text}")
