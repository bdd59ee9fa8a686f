"""`clara run` without click (clara_cli.fastrun) says and exits exactly as the click
command does: each case runs both command lines as real subprocesses and compares them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from clara_cli.fastrun import parse_run
from clara_cli.running import RunRequest

FAST = [sys.executable, "-m", "clara_cli"]  # what `clara` runs: the fast path first
# The click command line, reached directly (what the fast path hands anything unusual to).
CLICK = [sys.executable, "-c", "import sys; from clara_cli.main import main; main()"]
LOADED = """
import atexit, runpy, sys
atexit.register(lambda: sys.stderr.write("CLICK:" + str("click" in sys.modules) + "\\n"))
sys.argv = ["clara", *sys.argv[1:]]
runpy.run_module("clara_cli", run_name="__main__")
"""

PIPELINE = """\
api-version: 0.5.0
orchestrator: Clara
name: pair
parameters: {{code: 0}}
operators:
- name: produce
  container: {{command: [bash, -c, 'echo made; printf 12345678 | clara map s --write --in -']}}
  output:
  - {{name: s, type: array, element-type: int32, shape: [2]}}
- name: consume
  container:
    command: [bash, -c, 'clara map s --read --out /dev/null; echo read; exit ${{{{ code }}}}']
  input:
  - {{from: produce, name: s, type: array, element-type: int32, shape: [2]}}
{extra}"""
# consume starts with produce (its one input is a shared-memory variable) and prints only
# after its read, which waits for produce: so "made" comes before "read" in every run.


def pipeline(directory: Path, extra: str = "") -> Path:
    path = directory / "pair.yaml"
    path.write_text(PIPELINE.format(extra=extra))
    return path


def both(tmp_path: Path, *args: str) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of `clara ARGS` through each command line, with what
    must differ between two runs (context, job directory, times) made equal. ARGS may
    hold {job}: a job directory of each run's own, and {ctx}: a context of its own."""
    outcomes = []
    for index, command in enumerate((FAST, CLICK)):
        job, ctx = str(tmp_path / f"job{index}"), f"fastrun-{index}"
        argv = [arg.format(job=job, ctx=ctx) for arg in args]
        done = subprocess.run([*command, *argv], capture_output=True, text=True, timeout=60)
        outcomes.append(tuple(_same(text, job, ctx) for text in (done.stdout, done.stderr)))
        outcomes[-1] = (done.returncode, *outcomes[-1])
    return outcomes


def _same(text: str, job: str, ctx: str) -> str:
    text = re.sub(r"pair-[0-9a-f]{8}\b", "CTX", text.replace(job, "JOB").replace(ctx, "CTX"))
    text = re.sub(r"\b\d+\.\d+(e-?\d+)?", "T", text)  # times and durations
    text = re.sub(r'"pid": \d+', '"pid": PID', text)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f-]{14,}", "UUID", text)  # the job id


@pytest.mark.parametrize(
    "args",
    [
        ("--json", "run", "{file}", "--context", "{ctx}", "--job-dir", "{job}"),
        ("run", "{file}", "--json", "-q", "--context={ctx}", "--job-dir", "{job}"),
        ("run", "{file}", "-q", "-c", "{ctx}", "--job-dir", "{job}", "--keep"),
        ("run", "{file}", "--job-dir", "{job}", "--context", "{ctx}", "--param", "code=3"),
        ("run", "{file}", "--job-dir", "{job}", "-q", "--param", "code=3", "--json"),
    ],
    ids=["json", "json-after", "table-kept", "failed", "failed-quiet-json"],
)
def test_a_run_reports_as_the_click_command_does(tmp_path: Path, args: tuple[str, ...]) -> None:
    file = str(pipeline(tmp_path))
    try:
        fast, slow = both(tmp_path, *(arg.replace("{file}", file) for arg in args))
    finally:
        if "--keep" in args:
            for index in (0, 1):
                subprocess.run([*FAST, "destroy", "context", f"fastrun-{index}"], check=True)
    assert fast == slow


def test_the_cases_above_succeed_and_fail_for_real(tmp_path: Path) -> None:
    """(So that the comparisons above compare outcomes worth comparing.)"""
    file = str(pipeline(tmp_path))
    (fast, _), (failed, _) = (
        both(tmp_path, "--json", "run", file, "--job-dir", "{job}"),
        both(tmp_path, "--json", "run", file, "--job-dir", "{job}x", "--param", "code=3"),
    )
    assert fast[0] == 0 and '"status": "succeeded"' in fast[1]
    assert failed[0] == 1 and "operator 'consume' exited with code 3" in failed[2]
    # -c NAME, as every command that takes a context spells it, names the job's context
    for code, out, _ in both(tmp_path, "--json", "run", file, "-c", "{ctx}", "--job-dir", "{job}c"):
        assert code == 0 and '"context": "CTX"' in out


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("run", "{file}", "--timeout", "0"), 2),  # the fast path's own refusal
        (("run", "{file}", "--grace", "inf"), 2),
        (("run", "{dir}/missing.yaml"), 3),
        (("run", "{file}", "--param", "nosuch=1"), 2),
        (("run", "{file}", "--bind", "nosuch=true"), 2),
        (("run", "{file}", "--service", "db=http://x"), 2),
        (("run", "{file}", "--bindings", "{dir}/none.yaml"), 3),
        (("run", "{file}", "--warm-pool", "bad/name"), 2),
        (("run", "{file}", "--trace", "{dir}/no/such/dir/t.json"), 2),
        (("run", "{file}", "--timeout", "soon"), 2),  # these go to click: usage errors
        (("run", "{file}", "--payload", "{dir}/none"), 2),
        (("run", "{file}", "--bindings", "{dir}"), 2),
        (("run", "{file}", "--context", "a", "--context", "b", "--timeout", "0"), 2),
        (("run", "{file}", "--time", "1"), 2),
        (("run", "{file}", "--timeout"), 2),
        (("run",), 2),
        (("run", "{file}", "{file}"), 2),
        (("run", "{file}", "--keep=yes"), 2),
    ],
)
def test_refusals_are_the_same_line_and_exit_code(
    tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    file = str(pipeline(tmp_path))
    argv = [arg.replace("{file}", file).replace("{dir}", str(tmp_path)) for arg in args]
    fast, slow = both(tmp_path, *argv)
    assert fast == slow
    assert fast[0] == code, fast
    assert fast[1] == "" and "Traceback" not in fast[2]
    assert fast[2].strip().splitlines()[-1].startswith("clara: error: "), fast


def test_an_unbound_operator_is_listed_the_same(tmp_path: Path) -> None:
    """The lines before the error (one per operator without a command) come out alike."""
    file = pipeline(tmp_path, "- name: third\n  container: {image: busybox}\n")
    fast, slow = both(tmp_path, "run", str(file))
    assert fast == slow
    assert fast[0] == 2 and "third" in fast[2] and len(fast[2].splitlines()) > 1, fast


def loads_click(*args: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args], capture_output=True, text=True, timeout=60
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("CLICK:"), done.stderr
    return last == "CLICK:True"


def test_a_plain_run_loads_no_click_and_anything_else_still_reaches_it(tmp_path: Path) -> None:
    file = str(pipeline(tmp_path))
    assert not loads_click("run", file, "-q")
    assert not loads_click("--json", "run", file, "--job-dir", str(tmp_path / "j"))
    assert loads_click("run", file, "--timeout", "soon")
    assert loads_click("run", "--help")


def test_which_command_lines_the_fast_path_takes(tmp_path: Path) -> None:
    file = str(pipeline(tmp_path))
    request, as_json = parse_run(
        ["--json", "run", file, "-q", "--timeout=2.5", "--bind", "a=b", "--bind=c=d", "--keep"]
    ) or (None, None)
    assert request == RunRequest(file, keep=True, timeout=2.5, quiet=True, binds=("a=b", "c=d"))
    assert as_json is True
    assert parse_run(["run", file]) == (RunRequest(file), False)
    assert parse_run(["run", file, "-c", "job"]) == (RunRequest(file, context_name="job"), False)
    assert parse_run(["run", file, "--payload", str(tmp_path)]) == (
        RunRequest(file, payload=str(tmp_path)),
        False,
    )
    for refused in (
        ["run", file, "--help"],
        ["run", file, "--"],
        ["run", file, "--context", ""],
        ["run", file, "--context", "-q"],
        ["run", file, "--grace", "1", "--grace", "2"],
        ["run", file, "-c", "a", "--context", "b"],
        ["run", file, "-q", "--quiet"],
        ["run", file, "--payload", str(tmp_path / "none")],
        ["map", file],
        ["--version"],
    ):
        assert parse_run(refused) is None, refused


def test_a_stderr_that_cannot_take_the_runs_lines_changes_no_exit_code(tmp_path: Path) -> None:
    """The operators' lines, remarks and the unbound-operator list go to stderr while the
    job runs: on a full disk they are lost, but the job runs on and its exit code is its
    own (not 1 from the failed write's traceback), on both command lines."""
    good, unbound = pipeline(tmp_path), tmp_path / "unbound.yaml"
    unbound.write_text(PIPELINE.format(extra="- name: third\n  container: {image: busybox}\n"))
    for command in (FAST, CLICK):
        for file, code in ((good, 0), (unbound, 2)):
            with open("/dev/full", "w") as full:
                done = subprocess.run(
                    [*command, "run", str(file), "--context", f"full-{code}"],
                    stdout=subprocess.DEVNULL,
                    stderr=full,
                    timeout=60,
                )
            assert done.returncode == code, (command, file.name)
