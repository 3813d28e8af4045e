"""A raw wire client against a running farm, bulk submits, and reading PostgreSQL's truth (rows, a history audit).

The wire client speaks the protocol itself (XADD an envelope, XREAD the reply stream) so a test
can resend the very same envelope, as a shell that timed out does.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

import psycopg
import redis
from nacl.public import PublicKey
from psycopg.rows import dict_row

from broker_contracts.envelope import Envelope, Notice, Reply, decode_reply, encode
from broker_contracts.states import JOB_TERMINAL, replay_is_legal
from tests.support.farm import Farm
from tests.support.sealing import farm_key


class Wire:
    """One client id; sends envelopes and waits for the reply whose ``re`` matches."""

    def __init__(self, farm: Farm, token: str | None = None) -> None:
        self.farm = farm
        self.token = token
        self.client = secrets.token_hex(16)
        self.last = "0-0"
        self.r = farm.redis()
        self.seen: dict[str, Reply] = {}  # replies read while waiting for another one
        self.key: PublicKey | None = None

    def envelope(self, type_: str, body: dict) -> Envelope:
        """As rfarm sends it: the token sealed to the farm's key for this request."""
        if self.key is None and self.token:
            self.key = farm_key(self.farm.database_url)
        return Envelope.new(type_, body, self.client, self.token, farm_key=self.key)

    def send(self, env: Envelope) -> None:
        self.r.xadd(self.farm.keys.requests, {"m": encode(env)}, maxlen=100_000, approximate=True)

    def wait(self, env: Envelope, timeout: float = 20.0) -> Reply | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if env.id in self.seen:
                return self.seen[env.id]
            try:
                got = self.r.xread({self.farm.keys.reply(self.client): self.last}, block=300, count=100)
            except redis.ConnectionError:
                time.sleep(0.3)
                continue
            for _, items in got or []:
                for eid, fields in items:
                    self.last = eid.decode() if isinstance(eid, bytes) else eid
                    msg = decode_reply(fields[b"m"])
                    if not isinstance(msg, Notice):
                        self.seen.setdefault(msg.re, msg)
        return self.seen.get(env.id)

    def call(self, type_: str, body: dict, timeout: float = 20.0) -> Reply:
        """Send; on silence resend the same envelope (as the shell does) until ``timeout``."""
        env = self.envelope(type_, body)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.send(env)
            except redis.ConnectionError:
                time.sleep(0.3)
                continue
            reply = self.wait(env, min(5.0, max(0.1, deadline - time.monotonic())))
            if reply is not None:
                return reply
        raise AssertionError(f"no reply to {type_} within {timeout} s")

    def close(self) -> None:
        self.r.close()


def token_of(farm: Farm, config: str) -> str:
    return str(json.loads((farm.root / config / "credentials").read_text())["token"])


def login(farm: Farm, name: str) -> Wire:
    """A registered, logged-in user and a wire client carrying its token."""
    farm.user(name)
    return Wire(farm, token_of(farm, name))


def submit(wire: Wire, name: str, frames: str = "1-10", *, seconds: str = "0", chunk: int = 1,
           **extra: object) -> int:
    body = {"name": name, "frames": frames, "chunk": chunk, "renderer": "sleep",
            "params": {"seconds": seconds}, **extra}
    reply = wire.call("job.submit", body)
    assert reply.ok, reply
    return int(reply.body["id"])  # type: ignore[index]


# --- reading the truth ----------------------------------------------------------------------------


def query(database_url: str, sql: str, params: object = None) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def one_row(database_url: str, sql: str, *args: object) -> tuple:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return tuple(row)


def job_statuses(database_url: str, job_ids: list[int]) -> dict[int, str]:
    rows = query(database_url, "SELECT id, status FROM jobs WHERE id = ANY(%s)", (job_ids,))
    return {r["id"]: r["status"] for r in rows}


def all_terminal(database_url: str, job_ids: list[int]) -> bool:
    statuses = job_statuses(database_url, job_ids)
    return len(statuses) == len(job_ids) and all(s in JOB_TERMINAL for s in statuses.values())


@dataclass
class Audit:
    jobs: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    illegal: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, int, str, int]] = field(default_factory=list)
    takeovers: int = 0
    expired: int = 0
    attempts: int = 0
    lost: list[int] = field(default_factory=list)


def audit(database_url: str, job_ids: list[int]) -> Audit:
    """Replay every job's and task's history through the state machine; count what happened."""
    out = Audit(jobs=len(job_ids))
    jobs = query(database_url, "SELECT id, status, frames_total, frames_done FROM jobs WHERE id = ANY(%s)",
                 (job_ids,))
    for j in jobs:
        out.statuses[j["status"]] = out.statuses.get(j["status"], 0) + 1
    out.lost = sorted(set(job_ids) - {j["id"] for j in jobs})
    out.lost += [j["id"] for j in jobs if j["status"] not in JOB_TERMINAL]
    chains: dict[tuple[str, int], list[tuple[str | None, str]]] = {}
    for h in query(database_url, "SELECT job_id, from_status, to_status FROM job_history "
                   "WHERE job_id = ANY(%s) ORDER BY id", (job_ids,)):
        chains.setdefault(("job", h["job_id"]), []).append((h["from_status"], h["to_status"]))
    task_rows = query(database_url, "SELECT task_id, attempt, from_status, to_status, reason FROM task_history "
                      "WHERE job_id = ANY(%s) ORDER BY id", (job_ids,))
    for h in task_rows:
        chains.setdefault(("task", h["task_id"]), []).append((h["from_status"], h["to_status"]))
        out.takeovers += "lease lost" in h["reason"]
        out.expired += "lease expired" in h["reason"]
        out.attempts += h["to_status"] == "running"
    for (kind, ident), chain in chains.items():
        ok, why = replay_is_legal(chain, kind=kind)
        if not ok:
            out.illegal.append(f"{kind} {ident}: {why}: {chain}")
    dup = query(database_url, "SELECT task_id, attempt, to_status, count(*) AS n FROM task_history "
                "WHERE job_id = ANY(%s) GROUP BY 1, 2, 3 HAVING count(*) > 1", (job_ids,))
    out.duplicates = [(d["task_id"], d["attempt"], d["to_status"], d["n"]) for d in dup]
    return out


def succeeded_frames_match(database_url: str, job_ids: list[int]) -> list[int]:
    """Jobs marked succeeded whose frame count is short: must be empty."""
    rows = query(database_url, "SELECT id FROM jobs WHERE id = ANY(%s) AND status = 'succeeded' "
                 "AND frames_done <> frames_total", (job_ids,))
    return [r["id"] for r in rows]


def lift_quotas(farm: Farm, username: str) -> None:
    """As an operator would for a load test (`rfarmctl quota set USER …`): the user's quotas out of
    the way, so the test measures the farm rather than the shipped quotas."""
    from store import quotas

    with psycopg.connect(farm.database_url, row_factory=dict_row) as conn, conn.transaction():
        quotas.set_user(conn, username, dict.fromkeys(quotas.FIELDS, 1_000_000_000))
