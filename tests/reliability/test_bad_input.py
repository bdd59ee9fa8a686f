"""Bad input through the real `clara` command: names, element types, shapes, sizes, files,
options and pipeline YAML. Each case must end with its documented exit code, exactly one
`clara: error:` line on stderr, no traceback, and no segment created or removed.

Every case runs against the same scene: context `job` holding `vol` (float32 [4, 5]).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clara_core import Context
from tests.cli.clirun import clara

from .figures import Area
from .harness import our_files

LONG = "n" * 256
HUGE = "100T"  # far beyond /dev/shm (and any machine's memory)
C = ("-c", "job")
A = ("create", "allocation")
W = ("map", "vol", *C, "--write", "--in")

# (id, arguments, expected exit code[, environment]); "{tmp}" is the scene's directory.
CASES: list[tuple] = [
    # names
    ("context-empty", ("create", "context", ""), 2),
    ("context-256-chars", ("create", "context", LONG), 2),
    ("context-slash", ("create", "context", "a/b"), 2),
    ("context-dotdot", ("create", "context", ".."), 2),
    ("context-dot", ("create", "context", "a.b"), 2),
    ("context-space", ("create", "context", "my job"), 2),
    ("context-unicode", ("create", "context", "café"), 2),
    ("context-newline", ("create", "context", "a\nb"), 2),
    ("context-case-clash", ("create", "context", "JOB"), 10),
    ("alloc-empty", (*A, "", *C, "--size", "4K"), 2),
    ("alloc-256-chars", (*A, LONG, *C, "--size", "4K"), 2),
    ("alloc-slash", (*A, "x/y", *C, "--size", "4K"), 2),
    ("alloc-dotdot", (*A, "../../etc/passwd", *C, "--size", "4K"), 2),
    ("alloc-space", (*A, "my vol", *C, "--size", "4K"), 2),
    ("alloc-unicode", (*A, "名前", *C, "--size", "4K"), 2),
    ("alloc-tilde", (*A, "x~1", *C, "--size", "4K"), 2),
    ("alloc-case-clash", (*A, "VOL", *C, "--size", "4K"), 10),
    ("context-option-slash", (*A, "x", "-c", "a/b", "--size", "4K"), 2),
    ("context-missing", (*A, "x", "-c", "ghost", "--size", "4K"), 3),
    ("map-name-dotdot", ("map", "..", *C, "--read", "--out", "-"), 2),
    ("map-missing", ("map", "ghost", *C, "--read", "--out", "-"), 3),
    ("free-dotdot", ("free", "..", *C), 2),
    ("free-missing", ("free", "ghost", *C), 3),
    ("publish-bad-handle", ("publish", "zz", "x", *C), 2),
    ("publish-missing-handle", ("publish", "0123456789ab", "x", *C), 3),
    ("destroy-slash", ("destroy", "context", "/etc"), 2),
    ("dump-unicode", ("dump", "jöb"), 2),
    # element types
    ("dtype-unknown", (*A, "x", *C, "--dtype", "f128", "--shape", "4"), 2),
    ("dtype-empty", (*A, "x", *C, "--dtype", "", "--shape", "4"), 2),
    ("dtype-object", (*A, "x", *C, "--dtype", "object", "--shape", "4"), 2),
    ("dtype-injection", (*A, "x", *C, "--dtype", "f32;rm -rf /", "--shape", "4"), 2),
    ("dtype-byteswapped", (*A, "x", *C, "--dtype", ">f4", "--shape", "4"), 2),
    # shapes
    ("shape-negative", (*A, "x", *C, "--dtype", "f32", "--shape", "-1,4"), 2),
    ("shape-zero", (*A, "x", *C, "--dtype", "f32", "--shape", "0"), 2),
    ("shape-nine-dims", (*A, "x", *C, "--dtype", "u8", "--shape", "1,1,1,1,1,1,1,1,1"), 2),
    ("shape-overflow", (*A, "x", *C, "--dtype", "f64", "--shape", f"{2**62},4"), 2),
    ("shape-letters", (*A, "x", *C, "--dtype", "f32", "--shape", "a,b"), 2),
    ("shape-empty", (*A, "x", *C, "--dtype", "f32", "--shape", ""), 2),
    ("shape-fraction", (*A, "x", *C, "--dtype", "f32", "--shape", "1.5"), 2),
    ("shape-and-size", (*A, "x", *C, "--size", "16", "--shape", "4"), 2),
    # sizes
    ("size-minus-one", (*A, "x", *C, "--size", "-1"), 2),
    ("size-1Q", (*A, "x", *C, "--size", "1Q"), 2),
    ("size-zero", (*A, "x", *C, "--size", "0"), 2),
    ("size-fraction-of-byte", (*A, "x", *C, "--size", "1.5"), 2),
    ("size-not-whole-elements", (*A, "x", *C, "--size", "3", "--dtype", "u16"), 2),
    ("size-none", (*A, "x", *C), 2),
    ("size-beyond-shm", (*A, "x", *C, "--size", HUGE), 7),
    ("size-beyond-shm-private", (*A, *C, "--size", HUGE), 7),
    ("shape-beyond-shm", (*A, "x", *C, "--dtype", "f64", "--shape", "1000000,1000000"), 7),
    # options
    ("capacity-bad", ("create", "context", "other", "--capacity", "1Q"), 2),
    ("mode-not-octal", ("create", "context", "other", "--mode", "999"), 2),
    ("mode-owner-cannot-write", ("create", "context", "other", "--mode", "400"), 2),
    ("owner-pid-negative", ("create", "context", "other", "--owner-pid", "-5"), 2),
    ("owner-pid-not-running", ("create", "context", "other", "--owner-pid", "999999999"), 2),
    ("older-than-bad", ("leak-check", "--older-than", "5x"), 2),
    ("timeout-negative", ("map", "vol", *C, "--read", "--timeout", "-1", "--out", "-"), 2),
    ("timeout-nan", ("map", "vol", *C, "--read", "--timeout", "nan", "--out", "-"), 2),
    ("map-read-and-write", ("map", "vol", *C, "--read", "--write", "--out", "-"), 2),
    ("map-no-context", ("map", "vol", "--read", "--out", "-"), 2),
    ("unknown-command", ("frobnicate",), 2),
    # files
    ("in-missing-file", (*W, "{tmp}/missing.raw"), 2),
    ("in-wrong-size", (*W, "{tmp}/short.raw"), 2),
    ("in-bad-npy-header", (*W, "{tmp}/bad.npy", "--format", "npy"), 2),
    ("in-npy-wrong-dtype", (*W, "{tmp}/f64.npy", "--format", "npy"), 2),
    ("in-npy-wrong-shape", (*W, "{tmp}/shape.npy", "--format", "npy"), 2),
    ("in-npy-truncated", (*W, "{tmp}/truncated.npy", "--format", "npy"), 2),
    ("in-npy-objects", (*W, "{tmp}/objects.npy", "--format", "npy"), 2),
    ("in-directory", (*W, "{tmp}"), 2),
    ("in-txt-words", (*W, "{tmp}/words.txt", "--format", "txt"), 2),
    ("out-into-missing-directory", ("map", "vol", *C, "--read", "--out", "{tmp}/no/such"), 2),
    ("out-directory", ("map", "vol", *C, "--read", "--out", "{tmp}"), 2),
    ("cmd-not-found", ("map", "vol", *C, "--write", "--", "/no/such/command"), 127),
    ("cmd-not-executable", ("map", "vol", *C, "--write", "--", "{tmp}/short.raw"), 126),
    # pipeline YAML
    ("validate-malformed", ("validate", "{tmp}/malformed.yaml"), 2),
    ("validate-unknown-key", ("validate", "{tmp}/unknown.yaml"), 2),
    ("validate-cycle", ("validate", "{tmp}/cycle.yaml"), 2),
    ("validate-not-a-mapping", ("validate", "{tmp}/list.yaml"), 2),
    ("validate-binary", ("validate", "{tmp}/short.raw"), 2),
    ("validate-directory", ("validate", "{tmp}"), 2),
    ("validate-missing", ("validate", "{tmp}/missing.yaml"), 3),
    ("run-malformed", ("run", "{tmp}/malformed.yaml"), 2),
    ("run-unknown-key", ("run", "{tmp}/unknown.yaml"), 2),
    ("run-cycle", ("run", "{tmp}/cycle.yaml"), 2),
    ("run-missing", ("run", "{tmp}/missing.yaml"), 3),
    ("run-taken-context", ("run", "{tmp}/good.yaml", "--context", "job"), 10),
    ("run-bad-context-name", ("run", "{tmp}/good.yaml", "--context", "../x"), 2),
    ("run-bad-timeout", ("run", "{tmp}/good.yaml", "--timeout", "-3"), 2),
    # environment
    ("namespace-dotdot", ("create", "context", "other"), 2, {"CLARA_NAMESPACE": "../x"}),
    ("namespace-slash", ("leak-check", "--fix"), 2, {"CLARA_NAMESPACE": "a/b"}),
    ("context-env-dotdot", (*A, "x", "--size", "4K"), 2, {"CLARA_CONTEXT": "../job"}),
    ("shm-dir-missing-create", ("create", "context", "other"), 3, {"CLARA_SHM_DIR": "/no/dir"}),
    ("shm-dir-missing-dump", ("dump",), 3, {"CLARA_SHM_DIR": "/no/dir"}),
    ("shm-dir-missing-leaks", ("leak-check", "--fix"), 3, {"CLARA_SHM_DIR": "/no/dir"}),
    ("shm-dir-a-file", ("create", "context", "other"), 2, {"CLARA_SHM_DIR": "{tmp}/short.raw"}),
    ("shm-dir-a-file-dump", ("dump",), 2, {"CLARA_SHM_DIR": "{tmp}/short.raw"}),
    # CLARA_IO that is valid JSON but not clara run's object (issue 9, item 11)
    *[
        (
            f"clara-io-{label}",
            ("map", "vol", *C, "--read", "--out", "-"),
            2,
            {"CLARA_OPERATOR": "op", "CLARA_CONTEXT": "job", "CLARA_IO": value},
        )
        for label, value in (("string", '"x"'), ("number", "1"), ("null", "null"))
    ],
]

OPERATOR = "- name: {name}\n  container: {{command: [true]}}\n"
PIPELINES = {
    "malformed.yaml": "api-version: 0.5.0\nname: x\noperators:\n- name: a\n  container: {command",
    "unknown.yaml": "api-version: 0.5.0\nname: x\nbogus: 1\noperators:\n"
    + OPERATOR.format(name="a"),
    "cycle.yaml": "api-version: 0.5.0\nname: x\noperators:\n"
    + OPERATOR.format(name="a")
    + "  input: [{from: b, path: /in}]\n"
    + OPERATOR.format(name="b")
    + "  input: [{from: a, path: /in}]\n",
    "list.yaml": "- 1\n- 2\n",
    "good.yaml": "api-version: 0.5.0\nname: good\noperators:\n" + OPERATOR.format(name="a"),
}


def _files(directory: Path) -> None:
    """The bad input files the cases refer to."""
    (directory / "short.raw").write_bytes(b"\0" * 19)
    (directory / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00garbage, not a header")
    for name, array in {
        "f64.npy": np.zeros((4, 5)),
        "shape.npy": np.zeros((5, 4), np.float32),
        "objects.npy": np.array([{}, None] * 10, dtype=object).reshape(4, 5),
    }.items():
        np.save(directory / name, array, allow_pickle=True)
    stream = io.BytesIO()
    np.save(stream, np.zeros((4, 5), np.float32))
    (directory / "truncated.npy").write_bytes(stream.getvalue()[:-7])
    (directory / "words.txt").write_text("a b c d e\n" * 4)
    for name, text in PIPELINES.items():
        (directory / name).write_text(text)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of bad input files (made once for every case)."""
    directory = tmp_path_factory.mktemp("bad-input")
    _files(directory)
    return directory


@pytest.fixture
def job() -> Iterator[Context]:
    """Context `job` with `vol` (float32 [4, 5], complete), destroyed at the end."""
    ctx = Context.create("job")
    vol = ctx.create(dtype="f32", shape=(4, 5))
    with vol.map("w") as array:
        array[...] = 1.5
    vol.publish("vol")
    vol.release()
    yield ctx
    Context.destroy("job")


# Checked as the module loads, not counted as a test: each case has an id of its own.
assert len({case[0] for case in CASES}) == len(CASES), "two bad-input cases share an id"


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input(case: tuple, scene: Path, job: Context, area: Area) -> None:
    """Documented exit code, one error line, no traceback, nothing created or removed."""
    _id, args, code, *rest = case
    argv = [a.replace("{tmp}", str(scene)) for a in args]
    env = {k: v.replace("{tmp}", str(scene)) for k, v in (rest[0] if rest else {}).items()}
    before = our_files()
    area.trials += 1
    area.failures += 1  # taken back at the end if every check passes
    result = clara(*argv, input=b"", env=env)
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert result.returncode == code, (result.returncode, err)
    lines = err.splitlines()
    assert lines and lines[0].startswith("clara: error: "), err
    if argv[0] != "run":  # see test_clara_run_reports_an_invalid_pipeline_on_one_line
        assert len(lines) == 1, err
    assert our_files() == before
    with job.get("vol") as vol, vol.map("r") as array:
        assert (array == 1.5).all(), "bad input changed vol"
    area.failures -= 1


def test_clara_run_reports_an_invalid_pipeline_on_one_line(scene: Path) -> None:
    """README: every error is one line on stderr (validate puts its problems on stdout)."""
    result = clara("run", str(scene / "cycle.yaml"))
    assert result.returncode == 2
    assert len(result.stderr.decode().splitlines()) == 1, result.stderr.decode()


@pytest.mark.parametrize("cut", [-8, 8], ids=["too-short", "too-long"])
def test_a_fortran_npy_of_the_wrong_length_from_a_pipe(cut: int, job: Context, area: Area):
    """Issue 9, item 11: a Fortran-ordered .npy piped in that ends early or goes on too
    long: exit 2 and one line (not a ShortInput/LongInput traceback)."""
    stream = io.BytesIO()
    np.save(stream, np.asfortranarray(np.ones((4, 5), np.float32)))
    raw = stream.getvalue()
    raw = raw[:cut] if cut < 0 else raw + b"\0" * cut
    result = clara("map", "vol", *C, "--write", "--in", "-", "--format", "npy", input=raw)
    err = result.stderr.decode()
    area.trials += 1
    assert result.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_out_onto_the_segment_being_read_is_refused(job: Context, area: Area) -> None:
    """Issue 9, item 12: `clara map vol --read --out /dev/shm/<vol's own segment>` would
    truncate what it reads: refused (exit 2), the data intact."""
    from clara_core.names import allocation_file, shm_dir

    with job.get("vol") as vol, vol.map("w") as array:
        array[...] = 7
    path = f"{shm_dir()}/{allocation_file('job', 'a', 'vol')}"
    result = clara("map", "vol", *C, "--read", "--out", path)
    area.trials += 1
    assert result.returncode == 2, result.stderr.decode()
    with job.get("vol") as vol, vol.map("r") as array:
        assert (array == 7).all()


@pytest.mark.parametrize("target", ["other", "context"])
def test_out_onto_another_segment_is_refused(target: str, job: Context, area: Area) -> None:
    """`--out` naming another allocation's segment (or the context's) truncated it and
    wrote the data over its header: it was lost to everyone using it (found by brk).
    Refused (exit 2) before anything is truncated; the other segment intact."""
    from clara_core.names import allocation_file, context_file, shm_dir

    other = job.create(dtype="u8", shape=(8,))
    with other.map("w") as array:
        array[...] = 9
    other.publish("other")
    other.release()
    victim = allocation_file("job", "a", "other") if target == "other" else context_file("job")
    before = Path(shm_dir(), victim).read_bytes()
    result = clara("map", "vol", *C, "--read", "--out", f"{shm_dir()}/{victim}")
    area.trials += 1
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "is a clara segment" in err and "Traceback" not in err
    assert Path(shm_dir(), victim).read_bytes() == before
    with job.get("other") as found, found.map("r") as array:
        assert (array == 9).all()


def test_a_private_allocation_whose_caller_is_gone_is_refused(job: Context, area: Area):
    """Issue 9, item 12: `clara create allocation` (no name) whose parent shell exited
    before it ran would be held by pid 1 forever: refused with one line, nothing made."""
    import subprocess
    import sys

    before = our_files()
    script = f"{sys.executable} -m clara_cli create allocation -c job --size 4K & exit 0"
    shell = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = shell.communicate(timeout=60)  # ends when clara's copies of them close
    area.trials += 1
    assert out == b"", out
    assert err.decode().startswith("clara: error: ") and "pid 1" in err.decode(), err
    assert our_files() == before
