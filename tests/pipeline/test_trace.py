"""`clara run --trace FILE`: the run as Chrome Trace Event JSON, checked against the format."""

from __future__ import annotations

import json
from pathlib import Path

from .pipes import clara, clara_run, write

PHASES = {"X", "M", "C", "i"}  # complete, metadata, counter, instant: all this trace uses


def check_event(event: dict) -> None:
    """The Trace Event Format's required fields for the phases used here."""
    assert isinstance(event["name"], str) and event["name"]
    assert event["ph"] in PHASES, event
    assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
    assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0, event
    if event["ph"] == "X":
        assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
    if event["ph"] == "C":
        values = list(event["args"].values())
        assert values and all(isinstance(v, (int, float)) for v in values), event
    if event["ph"] == "M":
        assert event["name"] in ("process_name", "thread_name", "thread_sort_index"), event
    if event["ph"] == "i":
        assert event["s"] in ("g", "p", "t"), event


def spans(trace: dict, category: str) -> dict[str, dict]:
    return {
        e["name"]: e for e in trace["traceEvents"] if e["ph"] == "X" and e.get("cat") == category
    }


def end(span: dict) -> float:
    return span["ts"] + span["dur"]


def counter(trace: dict, name: str) -> list[float]:
    events = [e for e in trace["traceEvents"] if e["ph"] == "C" and e["name"] == name]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    return [next(iter(e["args"].values())) for e in events]


def test_trace_of_parallel_branches(examples: Path, tmp_path: Path) -> None:
    trace_file = tmp_path / "run.trace.json"
    code, result, err = clara_run(examples / "ct-branches.yaml", "--trace", str(trace_file))
    assert code == 0, err
    trace = json.loads(trace_file.read_text())
    assert trace["displayTimeUnit"] in ("ms", "ns")
    assert trace["otherData"]["job_id"] == result["job_id"]
    for event in trace["traceEvents"]:
        check_event(event)
    # one track per operator, named after it
    names = {
        e["args"]["name"]: (e["pid"], e["tid"])
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    ops = spans(trace, "operator")
    assert set(ops) == {"acquire", "smooth", "segment", "summarise"}
    for name, span in ops.items():
        assert names[name] == (span["pid"], span["tid"])
        assert span["args"]["status"] == "succeeded" and span["args"]["exit_code"] == 0
    # queued until started
    waiting = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["name"] == "waiting"]
    assert {(e["pid"], e["tid"]) for e in waiting} >= {names["smooth"], names["segment"]}
    # the two branches ran at the same time
    smooth, segment = ops["smooth"], ops["segment"]
    assert smooth["ts"] < end(segment) and segment["ts"] < end(smooth)
    assert max(counter(trace, "operators running")) >= 2
    # each variable lives from its allocation until after its last reader
    variables = spans(trace, "variable")
    assert set(variables) == {v["name"] for v in result["variables"]}
    volume = variables["acquire--volume"]
    assert volume["args"]["readers"] == ["smooth", "segment"]
    assert volume["ts"] >= ops["acquire"]["ts"]
    assert end(volume) >= max(end(smooth), end(segment))
    assert volume["args"]["nbytes"] == 64 * 128 * 128 * 4
    for variable in variables.values():
        for reader in variable["args"]["readers"]:
            assert end(variable) >= end(ops[reader]), variable["name"]
    # bytes in use: all of the volume at some point, nothing at the end
    held = counter(trace, "shared-memory bytes")
    assert max(held) >= volume["args"]["nbytes"] and held[-1] == 0


FAILING = """\
api-version: 0.5.0
name: fails
operators:
- name: first
  container: {command: [python, -c, "raise SystemExit(3)"]}
  output:
  - {name: x, type: array, element-type: uint8, shape: [4]}
  - {name: log, type: stream, element-type: text, path: /log}
- name: second
  container: {command: [python, -c, "pass"]}
  input: [{from: first, name: log, type: stream, element-type: text, path: /log}]
"""


def test_trace_of_a_failed_run_shows_the_failure_and_the_skipped(tmp_path: Path) -> None:
    pipeline = write(tmp_path, FAILING)
    trace_file = tmp_path / "trace.json"
    code, _, _ = clara_run(pipeline, "--trace", str(trace_file))
    assert code == 1
    trace = json.loads(trace_file.read_text())
    for event in trace["traceEvents"]:
        check_event(event)
    first = spans(trace, "operator")["first"]
    assert first["args"]["status"] == "failed" and first["args"]["exit_code"] == 3
    skipped = [e for e in trace["traceEvents"] if e["ph"] == "i" and e["name"] == "skipped"]
    assert len(skipped) == 1
    x = spans(trace, "variable")["first--x"]  # pre-allocated as first started
    assert first["ts"] <= x["ts"] <= end(first) and x["args"]["nbytes"] == 4
    assert counter(trace, "shared-memory bytes") == [0, 4, 0]  # gone with the context


def test_a_trace_file_that_cannot_be_written_fails_before_the_job_runs(tmp_path: Path) -> None:
    pipeline = write(tmp_path, FAILING.replace("SystemExit(3)", "open('ran', 'w')"))
    result = clara("run", str(pipeline), "--trace", str(tmp_path / "missing" / "t.json"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("clara: error: cannot write trace ")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "ran").exists()
