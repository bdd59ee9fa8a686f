"""The C library against docs/segment-format.md: its offsets, constants, types and names."""

from __future__ import annotations

import pytest

from tests import spec

from .conftest import run


@pytest.fixture(scope="module")
def known(tool) -> dict[str, list[list[str]]]:
    """What `tool spec` prints, by kind of line."""
    result = run(tool, "spec")
    assert result.returncode == 0, result.stderr
    lines: dict[str, list[list[str]]] = {}
    for line in result.stdout.splitlines():
        first, *rest = line.split()
        kind = first if first in ("constant", "limit", "type") else "field"
        lines.setdefault(kind, []).append(rest if kind != "field" else [first, *rest])
    return lines


def test_every_field_of_the_specification_is_where_the_c_library_puts_it(known):
    c_fields = {name: (int(offset), int(size)) for name, offset, size in known["field"]}
    spec_fields = {f.name: (f.offset, f.size) for f in spec.header_fields() if f.name}
    assert c_fields == spec_fields


def test_the_constants(known):
    c_constants = dict(known["constant"])
    constants = spec.constants()
    del constants["POOL_MIN_BYTES"]  # the C library has no pool
    del constants["LOCK_READY_BASE"]  # nor jobs (5.11)
    assert c_constants == constants


def test_the_element_types_and_token_limits(known):
    c_types = [(int(code), name, int(size)) for code, name, size in known["type"]]
    assert c_types == [(row.code, row.name, row.size) for row in spec.element_types()]
    assert {kind: int(limit) for kind, limit in known["limit"]} == spec.token_limits()


def test_file_names_and_hashing(tool, monkeypatch):
    monkeypatch.setenv("CLARA_NAMESPACE", "clara")
    for example in spec.name_examples():
        args = [example.context] + ([example.kind, example.name] if example.kind else [])
        result = run(tool, "file", *args)
        assert result.stdout.strip() == example.file_name, example
