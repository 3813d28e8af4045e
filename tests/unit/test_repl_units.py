"""The REPL's pure parts without a terminal: completion, toolbar, prompt, and the loop itself
driven through prompt-toolkit's pipe input and dummy output."""

from __future__ import annotations

import io
from pathlib import Path

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from broker_contracts.config import Settings
from shell import repl
from shell.background import CONNECTED, NO_GATEWAY, REDIS_DOWN, SIGNED_OUT, Refresher, Snapshot
from shell.commands import default_registry
from shell.complete import JobBrief, Known, suggest
from shell.session import Session
from shell.toolbar import farm_name, prompt_fragments, text_of, toolbar_fragments

KNOWN = Known(jobs=(JobBrief(12, "mandel", "running"), JobBrief(3, "nap", "queued"), JobBrief(120, "city", "failed")))


def words(text: str) -> list[str]:
    return [s.text for s in suggest(default_registry(), text, KNOWN)]


def test_commands_and_options() -> None:
    assert words("sh") == ["show"]
    assert "exit" in words("") and "watch" in words("w")
    assert words("submit x --fr") == ["--frames"]
    assert "--frames" not in words("submit x --frames 1-3 ")
    assert "--param" in words("submit x --param a=1 ")  # repeatable stays offered
    assert words("wait 12 --t") == ["--timeout"]
    assert words("rfarm jobs --st") == ["--status"]
    assert words("nosuch ") == []


def test_job_ids_with_names_beside_them() -> None:
    found = suggest(default_registry(), "show ", KNOWN)
    assert [(s.text, s.meta) for s in found[:3]] == [("12", "mandel · running"), ("3", "nap · queued"),
                                                    ("120", "city · failed")]
    assert words("watch 12") == ["12", "120"]
    assert words("cancel ma") == ["12"]  # a name finds the id
    assert words("submit x --after 3") == ["3"]


def test_values_profiles_params_statuses_commands() -> None:
    assert {"fractal", "sleep"} <= set(words("submit x --renderer "))
    assert words("submit x --renderer sleep --param se") == ["seconds="]
    assert words("submit x --param set=j") == ["set=julia"]
    assert words("jobs --status ") == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert words("help hi") == ["history"]


def test_completer_adapts_suggest_to_prompt_toolkit() -> None:
    completer = repl.RegistryCompleter(default_registry(), lambda: KNOWN)
    got = list(completer.get_completions(Document("show 1"), CompleteEvent(completion_requested=True)))
    assert [(c.text, c.start_position, c.display_meta_text) for c in got] == [
        ("12", -1, "mandel · running"),
        ("120", -1, "city · failed"),
    ]


def test_toolbar_states_fit_80_columns() -> None:
    ok = Snapshot(state=CONNECTED, user="alice", running=2, queued=5)
    assert text_of(toolbar_fragments(ok)) == " ● connected │ alice │ jobs: 2 running, 5 queued"
    down = text_of(toolbar_fragments(Snapshot(state=REDIS_DOWN, user="alice", running=2)))
    assert "Redis unreachable" in down and "last seen" in down
    assert "no gateway" in text_of(toolbar_fragments(Snapshot(state=NO_GATEWAY)))
    assert "not logged in" in text_of(toolbar_fragments(Snapshot(state=SIGNED_OUT, user=None)))
    long = Snapshot(state=CONNECTED, user="a-very-long-user-name-" * 4, admin=True, running=1234, queued=99999)
    for width in (80, 40):
        assert len(text_of(toolbar_fragments(long, width))) <= width - 1


def test_prompt_shows_user_and_farm() -> None:
    assert farm_name("redis://:pw@farm.example:6380/0", "rf") == "farm.example:6380"
    assert farm_name("redis://127.0.0.1:6379/0", "studio") == "127.0.0.1:6379/studio"
    assert text_of(prompt_fragments("alice", "farm:6379")) == "alice@farm:6379> "
    assert text_of(prompt_fragments(None, "farm:6379")).startswith("(not logged in)@")


def test_refresher_says_redis_is_down_and_never_raises(tmp_path: Path) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", prefix="rfx", config_dir=tmp_path)
    snap = Refresher(settings).refresh_once()
    assert snap.state == REDIS_DOWN and "127.0.0.1:1" in snap.detail


def test_repl_loop_ctrl_c_clears_ctrl_d_leaves_and_keeps_history(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", prefix="rfx", config_dir=tmp_path)
    session = Session(settings, default_registry(), out=out, err=err)
    refresher = Refresher(settings, every=60)
    with create_pipe_input() as pipe:
        # help; a line cleared by Ctrl-C (never runs); a bad job id; help for one command; Ctrl-D
        pipe.send_text("help\rshow 99999999999999999999999\x03help wait\rshow abc\r\x04")
        code = repl.run(session, input=pipe, output=DummyOutput(), refresher=refresher)
    assert code == 2  # the exit code of the last command run (`show abc`)
    assert "commands:" in out.getvalue() and "watch" in out.getvalue() and "--timeout S" in out.getvalue()
    assert err.getvalue().count("error:") == 1  # only `show abc`: the Ctrl-C'd line never ran
    history = (tmp_path / "history").read_text()
    assert "+help wait" in history and "99999" not in history


def test_split_line() -> None:
    assert repl.split_line("rfarm submit 'my job' --frames 1-3", "rfarm") == ["submit", "my job", "--frames", "1-3"]


def test_hints_inside_the_shell_leave_out_rfarm(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", prefix="rfx", config_dir=tmp_path)
    session = Session(settings, default_registry(), out=out, err=err)
    with create_pipe_input() as pipe:
        pipe.send_text("help\rfrobnicate\rjobs\r\x04")
        repl.run(session, input=pipe, output=DummyOutput(), refresher=Refresher(settings, every=60))
    assert "`help COMMAND` or `COMMAND --help`" in out.getvalue()
    assert "error: unknown command 'frobnicate' (try `help`)" in err.getvalue()
    assert "error: not logged in: run `login USER`" in err.getvalue()
    assert "`rfarm " not in out.getvalue() + err.getvalue()
