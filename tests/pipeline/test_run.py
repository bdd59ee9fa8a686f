"""`clara run` end to end: real operator processes, shell and Python, and clean endings."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from clara_core import Context, leaks
from tests.helpers import running as alive

from .pipes import clara, clara_run, operators, start_run, write

OPS = Path(__file__).with_name("operators.py")
HEAD = "api-version: 0.5.0\norchestrator: Clara\nname: {name}\noperators:\n"
X = "{name: x, type: array, element-type: float64, shape: [-1, 3]}"


def op(name: str, command: str, inputs: list[str] = (), outputs: list[str] = ()) -> str:
    """One operator's YAML; `command` is the argv after `python operators.py`."""
    text = f"- name: {name}\n  container:\n    command: [python, {OPS}, {command}]\n"
    if inputs:
        text += "  input:\n" + "".join(f"  - {i}\n" for i in inputs)
    if outputs:
        text += "  output:\n" + "".join(f"  - {o}\n" for o in outputs)
    return text


def x_from(producer: str) -> str:
    return f"{{from: {producer}, name: x, type: array, element-type: float64, shape: [-1, 3]}}"


def lines(op_result: dict, key: str) -> list[str]:
    """Values of the `key value` lines an operator printed."""
    return [line.split(" ", 1)[1] for line in op_result["output_tail"] if line.startswith(key)]


def assert_clean() -> None:
    report = leaks.check()
    assert report.clean, report.leaks
    assert Context.list() == []


def test_three_operators_shell_and_python(tmp_path: Path) -> None:
    """Python producer (dynamic shape) -> shell with `clara map` pipes -> Python checker."""
    double = tmp_path / "double.sh"
    double.write_text(
        "set -euo pipefail\n"
        "clara map x --read --out - --format npy \\\n"
        "  | python -c 'import io, sys, numpy as np; a = np.load(io.BytesIO("
        "sys.stdin.buffer.read())); np.save(sys.stdout.buffer, 2 * a)' \\\n"
        "  | clara map y --write --in - --format npy\n"
        "echo doubled-in-shell\n"
    )
    y = "{name: y, type: array, element-type: float64, shape: [-1, 3]}"
    y_in = "{from: double, name: y, type: array, element-type: float64, shape: [0, 3]}"
    out = "{name: result, type: stream, element-type: text, path: /results}"
    pipeline = write(
        tmp_path,
        HEAD.format(name="three")
        + op("produce", "produce, '5'", outputs=[X])
        + f"- name: double\n  container: {{command: [bash, double.sh]}}\n"
        f"  input: [{x_from('produce')}]\n  output: [{y}]\n"
        + op("check", "check", inputs=[y_in], outputs=[out]),
    )
    code, result, err = clara_run(pipeline, "--job-dir", str(tmp_path / "job"))
    assert code == 0, err
    ops = operators(result)
    assert [o["status"] for o in ops.values()] == ["succeeded"] * 3
    # nothing to explain: null, as README promises for every key that does not apply
    assert [result["reason"]] + [o["reason"] for o in ops.values()] == [None] * 4
    assert lines(ops["check"], "shape") == ["5,3"]  # the producer's run-time shape
    assert lines(ops["check"], "doubled") == ["True"]
    assert "doubled-in-shell" in ops["double"]["output_tail"]
    written = tmp_path / "job" / "operators" / "check" / "result" / "result.txt"
    assert written.read_text() == "(5, 3) True\n"
    assert not (tmp_path / "results").exists() and not Path("/results").exists()
    # They read each other only in shared memory: all three start at job start.
    assert ops["double"]["started"] < ops["produce"]["ended"]
    assert ops["check"]["started"] < ops["double"]["ended"]
    variables = {v["name"]: v for v in result["variables"]}
    assert variables["produce--x"]["shape"] == [5, 3]
    assert variables["produce--x"]["state"] == "freed"
    assert variables["double--y"]["state"] == "freed"
    assert_clean()


def test_parallel_branches_overlap(tmp_path: Path) -> None:
    """Each branch waits for the other to start: only a parallel runner lets both finish."""
    pipeline = write(
        tmp_path,
        HEAD.format(name="branches")
        + op("source", "produce, '2'", outputs=[X])
        + op("left", f"rendezvous, left, right, '{tmp_path}'", inputs=[x_from("source")])
        + op("right", f"rendezvous, right, left, '{tmp_path}'", inputs=[x_from("source")]),
    )
    code, result, err = clara_run(pipeline, "--timeout", "50")
    assert code == 0, err
    ops = operators(result)
    left = [float(t) for t in lines(ops["left"], "start") + lines(ops["left"], "end")]
    right = [float(t) for t in lines(ops["right"], "start") + lines(ops["right"], "end")]
    assert max(left[0], right[0]) < min(left[1], right[1])  # the intervals overlap
    assert result["variables"][0]["state"] == "freed"  # after both readers
    assert_clean()


def test_dependents_of_a_failure_do_not_start_and_the_others_are_stopped(
    tmp_path: Path,
) -> None:
    """`after` reads broken's output in shared memory: it started at job start, and is
    stopped; `later` reads broken's folder: it never starts."""
    folder = "{name: log, type: stream, element-type: text, path: /log}"
    pipeline = write(
        tmp_path,
        HEAD.format(name="failing")
        + op("source", "produce, '2'", outputs=[X])
        + op(
            "broken",
            "exit-after-inputs, '3'",
            inputs=[x_from("source")],
            outputs=["{name: y, type: float32}", folder],
        )
        + op("slow", "sleep, '600'", inputs=[x_from("source")])
        + op("after", "nothing", inputs=["{from: broken, name: y, type: float32}"])
        + op("later", "nothing", inputs=[folder.replace("{", "{from: broken, ")]),
    )
    code, result, err = clara_run(pipeline, "--grace", "5")
    assert code == 1
    ops = operators(result)
    assert result["status"] == "failed"
    assert result["reason"] == "operator 'broken' exited with code 3"
    assert (ops["broken"]["status"], ops["broken"]["exit_code"]) == ("failed", 3)
    assert ops["source"]["status"] == "succeeded"
    assert ops["slow"]["status"] == "stopped"
    assert ops["after"]["status"] == "stopped" and ops["after"]["started"] is not None
    assert ops["later"]["status"] == "skipped" and ops["later"]["started"] is None
    assert not alive(ops["slow"]["pid"]) and not alive(ops["after"]["pid"])
    assert "operator 'broken' exited with code 3" in err
    assert_clean()


def test_timeout_stops_the_job(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        HEAD.format(name="slow")
        + op("sleeper", "sleep, '600'", outputs=["{name: y, type: float32}"])
        + op("after", "nothing", inputs=["{from: sleeper, name: y, type: float32}"]),
    )
    code, result, _ = clara_run(pipeline, "--timeout", "1", "--grace", "30")
    assert code == 1
    ops = operators(result)
    assert result["status"] == "timed-out"
    assert ops["sleeper"]["status"] == "timed-out"
    # It was running when the time ran out, and the runner stopped it (SIGTERM was enough:
    # the grace is long), rather than the job timing out before it ever started.
    assert ops["sleeper"]["pid"] and ops["sleeper"]["started"] is not None
    assert ops["sleeper"]["exit_code"] == -signal.SIGTERM
    assert ops["after"]["status"] == "timed-out"  # started early, waiting for y
    assert not alive(ops["sleeper"]["pid"])
    assert_clean()


@pytest.mark.parametrize(
    ("signum", "ignore_term"),
    [(signal.SIGINT, "no"), (signal.SIGTERM, "no"), (signal.SIGINT, "yes")],
    ids=["sigint", "sigterm", "sigint-operator-ignores-sigterm"],
)
def test_a_signal_stops_everything_and_frees_it(
    tmp_path: Path, signum: int, ignore_term: str
) -> None:
    """An operator holds a write map of its output; the runner is signalled."""
    ready = tmp_path / "ready"
    pipeline = write(
        tmp_path,
        HEAD.format(name="held")
        + op("holder", f"hold, '{ready}', '{ignore_term}'", outputs=[X])
        + op("after", "nothing", inputs=[x_from("holder")]),
    )
    runner = start_run(pipeline, "--grace", "0.3")
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text():
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the operator never got ready"
        time.sleep(0.02)
    holder_pid = int(ready.read_text())
    assert not leaks.check().leaks  # a live job is not a leak
    runner.send_signal(signum)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 1, err
    import json

    result = json.loads(out)
    ops = operators(result)
    assert result["status"] == "interrupted"
    assert result["reason"] == f"interrupted by {signal.Signals(signum).name}"
    assert ops["holder"]["status"] == "stopped"
    assert ops["after"]["status"] == "stopped"  # started early, waiting for x
    expected = -signal.SIGKILL if ignore_term == "yes" else -signal.SIGTERM
    assert ops["holder"]["exit_code"] == expected
    assert not alive(holder_pid)
    assert_clean()


def test_a_killed_runner_leaves_a_detectable_reclaimable_leak(tmp_path: Path) -> None:
    """kill -9 of the runner: its operators die with it, its memory is owner-dead."""
    ready = tmp_path / "ready"
    pipeline = write(
        tmp_path,
        HEAD.format(name="orphan") + op("holder", f"hold, '{ready}', 'yes'", outputs=[X]),
    )
    runner = start_run(pipeline)
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text():
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the operator never got ready"
        time.sleep(0.02)
    holder_pid = int(ready.read_text())
    runner.kill()
    runner.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while alive(holder_pid):  # PR_SET_PDEATHSIG: the kernel kills it
        assert time.monotonic() < deadline, "the operator outlived its runner"
        time.sleep(0.02)
    # A killed process is a zombie before its last thread has let go of its memory map
    # (and so of the map's lock): the kernel frees the lock a moment later.
    report = leaks.check()
    while not any(f.incomplete for f in report.leaks):  # x was mapped for writing
        assert time.monotonic() < deadline, [
            (f.segment.file_name, f.segment.state) for f in report.findings
        ]
        time.sleep(0.02)
        report = leaks.check()
    assert {f.status for f in report.leaks} == {"owner-dead"}
    assert {f.segment.kind for f in report.leaks} == {"context", "published"}
    assert leaks.reclaim().after.clean
    assert_clean()


def test_an_untyped_0_4_pipeline_with_disk_edges_and_manual_allocations(tmp_path: Path) -> None:
    """Clara's manual flavour: the disk edge orders them, the context carries the data."""
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "seed.txt").write_text("21\n")
    pipeline = write(
        tmp_path,
        """\
        api-version: 0.4.0
        name: untyped
        operators:
        - name: writer
          container: {command: [bash, writer.sh]}
          input: [{path: /input}]
          output: [{path: /output}]
        - name: reader
          container: {command: [bash, reader.sh]}
          input: [{from: writer, path: /input}]
          output: [{path: /output}]
        """,
        writer_sh="""\
        set -euo pipefail
        clara create allocation shared --dtype int32 --shape 2 >/dev/null
        printf '%s %s\\n' "$(cat "$CLARA_INPUT/seed.txt")" 2 \\
          | clara map shared --write --in - --format txt
        echo written > "$CLARA_OUTPUT/marker"
        """,
        reader_sh="""\
        set -euo pipefail
        cat "$CLARA_INPUT/marker"
        clara map shared --read --out - --format txt | tr '\\n' ' ' > "$CLARA_OUTPUT/seen"
        """,
    )
    job = tmp_path / "job"
    code, result, err = clara_run(pipeline, "--payload", str(payload), "--job-dir", str(job))
    assert code == 0, err
    assert operators(result)["reader"]["output_tail"] == ["written"]
    assert (job / "operators" / "reader" / "output" / "seen").read_text().split() == ["21", "2"]
    assert (job / "payload" / "seed.txt").read_text() == "21\n"  # a copy of --payload
    assert (job / "logs" / "reader.log").read_text() == "written\n"
    assert result["variables"] == []
    assert_clean()


def test_inputs_are_read_only(tmp_path: Path) -> None:
    """Python: every write path refused; shell: `clara map --write` of an input exits 8."""
    shell = tmp_path / "shell.sh"
    shell.write_text(
        "code=0; clara map x --write --in /dev/null || code=$?\necho shell-write-exit $code\n"
    )
    pipeline = write(
        tmp_path,
        HEAD.format(name="readonly")
        + op("source", "produce, '2'", outputs=[X])
        + op("python", "read-only", inputs=[x_from("source")])
        + f"- name: shell\n  container: {{command: [bash, shell.sh]}}\n"
        f"  input: [{x_from('source')}]\n",
    )
    code, result, err = clara_run(pipeline)
    assert code == 0, err
    ops = operators(result)
    assert lines(ops["python"], "access") == ["read-only"]
    for attempt in ("variable-map", "open-declared", "reference-map", "update-shape"):
        assert lines(ops["python"], attempt) == ["refused"], attempt
    assert lines(ops["python"], "view") == ["read-only"]
    assert lines(ops["shell"], "shell-write-exit") == ["8"]
    assert_clean()


def test_a_variable_is_freed_after_its_last_reader_while_the_job_runs(tmp_path: Path) -> None:
    w = X.replace("name: x", "name: w")
    pipeline = write(
        tmp_path,
        HEAD.format(name="freeing")
        + op("first", "produce, '3'", outputs=[X])
        # (at-exit: third goes on once second has exited, not when its outputs are complete)
        + op("second", "at-exit, produce, '4', w", inputs=[x_from("first")], outputs=[w])
        + op(
            "third",
            "freed, first--x, second--w",
            inputs=["{from: second, name: w, type: array, element-type: float64, shape: [-1, 3]}"],
        ),
    )
    code, result, err = clara_run(pipeline)
    assert code == 0, err
    ops = operators(result)
    assert lines(ops["third"], "gone") == ["first--x"]  # its only reader, second, is done
    assert lines(ops["third"], "present") == ["second--w"]  # third itself still reads it
    variables = {v["name"]: v for v in result["variables"]}
    assert ops["second"]["ended"] <= variables["first--x"]["freed_at"] <= ops["third"]["ended"]
    assert variables["second--w"]["freed_at"] >= ops["third"]["ended"]
    assert_clean()


def test_an_output_never_written_fails_its_producer(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        HEAD.format(name="lazy")
        + op(
            "lazy",
            "nothing",
            outputs=["{name: s, type: array, element-type: int32, shape: [2]}", X],
        )
        + op(
            "reader",
            "nothing",
            inputs=[
                "{from: lazy, name: s, type: array, element-type: int32, shape: [2]}",
                x_from("lazy"),
            ],
        ),
    )
    code, result, _ = clara_run(pipeline)
    assert code == 1
    ops = operators(result)
    assert ops["lazy"]["reason"] == (
        "exited 0 but never wrote output 's'; exited 0 but never allocated output 'x'"
    )
    assert ops["reader"]["status"] == "stopped"  # started early, waiting for its inputs
    assert_clean()


def test_an_output_not_as_declared_fails_its_producer(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        HEAD.format(name="impostor")
        + op("liar", "impostor", outputs=[X])
        + op("reader", "nothing", inputs=[x_from("liar")]),
    )
    code, result, _ = clara_run(pipeline)
    assert code == 1
    ops = operators(result)
    assert ops["liar"]["reason"] == (
        "wrote output 'x' as int32[2, 2], but it is declared float64[-1, 3]"
    )
    assert ops["reader"]["status"] == "stopped"  # started early, waiting for x
    assert_clean()


def test_keep_leaves_the_context_for_inspection(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        HEAD.format(name="kept")
        + op(
            "source",
            "produce, '2'",
            outputs=[X, "{name: s, type: array, element-type: int32, shape: [2]}"],
        ),
    )
    code, result, err = clara_run(pipeline, "--keep", "--context", "inspect-me")
    assert code == 0, err
    assert result["context"] == "inspect-me" and result["kept"] is True
    try:
        assert leaks.check().clean  # kept, without owner: idle, not a leak
        with Context.open("inspect-me") as context:
            assert context.names() == ["source--s", "source--x"]
            with context.get("source--s") as s, s.map("r") as array:
                assert array.tolist() == [2, 3]
        assert clara("dump", "inspect-me").returncode == 0
    finally:
        Context.destroy("inspect-me")


def test_an_existing_context_name_is_refused(tmp_path: Path) -> None:
    pipeline = write(tmp_path, HEAD.format(name="clash") + op("a", "nothing"))
    with Context.create("taken"):
        result = clara("run", str(pipeline), "--context", "taken")
        Context.destroy("taken")
    assert result.returncode == 10
    assert "already exists" in result.stderr


def test_a_command_that_cannot_start(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        HEAD.format(name="missing")
        + "- name: ghost\n  container: {command: [./no-such-program]}\n"
        + op("after", "nothing"),
    )
    code, result, _ = clara_run(pipeline)
    assert code == 1
    ops = operators(result)
    assert ops["ghost"]["status"] == "failed"
    assert ops["ghost"]["reason"] == (
        f"could not start ./no-such-program ({pipeline}:6): No such file or directory"
    )
    assert ops["after"]["status"] == "skipped"  # the job stopped before it started
    assert_clean()


def test_human_output_tables_and_account(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        HEAD.format(name="human")
        + op("source", "produce, '2'", outputs=[X])
        + op("broken", "exit-after-inputs, '4'", inputs=[x_from("source")]),
    )
    result = clara("run", str(pipeline))
    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert out[0] == f"pipeline human ({pipeline}):"
    assert out[1].split() == ["OPERATOR", "STATUS", "EXIT", "START", "DURATION", "NOTE"]
    assert out[2].split()[:3] == ["source", "succeeded", "0"]
    assert out[3].split()[:3] == ["broken", "failed", "4"]
    assert "source--x" in result.stdout
    assert "broken | exiting with 4" in result.stderr  # operators' output, prefixed
    assert "clara: pipeline human failed: operator 'broken' exited with code 4" in result.stderr
    quiet = clara("run", str(pipeline), "--quiet")
    assert "broken | " not in quiet.stderr
    assert "clara: last output of broken:\n    exiting with 4" in quiet.stderr
    assert_clean()


def test_an_invalid_pipeline_is_not_run(tmp_path: Path) -> None:
    pipeline = write(tmp_path, HEAD.format(name="bad") + op("a", "nothing") + "  colour: 1\n")
    result = clara("run", str(pipeline))
    assert result.returncode == 2
    assert f"{pipeline}:8: unknown key 'colour'" in result.stderr
    assert_clean()


def test_the_driver_outside_clara_run_says_so(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CLARA_") or k == "CLARA_NAMESPACE"
    }
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(OPS), "standalone"], capture_output=True, text=True, env=env
    ).stdout
    assert out.startswith("InvalidArgument not running inside `clara run`")


def test_a_driver_operator_freezes_what_exists_before_its_life_cycle(tmp_path: Path) -> None:
    """Driver.run() freezes the objects that exist when it is called (the collections at
    exit then skip them), and still collects what the callbacks leave: a reference cycle
    made in execute is finalized, at the latest at exit."""
    marker = tmp_path / "collected"
    (tmp_path / "op.py").write_text(
        "import gc, sys\n"
        "from clara_core.pipeline import Driver\n"
        "class Cycle:\n"
        "    def __init__(self):\n"
        "        self.me = self\n"
        "    def __del__(self):\n"
        f"        open({str(marker)!r}, 'w').write('finalized')\n"
        "def execute(driver, payload):\n"
        "    print('frozen', gc.get_freeze_count() > 1000)\n"
        "    Cycle()\n"
        "    return True\n"
        "Driver(execute=execute).run()\n"
    )
    pipeline = write(
        tmp_path,
        HEAD.format(name="frozen")
        + f"- name: only\n  container:\n    command: [python, {tmp_path / 'op.py'}]\n",
    )
    code, result, err = clara_run(pipeline)
    assert code == 0, err
    assert operators(result)["only"]["output_tail"] == ["frozen True"]
    assert marker.read_text() == "finalized"
    assert_clean()


def test_a_job_s_id_is_a_random_uuid4_and_names_its_context(tmp_path: Path) -> None:
    """The runner spells job ids itself (without importing uuid): each must be what
    str(uuid.uuid4()) gives, and a job's default context ends with its first 8 digits."""
    import uuid

    from clara_core.pipeline.environment import new_job_id

    ids = {new_job_id() for _ in range(200)}
    assert len(ids) == 200
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert (str(parsed), parsed.version, parsed.variant) == (job_id, 4, uuid.RFC_4122)
    pipeline = write(tmp_path, HEAD.format(name="ids") + op("only", "sleep, '0'"))
    code, result, err = clara_run(pipeline)
    assert code == 0, err
    assert uuid.UUID(result["job_id"]).version == 4
    assert result["context"] == f"ids-{result['job_id'][:8]}"
