"""Render nodes run as real processes against Redis, with the test acting as the gateway."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import broker_client
from broker_contracts.codec import pack, unpack
from broker_contracts.keys import NODES_GROUP, Keys
from broker_contracts.signing import Signer, new_pair
from broker_contracts.work import NodeEvent, WorkItem


class NodeRig:
    """Just enough of a gateway: put work in, read reports out, start nodes."""

    def __init__(self, redis_url: str, prefix: str, root: Path) -> None:
        self.url = redis_url
        self.keys = Keys(prefix)
        self.r = broker_client.connect(redis_url)
        self.root = root
        self.nodes: list[subprocess.Popen[bytes]] = []
        self._next_task = 1
        self.signer = Signer(new_pair()[0])  # the work key a gateway would sign with

    def submit(self, renderer: str, first: int = 1, last: int = 1, job: int = 1, **extra: object) -> WorkItem:
        fields: dict[str, object] = {
            "task_id": self._next_task,
            "job_id": job,
            "seq": self._next_task,
            "first": first,
            "last": last,
            "renderer": renderer,
            "dispatched_at": time.time(),
            **extra,
        }
        item = WorkItem.model_validate(fields)
        self._next_task += 1
        data = pack(item.model_dump(mode="json"))
        self.r.set(self.keys.work_key, self.signer.public_key)  # announced with each publish, as gateways do
        self.r.xadd(self.keys.work("default"), {"m": data, "s": self.signer.sign_work(self.keys.prefix, data)})
        return item

    def events(self, task_id: int | None = None) -> list[NodeEvent]:
        out = []
        for _mid, fields in self.r.xrange(self.keys.events):
            ev = NodeEvent.model_validate(unpack(fields[b"m"]))
            if task_id is None or ev.task_id == task_id:
                out.append(ev)
        return out

    def wait_for(self, test: Callable[[list[NodeEvent]], bool], timeout: float = 15.0) -> list[NodeEvent]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if test(events):
                return events
            if time.monotonic() > deadline:
                kinds = [(e.kind, e.task_id, e.node) for e in events if e.kind != "heartbeat"]
                raise AssertionError(f"timed out; events so far: {kinds}")
            time.sleep(0.05)

    def node(self, *args: str, name: str = "n1", lease: float = 2.0) -> subprocess.Popen[bytes]:
        env = {**os.environ, "RFARM_REDIS_URL": self.url, "RFARM_PREFIX": self.keys.prefix}
        argv = [sys.executable, "-m", "render_nodes", "--name", name, "--lease", str(lease), *args]
        argv += ["--output-root", str(self.root / "renders")]
        proc = subprocess.Popen(argv, env=env, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.nodes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.nodes:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)  # reaps it and closes its pipes
        self.r.close()

    def pending(self) -> int:
        return int(self.r.xpending(self.keys.work("default"), NODES_GROUP)["pending"])


def of(events: list[NodeEvent], kind: str, task_id: int | None = None) -> list[NodeEvent]:
    return [e for e in events if e.kind == kind and (task_id is None or e.task_id == task_id)]


def finish(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()
