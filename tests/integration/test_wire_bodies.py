"""The replies built straight from rows (gateway/wire.py, store.jobs.list_page) are what the reply
models would have made, and `jobs` checks the session in its own statement exactly as every other
request does: the same answers for a missing, garbage, revoked and expired token."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import psycopg
import pytest

from broker_contracts import messages as m
from broker_contracts.envelope import Envelope, Reply, decode_reply, encode
from broker_contracts.tables import from_table
from store import jobs
from store.db import iso_utc
from store.users import token_hash
from tests.support.gateway import PASSWORD, Gw


def _submit(gw: Gw, token: str, name: str, **extra: Any) -> int:
    body = {"name": name, "frames": "1-3", "renderer": "noop", "pool": "wire-idle", **extra}
    return int(gw.ok("job.submit", body, token)["id"])


def _model_rows(gw: Gw, owner: str) -> list[dict[str, Any]]:
    """The same jobs read the plain way (datetimes), for the models to dump."""
    with psycopg.connect(gw.db_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            f"""SELECT {jobs.SUMMARY_COLUMNS} FROM jobs j JOIN users u ON u.id = j.owner_id
                WHERE u.username = %s ORDER BY j.id DESC""",
            (owner,),
        ).fetchall()


def test_a_page_of_jobs_is_exactly_the_list_reply_dump(gw: Gw, unique: str) -> None:
    token = gw.user(f"wire{unique}")
    ids = [_submit(gw, token, f"w{i}", priority=10 * i) for i in range(5)]
    gw.ok("job.pause", {"id": ids[1]}, token)
    gw.ok("job.cancel", {"id": ids[2]}, token)  # a status and a reason that are not the defaults
    with psycopg.connect(gw.db_url) as conn:  # a time with no microseconds: pydantic drops ".000000"
        conn.execute("UPDATE jobs SET updated_at = date_trunc('second', updated_at) WHERE id = %s", (ids[3],))

    body = gw.ok("job.list", {"limit": 50}, token)
    expected = m.ListReply.model_validate({"jobs": _model_rows(gw, f"wire{unique}")}).model_dump(mode="json")

    assert set(body) == {"columns", "jobs"} and all(isinstance(row, (list, tuple)) for row in body["jobs"])
    assert body["columns"] == list(m.JobSummary.model_fields)  # every field, no more, once per page
    listed = from_table(body, "jobs")["jobs"]
    assert [j["id"] for j in listed] == sorted(ids, reverse=True)
    for got, want in zip(listed, expected["jobs"], strict=True):
        assert set(got) == set(want) == set(m.JobSummary.model_fields)  # no column more or less
        for key in ("created_at", "updated_at"):
            assert got[key].endswith("Z") and "T" in got[key]
            assert datetime.fromisoformat(got[key]) == datetime.fromisoformat(want[key])
            got = {**got, key: want[key]}
        assert got == want
    # and it reads back through the model a shell uses
    assert m.ListReply.model_validate(body).model_dump(mode="json") == expected


def test_history_reply_is_exactly_the_history_reply_dump(gw: Gw, unique: str) -> None:
    token = gw.user(f"hist{unique}")
    job = _submit(gw, token, "h")
    gw.ok("job.cancel", {"id": job}, token)
    body = gw.ok("job.history", {"id": job, "tasks": True}, token)
    with psycopg.connect(gw.db_url, row_factory=psycopg.rows.dict_row) as conn:
        job_row = conn.execute(
            f"SELECT {jobs.SUMMARY_COLUMNS} FROM jobs j JOIN users u ON u.id = j.owner_id WHERE j.id = %s", (job,)
        ).fetchone()
        times = [r["at"] for r in conn.execute(
            f"""SELECT {iso_utc("at")} AS at FROM (SELECT at FROM job_history WHERE job_id = %(j)s
                UNION ALL SELECT at FROM task_history WHERE job_id = %(j)s) h ORDER BY 1""",
            {"j": job},
        )]
    model = m.HistoryReply.model_validate(body).model_dump(mode="json", by_alias=True)
    assert body["columns"] == ["at", "task", "frames", "attempt", "from", "to", "reason", "actor"]
    body = from_table(body, "history")
    assert body["job"] == m.JobSummary.model_validate(job_row).model_dump(mode="json")
    assert len(body["history"]) == len(times) == 2 + 3 * 2  # the job: queued, cancelled; 3 tasks: the same
    for got, want in zip(body["history"], model["history"], strict=True):
        assert set(got) == set(want)
        assert datetime.fromisoformat(got["at"]) == datetime.fromisoformat(want["at"])
    assert sorted(h["at"] for h in body["history"]) == times


def test_jobs_refuses_tokens_as_every_other_request_does(gw: Gw, unique: str) -> None:
    token = gw.user(f"tok{unique}")
    _submit(gw, token, "t")
    for bad in ("garbage-token", ""):
        for type_, body in (("job.list", {}), ("auth.whoami", {})):
            reply = gw.call(type_, body, bad)
            assert not reply.ok and reply.error is not None
            assert reply.error.code == ("auth.required" if bad == "" else "auth.token_invalid"), reply
    with psycopg.connect(gw.db_url) as conn:
        conn.execute("UPDATE sessions SET expires_at = now() - interval '1 s'")
    for type_ in ("job.list", "auth.whoami"):
        reply = gw.call(type_, {}, token)
        assert reply.error is not None and reply.error.code == "auth.token_expired"
    fresh = str(gw.ok("auth.login", {"username": f"tok{unique}", "password": PASSWORD})["token"])
    assert len(gw.ok("job.list", {}, fresh)["jobs"]) == 1  # one row
    gw.ok("auth.logout", {}, fresh)
    reply = gw.call("job.list", {}, fresh)
    assert reply.error is not None and reply.error.code == "auth.token_invalid"


def test_a_user_without_jobs_gets_an_empty_page_and_only_admins_list_everyone(gw: Gw, unique: str) -> None:
    someone = gw.user(f"busy{unique}")
    _submit(gw, someone, "theirs")
    idle = gw.user(f"idle{unique}")
    empty = {"columns": list(m.JobSummary.model_fields), "jobs": []}
    assert gw.ok("job.list", {}, idle) == empty
    assert gw.ok("job.list", {"status": "queued"}, idle) == empty
    refused = gw.call("job.list", {"all": True}, idle)
    assert refused.error is not None and refused.error.code == "auth.forbidden"
    admin = gw.user(f"boss{unique}", admin=True)
    everyone = from_table(gw.ok("job.list", {"all": True, "limit": 500}, admin), "jobs")["jobs"]
    assert any(j["owner"] == f"busy{unique}" and j["name"] == "theirs" for j in everyone)
    assert gw.ok("job.list", {}, admin) == empty  # without --all: the admin's own


def test_plain_pages_answered_together_are_what_each_gets_alone(
    gw: Gw, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's plain `jobs` requests share one statement (RequestLoop.answer_pages): each still
    gets exactly its own answer, errors included, and the others are answered one by one."""
    alice, bob, idle = (gw.user(f"{who}{unique}") for who in ("pa", "pb", "pi"))
    for i in range(3):
        _submit(gw, alice, f"a{i}")
    _submit(gw, bob, "b0")
    expired = gw.user(f"px{unique}")
    revoked = gw.user(f"pr{unique}")
    gw.ok("auth.logout", {}, revoked)
    with psycopg.connect(gw.db_url) as conn:
        conn.execute("UPDATE sessions SET expires_at = now() - interval '1 s' WHERE token_hash = %s",
                     (token_hash(expired),))
    asked: list[tuple[str | None, dict[str, Any]]] = [
        (alice, {"limit": 2}), (bob, {}), ("garbage-token", {}), (idle, {}), (expired, {}), (revoked, {}),
        (alice, {"limit": 500}), (alice, {"status": "queued"}), (None, {}), (bob, {"all": True}),
    ]
    alone = [gw.call("job.list", body, token) for token, body in asked]
    envelopes = [Envelope.new("job.list", body, secrets.token_hex(16), token, farm_key=gw.farm_key)
                 for token, body in asked]
    entries = [(f"{i + 1}-0", {b"m": encode(env)}) for i, env in enumerate(envelopes)]
    batched: list[int] = []
    real = jobs.own_pages
    monkeypatch.setattr(jobs, "own_pages", lambda conn, asks: batched.append(len(asks)) or real(conn, asks))
    assert gw.loop.process(entries)
    assert batched == [7]  # the seven plain ones (a token, no filter, not --all) in one statement
    together = []
    for env in envelopes:
        [(_, [(_, fields)])] = gw.r.xread({gw.keys.reply(env.reply_to): "0-0"})
        reply = decode_reply(fields[b"m"])
        assert isinstance(reply, Reply) and reply.re == env.id
        together.append(reply)
    assert [r.ok for r in alone] == [True, True, False, True, False, False, True, True, False, False]
    for one, other in zip(alone, together, strict=True):
        assert one.error == other.error
        if one.ok:
            assert m.ListReply.model_validate(one.body) == m.ListReply.model_validate(other.body)
            assert other.body is not None and other.body["columns"] == list(m.JobSummary.model_fields)
    assert [len(r.body["jobs"]) for r in together[:2]] == [2, 1]  # type: ignore[index]


def test_a_client_s_own_requests_in_a_batch_keep_their_order_and_a_failed_shared_page_falls_back(
    gw: Gw, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page whose client also sent another request in the batch is answered in its place (after
    that client's submit, here); and if the shared statement fails, each page is answered alone."""
    carol, dave, erin = (gw.user(f"{who}{unique}") for who in ("oc", "od", "oe"))
    pipelined = secrets.token_hex(16)  # one client that sends a submit and a jobs without waiting
    submit = Envelope.new("job.submit", {"name": "mine", "frames": "1", "renderer": "noop", "pool": "wire-idle"},
                          pipelined, carol, farm_key=gw.farm_key)
    envelopes = [submit, Envelope.new("job.list", {}, pipelined, carol, farm_key=gw.farm_key),
                 Envelope.new("job.list", {}, secrets.token_hex(16), dave, farm_key=gw.farm_key),
                 Envelope.new("job.list", {}, secrets.token_hex(16), erin, farm_key=gw.farm_key)]
    batched: list[int] = []
    real = jobs.own_pages
    monkeypatch.setattr(jobs, "own_pages", lambda conn, asks: batched.append(len(asks)) or real(conn, asks))
    assert gw.loop.process([(f"{i + 1}-0", {b"m": encode(env)}) for i, env in enumerate(envelopes)])
    assert batched == [2]  # dave's and erin's; carol's waits for her submit
    [(_, replies)] = gw.r.xread({gw.keys.reply(pipelined): "0-0"})
    answers = [decode_reply(fields[b"m"]) for _, fields in replies]
    assert [a.re for a in answers] == [submit.id, envelopes[1].id]  # type: ignore[union-attr]
    listed = m.ListReply.model_validate(answers[1].body)  # type: ignore[union-attr]
    assert [j.name for j in listed.jobs] == ["mine"]

    def broken(conn: Any, asks: Any) -> Any:
        raise RuntimeError("the shared statement broke")

    monkeypatch.setattr(jobs, "own_pages", broken)
    again = [Envelope.new("job.list", {}, secrets.token_hex(16), token, farm_key=gw.farm_key)
             for token in (dave, erin, "garbage")]
    assert gw.loop.process([(f"{i + 9}-0", {b"m": encode(env)}) for i, env in enumerate(again)])
    for env, ok in zip(again, (True, True, False), strict=True):
        [(_, [(_, fields)])] = gw.r.xread({gw.keys.reply(env.reply_to): "0-0"})
        reply = decode_reply(fields[b"m"])
        assert isinstance(reply, Reply) and reply.re == env.id and reply.ok is ok
