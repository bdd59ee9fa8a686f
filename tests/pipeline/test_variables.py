"""Variable, open_declared and the Driver, inside one process posing as an operator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from clara_core import Context
from clara_core.errors import AlreadyExists, InvalidArgument, NotFound, ReadOnly
from clara_core.pipeline.declared import open_declared
from clara_core.pipeline.driver import Driver
from clara_core.pipeline.environment import Declared, OperatorIO
from clara_core.pipeline.variables import Variable


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[tuple[Context, OperatorIO]]:
    """A context with a complete upstream `volume` and this 'operator's declared I/O."""
    ctx = Context.create("job", owner_pid=os.getpid())
    volume = ctx.create(dtype="float32", shape=(3, 4))
    with volume.map("w") as array:
        array[...] = np.arange(12).reshape(3, 4)
    volume.publish("up--volume")
    volume.release()
    spacing = ctx.create(dtype="float64", shape=(3,))
    spacing.publish("me--spacing")  # pre-allocated, as clara run does for static outputs
    spacing.release()
    io = OperatorIO(
        job_id=str(uuid.uuid4()),
        pipeline="tests",
        operator="me",
        context="job",
        inputs=(
            Declared("input", "volume", "array", "float32", (-1, 4), "up", "up--volume"),
            Declared("input", "scans", "stream", "dicom", None, None, None, str(tmp_path)),
        ),
        outputs=(
            Declared("output", "mask", "array", "uint8", (2, -1), None, "me--mask"),
            Declared("output", "spacing", "array", "float64", (3,), None, "me--spacing"),
            Declared("output", "label", "string", "uint8", (-1,), None, "me--label"),
            Declared("output", "report", "stream", "text", None, None, None, str(tmp_path)),
        ),
    )
    for key, value in io.environment().items():
        monkeypatch.setenv(key, value)
    try:
        yield ctx, io
    finally:
        Context.destroy("job")
        ctx.close()


def variable(job: tuple[Context, OperatorIO], name: str) -> Variable:
    ctx, io = job
    port = io.find(name)
    assert port is not None
    return Variable(ctx, port, io.operator)


def test_a_dynamic_output_is_sized_then_allocated(job) -> None:
    mask = variable(job, "mask")
    assert (mask.is_dynamic, mask.dynamic_indices, mask.access) == (True, (1,), "read-write")
    assert (mask.is_allocated, mask.nbytes, mask.shape) == (False, None, (2, -1))
    with pytest.raises(NotFound, match="not allocated yet"):
        mask.map()
    with pytest.raises(InvalidArgument, match="still has dynamic dimensions"):
        mask.allocate()
    with pytest.raises(InvalidArgument, match=r"dimension 0 .* is fixed at 2"):
        mask.update_shape((3, 5))
    with pytest.raises(InvalidArgument, match="has 2 dimensions"):
        mask.update_shape((2, 5, 1))
    mask.update_shape((2, 5))
    assert (mask.shape, mask.nbytes, mask.is_allocated) == ((2, 5), 10, False)
    mask.allocate()
    assert mask.is_allocated
    with pytest.raises(AlreadyExists):
        mask.allocate()
    with pytest.raises(InvalidArgument, match="already allocated"):
        mask.update_shape((2, 6))
    array = mask.map()  # outputs map for writing by default
    array[...] = 7
    mask.unmap()
    assert job[0].get("me--mask").state == "complete"
    assert variable(job, "mask").read().tolist() == [[7] * 5] * 2  # another reference


def test_a_static_output_is_pre_allocated_and_frozen(job) -> None:
    spacing = variable(job, "spacing")
    assert (spacing.is_dynamic, spacing.is_allocated, spacing.nbytes) == (False, True, 24)
    with pytest.raises(InvalidArgument, match="pre-allocated"):
        spacing.allocate()
    with pytest.raises(InvalidArgument, match="static"):
        spacing.update_shape((3,))
    spacing.write([2.5, 0.8, 0.8])
    assert spacing.read().tolist() == [2.5, 0.8, 0.8]
    with pytest.raises(InvalidArgument, match="the data has"):
        spacing.write([1.0, 2.0])
    with pytest.raises(InvalidArgument, match="cannot store"):
        spacing.write(np.array([1 + 1j, 0, 0]))


def test_a_string_is_dynamic_utf8(job) -> None:
    label = variable(job, "label")
    assert label.is_string and label.is_dynamic and label.element_type.name == "uint8"
    with pytest.raises(InvalidArgument, match="empty string"):
        label.write_text("")
    label.write_text("héllo ✓")
    assert label.shape == (len("héllo ✓".encode()),)
    assert variable(job, "label").read_text() == "héllo ✓"


def test_an_input_is_read_only(job) -> None:
    volume = variable(job, "volume")
    assert (volume.access, volume.is_allocated, volume.shape) == ("read-only", True, (3, 4))
    for attempt in (lambda: volume.map("w"), volume.allocate, lambda: volume.write([1])):
        with pytest.raises(ReadOnly):
            attempt()
    with pytest.raises(ReadOnly):
        volume.allocation.map("w")
    with volume.mapped() as array:
        assert array.sum() == 66
        with pytest.raises(ValueError):
            array[0, 0] = 1


def test_open_declared_resolves_names_for_clara_map(job) -> None:
    ctx, _ = job
    assert open_declared("VOLUME", "r").read_only  # case-insensitive, read-only input
    with pytest.raises(ReadOnly, match="output of 'up'"):
        open_declared("volume", "w")
    with pytest.raises(InvalidArgument, match="give the data's full shape"):
        open_declared("mask", "w")
    with pytest.raises(InvalidArgument, match="fixed at 2"):
        open_declared("mask", "w", shape=(4, 4))
    mask = open_declared("mask", "w", shape=(2, 3))  # sized and allocated from the shape
    assert (mask.shape, mask.read_only, mask.name) == ((2, 3), False, "me--mask")
    with pytest.raises(InvalidArgument, match=r"has shape \[2, 3\]"):
        open_declared("mask", "w", shape=(2, 4))
    with pytest.raises(InvalidArgument, match="has shape"):
        open_declared("spacing", "w", shape=(4,))
    with pytest.raises(InvalidArgument, match="on disk"):
        open_declared("report", "w")
    manual = ctx.create(8)
    manual.publish("by-hand")  # Clara's manual flavour still works by plain name
    assert open_declared("by-hand", "w").nbytes == 8
    with pytest.raises(NotFound, match=r"declares no input or output 'nope'.*volume, scans"):
        open_declared("nope", "r")


def test_outside_clara_run_there_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CLARA_IO", "CLARA_OPERATOR", "CLARA_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(InvalidArgument, match="not running inside `clara run`"):
        open_declared("x", "r")
    with pytest.raises(InvalidArgument, match="not running inside `clara run`"):
        Driver(execute=lambda d, p: True).start()
    with pytest.raises(InvalidArgument, match="start"):
        Driver().wait_for_completion()


def test_operator_io_round_trips_and_exports_paths(job, tmp_path) -> None:
    _, io = job
    assert OperatorIO.from_json(io.to_json()) == io
    env = io.environment()
    assert env["CLARA_INPUT"] == env["CLARA_INPUT_SCANS"] == str(tmp_path)
    assert env["CLARA_OUTPUT_REPORT"] == str(tmp_path)
    with pytest.raises(InvalidArgument):
        OperatorIO.from_json('{"format": 99}')


def test_driver_life_cycle(job, tmp_path) -> None:
    states: list[str] = []
    seen: dict = {}

    def execute(driver: Driver, payload) -> bool:
        seen["payload"] = payload
        seen["names"] = (list(payload.inputs), list(payload.outputs))
        seen["paths"] = (payload.input_path(), payload.output_path("REPORT"))
        payload.outputs["label"].write_text("ok")
        payload.outputs["spacing"].map()  # left mapped: the driver ends the map
        return True

    driver = Driver(
        prepare=lambda d: states.append("prepare callback") is None,
        execute=execute,
        cleanup=lambda d: states.append("cleanup callback"),
        notify=lambda d, state, detail: states.append(state),
    )
    assert driver.start() is True and driver.wait_for_completion() is True
    assert states == [
        "preparing",
        "prepare callback",
        "waiting",
        "executing",
        "cleaning-up",
        "cleanup callback",
        "finalized",
    ]
    assert (driver.stage_name, driver.job_name) == ("me", "tests")
    assert seen["names"] == (["volume"], ["mask", "spacing", "label"])
    assert seen["paths"] == (str(tmp_path), str(tmp_path))
    with pytest.raises(InvalidArgument, match="only valid during execute"):
        _ = seen["payload"].inputs
    assert job[0].get("me--spacing").state == "complete"  # unmapped as complete
    with pytest.raises(InvalidArgument, match="already been started"):
        driver.start()


def test_a_failed_execute_leaves_its_write_maps_incomplete(job, capsys) -> None:
    cleaned = []

    def execute(driver: Driver, payload) -> bool:
        payload.outputs["spacing"].map()[...] = 1.0
        raise RuntimeError("boom")

    driver = Driver(execute=execute, cleanup=lambda d: cleaned.append(True))
    assert driver.start() is False
    assert cleaned == [True]
    assert "RuntimeError: boom" in capsys.readouterr().err
    assert job[0].get("me--spacing").state == "incomplete"
    assert Driver(execute=lambda d, p: False).start() is False
