"""/proc readers: who holds a segment open is found in other processes, never the asker."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from clara_core.shm import processes


def test_openers_names_other_holders_but_never_the_asking_process():
    with tempfile.NamedTemporaryFile(dir="/dev/shm", prefix="claratest-openers-") as held:
        stat = os.fstat(held.fileno())
        file_id = (stat.st_dev, stat.st_ino)
        # Only this process holds it: the asker is never reported as a user of what it
        # opened to ask about (leak-check --fix would otherwise keep a segment "in use by"
        # itself).
        assert processes.openers({file_id}) == {}
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; f = open(sys.argv[1]); print(1, flush=True); time.sleep(60)",
                held.name,
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"1\n"
            found = processes.openers({file_id})
            assert [m.pid for m in found[file_id]] == [holder.pid]
        finally:
            holder.kill()
            holder.wait(30)


def _command_line_of(argv0: str, tmp_path) -> str:
    """processes.command_line of a real python process started with argv[0] = `argv0`."""
    script = tmp_path / "tool.py"
    script.write_text("import sys, time; print(1, flush=True); time.sleep(60)\n")
    child = subprocess.Popen(
        [argv0, str(script), "--flag", "two words"],
        executable=sys.executable,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"1\n"
        return processes.command_line(child.pid)
    finally:
        child.kill()
        child.wait(30)


def test_a_python_script_is_named_by_its_script(tmp_path):
    for interpreter in ("python", "python3", "/usr/bin/python3.11"):
        assert _command_line_of(interpreter, tmp_path) == "tool.py --flag two words"


def test_a_program_merely_named_like_python_keeps_its_name(tmp_path):
    for program in ("pythonx", "python3-config", "ipython3"):
        line = _command_line_of(program, tmp_path)
        assert line == f"{program} {tmp_path / 'tool.py'} --flag two words"
