"""Nothing a user, node or renderer writes can drive another person's terminal: every view of the
shell shows such text escaped. Pure: replies in, lines out, no I/O."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker_contracts.config import Settings
from broker_contracts.messages import (
    HistoryReply,
    JobReply,
    ListReply,
    LoginReply,
    LogsReply,
    NodesReply,
    ShowReply,
    UserReply,
    WatchReply,
)
from broker_contracts.states import JobStatus
from broker_contracts.text import is_unsafe
from shell import views as r
from shell.background import CONNECTED, Snapshot
from shell.commands import default_registry
from shell.complete import JobBrief, Known, suggest
from shell.errors import FarmError, UsageError
from shell.format import RenderOptions
from shell.safe import json_text, printable
from shell.session import Session
from shell.toolbar import prompt_fragments, text_of, toolbar_fragments
from shell.watchview import WatchState, render_change, render_outcome, render_status, time_line

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
OPTS = RenderOptions(width=400, color=False, now=NOW)
# erase the screen, CSI as one C1 byte, a bidi override, a newline, an OSC title, an isolate
EVIL = "a\x1b[2Jb\x9b31mc\u202ed\ne\x1b]0;pwned\x07f\u2066g"


def raw_controls(text: str) -> list[str]:
    return [c for c in text if is_unsafe(c)]


def assert_safe(lines: list[str] | str) -> None:
    for line in [lines] if isinstance(lines, str) else lines:
        assert raw_controls(line) == [], f"raw control characters in {line!r}"


def job(**over: Any) -> dict[str, Any]:
    base = {"id": 7, "name": EVIL, "owner": EVIL, "status": "failed", "paused": False, "priority": 50,
            "renderer": "sleep", "pool": "default", "frames": "1-2", "frames_total": 2, "frames_done": 1,
            "tasks_total": 2, "created_at": (NOW - timedelta(minutes=3)).isoformat(), "updated_at": NOW.isoformat(),
            "reason": EVIL}  # fmt: skip
    return base | over


def detail(**over: Any) -> dict[str, Any]:
    return job(chunk=1, params={"note": EVIL}, max_attempts=3, requires=[], output="/r/" + EVIL, waiting=EVIL,
               blocked_nodes=[EVIL], **over)  # fmt: skip


def task(**over: Any) -> dict[str, Any]:
    base = {"id": 70, "seq": 0, "frame_first": 1, "frame_last": 1, "status": "failed", "attempt": 1,
            "node": EVIL, "started_at": NOW.isoformat(), "finished_at": NOW.isoformat(), "exit_code": 1,
            "error": EVIL}  # fmt: skip
    return base | over


def history_entry(**over: Any) -> dict[str, Any]:
    base = {"at": (NOW + timedelta(seconds=5)).isoformat(), "task": 70, "frames": "1", "attempt": 1,
            "from": "running", "to": "failed", "reason": EVIL, "actor": EVIL}  # fmt: skip
    return base | over


# --- the function -------------------------------------------------------------------------------


def test_printable_escapes_every_kind_of_terminal_control() -> None:
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert printable("\x9b\x85\x7f\x00") == "\\x9b\\x85\\x7f\\x00"
    assert printable("\u202a\u202b\u202c\u202d\u202e") == "\\u202a\\u202b\\u202c\\u202d\\u202e"
    assert printable("\u2066\u2067\u2068\u2069\u2028\u200b") == "\\u2066\\u2067\\u2068\\u2069\\u2028\\u200b"
    assert printable("\U000e0041") == "\\U000e0041"
    assert printable(None) == "" and printable("") == ""


def test_printable_keeps_what_is_only_text() -> None:
    for text in ("mandel v2", "ünïcødé ✓ 🎬", "日本語 の ショット", "a\u00a0b", "C:\\renders\\x", "-- 100% --"):
        assert printable(text) == text


def test_json_text_is_valid_json_with_no_raw_controls() -> None:
    value = {"name": EVIL, "tag": "\U000e0041", "plain": "ünï 🎬"}
    text = json_text(value)
    assert_safe(text)
    assert json.loads(text) == value and "ünï 🎬" in text


# --- each view ----------------------------------------------------------------------------------


def test_auth_views() -> None:
    user = UserReply(username=EVIL, is_admin=True)
    assert_safe(r.render_registered(user, OPTS))
    assert_safe(r.render_whoami(user, OPTS))
    login = LoginReply(username=EVIL, is_admin=False, sealed_token="t", expires_at=NOW)
    assert_safe(r.render_login(login, OPTS))


def test_jobs_table_with_names_and_owners() -> None:
    reply = ListReply.model_validate({"jobs": [job(), job(id=8, owner="bob")]})
    lines = r.render_jobs(reply, OPTS)
    assert_safe(lines)
    assert "a\\x1b[2Jb\\x9b31mc\\u202ed\\ne" in "\n".join(lines)


def test_show_with_every_field_and_task_errors() -> None:
    reply = ShowReply.model_validate({"job": detail(), "tasks": [task(), task(id=71, error=None, node=None)]})
    lines = r.render_show(reply, OPTS)
    assert_safe(lines)
    text = "\n".join(lines)
    for field in ("owner", "waiting", "blocked on", "output", "renderer"):
        assert any(line.strip().startswith(field) and "\\x1b" in line for line in lines), (field, text)


def test_history_reasons_and_actors() -> None:
    reply = HistoryReply.model_validate({"job": job(), "history": [history_entry(), history_entry(task=None)]})
    lines = r.render_history(reply, OPTS)
    assert_safe(lines)
    assert "\\u202e" in lines[-1]


def test_control_replies_logs_and_nodes() -> None:
    assert_safe(r.render_job_changed(JobReply.model_validate({"job": job()}), OPTS))
    nodes = NodesReply.model_validate(
        {
            "nodes": [
                {
                    "id": EVIL,
                    "pool": EVIL,
                    "slots": 2,
                    "tags": [EVIL],
                    "profiles": [EVIL],
                    "running": 1,
                    "state": "up",
                    "version": EVIL,
                    "last_seen": NOW.isoformat(),
                }
            ]
        }
    )
    assert_safe(r.render_nodes(nodes, OPTS))


def test_logs_are_escaped_by_default_and_raw_only_on_request() -> None:
    output = "frame 1 done\n\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\r\nlast\n"
    reply = LogsReply.model_validate({"logs": [{"task": 1, "frames": "1", "attempt": 1, "node": EVIL,
                                                "output": output}]})  # fmt: skip
    lines = r.render_logs(reply, OPTS)
    assert_safe(lines)
    assert lines[1:] == ["frame 1 done", "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil", "last"]
    raw = r.render_raw_logs(reply, OPTS)
    assert "\n".join(raw[1:]) + "\n" == output  # as the renderer wrote it
    assert_safe(raw[0])  # the header the shell writes is still escaped


def watch_state() -> WatchState:
    reply = WatchReply.model_validate(
        {
            "job": detail(status="running", reason=None),
            "sub": "s1",
            "tasks": [task(status="running", finished_at=None, error=None)],
        }
    )
    return WatchState.from_reply(reply)


def test_watch_block_changes_and_outcome() -> None:
    state = watch_state()
    body = {"job": job(status="queued", updated_at=(NOW + timedelta(seconds=9)).isoformat()),
            "counts": {"running": 1}, "running": [{"task": 70, "node": EVIL, "frames": EVIL, "done": 1}],
            "history": [history_entry()]}  # fmt: skip
    changes = state.apply(body, NOW)
    assert changes
    for width in (400, 60):
        opts = RenderOptions(width=width, now=NOW)
        assert_safe(render_status(state, opts))
        assert_safe([render_change(e, opts) for e in changes])
    assert_safe(time_line(state, NOW))
    state.job = state.job.model_copy(update={"status": JobStatus.FAILED})
    for outcome in ("failed", "interrupted", "timeout", "paused"):
        assert_safe(render_outcome(state, OPTS, outcome))


def test_prompt_toolbar_and_completion() -> None:
    assert_safe(text_of(prompt_fragments(EVIL, "localhost:6379")))
    assert_safe(text_of(toolbar_fragments(Snapshot(state=CONNECTED, user=EVIL, running=1), 400)))
    known = Known(jobs=(JobBrief(7, EVIL, "running"),))
    for text in ("show ", "show a"):
        suggestions = suggest(default_registry(), text, known)
        assert suggestions
        assert_safe([s.text + s.meta for s in suggestions])


def _session(ask: Any) -> tuple[Session, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", config_dir="/nonexistent/rfarm")  # type: ignore[arg-type]
    return Session(settings, default_registry(), out=out, err=err, ask_password=ask), out, err


@pytest.mark.parametrize("command", ["register", "login"])
def test_the_password_prompt_shows_the_typed_username_escaped(command: str) -> None:
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        raise UsageError("no password given")

    session, _out, err = _session(ask)
    assert session.run([command, "bob\x1b[2J\u202e"]) == 2
    assert prompts == ["password for bob\\x1b[2J\\u202e: "]
    assert_safe(err.getvalue().rstrip("\n"))


def test_error_messages_from_the_farm_are_escaped() -> None:
    session, _out, err = _session(lambda _p: "x")
    session.report(FarmError(f"job {EVIL} is gone"), json_mode=False)
    assert_safe(err.getvalue().rstrip("\n"))
