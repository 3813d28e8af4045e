"""A farm on seven hosts (network namespaces, tests/support/netns.py) and the network's faults.

A server host runs a private Redis (on SUBNET.10) and a private PostgreSQL (on SUBNET.11), two
gateway hosts run a gateway each, three node hosts a node each, and a shell host an open shell
asking the farm all along. Each process runs in its host's namespace and reaches the others only
by address. With jobs running: a node host's cable is pulled mid-render and put back; a gateway
host is cut off Redis, then off PostgreSQL only; a node host gets 200 ms of latency and 5 % loss.
Each test prints ``lost 0, duplicates 0, illegal 0, unanswered 0, recovered in N s``.

Needs root and iproute2: skipped without them, failed instead in CI. Sizes by environment:
RFARM_NETNS_JOBS (4), RFARM_NETNS_FRAMES (6), RFARM_NETNS_SECONDS (a frame's render, 0.8).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from broker_contracts.keys import GATEWAY_GROUP
from tests.support.farm import Farm, wait_for
from tests.support.netns import (
    NAME_PREFIX,
    SUBNET,
    NetFarm,
    clean_leftovers,
    has_netem,
    ip,
    namespace_farm,
    require_netns,
)
from tests.support.probe import ShellProbe, database_now, fault_line, first_start_after
from tests.support.sentinel import Server, sentinel_group
from tests.support.servers import private_postgres
from tests.support.wire import Audit, Wire, all_terminal, audit, lift_quotas, login, query, submit, token_of

JOBS = int(os.environ.get("RFARM_NETNS_JOBS", "4"))
FRAMES = int(os.environ.get("RFARM_NETNS_FRAMES", "6"))
SECONDS = os.environ.get("RFARM_NETNS_SECONDS", "0.8")

pytestmark = pytest.mark.timeout(300)


class Hosts:
    """The namespace farm with its servers: made once for the module."""

    def __init__(self, net: NetFarm, redis_url: str, database_url: str) -> None:
        self.net = net
        self.redis_url = redis_url
        self.database_url = database_url


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    root = tmp_path_factory.mktemp("netns")
    with ExitStack() as stack:
        net = stack.enter_context(namespace_farm())
        server = net["server"]
        from rfarmctl.embedded import free_port

        r = Server("redis", root / "redis", net.redis_address, free_port(),
                   ["save \"\"", "appendonly no", "maxmemory-policy noeviction"], run=server.run)
        stack.callback(r.kill)
        r.start()
        database_url, _ = stack.enter_context(private_postgres(
            root, host=net.postgres_address, run=server.run, clients=f"{SUBNET}.0/24"))
        # a lost link is noticed within about 3 s (the gateway's defaults: 10 s; store/db.py)
        database_url += "?tcp_user_timeout=3000&keepalives_idle=2&keepalives_interval=1&keepalives_count=2"
        yield Hosts(net, f"redis://{net.redis_address}:{r.port}/0", database_url)


def placed_farm(hosts: Hosts, root: Path, prefix: str, redis_url: str) -> Farm:
    """Gateways gw1/gw2 on their hosts, nodes n1..n3 on node1..node3, rfarm and the probe on the
    shell host."""
    net = hosts.net
    placement = {"gw1": net["gw1"].run, "gw2": net["gw2"].run, "shell": net["shell"].run,
                 "probe": net["shell"].run, "ctl": net["shell"].run}
    placement.update({f"n{i}": net[f"node{i}"].run for i in (1, 2, 3)})
    return Farm(root=root, redis_url=redis_url, database_url=hosts.database_url, prefix=prefix, placement=placement)


@pytest.fixture
def farm(hosts: Hosts, tmp_path: Path, unique: str) -> Iterator[Farm]:
    """The placed farm on the server host's Redis, its two gateways started."""
    net = hosts.net
    f = placed_farm(hosts, tmp_path, f"rfn{unique}", hosts.redis_url)
    try:
        f.start_gateway("gw1")
        f.start_gateway("gw2")
        yield f
    finally:
        f.stop()
        for host, to in list(net.cuts):
            net.restore_route(host, to)
        for i in (1, 2, 3):
            net.restore_link(f"node{i}")
            net.clear_netem(f"node{i}")


def start_nodes(farm: Farm) -> None:
    for i in (1, 2, 3):
        farm.start_node(f"n{i}", "--slots", "2")


def jobs_running(farm: Farm, user: str) -> tuple[Wire, list[int]]:
    wire = login(farm, user)
    lift_quotas(farm, user)
    jobs = [submit(wire, f"net{n}", f"1-{FRAMES}", seconds=SECONDS, max_attempts=10) for n in range(JOBS)]
    wait_for(lambda: running(farm, jobs) >= 3, timeout=60, what="renders running")
    return wire, jobs


def running(farm: Farm, jobs: list[int], node: str | None = None) -> int:
    sql = "SELECT count(*) AS n FROM tasks WHERE job_id = ANY(%s) AND status = 'running'"
    args: tuple[object, ...] = (jobs,)
    if node is not None:
        sql += " AND node = %s"
        args = (jobs, node)
    return int(query(farm.database_url, sql, args)[0]["n"])


def starts_by(farm: Farm, jobs: list[int], node: str, after: object) -> int:
    rows = query(farm.database_url, "SELECT count(*) AS n FROM task_history WHERE job_id = ANY(%s) "
                 "AND to_status = 'running' AND actor = %s AND at > %s", (jobs, node, after))
    return int(rows[0]["n"])


def finish(farm: Farm, jobs: list[int], shell: ShellProbe, fault_db: object, fault_at: float,
           what: str, recovered: float | None = None) -> Audit:
    """Wait for every job, audit, print the counts. ``recovered`` (seconds from the fault until the
    farm works around it) defaults to the later of the first answer and the first task start."""
    wait_for(lambda: all_terminal(farm.database_url, jobs), timeout=180, interval=0.5, what="every job to end")
    answered = shell.first_answer_after(fault_at)
    started = first_start_after(farm.database_url, jobs, fault_db)  # type: ignore[arg-type]
    report = audit(farm.database_url, jobs)
    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.1f} s"

    print(f"\n{what}: first answered request after {seconds(answered)}, first new task start after {seconds(started)}; "
          f"{len(shell.asked)} shell requests, takeovers {report.takeovers + report.expired}")
    if recovered is None:
        recovered = max(answered or 0.0, started or 0.0)
    print(fault_line(report, shell.unanswered, recovered))
    assert answered is not None and started is not None, (answered, started)
    assert report.statuses == {"succeeded": len(jobs)}, report
    assert not report.lost and not report.illegal and not report.duplicates, report
    assert shell.unanswered == 0 and not shell.refused, (shell.unanswered, shell.refused[:3])
    return report


def on_own_host(farm: Farm, net: NetFarm) -> None:
    """Each process runs in its host's namespace, not in the machine's."""
    own = os.stat("/proc/self/ns/net").st_ino
    hosts = {"gw1": "gw1", "gw2": "gw2", "n1": "node1", "n2": "node2", "n3": "node3", "probe": "shell"}
    for name, host in hosts.items():
        if name not in farm.procs:
            continue
        inode = os.stat(f"/proc/{farm.procs[name].pid}/ns/net").st_ino
        expected = os.stat(f"/run/netns/{net[host].netns}").st_ino
        assert inode != own and inode == expected, (name, host)


def test_leftovers_of_a_crashed_run_are_removed() -> None:
    require_netns()
    dead = 0x3FFFFE  # above any pid this machine hands out (pid_max is at most 4194304)
    tag = f"{NAME_PREFIX}{dead:06x}"
    ip("netns", "add", f"{tag}-server")
    ip("link", "add", f"{tag}br", "type", "bridge")
    ip("link", "add", f"{tag}v0", "type", "veth", "peer", "name", f"{tag}i0")
    try:
        removed = clean_leftovers()
        assert {f"{tag}-server", f"{tag}br", f"{tag}v0"} <= set(removed), removed
        assert f"{tag}-server" not in ip("netns", "list").stdout
        assert tag not in ip("-o", "link", "show").stdout
    finally:
        ip("netns", "del", f"{tag}-server", check=False)
        ip("link", "del", f"{tag}br", check=False)
        ip("link", "del", f"{tag}v0", check=False)


def test_a_farm_on_seven_hosts_renders(hosts: Hosts, farm: Farm, unique: str) -> None:
    start_nodes(farm)
    user = f"m{unique}"
    _, jobs = jobs_running(farm, user)
    with ShellProbe(farm, token_of(farm, user)) as shell:
        on_own_host(farm, hosts.net)
        began_db, began = database_now(farm.database_url), time.monotonic()
        report = finish(farm, jobs, shell, began_db, began, "seven hosts")
    nodes = {r["node"] for r in query(farm.database_url, "SELECT DISTINCT node FROM tasks WHERE job_id = ANY(%s)",
                                      (jobs,))}
    assert nodes == {"n1", "n2", "n3"}, nodes  # every node host took work
    assert report.takeovers + report.expired == 0
    assert farm.rfarm("jobs", config=f"m{unique}").code == 0  # the shell host's rfarm, by address


def test_node_host_cable_pulled_mid_render_then_back(hosts: Hosts, farm: Farm, unique: str) -> None:
    net = hosts.net
    start_nodes(farm)
    user = f"c{unique}"
    wire, jobs = jobs_running(farm, user)
    wait_for(lambda: running(farm, jobs, "n1") >= 1, timeout=60, what="n1 rendering")
    with ShellProbe(farm, token_of(farm, user)) as shell:
        cut_db, cut = database_now(farm.database_url), time.monotonic()
        net.cut_link("node1")
        # its tasks are taken over once their lease lapses, and run elsewhere
        wait_for(lambda: running(farm, jobs, "n1") == 0, timeout=60, what="n1's tasks taken over")
        taken = time.monotonic() - cut
        time.sleep(farm.lease)  # n1 renders on, reports nothing: its reports wait for the cable
        back_db = database_now(farm.database_url)
        net.restore_link("node1")
        jobs.append(submit(wire, "after", f"1-{FRAMES * 2}", seconds=SECONDS, max_attempts=10))  # work to rejoin
        wait_for(lambda: starts_by(farm, jobs, "n1", back_db) >= 1, timeout=90, what="n1 to take work again")
        report = finish(farm, jobs, shell, cut_db, cut, f"node link cut (taken over after {taken:.1f} s)",
                        recovered=taken)
    assert report.takeovers + report.expired >= 1, report  # the lease did its work
    rejoined = starts_by(farm, jobs, "n1", back_db)
    late = farm.logs().count("ignored stale ")
    print(f"n1 after the cable came back: {rejoined} task starts; {late} late reports ignored")
    assert rejoined >= 1


def consumers_of(r: redis.Redis, farm: Farm, gateway: str) -> list[dict]:
    found = r.xinfo_consumers(farm.keys.requests, GATEWAY_GROUP)
    names = [(c, c["name"].decode() if isinstance(c["name"], bytes) else c["name"]) for c in found]
    return [c for c, name in names if name == gateway or name.startswith(f"{gateway}.")]


@pytest.mark.parametrize("server", ["redis", "postgresql"])
def test_gateway_host_cut_off_a_server(hosts: Hosts, farm: Farm, unique: str, server: str) -> None:
    net = hosts.net
    start_nodes(farm)
    user = f"g{server[0]}{unique}"
    _, jobs = jobs_running(farm, user)
    to = net.redis_address if server == "redis" else net.postgres_address
    r = farm.redis()
    with ShellProbe(farm, token_of(farm, user)) as shell:
        cut_db, cut = database_now(farm.database_url), time.monotonic()
        net.cut_route("gw1", to)
        time.sleep(8)  # the other gateway serves meanwhile (the shell keeps asking)
        if server == "postgresql":
            # the cut gateway stops taking requests it cannot answer: it no longer reads the stream
            held = sum(int(c["pending"]) for c in consumers_of(r, farm, "gw1"))
            idle = min(int(c["idle"]) for c in consumers_of(r, farm, "gw1"))
            print(f"gw1 cut off postgresql: {held} requests held, its readers idle {idle} ms")
            assert held == 0 and idle > 2000, (held, idle)
        net.restore_route("gw1", to)
        back = time.monotonic()
        # the other gateway goes away: the one that was cut must answer alone now
        farm.kill("gw2", signal.SIGTERM)
        alone_from = time.monotonic()
        wait_for(lambda: shell.first_answer_after(alone_from) is not None, timeout=60,
                 what="the cut gateway to answer again")
        alone = shell.first_answer_after(alone_from)
        print(f"gw1 answers alone; its link came back {alone_from - back:.1f} s before gw2 left, "
              f"first answer {alone:.1f} s after that")
        farm.start_gateway("gw2")
        finish(farm, jobs, shell, cut_db, cut, f"gateway cut off {server}")


def test_node_host_with_latency_and_loss(hosts: Hosts, farm: Farm, unique: str) -> None:
    if not has_netem():
        pytest.skip("this kernel has no sch_netem (tc netem)")
    net = hosts.net
    # a lease of 5 s (production: 30 s) against 200 ms and 5 % loss: the node's heartbeats every
    # 0.5 s and its reports are late and now and then resent by TCP, never 5 s late
    farm.lease = 5.0
    for gateway in ("gw1", "gw2"):
        farm.kill(gateway, signal.SIGTERM)
        farm.start_gateway(gateway)
    net.netem("node1", "delay", "200ms", "loss", "5%")
    start_nodes(farm)
    user = f"l{unique}"
    _, jobs = jobs_running(farm, user)
    with ShellProbe(farm, token_of(farm, user)) as shell:
        began_db, began = database_now(farm.database_url), time.monotonic()
        report = finish(farm, jobs, shell, began_db, began, "200 ms and 5 % loss on node1")
    by_n1 = query(farm.database_url, "SELECT count(*) AS n FROM task_history WHERE job_id = ANY(%s) "
                  "AND to_status = 'succeeded' AND actor = 'n1'", (jobs,))[0]["n"]
    print(f"n1 (slow link) finished {by_n1} tasks")
    assert report.takeovers + report.expired == 0, report  # no false takeovers
    assert by_n1 >= 1


def test_redis_primary_killed_sentinels_on_three_hosts(hosts: Hosts, tmp_path: Path, unique: str) -> None:
    """Sentinel across hosts: the primary on the server host, its replica on gw2's, sentinels on
    gw1's, node1's and the shell's; every process is given only the sentinel URL (addresses)."""
    net = hosts.net
    places = [(net[h].address, net[h].run) for h in ("server", "gw2", "gw1", "node1", "shell")]
    with sentinel_group(tmp_path, places=places) as group:
        farm = placed_farm(hosts, tmp_path, f"rfs{unique}", group.url())
        try:
            farm.start_gateway("gw1")
            farm.start_gateway("gw2")
            start_nodes(farm)
            user = f"h{unique}"
            _, jobs = jobs_running(farm, user)
            with ShellProbe(farm, token_of(farm, user)) as shell:
                on_own_host(farm, net)
                killed_db, killed = database_now(farm.database_url), time.monotonic()
                group.primary.kill()
                wait_for(lambda: group.master_address() == (group.replica.host, group.replica.port),
                         timeout=60, what="the sentinels to promote the replica on gw2's host")
                promoted = time.monotonic() - killed
                wait_for(lambda: shell.first_answer_after(killed) is not None, timeout=60,
                         what="the shell host to get an answer")
                finish(farm, jobs, shell, killed_db, killed, f"sentinel across hosts (promoted after {promoted:.1f} s)")
        finally:
            farm.stop()
