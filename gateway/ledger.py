"""The ledger: applies render-node events to PostgreSQL with guards, a batch per transaction."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import redis
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from broker_contracts.codec import pack, unpack
from broker_contracts.errors import DecodeError
from broker_contracts.keys import LEDGER_GROUP
from broker_contracts.states import JobStatus, TaskStatus
from broker_contracts.work import THUMB_BYTES, NodeEvent, NodeHeartbeat
from gateway.context import GatewayConfig
from gateway.node_identity import NodeIdentities
from gateway.streams import Backoff, dead_letter, ensure_group, entry_id, no_group
from store import frames, jobs, leases, nodes, outbox, task_logs, tasks
from store.db import StoreUnavailable, transaction

log = logging.getLogger("rfarm.ledger")

Effect = Callable[[redis.Redis], None]
CLAIM_BATCH = 500  # events read or taken over per round

TRANSITIONS = frozenset({"started", "succeeded", "failed", "released"})
ENDS = TRANSITIONS - {"started"}  # a run's last report


@dataclass
class EventsApplied:
    """The node events one transaction applied: what they changed, and the Redis writes that must
    follow its commit."""

    effects: list[Effect] = field(default_factory=list)
    changed_jobs: set[int] = field(default_factory=set)
    progressed_jobs: set[int] = field(default_factory=set)
    wake_dispatcher: bool = False
    # tasks locked by this transaction, kept up to date by the moves applied to them
    locked: dict[int, tasks.Task] = field(default_factory=dict)
    # jobs whose status is derived once, at the end of the batch: the last (reason, actor) of each
    unsettled: dict[int, tuple[str, str]] = field(default_factory=dict)
    # the first task start of each job in this batch: the cause of a queued job becoming running
    first_start: dict[int, tuple[str, str]] = field(default_factory=dict)
    # task starts per pool: how fast nodes take work from each pool's window
    starts: Counter[str] = field(default_factory=Counter)
    # starts and successes applied set-wise (None: each move on its own, as when one by one)
    pending: tasks.Pending | None = None


class Pace:
    """Task starts per pool over the last few seconds, as this gateway's ledger applied them.

    The dispatcher sizes each pool's ready window from it: enough for about a second of work at
    the pace the nodes take it, so nodes that finish tasks faster than a refill never wait.
    """

    def __init__(self, span: float = 3.0) -> None:
        self.span = span
        self._starts: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def add(self, counts: Counter[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for pool, n in counts.items():
                self._starts.setdefault(pool, deque()).append((now, n))

    def per_second(self, pool: str) -> float:
        cutoff = time.monotonic() - self.span
        with self._lock:
            seen = self._starts.get(pool)
            while seen and seen[0][0] < cutoff:
                seen.popleft()
            return sum(n for _, n in seen) / self.span if seen else 0.0


class Ledger:
    def __init__(
        self,
        r: redis.Redis,
        pool: ConnectionPool,
        config: GatewayConfig,
        consumer: str,
        stop: threading.Event,
        wake: threading.Event,
    ) -> None:
        self.r = r
        self.pool = pool
        self.config = config
        self.keys = config.keys
        self.consumer = consumer
        self.stop = stop
        self.wake = wake
        self.redis_backoff = Backoff("redis (events)")
        self.store_backoff = Backoff("postgresql (events)")
        self.pace = Pace()
        self.identities = NodeIdentities(pool, config)

    def run(self) -> None:
        group_ready = False
        next_claim = 0.0  # unacked events idle past claim-idle are looked for at most this often
        while not self.stop.is_set():
            try:
                if not group_ready:
                    ensure_group(self.r, self.keys.events, LEDGER_GROUP)
                    group_ready = True
                entries = []
                if time.monotonic() >= next_claim:
                    _, claimed, *_ = self.r.xautoclaim(  # Redis 6.2 replies with 2 items, 7 with 3
                        self.keys.events, LEDGER_GROUP, self.consumer, int(self.config.claim_idle * 1000), "0-0",
                        count=CLAIM_BATCH,
                    )
                    entries = [(entry_id(i), f) for i, f in claimed if f is not None]
                    if len(claimed) < CLAIM_BATCH:  # none left idle: look again in a while
                        next_claim = time.monotonic() + min(1.0, self.config.claim_idle / 2)
                if not entries:
                    got = self.r.xreadgroup(
                        LEDGER_GROUP, self.consumer, {self.keys.events: ">"}, count=CLAIM_BATCH, block=1000
                    )
                    entries = [(entry_id(i), f) for _, items in got or [] for i, f in items]
                self.redis_backoff.ok()
            except redis.RedisError as exc:
                group_ready = False
                next_claim = 0.0
                if not no_group(exc):  # a missing group is made again at once
                    self.stop.wait(self.redis_backoff.failed(exc))
                continue
            if not entries:
                continue
            try:
                self.process(entries)
                self.store_backoff.ok()
            except StoreUnavailable as exc:
                self.stop.wait(self.store_backoff.failed(exc))  # unacked: read again after a claim
            except redis.RedisError as exc:
                self.stop.wait(self.redis_backoff.failed(exc))

    def process(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        events: list[NodeEvent] = []
        pipe = self.r.pipeline(transaction=False)
        decoded: list[tuple[str, NodeEvent, bytes, bytes | None]] = []
        for eid, fields in entries:
            payload = fields.get(b"m") or b""
            try:
                decoded.append((eid, NodeEvent.model_validate(unpack(payload)), payload, fields.get(b"s")))
            except (DecodeError, ValidationError) as exc:
                dead_letter(pipe, self.keys, self.keys.events, eid, f"undecodable event: {exc}", payload)
        self.identities.refresh({ev.node for _, ev, _, _ in decoded})
        pictured = [eid for eid, ev, _, _ in decoded if ev.thumb is not None]
        for eid, ev, payload, signature in decoded:
            refused = self.identities.refusal(ev.node, payload, signature)
            if refused is not None:
                if self.identities.should_log(ev.node, refused):
                    log.warning("refused %s report (entry %s): %s", ev.kind, eid, refused)
                dead_letter(pipe, self.keys, self.keys.events, eid, f"refused: {refused}", payload)
                continue
            events.append(ev)
        # one job's events stay in order; jobs are locked in ascending order, so batches never deadlock
        events.sort(key=lambda e: e.job_id or 0)
        batch = EventsApplied(pending=tasks.Pending(self.config.lease))
        try:
            with transaction(self.pool) as conn:
                reports = [e for e in events if e.task_id and e.kind in TRANSITIONS]
                batch.locked = tasks.lock_many(
                    conn, [e.job_id for e in reports if e.job_id], [e.task_id for e in reports if e.task_id]
                )
                for ev in events:
                    self.apply(conn, ev, batch)
                self.finish(conn, batch)
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("a batch of %d events failed; applying them one by one", len(events))
            batch = self.one_by_one(events, pipe)
        for effect in batch.effects:
            effect(pipe)
        pipe.xack(self.keys.events, LEDGER_GROUP, *[eid for eid, _ in entries])
        if pictured:  # a thumbnail is kept in PostgreSQL: its copy on the stream (up to 44 KB) goes now
            pipe.xdel(self.keys.events, *pictured)
        pipe.execute()
        self.pace.add(batch.starts)
        if batch.wake_dispatcher or batch.changed_jobs:
            self.wake.set()

    def one_by_one(self, events: list[NodeEvent], pipe: redis.client.Pipeline) -> EventsApplied:
        total = EventsApplied()
        for ev in events:
            batch = EventsApplied()
            try:
                with transaction(self.pool) as conn:
                    self.apply(conn, ev, batch)
                    self.finish(conn, batch)
            except StoreUnavailable:
                raise
            except Exception as exc:
                log.exception("event %s from %s could not be applied", ev.kind, ev.node)
                dead_letter(
                    pipe,
                    self.keys,
                    self.keys.events,
                    "-",
                    f"event could not be applied: {exc}",
                    pack(ev.model_dump(mode="json")),
                )
                continue
            total.effects += batch.effects
            total.changed_jobs |= batch.changed_jobs
            total.wake_dispatcher |= batch.wake_dispatcher
        return total

    def finish(self, conn: psycopg.Connection, batch: EventsApplied) -> None:
        """Once per batch: job statuses from their tasks, frame counts, and notices to watchers."""
        if batch.pending is not None:
            batch.pending.flush(conn)
        for job_id in sorted(batch.unsettled):
            reason, actor = batch.unsettled[job_id]
            new = jobs.refresh_status(conn, job_id, reason, actor, started=batch.first_start.get(job_id))
            if new == JobStatus.FAILED:
                jobs.cancel_rest(conn, job_id, f"job failed: {reason}")
        batch.unsettled.clear()
        jobs.count_progress(conn, batch.progressed_jobs - batch.changed_jobs)
        outbox.job_changed(conn, batch.changed_jobs | batch.progressed_jobs)

    # --- one event -----------------------------------------------------------------------------

    def apply(self, conn: psycopg.Connection, ev: NodeEvent, batch: EventsApplied) -> None:
        lease = self.config.lease
        pending = batch.pending
        if pending is not None and not (
            ev.task_id in batch.locked
            and (
                (ev.kind == "started" and ev.task_id not in pending.tasks)
                or (ev.kind == "succeeded" and ev.task_id not in pending.finished)  # may follow its start
            )
        ):
            pending.flush(conn)  # whatever comes next reads or writes the tasks as they are now
        if ev.kind == "heartbeat":
            if ev.info is not None:
                hb = NodeHeartbeat.model_validate(ev.info)
                if hb.node != ev.node:
                    log.warning("ignored heartbeat of node %s: it speaks for node %s", ev.node, hb.node)
                    return
                nodes.heartbeat(conn, hb)
                leases.extend_leases(conn, hb.node, hb.running, max(lease, hb.lease))
                batch.wake_dispatcher = True
            return
        if ev.kind == "bye":
            nodes.gone(conn, ev.node)
            return
        if ev.task_id is None or ev.run is None:
            return
        if ev.kind == "progress":
            leases.progress(conn, ev.task_id, ev.run, ev.node, ev.done_frames or 0, lease)
            if ev.frame is not None and ev.file is not None and ev.sha256 is not None:
                frames.record(
                    conn,
                    task_id=ev.task_id,
                    run=ev.run,
                    node=ev.node,
                    frame=ev.frame,
                    seconds=ev.seconds or 0.0,
                    file=ev.file,
                    size=ev.bytes or 0,
                    sha256=ev.sha256,
                    thumb=_thumb(ev.thumb),
                )
            if ev.job_id:
                batch.progressed_jobs.add(ev.job_id)
            return
        if ev.kind == "log":
            if ev.output:
                task_logs.append_log(conn, ev.task_id, ev.run, ev.node, ev.output)
            return
        task = batch.locked.get(ev.task_id) or tasks.lock(conn, ev.task_id)
        if task is None:
            return
        batch.locked[task.id] = task
        held = self.claim_refusal(conn, ev, task)
        if held is not None:
            log.warning("ignored %s report of task %s from node %s: %s", ev.kind, task.id, ev.node, held)
            return
        moved: bool | TaskStatus | None = False
        reason = ""
        if ev.kind in ENDS and ev.attempt is not None and ev.started is not None:
            # its "started" may not be applied yet (redelivered or reclaimed out of order): both now
            late = tasks.start_before_end(
                conn, task, ev.run, ev.node, lease, ev.attempt, ev.started, pending if ev.kind == "succeeded" else None
            )
            if late:
                log.info("%s report of task %s came before its start (run %s); applying both", ev.kind, task.id, ev.run)
                self._started(task, f"node {ev.node} started {task.frames}", ev.node, batch)
        if ev.kind == "started":
            if task.job_status == JobStatus.CANCELLED or task.status is TaskStatus.CANCELLED:
                self._signal_cancel(batch, task.job_id)
                return
            moved = tasks.start(conn, task, ev.run, ev.node, lease, pending, attempt=ev.attempt)
            reason = f"node {ev.node} started {task.frames}"
        elif ev.kind == "succeeded":
            moved = tasks.succeed(conn, task, ev.run, ev.node, pending)
            reason = f"node {ev.node} finished {task.frames}"
            batch.wake_dispatcher = True
        elif ev.kind == "failed":
            cause = f"node {ev.node}: exit code {ev.exit_code}" if ev.exit_code is not None else f"node {ev.node}"
            moved = tasks.fail(conn, task, ev.run, ev.node, ev.exit_code, ev.error or "", cause=cause)
            reason = f"{task.frames} failed on node {ev.node}: {ev.error or 'exit code ' + str(ev.exit_code)}"
            if moved is TaskStatus.FAILED:
                self._dead_work(batch, task, reason)
            batch.wake_dispatcher = True
        elif ev.kind == "released":
            moved = tasks.release(conn, task, ev.run, ev.node, ev.error or "released")
            reason = f"node {ev.node} handed back {task.frames}"
            batch.wake_dispatcher = True
        if moved is TaskStatus.FAILED:
            # at once: the job fails and its queued tasks are cancelled before the next report
            self.settle_job(conn, task.job_id, reason, ev.node, batch)
            batch.unsettled.pop(task.job_id, None)
            batch.locked = {k: t for k, t in batch.locked.items() if t.job_id != task.job_id}
        elif moved:
            if ev.kind == "started":
                self._started(task, reason, ev.node, batch)
            else:  # the job's status is derived once per batch (finish), not once per report
                batch.changed_jobs.add(task.job_id)
                batch.unsettled[task.job_id] = (reason, ev.node)
        else:  # a duplicate delivery, or the report of a run that lost its lease: counted, changes nothing
            log.info("ignored stale %s report of task %s (run %s, node %s)", ev.kind, task.id, ev.run, ev.node)

    def claim_refusal(self, conn: psycopg.Connection, ev: NodeEvent, task: tasks.Task) -> str | None:
        """Why a node may not report on this task, or None. A running task takes reports only from
        the node that holds it, and a start from another node (a takeover) only once the holder's
        lease is about to lapse; any other report must name the task's own work entry."""
        holder = task.node if task.status is TaskStatus.RUNNING else None
        if holder is not None and holder != ev.node:
            if ev.kind != "started":
                return f"node {holder} holds it"
            if leases.lease_left(conn, task.id) > self.config.lease / 2:
                return f"node {holder} holds it and keeps its lease"
        if (ev.kind == "started" or holder is None) and task.work_msg is not None and ev.work != task.work_msg:
            return f"it names work entry {ev.work}, not the task's {task.work_msg}"
        return None

    def _started(self, task: tasks.Task, reason: str, node: str, batch: EventsApplied) -> None:
        batch.changed_jobs.add(task.job_id)
        batch.unsettled[task.job_id] = (reason, node)
        batch.first_start.setdefault(task.job_id, (reason, node))
        batch.starts[task.pool] += 1

    def settle_job(self, conn: psycopg.Connection, job_id: int, reason: str, actor: str, batch: EventsApplied) -> None:
        batch.changed_jobs.add(job_id)
        new = jobs.refresh_status(conn, job_id, reason, actor)
        if new == JobStatus.FAILED:
            jobs.cancel_rest(conn, job_id, f"job failed: {reason}")

    def _signal_cancel(self, batch: EventsApplied, job_id: int) -> None:
        key = self.keys.cancel(job_id)
        batch.effects.append(lambda p: p.set(key, "farm", ex=3600))

    def _dead_work(self, batch: EventsApplied, task: tasks.Task, reason: str) -> None:
        msg = task.work_msg or "-"
        stream = self.keys.work(task.pool)
        batch.effects.append(
            lambda p: dead_letter(
                p,
                self.keys,
                stream,
                msg,
                f"task {task.id} out of attempts: {reason}",
                pack({"task_id": task.id, "job_id": task.job_id}),
            )
        )


def _thumb(text: str | None) -> bytes | None:
    """A reported thumbnail's PNG bytes; None for none, or for one that is not base64 of a PNG."""
    if text is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) <= THUMB_BYTES else None
