"""Redis failover under a running farm: a private primary, a replica and three sentinels
(tests/support/sentinel.py); every process is given only the redis+sentinel:// URL. The primary is
killed with SIGKILL while jobs run: the sentinels promote the replica, and two gateways, three
nodes and an open shell must follow it by themselves, every job must finish, nothing counted may
go wrong. Size by environment: RFARM_FAILOVER_JOBS (6), RFARM_FAILOVER_FRAMES (8).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rfarmctl import acl
from tests.support.farm import Farm, wait_for
from tests.support.probe import Prober, database_now, fault_line, first_start_after
from tests.support.sentinel import sentinel_group
from tests.support.wire import all_terminal, audit, lift_quotas, login, query, submit, succeeded_frames_match, token_of

JOBS = int(os.environ.get("RFARM_FAILOVER_JOBS", "6"))
FRAMES = int(os.environ.get("RFARM_FAILOVER_FRAMES", "8"))

pytestmark = pytest.mark.timeout(300)


def running(farm: Farm, job_ids: list[int]) -> int:
    rows = query(farm.database_url, "SELECT count(*) AS n FROM tasks WHERE job_id = ANY(%s) AND status = 'running'",
                 (job_ids,))
    return int(rows[0]["n"])


def test_primary_killed_replica_promoted_everyone_follows(
    tmp_path: Path, database_url: str, prefix: str, unique: str
) -> None:
    with sentinel_group(tmp_path) as group:
        farm = Farm(root=tmp_path, redis_url=group.url(), database_url=database_url, prefix=prefix)
        try:
            farm.start_gateway("gw1")
            farm.start_gateway("gw2")
            for n in range(3):
                farm.start_node(f"s{n}-{unique}", "--slots", "2")
            user = f"s{unique}"
            wire = login(farm, user)
            lift_quotas(farm, user)
            jobs = [submit(wire, f"f{n}", f"1-{FRAMES}", seconds="0.5") for n in range(JOBS)]
            wait_for(lambda: running(farm, jobs) >= 4, timeout=60, what="renders running")
            old = group.master_address()
            assert old == (group.primary.host, group.primary.port), old

            with Prober(farm, token_of(farm, user)) as shell:
                killed_db = database_now(database_url)
                killed = time.monotonic()
                group.primary.kill()
                wait_for(lambda: group.master_address() == (group.replica.host, group.replica.port),
                         timeout=60, what="the sentinels to promote the replica")
                promoted = time.monotonic() - killed
                wait_for(lambda: all_terminal(database_url, jobs), timeout=180, interval=0.5,
                         what="every job to end")
                wait_for(lambda: shell.first_answer_after(killed) is not None, timeout=60,
                         what="the open shell to get an answer")
            answered = shell.first_answer_after(killed)
            started = first_start_after(database_url, jobs, killed_db)
            assert answered is not None and started is not None, (answered, started)
            report = audit(database_url, jobs)
            print(f"\nsentinel failover: replica promoted {promoted:.1f} s after the kill; first answered "
                  f"request after {answered:.1f} s, first new task start after {started:.1f} s; "
                  f"{len(shell.asked)} shell requests")
            print(fault_line(report, shell.unanswered, max(answered, started)))
            assert report.statuses == {"succeeded": len(jobs)}, report
            assert not report.lost and not report.illegal and not report.duplicates, report
            assert not succeeded_frames_match(database_url, jobs)
            assert shell.unanswered == 0 and not shell.refused, (shell.unanswered, shell.refused[:3])
            # after the failover the processes serve from the new primary alone
            assert wire.call("auth.whoami", {}).ok
            for name in ("gw1", "gw2", *(f"s{n}-{unique}" for n in range(3))):
                assert farm.procs[name].poll() is None, f"{name} exited"
            assert "Traceback" not in farm.logs(), farm.logs()[-3000:]
        finally:
            farm.stop()


def test_acl_users_go_to_the_primary_and_every_replica_and_each_role_follows_the_sentinels(
    tmp_path: Path, database_url: str, prefix: str, unique: str
) -> None:
    with sentinel_group(tmp_path) as group:
        with group.primary.client() as r:
            if acl.redis_version(r)[0] < acl.MIN_REDIS_MAJOR:
                pytest.skip("this machine's redis-server is older than 7: no ACL key selectors")
        farm = Farm(root=tmp_path, redis_url=group.url(), database_url=database_url, prefix=prefix)
        made = farm.rfarmctl("redis-acl", "--apply")
        assert made.code == 0, made
        names = {f"rfarm-{prefix}-{role}" for role in ("gateway", "node", "shell")}
        for server in (group.primary, group.replica):  # ACL SETUSER is not replicated: each got them
            with server.client() as r:
                users = {u.decode() for u in r.execute_command("ACL", "USERS")}
            assert names <= users, (server.name, users)
        urls = dict(line.split(None, 1) for line in made.out.splitlines() if line.startswith(("gateway ", "node ",
                                                                                                 "shell ")))
        assert all(u.strip().startswith("redis+sentinel://rfarm-") for u in urls.values()), urls
        assert "***" not in made.out and "Traceback" not in made.err
        try:  # every role on its own ACL user, through the sentinels; then the primary dies
            farm.start_gateway("gw", RFARM_REDIS_URL=urls["gateway"].strip())
            farm.start_node(f"a-{unique}", "--slots", "2", RFARM_REDIS_URL=urls["node"].strip())
            shell_url = urls["shell"].strip()
            user = farm.user(f"a{unique}")
            assert farm.rfarm("whoami", config=user, RFARM_REDIS_URL=shell_url).code == 0
            group.primary.kill()
            wait_for(lambda: group.master_address() == (group.replica.host, group.replica.port),
                     timeout=60, what="the sentinels to promote the replica")
            done = farm.rfarm("submit", "after", "--frames", "1-2", "--renderer", "sleep", "--timeout", "30",
                              config=user, RFARM_REDIS_URL=shell_url)
            assert done.code == 0, done
        finally:
            farm.stop()
