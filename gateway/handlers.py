"""One function per request type: (context, validated body) -> its reply body, or an Outcome (the body
and the Redis writes to make after the commit). No Redis, no I/O but SQL."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from pydantic import BaseModel, ValidationError

from broker_contracts import messages as m
from broker_contracts.envelope import Envelope, Reply, first_error
from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.profiles import BUILTIN_PROFILES, ProfileSpec, validate_params
from gateway import control, frames, nodectl, why, wire
from gateway.context import Context, KeepWrites, Outcome, Specs
from gateway.passwords import hash_password, needs_rehash, verify_password
from gateway.sealing import seal_for
from store import history, jobs, limits, users
from store import submit as submitting

FormT = TypeVar("FormT", bound=BaseModel)


def register(ctx: Context, req: m.RegisterRequest) -> m.UserReply:
    form = _opened(m.RegisterForm, req.username, ctx.sealing.password(req.sealed_password))
    user = users.create_user(ctx.conn, form.username, hash_password(form.password))
    return m.UserReply(username=user.username, is_admin=user.is_admin)


def _opened(form: type[FormT], username: str, password: str) -> FormT:
    """The body with its password opened, checked as the shell checked it before sealing."""
    try:
        return form(username=username, password=password)
    except ValidationError as exc:
        raise RfarmError(ErrorCode.REQUEST_INVALID, first_error(exc)) from None


def login(ctx: Context, req: m.LoginRequest) -> m.LoginReply:
    password = _opened(m.LoginForm, req.username, ctx.sealing.password(req.sealed_password)).password
    wait = users.throttle_wait(ctx.conn, req.username, ctx.reply_to)
    if wait > 0:
        raise RfarmError(ErrorCode.RATE_LIMITED, f"too many failed logins: try again in {int(wait) + 1} s")
    found = users.credentials(ctx.conn, req.username)
    if not verify_password(found.password_hash if found else None, password) or found is None:
        users.record_failure(ctx.conn, req.username, ctx.reply_to)
        raise KeepWrites(ErrorCode.AUTH_INVALID_CREDENTIALS, "wrong username or password")
    users.clear_failures(ctx.conn, req.username, ctx.reply_to)
    if needs_rehash(found.password_hash):
        users.set_password_hash(ctx.conn, found.user.id, hash_password(password))
    token = secrets.token_urlsafe(32)  # 256 random bits; only its hash is stored
    expires = users.create_session(ctx.conn, found.user.id, token, ctx.config.token_ttl)
    # sealed to the shell's one-off key: the reply stream and the inbox never hold it in clear
    sealed = seal_for(req.answer_key, token)
    return m.LoginReply(
        username=found.user.username, is_admin=found.user.is_admin, sealed_token=sealed, expires_at=expires
    )


def logout(ctx: Context, req: m.EmptyRequest) -> m.EmptyRequest:
    ctx.caller  # noqa: B018 - a valid token is required to revoke it
    users.revoke_session(ctx.conn, ctx.token or "")
    return m.EmptyRequest()


def whoami(ctx: Context, req: m.EmptyRequest) -> m.UserReply:
    return m.UserReply(username=ctx.caller.username, is_admin=ctx.caller.is_admin)


def submit(ctx: Context, req: m.SubmitRequest) -> Outcome:
    # The session is checked by the statement that makes the job (session_in_statement); a refusal
    # before it first checks the caller is logged in, so a stranger is told only that.
    try:
        req = _with_valid_params(ctx, req)
        unknown = limits.missing(ctx.conn, req.limits) if req.limits else []
        if unknown:
            raise RfarmError(
                ErrorCode.REQUEST_INVALID,
                f"no limit named {', '.join(unknown)}: an operator sets limits with `rfarmctl limit set`",
            )
    except RfarmError:
        users.authenticate(ctx.conn, ctx.token or "")
        raise
    if req.after is None:
        _, job_id = submitting.submit_in_session(ctx.conn, ctx.token or "", req, answer=ctx.answer)
    else:  # the dependency is checked against the caller first: a round trip more
        job_id = submitting.submit(ctx.conn, users.authenticate(ctx.conn, ctx.token or ""), req, answer=ctx.answer)
    return Outcome(m.SubmitReply(id=job_id), recorded=ctx.answer is not None)


def _with_valid_params(ctx: Context, req: m.SubmitRequest) -> m.SubmitRequest:
    """The request with its params checked against the renderer's spec (as announced, or built in)."""
    announced = (ctx.specs or Specs(ttl=0)).get(ctx.conn, req.renderer, fallback=req.renderer in BUILTIN_PROFILES)
    spec = ProfileSpec.model_validate(announced) if announced else BUILTIN_PROFILES.get(req.renderer)
    if spec is None:
        raise RfarmError(
            ErrorCode.PROFILE_UNKNOWN,
            f"no render node offers the renderer {req.renderer!r}: ask an operator, or see `rfarm nodes`",
        )
    try:
        params = validate_params(spec, req.params)
    except ValueError as exc:
        raise RfarmError(ErrorCode.REQUEST_INVALID, f"renderer {req.renderer}: {exc}") from None
    return req.model_copy(update={"params": params})


def list_jobs(ctx: Context, req: m.ListRequest) -> dict[str, Any]:
    # the session is checked in the same statement as the page (session_in_statement)
    _, columns, rows = jobs.list_page(
        ctx.conn, ctx.token or "", everyone=req.all, status=req.status, limit=req.limit, before=req.before
    )
    return {"columns": columns, "jobs": rows}  # an m.ListReply dump, made without the model (see gateway/wire.py)


def plain_page(env: Envelope, body: m.ListRequest) -> bool:
    """A `jobs` request for the caller's own newest jobs (no status, no `before`, not --all, with a
    token): one plain_pages answers together with others like it."""
    return bool(env.token) and not body.all and body.status is None and body.before is None


def plain_pages(conn: psycopg.Connection, asked: list[tuple[Envelope, m.ListRequest]]) -> list[Reply]:
    """What list_jobs answers to each of several plain `jobs` requests, from one statement: each
    request gets its own session's page or error (tests/integration/test_wire_bodies.py compares the two)."""
    columns, answers = jobs.own_pages(conn, [(env.token or "", body.limit) for env, body in asked])
    replies = []
    for (env, _body), (session, rows) in zip(asked, answers, strict=True):
        try:
            users.session_user(session)
            replies.append(Reply.success(env.id, {"columns": columns, "jobs": rows}))
        except RfarmError as exc:
            replies.append(Reply.failure(env.id, exc.code, exc.message))
    return replies


def show(ctx: Context, req: m.JobRef) -> m.ShowReply:
    job = jobs.get(ctx.conn, ctx.caller, req.id)
    detail = control.detail(ctx.conn, job)
    task_list = [m.TaskInfo.model_validate(t) for t in jobs.tasks_of(ctx.conn, req.id)]
    return m.ShowReply(job=detail, tasks=task_list, times=frames.estimate(ctx.conn, detail, task_list))


def job_history(ctx: Context, req: m.HistoryRequest) -> dict[str, Any]:
    job = jobs.get(ctx.conn, ctx.caller, req.id)
    columns, rows = history.changes(ctx.conn, req.id, with_tasks=req.tasks)
    # an m.HistoryReply dump, made without the model (see gateway/wire.py)
    return {"job": wire.summary(job), "columns": columns, "history": rows}


def job_why(ctx: Context, req: m.JobRef) -> m.WhyReply:
    return why.explain(ctx.conn, jobs.get(ctx.conn, ctx.caller, req.id))


Handler = Callable[[Context, Any], m.Body | dict[str, Any] | Outcome]


@dataclass(frozen=True)
class Together:
    """The fast path of a request type with RequestType.answers_together: which of its requests
    qualify, and the one statement that answers several of them."""

    plain: Callable[[Envelope, Any], bool]
    answer: Callable[[psycopg.Connection, list[tuple[Envelope, Any]]], list[Reply]]


HANDLERS: dict[str, Handler] = {
    "auth.register": register,
    "auth.login": login,
    "auth.logout": logout,
    "auth.whoami": whoami,
    "job.submit": submit,
    "job.why": job_why,
    "job.list": list_jobs,
    "job.show": show,
    "job.history": job_history,
    "job.cancel": control.cancel,
    "job.pause": control.pause,
    "job.resume": control.resume,
    "job.retry": control.retry,
    "job.priority": control.priority,
    "job.logs": control.logs,
    "job.frames": frames.frame_list,
    "job.thumbs": frames.thumbs,
    "job.watch": control.watch,
    "node.list": nodectl.node_list,
    "node.drain": nodectl.drain,
    "node.undrain": nodectl.undrain,
    "node.forget": nodectl.forget,
}

TOGETHER: dict[str, Together] = {"job.list": Together(plain_page, plain_pages)}


def missing_handlers() -> list[str]:
    """Registry rows the gateway cannot answer: a type with no handler, or answered together
    without the statement that does it; and handlers of no registered type."""
    rows = m.REQUEST_TYPES
    missing = [f"{name}: no handler" for name in rows if name not in HANDLERS]
    missing += [f"{name}: no row in the registry" for name in HANDLERS if name not in rows]
    missing += [
        f"{name}: answered together, but by no statement"
        for name, row in rows.items()
        if row.answers_together and name not in TOGETHER
    ]
    return missing
