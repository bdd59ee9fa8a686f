"""Reliability suite: per-area figures, leftovers counted, a summary line per area at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from clara_core.names import shm_dir

from . import figures


@pytest.fixture
def area(request: pytest.FixtureRequest) -> figures.Area:
    """The figures of the area this test belongs to (its module: test_<area>.py)."""
    return figures.area(figures.area_of(str(request.path)))


@pytest.fixture(autouse=True)
def _count_leftovers(namespace: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """Count the segments a test leaves in its namespace (torn down before the check)."""
    directory = shm_dir()  # before a test moves it (small_shm_dir checks its own)
    yield
    prefix = namespace + "."
    left = [name for name in os.listdir(directory) if name.startswith(prefix)]
    figures.area(figures.area_of(str(request.path))).left += len(left)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each reliability test's outcome (passed, failed, skipped, error) in its area."""
    if report.when == "call" and hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.when == "call":
        outcome = report.outcome
    elif report.when == "setup" and report.skipped:
        outcome = "skipped"
    elif report.failed:
        outcome = "error"  # a fixture failed, e.g. the namespace was left dirty
    else:
        return
    counts = figures.area(figures.area_of(report.nodeid)).outcomes
    counts[outcome] = counts.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per area: trials, failures, segments left and the area's own figures."""
    if not figures.AREAS:
        return
    terminalreporter.section("clara reliability figures")
    for key in figures.TITLES:
        if key in figures.AREAS:
            terminalreporter.write_line(figures.AREAS[key].line())
