"""The chaos run: many jobs while a loop SIGKILLs a random node or the gateway and starts it again.

Every job must end in a terminal state, every job's and task's history must replay through the
state machine, and no (task, attempt, status) change may be recorded twice. The figures are
printed. Size by environment: RFARM_CHAOS_JOBS (200), RFARM_CHAOS_NODES (4), RFARM_CHAOS_CHUNK (2),
RFARM_CHAOS_SECONDS (most seconds of killing, 150).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest

from tests.support.farm import Farm, wait_for
from tests.support.wire import (
    all_terminal,
    audit,
    lift_quotas,
    login,
    query,
    submit,
    succeeded_frames_match,
)

JOBS = int(os.environ.get("RFARM_CHAOS_JOBS", "200"))
NODES = int(os.environ.get("RFARM_CHAOS_NODES", "4"))
CHUNK = int(os.environ.get("RFARM_CHAOS_CHUNK", "2"))
CHAOS_SECONDS = float(os.environ.get("RFARM_CHAOS_SECONDS", "150"))
FRAMES = 10


class Chaos:
    """Every 1.5-3.5 s: SIGKILL one process (a node, or now and then the gateway), start it again."""

    def __init__(self, farm: Farm, nodes: list[str], seed: int) -> None:
        self.farm = farm
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.kills: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="chaos", daemon=True)

    def start_node(self, name: str) -> None:
        self.farm.start_node(name, "--slots", "2")

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(1.5, 3.5)):
            victim = "gateway" if self.rng.random() < 0.25 else self.rng.choice(self.nodes)
            self.farm.kill(victim, signal.SIGKILL)
            self.kills["gateway" if victim == "gateway" else "node"] += 1
            time.sleep(self.rng.uniform(0.2, 1.0))
            if victim == "gateway":
                self.farm.start_gateway()
            else:
                self.start_node(victim)


@pytest.mark.timeout(CHAOS_SECONDS + 300)
def test_chaos(farm: Farm, unique: str) -> None:
    wire = login(farm, f"chaos{unique}")
    lift_quotas(farm, f"chaos{unique}")  # hundreds of submits a minute: the farm, not the quota, is tested
    nodes = [f"x{n}-{unique}" for n in range(NODES)]
    seed = int(os.environ.get("RFARM_CHAOS_SEED", str(random.randrange(1 << 30))))
    chaos = Chaos(farm, nodes, seed)
    for name in nodes:
        chaos.start_node(name)
    began = time.monotonic()
    jobs = [submit(wire, f"chaos{n}", f"1-{FRAMES}", seconds="0", chunk=CHUNK, max_attempts=20)
            for n in range(JOBS)]
    chaos.thread.start()
    try:
        deadline = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < deadline and not all_terminal(farm.database_url, jobs):
            time.sleep(1)
    finally:
        chaos.stop.set()
        chaos.thread.join(timeout=30)
    chaos_for = time.monotonic() - began
    # the farm, whole again, must finish whatever the chaos left behind
    wait_for(lambda: all_terminal(farm.database_url, jobs), timeout=120, interval=1, what="every job to end")
    took = time.monotonic() - began

    report = audit(farm.database_url, jobs)
    stale = farm.logs().count("ignored stale ")
    superseded = query(farm.database_url, "SELECT count(*) AS n FROM task_history WHERE job_id = ANY(%s) "
                       "AND from_status = 'running' AND to_status = 'queued'", (jobs,))[0]["n"]
    figures = {
        "jobs": report.jobs,
        "tasks": JOBS * -(-FRAMES // CHUNK),
        "statuses": report.statuses,
        "kills": dict(chaos.kills, total=sum(chaos.kills.values())),
        "takeovers": report.takeovers + report.expired,
        "takeovers_by_node": report.takeovers,
        "lease_expiries": report.expired,
        "attempts": report.attempts,
        "superseded_runs": superseded,
        "duplicates_suppressed": stale,
        "duplicate_transitions": len(report.duplicates),
        "illegal_transitions": len(report.illegal),
        "lost": len(report.lost),
        "seconds": round(took, 1),
        "chaos_seconds": round(chaos_for, 1),
        "seed": seed,
    }
    print("\nCHAOS FIGURES:", figures)
    assert not report.lost, report.lost
    assert not report.illegal, report.illegal[:5]
    assert not report.duplicates, report.duplicates[:5]
    assert not succeeded_frames_match(farm.database_url, jobs)
    assert sum(chaos.kills.values()) > 0
