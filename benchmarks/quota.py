"""A user's `jobs` while another user floods submits and runs into their quotas (the defaults)."""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.gateway_bench import PASSWORD, BenchUser
from benchmarks.harness import BenchFarm, wait_for
from benchmarks.measure import latency
from benchmarks.wire import Caller
from store import quotas

FLOODERS = 4  # callers of the flooding user, each with one submit in flight
FRAMES = 10_000  # tasks per flooding submit: ten of them fill the default queued-tasks quota
JOBS = ("job.list", {"limit": 50})


def quota_flood(farm: BenchFarm, user: BenchUser, samples: int) -> dict[str, Any]:
    """`jobs` p50 of ``user`` idle, then while FLOODERS callers of another user submit jobs of
    FRAMES tasks back to back (accepted until a quota holds, refused with quota.exceeded after);
    the accepted are cancelled at the end."""
    caller = Caller(farm.redis_url, farm.prefix)
    stop = threading.Event()
    counts = {"accepted": 0, "refused": 0, "other_errors": 0}
    made: list[int] = []
    lock = threading.Lock()
    try:
        idle = latency(lambda: caller.ok(*JOBS, user.token), samples)
        caller.register("flooder", PASSWORD)
        with farm.db() as conn:  # the quotas a farm ships with, which the other phases lift
            quotas.set_user(conn, "flooder", farm.shipped_quotas)
        token = caller.login("flooder", PASSWORD)
        body = {"name": "flood", "frames": f"1-{FRAMES}", "renderer": "noop", "pool": "bench-quota"}

        def flood() -> None:
            mine = Caller(farm.redis_url, farm.prefix)
            try:
                while not stop.is_set():
                    reply = mine.call("job.submit", body, token)
                    code = reply.error.code if reply.error else None
                    with lock:
                        if code is None:
                            made.append(int(reply.body["id"]))  # type: ignore[index]
                        key = "accepted" if code is None else "refused" if code == "quota.exceeded" else "other_errors"
                        counts[key] += 1
            finally:
                mine.close()

        t0 = time.monotonic()
        threads = [threading.Thread(target=flood, name=f"quota-flood-{n}", daemon=True) for n in range(FLOODERS)]
        for t in threads:
            t.start()
        wait_for(lambda: counts["refused"] > 0, 300, "the flooding user to reach a quota")
        full_after = time.monotonic() - t0
        during = latency(lambda: caller.ok(*JOBS, user.token), samples, warmup=0)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        with farm.db() as conn:
            row = conn.execute(
                "SELECT count(*) AS tasks FROM tasks t JOIN jobs j ON j.id = t.job_id"
                " JOIN users u ON u.id = j.owner_id WHERE u.username = 'flooder'"
            ).fetchone()
        for job in made:  # the later phases measure a farm without them
            caller.ok("job.cancel", {"id": job}, token)
    finally:
        stop.set()
        caller.close()
    return {
        "flooders": FLOODERS,
        "tasks_per_submit": FRAMES,
        **counts,
        "flooder_tasks": int(row["tasks"]) if row else None,  # type: ignore[call-overload]
        "quota_reached_s": round(full_after, 1),
        "jobs_idle": idle,
        "jobs_during_flood": during,
    }
