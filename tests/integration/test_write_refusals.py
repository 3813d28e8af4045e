"""A write the handler refuses leaves nothing behind, and the refusal is the recorded answer.

Writes run without a savepoint around the handler: a refusal rolls the whole transaction back and
records the error answer on its own; KeepWrites keeps the writes. Checked on the real request
loop with handlers that write a row and then refuse. A submit records its own answer in the
statement that makes the job (no transaction block): its refusals come before that statement.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import psycopg
import pytest

from broker_contracts.envelope import decode_reply
from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.messages import REQUEST_TYPES
from gateway import handlers
from gateway.context import Context, KeepWrites
from tests.support.gateway import Gw


def _job_names(gw: Gw, name: str) -> int:
    with psycopg.connect(gw.db_url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _submit_then(error: type[RfarmError]) -> Any:
    """job.submit that writes its job and then refuses with ``error``."""
    real = handlers.HANDLERS["job.submit"]

    def handler(ctx: Context, req: Any) -> Any:
        real(ctx, req)
        raise error(ErrorCode.REQUEST_INVALID, "refused after writing")

    return handler


@pytest.mark.parametrize("error, kept", [(RfarmError, False), (KeepWrites, True)])
def test_a_refusal_after_a_write_undoes_it_unless_kept(
    gw: Gw, unique: str, monkeypatch: pytest.MonkeyPatch, error: type[RfarmError], kept: bool
) -> None:
    token = gw.user(f"ref{unique}{int(kept)}")
    name = f"refused-{unique}-{int(kept)}"
    body = {"name": name, "frames": "1-4", "renderer": "noop", "pool": "refusals"}
    monkeypatch.setitem(handlers.HANDLERS, "job.submit", _submit_then(error))
    in_block = dataclasses.replace(REQUEST_TYPES["job.submit"], records_own_answer=False)
    monkeypatch.setitem(REQUEST_TYPES, "job.submit", in_block)  # a write in a transaction block
    rid = str(uuid.uuid4())
    first = gw.call("job.submit", body, token, rid=rid)
    assert not first.ok and first.error is not None and first.error.message == "refused after writing"
    assert _job_names(gw, name) == (1 if kept else 0)
    monkeypatch.undo()  # the real handler again: the same request id still gets the recorded answer
    again = gw.call("job.submit", body, token, rid=rid)
    assert again.error == first.error
    assert _job_names(gw, name) == (1 if kept else 0)
    assert gw.ok("job.submit", body, token)["id"] > 0  # and a new request id is a new submit
    assert _job_names(gw, name) == (2 if kept else 1)


def test_a_submit_records_its_own_answer_and_refuses_before_writing(gw: Gw, unique: str) -> None:
    token = gw.user(f"own{unique}")
    name = f"own-{unique}"
    body = {"name": name, "frames": "1-3", "renderer": "noop", "pool": "refusals"}
    rid = str(uuid.uuid4())
    made = gw.call("job.submit", body, token, rid=rid)
    assert made.ok and made.body is not None and _job_names(gw, name) == 1
    assert gw.call("job.submit", body, token, rid=rid) == made  # the stored answer, read back alike
    with psycopg.connect(gw.db_url) as conn:
        stored = conn.execute("SELECT reply FROM inbox WHERE request_id = %s", (rid,)).fetchone()
    assert stored is not None and decode_reply(bytes(stored[0])) == made

    refused_id = str(uuid.uuid4())
    unknown = {**body, "renderer": f"nope{unique}"}
    refused = gw.call("job.submit", unknown, token, rid=refused_id)
    assert refused.error is not None and refused.error.code == "profile.unknown"
    assert gw.call("job.submit", unknown, token, rid=refused_id) == refused
    assert _job_names(gw, name) == 1
