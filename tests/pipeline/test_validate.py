"""Pipeline validation: every rule, each problem at its line, all problems at once."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from clara_core.errors import NotFound
from clara_core.pipeline import PipelineInvalid, check, load

from .pipes import clara

HEAD = """\
api-version: 0.5.0
orchestrator: Clara
name: checks
operators:
"""

PRODUCER = """\
- name: producer
  container: {command: [x]}
  output:
  - {name: volume, type: array, element-type: float32, shape: [4, -1]}
  - {name: spacing, type: array, element-type: float64, shape: [3]}
  - {name: label, type: string}
  - {name: scale, type: f32}
  - {name: files, type: stream, element-type: dicom, path: /out}
"""


def problems(tmp_path: Path, text: str, severity: str = "error") -> list[tuple[int, str]]:
    """(line, message) of every problem of `severity` (error, warning, note) in `text`."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    pipeline, found = check(str(path))
    assert (pipeline is None) == any(p.is_error for p in found)
    assert all(p.file == str(path) for p in found)
    return [(p.line, p.message) for p in found if p.severity == severity]


def line_of(text: str, marker: str, nth: int = 1) -> int:
    """1-based line of the `nth` line of `text` containing `marker`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    return hits[nth - 1]


def expect(tmp_path: Path, text: str, *wanted: tuple[str, str]) -> None:
    """Exactly the problems `wanted`: (marker of the line, part of the message) each."""
    found = problems(tmp_path, text)
    expected_lines = sorted(line_of(text, marker) for marker, _ in wanted)
    assert sorted(line for line, _ in found) == expected_lines, found
    for marker, part in wanted:
        line = line_of(text, marker)
        assert any(at == line and part in message for at, message in found), (part, found)


def consumer(*inputs: str) -> str:
    body = "".join(f"  - {i}\n" for i in inputs)
    return f"- name: consumer\n  container: {{command: [y]}}\n  input:\n{body}"


def test_a_valid_typed_pipeline_has_no_problem(tmp_path: Path) -> None:
    text = (
        HEAD
        + PRODUCER
        + consumer(
            "{from: producer, name: volume, type: array, element-type: f32, shape: [4, 0]}",
            "{from: producer, name: SPACING, type: array, element-type: float64, shape: [3]}",
            "{from: producer, name: label, type: array, element-type: uint8, shape: [-1]}",
            "{from: producer, name: scale, type: array, element-type: float32, shape: [1]}",
            "{from: producer, name: files, type: stream, element-type: dicom, path: /in}",
            "{name: payload, type: stream, element-type: nifti, path: /input}",
        )
    )
    assert problems(tmp_path, text) == []
    pipeline = load(str(tmp_path / "pipeline.yaml"))
    producer, consumer_op = pipeline.operators
    assert consumer_op.upstream == ("producer",)
    assert [op.name for op in pipeline.order()] == ["producer", "consumer"]
    volume = producer.outputs[0]
    assert volume.is_dynamic and volume.dynamic_indices == (1,)
    label, scale = producer.outputs[2], producer.outputs[3]
    assert (label.element_type, label.shape, label.is_dynamic) == ("uint8", (-1,), True)
    assert (scale.element_type, scale.shape, scale.is_dynamic) == ("float32", (1,), False)
    assert pipeline.allocation_name(producer, volume) == "producer--volume"
    assert [op.name for op, _ in pipeline.consumers(producer, volume)] == ["consumer"]


def test_unknown_keys_at_every_level(tmp_path: Path) -> None:
    text = HEAD.replace("name: checks", "name: checks\ncolour: blue") + textwrap.dedent(
        """\
        - name: a
          flavour: x
          container: {command: [x], entrypoint: y}
          output:
          - {name: v, type: float32, size: 3}
        """
    )
    expect(
        tmp_path,
        text,
        ("colour:", "unknown key 'colour' in pipeline"),
        ("flavour:", "unknown key 'flavour' in operator"),
        ("entrypoint", "unknown key 'entrypoint' in container"),
        ("size: 3", "unknown key 'size' in output"),
    )


def test_bad_names(tmp_path: Path) -> None:
    text = HEAD.replace("name: checks", "name: two words") + textwrap.dedent(
        """\
        - name: a.b
          container: {command: [x]}
          output:
          - {name: "v/1", type: float32}
        """
    )
    expect(
        tmp_path,
        text,
        ("two words", "invalid pipeline name 'two words'"),
        ("a.b", "invalid operator name 'a.b'"),
        ("v/1", "invalid output name 'v/1'"),
    )


def test_names_are_unique_case_insensitively(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        - name: Twin
          container: {command: [x]}
          output:
          - {name: out, type: float32}
          - {name: OUT, type: float64}
        - name: twin
          container: {command: [x]}
        """
    )
    expect(
        tmp_path,
        text,
        ("name: OUT", "declares 'OUT' twice (first on line 8)"),
        ("name: twin", "duplicate operator name 'twin' (first on line 5)"),
    )


def test_input_from_a_missing_operator_or_output(tmp_path: Path) -> None:
    text = (
        HEAD
        + PRODUCER
        + consumer(
            "{from: ghost, name: volume, type: float32}",
            "{from: producer, name: nothing, type: float32}",
        )
    )
    expect(
        tmp_path,
        text,
        ("ghost", "comes from operator 'ghost', which does not exist"),
        ("nothing", "operator 'producer' has no output 'nothing'"),
    )


def test_incompatible_element_type_and_shape(tmp_path: Path) -> None:
    text = (
        HEAD
        + PRODUCER
        + consumer(
            "{from: producer, name: volume, type: array, element-type: float64, shape: [4, -1]}",
            "{from: producer, name: spacing, type: array, element-type: float64, shape: [4]}",
            "{from: producer, name: label, type: array, element-type: uint8, shape: [2, -1]}",
            "{from: producer, name: scale, type: int32}",
            "{from: producer, name: files, type: stream, element-type: nifti, path: /in}",
        )
    )
    expect(
        tmp_path,
        text,
        ("float64, shape: [4, -1]", "has element type float64 but output 'volume'"),
        ("shape: [4]}", "has shape [4] but output 'spacing' of 'producer' has shape [3]"),
        ("shape: [2, -1]", "has shape [2, -1] but output 'label'"),
        ("type: int32", "has element type int32 but output 'scale' of 'producer' is float32"),
        ("nifti", "expects element-type nifti but output 'files'"),
    )


def test_element_type_and_shape_are_both_reported(tmp_path: Path) -> None:
    text = (
        HEAD
        + PRODUCER
        + consumer("{from: producer, name: spacing, type: array, element-type: i8, shape: [2]}")
    )
    found = problems(tmp_path, text)
    line = line_of(text, "element-type: i8")
    assert [at for at, _ in found] == [line, line]
    assert "has element type int8 but" in found[0][1]
    assert "has shape [2] but" in found[1][1]


def test_dynamic_dimensions_match_any_size(tmp_path: Path) -> None:
    text = (
        HEAD
        + PRODUCER
        + consumer(
            "{from: producer, name: volume, type: array, element-type: float32, shape: [-1, 7]}",
            "{from: producer, name: spacing, type: array, element-type: float64, shape: [0]}",
        )
    )
    assert problems(tmp_path, text) == []


def test_medium_mismatch(tmp_path: Path) -> None:
    text = (
        HEAD
        + PRODUCER
        + consumer("{from: producer, name: files, type: array, element-type: uint8, shape: [-1]}")
    )
    expect(
        tmp_path, text, ("name: files, type: array", "is shared-memory (array) but output 'files'")
    )


def test_cycles(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        - name: first
          container: {command: [x]}
          input: [{from: third, name: c, type: float32}]
          output: [{name: a, type: float32}]
        - name: second
          container: {command: [x]}
          input: [{from: first, name: a, type: float32}]
          output: [{name: b, type: float32}]
        - name: third
          container: {command: [x]}
          input: [{from: second, name: b, type: float32}]
          output: [{name: c, type: float32}]
        - name: selfish
          container: {command: [x]}
          input: [{from: selfish, name: d, type: float32}]
          output: [{name: d, type: float32}]
        """
    )
    expect(
        tmp_path,
        text,
        ("name: first", "operators form a cycle: first -> second -> third -> first"),
        ("name: selfish", "operators form a cycle: selfish -> selfish"),
        ("output: [{name: d", "declares 'd' twice"),  # a self-loop reads its own output
    )


def test_disk_io_needs_a_path(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        - name: a
          container: {command: [x]}
          input:
          - {name: scans, type: stream, element-type: dicom}
          output:
          - {name: result, type: stream, element-type: nifti, path: ""}
        """
    )
    expect(
        tmp_path,
        text,
        ("name: scans", "is on disk (stream) and needs a path"),
        ("name: result", "is on disk (stream) and needs a path"),
    )


def test_types_follow_claras_table(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        - name: a
          container: {command: [x]}
          output:
          - {name: no-etype, type: array, shape: [3]}
          - {name: no-shape, type: array, element-type: float32}
          - {name: str-shape, type: string, shape: [3]}
          - {name: prim-etype, type: int16, element-type: int16}
          - {name: stream-shape, type: stream, element-type: raw, path: /p, shape: [2]}
          - {name: stream-no-label, type: stream, path: /q}
          - {name: array-path, type: array, element-type: u8, shape: [2], path: /x}
          - {name: odd-type, type: matrix}
          - {name: bool-etype, type: array, element-type: bool, shape: [2]}
          - {name: bad-shape, type: array, element-type: f32, shape: [2, -3]}
          - {name: no-type}
        """
    )
    expect(
        tmp_path,
        text,
        ("no-etype", "is an array and needs an element-type"),
        ("name: no-shape", "is an array and needs a shape"),
        ("str-shape", "of type string takes no shape"),
        ("prim-etype", "of type int16 takes no element-type"),
        ("stream-shape", "is a stream: it has no shape"),
        ("stream-no-label", "is a stream and needs an element-type label"),
        ("array-path", "is in shared memory: only streams have a path"),
        ("odd-type", "unknown type 'matrix'"),
        ("bool-etype", "unknown element-type 'bool'"),
        ("bad-shape", "invalid shape [2, -3]"),
        ("no-type", "has no type"),
    )


def test_shared_memory_inputs_need_from_and_outputs_need_names(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        - name: a
          container: {command: [x]}
          input:
          - {name: lonely, type: float32}
          output:
          - {type: float32}
        """
    )
    expect(
        tmp_path,
        text,
        ("lonely", "is in shared memory and needs `from`"),
        ("{type: float32}", "has no name (needed since 0.5.0)"),
    )


def test_api_versions(tmp_path: Path) -> None:
    untyped = textwrap.dedent(
        """\
        api-version: 0.4.0
        orchestrator: Argo
        name: old
        operators:
        - name: a
          container: {command: [x]}
          input: [{path: /input}]
          output: [{path: /output}]
        - name: b
          container: {command: [x]}
          input: [{from: a, path: /input}]
        """
    )
    assert problems(tmp_path, untyped) == []
    old_typed = untyped.replace("[{path: /output}]", "[{path: /output}, {name: v, type: f32}]")
    expect(tmp_path, old_typed, ("name: v", "type f32 needs api-version 0.5.0 or later"))
    assert problems(tmp_path, untyped.replace("0.4.0", "0.3.0")) == []  # read like 0.4.0
    ancient = untyped.replace("0.4.0", "0.2.0")
    expect(tmp_path, ancient, ("0.2.0", "clara reads 0.3.0 and later"))
    garbled = (HEAD + PRODUCER).replace("0.5.0", "zero")
    expect(tmp_path, garbled, ("zero", "invalid api-version 'zero'"))
    argo = HEAD.replace("Clara", "Argo") + PRODUCER
    expect(tmp_path, argo, ("Argo", "needs the Clara orchestrator"))
    models = HEAD + PRODUCER + "  models: [{name: m}]\n"
    expect(tmp_path, models, ("models", "models need api-version 0.6.0"))


def test_missing_pieces(tmp_path: Path) -> None:
    text = "orchestrator: Clara\nname: x\noperators:\n- name: a\n  input: []\n"
    expect(
        tmp_path,
        text,
        ("orchestrator", "missing api-version"),
        ("name: a", "operator 'a' needs a container (image, tag, command)"),
    )
    assert problems(tmp_path, "api-version: 0.5.0\nname: x\noperators: []\n") == [
        (3, "operators must be a non-empty list")
    ]


def test_yaml_syntax_errors_and_duplicate_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "- name: a\n  container: {command: [x]\n  bad: ]\n")
    assert len(found) == 1 and "YAML syntax error" in found[0][1]
    text = HEAD + "- name: a\n  container: {command: [x]}\n  name: b\n"
    expect(tmp_path, text, ("name: b", "duplicate key 'name' (first on line 5)"))
    assert problems(tmp_path, "")[0][1].startswith("a pipeline is a mapping")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        HEAD
        + PRODUCER
        + "  colour: red\n"
        + consumer(
            "{from: ghost, name: volume, type: float32}",
            "{from: producer, name: spacing, type: array, element-type: int8, shape: [3]}",
        )
    )
    found = problems(tmp_path, text)
    assert len(found) == 3
    assert [line for line, _ in found] == sorted(line for line, _ in found)


def test_load_raises_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "- name: a\n  container: {command: [x]}\n  colour: 1\n  size: 2\n")
    with pytest.raises(PipelineInvalid) as caught:
        load(str(path))
    assert caught.value.exit_code == 2
    assert [p.line for p in caught.value.problems] == [7, 8]
    assert f"{path}:7: unknown key 'colour'" in str(caught.value)
    with pytest.raises(NotFound):
        load(str(tmp_path / "missing.yaml"))


def test_clara_validate_prints_file_line_message_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "- name: a\n  container: {command: [x]}\n  colour: 1\n  size: 2\n")
    good = tmp_path / "good.yaml"
    good.write_text(HEAD + PRODUCER)
    result = clara("validate", str(good), str(bad))
    assert result.returncode == 2
    out = result.stdout.splitlines()
    assert out[0].startswith(f"{good}: valid pipeline 'checks'")
    assert out[-2].startswith(f"{bad}:7: unknown key 'colour' in operator")
    assert out[-1].startswith(f"{bad}:8: unknown key 'size' in operator")
    assert result.stderr.strip() == "clara: error: 2 problems in 1 file"
    data = json.loads(clara("--json", "validate", str(bad)).stdout)
    assert data["valid"] is False
    assert data["files"][0]["problems"][0] == {
        "line": 7,
        "message": "unknown key 'colour' in operator (known: name, description, container, "
        "variables, input, output, parameters, requests, models, services)",
    }
    assert clara("validate", str(good)).returncode == 0


def test_the_examples_are_valid() -> None:
    examples = Path(__file__).parents[2] / "examples"
    files = sorted(examples.glob("*.yaml"))
    assert len(files) >= 3
    for file in files:
        pipeline, found = check(str(file))
        assert pipeline is not None, found
        assert all(p.topic in ("command", "requests") for p in found), found


# -- what Clara accepts and a local run treats apart -----------------------------------

UNTYPED = "api-version: 0.4.0\nname: untyped\noperators:\n"


def test_a_missing_command_is_a_warning_and_strict_makes_it_an_error(tmp_path: Path) -> None:
    text = UNTYPED + "- name: a\n  container: {image: example.org/a, tag: '2'}\n"
    assert problems(tmp_path, text) == []
    assert problems(tmp_path, text, "warning") == [
        (
            5,
            "operator 'a' has no container.command (image example.org/a:2: Clara runs the "
            "image's entry-point); a local run needs `--bind a=COMMAND`",
        )
    ]
    path = tmp_path / "pipeline.yaml"
    plain = clara("validate", str(path))
    assert plain.returncode == 0
    assert plain.stdout.splitlines()[0].startswith(f"{path}:5: warning: operator 'a' has no")
    assert "  a  first  (no command: needs --bind)" in plain.stdout
    strict = clara("--json", "validate", "--strict", str(path))
    assert strict.returncode == 2
    report = json.loads(strict.stdout)["files"][0]
    assert report["valid"] is False and report["warnings"] == []
    assert "has no container.command" in report["problems"][0]["message"]


def test_a_mistyped_key_names_the_closest_and_does_not_cascade(tmp_path: Path) -> None:
    text = UNTYPED + textwrap.dedent(
        """\
        - name: reader
          contianer: {command: [x]}
          ouptut: [{name: scans, path: /output}]
        - name: writer
          container: {comand: [y]}
          input: [{frm: reader, name: scans, path: /input}]
        """
    )
    expect(
        tmp_path,
        text,
        ("contianer", "unknown key 'contianer' in operator: did you mean 'container'?"),
        ("ouptut", "unknown key 'ouptut' in operator: did you mean 'output'?"),
        ("comand", "unknown key 'comand' in container: did you mean 'command'?"),
        ("frm:", "unknown key 'frm' in input: did you mean 'from'?"),
    )
    assert problems(tmp_path, text, "warning") == []  # read as meant: commands exist
    far = UNTYPED + "- name: a\n  container: {command: [x]}\n  colour: red\n"
    expect(tmp_path, far, ("colour", "unknown key 'colour' in operator (known: name, "))


def test_a_broken_output_does_not_cascade_into_its_readers(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        - name: maker
          container: {command: [x]}
          output: [{name: volume, type: arrray, element-type: f32, shape: [3]}]
        - name: user
          container: {command: [y]}
          input: [{from: maker, name: volume, type: array, element-type: f32, shape: [3]}]
        - name: broken
          container: {command: [y]}
          output: [{name: bad name, type: f32}]
        - name: reader
          container: {command: [y]}
          input: [{from: broken, name: bad name, type: f32}]
        """
    )
    found = problems(tmp_path, text)
    assert [line for line, _ in found] == [
        line_of(text, "arrray"),
        line_of(text, "output: [{name: bad name"),
        line_of(text, "input: [{from: broken"),  # its own bad name, not "no such output"
    ]
    assert "comes from" not in found[2][1] and "has no output" not in found[2][1]


def test_several_unnamed_inputs_and_an_only_output_without_name(tmp_path: Path) -> None:
    text = UNTYPED + textwrap.dedent(
        """\
        - name: a
          container: {command: [x]}
          output: [{name: reads, path: /output}]
        - name: b
          container: {command: [x]}
          output: [{path: /output}]
        - name: join
          container: {command: [x]}
          input: [{from: a, path: /in/a}, {from: b, path: /in/b}, {path: /in/payload}]
          output: [{path: /o1}, {path: /o2}]
        """
    )
    expect(tmp_path, text, ("{path: /o1}", "operator 'join' has more than one unnamed output"))
    fixed = text.replace("{path: /o1}, {path: /o2}", "{path: /o1}")
    assert problems(tmp_path, fixed) == []
    twice = fixed.replace("{path: /in/payload}", "{path: /in/a/}")
    expect(tmp_path, twice, ("{from: a, path: /in/a}", "declares path /in/a/ twice"))


def test_variables_services_requests_models_and_import(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        api-version: 0.6.0
        name: extras
        operators:
        - name: infer
          variables: {LEVEL: info, SHARED: a}
          container:
            command: [x]
            variables: {SHARED: b}
          requests: {cpu: 2, gpus: 1}
          models: [{name: lung}]
          services:
          - name: server
            connections:
              http: [{name: SERVER_URI, port: 8000}, {name: bad-name, port: 80}]
        """
    )
    expect(
        tmp_path,
        text,
        ("gpus", "unknown key 'gpus' in requests: did you mean 'gpu'?"),
        ("bad-name", "http connection name 'bad-name' becomes an environment variable"),
    )
    fixed = text.replace("gpus", "gpu").replace(", {name: bad-name, port: 80}", "")
    assert problems(tmp_path, fixed) == []
    assert [line for line, _ in problems(tmp_path, fixed, "warning")] == [8]  # SHARED twice
    notes = problems(tmp_path, fixed, "note")
    assert [line for line, _ in notes] == [9, 10, 12]
    assert "requests cpu 2, gpu 1: ignored by a local run" in notes[0][1]
    assert "serves no Triton models" in notes[1][1]
    assert "--service server=URI" in notes[2][1]
    pipeline = load(str(tmp_path / "pipeline.yaml"))
    infer = pipeline.operator("infer")
    assert infer.variables == {"LEVEL": "info", "SHARED": "b"}
    assert infer.services[0].connections[0].name == "SERVER_URI"
    imported = UNTYPED + "- name: a\n  container: {command: [x]}\n  import: other.yaml\n"
    expect(tmp_path, imported, ("import:", "import (document linking of api-version 0.2.0)"))


def test_templates_resolve_before_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    text = UNTYPED + textwrap.dedent(
        """\
        parameters: {source: first}
        - name: first
          container: {command: [x]}
          output: [{path: /output}]
        - name: second
          container: {command: [x, "${{ undeclared }}"]}
          input: [{from: "${{ source }}", path: /input}]
        """
    ).replace("parameters: {source: first}\n", "")
    text = text.replace("operators:\n", "parameters: {source: first}\noperators:\n")
    path.write_text(text)
    pipeline, found = check(str(path))
    assert pipeline is None
    assert [(p.line, p.message) for p in found] == [
        (9, "placeholder ${{ undeclared }} names no parameter (parameters: source)")
    ]
    path.write_text(text.replace('"${{ undeclared }}"', "y"))
    assert load(str(path)).operator("second").upstream == ("first",)
    with pytest.raises(PipelineInvalid) as caught:
        load(str(path), {"source": "nobody"})
    assert "comes from operator 'nobody', which does not exist" in str(caught.value)


PARSER_CASES = {
    "block": HEAD + "- name: a\n  container: {command: [x]}\n  input: [{name: v, type: u8}]\n",
    "anchors": "base: &b {x: 1, y: [2, 3]}\nother:\n  <<: *b\n  y: 4\nlist:\n- *b\n- 'q'\n",
    "scalars": "a: 0o17\nb: 1_000\nc: 2026-11-29\nd: ~\ne: yes\nf: .inf\ng: '12'\nh: |\n  x\n",
    "duplicate": "a: 1\nb: 2\na: 3\n[1]: x\n",
    "unclosed": HEAD + "- name: a\n  container: {command: [x]\n  bad: ]\n",
    "indent": "a:\n  b: 1\n c: 2\n",
    "tab": "a:\n\tb: 1\n",
    "tab after a value": "a: 1\t\nb: x\ty\n",
    "tab in a flow mapping": "{a: 1,\tb: 2}\n",
    "question mark in a flow mapping": "ops: {image: t, comman? d: [x]}\n",
    "explicit key": "? a\n: 1\n? b\n",
    "byte-order mark after a line": "a: 1\n\ufeff",
    "byte-order mark before a key": "x:\n\ufeffparameters: {a: 1}\n",
    "control": "a: 'x\x07y'\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "python tag": "a: !!python/object:os.system x\n",
    "empty": "",
}


@pytest.mark.parametrize("text", PARSER_CASES.values(), ids=PARSER_CASES.keys())
def test_libyaml_and_the_pure_parser_give_the_same_data_lines_and_messages(text: str) -> None:
    """yamllines parses with libyaml when PyYAML has it, and falls back to PyYAML's own
    parser on any error: whichever runs, the result is what the pure parser gives."""
    from clara_core.pipeline import yamllines

    def plain(value: object) -> object:  # the data with every line it remembers
        if isinstance(value, yamllines.Map):
            items = {key: plain(item) for key, item in value.items()}
            return ("map", value.line, value.lines, value.key_lines, items)
        if isinstance(value, yamllines.Seq):
            return ("seq", value.line, value.lines, [plain(item) for item in value])
        return value

    fast_data, fast_problems = yamllines.load(text)
    pure_data, pure_problems = yamllines.load(text, fast=False)
    assert (plain(fast_data), fast_problems) == (plain(pure_data), pure_problems)
