"""The operator-side driver: Clara's life-cycle around an operator's own Python code.

    from clara_core.driver import Driver

    def execute(driver, payload):
        volume = payload.inputs["volume"].read()           # read-only input
        payload.outputs["smoothed"].write(blur(volume))    # sizes a dynamic output
        return True

    Driver(execute=execute).run()

Life-cycle (each callback optional, called once; return False or raise to fail)::

    prepare(driver)  ->  wait for inputs  ->  execute(driver, payload)  ->  cleanup(driver)

`clara run` may start an operator before the operators it reads from have finished (when
it reads from them in shared memory only), so that its prepare overlaps their work: the
wait lasts until every producer of its inputs has completed them (UpstreamFailed, and a
failed life-cycle, if one failed), then checks that every input is there and whole.
The payload (variables, disk entries, the context) is valid during execute only:
afterwards its maps are ended (write maps marked complete, or incomplete if execute
failed) and its references dropped. Outside `clara run` there is no job: start() raises
a clear InvalidArgument.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Callable, Iterator, Mapping

from ..context import Context
from ..errors import ClaraError, Incomplete, InvalidArgument, NotFound
from ..records import Record
from .completion import tell_runner_complete
from .declared import open_job_context
from .environment import SHARED_MEMORY, Declared, OperatorIO
from .variables import Variable

TYPE_CHECKING = False  # as typing's: the operator's start-up does without typing
if TYPE_CHECKING:
    import uuid
    from typing import NoReturn

Prepare = Callable[["Driver"], object]
Execute = Callable[["Driver", "Payload"], object]
Cleanup = Callable[["Driver"], object]
Notify = Callable[["Driver", str, "str | None"], object]

INITIALIZED, PREPARING, WAITING, EXECUTING = "initialized", "preparing", "waiting", "executing"
CLEANING_UP, FINALIZED = "cleaning-up", "finalized"


class PayloadEntry(Record):
    """A disk input or output: its declared name (may be empty) and local path."""

    name: str
    path: str


class Variables(Mapping[str, Variable]):
    """Variables by name, case-insensitively (Clara names are)."""

    def __init__(self, variables: list[Variable]) -> None:
        self._by_key = {v.name.lower(): v for v in variables}

    def __getitem__(self, name: str) -> Variable:
        try:
            return self._by_key[name.lower()]
        except KeyError:
            known = ", ".join(v.name for v in self._by_key.values()) or "none"
            raise KeyError(f"no variable {name!r} (declared: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return (v.name for v in self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


class Payload:
    """What execute() works on: variables by name, disk entries, and the job's context."""

    def __init__(self, io: OperatorIO, context: Context) -> None:
        self._io = io
        self._context = context
        self._closed = False

        def variables(ports: tuple[Declared, ...]) -> Variables:
            return Variables(
                [Variable(context, p, io.operator) for p in ports if p.medium == SHARED_MEMORY]
            )

        def entries(ports: tuple[Declared, ...]) -> list[PayloadEntry]:
            return [PayloadEntry(p.name or "", p.path or "") for p in ports if p.path]

        self._inputs, self._outputs = variables(io.inputs), variables(io.outputs)
        self._input_entries, self._output_entries = entries(io.inputs), entries(io.outputs)

    @property
    def inputs(self) -> Variables:
        """Shared-memory inputs by name (read-only)."""
        return self._check(self._inputs)

    @property
    def outputs(self) -> Variables:
        """Shared-memory outputs by name (read/write)."""
        return self._check(self._outputs)

    @property
    def fastio_input_entries(self) -> list[Variable]:
        """Clara's spelling: the shared-memory inputs, in declaration order."""
        return list(self.inputs.values())

    @property
    def fastio_output_entries(self) -> list[Variable]:
        """Clara's spelling: the shared-memory outputs, in declaration order."""
        return list(self.outputs.values())

    @property
    def input_entries(self) -> list[PayloadEntry]:
        """Disk inputs (name, local path)."""
        return self._check(self._input_entries)

    @property
    def output_entries(self) -> list[PayloadEntry]:
        """Disk outputs (name, local path); `clara run` creates the directories."""
        return self._check(self._output_entries)

    @property
    def fastio_context(self) -> Context:
        """The job's context (for Clara's manual allocations)."""
        return self._check(self._context)

    def input_path(self, name: str = "") -> str:
        """Local path of the disk input `name` (default: the unnamed or only one)."""
        return _path(self.input_entries, name, "input", self._io.operator)

    def output_path(self, name: str = "") -> str:
        """Local path of the disk output `name` (default: the unnamed or only one)."""
        return _path(self.output_entries, name, "output", self._io.operator)

    def close(self, complete: bool = True) -> None:
        """End every map and drop every reference; the payload is unusable afterwards."""
        if self._closed:
            return
        self._end_maps(complete)
        self._closed = True
        for variable in [*self._inputs.values(), *self._outputs.values()]:
            variable.release()

    def _end_maps(self, complete: bool) -> None:
        """End every map (write maps complete, or incomplete), keeping the references:
        what is then left to do, unmapping, is off the readers' path."""
        for variable in [*self._inputs.values(), *self._outputs.values()]:
            variable.unmap(complete=complete)

    def _check(self, value):
        if self._closed:
            raise InvalidArgument("the payload is only valid during execute()")
        return value


class Driver:
    """Runs an operator's prepare, execute and cleanup callbacks in Clara's order.

    While the operator waits for its inputs, the driver maps every allocated input and
    output ahead (`Variable.premap`), so that execute's maps are instant; `premap=False`
    skips that, for an operator that maps a large variable only in part or not at all
    (it would pay for page tables of the whole variable, about 0.1 ms per MiB).
    """

    def __init__(
        self,
        prepare: Prepare | None = None,
        execute: Execute | None = None,
        cleanup: Cleanup | None = None,
        notify: Notify | None = None,
        app_data: object = None,
        premap: bool = True,
    ) -> None:
        self._prepare, self._execute, self._cleanup = prepare, execute, cleanup
        self._premap = premap
        self._notify = notify
        self.app_data = app_data
        self.state = INITIALIZED
        self._tell_runner = False  # run(): the life-cycle is the process's last work
        self._io: OperatorIO | None = None
        self._outcome: bool | None = None

    @property
    def job_id(self) -> uuid.UUID | None:
        """The run's id (None before start)."""
        import uuid  # here: only for those who ask (start-up)

        return uuid.UUID(self._io.job_id) if self._io else None

    @property
    def job_name(self) -> str | None:
        """The pipeline's name (None before start)."""
        return self._io.pipeline if self._io else None

    @property
    def stage_name(self) -> str | None:
        """This operator's name (None before start)."""
        return self._io.operator if self._io else None

    def start(self) -> bool:
        """Run the whole life-cycle in this thread; True if every step succeeded.

        InvalidArgument when not started by `clara run`.
        """
        if self.state != INITIALIZED:
            raise InvalidArgument("this driver has already been started")
        self._io = OperatorIO.from_environment()
        ok = self._step(PREPARING, self._prepare)
        if ok:
            ok = self._run_execute()
        ok = self._step(CLEANING_UP, self._cleanup) and ok
        self._outcome = ok
        self._set_state(FINALIZED, None if ok else "failed")
        return ok

    def wait_for_completion(self) -> bool:
        """The outcome of the life-cycle (start() runs it to the end)."""
        if self._outcome is None:
            raise InvalidArgument("start() the driver first")
        return self._outcome

    def run(self) -> NoReturn:
        """start(), then exit the process: 0 on success, 1 on failure, or the error's code.

        What exists when run() is called (imported modules, the operator's module-level
        objects) is frozen first (`gc.freeze`): the cyclic garbage collector then never
        walks it again, neither during the life-cycle nor in its collections at exit,
        which otherwise take 20-40 ms of a numpy operator's exit. What the callbacks
        create is collected as usual.

        Once execute has succeeded and its maps are ended, the driver tells `clara run`
        that the operator's outputs are complete (`completion`): the runner checks them
        and lets their readers go on then, before cleanup and the exit. (start() alone
        never does: its caller may go on to write.)
        """
        gc.freeze()
        self._tell_runner = True
        try:
            ok = self.start()
        except ClaraError as exc:
            print(f"clara: error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        sys.exit(0 if ok else 1)

    def _run_execute(self) -> bool:
        assert self._io is not None
        self._set_state(WAITING, None)
        try:
            context = open_job_context(self._io.context)
            payload = Payload(self._io, context)
            if self._premap:
                _premap(payload)
            _check_inputs(payload)
        except ClaraError as exc:
            self._report(f"inputs are not available: {exc}")
            return False
        ok = False
        try:
            ok = self._step(EXECUTING, self._execute, payload)
        finally:
            payload._end_maps(complete=ok)
            if ok and self._tell_runner:
                tell_runner_complete()
            payload.close(complete=ok)
            context.close()
        return ok

    def _step(self, state: str, callback: Callable[..., object] | None, *args: object) -> bool:
        self._set_state(state, None)
        if callback is None:
            return True
        try:
            result = callback(self, *args)
        except Exception:
            import traceback  # here: only when a callback fails (start-up)

            self._report(f"{callback.__name__} raised:\n{traceback.format_exc().rstrip()}")
            return False
        if result is False:
            self._report(f"{callback.__name__} returned False")
            return False
        return True

    def _set_state(self, state: str, detail: str | None) -> None:
        self.state = state
        if self._notify is not None:
            self._notify(self, state, detail)

    def _report(self, message: str) -> None:
        print(f"clara driver [{self.stage_name}]: {message}", file=sys.stderr)
        if self._notify is not None:
            self._notify(self, "error", message)


def _premap(payload: Payload) -> None:
    """While the inputs' producers may still be at work: prepare the maps execute will
    take (page tables filled now, off the critical path). Best effort: any problem is
    left for the map itself to report.

    Inputs, then outputs. (Outputs first, so that an operator would clear its outputs'
    fresh pages for writing before its inputs', was measured and dropped: interleaved,
    cold P9 0.98x, P9w 1.14-1.17x.)"""
    for variable in [*payload.inputs.values(), *payload.outputs.values()]:
        with contextlib.suppress(ClaraError, OSError):
            variable.premap()


def _check_inputs(payload: Payload) -> None:
    """Every input's producer has completed it; it is allocated and completely written."""
    for variable in payload.inputs.values():
        variable.wait_ready()
    for variable in payload.inputs.values():
        if not variable.is_allocated:
            raise NotFound(f"{variable.describe()} does not exist")
        state = variable.allocation.state
        if state != "complete":
            raise Incomplete(f"{variable.describe()} is {state}, not complete")


def _path(entries: list[PayloadEntry], name: str, direction: str, operator: str) -> str:
    if name:
        for entry in entries:
            if entry.name.lower() == name.lower():
                return entry.path
    else:
        unnamed = [e for e in entries if not e.name]
        if unnamed or len(entries) == 1:
            return (unnamed or entries)[0].path
    known = ", ".join(e.name or "(unnamed)" for e in entries) or "none"
    raise NotFound(f"operator '{operator}' has no disk {direction} {name!r} (it has: {known})")
