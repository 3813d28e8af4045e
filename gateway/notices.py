"""Pushed notices: the committed state of a watched job, sent to every shell watching it."""

from __future__ import annotations

import time

import psycopg
import redis

from broker_contracts import messages as m
from broker_contracts.envelope import Notice, encode
from gateway.context import GatewayConfig
from store import history, jobs
from store.users import User

FARM = User(0, "farm", True)  # watchers were authorised when they subscribed


def publish_watch_notices(conn: psycopg.Connection, r: redis.Redis, config: GatewayConfig, job_ids: list[int]) -> int:
    keys = config.keys
    if not job_ids:
        return 0
    pipe = r.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hgetall(keys.watch(job_id))
    watchers_by_job = pipe.execute()
    now = time.time()
    sent = 0
    out = r.pipeline(transaction=False)
    for job_id, watchers in zip(job_ids, watchers_by_job, strict=True):
        live: list[tuple[str, str]] = []
        for member, until in watchers.items():
            member_s = member.decode() if isinstance(member, bytes) else member
            if float(until) < now:
                out.hdel(keys.watch(job_id), member)
                continue
            client, _, sub = member_s.partition(":")
            live.append((client, sub))
        if not live:
            continue
        try:
            job = jobs.get(conn, FARM, job_id)
        except Exception:
            continue
        counts = jobs.task_counts(conn, job_id)
        running = [
            {"task": r_["id"], "node": r_["node"], "frames": r_["frames"], "done": r_["done_frames"]}
            for r_ in jobs.running_tasks(conn, job_id, limit=50)
        ]
        recent = history.for_job(conn, job_id, with_tasks=True, limit=20)[-20:]
        body = m.WatchNotice(
            job=m.JobSummary.model_validate(job),
            counts=counts,
            running=[m.RunningTaskInfo.model_validate(t) for t in running],
            history=[m.HistoryEntry.model_validate(h) for h in recent],
        ).model_dump(mode="json", by_alias=True)
        for client, sub in live:
            stream = keys.reply(client)
            out.xadd(
                stream,
                {"m": encode(Notice(topic="job", sub=sub, body=body))},
                maxlen=config.reply_maxlen,
                approximate=True,
            )
            out.expire(stream, config.reply_ttl)
            sent += 1
    out.execute()
    return sent
