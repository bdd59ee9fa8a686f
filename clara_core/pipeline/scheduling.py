"""When `clara run` starts an operator, when it may settle one that ended early, and
whether its job can reuse what it frees.

The rule (README, "When operators start"):

- an operator starts once every operator it reads from *on disk* has succeeded: a
  folder is only whole when its producer has exited;
- what it reads from other operators in *shared memory* does not hold it back: an
  operator whose inputs from other operators are all shared-memory variables starts at
  job start, so its interpreter, imports and model loading overlap the upstream work.
  Each read of such an input waits until its producer has completed it (`readiness`).

An operator started early may also end early, without having read its inputs. What
the runner does when an operator succeeds (mark it in the tally, free the variables it
was the last to read) then waits until every operator it reads from has been settled
so, since freeing a variable its producer is still writing would fail that producer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .model import SHARED_MEMORY, Operator, Pipeline


def disk_upstream(pipeline: Pipeline, op: Operator) -> set[str]:
    """The operators `op` reads from on disk (by their declared names)."""
    names = set()
    for port in op.inputs:
        if port.source is not None and port.medium != SHARED_MEMORY:
            names.add(pipeline.operator(port.source).name)
    return names


def upstream(pipeline: Pipeline, op: Operator) -> set[str]:
    """Every operator `op` reads from (by their declared names)."""
    return {pipeline.operator(name).name for name in op.upstream}


def starts_early(pipeline: Pipeline, op: Operator) -> bool:
    """Whether `op` starts before some operator it reads from has finished."""
    return bool(upstream(pipeline, op)) and not disk_upstream(pipeline, op)


def may_start(pipeline: Pipeline, op: Operator, succeeded: Callable[[str], bool]) -> bool:
    """Whether `op` may start now: every operator it reads from on disk has succeeded."""
    return all(succeeded(name) for name in disk_upstream(pipeline, op))


def settle_order(
    pipeline: Pipeline, ended: Iterable[str], settled: Callable[[str], bool]
) -> list[str]:
    """Which of the operators that `ended` well may be settled now, in an order where each
    comes after everything it reads from (`settled(name)`: settled already)."""
    done: list[str] = []
    waiting = list(ended)
    progress = True
    while progress:
        progress = False
        for name in list(waiting):
            reads_from = upstream(pipeline, pipeline.operator(name))
            if all(settled(u) or u in done for u in reads_from):
                done.append(name)
                waiting.remove(name)
                progress = True
    return done


def allocates_late(pipeline: Pipeline) -> bool:
    """Whether a shared-memory output of `pipeline` may be allocated after a variable was
    freed: a dynamic one (its operator sizes and allocates it as it runs), or a static one
    of an operator that starts only once another has succeeded. Only then can what the
    job frees serve it again; otherwise the job's context keeps no pool, and the memory
    of a freed variable goes back while the job runs, not all at its end."""
    for op in pipeline.operators:
        for port in op.outputs:
            if port.medium != SHARED_MEMORY:
                continue
            if not port.shape or port.is_dynamic or disk_upstream(pipeline, op):
                return True
    return False
