"""Closed-loop clients for the throughput figures: several per process, on one thread.

Each client is a benchmarks.wire.Caller (what a shell does on the wire; the next request only
after the answer). A process serves its clients from one thread with a selector: with a thread per
client the hand-offs of Python's GIL doubled the clients' CPU per request (170 -> 340 µs here),
and the clients share the machine's cores with the farm they measure.
"""

from __future__ import annotations

import selectors
import time
from typing import Any

from benchmarks.wire import Caller


def run_clients(
    clients: list[Caller], type_: str, body: dict[str, Any], token: str | None, go_at: float, end: float
) -> tuple[int, int]:
    """Keeps every client busy with the same request until ``end``; the answers counted, ok and not."""
    done = failed = 0
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    time.sleep(max(0.0, go_at - time.time()))
    for c in clients:
        c.send(type_, body, token)
    while True:
        now = time.time()
        if now >= end:
            break
        for key, _ in sel.select(timeout=min(1.0, end - now)):
            client: Caller = key.data
            reply = client.readable()
            if reply is None:
                continue
            if time.time() <= end:
                if reply.ok:
                    done += 1
                else:
                    failed += 1
            client.send(type_, body, token)
    sel.close()
    return done, failed
