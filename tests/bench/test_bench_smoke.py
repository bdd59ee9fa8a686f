"""The benchmark suite runs end to end (tiny sizes, one iteration) and reports every id.

No timing is asserted here: the machine running the tests is shared and noisy. What is
checked is that `python -m bench --smoke` measures P1..P12, P1b, P9w and P11b with their
baselines (and the floors of P1 and P2), writes them as JSON, and leaves nothing behind
(the namespace fixture also checks that).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from bench.harness import Check, Row, percentile, summarise

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDS = {*(f"P{n}" for n in range(1, 12)), "P1b", "P9w", "P11b", "P12"}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One smoke run of the whole bench, in its own namespace under the test session's."""
    namespace = os.environ["CLARA_NAMESPACE"] + "-bench"
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out), "--namespace", namespace],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(out.read_text())


def test_every_benchmark_reports_numbers(smoke: dict) -> None:
    results = smoke["results"]
    assert {row["id"].split(".")[0] for row in results} == IDS
    for row in results:
        assert row["status"] == "measured", (row["id"], row["note"])
        assert _number(row["ours"]["median"]), row
        assert _number(row["ours"]["p99"]), row
        assert row["met"] in (True, False), row
        assert row["target"]
        for stats in row["baselines"].values():
            assert _number(stats["median"]), row
        assert set(row["ratios"]) == set(row["baselines"])
        assert all(_number(r) for r in row["ratios"].values()), row


def test_every_baseline_of_the_issue_is_measured(smoke: dict) -> None:
    names = {name for row in smoke["results"] for name in row["baselines"]}
    for expected in (
        "raw posix_ipc+mmap",
        "raw posix_ipc+mmap, view deleted",
        "SharedArray attach",
        "floor: clara's system calls, almost no Python",
        "floor: clara's system calls, almost no Python, view deleted",
        "multiprocessing.shared_memory",
        "SharedArray",
        "numpy copy, private arrays",
        "clara, no recycling (cold)",
        "python -c 'import click'",
        "cat FILE 1<> x (no truncation)",
        "cat FILE > x (fresh pages)",
        "floor: python -c pass + the same cat",
        "one-way pipe hand-off",
        "pipe round trip",
        ".npy files on tmpfs",
        ".npy files on tmpfs, with clara run's operator defaults",
        ".npy files on disk",
        "clara run, cold (P9)",
        "empty directory",
        "raw file, huge=always tmpfs",
    ):
        assert expected in names


def test_the_floors_are_rows_too(smoke: dict) -> None:
    rows = {row["id"]: row for row in smoke["results"]}
    for floor, raw in (
        ("P1.floor", "raw posix_ipc+mmap"),
        ("P1.deleted.floor", "raw posix_ipc+mmap, view deleted"),
        ("P2.floor", "raw posix_ipc+mmap"),
    ):
        assert list(rows[floor]["baselines"]) == [raw]
        owner = rows[floor.removesuffix(".floor")]
        floor_name = [name for name in owner["baselines"] if name.startswith("floor:")]
        assert len(floor_name) == 1
        assert owner["baselines"][floor_name[0]] == rows[floor]["ours"]


def test_the_handoff_row_says_which_wake_up_regime_each_side_had(smoke: dict) -> None:
    """P8's ratio depends on where the reader wakes (see bench.handoff): the row gives, for
    clara and the one-way pipe, the share of trials woken on the writer's CPU."""
    (row,) = [row for row in smoke["results"] if row["id"] == "P8"]
    regimes = row["details"]["regimes"]
    assert set(regimes) == {"clara", "one-way pipe hand-off"}
    for regime in regimes.values():
        assert 0 <= regime["same_cpu_share"] <= 1
        medians = [regime["same_cpu_median"], regime["other_cpu_median"]]
        assert any(_number(median) for median in medians), regime
    assert "woke on the writer's CPU in" in row["note"]


def test_nothing_left_behind(smoke: dict) -> None:
    assert smoke["meta"]["leftovers"] == []
    assert smoke["meta"]["mode"] == "smoke"


def test_bench_runs_as_a_script() -> None:
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "--quick" in done.stdout and "--json" in done.stdout and "--only" in done.stdout


def test_statistics() -> None:
    stats = summarise([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats.median, stats.low, stats.high, stats.n) == (3.0, 1.0, 5.0, 5)
    assert percentile(list(range(101)), 99) == 99
    assert summarise([7.0]).p99 == 7.0


def test_targets_compare_ratios_and_absolute_values() -> None:
    row = Row("X", "x", "µs", "<= 2x raw", [Check("<=", 2.0, "raw")])
    row.ours, row.baselines["raw"] = summarise([3.0]), summarise([2.0])
    assert row.ratios() == {"raw": 1.5} and row.met is True
    row.checks.append(Check("<=", 2.0))  # absolute: our median itself
    assert row.met is False


def test_the_pipeline_row_gives_the_cpu_time_of_every_job(smoke: dict) -> None:
    """P9 measures each job's CPU time too (bench.pipeline): on a machine of N CPUs no
    job ends in less than its CPU time / N, which its note gives for the cold run."""
    (row,) = [row for row in smoke["results"] if row["id"] == "P9"]
    cpu = row["details"]["cpu_seconds"]
    cold, warm = "clara run, cold (P9)", "clara run --warm-pool (P9w)"
    assert set(cpu) == {cold, warm, *row["baselines"]}
    assert all(values and all(_number(v) and v > 0 for v in values) for values in cpu.values())
    assert "CPU per job" in row["note"] and "cannot take less than" in row["note"]
