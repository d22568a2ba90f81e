"""The one exception type for user errors.

Everything a user can get wrong (a bad size, an impossible option, an unknown device, a missing
or malformed file) raises :class:`ParamcalcError`. The CLI turns it into a one-line message and
exit code 2. A cross-check that finds a mismatch is *not* an error: it is a result (exit code 1).
"""

from __future__ import annotations


class ParamcalcError(ValueError):
    """A user error: bad input, impossible option, unavailable device, unreadable file."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep messages on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class ParamcalcWarning(UserWarning):
    """Something the user should know that is not an error (the CLI prints it as one line)."""


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives during a write (exit status 143)."""

    def __init__(self) -> None:
        super().__init__(143)


class Interrupted(KeyboardInterrupt):
    """A long run (``compare``/``sweep`` with timing) was interrupted once some rows were finished.

    ``partial`` is the result of those rows (its ``partial`` is true, and so is its JSON
    ``partial``), already written where an output was named. Being a ``KeyboardInterrupt``, it
    ends a program as Ctrl-C does unless caught.
    """

    def __init__(self, partial: object) -> None:
        super().__init__("interrupted")
        self.partial = partial
