"""The shell's own errors, one per exit code. Only ``session.run_guarded`` turns them into output."""

from __future__ import annotations

from broker_contracts.errors import ErrorCode

EXIT_OK = 0
EXIT_FARM_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3


class ShellError(Exception):
    """An error fit to show a user in one line, with the exit code and error code it stands for."""

    exit_code = EXIT_FARM_ERROR

    def __init__(self, message: str, code: str = ErrorCode.INTERNAL.value) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(ShellError):
    """The command line was wrong: caught locally, never sent to the farm."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.REQUEST_INVALID.value)


class FarmError(ShellError):
    """The farm answered with an error (or the shell refused before asking, e.g. not logged in)."""

    exit_code = EXIT_FARM_ERROR


class NoAnswer(ShellError):
    """The farm did not answer in time, or Redis could not be reached at all."""

    exit_code = EXIT_NO_ANSWER

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.UNAVAILABLE.value)


class Unreachable(NoAnswer):
    """Redis itself could not be reached (connection refused, reset, timed out)."""


class Refused(NoAnswer):
    """Redis answered with an error: a command its ACL user may not send, or a key of another type."""


class HelpShown(Exception):
    """``--help`` was asked for: the text to print, and the command ends with exit code 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
