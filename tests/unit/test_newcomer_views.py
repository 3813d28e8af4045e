"""What a newcomer reads: owners in `jobs --all`, frames not task ids, progress in words, TOOK
from the task's own times, hints that fit where they are typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from broker_contracts.messages import HistoryReply, ListReply, ShowReply, TaskInfo, UserReply, WatchReply
from shell import views as r
from shell.format import RenderOptions, inside_shell
from shell.watchview import WatchState, render_change

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OPTS = RenderOptions(width=120, now=NOW)


def _job(**extra: Any) -> dict[str, Any]:
    base = {
        "id": 7, "name": "shot", "owner": "alice", "status": "succeeded", "priority": 50, "renderer": "fractal",
        "pool": "default", "frames": "1-4", "frames_total": 4, "frames_done": 4, "tasks_total": 4,
        "created_at": (NOW - timedelta(minutes=5)).isoformat(), "updated_at": NOW.isoformat(),
    }  # fmt: skip
    return base | extra


def _detail(**extra: Any) -> dict[str, Any]:
    return _job(**({"chunk": 1, "params": {}, "max_attempts": 3, "requires": [], "output": "job-7"} | extra))


def _task(**extra: Any) -> dict[str, Any]:
    return {"id": 210064, "seq": 3, "frame_first": 3, "frame_last": 3, "status": "succeeded", "attempt": 1} | extra


def test_jobs_all_has_an_owner_column_even_with_one_owner() -> None:
    reply = ListReply.model_validate({"jobs": [_job(), _job(id=8)]})
    assert "OWNER" in r.render_all_jobs(reply, OPTS)[0]
    assert "alice" in r.render_all_jobs(reply, OPTS)[1]
    assert "OWNER" not in r.render_jobs(reply, OPTS)[0]  # your own jobs: the owner is you


def test_frames_not_task_ids_in_history() -> None:
    reply = HistoryReply.model_validate({
        "job": _job(),
        "history": [
            {"at": NOW.isoformat(), "task": 210064, "frames": "3", "attempt": 2, "from": "queued",
             "to": "running", "reason": "started", "actor": "n-1"},
            {"at": NOW.isoformat(), "task": 210065, "frames": "1-5", "from": None,
             "to": "queued", "reason": "submitted", "actor": "alice"},
        ],
    })  # fmt: skip
    lines = r.render_history(reply, OPTS)
    assert "frame 3, try 2" in lines[2] and "frames 1-5" in lines[3]
    assert "210064" not in "\n".join(lines) and "[" not in "\n".join(lines)


def test_frame_labels() -> None:
    assert r.frames_label("3") == "frame 3"
    assert r.frames_label("-3") == "frame -3"
    assert r.frames_label("1-5") == "frames 1-5"
    assert r.frames_label("-5--1") == "frames -5--1"
    assert r.change_subject(None, None, None) == "job"
    assert r.change_subject(9, None, 1) == "task 9, try 1"  # no frames known: the id is all there is


def test_a_watched_change_names_its_frame() -> None:
    reply = WatchReply.model_validate({"job": _detail(status="running"), "tasks": [], "sub": "s"})
    state = WatchState.from_reply(reply)
    entry = {"at": (NOW + timedelta(seconds=1)).isoformat(), "task": 210064, "frames": "3", "attempt": 1,
             "from": "queued", "to": "running", "reason": "started", "actor": "n-1"}  # fmt: skip
    body = {"job": _job(status="running"), "counts": {"running": 1}, "running": [], "history": [entry]}
    (change,) = state.apply(body, NOW)
    assert "frame 3, try 1  queued → running" in render_change(change, OPTS)


def test_show_says_progress_as_a_person_would() -> None:
    text = "\n".join(r.render_show(ShowReply.model_validate({"job": _detail(), "tasks": [_task()]}), OPTS))
    assert "4/4 frames done, in 4 tasks of 1 frame" in text
    assert "210064" not in text  # the task table is by frames
    one = _detail(frames_done=2, frames_total=5, tasks_total=1, chunk=5, status="running")
    text = "\n".join(r.render_show(ShowReply.model_validate({"job": one, "tasks": []}), OPTS))
    assert "2/5 frames done, in 1 task of 5 frames" in text


def test_took_comes_from_the_tasks_own_times() -> None:
    start, end = NOW - timedelta(hours=3), NOW - timedelta(hours=3) + timedelta(seconds=42)
    done = TaskInfo.model_validate(_task(started_at=start.isoformat(), finished_at=end.isoformat()))
    assert r.took(done, OPTS) == "42 s"
    running = TaskInfo.model_validate(_task(status="running", started_at=(NOW - timedelta(seconds=9)).isoformat()))
    assert r.took(running, OPTS) == "9 s"
    # its node was lost while the farm was down: back in the queue, the hours it waited are not TOOK
    requeued = TaskInfo.model_validate(_task(status="queued", attempt=2, started_at=start.isoformat()))
    assert r.took(requeued, OPTS) == "-"
    assert r.took(TaskInfo.model_validate(_task(status="queued")), OPTS) == "-"


def test_the_estimate_starts_from_the_farms_time_not_the_shells() -> None:
    reply = WatchReply.model_validate({"job": _detail(status="queued", frames_done=0), "tasks": [], "sub": "s"})
    state = WatchState.from_reply(reply)
    later = NOW + timedelta(hours=2)  # the shell could not reach the farm for two hours
    body = {"job": _job(status="running", frames_done=0), "counts": {"running": 1},
            "running": [{"task": 1, "node": "n", "frames": "1"}], "history": []}  # fmt: skip
    state.apply(body, later)
    assert state.started == NOW


def test_hints_inside_the_shell() -> None:
    reply = UserReply(username="alice")
    assert r.render_registered(reply, OPTS) == ["registered alice: now run `rfarm login alice`"]
    inside = RenderOptions(inside_shell=True)
    assert r.render_registered(reply, inside) == ["registered alice: now run `login alice`"]
    assert inside_shell("not logged in: run `rfarm login USER`") == "not logged in: run `login USER`"
