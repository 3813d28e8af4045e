"""How an `rfarmctl` command ends when it cannot do its work: one line on stderr and an exit code.

Exit codes: 0 done; 1 refused (wrong password, a migration changed after it was applied);
2 the command line was wrong; 3 a server (PostgreSQL, Redis) could not be reached.
"""

from __future__ import annotations

from broker_contracts.config import redact_url

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CtlError(Exception):
    """Ends the command with ``message`` on one line and ``code`` as the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def unreachable(what: str, url: str, exc: BaseException) -> CtlError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return CtlError(EXIT_UNREACHABLE, f"cannot reach {what} at {redact_url(url)}: {reason}")
