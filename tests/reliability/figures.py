"""The figures every reliability area records, printed as one line per area at the end.

Tests add to their area as they go (so a failing test still counts what it did);
`tests/reliability/conftest.py` counts test outcomes and segments left behind, and
prints the summary in `pytest_terminal_summary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TITLES = {
    "crash": "crash matrix",
    "crash_commands": "crash matrix, commands (clara map, clara run)",
    "contention": "contention",
    "bad_input": "bad input",
    "corruption": "corruption",
    "security": "security",
    "races": "races",
    "space": "space",
    "hot_path": "hot-path attacks",
}


@dataclass
class Area:
    """What one area did: trials run, trials that failed, segments left, and its own figures."""

    title: str
    trials: int = 0
    failures: int = 0
    left: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, amount: float) -> None:
        """Add `amount` to the numeric figure `key` (created at 0)."""
        value = float(self.extra.get(key, "0")) + amount
        self.extra[key] = f"{value:g}"

    def set(self, key: str, value: object) -> None:
        """Set the figure `key` to `value` (shown as given)."""
        self.extra[key] = str(value)

    def line(self) -> str:
        """The one-line summary of this area."""
        tests = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.outcomes.items()))
        figures = "".join(f", {key} {value}" for key, value in self.extra.items())
        return (
            f"{self.title}: {self.trials} trials, {self.failures} failures, "
            f"{self.left} segments left{figures} [tests: {tests or 'none'}]"
        )


AREAS: dict[str, Area] = {}
# Modules that add to another module's area: the attacker matrix is part of security.
SHARED_AREAS = {"attacker": "security"}


def area(key: str) -> Area:
    """The Area of module `test_<key>.py`, created on first use."""
    if key not in AREAS:
        AREAS[key] = Area(TITLES.get(key, key))
    return AREAS[key]


def area_of(path: str) -> str:
    """'tests/reliability/test_crash.py' (or a node id in it) -> 'crash'."""
    base = path.split("::", 1)[0].replace("\\", "/").rsplit("/", 1)[-1]
    key = base.removesuffix(".py").removeprefix("test_")
    return SHARED_AREAS.get(key, key)
