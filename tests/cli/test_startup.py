"""Start-up is a feature: the commands shell scripts call often load no numpy, rich or yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clara_core.shm.native import calls

from .clirun import ok, write_in

REPOSITORY = Path(__file__).resolve().parents[2]
LAUNCHER = REPOSITORY / "bin" / "clara"

HEAVY = ("numpy", "rich", "yaml")
WRAPPER = """
import atexit, runpy, sys
atexit.register(lambda: sys.stderr.write(
    "LOADED:" + ",".join(m for m in {heavy!r} if m in sys.modules) + "\\n"))
sys.argv = ["clara", *sys.argv[1:]]
runpy.run_module("clara_cli", run_name="__main__")
"""


def heavy_modules(*args: str, stdin: bytes = b"", heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Run `clara ARGS` and return which of `heavy` (numpy, rich and yaml) it imported."""
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER.format(heavy=heavy), *args],
        input=stdin,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr.decode()
    last = result.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("LOADED:"), result.stderr
    return [name for name in last[len("LOADED:") :].split(",") if name]


def test_publish_loads_neither_numpy_nor_rich(ctx: str) -> None:
    ok("create", "context", ctx)
    handle = ok("create", "allocation", "-c", ctx, "--size", "64").stdout.decode().strip()
    assert heavy_modules("publish", handle, "vol", "-c", ctx) == []


def test_script_commands_stay_light(ctx: str, tmp_path: Path) -> None:
    raw = tmp_path / "in.raw"
    raw.write_bytes(bytes(4096))
    assert heavy_modules("create", "context", ctx) == []
    assert heavy_modules("create", "allocation", "vol", "-c", ctx, "--size", "4K") == []
    assert heavy_modules("create", "allocation", "-c", ctx, "--size", "4K") == []
    assert heavy_modules("map", "vol", "-c", ctx, "--write", "--in", str(raw)) == []
    assert heavy_modules("map", "vol", "-c", ctx, "--write", "--in", "-", stdin=bytes(4096)) == []
    assert heavy_modules("map", "vol", "-c", ctx, "--read", "--out", str(tmp_path / "o")) == []
    assert heavy_modules("map", "vol", "-c", ctx, "--read", "--out", "-") == []
    assert heavy_modules("map", "vol", "-c", ctx, "--read", "--", "true") == []
    assert heavy_modules("map", "vol", "-c", ctx, "--read", "--wait", "--out", "-") == []
    assert heavy_modules("create", "allocation", "filled", "-c", ctx, "--in", str(raw)) == []
    assert heavy_modules("--json", "dump", ctx) == []
    assert heavy_modules("dump", ctx) == []  # plain table: stdout is not a terminal
    assert heavy_modules("--json", "dump") == []
    assert heavy_modules("--json", "dump", ctx, "vol") == []
    assert heavy_modules("--json", "leak-check") == []
    assert heavy_modules("free", "vol", "-c", ctx) == []
    assert heavy_modules("destroy", "context", ctx) == []


# What a click command loads only when it needs it: each was once loaded by every start-up.
NOT_AT_START_UP = (
    "clara_cli.render",  # only what renders output: `--version` renders nothing (rev5 F3)
    "click.shell_completion",  # only while the shell asks for completions
    "dataclasses",  # with copy, and ~0.5 ms to build each dataclass (leaks, inspect)
)


def test_click_commands_load_only_what_they_use(ctx: str) -> None:
    """P5's commands (`leak-check`, `dump`, `publish`) are start-up bound: the click group
    loads clara_cli.render only to spell a failed write, completions only for the shell,
    and a leak check loads the pool and the removal protocol only to --fix."""
    ok("create", "context", ctx)
    handle = ok("create", "allocation", "-c", ctx, "--size", "64").stdout.decode().strip()
    assert heavy_modules("--version", heavy=NOT_AT_START_UP) == []
    reporting = NOT_AT_START_UP[1:]  # (they render what they found)
    fixing = ("clara_core.pool", "clara_core.removal")
    assert heavy_modules("leak-check", heavy=(*reporting, *fixing)) == []
    assert heavy_modules("--json", "leak-check", heavy=(*reporting, *fixing)) == []
    assert heavy_modules("dump", ctx, heavy=reporting) == []
    assert heavy_modules("--json", "dump", ctx, heavy=reporting) == []
    assert heavy_modules("publish", handle, "vol", "-c", ctx, heavy=reporting) == []


def test_naming_a_segment_loads_no_ctypes_where_the_extension_is_loaded(ctx: str) -> None:
    """linkat(AT_EMPTY_PATH) and renameat2 are the C extension's calls where it is
    loaded: ctypes (libc's twins) costs a start-up ~1.8 ms, and `clara publish` is
    start-up bound."""
    if calls is None:
        pytest.skip("the C extension is not loaded here: libc's ctypes twins name segments")
    assert heavy_modules("create", "context", ctx, heavy=("ctypes",)) == []
    handle = ok("create", "allocation", "-c", ctx, "--size", "64").stdout.decode().strip()
    assert heavy_modules("publish", handle, "vol", "-c", ctx, heavy=("ctypes",)) == []
    named = ("create", "allocation", "named", "-c", ctx, "--size", "64")
    assert heavy_modules(*named, heavy=("ctypes",)) == []


@pytest.mark.parametrize("fmt", ["npy", "txt"])
def test_numpy_is_loaded_only_for_formats_that_need_it(ctx: str, fmt: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--dtype", "f32", "--shape", "4")
    write_in(ctx, "vol", bytes(16))
    assert heavy_modules("map", "vol", "-c", ctx, "--read", "--out", "-", "--format", fmt) == [
        "numpy"
    ]


def test_map_copies_load_not_even_click(ctx: str, tmp_path: Path) -> None:
    """The copies of shell pipelines take the fast path; everything else loads click.
    They load no dataclasses either (it imports inspect, ast and tokenize: ~7 ms), nor
    typing (~3 ms, and ~2 ms more to build the named tuples: see clara_core.records)."""
    raw = tmp_path / "in.raw"
    raw.write_bytes(bytes(4096))
    light = ("click", "dataclasses", "typing", *HEAVY)
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", "4K")
    assert heavy_modules("map", "vol", "-c", ctx, "--write", "--in", str(raw), heavy=light) == []
    assert heavy_modules("map", "vol", "-c", ctx, "--read", "--out", "-", heavy=light) == []
    out = str(tmp_path / "o")
    assert (
        heavy_modules("map", "vol", "-c", ctx, "--read", "--wait", "--out", out, heavy=light) == []
    )
    json_copy = heavy_modules(
        "--json", "map", "vol", "-c", ctx, "--read", "--out", out, heavy=light
    )
    assert "click" in json_copy  # click itself imports typing


def imported_by_launcher(
    *args: str, launcher: Path = LAUNCHER, env: dict[str, str] | None = None
) -> set[str]:
    """Every module `clara ARGS` imports when run by `launcher` (`python -X importtime`),
    with `env` added to the environment."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(launcher), *args],
        capture_output=True,
        env=None if env is None else os.environ | env,
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    modules = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert "clara_cli.fastpath" in modules, result.stderr.decode()  # really the import log
    return modules


# What the copies of shell pipelines must not import: each costs every `clara map` copy
# start-up time (measured in README, Benchmarks, P6), and none is needed by one.
NOT_FOR_A_COPY = {
    "re": "regular expressions, with enum and functools (~3-4 ms): names are checked with str",
    "enum": "imported by re",
    "typing": "~3 ms (see clara_core.records)",
    "click": "the fast path's reason to be",
    "dataclasses": "imports inspect, ast and tokenize",
    "ctypes": "~2 ms: a copy's map is deferred, never mapped (Region.deferred)",
    "importlib": "with warnings, ~0.3 ms: clara_core.lazy uses __import__",
    "clara_core.removal": "with resource, ~0.3 ms: only destroy and a leftover name need it",
    "collections": "~2 ms with itertools, keyword, operator, reprlib: see clara_core.records",
    "functools": "imports collections (user names are cached in a dict)",
    "contextlib": "with functools: clara_core.lazy.contextmanager loads it at first use",
    "weakref": "~1 ms with types and _weakrefset: weakref.ref is _weakref's",
    "math": "a shared library to load, for math.inf and math.prod",
    "operator": "only for a shape that is not made of ints",
    "mmap": "its constants are read when something is mapped (a copy maps nothing)",
    "clara_core.pool": "a copy recycles nothing (the pool's threshold lives in the registry)",
    "clara_core.warm_segments": "nor keeps a pooled segment warm",
    "clara_core.shm.ledger": "only contexts with a capacity count published bytes",
    "clara_core.shm.listing": "a copy lists no directory",
    "clara_core.warm_pool": "only a context that uses a warm pool",
    "clara_core.contexts": "a copy opens a context and never makes or lists one",
    "clara_core.waiting": "only a copy that waits (--wait, --timeout)",
    "struct": "a module to find and run, only to re-export _struct's Struct (header, locks)",
}


def test_the_launcher_imports_nothing_a_copy_does_not_need(ctx: str, tmp_path: Path) -> None:
    """bin/clara, the installed `clara`, runs the copies without re, enum, typing, click ..."""
    raw = tmp_path / "in.raw"
    raw.write_bytes(bytes(4096))
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", "4K")
    # Also the pure-Python calls (CLARA_PURE_PYTHON, or no C extension built).
    for env in (None, {"CLARA_PURE_PYTHON": "1"}):
        copy_in = imported_by_launcher(
            "map", "vol", "-c", ctx, "--write", "--in", str(raw), env=env
        )
        copy_out = imported_by_launcher(
            "map", "vol", "-c", ctx, "--read", "--out", str(tmp_path / "o"), env=env
        )
        for modules in (copy_in, copy_out):
            assert sorted(set(NOT_FOR_A_COPY) & modules) == [], env
    # The click command line (anything but a plain copy) is still reached through it.
    assert "click" in imported_by_launcher("--version")


def test_the_installed_clara_is_this_launcher() -> None:
    """`pip install` (-e or a wheel) puts bin/clara beside the interpreter, its first line
    naming the interpreter; not a console-script wrapper (which imports re)."""
    installed = Path(sys.executable).parent / "clara"
    assert installed.exists(), "install the project first: pip install -e ."
    first, _, body = installed.read_text().partition("\n")
    assert first.startswith("#!") and "python" in first
    assert body == LAUNCHER.read_text().partition("\n")[2], (
        f"{installed} is not bin/clara (an install from before it?): pip install -e '.[test]'"
    )


def test_run_and_a_wait_for_a_declared_input_load_no_numpy(tmp_path: Path) -> None:
    """The runner and a shell operator's `clara map` of a declared input (which waits for
    its producer through the job's tally) load no numpy: the runner's own start-up
    delays every operator, and numpy costs ~0.1 s of CPU to import. Nor does the runner
    load dataclasses (with inspect, ast and tokenize, and the code each dataclass
    generates: ~15 ms of that start-up; the pipeline's records are clara_core.records),
    click (clara_cli.fastrun), typing (~2 ms), uuid (with platform, ~2 ms) or difflib
    (only to suggest a key for a misspelt one)."""
    wrapped = f"[{sys.executable}, -c, {json.dumps(WRAPPER.format(heavy=HEAVY))}"
    s = "{name: s, type: array, element-type: int32, shape: [2]}"
    pipeline = tmp_path / "light.yaml"
    pipeline.write_text(
        "api-version: 0.5.0\norchestrator: Clara\nname: light\noperators:\n"
        "- name: produce\n"
        "  container: {command: [bash, -c, 'printf 12345678 | clara map s --write --in -']}\n"
        f"  output:\n  - {s}\n"
        "- name: consume\n"
        f"  container: {{command: {wrapped}, map, s, --read, --out, /dev/null]}}\n"
        f"  input:\n  - {s.replace('{', '{from: produce, ')}\n"
    )
    runner_heavy = (*HEAVY, "dataclasses", "click", "typing", "uuid", "difflib")
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER.format(heavy=runner_heavy), "--json", "run", str(pipeline)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "LOADED:yaml"  # the runner's
    consume = json.loads(result.stdout)["operators"][1]
    assert consume["output_tail"] == ["LOADED:"], consume  # the operator's `clara map`


def test_clara_leaves_its_objects_to_the_exit_not_to_a_last_collection(ctx: str) -> None:
    """A command (here through click) freezes its objects before it exits: the cyclic
    garbage collector's collections at exit would walk them all again (10-30 ms after
    `clara run`'s last operator ended)."""
    wrapper = (
        "import atexit, gc, runpy, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'FROZEN:{gc.get_freeze_count()}\\n'))\n"
        "sys.argv = ['clara', *sys.argv[1:]]\n"
        "runpy.run_module('clara_cli', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, "create", "context", ctx], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    frozen = result.stderr.strip().splitlines()[-1]
    assert frozen.startswith("FROZEN:") and int(frozen[len("FROZEN:") :]) > 1000, frozen


def test_an_operator_s_driver_loads_none_of_the_pipeline_language() -> None:
    """`from clara_core.pipeline import Driver`, every Python operator's start-up, loads
    neither the pipeline language (model, schema, yaml: ~20 ms) nor typing, nor socket.py
    (3-7 ms: telling the runner its outputs are complete needs only its C core), nor
    dataclasses (its own import, and ~0.5 ms for each dataclass it builds)."""
    code = (
        "import sys\nfrom clara_core.pipeline import Driver\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(("
        "'clara_core.pipeline.model', 'clara_core.pipeline.schema', 'yaml', 'typing')) "
        "or m in ('socket', 'dataclasses'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_a_copy_ends_without_tearing_the_interpreter_down(ctx: str, tmp_path: Path) -> None:
    """A copy's process ends with os._exit once its atexit hooks ran and stdout and stderr
    are flushed (clara_cli.fastpath.end_now): the interpreter's teardown (every module
    cleared, `python -v` says so) costs ~1 ms of each copy. Its exit code is kept. That
    `threading` was imported (a .pth file may do it) does not matter: no thread runs."""
    raw = tmp_path / "in.raw"
    raw.write_bytes(bytes(4096))
    wrapper = (
        "import atexit, runpy, sys, threading\n"
        "atexit.register(lambda: sys.stderr.write('HOOK RAN'))\n"
        "sys.stdout.write('PENDING')\n"
        "sys.argv = ['clara', *sys.argv[1:]]\n"
        "runpy.run_module('clara_cli', run_name='__main__')\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-v", "-c", wrapper, *args], capture_output=True, text=True
        )

    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", "4K")
    for args, code in (
        (["map", "vol", "-c", ctx, "--write", "--in", str(raw)], 0),
        (["map", "vol", "-c", ctx, "--read", "--out", str(tmp_path / "o")], 0),
        (["map", "nothing", "-c", ctx, "--read", "--out", str(tmp_path / "o")], 3),
    ):
        result = run(*args)
        assert result.returncode == code, result.stderr[-2000:]
        assert result.stdout == "PENDING"
        assert result.stderr.endswith("HOOK RAN") and "# cleanup" not in result.stderr
        assert ("clara: error: " in result.stderr) == (code != 0), result.stderr[-2000:]
    # Anything else exits through the interpreter, teardown included.
    result = run("--version")
    assert result.returncode == 0 and "# cleanup" in result.stderr, result.stderr[-2000:]


def test_a_run_ends_without_tearing_the_interpreter_down(tmp_path: Path) -> None:
    """`clara run` (its click-free command line) ends as a copy does (end_now): atexit
    hooks run, stdout and stderr are flushed, the exit code is the job's, and the
    interpreter's teardown (~3 ms after the job's last operator ended) is skipped."""
    wrapper = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: sys.stderr.write('HOOK RAN'))\n"
        "sys.stdout.write('PENDING')\n"
        "sys.argv = ['clara', *sys.argv[1:]]\n"
        "runpy.run_module('clara_cli', run_name='__main__')\n"
    )
    for status, code in ((0, 0), (3, 1)):
        pipeline = tmp_path / f"exit{status}.yaml"
        pipeline.write_text(
            "api-version: 0.5.0\nname: ends\noperators:\n- name: only\n"
            f"  container: {{command: [sh, -c, 'echo said; exit {status}']}}\n"
        )
        result = subprocess.run(
            [sys.executable, "-v", "-c", wrapper, "--json", "run", str(pipeline)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == code, result.stderr[-2000:]
        assert result.stdout.startswith("PENDING")
        assert json.loads(result.stdout[len("PENDING") :])["operators"][0]["output_tail"] == [
            "said"
        ]
        assert result.stderr.endswith("HOOK RAN") and "# cleanup" not in result.stderr


def test_the_launchers_import_with_the_collector_off(ctx: str, tmp_path: Path) -> None:
    """`clara` (bin/clara, `python -m clara_cli`) turns the cyclic garbage collector off
    before its first import: its collections would walk the objects of every module being
    imported (~0.5 ms of each copy). The click command line gets it back."""
    raw = tmp_path / "in.raw"
    raw.write_bytes(bytes(4096))
    wrapper = (
        "import atexit, gc, importlib.util, sys\n"
        "starts = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and starts.append(info))\n"
        "atexit.register(lambda: sys.stderr.write(\n"
        "    f'\\nCOLLECTIONS:{len(starts)} ENABLED:{gc.isenabled()}\\n'))\n"
        "sys.argv = ['clara', *sys.argv[1:]]\n"
        "spec = importlib.util.find_spec('clara_cli.__main__')\n"
        "code = spec.loader.get_code(spec.name)  # compiled now, if need be\n"
        "gc.collect()\n"
        "starts.clear()\n"
        "exec(code, {'__name__': '__main__'})\n"
    )

    def last_line(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", wrapper, *args], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stderr.strip().splitlines()[-1]

    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", "4K")
    copy = last_line("map", "vol", "-c", ctx, "--write", "--in", str(raw))
    assert copy == "COLLECTIONS:0 ENABLED:False"
    assert last_line("--json", "dump", ctx).endswith("ENABLED:True")
    assert "gc.disable()" in LAUNCHER.read_text().split("from clara_cli.fastpath import")[0]


def test_a_run_s_collector_never_walks_what_was_there_before_the_job(tmp_path: Path) -> None:
    """`clara run` imports with the cyclic garbage collector off (the launchers), then
    freezes what exists (modules, the pipeline: it lives as long as the job) before it
    turns the collector on for the job: turned on as such, its first collection walked
    every object the imports made (~6,000-14,000: 5-9 ms before the first operator)."""
    wrapper = (
        "import atexit, gc, runpy, sys\n"
        "walked = []\n"
        "def count(phase, info):\n"
        "    if phase == 'start':\n"
        "        young = range(info['generation'] + 1)\n"
        "        walked.append(sum(len(gc.get_objects(g)) for g in young))\n"
        "gc.callbacks.append(count)\n"
        "atexit.register(lambda: sys.stderr.write(\n"
        "    f'WALKED:{max(walked, default=0)} ENABLED:{gc.isenabled()}\\n'))\n"
        "sys.argv = ['clara', *sys.argv[1:]]\n"
        "runpy.run_module('clara_cli', run_name='__main__')\n"
    )
    pipeline = tmp_path / "short.yaml"
    pipeline.write_text(
        "api-version: 0.5.0\norchestrator: Clara\nname: short\noperators:\n"
        "- name: one\n  container: {command: [bash, -c, 'echo one']}\n"
    )
    # With no .pyc yet (a fresh clone, or PYTHONDONTWRITEBYTECODE in helpers' shells),
    # every import compiles and the collector walks the compiler's objects: not what a
    # user's run does. So the bytecode is written by a first run, and the second counted.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", wrapper, "run", str(pipeline)],
            capture_output=True,
            text=True,
            env=env,
        )
    assert result.returncode == 0, result.stderr
    walked, enabled = result.stderr.strip().splitlines()[-1].split()
    assert enabled == "ENABLED:True"  # the job ran with the collector on
    assert int(walked.removeprefix("WALKED:")) < 3000, walked
