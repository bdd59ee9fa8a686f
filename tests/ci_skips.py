"""In CI, a skipped security, space or race test fails the run; elsewhere it stays a skip.

Those tests skip where the machine cannot run them (no root for a second uid, no right to
mount the small tmpfs, no setpriv): fine on a laptop, where `-ra` lists each skip and its
reason, but in CI (`CI=true`) a skip would silently drop a safety promise, so it fails.
A test is one of them if it is marked `must_run`, lives in tests/reliability/ (security,
space, races, attacks, crashes, corruption, contention), or uses the `small_shm_dir` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

MARKER = "must_run"
MUST_RUN_DIRECTORIES = ("reliability",)
MUST_RUN_FIXTURES = ("small_shm_dir",)


def in_ci() -> bool:
    """Whether this run is CI's (CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def must_run(item: pytest.Item) -> bool:
    """Whether `item` is a security, space or race test (a skip of it fails CI)."""
    if item.get_closest_marker(MARKER) is not None:
        return True
    if any(name in getattr(item, "fixturenames", ()) for name in MUST_RUN_FIXTURES):
        return True
    return any(part in MUST_RUN_DIRECTORIES for part in item.path.parent.parts)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: a security, space or race test: a skip of it fails CI (CI=true)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and in_ci() and must_run(item):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        why = why.removeprefix("Skipped: ")
        report.longrepr = f"CI must run this security, space or race test, but it skipped: {why}"
    return report
