"""Without a warm pool, a job's context pools what it frees only if a later allocation
could use it; otherwise freed variables give their memory back while the job runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_core.pipeline.loading import load
from clara_core.pipeline.scheduling import allocates_late

from .pipes import clara_run, operators, write
from .test_early_start import from_produce, reader
from .test_run import HEAD, assert_clean

MIB2 = 2 << 20
X = "{name: x, type: array, element-type: uint8, shape: [2097152]}"


@pytest.mark.parametrize(
    ("y_shape", "pooled"), [("[2097152]", 0), ("[-1]", 1)], ids=["static", "dynamic"]
)
def test_a_job_pools_what_it_frees_only_for_a_later_allocation(
    tmp_path: Path, y_shape: str, pooled: int
) -> None:
    """produce writes x, transform reads x and writes y, consume reads y, then counts the
    pooled segments of the job's context: x was freed (its last reader, transform, is
    settled before consume may read y). With y dynamic (allocated by transform as it
    runs) a later allocation could have used x's memory: x is pooled; with every output
    static, nothing could: x is gone."""
    y = f"{{name: y, type: array, element-type: uint8, shape: {y_shape}}}"
    (tmp_path / "produce.sh").write_text(f"head -c {MIB2} /dev/zero | clara map x --write --in -\n")
    (tmp_path / "transform.sh").write_text(
        "set -euo pipefail\nclara map x --read --out /dev/null\n"
        f"head -c {MIB2} /dev/zero | clara map y --write --in -\n"
    )
    (tmp_path / "consume.sh").write_text(
        "set -euo pipefail\nclara map y --read --out /dev/null\n"
        'clara --json dump "$CLARA_CONTEXT" | python -c "import json, sys; '
        "found = json.load(sys.stdin)['allocations']; "
        "print('pooled', sum(a['kind'] == 'pooled' for a in found))\"\n"
    )
    pipeline = write(
        tmp_path,
        HEAD.format(name="job-pool")
        + reader("produce", str(tmp_path / "produce.sh"), [], [X]).replace("  input:\n", "")
        + reader("transform", str(tmp_path / "transform.sh"), [from_produce(X)], [y])
        + reader("consume", str(tmp_path / "consume.sh"), [y.replace("{", "{from: transform, ")]),
    )
    code, result, err = clara_run(pipeline)
    assert code == 0, (err, result["operators"])
    assert operators(result)["consume"]["output_tail"] == [f"pooled {pooled}"]
    assert_clean()


def one_pipeline(tmp_path: Path, first_outputs: str, later_reads: str, later_outputs: str) -> Path:
    """`first` (no input) writes `first_outputs`; `later` reads `later_reads` from it and
    writes `later_outputs` (YAML flow lists)."""
    return write(
        tmp_path,
        HEAD.format(name="late")
        + f"- name: first\n  container: {{command: [sh, a.sh]}}\n  output: {first_outputs}\n"
        + f"- name: later\n  container: {{command: [sh, b.sh]}}\n  input: {later_reads}\n"
        + f"  output: {later_outputs}\n",
    )


STATIC = "{name: x, type: array, element-type: uint8, shape: [4]}"
STATIC_Z = STATIC.replace("name: x", "name: z")
FOLDER = "{name: f, type: stream, element-type: text, path: /f}"


@pytest.mark.parametrize(
    ("first", "reads", "later", "late"),
    [
        (f"[{STATIC}]", f"[{from_produce(STATIC)}]", f"[{STATIC_Z}]", False),
        (f"[{STATIC}]", f"[{from_produce(STATIC)}]", "[{name: z, type: string}]", True),
        (
            f"[{STATIC}]",
            f"[{from_produce(STATIC)}]",
            "[{name: z, type: array, element-type: uint8, shape: [-1]}]",
            True,
        ),
        (f"[{STATIC}, {FOLDER}]", f"[{from_produce(FOLDER)}]", f"[{STATIC_Z}]", True),
    ],
    ids=["all-static", "string", "dynamic", "starts-late"],
)
def test_which_jobs_can_reuse_what_they_free(
    tmp_path: Path, first: str, reads: str, later: str, late: bool
) -> None:
    """`allocates_late` on pipelines as `clara run` loads them: only a string or dynamic
    output, or a static one of an operator that starts once another succeeded (it reads
    a folder), can be allocated after a free."""
    pipeline = one_pipeline(tmp_path, first, reads.replace("produce", "first"), later)
    assert allocates_late(load(str(pipeline))) is late
