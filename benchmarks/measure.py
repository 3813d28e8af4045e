"""Latency samples (p50/p99) and closed-loop throughput with many clients in several processes."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.load import run_clients
from benchmarks.wire import Caller


def summarize(samples_s: list[float]) -> dict[str, float]:
    """Milliseconds: p50, p99, mean over the samples (seconds)."""
    ms = sorted(s * 1000 for s in samples_s)
    if not ms:
        return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}
    return {
        "n": len(ms),
        "p50_ms": round(_quantile(ms, 0.50), 3),
        "p99_ms": round(_quantile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def _quantile(sorted_ms: list[float], q: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[index]


def latency(fn: Callable[[], Any], n: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples)


def _client_process(
    redis_url: str,
    prefix: str,
    requests: str | None,
    type_: str,
    body: dict[str, Any],
    token: str | None,
    count: int,
    ready: Any,
    go: Any,
    end_at: Any,
    out: Any,
) -> None:
    clients = [Caller(redis_url, prefix, requests=requests) for _ in range(count)]
    ready.put(1)
    go.wait()
    try:
        out.put(run_clients(clients, type_, body, token, time.time(), end_at.value))
    finally:
        for c in clients:
            c.close()


def throughput(
    redis_url: str,
    prefix: str,
    type_: str,
    body: dict[str, Any],
    token: str | None,
    *,
    clients: int = 16,
    processes: int = 2,
    seconds: float = 5.0,
    requests: str | None = None,
) -> dict[str, float]:
    """Requests per second completed by ``clients`` closed-loop callers, spread over processes
    (benchmarks/load.py: each process serves its clients from one thread)."""
    ctx = multiprocessing.get_context("spawn")
    out, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    end_at = ctx.Value("d", 0.0)
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    procs = [
        ctx.Process(
            target=_client_process,
            args=(redis_url, prefix, requests, type_, body, token, n, ready, go, end_at, out),
        )
        for n in per
        if n
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)  # every client connected: the clock starts now, for all of them
    end_at.value = time.time() + seconds
    go.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    done = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    return {"clients": clients, "seconds": seconds, "requests": done, "errors": failed,
            "per_s": round(done / seconds, 1)}
