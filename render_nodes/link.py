"""The node's connection to Redis: retries with bounded backoff, one log line per state change.

Every Redis call of the node goes through ``Link.call``. A lost connection is retried (0.2 s
doubling to 5 s) until it works or the link is abandoned at the very end of a shutdown; a missing
consumer group (Redis restarted empty) is recreated and the call repeated.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis

import broker_client
from broker_contracts.codec import pack
from broker_contracts.config import redact_url as redact
from broker_contracts.keys import NODES_GROUP, Keys
from broker_contracts.signing import Signer
from broker_contracts.streamids import refused_for_its_ids
from broker_contracts.work import NodeEvent

T = TypeVar("T")
log = logging.getLogger("render_nodes")

BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
REFUSED_RETRY = 0.5  # a stream refusing new entries is replaced by the gateway within seconds
EVENTS_MAXLEN = 100_000
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


class LinkDown(Exception):
    """Redis cannot be reached and the caller asked not to wait (or the link was abandoned)."""


def is_nogroup(exc: redis.ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


class Link:
    def __init__(self, url: str, keys: Keys, pool: str, signer: Signer | None = None) -> None:
        self.url = url
        self.keys = keys
        self.signer = signer  # the node's credential: every report is signed with it
        self.work = keys.work(pool)
        self.client = broker_client.connect(url, socket_timeout=10, socket_connect_timeout=3, health_check_interval=0)
        self.abandoned = threading.Event()
        self._down = False
        self._state_lock = threading.Lock()

    # -- state --------------------------------------------------------------------------------

    def _mark_down(self, exc: Exception) -> None:
        with self._state_lock:
            if self._down:
                return
            self._down = True
        log.warning("redis unreachable at %s (%s); retrying", redact(self.url), type(exc).__name__)

    def _mark_up(self) -> None:
        with self._state_lock:
            if not self._down:
                return
            self._down = False
        log.info("redis reachable again")

    # -- calls ----------------------------------------------------------------------------------

    def call(self, fn: Callable[[redis.Redis], T], *, wait: bool = True) -> T:
        """Run ``fn(client)``; on a lost connection, or a stream refusing new entries for its ids (the
        gateway replaces it), retry (``wait``) or raise LinkDown."""
        delay = BACKOFF_START
        refused = False
        while True:
            try:
                result = fn(self.client)
            except TRANSIENT as exc:
                self._mark_down(exc)
                if not wait or self.abandoned.is_set():
                    raise LinkDown(str(exc)) from None
                if self.abandoned.wait(delay):
                    raise LinkDown(str(exc)) from None
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            except redis.ResponseError as exc:
                if refused_for_its_ids(str(exc)):
                    if not refused:
                        log.warning(
                            "redis refused a new entry (%s); sending it again once the gateway has repaired the stream",
                            exc,
                        )
                    refused = True
                    if not wait or self.abandoned.wait(REFUSED_RETRY):
                        raise LinkDown(str(exc)) from None
                    continue
                if not is_nogroup(exc):
                    raise
                log.warning(
                    "consumer group %s on %s is missing (redis restarted?); recreating",
                    NODES_GROUP,
                    self.work,
                )
                self.ensure_group()
                continue
            self._mark_up()
            return result

    def ensure_group(self) -> None:
        """Create the ``nodes`` group (and the stream); an existing group is fine. Safe to repeat."""

        def create(client: redis.Redis) -> None:
            try:
                client.xgroup_create(self.work, NODES_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

        self.call(create)

    def fields(self, event: NodeEvent) -> dict[str, bytes]:
        """The stream entry of a report: its packed bytes and, with a credential, their signature."""
        data = pack(event.model_dump(mode="json", exclude_none=True))
        if self.signer is None:
            return {"m": data}
        return {"m": data, "s": self.signer.sign_event(self.keys.prefix, data)}

    def publish(self, event: NodeEvent, *, wait: bool = True) -> None:
        entry = self.fields(event)
        self.call(
            lambda c: c.xadd(self.keys.events, entry, maxlen=EVENTS_MAXLEN, approximate=True),  # type: ignore[arg-type]
            wait=wait,
        )

    def publish_many(self, events: list[NodeEvent]) -> None:
        """Several reports in one round trip (a pipeline, in order). Repeated after a lost
        connection, some may be published twice: the ledger ignores a report it has applied."""
        packed = [self.fields(e) for e in events]

        def send(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=False)
            for entry in packed:
                pipe.xadd(self.keys.events, entry, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.execute()

        self.call(send)

    def publish_and_ack(self, reports: list[tuple[NodeEvent, str]]) -> None:
        """The last report of each task and the ack of its work entry, all in one round trip.

        MULTI/EXEC: both or neither, for every task of the batch. A retry after a lost connection
        may repeat a report, which the ledger ignores (the run has already moved); an entry is
        never acked without its report.
        """
        packed = [(self.fields(event), message_id) for event, message_id in reports]

        def both(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=True)
            for entry, message_id in packed:
                pipe.xadd(self.keys.events, entry, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
                pipe.xack(self.work, NODES_GROUP, message_id)
            pipe.execute()

        self.call(both)

    def ack(self, message_id: str) -> None:
        self.call(lambda c: c.xack(self.work, NODES_GROUP, message_id))

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.close()


@dataclass
class _Final:
    report: NodeEvent
    message_id: str
    sent: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Finals:
    """Sends the last report of each task with the ack of its work entry, batching the slots that
    finish about the same time into one MULTI/EXEC (Link.publish_and_ack).

    A slot waits until its own report is out, as when it sent it itself; what changes is that the
    reports of several slots share one round trip: with tasks of milliseconds, one MULTI/EXEC per
    task would be much of a node's work.
    """

    def __init__(self, link: Link) -> None:
        self.link = link
        self._queue: queue.SimpleQueue[_Final | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="finals", daemon=True)
        self._thread.start()

    def send(self, report: NodeEvent, message_id: str) -> None:
        """Publish and ack; raises what Link.call raised (LinkDown, a redis error)."""
        final = _Final(report, message_id)
        self._queue.put(final)
        final.sent.wait()
        if final.error is not None:
            raise final.error

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while True:  # whatever else is waiting goes in the same round trip
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            try:
                self.link.publish_and_ack([(f.report, f.message_id) for f in batch])
            except BaseException as exc:  # handed to every waiting slot, which logs it
                for f in batch:
                    f.error = exc
            finally:
                for f in batch:
                    f.sent.set()


def event(kind: str, node: str, **fields: object) -> NodeEvent:
    return NodeEvent(kind=kind, node=node, ts=time.time(), **fields)  # type: ignore[arg-type]
