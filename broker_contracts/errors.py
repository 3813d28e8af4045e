"""The closed set of error codes a reply may carry, and the project's own exceptions."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error a user can be told about. Documented in docs/PROTOCOL.md; closed: add here first."""

    AUTH_INVALID_CREDENTIALS = "auth.invalid_credentials"
    AUTH_REQUIRED = "auth.required"
    AUTH_TOKEN_EXPIRED = "auth.token_expired"
    AUTH_TOKEN_INVALID = "auth.token_invalid"
    AUTH_USERNAME_TAKEN = "auth.username_taken"
    AUTH_FORBIDDEN = "auth.forbidden"
    REQUEST_INVALID = "request.invalid"
    REQUEST_TOO_LARGE = "request.too_large"
    REQUEST_UNKNOWN_TYPE = "request.unknown_type"
    REQUEST_CONFLICT = "request.conflict"
    JOB_NOT_FOUND = "job.not_found"
    JOB_INVALID_STATE = "job.invalid_state"
    PROFILE_UNKNOWN = "profile.unknown"
    QUOTA_EXCEEDED = "quota.exceeded"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    # the shell's own: the key the farm announces is not the one pinned at first contact
    FARM_KEY_CHANGED = "farm.key_changed"


class RfarmError(Exception):
    """An error with a code from the closed set and a message fit to show a user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"RfarmError({self.code.value!r}, {self.message!r})"


class DecodeError(RfarmError):
    """Bytes that are not a valid message. ``reply_to`` is kept when it could still be read."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        reply_to: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.reply_to = reply_to
        self.request_id = request_id
