"""Clara's name rule and the mapping of user names to file names."""

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clara_core import InvalidArgument, names

# Characters around the rule's edges: allowed ones, and near misses (other ASCII, digits and
# letters of other scripts, whitespace, NUL).
EDGE_CHARS = st.sampled_from("aZz09_-.~/ \t\n\x00\u00e9\u0660\uff10\u212a")


@pytest.mark.parametrize("good", ["a", "A-b_9", "x" * 255, "volume-01", "_", "-"])
def test_valid_names(good):
    assert names.validate_name(good) == good


@pytest.mark.parametrize(
    "bad", ["", "x" * 256, "a/b", "..", "a b", "vol.1", "é", "a\n", None, 7, "a\x00"]
)
def test_invalid_names_are_refused(bad):
    with pytest.raises(InvalidArgument, match="invalid"):
        names.validate_name(bad)


@given(st.text(EDGE_CHARS, max_size=260) | st.text(max_size=8))
def test_the_name_rule_is_the_documented_pattern(text):
    """The rule is checked without `re` (start-up): it must accept exactly the pattern."""
    rule = re.fullmatch(r"[A-Za-z0-9_-]{1,255}", text) is not None
    try:
        accepted = names.validate_name(text) == text
    except InvalidArgument:
        accepted = False
    assert accepted == rule


@given(st.text(EDGE_CHARS, max_size=70))
def test_the_namespace_rule_is_the_documented_pattern(text):
    if "\x00" in text:  # an environment variable cannot hold NUL
        return
    rule = re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) is not None
    saved = os.environ["CLARA_NAMESPACE"]  # the test's own (tests/conftest.py)
    os.environ["CLARA_NAMESPACE"] = text
    try:
        accepted = names.namespace() == (text or names.DEFAULT_NAMESPACE)
    except InvalidArgument:
        accepted = False
    finally:
        os.environ["CLARA_NAMESPACE"] = saved
    assert accepted == (rule or not text)  # empty: the default namespace


def test_names_are_case_insensitive_in_files():
    assert names.allocation_file("Job", "a", "Volume") == names.allocation_file(
        "job", "a", "VOLUME"
    )
    assert names.same_name("Volume", "vOLUME")


def test_long_names_are_hashed_within_name_max_and_stay_distinct(monkeypatch):
    monkeypatch.setenv("CLARA_NAMESPACE", "n" * 64)
    one = names.allocation_file("c" * 255, "a", "x" * 254 + "1")
    two = names.allocation_file("c" * 255, "a", "x" * 254 + "2")
    assert one != two
    assert len(one) <= 255 and len(two) <= 255
    assert "~" in one  # cannot collide with a plain name: '~' is not a name character


def test_file_names_parse_back(namespace):
    file_name = names.allocation_file("job", names.PUBLISHED, "vol")
    assert names.parse_file_name(file_name, namespace) == ("job", "a", "vol")
    assert names.parse_file_name(names.context_file("job"), namespace) == ("job", None, None)
    assert names.parse_file_name("other.job", namespace) is None
    assert names.parse_file_name(f"{namespace}-2.job", namespace) is None


@pytest.mark.parametrize("bad", ["a/b", "x" * 65, "a.b", "../x"])
def test_invalid_namespace_is_refused(monkeypatch, bad):
    monkeypatch.setenv("CLARA_NAMESPACE", bad)
    with pytest.raises(InvalidArgument, match="CLARA_NAMESPACE"):
        names.namespace()


def test_property_tests_have_no_deadline():
    """A stall of one example past hypothesis's default 200 ms (a loaded machine) failed
    the name rule's tests as flaky (DeadlineExceeded, then FlakyFailure): no timing
    assertion in a test (tests/conftest.py)."""
    assert settings().deadline is None
