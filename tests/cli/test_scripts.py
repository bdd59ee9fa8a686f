"""Operator flows as users write them: plain shell scripts calling `clara`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .clirun import data, ok, run_script


def test_one_script_writes_another_reads_back_byte_for_byte(
    ctx: str, bin_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "volume.raw"
    values = np.random.default_rng(1).standard_normal((16, 32, 32)).astype(np.float32)
    source.write_bytes(values.tobytes())
    writer = run_script(
        f"""
        clara create context {ctx}
        export CLARA_CONTEXT={ctx}
        clara create allocation volume --dtype f32 --shape 16,32,32
        clara map volume --write --in {source}
        """,
        bin_dir,
    )
    assert writer.returncode == 0, writer.stderr
    assert writer.stdout.split() == [ctx, "volume"]
    reader = run_script(
        f"""
        clara map volume -c {ctx} --read --out {tmp_path}/copy.raw
        cmp {source} {tmp_path}/copy.raw
        clara map volume -c {ctx} --read --out - | cmp - {source}
        """,
        bin_dir,
    )
    assert reader.returncode == 0, reader.stderr
    assert (tmp_path / "copy.raw").read_bytes() == values.tobytes()


def test_private_allocation_handed_from_script_to_script(ctx: str, bin_dir: Path) -> None:
    made = run_script(
        f"""
        clara create context {ctx} >/dev/null
        handle=$(clara create allocation -c {ctx} --size 4K)
        clara publish -c {ctx} "$handle" greeting
        """,
        bin_dir,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "greeting"
    listing = data("dump", ctx)
    assert [(a["name"], a["kind"], a["nbytes"]) for a in listing["allocations"]] == [
        ("greeting", "published", 4096)
    ]


def test_script_pipes_data_through_two_allocations(ctx: str, bin_dir: Path) -> None:
    ok("create", "context", ctx)
    result = run_script(
        f"""
        export CLARA_CONTEXT={ctx}
        clara create allocation a --dtype i32 --shape 1000 >/dev/null
        clara create allocation b --dtype i32 --shape 1000 >/dev/null
        python3 -c 'import sys, array; sys.stdout.buffer.write(array.array("i", range(1000)))' \\
            | clara map a --write --in -
        clara map a --read --out - | clara map b --write --in -
        clara map b --read --out - --format txt | tail -n 1
        """,
        bin_dir,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "999"


def test_script_uses_json_output(ctx: str, bin_dir: Path) -> None:
    result = run_script(
        f"""
        clara --json create context {ctx}
        """,
        bin_dir,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "context": ctx,
        "owner_pid": None,
        "mode": "600",
        "capacity": None,
    }


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shell"


def test_example_producer_and_consumer_started_together(bin_dir: Path, tmp_path: Path) -> None:
    """examples/shell: the consumer starts with its producer and waits for the data."""
    from clara_core import Context, leaks

    result = run_script(f"bash {EXAMPLE}/run.sh", bin_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["producer: published numbers", "consumer: sum 500500"]
    assert Context.list() == [] and leaks.check().clean
    # The same pair without --wait fails: the consumer is there before the data.
    copy = tmp_path / "shell"
    copy.mkdir()
    for script in ("run.sh", "producer.sh"):
        (copy / script).write_text((EXAMPLE / script).read_text())
    consumer = (EXAMPLE / "consumer.sh").read_text()
    assert "--wait" in consumer
    (copy / "consumer.sh").write_text(consumer.replace("--wait --timeout 60 ", ""))
    failed = run_script(f"bash {copy}/run.sh", bin_dir)
    assert failed.returncode == 3, failed.stderr
    assert "allocation 'numbers' in context 'numbers-" in failed.stderr
    assert "does not exist" in failed.stderr
    assert Context.list() == [] and leaks.check().clean
