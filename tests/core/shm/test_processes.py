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
