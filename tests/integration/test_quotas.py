"""Per-user quotas on the real request loop: a submit over the queued-tasks quota or the submits
per minute is refused with quota.exceeded and writes nothing; a watch's cap is the user's quota."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from gateway.held import HOLD_SECONDS
from store import quotas
from tests.support.gateway import Gw


def _set(gw: Gw, username: str, **limits: int) -> None:
    with psycopg.connect(gw.db_url, row_factory=dict_row) as conn, conn.transaction():
        quotas.set_user(conn, username, limits)


def _jobs_of(gw: Gw, username: str) -> int:
    with psycopg.connect(gw.db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs j JOIN users u ON u.id = j.owner_id WHERE u.username = %s", (username,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _away_from_a_minute_boundary() -> None:
    """The submits-per-minute window is the clock's minute: a test of it starts well inside one."""
    into = time.time() % 60
    if into > 45:
        time.sleep(61 - into)


@pytest.mark.parametrize("after", [False, True], ids=["one-statement", "with-after"])
def test_a_submit_over_the_queued_quota_is_refused_and_writes_nothing(gw: Gw, unique: str, after: bool) -> None:
    name = f"qq{unique}{int(after)}"
    token = gw.user(name)
    first = gw.ok("job.submit", {"name": "fits", "frames": "1-6", "renderer": "noop"}, token)["id"]
    _set(gw, name, max_queued_tasks=10)
    body = {"name": "too-many", "frames": "1-5", "renderer": "noop", **({"after": first} if after else {})}
    before = gw.counts()
    rid = str(uuid.uuid4())
    refused = gw.call("job.submit", body, token, rid=rid)
    assert refused.error is not None and refused.error.code == "quota.exceeded", refused
    assert "10 queued or running tasks" in refused.error.message and "you have 6" in refused.error.message
    after_counts = gw.counts()
    assert {t: after_counts[t] for t in after_counts if t != "inbox"} == {t: before[t] for t in before if t != "inbox"}
    assert _jobs_of(gw, name) == 1
    assert gw.call("job.submit", body, token, rid=rid).error == refused.error  # the recorded answer
    plain = {"name": "fits", "frames": "1-4", "renderer": "noop"}  # no dependency on the job cancelled below
    assert gw.call("job.submit", plain, token).ok  # 6 + 4 is the quota itself
    gw.ok("job.cancel", {"id": first}, token)  # a finished job's tasks no longer count
    assert gw.call("job.submit", {**plain, "frames": "1-5"}, token).ok
    other = gw.user(f"qo{unique}{int(after)}")  # another user's quota is their own
    assert gw.call("job.submit", {"name": "big", "frames": "1-50", "renderer": "noop"}, other).ok


def test_submits_per_minute_are_limited(gw: Gw, unique: str) -> None:
    name = f"qm{unique}"
    token = gw.user(name)
    _set(gw, name, max_submits_per_minute=3)
    _away_from_a_minute_boundary()
    body = {"name": "often", "frames": "1", "renderer": "noop"}
    for _ in range(3):
        assert gw.call("job.submit", body, token).ok
    refused = gw.call("job.submit", body, token)
    assert refused.error is not None and refused.error.code == "quota.exceeded", refused
    assert "3 submits a minute" in refused.error.message
    assert _jobs_of(gw, name) == 3
    with psycopg.connect(gw.db_url, row_factory=dict_row) as conn, conn.transaction():
        quotas.unset_user(conn, name)  # the default (60 a minute) holds again
    assert gw.call("job.submit", body, token).error == refused.error  # held a moment without a statement
    time.sleep(HOLD_SECONDS)  # then let go: the operator's change holds
    assert gw.call("job.submit", body, token).ok


def test_the_watch_cap_is_the_users_quota(gw: Gw, unique: str) -> None:
    name = f"qw{unique}"
    token = gw.user(name)
    job = gw.ok("job.submit", {"name": "watched", "frames": "1-2", "renderer": "noop"}, token)["id"]
    _set(gw, name, max_watches=2)
    for n in range(2):
        assert gw.call("job.watch", {"id": job, "sub": f"s{n}"}, token).ok
    refused = gw.call("job.watch", {"id": job, "sub": "third"}, token)
    assert refused.error is not None and refused.error.code == "quota.exceeded", refused
    assert "quota is 2 watches" in refused.error.message
    _set(gw, name, max_watches=3)
    assert gw.call("job.watch", {"id": job, "sub": "third"}, token).ok


def test_the_defaults_protect_a_new_farm(gw: Gw) -> None:
    with psycopg.connect(gw.db_url, row_factory=dict_row) as conn:
        defaults = quotas.listed(conn)[0]
    assert defaults == quotas.Quota(None, 100_000, 60, 16)
