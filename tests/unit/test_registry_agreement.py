"""The request registry (broker_contracts.messages.REQUEST_TYPES), the gateway's handlers and the
shell's commands agree: every registered type is answered, every handler is registered, and every
request the shell sends is a registered type. No servers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from broker_contracts import messages as m
from gateway import handlers
from shell.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_type_has_a_handler_and_every_handler_a_row() -> None:
    assert set(handlers.HANDLERS) == set(m.REQUEST_TYPES)
    assert handlers.missing_handlers() == []


def test_types_answered_together_have_their_statement() -> None:
    together = {name for name, row in m.REQUEST_TYPES.items() if row.answers_together}
    assert together == set(handlers.TOGETHER)


def test_rows_are_named_by_their_key() -> None:
    assert all(name == row.name for name, row in m.REQUEST_TYPES.items())


def _sent_by_the_shell() -> dict[str, str]:
    """Request types the shell's code sends by name (``client.call("type", …)``) -> where."""
    sent: dict[str, str] = {}
    for path in sorted((ROOT / "shell").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                sent[node.args[0].value] = f"{path.name}:{node.lineno}"
    return sent


def test_every_request_the_shell_sends_is_registered() -> None:
    named = {c.name: c.request for c in COMMANDS if c.request is not None}
    assert named, "the shell's commands send no request at all"
    assert {c: t for c, t in named.items() if t not in m.REQUEST_TYPES} == {}
    sent = _sent_by_the_shell()
    assert "job.watch" in sent  # the scan finds what the shell sends outside its commands
    assert {t: where for t, where in sent.items() if t not in m.REQUEST_TYPES} == {}


def test_a_command_takes_its_models_and_login_from_the_row() -> None:
    for command in COMMANDS:
        if command.request is None:
            continue
        row = m.REQUEST_TYPES[command.request]
        assert command.row is row
        assert (command.request_model, command.reply_model, command.needs_auth) == (row.body, row.reply, row.needs_user)
        assert (command.form is None) == (command.seal is None)  # a form is what is sealed into the row's body


@pytest.mark.parametrize(
    "flags",
    [
        {"records_own_answer": True, "session_in_statement": True},  # not a write
        {"writes": True, "records_own_answer": True},  # its session not checked by its statement
        {"needs_user": False, "session_in_statement": True},
    ],
)
def test_a_row_whose_fast_paths_contradict_it_is_refused(flags: dict[str, bool]) -> None:
    with pytest.raises(ValueError):
        m.RequestType("x.y", m.EmptyRequest, m.EmptyRequest, **flags)


def test_the_gateway_does_not_start_with_a_type_it_cannot_answer() -> None:
    code = (
        "from broker_contracts import messages as m\n"
        "m.REQUEST_TYPES['job.unanswered'] = m.RequestType('job.unanswered', m.EmptyRequest, m.EmptyRequest)\n"
        "import gateway.service\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "job.unanswered: no handler" in done.stderr
