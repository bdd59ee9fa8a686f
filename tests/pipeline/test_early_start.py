"""Early start: an operator reading only shared memory starts with the job, and each read
of a declared input waits until its producer has completed it (or failed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pipes import clara_run, operators, write
from .test_run import HEAD, X, assert_clean, op

S = "{name: s, type: array, element-type: int32, shape: [2]}"  # static: pre-allocated


def reader(name: str, script: str, inputs: list[str], outputs: list[str] = ()) -> str:
    text = f"- name: {name}\n  container: {{command: [bash, {script}]}}\n"
    text += "  input:\n" + "".join(f"  - {i}\n" for i in inputs)
    if outputs:
        text += "  output:\n" + "".join(f"  - {o}\n" for o in outputs)
    return text


def from_produce(port: str) -> str:
    return port.replace("{", "{from: produce, ")


def test_a_shell_operator_started_early_reads_the_data_once_written(tmp_path: Path) -> None:
    """The producer writes only after the shell reader has started: the reader's `clara
    map` calls wait for the data (a dynamic output not yet allocated, a static one
    allocated but not written) and read what the producer wrote."""
    flag = tmp_path / "reader-started"
    (tmp_path / "read.sh").write_text(
        "set -euo pipefail\n"
        f"touch {flag}\n"
        'clara map x --read --out "$CLARA_OUTPUT_GOT/x.npy" --format npy\n'
        'clara map s --read --out "$CLARA_OUTPUT_GOT/s.npy" --format npy\n'
        "echo read-both\n"
    )
    got = "{name: got, type: stream, element-type: npy, path: /got}"
    pipeline = write(
        tmp_path,
        HEAD.format(name="early")
        + op("produce", f"produce-when, '{flag}', '4'", outputs=[X, S])
        + reader("consume", "read.sh", [from_produce(X), from_produce(S)], [got]),
    )
    job = tmp_path / "job"
    code, result, err = clara_run(pipeline, "--job-dir", str(job))
    assert code == 0, err
    ops = operators(result)
    assert ops["consume"]["started"] < ops["produce"]["ended"]
    assert "read-both" in ops["consume"]["output_tail"]
    folder = job / "operators" / "consume" / "got"
    x = np.load(folder / "x.npy")
    assert x.dtype == np.float64
    assert np.array_equal(x, np.arange(12.0).reshape(4, 3))
    assert np.load(folder / "s.npy").tolist() == [4, 3]
    assert {v["name"]: v["state"] for v in result["variables"]} == {
        "produce--x": "freed",
        "produce--s": "freed",
    }
    assert_clean()


def test_a_failed_producer_wakes_its_waiting_reader_with_a_clear_error(tmp_path: Path) -> None:
    """The reader ignores SIGTERM (so does its `clara map`), and the grace is long: only
    the producer's failure can end its wait, with a message naming the producer."""
    flag = tmp_path / "reader-started"
    (tmp_path / "read.sh").write_text(
        f"trap '' TERM\ntouch {flag}\nclara map x --read --out /dev/null\necho \"map-exit $?\"\n"
    )
    pipeline = write(
        tmp_path,
        HEAD.format(name="failing")
        + op("produce", f"fail-when, '{flag}'", outputs=[X])
        + reader("consume", "read.sh", [from_produce(X)]),
    )
    code, result, err = clara_run(pipeline, "--grace", "60", timeout=120)
    assert code == 1, err
    ops = operators(result)
    assert result["reason"] == "operator 'produce' exited with code 1"
    assert (ops["produce"]["status"], ops["produce"]["exit_code"]) == ("failed", 1)
    tail = ops["consume"]["output_tail"]
    assert (
        "clara: error: input 'x' of operator 'consume' will never be complete: "
        "operator 'produce' failed" in tail
    ), tail
    assert "map-exit 1" in tail  # UpstreamFailed: an operator failed
    # It ended on its own (SIGTERM ignored, SIGKILL not yet due), once woken.
    assert (ops["consume"]["status"], ops["consume"]["exit_code"]) == ("stopped", 0)
    assert_clean()


def produce_then_consume(tmp_path: Path, pid_file: Path, name: str, options: str = "") -> Path:
    """Pipeline `name`: tmp_path's produce.py writes x; a Driver operator (with `options`)
    that writes its pid to `pid_file` in prepare reads x and writes y = 2x."""
    driver_args = ", ".join(["prepare=prepare", "execute=execute", *filter(None, [options])])
    (tmp_path / "consume.py").write_text(
        "import os\nfrom pathlib import Path\nfrom clara_core.pipeline import Driver\n"
        "def prepare(driver):\n"
        f"    Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "def execute(driver, payload):\n"
        "    with payload.inputs['x'].mapped() as x, payload.outputs['y'].mapped() as y:\n"
        "        y[:] = x * 2\n"
        "        print('y', y.tolist())\n"
        "    return True\n"
        f"Driver({driver_args}).run()\n"
    )
    x = "{name: x, type: array, element-type: int32, shape: [4]}"
    y = "{name: y, type: array, element-type: int32, shape: [4]}"
    return write(
        tmp_path,
        HEAD.format(name=name)
        + f"- name: produce\n  container: {{command: [python, {tmp_path / 'produce.py'}]}}\n"
        + f"  output:\n  - {x}\n"
        + f"- name: consume\n  container: {{command: [python, {tmp_path / 'consume.py'}]}}\n"
        + f"  input:\n  - {from_produce(x)}\n  output:\n  - {y}\n",
    )


def test_an_operator_prepares_its_maps_while_it_waits_for_its_inputs(tmp_path: Path) -> None:
    """The driver maps an operator's inputs and outputs (populated) while it waits for
    their producers, so that its maps after the wait are instant: the producer here
    writes only once it sees both segments mapped by the waiting reader."""
    pid_file = tmp_path / "consume.pid"
    (tmp_path / "produce.py").write_text(
        "import time\nfrom pathlib import Path\nfrom clara_core.pipeline import Driver\n"
        "def mapped_by_reader():\n"
        f"    pid = Path({str(pid_file)!r})\n"
        "    if not pid.exists() or not pid.read_text():\n"
        "        return False\n"
        "    maps = Path(f'/proc/{pid.read_text()}/maps').read_text()\n"
        "    return '.a.produce--x' in maps and '.a.consume--y' in maps\n"
        "def execute(driver, payload):\n"
        "    deadline = time.monotonic() + 30\n"
        "    while not mapped_by_reader():\n"
        "        if time.monotonic() > deadline:\n"
        "            print('the reader never mapped x and y')\n"
        "            return False\n"
        "        time.sleep(0.01)\n"
        "    payload.outputs['x'].write([1, 2, 3, 4])\n"
        "    return True\n"
        "Driver(execute=execute).run()\n"
    )
    code, result, err = clara_run(produce_then_consume(tmp_path, pid_file, "premap"))
    assert code == 0, (err, result["operators"])
    ops = operators(result)
    assert ops["consume"]["output_tail"] == ["y [2, 4, 6, 8]"]
    assert_clean()


def test_premap_false_leaves_the_maps_to_execute(tmp_path: Path) -> None:
    """With Driver(premap=False) nothing is mapped during the wait: the producer looks at
    the reader's mappings once the reader sleeps in its wait for x, then writes x."""
    pid_file = tmp_path / "consume.pid"
    (tmp_path / "produce.py").write_text(
        "import fcntl, os, time\nfrom pathlib import Path\nfrom clara_core.pipeline import Driver\n"
        "def waiting(pid):\n"
        "    for tid in os.listdir(f'/proc/{pid}/task'):\n"
        "        syscall = Path(f'/proc/{pid}/task/{tid}/syscall').read_text().split()\n"
        "        if syscall[2:3] == [hex(fcntl.F_OFD_SETLKW)]:\n"
        "            return True\n"
        "    return False\n"
        "def execute(driver, payload):\n"
        f"    pid_file = Path({str(pid_file)!r})\n"
        "    deadline = time.monotonic() + 30\n"
        "    pid = lambda: pid_file.exists() and pid_file.read_text()\n"
        "    while not (pid() and waiting(pid())):\n"
        "        if time.monotonic() > deadline:\n"
        "            print('the reader never waited')\n"
        "            return False\n"
        "        time.sleep(0.01)\n"
        "    maps = Path(f'/proc/{pid_file.read_text()}/maps').read_text()\n"
        "    print('premapped', '.a.produce--x' in maps or '.a.consume--y' in maps)\n"
        "    payload.outputs['x'].write([1, 2, 3, 4])\n"
        "    return True\n"
        "Driver(execute=execute).run()\n"
    )
    code, result, err = clara_run(
        produce_then_consume(tmp_path, pid_file, "no-premap", "premap=False")
    )
    assert code == 0, (err, result["operators"])
    ops = operators(result)
    assert ops["produce"]["output_tail"] == ["premapped False"]
    assert ops["consume"]["output_tail"] == ["y [2, 4, 6, 8]"]
    assert_clean()
