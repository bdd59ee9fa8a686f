"""Clara's name rule and the mapping of user names to file names."""

import pytest

from clara_core import InvalidArgument, names


@pytest.mark.parametrize("good", ["a", "A-b_9", "x" * 255, "volume-01", "_", "-"])
def test_valid_names(good):
    assert names.validate_name(good) == good


@pytest.mark.parametrize(
    "bad", ["", "x" * 256, "a/b", "..", "a b", "vol.1", "é", "a\n", None, 7, "a\x00"]
)
def test_invalid_names_are_refused(bad):
    with pytest.raises(InvalidArgument, match="invalid"):
        names.validate_name(bad)


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
