"""The core stays free of the CLI's libraries, and of numpy until an array is asked for."""

import textwrap

from tests.helpers import run_python


def loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_importing_the_core_loads_no_click_rich_yaml_or_numpy():
    modules = loaded_after("import clara_core")
    assert not {"click", "rich", "yaml", "numpy"} & modules
    assert "clara_core.context" not in modules  # loaded on first use
    assert "clara_core.context" in loaded_after("import clara_core; clara_core.Context")


def test_create_publish_map_and_copy_raw_bytes_without_numpy():
    modules = loaded_after(
        """
        from clara_core import Context
        ctx = Context.create("job")
        a = ctx.create(16)
        w = a.map("w")
        w.buffer[:] = bytes(range(16))
        w.unmap()
        a.publish("x")
        m = ctx.get("x").map("r")
        assert bytes(m.buffer) == bytes(range(16))
        m.unmap()
        Context.destroy("job")
        """
    )
    assert "numpy" not in modules
