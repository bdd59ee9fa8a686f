"""`clara run FILE ...` without click: the runner's start-up delays every operator.

A job's first operator starts only once the runner has imported itself, read the pipeline
and checked it; click (with inspect and typing, which nothing else of a run needs) was
about 15 ms of that. So a `clara run` command line in the plain spelling is recognised
here and run by clara_cli.running, the code the click command runs, with the same error
lines and exit codes (clara_cli.exits) and the same --json document. Anything unusual
(--help, `--`, an unknown, abbreviated or repeated option, a missing or empty value, a
value click would refuse: a number that does not parse, a --payload that is not a
readable file ...) goes to the click command, which owns the usage messages.
"""

from __future__ import annotations

import os
import stat

from .running import RunRequest

FLAGS = {"--keep": "keep", "--quiet": "quiet", "-q": "quiet", "--isolate": "isolate"}
VALUED = {
    "--context": "context_name",
    "-c": "context_name",
    "--timeout": "timeout",
    "--grace": "grace",
    "--trace": "trace_file",
    "--job-dir": "job_dir",
    "--payload": "payload",
    "--warm-pool": "warm_pool",
}
REPEATABLE = {
    "--bind": "binds",
    "--bindings": "binding_files",
    "--service": "service_uris",
    "--param": "params",
}
NUMBERS = ("timeout", "grace")


def parse_run(args: list[str]) -> tuple[RunRequest, bool] | None:
    """(the run, whether --json was given) that `args` ask for; None unless they are a
    `run` command line in the plain spelling whose every value click would accept."""
    as_json = args[:1] == ["--json"]  # `clara --json run ...`: the group's option
    if as_json:
        args = args[1:]
    if not args or args[0] != "run" or "_CLARA_COMPLETE" in os.environ:
        return None
    given: dict[str, object] = {}
    repeated: dict[str, list[str]] = {field: [] for field in REPEATABLE.values()}
    files: list[str] = []
    rest = iter(args[1:])
    for token in rest:
        if not token.startswith("-") or token == "-":
            files.append(token)
            continue
        key, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if key == "--json" and not equals:
            as_json = True
        elif key in FLAGS and not equals:
            if FLAGS[key] in given:
                return None
            given[FLAGS[key]] = True
        elif key in VALUED or key in REPEATABLE:
            value = value if equals else next(rest, "")
            if not value or (value.startswith("-") and value != "-"):
                return None  # missing, empty, or an option where a value should be
            if key in REPEATABLE:
                repeated[REPEATABLE[key]].append(value)
            elif VALUED[key] in given:
                return None  # given twice: click's rules decide
            else:
                given[VALUED[key]] = value
        else:
            return None  # --help, --, an unknown or abbreviated option, -qq ...
    if len(files) != 1 or not _acceptable(given, repeated["binding_files"]):
        return None
    for field in NUMBERS:
        if field in given:
            try:
                given[field] = float(str(given[field]))  # as click's FLOAT converts it
            except ValueError:
                return None
    fields = {**given, **{field: tuple(values) for field, values in repeated.items()}}
    return RunRequest(files[0], **fields), as_json  # type: ignore[arg-type]


def _acceptable(given: dict[str, object], binding_files: list[str]) -> bool:
    """Whether click's path checks pass: --payload names a readable file or directory
    (click.Path(exists=True)); each --bindings that exists is a readable non-directory
    (click.Path(dir_okay=False))."""
    payload = given.get("payload")
    if payload is not None and not _readable(str(payload), directory_ok=True, missing_ok=False):
        return False
    return all(_readable(path, directory_ok=False, missing_ok=True) for path in binding_files)


def _readable(path: str, directory_ok: bool, missing_ok: bool) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return missing_ok
    if stat.S_ISDIR(mode) and not directory_ok:
        return False
    return os.access(path, os.R_OK)


def run(request: RunRequest, as_json: bool) -> int:
    """Run the job; its exit code, errors reported as the click command line reports them
    (clara_cli.main's group: one `clara: error:` line and the error's exit code)."""
    from . import exits, render
    from .running import run_job

    render.json_requested = as_json
    return exits.exit_code_of(lambda: run_job(request))
