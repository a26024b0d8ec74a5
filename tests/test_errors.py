import pickle

import pytest

from course_lib import errors


@pytest.mark.parametrize("cls", [errors.DecryptionError, errors.SignatureError])
def test_errors_are_course_lib_errors_with_a_fixed_message(cls):
    assert issubclass(cls, errors.CourseLibError)
    # Whatever a caller passes, the message stays the same: no detail leaks out.
    assert str(cls("the tag at byte 17 was wrong")) == str(cls()) == cls.MESSAGE


def test_errors_survive_pickling():
    err = pickle.loads(pickle.dumps(errors.DecryptionError()))
    assert isinstance(err, errors.DecryptionError)
    assert str(err) == errors.DecryptionError.MESSAGE
