"""A watch notice's body is a WatchNotice: what the gateway dumps, the shell's watch state reads
back; a body that is not one is refused, not half applied. No servers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from broker_contracts import messages as m
from shell.watchview import WatchState

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
JOB = {
    "id": 7,
    "name": "shot",
    "owner": "alice",
    "status": "running",
    "paused": False,
    "priority": 50,
    "renderer": "sleep",
    "pool": "default",
    "frames": "1-4",
    "frames_total": 4,
    "frames_done": 2,
    "tasks_total": 2,
    "created_at": T0,
    "updated_at": T0 + timedelta(seconds=5),
}


def state() -> WatchState:
    tasks = [
        {"id": 70 + i, "seq": i, "frame_first": 2 * i + 1, "frame_last": 2 * i + 2, "status": "queued", "attempt": 0}
        for i in range(2)
    ]
    detail = JOB | {
        "status": "queued",
        "frames_done": 0,
        "updated_at": T0,
        "chunk": 2,
        "params": {},
        "max_attempts": 3,
        "requires": [],
        "output": "/r/job-7",
    }
    return WatchState.from_reply(m.WatchReply.model_validate({"job": detail, "tasks": tasks, "sub": "s"}))


def gateway_body() -> dict:
    """A notice body as gateway/notices.py makes it, from rows."""
    change = {
        "at": T0 + timedelta(seconds=3),
        "task": 71,
        "frames": "3-4",
        "attempt": 1,
        "from": "queued",
        "to": "running",
        "reason": "started",
        "actor": "n1",
    }
    return m.WatchNotice(
        job=m.JobSummary.model_validate(JOB),
        counts={"succeeded": 1, "running": 1},
        running=[m.RunningTaskInfo.model_validate({"task": 71, "node": "n1", "frames": "3-4", "done": 1})],
        history=[m.HistoryEntry.model_validate(change)],
    ).model_dump(mode="json", by_alias=True)


def test_what_the_gateway_sends_the_shell_applies() -> None:
    watched = state()
    new = watched.apply(gateway_body(), T0 + timedelta(seconds=6))
    assert [(e.task, e.from_, e.to) for e in new] == [(71, "queued", "running")]
    assert watched.counts == {"succeeded": 1, "running": 1}
    assert [(t.task, t.node, t.frames, t.done) for t in watched.running] == [(71, "n1", "3-4", 1)]
    assert watched.job.frames_done == 2


@pytest.mark.parametrize(
    "broken",
    [
        lambda b: {k: v for k, v in b.items() if k != "job"},
        lambda b: b | {"counts": {"running": "many"}},
        lambda b: b | {"running": [{"node": "n1"}]},
    ],
)
def test_a_body_that_is_not_a_watch_notice_is_refused_whole(broken: Callable[[dict], dict]) -> None:
    watched = state()
    before = (watched.job, dict(watched.counts), list(watched.running))
    with pytest.raises(ValidationError):
        watched.apply(broken(gateway_body()), T0)
    assert (watched.job, watched.counts, watched.running) == before
