"""The `clara` entry point, with a fast path for the copies shell pipelines run in bulk:
`clara map NAME --write --in FILE` and `clara map NAME --read --out FILE`.

Importing click and building its command costs a start-up that, for a small or medium
copy, outweighs the copy itself. So these two forms are recognised here, without click,
and run by the very code the click command runs (clara_cli.copying), with the same
error lines and exit codes (clara_cli.exits). Anything else, and anything unusual about
these forms (another option, a repeated one, `--json`, completion, a usage error), goes
to the click command line in clara_cli.main, which owns the usage messages.
"""

from __future__ import annotations

import gc
import os
import sys

from clara_core.records import Record

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import NoReturn

FLAGS = {
    "--read": "read",
    "--write": "write",
    "--wait": "wait",
    "--allow-incomplete": "allow_incomplete",
    "--handle": "handle",
}
VALUED = {
    "--in": "in_path",
    "--out": "out_path",
    "-c": "context",
    "--context": "context",
    "--timeout": "timeout",
    "--format": "fmt",
}
FORMATS = ("raw", "npy", "txt")


class MapCopy(Record):
    """A `clara map NAME --write --in FILE` or `--read --out FILE`, fully checked."""

    name: str
    context: str | None
    in_path: str | None
    out_path: str | None
    fmt: str
    handle: bool
    wait: bool
    timeout: float | None
    allow_incomplete: bool


def parse_map_copy(args: list[str]) -> MapCopy | None:
    """The copy `args` ask for, or None unless they are a valid `map` copy in the plain
    spelling (then click parses them, and explains what is wrong)."""
    if len(args) < 2 or args[0] != "map" or "_CLARA_COMPLETE" in os.environ:
        return None
    given: dict[str, object] = {}
    names: list[str] = []
    rest = iter(args[1:])
    for token in rest:
        if not token.startswith("-") or token == "-":
            names.append(token)
            continue
        key, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        field = FLAGS.get(key) if not equals else None
        if field is not None:
            if field in given:
                return None
            given[field] = True
        elif key in VALUED and (value := value if equals else next(rest, "")):
            if value.startswith("-") and value != "-":
                return None  # an option where a value should be: click decides
            field = VALUED[key]
            if field in given:
                return None  # given twice (-c and --context too): click's rules decide
            given[field] = value
        else:
            return None  # --help, --, -cNAME, an unknown option, a missing value ...
    return _checked(names, given)


def _checked(names: list[str], given: dict[str, object]) -> MapCopy | None:
    read, write = bool(given.get("read")), bool(given.get("write"))
    in_path, out_path = given.get("in_path"), given.get("out_path")
    fmt = given.get("fmt", "raw")
    handle = bool(given.get("handle"))
    context = given.get("context") or os.environ.get("CLARA_CONTEXT")
    if len(names) != 1 or read == write or fmt not in FORMATS:
        return None
    if (in_path is None) == (out_path is None) or (in_path is not None and not write):
        return None
    if (out_path is not None or given.get("wait")) and not read:
        return None
    if not context:
        from .target import names_declared

        if not names_declared(handle):
            return None  # click says that a context is needed
    timeout = None
    if "timeout" in given:
        try:
            timeout = float(str(given["timeout"]))
        except ValueError:
            return None
    return MapCopy(
        names[0],
        str(context) if context else None,
        None if in_path is None else str(in_path),
        None if out_path is None else str(out_path),
        str(fmt),
        handle,
        bool(given.get("wait")),
        timeout,
        bool(given.get("allow_incomplete")),
    )


def run_map_copy(copy: MapCopy) -> int:
    """Run the copy; its exit code (errors printed as the click command prints them)."""
    from . import copying, exits
    from .target import Target

    def copy_it() -> int:
        target = Target(copy.context, copy.name, copy.handle, copy.wait, copy.timeout)
        if copy.in_path is not None:
            copying.copy_in(target, copy.in_path, copy.fmt)
        else:
            assert copy.out_path is not None
            copying.copy_out(target, copy.out_path, copy.fmt, copy.allow_incomplete)
        return 0

    return exits.exit_code_of(copy_it)


def main() -> None:
    """Console-script entry point: the fast path when it applies, else the click CLI.

    The launchers (bin/clara, `python -m clara_cli`) call this with the cyclic garbage
    collector off, so that it does not walk the objects of every module while they are
    imported (a full collection and several young ones: ~0.5 ms); the click CLI gets it
    back. A copy is a short process whose objects all die with it: it runs without.
    """
    from clara_core.errors import ClaraError

    from .exits import check_settings, error_line, report, reserve_standard_fds

    reserve_standard_fds()
    if "_CLARA_COMPLETE" not in os.environ:  # completion must never fail loudly
        try:
            check_settings()
        except ClaraError as exc:
            report(error_line(exc))
            sys.exit(exc.exit_code)
    if sys.argv[1:2] == ["run"] or sys.argv[1:3] == ["--json", "run"]:
        from . import fastrun

        request = fastrun.parse_run(sys.argv[1:])
        if request is not None:
            code = fastrun.run(*request)  # (its job turns the collector on: running.py)
            gc.freeze()  # as the click command line does: no last collection at exit
            end_now(code)  # the job's end: every run's last milliseconds
    copy = parse_map_copy(sys.argv[1:])
    if copy is None:
        from .main import main as click_main

        gc.enable()
        click_main()
    else:
        gc.disable()
        end_now(run_map_copy(copy))


def end_now(code: int) -> NoReturn:
    """End a copy's or a run's process with `code` as the interpreter's exit would, minus
    its teardown.

    After a copy nothing is left that the kernel does not take back itself: the copy
    closed its files, maps and locks (each in its own `with`), and what remains (modules,
    caches, kept cut-off pages, descriptors) is this process's memory and files. Tearing it
    down object by object, then the interpreter, costs ~1 ms of a copy that shell
    pipelines run in bulk. The same holds after `clara run` (its runner reaped every
    operator and destroyed or closed the job's context in its `finally`), whose teardown
    (~3 ms, after its last operator ended) is on the wall time of every job. So this runs
    what the interpreter's exit runs that others may rely on: the atexit hooks (a user's,
    a coverage tool's), then the flush of stdout and stderr; and ends with os._exit.
    Skipped: module teardown (the `__del__` of objects still alive, and weakref callbacks:
    clara's only unmap and close) and the final garbage collection (the collector is off,
    or, after a run, what it would walk is frozen). A thread still running, or a flush that
    fails, takes the interpreter's own exit, which waits for it or reports it as always.
    """
    threading = sys.modules.get("threading")  # (imported by a .pth file, say: no thread)
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)  # threads are running: the interpreter joins them
    import atexit

    atexit._run_exitfuncs()  # (it forgets them: the interpreter's exit would not rerun them)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        sys.exit(code)  # the interpreter flushes again, and reports the failure as ever
    os._exit(code)
