"""The machine's floor: a bare Redis Streams echo, and a bare single-row PostgreSQL commit."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import psycopg

from benchmarks.harness import BenchFarm
from benchmarks.measure import latency, throughput
from benchmarks.wire import Caller


def echo_floor(farm: BenchFarm, n: int, clients: int, seconds: float) -> dict[str, Any]:
    stream = f"{farm.prefix}:echo"
    farm.spawn("echo", [sys.executable, "-m", "benchmarks.wire", farm.redis_url, farm.prefix, stream])
    caller = Caller(farm.redis_url, farm.prefix, requests=stream)
    try:
        caller.call("echo", {}, timeout=30)  # the server is up
        rtt = latency(lambda: caller.call("echo", {"x": 1}), n)
    finally:
        caller.close()
    tput = throughput(farm.redis_url, farm.prefix, "echo", {"x": 1}, None, clients=clients, seconds=seconds,
                      requests=stream)
    farm.stop("echo")
    # the same echo answering with a body the size and shape of a page of 50 jobs (a table of about 5.6 KB)
    paged = f"{stream}-page"
    farm.spawn("echo-page", [sys.executable, "-m", "benchmarks.wire", farm.redis_url, farm.prefix, paged, "page"])
    caller = Caller(farm.redis_url, farm.prefix, requests=paged)
    try:
        caller.call("echo", {}, timeout=30)
        page = latency(lambda: caller.call("echo", {"x": 1}), n)
    finally:
        caller.close()
    farm.stop("echo-page")
    return {"latency": rtt, "throughput": tput, "page_latency": page}


def commit_floor(farm: BenchFarm, n: int, seconds: float) -> dict[str, Any]:
    with farm.db() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, v integer NOT NULL)")

    with psycopg.connect(farm.database_url) as conn:
        def one() -> None:
            with conn.transaction():
                conn.execute("INSERT INTO bench_floor (v) VALUES (1)")

        single = latency(one, n)
    result: dict[str, Any] = {"latency": single}
    for clients in (1, 8):
        result[f"commits_per_s_{clients}"] = _commit_rate(farm.database_url, clients, seconds)
    return result


def _commit_rate(url: str, clients: int, seconds: float) -> float:
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    end_at = [0.0]

    def loop(i: int) -> None:
        with psycopg.connect(url) as conn:
            start.wait()
            while time.perf_counter() < end_at[0]:
                with conn.transaction():
                    conn.execute("INSERT INTO bench_floor (v) VALUES (%s)", (i,))
                counts[i] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for w in workers:
        w.start()
    end_at[0] = time.perf_counter() + seconds
    start.wait()
    for w in workers:
        w.join()
    return round(sum(counts) / seconds, 1)
