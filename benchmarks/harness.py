"""The benchmark's own farm: a database it creates and drops, a key prefix it deletes, real processes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql
from psycopg.rows import dict_row

from broker_contracts.keys import Keys
from store import quotas
from store.migrate import migrate

UNLIMITED = 1_000_000_000  # the default quotas of a benchmark's farm


@dataclass
class BenchFarm:
    """Processes of one benchmark run. Use as a context manager: everything is cleaned up on exit."""

    redis_url: str
    admin_url: str
    root: Path
    lease: float = 10.0
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def dbname(self) -> str:
        return f"rfarm_bench_{self.run}"

    @property
    def prefix(self) -> str:
        return f"rfb{self.run}"

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    @property
    def database_url(self) -> str:
        return psycopg.conninfo.make_conninfo(self.admin_url, dbname=self.dbname)

    def __enter__(self) -> BenchFarm:
        self.root.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        migrate(self.database_url)
        with self.db() as conn:
            # the shipped quotas hold for the `quota` phase's flooding user only (benchmarks/quota.py):
            # the other phases measure the farm, not a quota, and submit far more than 60 a minute
            shipped = quotas.listed(conn)[0]
            self.shipped_quotas: dict[str, int] = {f: getattr(shipped, f) for f in quotas.FIELDS}
            quotas.set_default(conn, dict.fromkeys(quotas.FIELDS, UNLIMITED))
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()
        r = self.redis()
        try:
            keys = list(r.scan_iter(match=f"{self.prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                r.delete(*keys[start : start + 500])
        finally:
            r.close()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.dbname)))

    # --- connections ---------------------------------------------------------------------------

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def db(self, *, autocommit: bool = True) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.database_url, autocommit=autocommit, row_factory=dict_row)

    # --- processes -----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RFARM_")}
        env.update(
            RFARM_REDIS_URL=self.redis_url,
            RFARM_DATABASE_URL=self.database_url,
            RFARM_PREFIX=self.prefix,
            RFARM_LOG_LEVEL="WARNING",
        )
        return env

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        self.procs[name] = proc
        return proc

    def start_gateway(self, name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "gateway", "--name", name, "--lease", str(self.lease), "--claim-idle", "5",
                "--log-level", "WARNING", *os.environ.get("RFARM_BENCH_GATEWAY_ARGS", "").split()]
        return self.spawn(name, argv)

    def start_node(self, name: str, pool: str, slots: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "render_nodes", "--name", name, "--pool", pool, "--slots", str(slots),
                "--lease", str(self.lease), "--heartbeat", "1", "--grace", "5",
                "--output-root", str(self.root / "renders")]
        return self.spawn(name, argv)

    def stop(self, name: str, timeout: float = 20.0) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def alive_nodes(self, pool: str) -> int:
        with self.db() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM nodes WHERE pool = %s AND state <> 'gone' AND last_seen > now() - "
                "interval '5 seconds'",
                (pool,),
            ).fetchone()
        return int(row["n"]) if row else 0

    def wait_nodes(self, pool: str, count: int, timeout: float = 60.0) -> None:
        wait_for(lambda: self.alive_nodes(pool) >= count, timeout, f"{count} node(s) in pool {pool}")

    def check_alive(self) -> None:
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"benchmark process(es) exited early: {', '.join(dead)} (logs in {self.root})")


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float | None:
    """VmHWM (the peak resident set size) of a live process in MiB; ``field="VmRSS"`` for the current one."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
