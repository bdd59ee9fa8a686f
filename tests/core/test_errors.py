"""The exception hierarchy: one root, builtin parents, documented exit codes."""

import clara_core
from clara_core import errors


def test_every_error_is_a_clara_error_with_its_exit_code():
    expected = {
        errors.InvalidArgument: (2, ValueError),
        errors.NotFound: (3, FileNotFoundError),
        errors.Busy: (4, BlockingIOError),
        errors.Timeout: (5, TimeoutError),
        errors.Incomplete: (6, errors.ClaraError),
        errors.OutOfSpace: (7, OSError),
        errors.PermissionDenied: (8, PermissionError),
        errors.ReadOnly: (8, PermissionError),
        errors.Corrupt: (9, errors.ClaraError),
        errors.AlreadyExists: (10, FileExistsError),
    }
    for cls, (code, builtin) in expected.items():
        error = cls("what happened")
        assert isinstance(error, errors.ClaraError)
        assert isinstance(error, builtin)
        assert error.exit_code == code
        assert str(error) == "what happened"


def test_all_is_exact():
    public = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.ClaraError)
    }
    assert set(errors.__all__) == public
    assert public <= set(clara_core.__all__)


def test_hints_name_options_as_the_caller_spells_them():
    error = errors.Busy("allocation 'v' is mapped", "wait for it with {timeout}")
    assert str(error) == "allocation 'v' is mapped; wait for it with timeout=SECONDS"
    spelled = error.explain({"timeout": "--timeout SECONDS"})
    assert spelled == "allocation 'v' is mapped; wait for it with --timeout SECONDS"
    assert errors.NotFound("gone").explain({}) == "gone"  # no hint: the message alone


def test_never_written_is_an_incomplete():
    assert issubclass(errors.NeverWritten, errors.Incomplete)
    assert errors.NeverWritten("x").exit_code == 6
