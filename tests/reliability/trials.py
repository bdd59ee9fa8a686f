"""Crash trials: run one kill -9 scenario many times, recording each failure.

Every trial runs its checks and records a failure instead of stopping (and cleans up
after itself), so the figures show how many trials went wrong; the test fails at the
end if any did.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable

from clara_core import leaks
from clara_core.names import shm_dir
from tests.cli.clirun import clara

from .figures import Area
from .harness import SAFETY, deadline, our_files

TRIALS = 50  # per crash point
CLI_EVERY = 5  # every 5th trial reclaims with the `clara` command instead of the API


class Trials:
    """Runs the trials of one point, recording each failure instead of stopping."""

    def __init__(self, area: Area, point: str, before: set[str]) -> None:
        self.area = area
        self.point = point
        self.before = before
        self.failures: list[str] = []
        self.count = 0

    def run(self, trial: Callable[[int], None], trials: int) -> None:
        """Run `trial(i)` `trials` times; the test fails at the end if any trial failed."""
        for i in range(trials):
            self.count += 1
            self.area.trials += 1
            try:
                with deadline(4 * SAFETY, f"{self.point} trial {i}"):
                    trial(i)
            except Exception as exc:
                self.area.failures += 1
                self.failures.append(f"trial {i}: {type(exc).__name__}: {exc}")
                if len(self.failures) == 1:
                    self.failures.append(traceback.format_exc())
                self._restore()
        self.area.set(f"{self.point} trials", f"{self.count}")
        assert not self.failures, f"{len(self.failures)} failures at {self.point}:\n" + "\n".join(
            self.failures[:6]
        )

    def _restore(self) -> None:
        """After a failed trial: remove whatever it left, so the next one starts clean."""
        with contextlib.suppress(Exception):
            leaks.reclaim()
        for name in our_files() - self.before:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(shm_dir(), name))


def reclaim(trial: int) -> None:
    """leak-check --fix through the command (every CLI_EVERY-th trial) or the API."""
    if trial % CLI_EVERY == 0:
        result = clara("leak-check", "--fix", timeout=SAFETY)
        assert result.returncode == 0, result.stderr.decode()
    else:
        report = leaks.reclaim()
        kept = [(f.segment.file_name, f.status, why) for f, why in report.kept]
        assert report.after.clean, kept
