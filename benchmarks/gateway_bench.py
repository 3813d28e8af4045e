"""Round trips through the gateway (one client) and throughput at 16 clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks import seed
from benchmarks.harness import BenchFarm
from benchmarks.measure import latency, throughput
from benchmarks.wire import Caller

PASSWORD = "bench-password-1"
SUBMIT = {"name": "one", "frames": "1", "renderer": "noop", "pool": "bench-idle"}


@dataclass
class BenchUser:
    username: str
    user_id: int
    token: str
    history_job: int


def make_user(farm: BenchFarm, jobs: int, history_tasks: int) -> BenchUser:
    """Registered and logged in through the gateway; its jobs written straight into the store."""
    caller = Caller(farm.redis_url, farm.prefix)
    try:
        caller.register("bench", PASSWORD)
        token = caller.login("bench", PASSWORD)
    finally:
        caller.close()
    with farm.db(autocommit=False) as conn:
        uid = conn.execute("SELECT id FROM users WHERE username = 'bench'").fetchone()["id"]  # type: ignore[index]
        seed.user_jobs(conn, uid, jobs)
        job = seed.history_job(conn, uid, history_tasks)
        conn.commit()
    return BenchUser("bench", uid, token, job)


def roundtrips(farm: BenchFarm, user: BenchUser, n: int, *, submit: bool = True) -> dict[str, Any]:
    caller = Caller(farm.redis_url, farm.prefix)
    out: dict[str, Any] = {}
    try:
        requests: dict[str, tuple[str, dict[str, Any]]] = {
            "whoami": ("auth.whoami", {}),
            "jobs": ("job.list", {"limit": 50}),
            "history": ("job.history", {"id": user.history_job}),
        }
        if submit:
            requests["submit"] = ("job.submit", SUBMIT)
        for label, (type_, body) in requests.items():
            reply = caller.ok(type_, body, user.token)
            if label == "jobs":
                assert len(reply["jobs"]) == 50, reply
            out[label] = latency(lambda t=type_, b=body: caller.ok(t, b, user.token), n)
    finally:
        caller.close()
    return out


def request_rates(farm: BenchFarm, user: BenchUser, clients: int, seconds: float) -> dict[str, Any]:
    return {
        "jobs": throughput(farm.redis_url, farm.prefix, "job.list", {"limit": 50}, user.token,
                           clients=clients, seconds=seconds),
        "submit": throughput(farm.redis_url, farm.prefix, "job.submit", SUBMIT, user.token,
                             clients=clients, seconds=seconds),
    }
