"""Job control handlers (cancel, pause, resume, retry, priority), logs and watch, and job detail."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import redis

from broker_contracts import messages as m
from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.states import JOB_RETRYABLE, JOB_TERMINAL, JobStatus
from gateway.context import Context, Outcome
from store import jobs, nodes, outbox, quotas, task_logs, tasks

CANCEL_TTL = 3600
WATCH_TTL = 120


def _refuse(job: dict[str, Any], action: str) -> RfarmError:
    state = "paused" if job["paused"] and job["status"] not in JOB_TERMINAL else job["status"]
    return RfarmError(ErrorCode.JOB_INVALID_STATE, f"job {job['id']} is {state}: it cannot be {action}")


def _summary(conn: psycopg.Connection, ctx: Context, job_id: int) -> m.JobReply:
    """The job as it is now; every control handler ends here, so watchers hear of the change."""
    outbox.job_changed(conn, [job_id])
    return m.JobReply(job=m.JobSummary.model_validate(jobs.get(conn, ctx.caller, job_id)))


def cancel(ctx: Context, req: m.JobRef) -> Outcome:
    job = jobs.get(ctx.conn, ctx.caller, req.id, lock=True)
    if job["status"] in JOB_TERMINAL:
        raise _refuse(job, "cancelled")
    who = ctx.caller.username
    jobs.cancel(ctx.conn, req.id, JobStatus(job["status"]), who)
    keys = ctx.config.keys

    def signal(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=False)
        pipe.set(keys.cancel(req.id), who, ex=CANCEL_TTL)
        pipe.delete(keys.hold(req.id))
        pipe.execute()

    return Outcome(_summary(ctx.conn, ctx, req.id), after_commit=(signal,))


def pause(ctx: Context, req: m.JobRef) -> Outcome:
    job = jobs.get(ctx.conn, ctx.caller, req.id, lock=True)
    if job["status"] in JOB_TERMINAL or job["paused"]:
        raise _refuse(job, "paused")
    jobs.set_paused(ctx.conn, req.id, True)
    hold, who = ctx.config.keys.hold(req.id), ctx.caller.username
    return Outcome(_summary(ctx.conn, ctx, req.id), after_commit=(lambda r: r.set(hold, who, ex=30 * 24 * 3600),))


def resume(ctx: Context, req: m.JobRef) -> Outcome:
    job = jobs.get(ctx.conn, ctx.caller, req.id, lock=True)
    if not job["paused"]:
        raise RfarmError(ErrorCode.JOB_INVALID_STATE, f"job {req.id} is not paused")
    jobs.set_paused(ctx.conn, req.id, False)
    hold = ctx.config.keys.hold(req.id)
    return Outcome(_summary(ctx.conn, ctx, req.id), after_commit=(lambda r: r.delete(hold),))


def retry(ctx: Context, req: m.JobRef) -> Outcome:
    job = jobs.get(ctx.conn, ctx.caller, req.id, lock=True)
    if job["status"] not in JOB_RETRYABLE:
        raise _refuse(job, "retried (only failed or cancelled jobs can)")
    jobs.retry(ctx.conn, job, ctx.caller.username)
    cancel_key = ctx.config.keys.cancel(req.id)
    return Outcome(_summary(ctx.conn, ctx, req.id), after_commit=(lambda r: r.delete(cancel_key),))


def priority(ctx: Context, req: m.PriorityRequest) -> m.JobReply:
    job = jobs.get(ctx.conn, ctx.caller, req.id, lock=True)
    if job["status"] in JOB_TERMINAL:
        raise _refuse(job, "reprioritised")
    jobs.set_priority(ctx.conn, req.id, req.priority)
    return _summary(ctx.conn, ctx, req.id)


def logs(ctx: Context, req: m.LogsRequest) -> m.LogsReply:
    jobs.get(ctx.conn, ctx.caller, req.id)
    rows = task_logs.logs_of(ctx.conn, req.id, req.frame)
    entries = [m.LogEntry.model_validate(r) for r in rows]
    # keep the reply inside one message: the newest output of each attempt, trimmed to fit
    budget = 48 * 1024
    per = max(512, budget // max(1, len(entries)))
    for e in entries:
        if len(e.output) > per:
            e.output = "…" + e.output[-per:]
    return m.LogsReply(logs=entries)


def watch(ctx: Context, req: m.WatchRequest) -> Outcome:
    job = jobs.get(ctx.conn, ctx.caller, req.id)
    keys, config, user = ctx.config.keys, ctx.config, ctx.caller
    key, mine = keys.watch(req.id), keys.watching(user.id)
    member = f"{ctx.reply_to}:{req.sub}"
    own = f"{req.id}:{member}"
    cap = quotas.max_watches(ctx.conn, user.id)

    def subscribe(r: redis.Redis) -> None:
        """Subscribe, within the caps: a refusal here is the reply (a watch writes nothing else)."""
        now = time.time()
        watchers, subscriptions = _live(r, key, now), _live(r, mine, now)
        if member not in watchers and len(watchers) >= config.watchers_per_job:
            raise RfarmError(
                ErrorCode.QUOTA_EXCEEDED, f"job {req.id} already has {config.watchers_per_job} watchers: try later"
            )
        if own not in subscriptions and len(subscriptions) >= cap:
            raise RfarmError(
                ErrorCode.QUOTA_EXCEEDED,
                f"your quota is {cap} watches and you use them all: stop a watch, or wait {WATCH_TTL} s",
            )
        until = str(now + WATCH_TTL)
        pipe = r.pipeline(transaction=False)
        pipe.hset(key, member, until)
        pipe.expire(key, WATCH_TTL)
        pipe.hset(mine, own, until)
        pipe.expire(mine, WATCH_TTL)
        pipe.execute()

    tasks = [m.TaskInfo.model_validate(t) for t in jobs.tasks_of(ctx.conn, req.id)]
    return Outcome(m.WatchReply(job=detail(ctx.conn, job), tasks=tasks, sub=req.sub), after_commit=(subscribe,))


def _live(r: redis.Redis, key: str, now: float) -> set[str]:
    """The members of a subscription hash whose expiry is still ahead; the lapsed ones are removed."""
    live: set[str] = set()
    lapsed = []
    for member, until in r.hgetall(key).items():
        if float(until) > now:
            live.add(member.decode())
        else:
            lapsed.append(member)
    if lapsed:
        r.hdel(key, *lapsed)
    return live


def detail(conn: psycopg.Connection, job: dict[str, Any]) -> m.JobDetail:
    """A job with what a user needs to know about why it is (not) moving."""
    blocked = tasks.blocked_nodes(conn, job["id"])
    return m.JobDetail.model_validate({**job, "waiting": waiting_reason(conn, job), "blocked_nodes": blocked})


def waiting_reason(conn: psycopg.Connection, job: dict[str, Any]) -> str | None:
    if job["status"] in JOB_TERMINAL:
        return None
    if job["paused"]:
        return "paused: no new task starts until it is resumed"
    if job["after"]:
        dep = jobs.status_of(conn, job["after"])
        if dep is not None and dep != JobStatus.SUCCEEDED:
            return f"waiting for job {job['after']} to succeed (it is {dep})"
    if job["status"] == JobStatus.QUEUED:
        offered = nodes.offered(conn, job["pool"])
        if job["renderer"] not in offered:
            return f"no live render node in pool {job['pool']!r} offers the renderer {job['renderer']!r}"
        missing = set(job["requires"]) - set(offered[job["renderer"]])
        if missing:
            return f"no live node in pool {job['pool']!r} has the tags {', '.join(sorted(missing))}"
        return "waiting for a free render slot"
    return None
