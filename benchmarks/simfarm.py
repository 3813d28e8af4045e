"""A big farm, simulated: hundreds of lightweight nodes in a few processes, on the real protocol.

Each simulated node is a consumer in the ``nodes`` group of its pool's work stream: it sends
heartbeats (a NodeHeartbeat, like a real node, and its liveness key), claims one work item at a
time with XREADGROUP, reports ``started`` with a fresh run id, "renders" for ``task_seconds``
(asyncio sleep: no CPU), reports ``succeeded`` and acks. What is measured is the farm: how fast the
gateway turns reports into the next work for a slot that just freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis

from broker_contracts.codec import pack, unpack
from broker_contracts.keys import NODES_GROUP, Keys
from broker_contracts.profiles import BUILTIN_PROFILES
from broker_contracts.work import NodeEvent, NodeHeartbeat

EVENTS_MAXLEN = 100_000
HEARTBEAT = 3.0


def _event(kind: str, node: str, **fields: Any) -> bytes:
    ev = NodeEvent(kind=kind, node=node, ts=time.time(), **fields)  # type: ignore[arg-type]
    return pack(ev.model_dump(mode="json", exclude_none=True))


class SimNode:
    def __init__(self, name: str, pool: str, keys: Keys, redis_url: str, lease: float, task_seconds: float) -> None:
        self.name = name
        self.pool = pool
        self.keys = keys
        self.work = keys.work(pool)
        self.r = aioredis.Redis.from_url(redis_url)
        self.lease = lease
        self.task_seconds = task_seconds
        self.running: list[int] = []
        self.busy = 0.0
        self.tasks = 0

    async def heartbeat(self) -> None:
        info = NodeHeartbeat(
            node=self.name, pool=self.pool, slots=1, tags=[], profiles=["sleep"], running=list(self.running),
            version="sim", host="sim", lease=self.lease,
            specs={"sleep": BUILTIN_PROFILES["sleep"].model_dump(mode="json")},
        ).model_dump(mode="json")
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.node(self.name), pack(info), px=int(HEARTBEAT * 3000))
        pipe.xadd(self.keys.events, {"m": _event("heartbeat", self.name, info=info)}, maxlen=EVENTS_MAXLEN,
                  approximate=True)
        await pipe.execute()

    async def beat_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT)

    async def claim_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            got = await self.r.xreadgroup(NODES_GROUP, self.name, {self.work: ">"}, count=1, block=500)
            for _stream, entries in got or []:
                for eid, fields in entries:
                    await self.run_one(eid, unpack(fields[b"m"]))

    async def run_one(self, eid: bytes, item: dict[str, Any]) -> None:
        run = uuid.uuid4().hex
        common = {"task_id": item["task_id"], "job_id": item["job_id"], "run": run, "work": eid.decode()}
        await self.r.xadd(self.keys.events, {"m": _event("started", self.name, **common)}, maxlen=EVENTS_MAXLEN,
                          approximate=True)
        self.running = [item["task_id"]]
        t0 = time.monotonic()
        await asyncio.sleep(self.task_seconds)
        self.busy += time.monotonic() - t0
        self.tasks += 1
        self.running = []
        frames = item["last"] - item["first"] + 1
        pipe = self.r.pipeline(transaction=False)
        pipe.xadd(self.keys.events, {"m": _event("succeeded", self.name, exit_code=0, done_frames=frames, **common)},
                  maxlen=EVENTS_MAXLEN, approximate=True)
        pipe.xack(self.work, NODES_GROUP, eid)
        await pipe.execute()

    async def bye(self) -> None:
        await self.r.delete(self.keys.node(self.name))
        await self.r.xadd(self.keys.events, {"m": _event("bye", self.name)}, maxlen=EVENTS_MAXLEN, approximate=True)
        await self.r.aclose()


async def _run_nodes(names: list[str], args: dict[str, Any], stop_at: float, stop_file: Any) -> dict[str, Any]:
    keys = Keys(args["prefix"])
    nodes = [SimNode(n, args["pool"], keys, args["redis_url"], args["lease"], args["task_seconds"]) for n in names]
    stop = asyncio.Event()
    jobs = [asyncio.create_task(n.beat_forever(stop)) for n in nodes]
    jobs += [asyncio.create_task(n.claim_forever(stop)) for n in nodes]
    while time.time() < stop_at and not stop_file.is_set():
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*jobs, return_exceptions=True)
    for n in nodes:
        await n.bye()
    return {"busy": sum(n.busy for n in nodes), "tasks": sum(n.tasks for n in nodes)}


def _process(names: list[str], args: dict[str, Any], stop_at: float, stop_event: Any, out: Any) -> None:
    result = asyncio.run(_run_nodes(names, args, stop_at, stop_event))
    out.put(result)


class SimFarm:
    """Start ``count`` simulated nodes in ``processes`` processes; ``finish()`` stops them and sums up."""

    def __init__(self, redis_url: str, prefix: str, pool: str, count: int, processes: int, *, lease: float,
                 task_seconds: float, limit: float) -> None:
        r = redis.Redis.from_url(redis_url)
        try:
            r.xgroup_create(Keys(prefix).work(pool), NODES_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        finally:
            r.close()
        ctx = multiprocessing.get_context("spawn")
        self.out = ctx.Queue()
        self.stop_event = ctx.Event()
        args = {"redis_url": redis_url, "prefix": prefix, "pool": pool, "lease": lease, "task_seconds": task_seconds}
        names = [f"sim-{i:04d}" for i in range(count)]
        groups = [names[i::processes] for i in range(processes)]
        self.procs = [
            ctx.Process(target=_process, args=(g, args, time.time() + limit, self.stop_event, self.out))
            for g in groups
            if g
        ]
        for p in self.procs:
            p.start()

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        results = [self.out.get(timeout=120) for _ in self.procs]
        for p in self.procs:
            p.join(timeout=30)
        return {"busy_seconds": sum(r["busy"] for r in results), "tasks": sum(r["tasks"] for r in results)}
