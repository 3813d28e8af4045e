"""`rfarmctl` run as the operator runs it: a real process, real servers, exit codes, one-line errors."""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.rows import dict_row

from broker_contracts.config import read_farm_file
from gateway.passwords import hash_password
from rfarmctl.embedded import free_port
from store import users

CTL = [sys.executable, "-m", "rfarmctl"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFARM_")}
    env.update(extra)
    return env


def ctl(*args: str, cwd: Path, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTL, *args],
        cwd=cwd,
        env=clean_env(**env),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rfarmctl: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def scratch_db(pg_admin_url: str, run_id: str) -> Iterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards."""
    name = f"rfarm_ctl_{run_id}_{os.urandom(3).hex()}"
    yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- plain commands ---------------------------------------------------------------------------------


def test_the_console_script_exists_and_usage_errors_are_one_line(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "rfarmctl"
    assert script.exists()
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "create-admin" in result.stdout
    assert ctl(cwd=tmp_path).returncode == 2
    assert_one_line_error(ctl("bogus", cwd=tmp_path), 2, "invalid choice")
    assert_one_line_error(ctl("up", "--nodes", "x", cwd=tmp_path), 2)
    assert_one_line_error(ctl("create-admin", cwd=tmp_path), 2, "user")


def test_migrate_creates_the_database_then_has_nothing_to_do(tmp_path: Path, scratch_db: str) -> None:
    first = ctl("migrate", cwd=tmp_path, RFARM_DATABASE_URL=scratch_db)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    again = ctl("migrate", cwd=tmp_path, RFARM_DATABASE_URL=scratch_db)
    assert again.returncode == 0 and "nothing to apply" in again.stdout
    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT to_regclass('users') IS NOT NULL").fetchone() == (True,)


def test_servers_out_of_reach_exit_3(tmp_path: Path) -> None:
    nowhere = f"postgresql://127.0.0.1:{free_port()}/rfarm"
    assert_one_line_error(ctl("migrate", cwd=tmp_path, RFARM_DATABASE_URL=nowhere), 3, "cannot reach PostgreSQL")
    result = ctl("create-admin", "root1", "--password-stdin", cwd=tmp_path, stdin="longenough\n",
                 RFARM_DATABASE_URL=nowhere)  # fmt: skip
    assert_one_line_error(result, 3, "cannot reach PostgreSQL")
    no_redis = f"redis://127.0.0.1:{free_port()}/0"
    result = ctl("up", "--nodes", "0", cwd=tmp_path, RFARM_REDIS_URL=no_redis, RFARM_DATABASE_URL=nowhere)
    assert_one_line_error(result, 3, "cannot reach Redis")
    assert not (tmp_path / ".rfarm" / "farm.env").exists()


def _user(url: str, name: str) -> users.User | None:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        found = users.credentials(conn, name)
    return None if found is None else found.user


def test_create_admin_creates_promotes_and_refuses(tmp_path: Path, database_url: str, run_id: str) -> None:
    name = f"adm{run_id}"
    db = {"RFARM_DATABASE_URL": database_url}
    made = ctl("create-admin", name, "--password-stdin", cwd=tmp_path, stdin="correct horse\n", **db)
    assert made.returncode == 0 and f"created admin {name}" in made.stdout, made.stderr
    assert _user(database_url, name) == users.User(id=_user(database_url, name).id, username=name, is_admin=True)  # type: ignore[union-attr]
    again = ctl("create-admin", name, "--password-stdin", cwd=tmp_path, stdin="correct horse\n", **db)
    assert again.returncode == 0 and "already an admin" in again.stdout
    wrong = ctl("create-admin", name, "--password-stdin", cwd=tmp_path, stdin="battery staple\n", **db)
    assert_one_line_error(wrong, 1, "not its password")

    plain = f"usr{run_id}"
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.transaction():
        users.create_user(conn, plain, hash_password("plain password"))
    refused = ctl("create-admin", plain, "--password-stdin", cwd=tmp_path, stdin="not the one\n", **db)
    assert_one_line_error(refused, 1)
    assert _user(database_url, plain).is_admin is False  # type: ignore[union-attr]
    promoted = ctl("create-admin", plain, "--password-stdin", cwd=tmp_path, stdin="plain password\n", **db)
    assert promoted.returncode == 0 and "now an admin" in promoted.stdout
    assert _user(database_url, plain).is_admin is True  # type: ignore[union-attr]

    assert_one_line_error(ctl("create-admin", "x y", "--password-stdin", cwd=tmp_path, stdin="p" * 9, **db), 2)
    assert_one_line_error(ctl("create-admin", "okname", "--password-stdin", cwd=tmp_path, stdin="short\n", **db), 2)
    assert_one_line_error(ctl("create-admin", "okname", cwd=tmp_path, **db), 2, "--password-stdin")
    assert _user(database_url, "okname") is None


def _read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {needle!r} within {timeout} s, only {seen!r}")
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            raise AssertionError(f"the terminal closed before {needle!r}, after {seen!r}")
        seen += chunk
    return seen


def test_create_admin_asks_for_the_password_in_the_words_of_rfarm_register(
    tmp_path: Path, database_url: str, run_id: str
) -> None:
    name = f"tty{run_id}"
    main, terminal = pty.openpty()

    def take_the_terminal() -> None:  # the new session's controlling terminal, which getpass opens
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [*CTL, "create-admin", name],
        cwd=tmp_path,
        env=clean_env(RFARM_DATABASE_URL=database_url),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(terminal)
    try:
        _read_until(main, f"password for {name}: ".encode())
        os.write(main, b"correct horse\n")
        _read_until(main, b"again: ")
        os.write(main, b"correct horse\n")
        _read_until(main, f"created admin {name}".encode())
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert _user(database_url, name).is_admin is True  # type: ignore[union-attr]


@pytest.mark.parametrize(("command", "module"), [("gateway", "gateway"), ("node", "render_nodes")])
def test_gateway_and_node_run_their_module(tmp_path: Path, command: str, module: str) -> None:
    result = ctl(command, "--help", cwd=tmp_path)
    if importlib.util.find_spec(f"{module}.__main__") is None:
        assert_one_line_error(result, 2, f"{module} service is not installed")
    else:  # the process became `python -m module --help`
        assert result.returncode == 0, result.stderr
        assert "usage" in result.stdout.lower()


# --- up ---------------------------------------------------------------------------------------------


class RunningUp:
    """A running `rfarmctl up` and every line it printed."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [*CTL, "up", *args],
            cwd=cwd,
            env=clean_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not check(self.lines)):
                    if self.proc.poll() is not None:
                        time.sleep(0.2)
                        if check(self.lines):
                            return
                    raise AssertionError(f"no {what} within {timeout} s:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.5))

    def pids(self, name: str) -> list[int]:
        pattern = re.compile(rf"^{re.escape(name)}\s+\| started \(pid (\d+)\)$")
        return [int(m.group(1)) for line in list(self.lines) if (m := pattern.match(line))]

    def close(self) -> None:
        """After a failed test: still let it stop its servers, then make sure it is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self, sig: signal.Signals, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if not _gone(p)]


@pytest.mark.timeout(240)
def test_up_runs_a_whole_embedded_farm_and_ctrl_c_stops_all_of_it(tmp_path: Path) -> None:
    farm = RunningUp(tmp_path, "--data-dir", str(tmp_path / "data"), "--nodes", "2", "--output-root", "out")
    try:
        farm.wait_for(lambda ls: any(line.startswith("rfarm is up") for line in ls), 120, "'rfarm is up'")
        env = read_farm_file(tmp_path / ".rfarm" / "farm.env")
        assert env["RFARM_PREFIX"] == "rf" and env["RFARM_UP_PID"] == str(farm.proc.pid)
        client = redis.Redis.from_url(env["RFARM_REDIS_URL"])
        assert client.ping()
        client.close()
        with psycopg.connect(env["RFARM_DATABASE_URL"]) as conn:
            assert conn.execute("SELECT to_regclass('users') IS NOT NULL").fetchone() == (True,)
        assert (tmp_path / "out").is_dir()
        redis_dir = tmp_path / "data" / "redis"  # Redis 7 keeps its append-only files in a folder, 6.2 in one file
        assert (redis_dir / "appendonlydir").is_dir() or (redis_dir / "appendonly.aof").is_file()
        postmaster = int((tmp_path / "data" / "pg" / "postmaster.pid").read_text().split()[0])
        redis_pid = next(int(p.pid) for p in psutil.Process(farm.proc.pid).children() if "redis" in p.name())
        assert len(farm.pids("gateway")) >= 1 and len(farm.pids("node-1")) >= 1 and len(farm.pids("node-2")) >= 1

        # A second farm from the same folder is refused while this one runs.
        second = ctl("up", "--data-dir", str(tmp_path / "other"), cwd=tmp_path)
        assert_one_line_error(second, 2, "already running")

        # A child that dies is started again.
        first = farm.pids("node-1")[-1]
        if not _gone(first):
            os.kill(first, signal.SIGKILL)
        farm.wait_for(lambda ls: farm.pids("node-1")[-1] != first, 45, "restart of node-1")

        started = farm.pids("gateway") + farm.pids("node-1") + farm.pids("node-2")
        assert farm.stop(signal.SIGINT) == 0, "\n".join(farm.lines)
    finally:
        farm.close()
    assert _wait_gone([*started, redis_pid, postmaster]) == []
    assert not (tmp_path / ".rfarm" / "farm.env").exists()
    assert any(line.startswith("postgres | stopped") for line in farm.lines)


@pytest.mark.timeout(120)
def test_up_with_given_servers_starts_none_of_its_own(
    tmp_path: Path, redis_url: str, scratch_db: str, prefix: str
) -> None:
    env = {"RFARM_REDIS_URL": redis_url, "RFARM_DATABASE_URL": scratch_db, "RFARM_PREFIX": prefix}
    farm = RunningUp(tmp_path, "--nodes", "1", "--data-dir", str(tmp_path / "data"), **env)
    try:
        farm.wait_for(lambda ls: any(line.startswith("rfarm is up") for line in ls), 60, "'rfarm is up'")
        written = read_farm_file(tmp_path / ".rfarm" / "farm.env")
        assert {k: written[k] for k in env} == env
        migrated = [line for line in farm.lines if line.strip().startswith("migrations")]
        assert migrated and "0001_initial" in migrated[0] and migrated[0].endswith(" applied"), farm.lines
        # (it migrated the database it was given)
        assert not any("embedded" in line for line in farm.lines)
        kids = psutil.Process(farm.proc.pid).children()
        assert not any("redis" in k.name() or "postgres" in k.name() for k in kids)
        # its node has a credential of its own: the gateway, which requires one, applies its reports
        user_env = clean_env(**env, RFARM_CONFIG_DIR=str(tmp_path / "user"))

        def rfarm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(Path(sys.executable).parent / "rfarm"), *args], input=stdin, cwd=tmp_path,
                                  env=user_env, capture_output=True, text=True, timeout=90)

        for step in ("register", "login"):
            assert rfarm(step, f"up{prefix}", "--password-stdin", stdin="correct-horse\n").returncode == 0
        submitted = rfarm("submit", "up", "--frames", "1-2", "--renderer", "noop", "--json")
        assert submitted.returncode == 0, submitted
        waited = rfarm("wait", "--timeout", "60", str(json.loads(submitted.stdout)["id"]))
        assert waited.returncode == 0, (waited, farm.lines)
        started = farm.pids("gateway") + farm.pids("node-1")
        assert farm.stop(signal.SIGTERM) == 0
    finally:
        farm.close()
    assert _wait_gone(started) == []
    assert not (tmp_path / ".rfarm" / "farm.env").exists()


@pytest.mark.timeout(180)
def test_up_again_keeps_the_redis_address_and_asks_to_log_in_once_users_exist(tmp_path: Path, scratch_db: str) -> None:
    def run_once() -> tuple[str, str]:
        """Start the farm, note its Redis URL and its hint, stop it."""
        farm = RunningUp(tmp_path, "--nodes", "0", "--data-dir", str(tmp_path / "data"), RFARM_DATABASE_URL=scratch_db)
        try:
            farm.wait_for(lambda ls: any(line.startswith("rfarm is up") for line in ls), 60, "'rfarm is up'")
            url = read_farm_file(tmp_path / ".rfarm" / "farm.env")["RFARM_REDIS_URL"]
            hint = next(line for line in farm.lines if line.startswith("rfarm is up"))
            assert farm.stop(signal.SIGINT) == 0, "\n".join(farm.lines)
        finally:
            farm.close()
        assert not any("is taken" in line for line in farm.lines), farm.lines
        return url, hint

    first_url, first_hint = run_once()
    assert "try: rfarm register alice" in first_hint
    with psycopg.connect(scratch_db, row_factory=dict_row) as conn, conn.transaction():
        users.create_user(conn, "alice", hash_password("alice password"))
    again_url, again_hint = run_once()
    assert again_url == first_url
    assert "try: rfarm login USER" in again_hint and "register" not in again_hint


def test_version_is_the_package_version(tmp_path: Path) -> None:
    result = ctl("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rfarmctl {importlib.metadata.version('rfarm')}"
