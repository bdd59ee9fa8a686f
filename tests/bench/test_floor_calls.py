"""The floors of P1 and P2 (bench/floors.py) make exactly the system calls clara's own
idiomatic forms make, in the same order and with the same arguments, seen by a real
`strace -f` of both (tests/bench/floor_calls.py): so that the floor the bench shows is
what clara's calls cost, and cannot drift from what clara does.

Compared after naming what differs by nature: descriptors and addresses by their order of
first appearance (the same file, the same range, on both sides); the bytes read or written
left out (names and times differ; their lengths are arguments); and without what Python's
own allocator maps or unmaps meanwhile (anonymous memory clara never replaces).
"""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests.helpers import strace_lines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = "tests/bench/floor_calls.py"
P1_STEPS = ["I", "I", "D", "I", "D", "D", "I"]  # view alive (I) or deleted (D)
P2_STEPS = ["P2", "P2"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"(?:\.\.\.)?')
_DESCRIPTOR = re.compile(r"\b(\d+)<[^>]*>(?:\(deleted\))?")  # strace -y: 5</dev/shm/x>
_ADDRESS = re.compile(r"\b0x[0-9a-f]+\b")
_CALL = re.compile(r"^(?:\d+\s+)?(\w+)\((.*)$")
_MARKER = re.compile(r'access\("/clara-floor-step ([^"]*)"')
_FOREIGN = {"brk", "madvise", "mprotect"}  # Python's allocator, never clara's


def _trace(tmp_path: object, steps: list[str]) -> dict[str, list[list[str]]]:
    """Each form's calls ('clara', 'floor'), one list of lines per step."""
    lines = strace_lines(tmp_path, ["-y"], [sys.executable, DRIVER, *steps], cwd=REPO)
    forms: dict[str, list[list[str]]] = {}
    current: list[str] | None = None
    for line in lines:
        marker = _MARKER.search(line)
        if marker:
            label = marker.group(1)
            if label == "end":
                break
            form = label.split()[0]
            current = []
            forms.setdefault(form, []).append(current)
        elif current is not None:
            current.append(line.rstrip("\n"))
    return forms


def _normalised(steps: list[list[str]]) -> list[list[str]]:
    """The calls of one form, with what differs by nature named alike (see the module)."""
    descriptors: dict[str, str] = {}
    addresses: dict[str, str] = {}

    def descriptor(match: re.Match[str]) -> str:
        return descriptors.setdefault(match.group(1), f"fd{len(descriptors) + 1}")

    def address(match: re.Match[str]) -> str:
        return addresses.setdefault(match.group(0), f"A{len(addresses) + 1}")

    # Ranges clara maps: from a file, or replaced in place; anything else is Python's.
    ours = set()
    for line in (line for step in steps for line in step):
        call = _CALL.match(line)
        if call and call.group(1) == "mmap" and ("MAP_FIXED" in line or "-1, 0)" not in line):
            ours.update(_ADDRESS.findall(line))
    result = []
    for step in steps:
        calls = []
        for line in step:
            call = _CALL.match(line)
            if call is None:  # (a resumed or exit line)
                continue
            name = call.group(1)
            if name in _FOREIGN:
                continue
            if name in ("mmap", "munmap") and not ours.intersection(_ADDRESS.findall(line)):
                continue
            text = _STRING.sub("<bytes>", " ".join(line[call.start(1) :].split()))
            text = _DESCRIPTOR.sub(descriptor, text)
            calls.append(_ADDRESS.sub(address, text))
        result.append(calls)
    return result


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[str]]]:
    """One traced run of P1's steps then P2's, clara's form first, then the floor's."""
    forms = _trace(tmp_path_factory.mktemp("floors"), P1_STEPS + P2_STEPS)
    assert set(forms) - {"cfloor"} == {"clara", "floor"}  # (cfloor: where cc builds it)
    traced = {form: _normalised(steps) for form, steps in forms.items()}
    # P2's steps of clara and of the C floor, each named alike from their own first call.
    traced["clara P2"] = _normalised(forms["clara"][len(P1_STEPS) :])
    if "cfloor" in forms:
        traced["cfloor P2"] = _normalised(forms["cfloor"][len(P1_STEPS) :])
    return traced


def test_the_p1_floor_makes_claras_calls(traced: dict[str, list[list[str]]]) -> None:
    clara, floor = traced["clara"][: len(P1_STEPS)], traced["floor"][: len(P1_STEPS)]
    assert len(clara[0]) >= 10  # open, locks, fstat, header, mmap, checks, cut-off, close
    for index, (ours, theirs) in enumerate(zip(clara, floor, strict=True)):
        assert theirs == ours, f"step {index} ({P1_STEPS[index]})"


def test_the_p2_floor_makes_claras_calls(traced: dict[str, list[list[str]]]) -> None:
    clara, floor = traced["clara"][len(P1_STEPS) :], traced["floor"][len(P1_STEPS) :]
    assert len(clara) == len(P2_STEPS) and len(clara[0]) >= 15
    assert any(call.startswith("linkat(") for call in clara[0])
    for index, (ours, theirs) in enumerate(zip(clara, floor, strict=True)):
        assert theirs == ours, f"step {index} (P2)"


def test_the_p1_c_floor_makes_claras_calls(traced: dict[str, list[list[str]]]) -> None:
    if "cfloor" not in traced:
        pytest.skip("no C compiler here: bench/c_floor.c is not built")
    clara, floor = traced["clara"][: len(P1_STEPS)], traced["cfloor"][: len(P1_STEPS)]
    for index, (ours, theirs) in enumerate(zip(clara, floor, strict=True)):
        assert theirs == ours, f"step {index} ({P1_STEPS[index]}, C floor)"


def test_the_p2_c_floor_makes_claras_calls(traced: dict[str, list[list[str]]]) -> None:
    if "cfloor" not in traced:
        pytest.skip("no C compiler here: bench/c_floor.c is not built")
    clara, floor = traced["clara P2"], traced["cfloor P2"]
    assert len(floor) == len(P2_STEPS)
    for index, (ours, theirs) in enumerate(zip(clara, floor, strict=True)):
        assert theirs == ours, f"step {index} (P2, C floor)"


def test_the_comparison_tells_forms_apart(traced: dict[str, list[list[str]]]) -> None:
    """A view deleted in the block unmaps instead of cutting off: one call differs, and
    the comparison sees it (so a floor missing one call fails the tests above)."""
    clara = traced["clara"]
    alive, deleted = clara[0], clara[2]
    assert alive != deleted
    assert len(alive) == len(deleted)
    assert [c.split("(")[0] for c in alive] != [c.split("(")[0] for c in deleted]
