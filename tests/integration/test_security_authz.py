"""Authorisation for every command: another user's job is invisible (the same answer as no job at all);
an admin may see and change it. In-process against the real store and Redis."""

from __future__ import annotations

from typing import Any

import psycopg

from broker_contracts.messages import REQUEST_TYPES
from broker_contracts.tables import from_table
from tests.support.gateway import Gw

# every command that names a job, with a body for it (``ID`` is replaced by the job id)
JOB_COMMANDS: dict[str, dict[str, Any]] = {
    "job.show": {"id": "ID"},
    "job.history": {"id": "ID"},
    "job.why": {"id": "ID"},
    "job.logs": {"id": "ID"},
    "job.watch": {"id": "ID", "sub": "s1"},
    "job.cancel": {"id": "ID"},
    "job.pause": {"id": "ID"},
    "job.resume": {"id": "ID"},
    "job.retry": {"id": "ID"},
    "job.priority": {"id": "ID", "priority": 99},
    "job.submit": {"name": "depends", "after": "ID"},  # a dependency must be a job the caller may see
    "job.frames": {"id": "ID"},
    "job.thumbs": {"id": "ID"},
}

# the other commands whose body is not empty
OTHER_BODIES: dict[str, dict[str, Any]] = {t: {"name": "n1"} for t in ("node.drain", "node.undrain", "node.forget")}


def _body(template: dict[str, Any], job_id: int) -> dict[str, Any]:
    return {k: (job_id if v == "ID" else v) for k, v in template.items()}


def _answer(gw: Gw, type_: str, job_id: int, token: str) -> tuple[bool, str | None, str | None]:
    reply = gw.call(type_, _body(JOB_COMMANDS[type_], job_id), token)
    if reply.ok:
        return True, None, None
    assert reply.error is not None
    return False, reply.error.code, reply.error.message.replace(str(job_id), "N")


def _job_row(gw: Gw, job_id: int) -> tuple:
    with psycopg.connect(gw.db_url) as conn:
        row = conn.execute("SELECT status, paused, priority, updated_at FROM jobs WHERE id = %s", (job_id,)).fetchone()
        tasks = conn.execute("SELECT status, priority FROM tasks WHERE job_id = %s ORDER BY id", (job_id,)).fetchall()
        hist = conn.execute("SELECT count(*) FROM job_history WHERE job_id = %s", (job_id,)).fetchone()
    return (tuple(row or ()), [tuple(t) for t in tasks], tuple(hist or ()))


def test_every_job_command_is_covered() -> None:
    named = {t for t, row in REQUEST_TYPES.items() if "id" in row.body.model_fields}
    assert named <= set(JOB_COMMANDS), named - set(JOB_COMMANDS)


def test_another_users_job_is_answered_like_a_missing_one_for_every_command(gw: Gw, unique: str) -> None:
    alice = gw.user(f"alice{unique}")
    bob = gw.user(f"bob{unique}")
    job_id = gw.ok("job.submit", {"name": "alice's secret", "frames": "1-4"}, alice)["id"]
    missing = job_id + 1_000_000
    before = _job_row(gw, job_id)
    for type_ in JOB_COMMANDS:
        theirs = _answer(gw, type_, job_id, bob)
        nothing = _answer(gw, type_, missing, bob)
        assert theirs == nothing, (type_, theirs, nothing)
        assert theirs[:2] == (False, "job.not_found"), (type_, theirs)
    assert _job_row(gw, job_id) == before  # nothing changed, no history written
    assert gw.r.hlen(gw.keys.watch(job_id)) == 0  # bob's refused watch subscribed nothing
    assert not gw.r.exists(gw.keys.cancel(job_id), gw.keys.hold(job_id))
    listed = from_table(gw.ok("job.list", {}, bob), "jobs")["jobs"]
    assert job_id not in [j["id"] for j in listed]
    refused = gw.call("job.list", {"all": True}, bob)
    assert refused.error is not None and refused.error.code == "auth.forbidden"
    # capacity is for everyone (the jobs on the nodes: only their own); steering nodes is for admins
    assert gw.call("node.list", {}, bob).error is None
    for type_ in ("node.drain", "node.undrain", "node.forget"):
        refused = gw.call(type_, {"name": f"n-{unique}"}, bob)
        assert refused.error is not None and refused.error.code == "auth.forbidden", type_
    # the owner still sees it untouched
    shown = gw.ok("job.show", {"id": job_id}, alice)["job"]
    assert (shown["status"], shown["paused"], shown["priority"]) == ("queued", False, 50)


def test_an_admin_may_see_and_change_anyones_job(gw: Gw, unique: str) -> None:
    alice = gw.user(f"alice{unique}")
    root = gw.user(f"root{unique}", admin=True)
    job_id = gw.ok("job.submit", {"name": "watched by root", "frames": "1-4"}, alice)["id"]
    for type_ in ("job.show", "job.history", "job.logs", "job.watch"):
        assert _answer(gw, type_, job_id, root)[0], type_
    assert gw.r.hlen(gw.keys.watch(job_id)) == 1
    assert _answer(gw, "job.priority", job_id, root)[0]
    assert _answer(gw, "job.pause", job_id, root)[0]
    assert _answer(gw, "job.resume", job_id, root)[0]
    assert _answer(gw, "job.cancel", job_id, root)[0]
    assert _answer(gw, "job.retry", job_id, root)[0]
    assert _answer(gw, "job.submit", job_id, root)[0]  # may depend on anyone's job
    assert job_id in [j["id"] for j in from_table(gw.ok("job.list", {"all": True}, root), "jobs")["jobs"]]
    assert gw.ok("node.list", {}, root)["nodes"] is not None
    history = from_table(gw.ok("job.history", {"id": job_id, "tasks": False}, alice), "history")["history"]
    assert [h["actor"] for h in history][-2:] == [f"root{unique}", f"root{unique}"]  # cancel, retry by root
    assert gw.ok("job.show", {"id": job_id}, alice)["job"]["priority"] == 99


def test_the_owner_may_do_everything_to_their_own_job(gw: Gw, unique: str) -> None:
    alice = gw.user(f"alice{unique}")
    job_id = gw.ok("job.submit", {"name": "mine", "frames": "1-2"}, alice)["id"]
    for type_ in ("job.show", "job.history", "job.logs", "job.watch", "job.priority", "job.pause", "job.resume",
                  "job.cancel", "job.retry", "job.submit", "job.frames", "job.thumbs"):
        assert _answer(gw, type_, job_id, alice)[0], type_


def test_commands_without_a_login_are_refused(gw: Gw, unique: str) -> None:
    alice = gw.user(f"alice{unique}")
    job_id = gw.ok("job.submit", {"name": "x"}, alice)["id"]
    for type_, row in REQUEST_TYPES.items():
        if not row.needs_user:
            continue
        body = _body(JOB_COMMANDS.get(type_, OTHER_BODIES.get(type_, {})), job_id)
        for token in (None, "not-a-token"):
            reply = gw.call(type_, body, token)
            assert reply.error is not None and reply.error.code in ("auth.required", "auth.token_invalid"), type_
