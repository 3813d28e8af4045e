"""Validation means the whole string: every name the farm checks refuses a valid value with a
newline, tab, NUL, line separator or control character added before, after or inside it, and
accepts the valid value itself. Pure: no I/O."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from broker_contracts.envelope import Envelope
from broker_contracts.frames import parse_frames
from broker_contracts.keys import CLIENT_ID_RE, NAME_RE, valid_client_id, valid_name
from broker_contracts.messages import RegisterForm, SubmitRequest, WatchRequest
from broker_contracts.profiles import PARAM_NAME, ProfileSpec
from broker_contracts.types import Username
from broker_contracts.work import NodeEvent, NodeHeartbeat
from rfarmctl.acl import AclError, check_password
from tests.support.strategies import fuzz_examples

FUZZ = settings(max_examples=fuzz_examples(150), deadline=None, database=None, suppress_health_check=list(HealthCheck))

# what `re.match(...$)` or pydantic's search-semantics patterns let through, and worse
JUNK = ["\n", "\r", "\r\n", "\t", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029",
        "\u202e", "\u2066", "\u200b", "\ufeff", " "]  # fmt: skip
WHERE = st.sampled_from(["append", "prepend", "both", "inside"])

NAMES = st.from_regex(NAME_RE, fullmatch=True)
USERNAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{1,31}", fullmatch=True)
CLIENT_IDS = st.from_regex(CLIENT_ID_RE, fullmatch=True)
PARAM_NAMES = st.from_regex(PARAM_NAME, fullmatch=True).filter(lambda n: n not in ("frame", "first", "last", "output"))
PASSWORDS = st.from_regex(r"[\x21-\x7e]{16,40}", fullmatch=True)


def spoil(value: str, junk: str, where: str) -> str:
    if where == "append":
        return value + junk
    if where == "prepend":
        return junk + value
    if where == "both":
        return junk + value + junk
    middle = max(1, len(value) // 2)
    return value[:middle] + junk + value[middle:]


def refused(check: Any, value: str) -> bool:
    """Whether ``check(value)`` refuses: returns False or raises ValueError (ValidationError is one)."""
    try:
        return check(value) is False
    except ValueError:
        return True


# --- each validated name type: (values that pass, the check) -----------------------------------------------


def _event(node: str) -> Any:
    return NodeEvent(kind="log", node=node, ts=time.time())


def _heartbeat(field: str) -> Any:
    base = {"node": "n1", "pool": "default", "slots": 1, "tags": [], "profiles": ["sleep"], "running": [],
            "version": "0.1.0", "host": "h", "lease": 30.0}  # fmt: skip

    def check(value: str) -> Any:
        return NodeHeartbeat.model_validate({**base, field: [value] if field in ("tags", "profiles") else value})

    return check


def _acl_password(value: str) -> str:
    try:
        return check_password("shell", value)
    except AclError as exc:
        raise ValueError(str(exc)) from None


def _submit(field: str) -> Any:
    def check(value: str) -> Any:
        return SubmitRequest.model_validate({"name": "x", field: [value] if field == "requires" else value})

    return check


CASES: dict[str, tuple[st.SearchStrategy[str], Any]] = {
    "username (register)": (USERNAMES, lambda v: RegisterForm(username=v, password="correct-horse")),
    "username (type)": (USERNAMES, TypeAdapter(Username).validate_python),
    "reply address": (CLIENT_IDS, valid_client_id),
    "reply address (envelope)": (CLIENT_IDS, lambda v: Envelope.new("auth.whoami", {}, v)),
    "pool, node, tag name": (NAMES, valid_name),
    "submit pool": (NAMES, _submit("pool")),
    "submit renderer": (NAMES, _submit("renderer")),
    "submit tag": (NAMES, _submit("requires")),
    "submit param name": (NAMES, lambda v: SubmitRequest.model_validate({"name": "x", "params": {v: "1"}})),
    "watch subscription": (NAMES, lambda v: WatchRequest(id=1, sub=v)),
    "event node": (NAMES, _event),
    "heartbeat node": (NAMES, _heartbeat("node")),
    "heartbeat pool": (NAMES, _heartbeat("pool")),
    "heartbeat tag": (NAMES, _heartbeat("tags")),
    "heartbeat profile": (NAMES, _heartbeat("profiles")),
    "profile name": (NAMES, lambda v: ProfileSpec(name=v, argv=["x"])),
    "profile parameter name": (PARAM_NAMES, lambda v: ProfileSpec(name="p", argv=["x"], params={v: {}})),
    "frame range": (st.integers(0, 9_999).map(str), parse_frames),
    "redis acl password": (PASSWORDS, _acl_password),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_valid_values_pass(case: str) -> None:
    values, check = CASES[case]

    @FUZZ
    @given(values)
    def run(value: str) -> None:
        assert not refused(check, value), f"{case}: {value!r} was refused"

    run()


@pytest.mark.parametrize("case", sorted(CASES))
def test_control_and_separator_characters_anywhere_are_refused(case: str) -> None:
    values, check = CASES[case]

    @FUZZ
    @given(values, st.sampled_from(JUNK), WHERE)
    def run(value: str, junk: str, where: str) -> None:
        spoiled = spoil(value, junk, where)
        if case == "frame range" and junk == " ":  # spaces around a range's numbers are allowed
            return
        assert refused(check, spoiled), f"{case}: {spoiled!r} was accepted"

    run()


def test_a_trailing_newline_is_not_a_second_alice() -> None:
    with pytest.raises(ValidationError):
        RegisterForm(username="alice\n", password="correct-horse")
    assert not valid_client_id("a" * 32 + "\n")
    assert not valid_name("default\n")


def test_job_names_refuse_controls_inside_and_strip_only_plain_whitespace_at_the_ends() -> None:
    @FUZZ
    @given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,40}[A-Za-z0-9]", fullmatch=True), st.sampled_from(JUNK))
    def run(name: str, junk: str) -> None:
        assert SubmitRequest(name=name).name == name
        inside = spoil(name, junk, "inside")
        if junk != " ":
            with pytest.raises(ValidationError):
                SubmitRequest(name=inside)
        for where in ("append", "prepend", "both"):
            try:
                got = SubmitRequest(name=spoil(name, junk, where)).name
            except ValidationError:
                continue
            assert got == name, f"{spoil(name, junk, where)!r} became {got!r}"  # whitespace stripped, nothing else

    run()
