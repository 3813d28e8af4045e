"""The node: one claim loop on the main thread, a heartbeat thread, one worker thread per slot,
and a thread that sends the last report of each task with its ack (link.Finals).

The claim loop starts a claimed batch itself: the cancel/hold flags of its jobs in one round
trip, the "started" reports of the runs that start in one more; the slots then render.

The workers live as long as the node: a task that takes a millisecond (the ``noop`` renderer) costs
no thread start, which under a busy GIL waited for the new thread to be scheduled.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import redis

from broker_contracts.codec import pack, unpack
from broker_contracts.errors import DecodeError, ErrorCode
from broker_contracts.keys import NODES_GROUP, Keys
from broker_contracts.profiles import ProfileSpec
from broker_contracts.signing import work_is_signed_by
from broker_contracts.work import NodeHeartbeat, WorkItem
from render_nodes.link import Finals, Link, LinkDown, event
from render_nodes.task import NodeContext, TaskRun, job_flags

log = logging.getLogger("render_nodes")

BLOCK_MS = 1000
DEAD_MAXLEN = 10_000
FINAL_WAIT = 5.0
TAKEOVER_SCAN = 0.5  # seconds between scans for work entries abandoned by other nodes (at most)
KEY_REREAD = 5.0  # seconds between reads of the gateways' announced key after an item failed it


def node_version() -> str:
    try:
        return metadata.version("rfarm")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class NodeOptions:
    name: str
    pool: str
    slots: int
    tags: frozenset[str]
    profiles: dict[str, ProfileSpec]
    output_root: Path
    lease: float
    grace: float
    heartbeat: float
    drain: bool = False
    gpus: tuple[str, ...] = ()  # --gpus: slot i renders with only GPU gpus[i] visible


@dataclass
class _Running:
    task: TaskRun
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Node:
    options: NodeOptions
    link: Link
    keys: Keys
    stopping: threading.Event = field(default_factory=threading.Event)
    immediate: threading.Event = field(default_factory=threading.Event)
    drained: threading.Event = field(default_factory=threading.Event)  # `rfarm drain`: claim nothing new
    # the gateways' work key from the node's credential; without one, the key they announce in Redis
    gateway_key: bytes | None = None

    def __post_init__(self) -> None:
        o = self.options
        self.finals = Finals(self.link)
        self.ctx = NodeContext(self.link, self.keys, o.name, o.tags, o.profiles, o.output_root, o.lease, self.finals)
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._slot_freed = threading.Event()
        self._hb_stop = threading.Event()
        self._cursor = "0-0"
        self._next_takeover = 0.0  # monotonic time of the next scan for abandoned entries
        self._beat: threading.Thread | None = None
        self._queue: queue.SimpleQueue[_Running | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._pinned = self.gateway_key is not None
        self._next_key_read = 0.0
        self._drain_refused = False

    # -- signals ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: stop claiming, let running tasks finish within the grace. Second: at once."""
        if self.stopping.is_set():
            if not self.immediate.is_set():
                log.warning("stopping now: running renders are killed and released")
            self.immediate.set()
        else:
            log.info(
                "stopping: no new work; %d running task(s) get %.0f s to finish",
                len(self._running),
                self.options.grace,
            )
            self.stopping.set()
        self._slot_freed.set()

    # -- main loop --------------------------------------------------------------------------------

    def run(self) -> int:
        o = self.options
        self.link.ensure_group()
        with contextlib.suppress(LinkDown):
            self._heartbeat()
        self._beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._beat.start()
        for i in range(o.slots):  # never more tasks than slots are registered, so none waits for a worker
            worker = threading.Thread(target=self._work, args=(i,), name=f"slot-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        log.info(
            "node %s up: pool %s, %d slot(s), profiles %s, lease %.1f s",
            o.name,
            o.pool,
            o.slots,
            ", ".join(sorted(o.profiles)),
            o.lease,
        )
        while not self.stopping.is_set():
            free = o.slots - self._count()
            if free <= 0 or self.drained.is_set():
                self._slot_freed.wait(0.5)
                self._slot_freed.clear()
                continue
            try:
                messages = self._claim(free)
                if not messages and o.drain and self._count() == 0:
                    log.info("drained: no work left in pool %s", o.pool)
                    break
                self._start(messages)
            except LinkDown:
                continue  # claimed entries not handed to a slot stay pending: taken over after the lease
            except redis.RedisError as exc:
                log.error("claiming failed: %s; retrying", exc)
                self.stopping.wait(1.0)
                continue
        self._shutdown()
        return 0

    def _claim(self, free: int) -> list[tuple[str, dict[bytes, bytes]]]:
        o, work = self.options, self.link.work
        messages: list[tuple[str, dict[bytes, bytes]]] = []
        claimed: list[tuple[bytes | str, dict[bytes, bytes] | None]] = []
        # An entry is only taken over after a whole lease idle, so scanning for one on every claim
        # (a round trip per claim when tasks take milliseconds) gains nothing: a few times a lease
        # is enough, and a scan that has not reached the end goes on at the next claim.
        now = time.monotonic()
        if now >= self._next_takeover or self._cursor != "0-0":
            cursor, claimed, *_ = self.link.call(
                lambda c: c.xautoclaim(work, NODES_GROUP, o.name, int(o.lease * 1000), self._cursor, count=free)
            )
            self._cursor = _text(cursor)
            self._next_takeover = now + min(TAKEOVER_SCAN, o.lease / 4)
        for message_id, fields in claimed:
            if fields is not None:  # Redis 6 lists entries deleted meanwhile with no fields
                log.info("taking over work entry %s (its node stopped keeping its lease)", _text(message_id))
                messages.append((_text(message_id), fields))
        want = free - len(messages)
        if want > 0:
            block = None if messages else BLOCK_MS
            reply = self.link.call(lambda c: c.xreadgroup(NODES_GROUP, o.name, {work: ">"}, count=want, block=block))
            for _stream, entries in reply or []:
                messages.extend((_text(mid), flds) for mid, flds in entries)
        return messages

    def _start(self, messages: list[tuple[str, dict[bytes, bytes]]]) -> None:
        """Hand a claimed batch to the slots. The cancel/hold flags of its jobs are read in one round
        trip and the "started" reports of the runs that start go out in one more, rather than two
        round trips per task on the slots (much of a node's work when tasks take milliseconds)."""
        runs = [run for message_id, fields in messages if (run := self._task(message_id, fields)) is not None]
        if not runs:
            return
        flags = job_flags(self.ctx, sorted({run.item.job_id for run in runs}))
        starting = []
        for run in runs:
            run.flags = flags[run.item.job_id]
            if run.refusal() is None:  # a refused run is handed back (or dropped) by its slot
                starting.append(run.start_event())
        if starting:
            self.link.publish_many(starting)
        for run in runs:
            running = _Running(run)
            with self._lock:
                self._running[run.message_id] = running
            self._queue.put(running)

    def _task(self, message_id: str, fields: dict[bytes, bytes]) -> TaskRun | None:
        """The work item of a claimed entry; None for one that is not a work item (dead-lettered
        and acked) or that is already running here."""
        try:
            data = fields.get(b"m", b"")
            if not self._signed_by_gateway(data, fields.get(b"s")):
                raise DecodeError(ErrorCode.REQUEST_INVALID, "not signed by a gateway of this farm")
            item = WorkItem.model_validate(unpack(data))
        except (DecodeError, ValueError) as exc:
            reason = exc.message if isinstance(exc, DecodeError) else "not a valid work item"
            log.error("work entry %s is not a work item (%s); moved to %s", message_id, reason, self.keys.dead)
            record = pack({"source": self.link.work, "id": message_id, "reason": reason, "node": self.options.name})
            self.link.call(lambda c: c.xadd(self.keys.dead, {"m": record}, maxlen=DEAD_MAXLEN, approximate=True))
            self.link.ack(message_id)
            return None
        with self._lock:
            if message_id in self._running:  # our own entry, reclaimed while Redis was away: keep going
                return None
        return TaskRun(self.ctx, message_id, item)

    def _signed_by_gateway(self, data: bytes, signature: bytes | None) -> bool:
        """Whether a work entry was published by a gateway. Without a pinned key the one the
        gateways announce is read once, and again (at most every KEY_REREAD s) when an item fails it."""
        prefix = self.keys.prefix
        if self.gateway_key is not None and work_is_signed_by(self.gateway_key, prefix, data, signature):
            return True
        if self._pinned or time.monotonic() < self._next_key_read:
            return False
        self._next_key_read = time.monotonic() + KEY_REREAD
        announced = self.link.call(lambda c: c.get(self.keys.work_key))
        if not isinstance(announced, bytes) or announced == self.gateway_key:
            return False
        self.gateway_key = announced
        return work_is_signed_by(announced, prefix, data, signature)

    def _work(self, slot: int) -> None:
        # one thread per slot, one task at a time on it: with --gpus, the slot's GPU is its own
        gpu = self.options.gpus[slot] if slot < len(self.options.gpus) else None
        while (running := self._queue.get()) is not None:
            try:
                running.task.gpu = gpu
                running.task.run()
            finally:
                with self._lock:
                    self._running.pop(running.task.message_id, None)
                running.done.set()
                self._slot_freed.set()

    def _count(self) -> int:
        with self._lock:
            return len(self._running)

    # -- heartbeat --------------------------------------------------------------------------------

    def _info(self) -> NodeHeartbeat:
        o = self.options
        with self._lock:
            running = sorted(r.task.item.task_id for r in self._running.values())
        return NodeHeartbeat(
            node=o.name,
            pool=o.pool,
            slots=o.slots,
            tags=sorted(o.tags),
            profiles=sorted(o.profiles),
            running=running,
            version=node_version(),
            host=socket.gethostname(),
            lease=o.lease,
            specs={name: spec.model_dump(mode="json") for name, spec in o.profiles.items()},
        )

    def _heartbeat(self) -> None:
        info = self._info()
        data = pack(info.model_dump(mode="json"))
        ttl_ms = max(1000, int(self.options.heartbeat * 3 * 1000))
        self.link.call(lambda c: c.set(self.keys.node(self.options.name), data, px=ttl_ms), wait=False)
        self.link.publish(event("heartbeat", self.options.name, info=info.model_dump(mode="json")), wait=False)
        try:
            drained = bool(self.link.call(lambda c: c.exists(self.keys.drain(self.options.name)), wait=False))
        except redis.ResponseError as exc:  # a Redis user made before drains existed: re-run redis-acl --apply
            if not self._drain_refused:
                log.warning("cannot read the drain key (%s): `rfarm drain` will not reach this node", exc)
                self._drain_refused = True
            return
        if drained != self.drained.is_set():
            log.info("drained by an admin: no new work" if drained else "undrained: taking work again")
            (self.drained.set if drained else self.drained.clear)()

    def _heartbeat_loop(self) -> None:
        while not self._hb_stop.wait(self.options.heartbeat):
            try:
                self._heartbeat()
            except LinkDown:
                pass
            except redis.RedisError as exc:
                log.error("heartbeat refused by redis: %s", exc)

    # -- shutdown ---------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.options.grace
        while self._count() and time.monotonic() < deadline and not self.immediate.is_set():
            self._slot_freed.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            self._slot_freed.clear()
        with self._lock:
            left = list(self._running.values())
        for running in left:
            running.task.abort(now=self.immediate.is_set())
        end = time.monotonic() + FINAL_WAIT
        for running in left:
            running.done.wait(max(0.0, end - time.monotonic()))
        for _ in self._workers:
            self._queue.put(None)
        self.finals.stop()  # after the reports of every task that ended (each sent before its `done`)
        self._hb_stop.set()
        if self._beat is not None:
            self._beat.join(FINAL_WAIT)
        self.link.abandoned.set()  # from here on nothing waits for an unreachable Redis
        try:
            self.link.call(lambda c: c.delete(self.keys.node(self.options.name)), wait=False)
            self.link.publish(event("bye", self.options.name), wait=False)
        except (LinkDown, redis.RedisError) as exc:
            log.warning("could not say goodbye (%s)", type(exc).__name__)
        log.info("node %s stopped", self.options.name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
