"""A logged-in user's `jobs` while strangers flood the gateway with logins for made-up names."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from nacl.public import PrivateKey

from benchmarks.gateway_bench import BenchUser
from benchmarks.harness import BenchFarm, wait_for
from benchmarks.measure import latency
from benchmarks.wire import Caller
from broker_contracts.envelope import Envelope, encode
from broker_contracts.sealing import key_text, seal

FLOOD = 300
JOBS = ("job.list", {"limit": 50})


def login_flood(farm: BenchFarm, user: BenchUser, samples: int) -> dict[str, Any]:
    """`jobs` p50 idle, then while bursts of FLOOD logins (each from its own reply address, as
    strangers would send them) keep arriving: a burst is sent as soon as the last one is answered."""
    caller = Caller(farm.redis_url, farm.prefix)
    stop = threading.Event()
    bursts: list[float] = []  # seconds each burst took to be answered whole
    try:
        idle = latency(lambda: caller.ok(*JOBS, user.token), samples)

        key = caller.farm_key()
        answer_key = key_text(PrivateKey.generate().public_key)

        def flood() -> None:
            r = farm.redis()
            try:
                while not stop.is_set():
                    clients = [secrets.token_hex(16) for _ in range(FLOOD)]
                    pipe = r.pipeline(transaction=False)
                    for n, client in enumerate(clients):
                        body = {
                            "username": f"stranger{n}",
                            "sealed_password": seal(key, b"not-the-password"),
                            "answer_key": answer_key,
                        }
                        env = Envelope.new("auth.login", body, client)
                        pipe.xadd(farm.keys.requests, {"m": encode(env)}, maxlen=100_000, approximate=True)
                    t0 = time.monotonic()
                    pipe.execute()
                    keys = [farm.keys.reply(c) for c in clients]
                    while not stop.is_set() and r.exists(*keys) < len(keys):
                        time.sleep(0.01)
                    bursts.append(time.monotonic() - t0)
            finally:
                r.close()

        flooder = threading.Thread(target=flood, name="login-flood", daemon=True)
        flooder.start()
        time.sleep(0.2)  # the first burst is in the stream
        during = latency(lambda: caller.ok(*JOBS, user.token), samples, warmup=0)
        stop.set()
        flooder.join(timeout=30)
        r = farm.redis()
        try:  # the last burst is answered before the next phase measures anything
            wait_for(lambda: r.xlen(farm.keys.requests) == 0, 120, "the last burst of logins to be answered")
        finally:
            r.close()
    finally:
        stop.set()
        caller.close()
    return {
        "logins_per_burst": FLOOD,
        "bursts": len(bursts),
        "burst_answered_s_max": round(max(bursts), 2) if bursts else None,
        "jobs_idle": idle,
        "jobs_during_flood": during,
    }
