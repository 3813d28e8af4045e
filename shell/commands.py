"""Every rfarm command, declared once: arguments, help, request body builder, renderer."""

from __future__ import annotations

import argparse
import re
import secrets
from typing import Any

from broker_contracts.durations import parse_duration
from broker_contracts.frames import parse_frames
from broker_contracts.messages import LoginForm, RegisterForm
from broker_contracts.states import JobStatus
from shell import completion, notify
from shell import frames as frames_view
from shell import views as r
from shell.errors import UsageError
from shell.registry import Arg, Command, Context, Registry, Renderer, positive_seconds
from shell.safe import printable
from shell.watch import Follow, follow
from shell.whyview import render_why

# --- argument types (raise ArgumentTypeError: argparse names the argument in the message) -------


def job_id(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a whole number from 1)")
    value = int(text)
    if value > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is too large for a job id")
    return value


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def frames(text: str) -> str:
    try:
        return str(parse_frames(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


# --- passwords ----------------------------------------------------------------------------------


def _password(ns: argparse.Namespace, ctx: Context, *, twice: bool) -> str:
    if ns.password_stdin:
        return ctx.read_stdin_line()
    password = ctx.ask_password(f"password for {printable(ns.user)}: ")
    if twice and ctx.ask_password("again: ") != password:
        raise UsageError("the two passwords differ")
    return password


_USER = Arg("user", "user name", metavar="USER", completes="user")
_PASSWORD_STDIN = Arg("--password-stdin", "read the password from one line of standard input", flag=True)
_ACCEPT_NEW_KEY = Arg(
    "--accept-new-farm-key",
    "trust the key the farm announces now, though it differs from the one this shell first saw",
    flag=True,
)
_JOB = Arg("job", "job id", type=job_id, metavar="JOB", completes="job")
_NO_NOTIFY = Arg("--no-notify", "no bell or desktop notification when it ends (or RFARM_NOTIFY=off)", flag=True)
_NODE = Arg("node", "render node name (see `nodes`)", metavar="NODE", completes="node")


# --- builders -----------------------------------------------------------------------------------


def _empty(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {}


def _job_ref(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"id": ns.job}


def _register(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"username": ns.user, "password": _password(ns, ctx, twice=True)}


def _login(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"username": ns.user, "password": _password(ns, ctx, twice=False)}


def _seal_register(form: dict[str, Any], ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"username": form["username"], "sealed_password": ctx.seal_password(form["password"])}


def _seal_login(form: dict[str, Any], ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    sealed = ctx.seal_password(form["password"], accept_new_key=ns.accept_new_farm_key)
    return {"username": form["username"], "sealed_password": sealed, "answer_key": ctx.answer_key()}


def _store_login(reply: Any, ns: argparse.Namespace, ctx: Context) -> None:
    ctx.save_login(reply.username, ctx.open_answer(reply.sealed_token))


def _forget_login(ctx: Context) -> None:
    ctx.forget_login()


def _submit(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    params: dict[str, str] = {}
    for key, value in ns.param or []:
        if key in params:
            raise UsageError(f"rfarm submit: --param {key} given twice")
        params[key] = value
    body: dict[str, Any] = {
        "name": ns.name,
        "frames": ns.frames,
        "chunk": ns.chunk,
        "renderer": ns.renderer,
        "params": params,
        "priority": ns.priority,
        "max_attempts": ns.max_attempts,
        "pool": ns.pool,
        "requires": ns.require or [],
    }
    if ns.after is not None:
        body["after"] = ns.after
    if ns.limit:
        body["limits"] = ns.limit
    if ns.task_timeout is not None:
        body["task_timeout"] = ns.task_timeout
    return body


def _node_ref(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"name": ns.node}


def _render_node_state(reply: Any, opts: Any) -> list[str]:
    state = "drained: no new work, running work finishes" if reply.drained else "takes work"
    return [f"node {printable(reply.id)} ({printable(reply.state)}, {reply.running}/{reply.slots} busy): {state}"]


def _list(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"status": ns.status, "all": ns.all, "limit": ns.limit}


def _jobs_view(ns: argparse.Namespace) -> Renderer:
    return r.render_all_jobs if ns.all else r.render_jobs


def _history(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"id": ns.job, "tasks": not ns.job_only}


def _priority(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"id": ns.job, "priority": ns.priority}


def _logs(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"id": ns.job, "frame": ns.frame}


def _frames_body(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    body: dict[str, Any] = {"id": ns.job, "after": ns.after}
    if ns.limit is not None:
        body["limit"] = ns.limit
    return body


def _thumbs_body(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"id": ns.job, "frame": ns.frame}


def _watch_body(ns: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"id": ns.job, "sub": secrets.token_hex(6)}


def _watch(body: dict[str, Any], ns: argparse.Namespace, session: Any) -> int:
    tell = notify.enabled(option_off=ns.no_notify)
    return follow(session, Follow(job=body["id"], sub=body["sub"], json_mode=ns.json, notify=tell))


def _wait(body: dict[str, Any], ns: argparse.Namespace, session: Any) -> int:
    tell = notify.enabled(option_off=ns.no_notify)
    spec = Follow(job=body["id"], sub=body["sub"], wait_only=True, json_mode=ns.json, limit=ns.timeout, notify=tell)
    return follow(session, spec)


def _follow_submitted(reply: Any, ns: argparse.Namespace, session: Any) -> int:
    return follow(session, Follow(job=reply.id, json_mode=ns.json, notify=notify.enabled()))


def _help(ns: argparse.Namespace, registry: Registry) -> list[str]:
    if ns.command:
        return registry.parser(ns.command).format_help().rstrip("\n").splitlines()
    return registry.overview()


def _completion(ns: argparse.Namespace, registry: Registry) -> list[str]:
    return completion.script(ns.shell, registry).rstrip("\n").splitlines()


def _control(name: str, help_: str) -> Command:
    return Command(
        name=name,
        help=help_,
        args=(_JOB,),
        request=f"job.{name}",
        build=_job_ref,
        render=r.render_job_changed,
        examples=(f"rfarm {name} 42",),
    )


COMMANDS: tuple[Command, ...] = (
    Command(
        name="register",
        help="create an account (asks for the password twice)",
        args=(_USER, _PASSWORD_STDIN),
        request="auth.register",
        build=_register,
        form=RegisterForm,
        seal=_seal_register,
        render=r.render_registered,
        examples=("rfarm register alice", "printf '%s\\n' \"$PW\" | rfarm register alice --password-stdin"),
    ),
    Command(
        name="login",
        help="log in and keep the session token for the next commands",
        args=(_USER, _PASSWORD_STDIN, _ACCEPT_NEW_KEY),
        request="auth.login",
        build=_login,
        form=LoginForm,
        seal=_seal_login,
        render=r.render_login,
        as_json=r.login_json,
        after=_store_login,
    ),
    Command(
        name="logout",
        help="end the session on the farm and forget the stored token",
        request="auth.logout",
        build=_empty,
        render=r.render_logout,
        as_json=r.logout_json,
        always=_forget_login,
    ),
    Command(
        name="whoami",
        help="who the farm thinks you are",
        request="auth.whoami",
        build=_empty,
        render=r.render_whoami,
    ),
    Command(
        name="submit",
        help="submit a render job; prints its id",
        args=(
            Arg("name", "job name", metavar="NAME"),
            Arg(
                "--frames",
                "frame range, like 1-100 or 7 (default 1)",
                type=frames,
                metavar="RANGE",
                default="1",
            ),
            Arg("--chunk", "frames per task (default 1)", type=whole, metavar="N", default=1),
            Arg(
                "--renderer",
                "renderer profile (default fractal)",
                metavar="PROFILE",
                default="fractal",
                completes="profile",
            ),
            Arg("--param", "renderer parameter, may repeat", type=key_value, metavar="KEY=VALUE", repeat=True),
            Arg("--priority", "0-100, higher first (default 50)", type=whole, metavar="N", default=50),
            Arg(
                "--max-attempts",
                "tries per task before it fails (default 3)",
                type=whole,
                metavar="N",
                default=3,
            ),
            Arg("--pool", "node pool (default default)", metavar="POOL", default="default", completes="pool"),
            Arg(
                "--require",
                "a node tag the job needs, may repeat",
                metavar="TAG",
                repeat=True,
                completes="tag",
            ),
            Arg(
                "--after",
                "start only once this job has succeeded",
                type=job_id,
                metavar="JOB",
                completes="job",
            ),
            Arg(
                "--limit",
                "a named limit its tasks take (an operator sets them), may repeat",
                metavar="NAME",
                repeat=True,
            ),
            Arg(
                "--task-timeout",
                "stop a render that runs longer (90s, 15m, 2h) and retry it as a failure",
                type=duration,
                metavar="DURATION",
            ),
            Arg("--watch", "then follow the job live, as `watch` does", flag=True),
        ),
        request="job.submit",
        build=_submit,
        render=r.render_submitted,
        follow=_follow_submitted,
        examples=(
            "rfarm submit mandel --frames 1-100 --chunk 5 --param zoom=2.5 --priority 70",
            "rfarm submit nap --renderer sleep --param seconds=0.5 --frames 1-20 --watch",
            "rfarm submit sim --renderer houdini --limit houdini-lic --task-timeout 2h --frames 1-48",
        ),
    ),
    Command(
        name="jobs",
        help="list your jobs (newest first)",
        args=(
            Arg(
                "--status",
                "only jobs with this status",
                metavar="STATUS",
                choices=[s.value for s in JobStatus],
                completes="status",
            ),
            Arg("--all", "everyone's jobs (admins)", flag=True),
            Arg("--limit", "at most N jobs (default 50)", type=whole, metavar="N", default=50),
        ),
        request="job.list",
        build=_list,
        render=r.render_jobs,
        view=_jobs_view,
        as_json=r.jobs_json,
    ),
    Command(
        name="show",
        help="a job with its tasks",
        args=(_JOB,),
        request="job.show",
        build=_job_ref,
        render=r.render_show,
    ),
    Command(
        name="why",
        help="where a job stands and why: its place among waiting work, what it waits for, what would start it",
        args=(_JOB,),
        request="job.why",
        build=_job_ref,
        render=render_why,
        examples=("rfarm why 42",),
    ),
    Command(
        name="history",
        help="every status change of a job and its tasks: time, from → to, reason, actor",
        args=(_JOB, Arg("--job-only", "leave out the tasks' changes", flag=True)),
        request="job.history",
        build=_history,
        render=r.render_history,
    ),
    Command(
        name="watch",
        help="follow a job live: progress, tasks by status and node, each change as it happens",
        args=(_JOB, _NO_NOTIFY),
        request="job.watch",
        build=_watch_body,
        live=_watch,
        examples=("rfarm watch 42", "rfarm watch 42 --json   # one JSON document when it ends"),
    ),
    Command(
        name="wait",
        help="block until a job ends: exit 0 succeeded, 1 failed or cancelled, 3 on --timeout",
        args=(
            _JOB,
            Arg("--timeout", "give up after S seconds (exit 3)", type=positive_seconds, metavar="S"),
            _NO_NOTIFY,
        ),
        request="job.watch",
        build=_watch_body,
        live=_wait,
        examples=("rfarm wait 42 --timeout 600 && echo rendered",),
    ),
    _control("cancel", "cancel a job: queued tasks are dropped, running ones stopped"),
    _control("pause", "stop starting new tasks of a job (running ones finish)"),
    _control("resume", "let a paused job start tasks again"),
    _control("retry", "put a failed or cancelled job's unfinished tasks back in the queue"),
    Command(
        name="priority",
        help="change a job's priority (0-100, higher first)",
        args=(_JOB, Arg("priority", "new priority", type=whole, metavar="N")),
        request="job.priority",
        build=_priority,
        render=r.render_job_changed,
    ),
    Command(
        name="logs",
        help="the renderer's output for a job's tasks",
        args=(
            _JOB,
            Arg("--frame", "only the task that renders this frame", type=whole, metavar="N"),
            Arg("--raw", "print the output as the renderer wrote it, control characters included", flag=True),
        ),
        request="job.logs",
        build=_logs,
        render=r.render_logs,
        render_raw=r.render_raw_logs,
    ),
    Command(
        name="frames",
        help="a job's frames: status, node, try, render seconds, size and file of each",
        args=(
            _JOB,
            Arg("--limit", "one page of at most N frames, and the cursor of the next", type=whole, metavar="N"),
            Arg("--after", "the page after this cursor (a frame number)", type=whole, metavar="CURSOR"),
        ),
        request="job.frames",
        build=_frames_body,
        live=frames_view.run_frames,
        examples=("rfarm frames 42", "rfarm frames 42 --json --limit 100"),
    ),
    Command(
        name="preview",
        help="a job's finished frames as pictures: in the terminal, or a contact sheet PNG with --out",
        args=(
            _JOB,
            Arg("--frame", "only this frame, larger", type=whole, metavar="N"),
            Arg("--out", "write a contact sheet PNG (frame numbers and the job's name) to FILE", metavar="FILE"),
        ),
        request="job.thumbs",
        build=_thumbs_body,
        live=frames_view.run_preview,
        examples=("rfarm preview 42", "rfarm preview 42 --frame 7", "rfarm preview 42 --out sheet.png"),
    ),
    Command(
        name="nodes",
        help="pools, render nodes, their slots and what is busy (the jobs on them: yours; admins: all)",
        request="node.list",
        build=_empty,
        render=r.render_nodes,
    ),
    Command(
        name="drain",
        help="no new work for a node; its running work finishes (admins)",
        args=(_NODE,),
        request="node.drain",
        build=_node_ref,
        render=_render_node_state,
    ),
    Command(
        name="undrain",
        help="a drained node takes work again (admins)",
        args=(_NODE,),
        request="node.undrain",
        build=_node_ref,
        render=_render_node_state,
    ),
    Command(
        name="forget",
        help="remove a gone node from the farm's list (admins)",
        args=(_NODE,),
        request="node.forget",
        build=_node_ref,
        render=lambda reply, opts: [f"forgot node {printable(reply.name)}"],
    ),
    Command(
        name="help",
        help="list the commands, or explain one",
        args=(Arg("command", "a command name", metavar="COMMAND", optional=True, completes="command"),),
        local=_help,
    ),
    Command(
        name="completion",
        help="print a completion script for bash, zsh or fish",
        args=(Arg("shell", "the shell", metavar="SHELL", choices=completion.SHELLS),),
        local=_completion,
        examples=(
            'eval "$(rfarm completion bash)"   # in ~/.bashrc',
            'rfarm completion zsh > "${fpath[1]}/_rfarm"',
            "rfarm completion fish > ~/.config/fish/completions/rfarm.fish",
        ),
    ),
)


def default_registry(prog: str = "rfarm") -> Registry:
    return Registry(COMMANDS, prog=prog)
