"""The click-free fast path of `clara map NAME --write --in FILE` / `--read --out FILE`:
which command lines it takes, and that it answers exactly as the click command does."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_cli.fastpath import MapCopy, parse_map_copy

from .clirun import clara, fails, ok, write_in


@pytest.fixture(autouse=True)
def _no_default_context(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLARA_CONTEXT", "CLARA_OPERATOR", "_CLARA_COMPLETE"):
        monkeypatch.delenv(name, raising=False)


def copy(**fields: object) -> MapCopy:
    defaults: dict[str, object] = {
        "name": "vol",
        "context": "job",
        "in_path": None,
        "out_path": None,
        "fmt": "raw",
        "handle": False,
        "wait": False,
        "timeout": None,
        "allow_incomplete": False,
    }
    return MapCopy(**{**defaults, **fields})  # type: ignore[arg-type]


INCOMPLETE = {"allow_incomplete": True}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("map vol --write --in f -c job", copy(in_path="f")),
        ("map -c job --in=f vol --write", copy(in_path="f")),
        ("map vol --read --out - --context job", copy(out_path="-")),
        ("map vol --read --out=o --context=job --format npy", copy(out_path="o", fmt="npy")),
        (
            "map h --handle --read --wait --timeout 2.5 --allow-incomplete --out o -c job",
            copy(name="h", out_path="o", handle=True, wait=True, timeout=2.5, **INCOMPLETE),
        ),
        ("map vol --write --in - -c job", copy(in_path="-")),
    ],
)
def test_the_plain_copies_take_the_fast_path(args: str, expected: MapCopy) -> None:
    assert parse_map_copy(args.split()) == expected


@pytest.mark.parametrize(
    "args",
    [
        "map vol --write --in f",  # no context: click explains
        "map vol --read --in f -c job",  # --in needs --write
        "map vol --write --out f -c job",  # --out needs --read
        "map vol --read --write --out f -c job",
        "map vol --write -c job",  # neither --in nor --out
        "map vol --read --out o --in i -c job",
        "map vol --write --wait --in f -c job",  # --wait needs --read
        "map vol extra --read --out o -c job",  # a second argument: a command
        "map vol --read --out o -c job -- cat",
        "map vol --read --out o -c job --help",
        "map vol --read --out o -c job --json",
        "map vol --read --out o -c a --context b",  # given twice
        "map vol --read --read --out o -c job",
        "map vol --read --out o -cjob",  # attached short value
        "map vol --read --out -c job",  # an option where the value should be
        "map vol --read --out o -c job --format csv",
        "map vol --read --out o -c job --timeout soon",
        "map vol --read --out o -c job --verbose",
        "map vol --read --out -c",
        "--json map vol --read --out o -c job",
        "dump job",
        "map",
    ],
)
def test_anything_else_goes_to_click(args: str) -> None:
    assert parse_map_copy(args.split()) is None


def test_the_context_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARA_CONTEXT", "job")
    assert parse_map_copy(["map", "vol", "--read", "--out", "o"]) == copy(out_path="o")


def test_completion_always_goes_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_CLARA_COMPLETE", "bash_complete")
    assert parse_map_copy(["map", "vol", "--read", "--out", "o", "-c", "job"]) is None


def test_errors_read_and_exit_as_through_click(ctx: str, tmp_path: Path) -> None:
    """`--json` sends the same copy through click: every answer must be the same."""
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", "4K")
    short = tmp_path / "short.raw"
    short.write_bytes(bytes(100))
    out = str(tmp_path / "out.raw")
    for code, args in [
        (3, ["map", "nosuch", "--read", "--out", out, "-c", ctx]),
        (3, ["map", "vol", "--read", "--out", out, "-c", "nosuchctx"]),
        (2, ["map", "vol", "--write", "--in", str(short), "-c", ctx]),
        (2, ["map", "vol", "--write", "--in", str(tmp_path / "missing"), "-c", ctx]),
        (6, ["map", "vol", "--read", "--out", out, "-c", ctx]),  # never written
    ]:
        fast = fails(code, *args)
        assert fails(code, "--json", *args) == fast


def test_a_copy_in_and_out_through_the_fast_path(ctx: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 * 3
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", str(len(data)))
    source = tmp_path / "in.raw"
    source.write_bytes(data)
    assert ok("map", "vol", "--write", "--in", str(source), "-c", ctx).stdout == b""
    assert ok("map", "vol", "--read", "--out", "-", "-c", ctx).stdout == data
    write_in(ctx, "vol", data[::-1])
    assert ok("map", "vol", "--read", "--out", "-", "-c", ctx).stdout == data[::-1]
    longer = clara("map", "vol", "--write", "--in", "-", "-c", ctx, input=data + b"x")
    assert longer.returncode == 2 and b"holds more than" in longer.stderr
