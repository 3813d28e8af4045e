"""Renderers are pure: a typed reply and options in, lines out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from broker_contracts.messages import (
    HistoryReply,
    JobReply,
    ListReply,
    LoginReply,
    LogsReply,
    NodesReply,
    ShowReply,
    SubmitReply,
)
from shell import views as r
from shell.format import RenderOptions, ago, cut, table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def job(id_: int = 1, name: str = "mandel", status: str = "running", **extra: object) -> dict:
    base = {
        "id": id_, "name": name, "owner": "alice", "status": status, "priority": 50,
        "renderer": "fractal", "pool": "default", "frames": "1-10", "frames_total": 10,
        "frames_done": 3, "tasks_total": 10,
        "created_at": (NOW - timedelta(minutes=2)).isoformat(), "updated_at": NOW.isoformat(),
    }  # fmt: skip
    base.update(extra)
    return base


def detail(**extra: object) -> dict:
    return job(chunk=1, params={"zoom": "2"}, max_attempts=3, requires=["cuda"], output="/out/job-1", **extra)


def test_ago() -> None:
    assert ago(NOW, NOW) == "just now"
    assert ago(NOW - timedelta(seconds=42), NOW) == "42 s ago"
    assert ago(NOW - timedelta(minutes=2, seconds=5), NOW) == "2 min ago"
    assert ago(NOW - timedelta(hours=3), NOW) == "3 h ago"
    assert ago(NOW - timedelta(days=1), NOW) == "1 day ago"
    assert ago(NOW - timedelta(days=5), NOW) == "5 days ago"
    assert ago(NOW + timedelta(minutes=5), NOW) == "in 5 min"
    assert ago(None, NOW) == "-"


def test_cut() -> None:
    assert cut("short", 10) == "short"
    assert cut("a very long name", 8) == "a very …"
    assert len(cut("a very long name", 8)) == 8


def test_table_fits_the_width_by_cutting_the_flexible_column() -> None:
    opts = RenderOptions(width=40, now=NOW)
    lines = table(["ID", "NAME", "STATUS"], [["1", "x" * 80, "running"]], opts, flex=(1,))
    assert all(len(line) <= 40 for line in lines)
    assert lines[1].split()[1].endswith("…")


def test_jobs_table() -> None:
    jobs = [job(1), job(22, "a" * 100, "failed", frames_done=10), job(3, eta_seconds=125.0)]
    reply = ListReply.model_validate({"jobs": jobs})
    lines = r.render_jobs(reply, RenderOptions(width=60, now=NOW))
    assert lines[0].split() == ["ID", "NAME", "STATUS", "PROGRESS", "ETA", "CREATED"]
    assert "3/10" in lines[1] and "2 min ago" in lines[1] and "running" in lines[1] and "unknown" in lines[1]
    assert "…" in lines[2] and "10/10" in lines[2] and " - " in lines[2]
    assert "2 min 5 s" in lines[3]
    assert all(len(line) <= 60 for line in lines)
    assert "\x1b[" not in "".join(lines)


def test_jobs_table_colours_status_only_when_asked() -> None:
    reply = ListReply.model_validate({"jobs": [job(1, status="failed")]})
    coloured = r.render_jobs(reply, RenderOptions(width=80, color=True, now=NOW))
    assert "\x1b[31mfailed" in coloured[1]


def test_jobs_shows_owner_only_when_several() -> None:
    reply = ListReply.model_validate({"jobs": [job(1), job(2, owner="bob")]})
    assert "OWNER" in r.render_jobs(reply, RenderOptions(now=NOW))[0]
    assert r.render_jobs(ListReply(jobs=[]), RenderOptions(now=NOW)) == ["no jobs"]


def test_jobs_json_is_a_list_of_job_objects_with_iso_times() -> None:
    reply = ListReply.model_validate({"jobs": [job(1)]})
    doc = json.loads(json.dumps(r.jobs_json(reply)))
    assert isinstance(doc, list) and doc[0]["id"] == 1 and doc[0]["status"] == "running"
    assert datetime.fromisoformat(doc[0]["created_at"]) == NOW - timedelta(minutes=2)


def test_submit_prints_the_id() -> None:
    assert r.render_submitted(SubmitReply(id=42), RenderOptions()) == ["42"]


def test_show() -> None:
    reply = ShowReply.model_validate({
        "job": detail(paused=True),
        "tasks": [
            {"id": 9, "seq": 1, "frame_first": 1, "frame_last": 1, "status": "succeeded", "attempt": 1,
             "node": "n-1", "started_at": (NOW - timedelta(seconds=30)).isoformat(),
             "finished_at": (NOW - timedelta(seconds=10)).isoformat(), "exit_code": 0},
            {"id": 10, "seq": 2, "frame_first": 2, "frame_last": 3, "status": "failed", "attempt": 3,
             "error": "renderer crashed"},
        ],
    })  # fmt: skip
    text = "\n".join(r.render_show(reply, RenderOptions(width=100, now=NOW)))
    assert "job 1  mandel" in text and "running (paused)" in text and "zoom=2" in text
    assert "20 s" in text and "renderer crashed" in text and "2-3" in text


def test_history_lists_every_change() -> None:
    reply = HistoryReply.model_validate({
        "job": job(status="failed"),
        "history": [
            {"at": NOW.isoformat(), "from": None, "to": "queued", "reason": "submitted", "actor": "alice"},
            {"at": NOW.isoformat(), "task": 2, "frames": "2-3", "attempt": 1, "from": "queued",
             "to": "running", "reason": "node n-1 started attempt 1", "actor": "n-1"},
        ],
    })  # fmt: skip
    lines = r.render_history(reply, RenderOptions(width=120, now=NOW))
    assert "failed" in lines[0]
    assert "REASON" in lines[1]
    assert "submitted" in lines[2] and "alice" in lines[2]
    assert "frames 2-3, try 1" in lines[3] and "queued" in lines[3] and "→" in lines[3]
    assert "task 2" not in lines[3]  # the task's global id means nothing to an artist
    doc = reply.model_dump(mode="json", by_alias=True)
    assert doc["history"][1]["from"] == "queued" and set(doc) == {"job", "history"}


def test_login_json_keeps_the_token_out() -> None:
    reply = LoginReply(username="alice", is_admin=False, sealed_token="t" * 64, expires_at=NOW)
    assert "sealed_token" not in r.login_json(reply) and "t" * 64 not in str(r.login_json(reply))
    assert "alice" in r.render_login(reply, RenderOptions())[0]


def test_job_changed_logs_and_nodes() -> None:
    changed = r.render_job_changed(JobReply.model_validate({"job": job(status="cancelled")}), RenderOptions())
    assert changed == ["job 1 (mandel): cancelled, priority 50"]
    logs = LogsReply.model_validate(
        {"logs": [{"task": 1, "frames": "1", "attempt": 1, "node": "n-1", "output": "a\nb\n"}]}
    )
    assert r.render_logs(logs, RenderOptions()) == ["== frame 1, try 1 on n-1 ==", "a", "b"]
    nodes = NodesReply.model_validate({"nodes": [{
        "id": "n-1", "pool": "default", "slots": 4, "tags": ["cuda"], "profiles": ["fractal"],
        "running": 2, "state": "up", "version": "0.1.0", "last_seen": NOW.isoformat()}]})  # fmt: skip
    lines = r.render_nodes(nodes, RenderOptions(now=NOW))
    assert "2/4" in lines[1] and "just now" in lines[1]


def test_show_gives_frame_times_and_for_a_running_job_the_time_left() -> None:
    from broker_contracts.messages import ShowReply

    times = {"done": 4, "min": 0.5, "mean": 1.25, "max": 3.0, "left_seconds": 130.0,
             "finishes_at": (NOW + timedelta(seconds=130)).isoformat()}
    lines = r.render_show(ShowReply.model_validate({"job": detail(), "tasks": [], "times": times}),
                          RenderOptions(width=100, now=NOW))
    text = "\n".join(lines)
    assert "frame time  min 0.50 s  mean 1.25 s  max 3.00 s  (4 frames)" in text
    assert "time left   about 2 min 10 s, done around" in text
    fresh = r.render_show(ShowReply.model_validate({"job": detail(), "tasks": []}), RenderOptions(width=100, now=NOW))
    assert any("unknown (no frame finished yet)" in line for line in fresh)
    assert any(line.split() == ["time", "left", "unknown"] for line in fresh)
    ended = r.render_show(ShowReply.model_validate({"job": detail(status="succeeded"), "tasks": []}),
                          RenderOptions(width=100, now=NOW))
    assert not any("time left" in line for line in ended)
