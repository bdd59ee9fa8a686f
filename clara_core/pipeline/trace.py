"""A finished run as Chrome Trace Event JSON, the timeline format of Perfetto and chrome://tracing.

    json.dump(chrome_trace(result), file)      # result: what runner.run() returned

Process 1 is the pipeline: one track (thread) per operator, with a `waiting` span from the
job's start until the operator started, then one span for its run (its status, exit code
and pid in `args`); an operator that never started gets an instant `skipped` event.
Counter tracks there show the number of operators running and the shared-memory bytes
held by the job's variables. Process 2 holds one track per variable, with a span from its
allocation to its free (or to the end of the job, when its context was destroyed or
kept).
Times are microseconds since the job started, as the format wants.
"""

from __future__ import annotations

from typing import Any

from .results import RunResult

PIPELINE_PID, VARIABLES_PID = 1, 2
US = 1_000_000  # the format's unit is the microsecond


def chrome_trace(result: RunResult) -> dict[str, Any]:
    """The trace of `result` as one JSON-ready document ({"traceEvents": [...], ...})."""
    end = result.duration
    events: list[dict[str, Any]] = [
        _meta(PIPELINE_PID, 0, "process_name", f"pipeline {result.pipeline}"),
        _meta(VARIABLES_PID, 0, "process_name", f"variables in context {result.context}"),
    ]
    running: list[tuple[float, int]] = []
    for tid, op in enumerate(result.operators, start=1):
        events.append(_meta(PIPELINE_PID, tid, "thread_name", op.name))
        events.append(_meta(PIPELINE_PID, tid, "thread_sort_index", tid, key="sort_index"))
        if op.started is None:
            events.append(_instant(PIPELINE_PID, tid, "skipped", end, {"reason": op.reason}))
            continue
        ended = op.ended if op.ended is not None else end
        if op.started > 0:
            events.append(_span(PIPELINE_PID, tid, "waiting", "queued", 0.0, op.started, {}))
        args = {"status": op.status, "exit_code": op.exit_code, "pid": op.pid}
        if op.reason:
            args["reason"] = op.reason
        events.append(_span(PIPELINE_PID, tid, op.name, "operator", op.started, ended, args))
        running += [(op.started, 1), (ended, -1)]
    held: list[tuple[float, int]] = []
    starts = {op.name: op.started for op in result.operators}
    for tid, variable in enumerate(result.variables, start=1):
        events.append(_meta(VARIABLES_PID, tid, "thread_name", variable.name))
        events.append(_meta(VARIABLES_PID, tid, "thread_sort_index", tid, key="sort_index"))
        allocated = variable.allocated_at
        if allocated is None and variable.nbytes is not None:
            allocated = starts.get(variable.operator)  # made, but not seen being made
        if allocated is None:
            continue  # never allocated
        freed = variable.freed_at if variable.freed_at is not None else end
        args = {
            "operator": variable.operator,
            "element_type": variable.element_type,
            "shape": variable.shape,
            "nbytes": variable.nbytes,
            "readers": variable.consumers,
            "state": variable.state,
        }
        events.append(_span(VARIABLES_PID, tid, variable.name, "variable", allocated, freed, args))
        if variable.nbytes:
            held.append((allocated, variable.nbytes))
            if variable.freed_at is not None or not result.kept:  # else: kept after the job
                held.append((freed, -variable.nbytes))
    events += _counter("operators running", "running", running)
    events += _counter("shared-memory bytes", "bytes", held)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "pipeline": result.pipeline,
            "file": result.file,
            "context": result.context,
            "job_id": result.job_id,
            "status": result.status,
        },
    }


def _meta(pid: int, tid: int, name: str, value: object, key: str = "name") -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "ts": 0, "args": {key: value}}


def _span(
    pid: int, tid: int, name: str, category: str, start: float, end: float, args: dict
) -> dict[str, Any]:
    return {
        "name": name,
        "cat": category,
        "ph": "X",
        "pid": pid,
        "tid": tid,
        "ts": round(start * US, 3),
        "dur": round(max(0.0, end - start) * US, 3),
        "args": args,
    }


def _instant(pid: int, tid: int, name: str, at: float, args: dict) -> dict[str, Any]:
    return {
        "name": name,
        "ph": "i",
        "s": "t",
        "pid": pid,
        "tid": tid,
        "ts": round(at * US, 3),
        "args": args,
    }


def _counter(name: str, series: str, changes: list[tuple[float, int]]) -> list[dict[str, Any]]:
    """One counter event per change, the running total after it (starting from 0)."""
    events = [
        {"name": name, "ph": "C", "pid": PIPELINE_PID, "tid": 0, "ts": 0, "args": {series: 0}}
    ]
    total = 0
    for at, delta in sorted(changes, key=lambda change: (change[0], change[1])):
        total += delta
        events.append(
            {
                "name": name,
                "ph": "C",
                "pid": PIPELINE_PID,
                "tid": 0,
                "ts": round(at * US, 3),
                "args": {series: total},
            }
        )
    return events
