"""Command lines to (request type, body), checked locally with the contracts' models: no farm."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from broker_contracts.config import Settings
from broker_contracts.messages import REQUEST_TYPES
from shell.commands import COMMANDS, default_registry
from shell.errors import HelpShown, UsageError
from shell.session import Session


def make_session(tmp_path: Path, *, passwords: list[str] | None = None, stdin: str = "") -> Session:
    answers = list(passwords or [])
    settings = Settings(redis_url="redis://127.0.0.1:1/0", prefix="rfx", config_dir=tmp_path)
    return Session(
        settings,
        default_registry(),
        stdin=io.StringIO(stdin),
        out=io.StringIO(),
        err=io.StringIO(),
        ask_password=lambda prompt: answers.pop(0),
    )


def test_every_command_names_a_known_request_type() -> None:
    for command in COMMANDS:
        assert command.request is None or command.request in REQUEST_TYPES, command.name
        assert command.request is None or command.build is not None
        assert command.request is None or command.render is not None or command.live is not None


def test_submit_builds_the_full_body(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    type_, body = session.request_for(
        ["submit", "mandel", "--frames", "1-10", "--chunk", "3", "--renderer", "fractal",
         "--param", "zoom=2.5", "--param", "iter=500", "--priority", "70", "--max-attempts", "5",
         "--pool", "gpu", "--require", "cuda", "--require", "big", "--after", "7"]
    )  # fmt: skip
    assert type_ == "job.submit"
    assert body == {
        "name": "mandel",
        "frames": "1-10",
        "chunk": 3,
        "renderer": "fractal",
        "params": {"zoom": "2.5", "iter": "500"},
        "priority": 70,
        "max_attempts": 5,
        "pool": "gpu",
        "requires": ["cuda", "big"],
        "after": 7,
        "limits": [],
        "task_timeout": None,
    }


def test_submit_takes_limits_and_a_task_timeout(tmp_path: Path) -> None:
    _, body = make_session(tmp_path).request_for(
        ["submit", "sim", "--limit", "houdini-lic", "--limit", "disk", "--task-timeout", "2H"]
    )
    assert body["limits"] == ["houdini-lic", "disk"] and body["task_timeout"] == 7200


def test_submit_defaults(tmp_path: Path) -> None:
    type_, body = make_session(tmp_path).request_for(["submit", "x"])
    assert (type_, body["frames"], body["chunk"], body["priority"], body["params"]) == (
        "job.submit", "1", 1, 50, {}
    )  # fmt: skip
    assert body["after"] is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["jobs"], ("job.list", {"status": None, "all": False, "limit": 50, "before": None})),
        (["jobs", "--status", "failed", "--all", "--limit", "5"],
         ("job.list", {"status": "failed", "all": True, "limit": 5, "before": None})),
        (["show", "42"], ("job.show", {"id": 42})),
        (["history", "42"], ("job.history", {"id": 42, "tasks": True})),
        (["history", "42", "--job-only"], ("job.history", {"id": 42, "tasks": False})),
        (["cancel", "3"], ("job.cancel", {"id": 3})),
        (["pause", "3"], ("job.pause", {"id": 3})),
        (["resume", "3"], ("job.resume", {"id": 3})),
        (["retry", "3"], ("job.retry", {"id": 3})),
        (["priority", "3", "90"], ("job.priority", {"id": 3, "priority": 90})),
        (["logs", "3"], ("job.logs", {"id": 3, "frame": None})),
        (["logs", "3", "--frame", "12"], ("job.logs", {"id": 3, "frame": 12})),
        (["nodes"], ("node.list", {})),
        (["whoami"], ("auth.whoami", {})),
        (["logout"], ("auth.logout", {})),
        (["show", "42", "--json", "--timeout", "2"], ("job.show", {"id": 42})),
    ],
)  # fmt: skip
def test_command_lines_to_requests(tmp_path: Path, argv: list[str], expected: tuple[str, dict]) -> None:
    assert make_session(tmp_path).request_for(argv) == expected


def test_login_reads_one_line_of_stdin(tmp_path: Path) -> None:
    session = make_session(tmp_path, stdin="s3cret pass\nnext line\n")
    assert session.request_for(["login", "alice", "--password-stdin"]) == (
        "auth.login", {"username": "alice", "password": "s3cret pass"}
    )  # fmt: skip


def test_register_asks_twice_and_refuses_a_mismatch(tmp_path: Path) -> None:
    ok = make_session(tmp_path, passwords=["longenough", "longenough"])
    assert ok.request_for(["register", "alice"]) == (
        "auth.register", {"username": "alice", "password": "longenough"}
    )  # fmt: skip
    with pytest.raises(UsageError, match="differ"):
        make_session(tmp_path, passwords=["longenough", "different1"]).request_for(["register", "alice"])


def test_register_checks_the_password_rules_locally(tmp_path: Path) -> None:
    session = make_session(tmp_path, passwords=["short", "short"])
    with pytest.raises(UsageError, match="password") as caught:
        session.request_for(["register", "alice"])
    assert "short" not in caught.value.message.replace("password", "")  # the password is never echoed


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["show", "abc"], "not a job id"),
        (["show", "0"], "not a job id"),
        (["show"], "required"),
        (["show", "1", "2"], "unrecognized"),
        (["submit", "x", "--frames", "10-1"], "ends before it starts"),
        (["submit", "x", "--frames", "a-b"], "is not like"),
        (["submit", "x", "--priority", "101"], "priority"),
        (["submit", "x", "--chunk", "0"], "chunk"),
        (["submit", "x", "--param", "novalue"], "KEY=VALUE"),
        (["submit", "x", "--param", "k=1", "--param", "k=2"], "twice"),
        (["submit", "x", "--renderer", "bad name!"], "renderer"),
        (["submit", "   "], "name"),
        (["jobs", "--status", "bogus"], "invalid choice"),
        (["jobs", "--limit", "0"], "limit"),
        (["priority", "1", "high"], "not a whole number"),
        (["login", "a"], "username"),
        (["show", "1", "--timeout", "-1"], "timeout"),
        (["frobnicate"], "unknown command"),
        ([], "no command"),
    ],
)  # fmt: skip
def test_bad_command_lines_are_usage_errors(tmp_path: Path, argv: list[str], fragment: str) -> None:
    session = make_session(tmp_path, passwords=["whatever12"])
    with pytest.raises(UsageError) as caught:
        session.request_for(argv)
    assert fragment in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == 2


def test_help_is_not_an_error(tmp_path: Path) -> None:
    with pytest.raises(HelpShown) as caught:
        make_session(tmp_path).request_for(["submit", "--help"])
    assert "--frames" in caught.value.text


def test_session_run_reports_usage_errors_in_one_line(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    assert session.run(["show", "abc"]) == 2
    assert session.err.getvalue().count("\n") == 1  # type: ignore[attr-defined]
    assert session.err.getvalue().startswith("error: ")  # type: ignore[attr-defined]


def test_json_errors_go_to_stdout_as_one_document(tmp_path: Path) -> None:
    import json

    session = make_session(tmp_path)
    assert session.run(["show", "abc", "--json"]) == 2
    doc = json.loads(session.out.getvalue())  # type: ignore[attr-defined]
    assert doc["error"]["code"] == "request.invalid"
    assert session.err.getvalue() == ""  # type: ignore[attr-defined]


def test_not_logged_in_is_a_farm_error_before_any_request(tmp_path: Path) -> None:
    session = make_session(tmp_path)  # Redis URL points nowhere: reaching it would be exit 3
    assert session.run(["jobs"]) == 1
    assert session.err.getvalue().strip() == "error: not logged in: run `rfarm login USER`"  # type: ignore[attr-defined]
    assert session.run(["jobs", "--json"]) == 1
    assert '"auth.required"' in session.out.getvalue()  # type: ignore[attr-defined]


def test_help_command_lists_and_explains(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    assert session.run(["help"]) == 0
    assert "submit" in session.out.getvalue()  # type: ignore[attr-defined]
    assert session.run(["help", "history"]) == 0
    assert "--job-only" in session.out.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "x", "--frames", "1-2", "--priority", "200"], "rfarm submit: priority must be between 0 and 100"),
        (["submit", "x", "--chunk", "0"], "rfarm submit: chunk must be between 1 and 10000"),
        (["submit", "x", "--max-attempts", "101"], "rfarm submit: max_attempts must be between 1 and 100"),
        (["submit", "   "], "rfarm submit: name must not be empty"),
        (["submit", "x" * 201], "rfarm submit: name must be at most 200 characters long"),
        (["jobs", "--limit", "501"], "rfarm jobs: limit must be between 1 and 500"),
        (["priority", "1", "-1"], "rfarm priority: priority must be between 0 and 100"),
        (
            ["login", "a"],
            "rfarm login: username must be 2-32 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
    ],
)  # fmt: skip
def test_refusals_are_in_rfarms_own_words(tmp_path: Path, argv: list[str], message: str) -> None:
    session = make_session(tmp_path, passwords=["whatever12"])
    with pytest.raises(UsageError) as caught:
        session.request_for(argv)
    assert caught.value.message == message
    assert "Input should" not in caught.value.message


def test_a_short_password_is_refused_in_rfarms_words(tmp_path: Path) -> None:
    session = make_session(tmp_path, passwords=["short", "short"])
    with pytest.raises(UsageError) as caught:
        session.request_for(["register", "alice"])
    assert caught.value.message == "rfarm register: password must be at least 8 characters long"


def test_hints_outside_the_shell_say_rfarm(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    assert session.run(["frobnicate"]) == 2
    assert session.run(["help"]) == 0
    assert "(try `rfarm help`)" in session.err.getvalue()  # type: ignore[attr-defined]
    assert "`rfarm help COMMAND`" in session.out.getvalue()  # type: ignore[attr-defined]


def test_jobs_all_picks_the_renderer_with_owners() -> None:
    from shell import views

    registry = default_registry()
    command, ns = registry.parse(["jobs", "--all"])
    assert command.renderer(ns) is views.render_all_jobs
    command, ns = registry.parse(["jobs"])
    assert command.renderer(ns) is views.render_jobs
