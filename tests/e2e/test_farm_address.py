"""The shell finds its farm and keeps its session: farm.env in a parent folder, a session keyed by
the farm's identity (not its address), an open shell that follows a farm that moved, a message
that says which address was tried and why, and a --timeout that is the whole wait."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from broker_contracts.config import FARM_FILE, Settings
from shell import repl
from shell.background import Refresher
from shell.commands import default_registry
from shell.session import Session
from tests.support.farm import BIN, Farm, Result, wait_for
from tests.support.servers import private_redis

PASSWORD = "correct-horse"


def write_farm_file(root: Path, redis_url: str, prefix: str) -> Path:
    path = root / FARM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"RFARM_REDIS_URL={redis_url}\nRFARM_PREFIX={prefix}\n", encoding="utf-8")
    return path


def user_env(farm: Farm, **extra: str) -> dict[str, str]:
    """What a user's terminal has: no RFARM_REDIS_URL or RFARM_PREFIX, so farm.env says where the farm is."""
    env = farm.env(RFARM_CONFIG_DIR=str(farm.root / "config"), **extra)
    for name in ("RFARM_REDIS_URL", "RFARM_PREFIX", "RFARM_DATABASE_URL"):
        if name not in extra:
            env.pop(name)
    return env


def rfarm(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> Result:
    proc = subprocess.run(
        [str(BIN / "rfarm"), *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def second_redis(tmp_path: Path) -> Iterator[str]:
    """Another Redis, on another port: where the farm comes back after a restart."""
    with private_redis(tmp_path / "second") as (url, _handle):
        yield url


def log_in(farm: Farm, name: str, cwd: Path) -> None:
    env = user_env(farm)
    assert rfarm(["register", name, "--password-stdin"], env, cwd, stdin=PASSWORD + "\n").code == 0
    res = rfarm(["login", name, "--password-stdin"], env, cwd, stdin=PASSWORD + "\n")
    assert res.code == 0, res


def whoami(env: dict[str, str], cwd: Path) -> Result:
    return rfarm(["whoami", "--json"], env, cwd)


def move_the_farm(farm: Farm, new_url: str) -> None:
    """Stop the gateway, start one on another Redis (same database: the same farm), say so in
    farm.env, and wait until the new gateway announces the farm there (so it is serving)."""
    farm.kill("gateway")
    write_farm_file(farm.root, new_url, farm.prefix)
    farm.start_gateway(RFARM_REDIS_URL=new_url)
    with redis.Redis.from_url(new_url) as r:
        wait_for(lambda: r.get(farm.keys.farm_info), timeout=60, what="the gateway on the new Redis")


def test_a_subfolder_finds_farm_env_and_the_session_survives_a_new_address(
    farm: Farm, second_redis: str, unique: str
) -> None:
    renders = farm.root / "renders" / "job-1"
    renders.mkdir(parents=True)
    write_farm_file(farm.root, farm.redis_url, farm.prefix)
    name = f"ann{unique}"
    log_in(farm, name, renders)
    env = user_env(farm)
    assert whoami(env, renders).json()["username"] == name

    move_the_farm(farm, second_redis)
    res = whoami(env, renders)
    assert res.code == 0, res
    assert res.json()["username"] == name
    assert rfarm(["jobs"], env, farm.root).code == 0  # the farm's own folder too
    # the environment still wins over the file: at the old address no gateway answers any more
    old_env = user_env(farm, RFARM_REDIS_URL=farm.redis_url, RFARM_PREFIX=farm.prefix)
    old = rfarm(["--timeout", "1", "whoami"], old_env, renders)
    assert old.code == 3 and f"{farm.redis_url} (from RFARM_REDIS_URL in the environment)" in old.err


def test_another_farm_at_the_same_address_does_not_get_the_session(farm: Farm, unique: str) -> None:
    write_farm_file(farm.root, farm.redis_url, farm.prefix)
    log_in(farm, f"bea{unique}", farm.root)
    farm.kill("gateway")
    with farm.redis() as r:  # another farm now answers at this address
        r.set(farm.keys.farm_info, "00000000-0000-4000-8000-00000000beef", ex=60)
    res = rfarm(["whoami"], user_env(farm), farm.root)
    assert res.code == 1 and "not logged in" in res.err


def test_an_open_shell_follows_the_farm_to_its_new_address(farm: Farm, second_redis: str, unique: str) -> None:
    write_farm_file(farm.root, farm.redis_url, farm.prefix)
    name = f"cy{unique}"
    log_in(farm, name, farm.root)
    env = user_env(farm)

    def where_now() -> Settings:
        return Settings.from_env(env, cwd=farm.root / "renders")

    out, err = io.StringIO(), io.StringIO()
    session = Session(where_now(), default_registry(), out=out, err=err, timeout=10, reload=where_now)
    refresher = Refresher(session.settings, every=0.3, reload=where_now)
    (farm.root / "renders").mkdir()
    with create_pipe_input() as pipe:

        def type_and_move() -> None:
            try:
                pipe.send_text("whoami --json\r")
                wait_for(lambda: out.getvalue().count(name) >= 1, timeout=60, what="whoami on the first address")
                move_the_farm(farm, second_redis)
                wait_for(lambda: refresher.settings.redis_url == second_redis, timeout=60, what="the shell to move")
                pipe.send_text("whoami --json\r")
                wait_for(lambda: out.getvalue().count(name) >= 2, timeout=60, what="whoami on the new address")
            finally:
                pipe.send_text("exit\r")  # whatever happened, the shell ends and the test reports it

        typist = threading.Thread(target=type_and_move, daemon=True)
        typist.start()
        code = repl.run(session, input=pipe, output=DummyOutput(), refresher=refresher)
        typist.join(timeout=60)
    session.close()
    assert code == 0, err.getvalue()
    assert out.getvalue().count(f'"username": "{name}"') == 2, out.getvalue() + err.getvalue()
    assert session.settings.redis_url == second_redis


def test_no_farm_answers_says_which_address_and_where_it_came_from(tmp_path: Path, prefix: str) -> None:
    base = {k: v for k, v in Farm(tmp_path, "", "", prefix).env().items() if not k.startswith("RFARM_")}
    base.update(RFARM_CONFIG_DIR=str(tmp_path / "config"), RFARM_TOKEN="t", RFARM_PREFIX=prefix)
    deep = tmp_path / "shots" / "sh010"
    deep.mkdir(parents=True)

    res = rfarm(["--timeout", "0.5", "jobs"], base, deep)  # the built-in default: the usual local Redis
    assert res.code == 3 and res.err.count("\n") == 1
    assert "redis://127.0.0.1:6379/0 (from the built-in default: no RFARM_REDIS_URL" in res.err
    assert f"no .rfarm/farm.env in {deep} or above" in res.err

    farm_file = write_farm_file(tmp_path, "redis://:s3cret@127.0.0.1:1/0", prefix)
    res = rfarm(["jobs"], base, deep)
    assert res.code == 3 and res.err.count("\n") == 1
    assert f"cannot reach Redis at redis://:***@127.0.0.1:1/0 (from {farm_file})" in res.err
    assert "s3cret" not in res.err

    res = rfarm(["jobs"], {**base, "RFARM_REDIS_URL": "redis://127.0.0.1:1/0"}, deep)
    assert res.code == 3 and "redis://127.0.0.1:1/0 (from RFARM_REDIS_URL in the environment)" in res.err


def test_timeout_is_the_whole_wait_resend_included(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """A Redis that answers and no gateway (the last one died a moment ago, its farm still announced):
    the command gives up at --timeout, the resend inside it."""
    farm = Farm(tmp_path, redis_url, "", prefix)
    env = {k: v for k, v in farm.env().items() if k != "RFARM_DATABASE_URL"}
    env.update(RFARM_TOKEN="t")
    with farm.redis() as r:
        r.set(farm.keys.farm_info, "00000000-0000-4000-8000-0000000000aa", ex=60)
    started = time.monotonic()
    assert rfarm(["show", "abc"], env, tmp_path).code == 2  # how long starting `rfarm` takes on this machine now
    startup = time.monotonic() - started
    started = time.monotonic()
    res = rfarm(["--timeout", "3", "whoami"], env, tmp_path)
    took = time.monotonic() - started
    assert res.code == 3 and "no answer within 3s" in res.err, res
    assert took >= 3.0 and took - startup < 3.0 + 1.5, (took, startup)


def test_nothing_is_sent_where_no_farm_announces_itself(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """`rfarm login` at an address where no farm is leaves no password in a stream nobody reads."""
    farm = Farm(tmp_path, redis_url, "", prefix)
    env = {k: v for k, v in farm.env().items() if k != "RFARM_DATABASE_URL"}
    res = rfarm(["--timeout", "0.5", "login", "dan", "--password-stdin"], env, tmp_path, stdin="secret-pw\n")
    assert res.code == 3 and res.err.count("\n") == 1
    # whichever the shell waited for first (the farm's identity or its key), it names where it looked
    assert res.err.startswith("error: ") and "within 0.5s" in res.err, res
    assert f"at {redis_url} (from RFARM_REDIS_URL" in res.err, res
    with farm.redis() as r:
        assert r.xlen(farm.keys.requests) == 0
