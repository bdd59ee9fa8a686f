"""What a person exploring in a REPL sees: repr() and rich's pretty printer."""

from __future__ import annotations

import os
import uuid

import numpy as np
from rich.pretty import pretty_repr

from clara_core import Context
from clara_core.pipeline.environment import Declared
from clara_core.pipeline.variables import Variable


def test_context_allocation_and_mapping_show_name_type_shape_state_and_size():
    ctx = Context.create("explore", owner_pid=os.getpid())
    try:
        alloc = ctx.create(dtype="float32", shape=(64, 256))
        assert repr(alloc) == (
            "<Allocation private allocation in context 'explore' float32[64, 256] "
            "64.0 KiB empty, 0 map(s)>"
        )
        mapping = alloc.map("w")
        assert repr(mapping) == (
            "<Mapping write private allocation in context 'explore' float32[64, 256] "
            "64.0 KiB mapped>"
        )
        assert "state='writing'" in pretty_repr(alloc)
        assert "mode='write'" in pretty_repr(mapping) and "mapped=True" in pretty_repr(mapping)
        mapping.unmap()
        assert repr(mapping).endswith(" unmapped>")
        alloc.publish("volume")
        assert "'volume'" in repr(alloc) and " complete, 0 map(s)>" in repr(alloc)
        pretty = pretty_repr(alloc)
        assert pretty.startswith("Allocation(") and "name='volume'" in pretty
        assert "shape=(64, 256)" in pretty and "nbytes=65536" in pretty
        assert repr(ctx) == (
            f"<Context 'explore' owner {os.getpid()} (alive), mode 600, 1 allocation(s)>"
        )
        pretty = pretty_repr(ctx)
        assert pretty.startswith("Context(") and "allocations=['volume']" in pretty
        assert "mode='600'" in pretty and "capacity" not in pretty  # None is left out
        alloc.release()
        assert repr(alloc).endswith(" released>")  # never raises on a released reference
    finally:
        Context.destroy("explore")
        ctx.close()


def test_variable_shows_declared_and_actual_shape_state_and_size():
    ctx = Context.create("explore")
    try:
        port = Declared("output", "mask", "array", "uint8", (2, -1), None, "me--mask")
        var = Variable(ctx, port, "me")
        assert repr(var) == (
            "<Variable output 'mask' of operator 'me' uint8[2, -1] read-write unallocated>"
        )
        var.update_shape((2, 3))
        var.allocate()
        with var.mapped() as array:
            array[...] = np.ones((2, 3))
        assert repr(var) == (
            "<Variable output 'mask' of operator 'me' uint8[2, 3] 6 B read-write complete>"
        )
        pretty = pretty_repr(var)
        assert pretty.startswith("Variable(") and "declared_shape=(2, -1)" in pretty
        assert "state='complete'" in pretty and "nbytes=6" in pretty
        var.release()
    finally:
        Context.destroy("explore")
        ctx.close()


def test_the_core_never_imports_rich_for_its_reprs():
    import subprocess
    import sys

    code = (
        "import sys, os; from clara_core import Context; "
        f"c = Context.create('r{uuid.uuid4().hex[:8]}'); a = c.create(8); "
        "list(a.__rich_repr__()); repr(a); list(c.__rich_repr__()); a.release(); c.destroy(); "
        "print('rich' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
