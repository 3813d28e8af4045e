"""Servers restarted under a running farm: Redis comes back empty, PostgreSQL comes back.

Each test runs its own private server (tests/servers.py); the shared ones are never touched.
"""

from __future__ import annotations

import time

import pytest

from broker_contracts.messages import ListReply
from tests.support.farm import Farm, wait_for
from tests.support.servers import PostgresCluster
from tests.support.wire import all_terminal, audit, login, query, submit

pytestmark = pytest.mark.timeout(240)


def lines_since(farm: Farm, name: str, mark: int) -> list[str]:
    return (farm.root / f"{name}.log").read_text(errors="replace").splitlines()[mark:]


def log_length(farm: Farm, name: str) -> int:
    return len((farm.root / f"{name}.log").read_text(errors="replace").splitlines())


def counts(farm: Farm, job_ids: list[int]) -> dict[str, int]:
    rows = query(farm.database_url, "SELECT status, count(*) AS n FROM tasks WHERE job_id = ANY(%s) GROUP BY 1",
                 (job_ids,))
    return {r["status"]: r["n"] for r in rows}


def test_redis_restarted_empty_mid_run(redis_farm: tuple[Farm, object], unique: str) -> None:
    farm, server = redis_farm
    wire = login(farm, f"r{unique}")
    keeper, doomed = f"keep-{unique}", f"doomed-{unique}"
    farm.start_node(keeper, "--slots", "2")
    farm.start_node(doomed, "--slots", "2")
    jobs = [submit(wire, f"r{n}", "1-6", seconds="0.6") for n in range(5)]
    wait_for(lambda: counts(farm, jobs).get("running", 0) >= 3, what="renders running")
    mark = log_length(farm, "gateway")

    server.kill()  # type: ignore[attr-defined]
    farm.kill(doomed)  # its running tasks can only come back through their lapsed leases
    time.sleep(3)
    server.start()  # type: ignore[attr-defined]  # back, and empty: no streams, no groups
    restarted = time.monotonic()

    wait_for(lambda: all_terminal(farm.database_url, jobs), timeout=150, what="every job to end")
    report = audit(farm.database_url, jobs)
    print(f"redis restart: jobs finished {time.monotonic() - restarted:.1f} s after it came back; {report}")
    assert report.statuses == {"succeeded": len(jobs)}, report
    assert not report.illegal, report.illegal
    assert not report.duplicates, report.duplicates
    assert not report.lost

    r = farm.redis()
    groups = {
        farm.keys.requests: "gateway",
        farm.keys.events: "ledger",
        farm.keys.work("default"): "nodes",
    }
    for stream, group in groups.items():
        names = [g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in r.xinfo_groups(stream)]
        assert group in names, (stream, names)
    assert wire.call("auth.whoami", {}).ok  # requests flow again

    logged = lines_since(farm, "gateway", mark)
    print(f"gateway log: {len(logged)} lines from the outage on")
    assert len(logged) < 60, "\n".join(logged)  # one line per outage per loop, not one per retry
    assert not any("Traceback" in line for line in logged), "\n".join(logged)


def test_postgres_restarted_mid_run(pg_farm: tuple[Farm, PostgresCluster], unique: str) -> None:
    farm, cluster = pg_farm
    user = f"q{unique}"
    wire = login(farm, user)
    farm.start_node(f"q1-{unique}", "--slots", "2")
    farm.start_node(f"q2-{unique}", "--slots", "2")
    jobs = [submit(wire, f"q{n}", "1-6", seconds="0.5") for n in range(4)]
    wait_for(lambda: counts(farm, jobs).get("running", 0) >= 2, what="renders running")
    mark = log_length(farm, "gateway")

    cluster.kill()  # a crash, not a polite shutdown
    during = wire.envelope("job.list", {})
    wire.send(during)  # waits in the stream for the database
    shell = farm.rfarm("--timeout", "3", "jobs", config=user, timeout=60)
    assert shell.code == 3, shell  # the farm did not answer: said plainly, in one line
    assert len(shell.err.strip().splitlines()) == 1 and "Traceback" not in shell.err, shell.err
    assert "farm is unavailable" in shell.err, shell.err
    time.sleep(4)
    cluster.start()

    answered = wire.wait(during, timeout=60)  # the request made during the outage, answered now
    assert answered is not None and answered.ok, answered
    assert {j.id for j in ListReply.model_validate(answered.body).jobs} == set(jobs)
    wait_for(lambda: all_terminal(farm.database_url, jobs), timeout=120, what="every job to end")
    report = audit(farm.database_url, jobs)
    print(f"postgres restart: {report}")
    assert report.statuses == {"succeeded": len(jobs)}, report
    assert not report.illegal and not report.duplicates and not report.lost, report
    assert farm.rfarm("jobs", config=user).code == 0

    logged = lines_since(farm, "gateway", mark)
    print(f"gateway log: {len(logged)} lines from the outage on")
    assert len(logged) < 60, "\n".join(logged)
    assert farm.redis().xlen(farm.keys.dead) == 0  # nothing given up for the database's absence
