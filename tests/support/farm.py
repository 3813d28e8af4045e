"""A real farm for end-to-end tests: gateway and node processes, and the `rfarm` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

import broker_client
from broker_contracts.keys import Keys, valid_name
from rfarmctl.credentials import issue

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Farm:
    root: Path
    redis_url: str
    database_url: str
    prefix: str
    lease: float = 2.0
    claim_idle: float = 2.0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # process name -> the command prefix that runs it on its own host (tests/support/netns.py);
    # "shell" places `rfarm`, "ctl" places `rfarmctl`. Empty: everything on this machine.
    placement: dict[str, list[str]] = field(default_factory=dict)

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    @property
    def output_root(self) -> Path:
        return self.root / "renders"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RFARM_")}
        env.update(
            RFARM_REDIS_URL=self.redis_url,
            RFARM_DATABASE_URL=self.database_url,
            RFARM_PREFIX=self.prefix,
            RFARM_CONFIG_DIR=str(self.root / "config"),
            RFARM_REQUIRE_NODE_CREDENTIALS="1",  # gateways apply only reports signed by a node credential
            NO_COLOR="1",
        )
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            argv = [*self.placement.get(name, []), *argv]
            proc = subprocess.Popen(argv, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        self.procs[name] = proc
        return proc

    def start_gateway(self, name: str = "gateway", *args: str, **env: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "gateway", "--name", name, "--lease", str(self.lease),
                "--claim-idle", str(self.claim_idle), *args]
        return self._spawn(name, argv, **env)

    def credential(self, name: str) -> str:
        """Issue (or replace) node ``name``'s credential, as `rfarmctl node-credential add` does."""
        return issue(self.database_url, name, replace=True).text()

    def start_node(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """A node with a fresh credential of its own (unless ``env`` gives RFARM_NODE_CREDENTIAL, or
        the name is one a node refuses)."""
        if valid_name(name):
            env.setdefault("RFARM_NODE_CREDENTIAL", self.credential(name))
        argv = [sys.executable, "-m", "render_nodes", "--name", name, "--lease", str(self.lease),
                "--output-root", str(self.output_root), "--heartbeat", "0.5", *args]
        return self._spawn(name, argv, **env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")))

    # --- the user's side -----------------------------------------------------------------------

    def rfarm(self, *args: str, stdin: str | None = None, config: str = "config", timeout: float = 60,
              **env: str) -> Result:
        proc = subprocess.run(
            [*self.placement.get("shell", []), str(BIN / "rfarm"), *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            env=self.env(RFARM_CONFIG_DIR=str(self.root / config), **env),
            cwd=self.root,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def rfarmctl(self, *args: str, stdin: str | None = None) -> Result:
        proc = subprocess.run(
            [*self.placement.get("ctl", []), str(BIN / "rfarmctl"), *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            env=self.env(),
            cwd=self.root,
            timeout=60,
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def user(self, name: str, password: str = "correct-horse", *, admin: bool = False) -> str:
        """Register (or create as admin) and log in; returns the config folder name to pass as config=."""
        if admin:
            res = self.rfarmctl("create-admin", name, "--password-stdin", stdin=password + "\n")
        else:
            res = self.rfarm("register", name, "--password-stdin", stdin=password + "\n", config=name)
        assert res.code == 0, res
        res = self.rfarm("login", name, "--password-stdin", stdin=password + "\n", config=name)
        assert res.code == 0, res
        return name

    def redis(self) -> redis.Redis:
        return broker_client.connect(self.redis_url)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)
