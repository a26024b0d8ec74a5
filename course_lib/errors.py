"""The exceptions every part of ``course_lib`` raises.

One class per *failure class*, not per cause. In particular every failed decryption or
authentication raises :class:`DecryptionError` with the same message, whether the key was
wrong, a byte was flipped, the token was truncated or its version byte is unknown. An attacker
who can submit ciphertexts and watch the errors therefore learns nothing about *why* a
ciphertext was rejected (no "error oracle", the weakness behind padding-oracle attacks).

Bad arguments are programming errors, not attacks, so they raise the ordinary ``ValueError``
or ``TypeError`` with a message that names the parameter, the constraint and the value.
"""

from __future__ import annotations

__all__ = ["CourseLibError", "DecryptionError", "SignatureError", "SecureAggregationError",
           "TooManyDropoutsError"]


class CourseLibError(Exception):
    """Base class of every exception that ``course_lib`` defines."""


class DecryptionError(CourseLibError):
    """A ciphertext could not be decrypted and authenticated.

    Raised for *every* cause (wrong key or password, modified, truncated, extended or
    reordered data, unknown format version) with one fixed message, so that the error
    itself reveals nothing.
    """

    MESSAGE = "decryption failed: wrong key, or the data was modified, truncated or is not ours"

    def __init__(self, message: str | None = None) -> None:
        # The message is fixed on purpose; the argument exists only so that pickling and
        # copying the exception keep working.
        super().__init__(self.MESSAGE)


class SignatureError(CourseLibError):
    """A signature did not verify for the given public key and data."""

    MESSAGE = "signature verification failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(self.MESSAGE)


class SecureAggregationError(CourseLibError):
    """The protocol cannot continue safely, e.g. a request that would reveal both secrets of
    one client, or a reconstructed key that does not match the public key it belongs to.

    Against a cheating server this is what an honest client raises, *before* revealing
    anything, when the server's messages do not add up: a key that its owner did not sign,
    too few signatures on the survivor set it was shown (a split view, a replayed or forged
    list), a survivor set other than the one it signed, or a self-mask share requested for a
    client that did not mask with it.
    """


class TooManyDropoutsError(SecureAggregationError):
    """Fewer than ``t`` clients (overall, or among one client's share holders) are left.

    Not a ``ValueError``: the arguments were fine, the *network* lost clients. A caller such as
    a training loop may catch it and skip the round; it must never get a wrong sum instead.
    """
