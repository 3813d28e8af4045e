"""The live view's state and renderers, pure: a watch reply, notices, and lines at 80 columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from broker_contracts.messages import WatchReply
from shell.format import RenderOptions
from shell.watch import exit_code
from shell.watchview import WatchState, outcome_json, render_change, render_outcome, render_status

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def job(**over: Any) -> dict[str, Any]:
    base = {"id": 7, "name": "a-rather-long-shot-name-for-the-city-sequence-v012", "owner": "alice",
            "status": "queued", "paused": False, "priority": 50, "renderer": "sleep", "pool": "default",
            "frames": "1-10", "frames_total": 10, "frames_done": 0, "tasks_total": 5,
            "created_at": T0.isoformat(), "updated_at": T0.isoformat()}
    return base | over


def reply() -> WatchReply:
    detail = job() | {"chunk": 2, "params": {}, "max_attempts": 3, "requires": [], "output": "/r/job-7"}
    tasks = [{"id": 70 + i, "seq": i, "frame_first": 2 * i + 1, "frame_last": 2 * i + 2, "status": "queued",
              "attempt": 0} for i in range(5)]
    return WatchReply.model_validate({"job": detail, "tasks": tasks, "sub": "s1"})


def entry(sec: int, to: str, src: str | None, task: int | None = None, reason: str = "why") -> dict[str, Any]:
    return {"at": (T0 + timedelta(seconds=sec)).isoformat(), "task": task, "frames": "1-2" if task else None,
            "attempt": 1 if task else None, "from": src, "to": to, "reason": reason, "actor": "n1"}


def notice(sec: int, done: int, status: str, history: list[dict[str, Any]], running: int = 1) -> dict[str, Any]:
    return {
        "job": job(status=status, frames_done=done, updated_at=(T0 + timedelta(seconds=sec)).isoformat()),
        "counts": {"running": running, "queued": 5 - running - done // 2, "succeeded": done // 2},
        "running": [{"task": 70 + i, "node": f"node-{i}", "frames": "1-2", "done": 1} for i in range(running)],
        "history": history,
    }


def test_changes_are_reported_once_in_order() -> None:
    state = WatchState.from_reply(reply())
    assert state.counts == {"queued": 5} and not state.ended
    h1 = [entry(1, "running", "queued", 70), entry(1, "running", "queued")]
    new = state.apply(notice(1, 0, "running", h1), T0 + timedelta(seconds=1))
    assert [(e.task, e.to) for e in new] == [(70, "running"), (None, "running")]
    h2 = [*h1, entry(3, "succeeded", "running", 70)]
    assert [(e.task, e.to) for e in state.apply(notice(3, 2, "running", h2), T0)] == [(70, "succeeded")]
    assert state.apply(notice(3, 2, "running", h2), T0) == []  # the same notice again: nothing new
    assert len(state.changes) == 3 and state.started == T0 + timedelta(seconds=1)


def test_eta_from_the_rate_so_far() -> None:
    state = WatchState.from_reply(reply())
    state.apply(notice(1, 0, "running", [entry(1, "running", "queued", 70)]), T0)
    state.apply(notice(5, 4, "running", []), T0)
    assert state.eta_seconds(T0 + timedelta(seconds=5)) == 6.0  # 4 frames in 4 s, 6 to go


def test_status_block_fits_80_columns_with_bar_nodes_and_times() -> None:
    state = WatchState.from_reply(reply())
    state.apply(notice(1, 0, "running", [entry(1, "running", "queued", 70)], running=2), T0)
    state.apply(notice(5, 4, "running", [], running=2), T0)
    lines = render_status(state, RenderOptions(width=80, now=T0 + timedelta(seconds=5)))
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].startswith("job 7 a-rather-long-shot-…  running  █") and lines[0].endswith("4/10 frames  40%")
    assert lines[1] == "tasks: 1 queued, 2 running, 2 succeeded"
    assert lines[2:4] == ["  frames 1-2 on node-0, 1 done", "  frames 1-2 on node-1, 1 done"]
    assert lines[-1] == "elapsed 5 s, about 6 s left"


def test_colours_only_when_asked() -> None:
    state = WatchState.from_reply(reply())
    plain = render_status(state, RenderOptions(width=80, color=False, now=T0))
    coloured = render_status(state, RenderOptions(width=80, color=True, now=T0))
    assert "\x1b[" not in "".join(plain) and "\x1b[33mqueued" in "".join(coloured)


def test_change_line_and_outcomes() -> None:
    state = WatchState.from_reply(reply())
    change = state.apply(notice(2, 0, "running", [entry(2, "running", "queued", 71, "node n1 started attempt 1")]),
                         T0)[0]
    line = render_change(change, RenderOptions(width=80))
    assert line.endswith("frames 1-2, try 1  queued → running  node n1 started attempt 1")
    narrow = render_change(change, RenderOptions(width=50))
    assert len(narrow) <= 50 and narrow.endswith("…")
    state.apply(notice(9, 10, "succeeded", [], running=0), T0)
    assert state.ended
    opts = RenderOptions(width=80, now=T0 + timedelta(seconds=30))
    assert render_outcome(state, opts, "succeeded") == "job 7 succeeded (10/10 frames in 9 s)"
    assert render_outcome(state, opts, "interrupted").startswith("stopped watching job 7; it goes on")
    doc = outcome_json(state, "succeeded", 1.5)
    assert doc["job"]["status"] == "succeeded" and doc["changes"][0]["from"] == "queued"
    assert [exit_code(o) for o in ("succeeded", "failed", "cancelled", "timeout", "interrupted", "paused")] == [
        0, 1, 1, 3, 130, 0]


def test_idle_pause_ends_a_watch_but_not_the_job() -> None:
    state = WatchState.from_reply(reply())
    body = notice(2, 0, "queued", [], running=0)
    body["job"]["paused"] = True
    state.apply(body, T0)
    assert state.idle_paused and not state.ended
