"""Data readiness: never-written data is refused, and a reader can wait for its writer."""

from __future__ import annotations

import time

import numpy as np
import pytest

from clara_core import Context, Incomplete, InvalidArgument, NeverWritten, NotFound, Timeout
from clara_core.waiting import Deadline
from tests.helpers import Child


@pytest.fixture
def ctx():
    context = Context.create("job")
    yield context
    Context.destroy("job")


def test_reading_data_never_written_is_refused(ctx):
    alloc = ctx.create(dtype="i32", shape=(4,))
    alloc.publish("v")
    with pytest.raises(NeverWritten) as caught:
        ctx.get("v").map("r")
    error = caught.value
    assert isinstance(error, Incomplete) and error.exit_code == 6
    assert str(error).startswith("allocation 'v' in context 'job' was never written;")
    assert "allow_incomplete=True" in str(error) and "wait=True" in str(error)
    with ctx.get("v").map("r", allow_incomplete=True) as zeros:
        assert zeros.tolist() == [0, 0, 0, 0]
    with alloc.map("w") as array:
        array[:] = 7
    with ctx.get("v").map("r") as array:
        assert array.tolist() == [7, 7, 7, 7]
    alloc.release()


def test_a_reader_started_before_its_producer_waits_for_name_and_data(ctx):
    consumer = Child(
        """
        from clara_core import Context
        context = Context.open("job")
        print("waiting", flush=True)
        with context.get("v", wait=True, timeout=60) as ref:
            print("got", flush=True)
            with ref.map("r", wait=True, timeout=60) as array:
                print("values", array.tolist(), flush=True)
        """
    )
    try:
        consumer.expect("waiting")
        time.sleep(0.2)  # let it poll for the name (not needed for correctness)
        alloc = ctx.create(dtype="f64", shape=(3,))
        alloc.publish("v")  # published before it is written: the reader must wait on
        consumer.expect("got")
        time.sleep(0.2)  # let it poll the data state
        with alloc.map("w") as array:
            array[:] = [1.5, 2.5, 3.5]
        assert consumer.expect("values") == "values [1.5, 2.5, 3.5]"
        code, _out, err = consumer.finish()
        assert code == 0, err
    finally:
        if consumer.process.poll() is None:
            consumer.kill()
    alloc.release()


def test_waits_end_in_timeout(ctx):
    with pytest.raises(Timeout, match="allocation 'ghost' in context 'job' was not published "):
        ctx.get("ghost", wait=True, timeout=0.05)
    with pytest.raises(NotFound):
        ctx.get("ghost")  # without wait: at once
    alloc = ctx.create(8)
    alloc.publish("v")
    with pytest.raises(Timeout, match=r"was not written within 0\.05 s"):
        ctx.get("v").map("r", wait=True, timeout=0.05)
    shared = Deadline(0.05)  # one wait for the name, then the data: messages say the whole
    with pytest.raises(Timeout, match=r"was not written within 0\.05 s"):
        ctx.get("v", wait=True, timeout=shared).map("r", wait=True, timeout=shared)
    alloc.release()


def test_a_wait_names_the_writer_still_writing(ctx):
    ctx.create(8).publish("v")
    writer = Child(
        """
        import time
        from clara_core import Context
        m = Context.open("job").get("v").map("w")
        print("writing", flush=True)
        time.sleep(60)
        """
    )
    try:
        writer.expect("writing")
        with pytest.raises(Timeout) as caught:
            ctx.get("v").map("r", wait=True, timeout=0.1)
        assert f"was still being written by pid {writer.pid} (python" in str(caught.value)
    finally:
        writer.kill()
    # its writer died: the wait ends at once, the data is incomplete
    with pytest.raises(Incomplete) as caught:
        ctx.get("v").map("r", wait=True, timeout=60)
    assert not isinstance(caught.value, NeverWritten)
    with ctx.get("v").map("r", wait=True, timeout=60, allow_incomplete=True) as array:
        assert array.tolist() == [0] * 8
    ctx.get("v").free()


def test_a_failed_writer_ends_the_wait_with_incomplete(ctx):
    alloc = ctx.create(dtype="u8", shape=(2,))
    alloc.publish("v")
    alloc.map("w").unmap(complete=False)
    with pytest.raises(Incomplete, match="incomplete: its writer"):
        ctx.get("v").map("r", wait=True, timeout=60)
    alloc.release()


def test_wait_is_for_reading_and_timeouts_are_checked(ctx):
    alloc = ctx.create(8)
    with pytest.raises(InvalidArgument, match="a write map waits"):
        alloc.map("w", wait=True)
    with pytest.raises(InvalidArgument, match="invalid timeout"):
        alloc.map("r", wait=True, timeout=-1)
    with pytest.raises(InvalidArgument, match="invalid timeout"):
        ctx.get("v", wait=True, timeout=float("nan"))
    alloc.release()


def test_values_written_before_publishing_are_complete_when_seen(ctx):
    """Fill before publish: whoever sees the name sees complete data."""
    alloc = ctx.create(dtype="i16", shape=(2, 2))
    with alloc.map("w") as array:
        array[...] = np.arange(4).reshape(2, 2)
    alloc.publish("v")
    with ctx.get("v").map("r") as array:
        assert array.tolist() == [[0, 1], [2, 3]]
    alloc.release()
