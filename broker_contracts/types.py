"""Constrained field types shared by the message models."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from broker_contracts.sealing import MAX_SEALED_TEXT
from broker_contracts.text import no_unsafe

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{1,31}")  # whole string: used with fullmatch only
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise ValueError("must be 2-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def _keyword(value: str) -> str:
    if not _KEYWORD.fullmatch(value):
        raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


Username = Annotated[str, AfterValidator(_username)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024), AfterValidator(_printable)]
# a public key (32 bytes) and a sealed box (broker_contracts.sealing), as base64 text
KeyText = Annotated[str, StringConstraints(min_length=44, max_length=44, pattern=r"^[A-Za-z0-9+/]{43}=$")]
SealedText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SEALED_TEXT)]
Text = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_printable)]
# A job name is shown in other people's terminals (admins, `jobs --all`): nothing that could drive one.
JobName = Annotated[
    str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True), AfterValidator(no_unsafe)
]
Keyword = Annotated[str, AfterValidator(_keyword)]
JobId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Priority = Annotated[int, Field(ge=0, le=100)]
