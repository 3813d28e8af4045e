"""The stream watchdog: puts right, within seconds, a stream whose entry ids were poisoned.

Whoever may XADD to a stream may choose the new entry's id, and no ACL can forbid it. One entry
with the largest id there is (``18446744073709551615-18446744073709551615``) makes every later
``XADD … *`` fail; one far in the future makes every later id a time in that future. Ids cannot be
moved back (XSETID refuses), so the stream is replaced: once a second the watchdog compares the
last id of each stream the farm writes with the Redis clock, and a stream more than ``HORIZON_MS``
ahead is, in one MULTI/EXEC (under WATCH, so no entry added meanwhile is missed):

- renamed to ``<prefix>:poisoned:<name>`` (kept a week for operators, one copy per stream);
- recreated with its consumer group, and the entries that were not yet handled (unread, or read
  and not acked) added again with new ids: requests keep their request ids, so one answered twice
  gets its first answer again, and the ledger ignores a report it has already applied;
- the entries that made the jump dead-lettered instead (their ids are the attack, not their
  content: anything the role may add with ``*`` is judged by its consumer as usual).

The work streams are the exception: their undelivered items are not copied but go back to the
backlog in PostgreSQL, and the dispatcher publishes them again (entries nodes had claimed are
republished after a lease by the dispatcher's reconcile, as after a Redis restart).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis
from psycopg_pool import ConnectionPool

from broker_contracts.codec import unpack
from broker_contracts.errors import DecodeError
from broker_contracts.keys import GATEWAY_GROUP, LEDGER_GROUP, NODES_GROUP, Keys
from broker_contracts.streamids import MAX_PART, StreamId
from gateway.context import GatewayConfig
from gateway.streams import Backoff, dead_letter, entry_id
from store import dispatch
from store.db import StoreUnavailable, reading, transaction

log = logging.getLogger("rfarm.gateway")

HORIZON_MS = 60_000  # ids further ahead of the Redis clock than this were not made by `XADD … *`
CHECK_EVERY = 1.0
POOLS_EVERY = 5.0
KEEP_POISONED = 7 * 24 * 3600
SUSPECTS = 1000  # entries beyond the horizon looked at for the jump
PAGE = 1000
WATCH_TRIES = 5

Entry = tuple[str, dict[bytes, bytes]]


@dataclass(frozen=True)
class Target:
    """A stream the watchdog looks after: its consumer group, and whether its unhandled entries
    are added again (work items are published again from PostgreSQL instead)."""

    stream: str
    group: str | None
    copy: bool = True


@dataclass
class Repaired:
    stream: str
    last: StreamId
    ahead_ms: int
    removed: list[str] = field(default_factory=list)
    added_again: int = 0
    undelivered_tasks: list[int] = field(default_factory=list)


def forged(ids: Iterable[StreamId], horizon_ms: int, max_deleted: StreamId) -> list[StreamId]:
    """The ids beyond the horizon that ``XADD … *`` cannot have made.

    After a jump to millisecond M, ``*`` makes M-(s+1), M-(s+2)…: the same millisecond. So an id
    beyond the horizon that opens a new millisecond (no smaller id of it left in the stream) was
    chosen by its writer, unless an entry of that millisecond was deleted (answered requests are):
    then the jump may have been that one, and the rest are taken as ``*``'s. A mistake either way
    is bounded: a forged entry taken as genuine is handled like any the role may add, a genuine
    one taken as forged is resent by its shell.
    """
    out: list[StreamId] = []
    previous_ms: int | None = None
    for sid in sorted(ids):
        if sid.ms > horizon_ms and sid.ms != previous_ms and max_deleted.ms != sid.ms:
            out.append(sid)
        previous_ms = sid.ms
    return out


def repair(r: redis.Redis, keys: Keys, target: Target, now_ms: int) -> Repaired | None:
    """Replace ``target``'s stream if its last id is beyond the horizon; None if it is fine."""
    stream = target.stream
    horizon = now_ms + HORIZON_MS
    for _ in range(WATCH_TRIES):
        with r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(stream)
                try:
                    info = pipe.xinfo_stream(stream)
                except redis.ResponseError:  # no such stream: nothing to repair
                    return None
                last = StreamId.parse(info["last-generated-id"])
                if last.ms <= horizon:
                    return None
                # work a node has claimed stays with it: only what no node has read is published again
                pending = unhandled(r, stream, target.group, claimed=target.copy) if target.group else []
                suspects = [(entry_id(i), f) for i, f in r.xrange(stream, min=f"{horizon + 1}-0", count=SUSPECTS)]
                deleted = StreamId.parse(info.get("max-deleted-entry-id") or "0-0")
                jumps = {str(s) for s in forged((StreamId.parse(i) for i, _ in suspects), horizon, deleted)}
                done = Repaired(stream, last, last.ms - now_ms, sorted(jumps, key=StreamId.parse))
                pipe.multi()
                quarantine = keys.poisoned(stream)
                pipe.rename(stream, quarantine)
                pipe.expire(quarantine, KEEP_POISONED)
                if target.group:
                    pipe.xgroup_create(stream, target.group, id="0", mkstream=True)
                for eid, fields in pending:
                    if eid in jumps:
                        continue
                    if target.copy:
                        pipe.xadd(stream, fields)
                        done.added_again += 1
                    elif (task_id := _task_id(fields)) is not None:
                        done.undelivered_tasks.append(task_id)
                reason = f"its id was {done.ahead_ms / 1000:.3g} s ahead of the Redis clock: not added again"
                for eid, fields in suspects:
                    if eid in jumps:
                        dead_letter(pipe, keys, stream, eid, reason, fields.get(b"m"))
                answers = pipe.execute(raise_on_error=False)
            except redis.WatchError:  # an entry came in meanwhile: look again
                continue
        failed = [a for a in answers if isinstance(a, redis.ResponseError)]
        if failed:
            log.error("repairing stream %s: %d command(s) refused, the first: %s", stream, len(failed), failed[0])
        return done
    return None


def unhandled(r: redis.Redis, stream: str, group: str, *, claimed: bool = True) -> list[Entry]:
    """The entries ``group`` has not finished with, in id order: not read yet, and (``claimed``)
    read and not acked."""
    groups = [g for g in r.xinfo_groups(stream) if entry_id(g["name"]) == group]
    last_delivered = entry_id(groups[0]["last-delivered-id"]) if groups else "0-0"
    ids: list[str] = []
    if claimed and groups and int(groups[0]["pending"]):
        waiting = r.xpending_range(stream, group, min="-", max="+", count=int(groups[0]["pending"]))
        ids = [entry_id(p["message_id"]) for p in waiting]
    out: list[Entry] = []
    for start in range(0, len(ids), PAGE):
        pipe = r.pipeline(transaction=False)
        for eid in ids[start : start + PAGE]:
            pipe.xrange(stream, eid, eid)
        for found in pipe.execute():
            out += [(entry_id(i), f) for i, f in found]  # an entry deleted meanwhile is gone
    after = _next(StreamId.parse(last_delivered))
    while after is not None:
        page = r.xrange(stream, min=str(after), count=PAGE)
        out += [(entry_id(i), f) for i, f in page]
        after = _next(StreamId.parse(page[-1][0])) if len(page) == PAGE else None
    return sorted({eid: f for eid, f in out}.items(), key=lambda e: StreamId.parse(e[0]))


def _next(sid: StreamId) -> StreamId | None:
    """The id after ``sid`` (none after the largest: XRANGE's "(" refuses that one)."""
    if sid.seq < MAX_PART:
        return StreamId(sid.ms, sid.seq + 1)
    return StreamId(sid.ms + 1, 0) if sid.ms < MAX_PART else None


def _task_id(fields: dict[bytes, bytes]) -> int | None:
    try:
        item = unpack(fields.get(b"m", b""))
    except DecodeError:
        return None
    task_id = item.get("task_id") if isinstance(item, dict) else None
    return task_id if isinstance(task_id, int) and not isinstance(task_id, bool) else None


class Watchdog:
    """Looks at the farm's streams once a second and repairs a poisoned one (see the module)."""

    def __init__(self, r: redis.Redis, pool: ConnectionPool, config: GatewayConfig, stop: threading.Event) -> None:
        self.r = r
        self.pool = pool
        self.keys = config.keys
        self.stop = stop
        self.backoff = Backoff("redis (stream watchdog)")
        self.pools: set[str] = set()
        self.next_pools = 0.0
        self.own_clock = False

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.check()
                self.backoff.ok()
                self.stop.wait(CHECK_EVERY)
            except redis.ResponseError as exc:  # refused (not a lost connection): say what
                log.error("the stream watchdog's look was refused: %s", exc)
                self.stop.wait(self.backoff.failed(exc))
            except redis.RedisError as exc:
                self.stop.wait(self.backoff.failed(exc))
            except Exception:
                log.exception("the stream watchdog's look failed")
                self.stop.wait(5 * CHECK_EVERY)

    def targets(self) -> list[Target]:
        k = self.keys
        fixed = [Target(k.dead, None), Target(k.requests, GATEWAY_GROUP), Target(k.events, LEDGER_GROUP)]
        return fixed + [Target(k.work(p), NODES_GROUP, copy=False) for p in sorted(self.pools)]

    def check(self) -> list[Repaired]:
        self.refresh_pools()
        repaired = []
        for target in self.targets():  # dead letters first: the others' repairs write there
            done = repair(self.r, self.keys, target, self.now_ms())
            if done is not None:
                self.report(done)
                repaired.append(done)
        return repaired

    def now_ms(self) -> int:
        """The Redis clock (ids are made from it); this host's if the Redis user may not ask."""
        if not self.own_clock:
            try:
                seconds, micros = self.r.time()
                return int(seconds) * 1000 + int(micros) // 1000
            except redis.exceptions.NoPermissionError:
                self.own_clock = True
                log.warning(
                    "the gateway's Redis user may not run TIME (rerun `rfarmctl redis-acl --apply`): "
                    "stream ids are compared with this host's clock"
                )
        return int(time.time() * 1000)

    def refresh_pools(self) -> None:
        if time.monotonic() < self.next_pools:
            return
        try:
            with reading(self.pool) as conn:
                self.pools |= {p["pool"] for p in dispatch.pools(conn)}
        except StoreUnavailable:
            pass  # the pools known so far are looked after meanwhile
        self.next_pools = time.monotonic() + POOLS_EVERY

    def report(self, done: Repaired) -> None:
        removed = (
            f"removed {', '.join(done.removed)} (dead-lettered)" if done.removed else "no forged entry was left in it"
        )
        extra = ""
        if done.undelivered_tasks:
            extra = f"; {len(done.undelivered_tasks)} undelivered work item(s) to be published again"
            try:
                with transaction(self.pool) as conn:
                    dispatch.undispatch(conn, done.undelivered_tasks)
            except StoreUnavailable:
                extra += " after a lease (PostgreSQL is unavailable)"
        log.warning(
            "stream %s was poisoned: its last id %s was %.3g s ahead of the Redis clock. Replaced it: %s; "
            "%d unhandled entries added again with new ids%s; the old stream is kept as %s for %d days",
            done.stream,
            done.last,
            done.ahead_ms / 1000,
            removed,
            done.added_again,
            extra,
            self.keys.poisoned(done.stream),
            KEEP_POISONED // 86400,
        )
