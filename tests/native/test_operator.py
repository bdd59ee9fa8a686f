"""The operator side: CLARA_FASTIO, as `clara run` exports it and as the C library reads it."""

from __future__ import annotations

import os

import pytest

from clara_core import Context
from clara_core.pipeline.environment import Declared, OperatorIO

from .conftest import run

IO = OperatorIO(
    job_id="0",
    pipeline="p",
    operator="Thresh",
    context="job",
    inputs=(Declared("input", "Volume", "array", "float32", (-1, 4, 4), "make", "make--volume"),),
    outputs=(
        Declared("output", "mask", "array", "uint8", (-1, 4, 4), None, "thresh--mask"),
        Declared("output", "count", "uint64", "uint64", (1,), None, "thresh--count"),
        Declared("output", "log", "stream", "text", None, None, None, "/tmp/log"),
    ),
)


def test_the_lines_form_lists_every_shared_memory_port():
    assert IO.environment()["CLARA_FASTIO"] == (
        "input Volume float32 -1,4,4 make--volume\n"
        "output mask uint8 -1,4,4 thresh--mask\n"
        "output count uint64 1 thresh--count\n"
    )


@pytest.fixture
def job(namespace):
    ctx = Context.create("job")
    volume = ctx.create(dtype="float32", shape=(3, 4, 4))
    volume.publish("make--volume")
    volume.release()
    count = ctx.create(dtype="uint64", shape=(1,))
    count.publish("thresh--count")
    count.release()
    yield {**os.environ, **IO.environment()}
    ctx.destroy()


def test_c_finds_inputs_read_only_and_outputs_writable(job, tool):
    got = run(tool, "operator", "get", "volume", env=job)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["make--volume", "float32", "read-only", "3,4,4"]
    got = run(tool, "operator", "get", "COUNT", env=job)
    assert got.stdout.split() == ["thresh--count", "uint64", "read-write", "1"]


def test_c_allocates_a_dynamic_output_that_python_then_sees(job, tool):
    missing = run(tool, "operator", "get", "mask", env=job)
    assert missing.returncode == 3 and "clara_operator_allocate" in missing.stderr
    made = run(tool, "operator", "allocate", "mask", "3,4,4", env=job)
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["thresh--mask", "uint8", "read-write", "3,4,4"]
    with Context.open("job").get("thresh--mask") as ref:
        assert ref.shape == (3, 4, 4) and ref.element_type.name == "uint8"
    again = run(tool, "operator", "allocate", "mask", "3,4,4", env=job)
    assert again.returncode == 10 and "already allocated" in again.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("allocate", "mask", "3,4,5"), 2, "fixed at 4"),
        (("allocate", "mask", "3,4"), 2, "has 3 dimensions"),
        (("allocate", "count", "1"), 2, "is static"),
        (("allocate", "volume", "3,4,4"), 8, "inputs are read-only"),
        (("get", "nothing"), 3, "declares no shared-memory input or output 'nothing'"),
        (("get", "bad name"), 2, "invalid variable name"),
    ],
)
def test_c_refuses_what_the_declaration_forbids(job, tool, args, code, message):
    result = run(tool, "operator", *args, env=job)
    assert result.returncode == code and message in result.stderr, result.stderr


def test_outside_clara_run_and_with_a_damaged_description(job, tool):
    outside = {k: v for k, v in job.items() if k != "CLARA_OPERATOR"}
    result = run(tool, "operator", "get", "volume", env=outside)
    assert result.returncode == 2 and "not running inside `clara run`" in result.stderr
    damaged = {**job, "CLARA_FASTIO": "input volume float99 3 x\n"}
    result = run(tool, "operator", "get", "volume", env=damaged)
    assert result.returncode == 2 and "is not what clara run writes" in result.stderr
