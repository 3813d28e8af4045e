"""`rfarmctl up`: a whole farm on this machine, supervised until Ctrl-C or SIGTERM.

Redis and PostgreSQL come from the environment (RFARM_REDIS_URL, RFARM_DATABASE_URL) or are started
embedded under the data folder. Then the schema is migrated, one gateway and N render nodes run as
children whose output is streamed with their name in front, a child that dies is started again
(waiting 1, 2, 4 … 30 s between quick failures), and ./.rfarm/farm.env tells `rfarm` where the farm
is. On Ctrl-C every child gets SIGTERM (SIGKILL after a grace), then the embedded servers stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import redis

import broker_client
from broker_contracts.config import FARM_FILE, read_farm_file
from broker_contracts.config import redact_url as redact
from rfarmctl.credentials import kept
from rfarmctl.database import has_users, migrate_database
from rfarmctl.embedded import (
    EmbeddedError,
    EmbeddedPostgres,
    RedisProcess,
    die_with_parent,
    redis_version,
    start_embedded_postgres,
    start_embedded_redis,
)
from rfarmctl.errors import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, CtlError, unreachable

STOP_GRACE = 40.0  # seconds a child has after SIGTERM (a node gives its running tasks 30 s by default)
STABLE_AFTER = 30.0  # a child that ran this long had no "quick failure"
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class UpOptions:
    data_dir: str
    nodes: int
    slots: int
    output_root: str


class Printer:
    """Lines from several threads, each whole, each with the name of who said it."""

    def __init__(self, stream: IO[str] | None = None, width: int = 8) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._width = width

    def line(self, name: str, text: str) -> None:
        with self._lock:
            self._stream.write(f"{name:<{self._width}} | {text}\n")
            self._stream.flush()

    def say(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    children: list[Child]
    printer: Printer
    cwd: Path

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.argv,
            cwd=self.cwd,
            env=child.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we decide how children stop
            preexec_fn=die_with_parent(),  # only calls prctl(2)
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        child.reader = threading.Thread(
            target=self._pump, args=(child.name, child.proc.stdout), name=f"log-{child.name}", daemon=True
        )
        child.reader.start()
        self.printer.line(child.name, f"started (pid {child.proc.pid})")

    def _pump(self, name: str, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with stream:
            for raw in iter(stream.readline, b""):
                self.printer.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def start_all(self) -> None:
        for child in self.children:
            self.start(child)

    def tick(self) -> None:
        """Notice children that died and start them again once their back-off has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                child.quick_failures = 1 if now - child.started_at >= STABLE_AFTER else child.quick_failures + 1
                delay = min(MAX_BACKOFF, 2.0 ** (child.quick_failures - 1))
                self._reap(child)
                child.restart_at = now + delay
                self.printer.line(child.name, f"exited with {describe_exit(code)}; starting again in {delay:.0f} s")
            elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
                self.start(child)

    def _reap(self, child: Child) -> None:
        if child.reader is not None:
            child.reader.join(timeout=2)
        child.proc = None
        child.reader = None

    def stop_all(self, grace: float, hurry: threading.Event) -> None:
        """SIGTERM to every child; SIGKILL to those still there after ``grace`` s or once ``hurry`` is set."""
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in live:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.proc is not None and c.proc.poll() is None for c in live):
            if hurry.is_set() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for child in live:
            assert child.proc is not None
            if child.proc.poll() is None:
                self.printer.line(child.name, "still running: killed")
                child.proc.kill()
                child.proc.wait()
        for child in self.children:
            if child.proc is not None:
                child.proc.wait()
                self.printer.line(child.name, f"stopped ({describe_exit(child.proc.returncode)})")
                self._reap(child)
            child.restart_at = None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


# --- the farm file and the data-folder lock ------------------------------------------------------


def _is_farm_supervisor(pid: int) -> bool:
    """True when ``pid`` is alive and (where /proc tells) is an `rfarmctl up`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"up" in cmdline.split(b"\0") and b"rfarmctl" in cmdline


def write_farm_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    lines = [f"# written by rfarmctl up (pid {os.getpid()}); removed when it stops"]
    lines += [f"{key}={value}" for key, value in values.items()]
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def remove_farm_file(path: Path) -> None:
    """Remove the farm file if it is still ours (another `up` may have replaced it)."""
    if read_farm_file(path).get("RFARM_UP_PID") == str(os.getpid()):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One `rfarmctl up` per data folder: two would run two servers on the same files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "up.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise CtlError(EXIT_USAGE, f"another rfarmctl up is using {data_dir}: stop it first") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def stop_signals(stop: threading.Event, hurry: threading.Event) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP ask the farm to stop (instead of raising in the middle of things);
    a second one asks it to stop now."""

    def _handler(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- up ------------------------------------------------------------------------------------------


def check_redis(url: str) -> None:
    client = broker_client.connect(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise unreachable("Redis", url, exc) from exc
    finally:
        client.close()


def _redis_label(server: RedisProcess) -> str:
    version = ".".join(map(str, redis_version(server.binary))) or "?"
    return f"Redis {version},"


def node_names(count: int) -> list[str]:
    """The names of the nodes `up` runs: this host's, numbered (one credential each)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-._") or "node"
    return [f"{host[:40]}-up-{n}" for n in range(1, count + 1)]


def build_children(
    opts: UpOptions, urls: dict[str, str], output_root: Path, credentials: dict[str, str]
) -> list[Child]:
    """The gateway and the nodes; ``credentials``: node name -> the credential it signs with."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RFARM_")}
    base.update(PYTHONUNBUFFERED="1", RFARM_REDIS_URL=urls["redis"], RFARM_PREFIX=urls["prefix"])
    gateway_env = dict(base, RFARM_DATABASE_URL=urls["database"], RFARM_REQUIRE_NODE_CREDENTIALS="1")
    children = [Child("gateway", [sys.executable, "-m", "gateway"], gateway_env)]
    node_args = ["--pool", "default", "--output-root", str(output_root), "--slots", str(opts.slots)]
    for n, (name, credential) in enumerate(credentials.items(), start=1):
        # Nodes never see the database URL: they only talk to Redis.
        env = dict(base, RFARM_NODE_CREDENTIAL=credential)
        children.append(Child(f"node-{n}", [sys.executable, "-m", "render_nodes", "--name", name, *node_args], env))
    return children


def run_up(opts: UpOptions) -> int:
    cwd = Path.cwd()
    data_dir = Path(opts.data_dir).expanduser().resolve()
    output_root = Path(opts.output_root).expanduser().resolve()
    farm_file = cwd / FARM_FILE
    owner = read_farm_file(farm_file).get("RFARM_UP_PID", "")
    if owner.isdigit() and int(owner) != os.getpid() and _is_farm_supervisor(int(owner)):
        raise CtlError(EXIT_USAGE, f"a farm is already running from this folder (rfarmctl up, pid {owner})")
    printer = Printer()
    stop, hurry = threading.Event(), threading.Event()
    with data_dir_lock(data_dir), stop_signals(stop, hurry):
        return _run_locked(opts, cwd, data_dir, output_root, farm_file, printer, stop, hurry)


def _run_locked(
    opts: UpOptions,
    cwd: Path,
    data_dir: Path,
    output_root: Path,
    farm_file: Path,
    printer: Printer,
    stop: threading.Event,
    hurry: threading.Event,
) -> int:
    redis_server: RedisProcess | None = None
    postgres: EmbeddedPostgres | None = None
    supervisor: Supervisor | None = None
    try:
        try:
            redis_url = os.environ.get("RFARM_REDIS_URL") or ""
            if redis_url:
                check_redis(redis_url)
            else:
                redis_server = start_embedded_redis(data_dir / "redis", say=lambda text: printer.line("redis", text))
                redis_url = redis_server.url
            database_url = os.environ.get("RFARM_DATABASE_URL") or ""
            if not database_url:
                postgres = start_embedded_postgres(data_dir / "pg")
                database_url = postgres.url("rfarm")
        except EmbeddedError as exc:
            raise CtlError(EXIT_UNREACHABLE, str(exc)) from exc
        applied = migrate_database(database_url)
        if stop.is_set():
            return EXIT_OK
        prefix = os.environ.get("RFARM_PREFIX") or "rf"
        output_root.mkdir(parents=True, exist_ok=True)
        urls = {"redis": redis_url, "database": database_url, "prefix": prefix}
        write_farm_file(
            farm_file,
            {
                "RFARM_REDIS_URL": redis_url,
                "RFARM_PREFIX": prefix,
                "RFARM_DATABASE_URL": database_url,
                "RFARM_UP_PID": str(os.getpid()),
            },
        )
        where = "embedded, data in {}, pid {}"
        printer.say("rfarm is starting")
        printer.say(
            f"  redis       {redact(redis_url)}"
            + (
                f" ({_redis_label(redis_server)} {where.format(redis_server.directory, redis_server.pid)})"
                if redis_server
                else ""
            )
        )
        printer.say(
            f"  postgresql  {redact(database_url)}"
            + (f" ({where.format(postgres.pgdata, postgres.pid)})" if postgres else "")
        )
        printer.say(f"  migrations  {', '.join(applied) + ' applied' if applied else 'up to date'}")
        printer.say(f"  prefix      {prefix}")
        printer.say(f"  renders     {output_root}/job-<id>/frame_<NNNN>.png")
        printer.say(f"  farm file   {farm_file} (rfarm run in {cwd} or a folder below it finds this farm)")
        # each node keeps its credential across restarts (in the data folder, mode 0600)
        credentials = {
            name: kept(database_url, name, data_dir / "nodes" / f"{name}.credential") for name in node_names(opts.nodes)
        }
        supervisor = Supervisor(build_children(opts, urls, output_root, credentials), printer, cwd)
        supervisor.start_all()
        first_step = "rfarm login USER" if has_users(database_url) else "rfarm register alice"
        printer.say(f"rfarm is up. try: {first_step}   (Ctrl-C stops the farm)")
        while not stop.wait(0.2):
            supervisor.tick()
        printer.say("stopping the farm… (once more to stop it at once)")
        return EXIT_OK
    finally:
        if supervisor is not None:
            supervisor.stop_all(STOP_GRACE, hurry)
        remove_farm_file(farm_file)
        if redis_server is not None:
            redis_server.stop()
            printer.line("redis", "stopped")
        if postgres is not None:
            postgres.stop()
            printer.line("postgres", "stopped")
