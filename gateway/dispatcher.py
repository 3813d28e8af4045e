"""The dispatcher: keeps each pool's work stream a short ready window, filled from PostgreSQL.

Also the reconciler (dispatched work whose stream entry vanished, leases that lapsed, jobs whose
dependency failed) and the outbox publisher (notices to watching shells).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from psycopg_pool import ConnectionPool

from broker_contracts.codec import pack, unpack
from broker_contracts.keys import NODES_GROUP
from broker_contracts.signing import Signer, new_pair
from broker_contracts.work import WorkItem
from gateway.context import GatewayConfig
from gateway.ledger import EventsApplied, Ledger
from gateway.notices import publish_watch_notices
from gateway.streams import WORK_MAXLEN, Backoff, ensure_group, entry_id
from store import credentials, dispatch, jobs, leases, nodes, outbox, tasks
from store.db import StoreUnavailable, transaction

log = logging.getLogger("rfarm.dispatcher")

# A ready window cannot be reordered once in Redis: kept short (a slot's worth, or a second of work
# at the pace nodes start it) so that a late user's tasks, dealt in fair order, are not stuck behind it.
WINDOW_PER_SLOT = 1
WINDOW_SECONDS = 1.0  # ... or about this much work at the pace nodes start it, if that is more
WINDOW_MAX = 5000
STATISTICS_EVERY = 1.0  # seconds between looks at how far the planner's statistics are off


class Dispatcher:
    def __init__(
        self,
        r: redis.Redis,
        pool: ConnectionPool,
        config: GatewayConfig,
        stop: threading.Event,
        wake: threading.Event,
        ledger: Ledger,
    ) -> None:
        self.r = r
        self.pool = pool
        self.config = config
        self.keys = config.keys
        self.stop = stop
        self.wake = wake
        self.ledger = ledger
        self.backoff = Backoff("dispatcher")
        self.next_reconcile = 0.0
        self.next_prune = time.monotonic() + 60
        self.next_statistics = 0.0
        self.next_nodes = 0.0  # the next look at drained nodes and nodes to forget
        self.known_groups: set[str] = set()
        self.signer: Signer | None = None  # the gateways' work key, read from PostgreSQL when first needed

    def run(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(0.25)
            self.wake.clear()
            try:
                self.tick()
                self.backoff.ok()
            except (StoreUnavailable, redis.RedisError) as exc:
                self.known_groups.clear()
                self.stop.wait(self.backoff.failed(exc))
            except Exception:
                log.exception("dispatcher tick failed")
                self.stop.wait(1.0)

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.next_reconcile:
            self.reconcile()
            self.next_reconcile = now + min(1.0, self.config.lease / 4)
        if now >= self.next_statistics:
            with transaction(self.pool) as conn:
                analyzed = dispatch.refresh_statistics(conn)
            if analyzed:
                log.info("statistics of %s were far off; analyzed", ", ".join(analyzed))
            self.next_statistics = now + STATISTICS_EVERY
        if now >= self.next_nodes:
            self.keep_nodes()
            self.next_nodes = now + min(5.0, self.config.forget_nodes_after / 4)
        self.fill_windows()
        self.publish_outbox()
        if now >= self.next_prune:
            with transaction(self.pool) as conn:
                from store import inbox, users

                inbox.prune(conn, self.config.inbox_keep)
                users.prune_throttle(conn)
            self.next_prune = now + 600

    # --- the ready window ----------------------------------------------------------------------

    def fill_windows(self) -> int:
        sent = 0
        with transaction(self.pool) as conn:
            pools = dispatch.pools(conn)
        for p in pools:
            paced = min(WINDOW_MAX, int(self.ledger.pace.per_second(p["pool"]) * WINDOW_SECONDS))
            want = max(WINDOW_PER_SLOT * p["slots"], paced) - p["outstanding"]
            if want <= 0:
                continue
            with transaction(self.pool) as conn:
                ready = dispatch.take_ready(conn, p["pool"], want)
            if ready:
                self.publish(p["pool"], ready)
                sent += len(ready)
        return sent

    def work_signer(self) -> Signer:
        """The key every gateway signs work items with; made by the first that needs one."""
        if self.signer is None:
            with transaction(self.pool) as conn:
                seed, _ = credentials.signing_key(conn, credentials.WORK_KEY, *new_pair())
            self.signer = Signer(seed)
        return self.signer

    def publish(self, pool: str, ready: list[dict]) -> None:
        """After the commit that marked them dispatched: a crash here is healed by reconcile().

        Each item is signed, and the key that checks the signatures is announced in the same round
        trip, so a node that has none from its credential can read it before any item arrives."""
        stream = self.keys.work(pool)
        if stream not in self.known_groups:
            ensure_group(self.r, stream, NODES_GROUP)
            self.known_groups.add(stream)
        signer, prefix = self.work_signer(), self.keys.prefix
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.work_key, signer.public_key)
        for t in ready:
            item = WorkItem(
                task_id=t["task_id"],
                job_id=t["job_id"],
                seq=t["seq"],
                first=t["first"],
                last=t["last"],
                renderer=t["renderer"],
                params={k: str(v) for k, v in (t["params"] or {}).items()},
                requires=list(t["requires"] or []),
                max_attempts=t["max_attempts"],
                dispatched_at=now,
                attempt=t["attempt"],
                blocked_nodes=list(t["blocked_nodes"] or []),
                timeout=t["task_timeout"],
            )
            # without a timeout the field is left out: a node older than it still takes the item
            data = pack(item.model_dump(mode="json", exclude={"timeout"} if item.timeout is None else None))
            pipe.xadd(stream, {"m": data, "s": signer.sign_work(prefix, data)}, maxlen=WORK_MAXLEN, approximate=True)
        announced, *ids = pipe.execute(raise_on_error=False)
        sent = [(t["task_id"], entry_id(i)) for t, i in zip(ready, ids, strict=True) if not isinstance(i, Exception)]
        refused = [t["task_id"] for t, i in zip(ready, ids, strict=True) if isinstance(i, Exception)]
        with transaction(self.pool) as conn:
            dispatch.set_work_msgs(conn, sent)
            # refused (a poisoned stream, which gateway/repair.py replaces): back to the backlog at once
            dispatch.undispatch(conn, refused)
        if refused:
            raise next(i for i in ids if isinstance(i, redis.ResponseError))
        if isinstance(announced, Exception):
            raise announced

    # --- nodes ---------------------------------------------------------------------------------

    def keep_nodes(self) -> None:
        """Forget nodes silent for --forget-nodes-after; set the drain key of every drained node
        again (a Redis that restarted empty lost it; the node would take work)."""
        with transaction(self.pool) as conn:
            forgotten = nodes.forget_gone(conn, self.config.forget_nodes_after)
            drained = nodes.drained(conn)
        if forgotten:
            log.info("forgot node(s) silent for %.0f s: %s", self.config.forget_nodes_after, ", ".join(forgotten))
        if drained or forgotten:
            pipe = self.r.pipeline(transaction=False)
            for name in drained:
                pipe.set(self.keys.drain(name), "drained")
            for name in forgotten:
                pipe.delete(self.keys.drain(name))
            pipe.execute()

    # --- reconcile -----------------------------------------------------------------------------

    def reconcile(self) -> None:
        lease = self.config.lease
        # 1. dispatched, not started for a lease: publish again only if its entry is gone
        with transaction(self.pool) as conn:
            stale = dispatch.stale_dispatched(conn, lease)
        if stale:
            # An entry still in its stream waits for a node, unless a node read it and acked it
            # without the gateway applying its start (its reports were refused): that one is lost.
            lost, waiting = [], []
            pools = sorted({t["pool"] for t in stale})
            pipe = self.r.pipeline(transaction=False)
            for pool in pools:
                pipe.xinfo_groups(self.keys.work(pool))
            for t in stale:
                stream, msg = self.keys.work(t["pool"]), t["work_msg"] or "0-0"
                pipe.xrange(stream, msg, msg)
                pipe.xpending_range(stream, NODES_GROUP, msg, msg, 1)
            replies = pipe.execute(raise_on_error=False)
            delivered = {
                pool: _stream_id(g["last-delivered-id"])
                for pool, groups in zip(pools, replies, strict=False)
                if isinstance(groups, list)
                for g in groups
                if _text(g["name"]) == NODES_GROUP
            }
            for i, t in enumerate(stale):
                found, pending = replies[len(pools) + 2 * i : len(pools) + 2 * i + 2]
                acked = not pending and _stream_id(t["work_msg"]) <= delivered.get(t["pool"], (0, 0))
                (waiting if t["work_msg"] and found and not acked else lost).append(t["id"])
            with transaction(self.pool) as conn:
                dispatch.undispatch(conn, lost)
                dispatch.still_waiting(conn, waiting)
            if lost:
                log.info("publishing %d dispatched tasks again: their work entries are gone", len(lost))
                self.wake.set()
        # 2. running, and the node silent for a lease past the lease: the attempt is lost
        with transaction(self.pool) as conn:
            expired = leases.expired_leases(conn, lease)
        for task_id in expired:
            batch = EventsApplied()
            with transaction(self.pool) as conn:
                task = tasks.lock(conn, task_id)
                if task is None or task.status != "running":
                    continue
                old_msg, old_pool, node = task.work_msg, task.pool, task.node
                moved = tasks.fail(conn, task, None, "farm", None, "", cause=f"lease expired: node {node} went silent")
                if moved:
                    self.ledger.settle_job(
                        conn, task.job_id, f"lease of {task.frames} expired on node {node}", "farm", batch
                    )
                    outbox.job_changed(conn, batch.changed_jobs)
            if old_msg:
                # nobody should take the stale entry over now that the task is queued again
                stream = self.keys.work(old_pool)
                pipe = self.r.pipeline(transaction=False)
                pipe.xack(stream, NODES_GROUP, old_msg)
                pipe.xdel(stream, old_msg)
                pipe.execute()
        # 3. jobs waiting on a dependency that can no longer succeed
        with transaction(self.pool) as conn:
            outbox.job_changed(conn, jobs.fail_dependents(conn))

    # --- outbox --------------------------------------------------------------------------------

    def publish_outbox(self) -> None:
        with transaction(self.pool) as conn:
            rows = outbox.take(conn)
            if not rows:
                return
            job_ids = sorted({unpack(bytes(r["payload"]))["job"] for r in rows if r["stream"] == outbox.WATCH_STREAM})
            publish_watch_notices(conn, self.r, self.config, job_ids)
            outbox.done(conn, [r["id"] for r in rows])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(value: bytes | str | None) -> tuple[int, int]:
    """A stream entry id as a pair that compares in stream order."""
    ms, _, seq = _text(value or "0-0").partition("-")
    return int(ms), int(seq or 0)
