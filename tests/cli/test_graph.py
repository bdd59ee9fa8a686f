"""`clara graph`: the DAG as Mermaid and DOT; README's picture is what the command prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .clirun import fails, mode_bits_apply, ok

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "ct-smooth.yaml"
README_BLOCK = re.compile(r"<!-- graph:ct-smooth -->\n```mermaid\n(.*?)```\n", re.DOTALL)

MIXED = """\
api-version: 0.5.0
orchestrator: Clara
name: mixed
operators:
- name: fetch
  container: {command: [x]}
  input:
  - {name: scans, type: stream, element-type: dicom, path: /input}
  output:
  - {name: files, type: stream, element-type: dicom, path: out}
  - {name: volume, type: array, element-type: int16, shape: [-1, 512, 0]}
- name: "quote-op"
  container: {command: [x]}
  input:
  - {from: fetch, name: files, type: stream, element-type: dicom, path: /in}
  - {from: fetch, name: volume, type: array, element-type: int16, shape: [-1, 512, 0]}
  output:
  - {name: label, type: string}
"""


def test_readme_shows_the_demo_graph_exactly_as_the_command_draws_it():
    generated = ok("graph", str(DEMO)).stdout.decode()
    match = README_BLOCK.search((ROOT / "README.md").read_text())
    assert match, "README.md lacks the <!-- graph:ct-smooth --> mermaid block"
    assert match.group(1) == generated, (
        "README's graph is stale: replace the block under <!-- graph:ct-smooth --> with "
        "`clara graph examples/ct-smooth.yaml`"
    )


def test_mermaid_labels_every_edge_with_name_type_and_shape(tmp_path: Path):
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    lines = ok("graph", str(path)).stdout.decode().splitlines()
    assert lines[0] == "flowchart LR"
    assert '    n0["fetch"]' in lines and '    n1["quote-op"]' in lines
    # shared memory: solid, dynamic dimensions as ?
    assert '    n0 -->|"volume: int16[?, 512, ?]"| n1' in lines
    # disk: dashed; between operators with the producer's path, else a file node
    assert '    n0 -.->|"files: dicom on disk (out)"| n1' in lines
    assert '    f0[("/input")]' in lines
    assert '    f0 -.->|"scans: dicom on disk"| n0' in lines
    # a shared-memory output nobody reads is no edge (it goes nowhere)
    assert not any("label" in line for line in lines)


def test_dot_is_valid_graphviz_with_dashed_disk_edges(tmp_path: Path):
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    text = ok("graph", str(path), "--format", "dot").stdout.decode()
    assert 'n0 -> n1 [label="volume: int16[?, 512, ?]"];' in text
    assert 'n0 -> n1 [label="files: dicom on disk (out)", style=dashed];' in text
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("graphviz is missing in CI (.ci/run installs it)")
        pytest.skip("graphviz `dot` is not installed here: cannot check the DOT syntax")
    laid_out = subprocess.run(
        ["dot", "-Tplain"], input=text, capture_output=True, text=True, check=True
    ).stdout
    edges = [line for line in laid_out.splitlines() if line.startswith("edge ")]
    assert len(edges) == 3  # graphviz parsed all of them
    dashed = [e.split()[1:3] for e in edges if e.endswith(" dashed black")]
    assert sorted(dashed) == [["f0", "n0"], ["n0", "n1"]]


def test_demo_pipelines_draw_in_both_formats():
    for example in sorted((ROOT / "examples").glob("ct-*.yaml")):  # the typed demos
        for fmt in ("mermaid", "dot"):
            text = ok("graph", str(example), "--format", fmt).stdout.decode()
            assert "acquire" in text and "[?, 128, 128]" in text, (example, fmt)
    untyped = ok("graph", str(ROOT / "examples" / "dicom-seg.yaml")).stdout.decode()
    assert '"series-reader"' in untyped and '("/publish")' in untyped


def test_bad_input_is_one_line_and_a_documented_code(tmp_path: Path):
    fails(3, "graph", str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(MIXED.replace("from: fetch, name: volume", "from: nobody, name: volume"))
    assert "not a valid pipeline" in fails(2, "graph", str(bad))
    fails(2, "graph", str(DEMO), "--format", "svg")


@pytest.mark.must_run  # a permission test: a skip of it fails CI
@pytest.mark.parametrize("command", ["graph", "validate", "run"])
def test_a_pipeline_file_that_cannot_be_read_says_why_in_words(
    tmp_path: Path, command: str
) -> None:
    """The reason is the system's words (not Python's `[Errno 21] ...: '/x'`), with the
    documented code: 2 for a directory or a file that is not text, 8 for one we may not read."""
    line = fails(2, command, str(tmp_path))
    assert line == f"clara: error: cannot read pipeline file {tmp_path}: Is a directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xd0\x00")
    line = fails(2, command, str(binary))
    assert line.endswith(f"pipeline file {binary}: it is not UTF-8 text (byte 6)")
    locked = tmp_path / "locked.yaml"
    locked.write_text(DEMO.read_text())
    locked.chmod(0)
    prefix = mode_bits_apply()  # (root: without the capabilities that ignore mode bits)
    line = fails(8, command, str(locked), prefix=prefix)
    assert line == f"clara: error: cannot read pipeline file {locked}: Permission denied"
