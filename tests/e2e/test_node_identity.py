"""A node can affect only the work it really claimed (issue 11, point 6), with a real gateway,
real nodes, Redis and PostgreSQL: reports need the node's credential, a task held by one node takes
no reports from another, work items come only from gateways, and a revoked credential counts for
nothing. The attacker writes to Redis directly, as a node's Redis user can.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from broker_contracts.codec import pack, unpack
from broker_contracts.keys import LEDGER_GROUP, Keys
from broker_contracts.signing import NodeCredential, Signer, new_pair
from broker_contracts.work import NodeEvent, WorkItem
from rfarmctl import acl
from tests.support.farm import Farm, wait_for
from tests.support.wire import Wire, login, query, submit

pytestmark = pytest.mark.timeout(180)


def forge(farm: Farm, kind: str, node: str, *, signer: Signer | None = None, **fields: object) -> str:
    """XADD a report to the events stream as anyone may who can write it; returns the entry id."""
    ev = NodeEvent(kind=kind, node=node, ts=time.time(), **fields)  # type: ignore[arg-type]
    data = pack(ev.model_dump(mode="json", exclude_none=True))
    entry: dict[str, bytes] = {"m": data}
    if signer is not None:
        entry["s"] = signer.sign_event(farm.prefix, data)
    with farm.redis() as r:
        return str(r.xadd(farm.keys.events, entry).decode())  # type: ignore[union-attr]


def applied_up_to(farm: Farm, entry_id: str) -> None:
    """Wait until the ledger has read and acked every event up to ``entry_id``."""

    def done() -> bool:
        with farm.redis() as r:
            for group in r.xinfo_groups(farm.keys.events):
                if group["name"].decode() == LEDGER_GROUP:
                    last = group["last-delivered-id"].decode()
                    seen = tuple(map(int, last.split("-"))) >= tuple(map(int, entry_id.split("-")))
                    return seen and int(group["pending"]) == 0
        return False

    wait_for(done, timeout=30, what=f"the ledger to apply events up to {entry_id}")


def dead_reasons(farm: Farm) -> list[str]:
    with farm.redis() as r:
        return [unpack(fields[b"m"])["reason"] for _, fields in r.xrange(farm.keys.dead)]


def task_of(farm: Farm, job_id: int) -> dict:
    rows = query(farm.database_url, "SELECT * FROM tasks WHERE job_id = %s", (job_id,))
    assert len(rows) == 1
    return rows[0]


@pytest.fixture
def leftovers(farm: Farm) -> Iterator[list[tuple[Wire, int]]]:
    """Jobs cancelled after the test, while its gateway still runs: the tests of a run share a database."""
    jobs: list[tuple[Wire, int]] = []
    yield jobs
    for wire, job_id in jobs:
        wire.call("job.cancel", {"id": job_id})


def running(farm: Farm, job_id: int) -> dict:
    return wait_for(lambda: (t := task_of(farm, job_id))["status"] == "running" and t, what="the task running")


def test_reports_without_or_with_a_wrong_credential_change_nothing(
    farm: Farm, unique: str, leftovers: list[tuple[Wire, int]]
) -> None:
    wire = login(farm, f"victim{unique}")
    honest = f"honest-{unique}"
    farm.start_node(honest, "--grace", "0")
    job_id = submit(wire, "slow", "1", seconds="30")
    leftovers.append((wire, job_id))
    held = running(farm, job_id)
    common = {"task_id": held["id"], "job_id": job_id, "work": held["work_msg"]}
    stranger = f"nocred-{unique}"
    attempts = [
        # a name that never had a credential, on a farm that requires them: takes the task over and finishes it
        (stranger, None, uuid.uuid4().hex, "has no credential"),
        # the holder's name and run, unsigned
        (honest, None, held["run_id"], "unsigned report"),
        # the holder's name and run, signed with a key that is not the holder's
        (honest, Signer(new_pair()[0]), held["run_id"], "not signed with the credential"),
    ]
    last = ""
    for node, signer, run, _ in attempts:
        forge(farm, "started", node, signer=signer, run=run, **common)
        last = forge(farm, "succeeded", node, signer=signer, run=run, exit_code=0, done_frames=1, **common)
    applied_up_to(farm, last)

    now = task_of(farm, job_id)
    assert (now["status"], now["node"], now["run_id"], now["attempt"]) == ("running", honest, held["run_id"], 1)
    assert query(farm.database_url, "SELECT status FROM jobs WHERE id = %s", (job_id,))[0]["status"] == "running"
    reasons = dead_reasons(farm)
    for _, _, _, why in attempts:
        assert sum(why in r for r in reasons) == 2, (why, reasons)  # its started and its succeeded


def test_a_node_cannot_report_on_a_task_another_node_holds(farm: Farm, unique: str) -> None:
    wire = login(farm, f"owner{unique}")
    honest = f"honest-{unique}"
    farm.start_node(honest)
    job_id = submit(wire, "held", "1", seconds="4")
    held = running(farm, job_id)
    assert held["node"] == honest

    thief = f"thief-{unique}"
    key = Signer(NodeCredential.parse(farm.credential(thief)).seed)  # a node of the farm, credential and all
    common = {"task_id": held["id"], "job_id": job_id, "work": held["work_msg"]}
    own_run = uuid.uuid4().hex
    forge(farm, "started", thief, signer=key, run=own_run, **common)  # take it over while it is held
    forge(farm, "succeeded", thief, signer=key, run=own_run, exit_code=0, done_frames=1, **common)
    forge(farm, "progress", thief, signer=key, run=held["run_id"], done_frames=1, **common)
    # the holder's own run id, reported by the thief under its own name
    last = forge(farm, "succeeded", thief, signer=key, run=held["run_id"], exit_code=0, done_frames=1, **common)
    applied_up_to(farm, last)

    now = task_of(farm, job_id)
    assert (now["status"], now["node"], now["run_id"]) == ("running", honest, held["run_id"]), now
    assert now["done_frames"] == 0
    actors = query(farm.database_url, "SELECT actor FROM task_history WHERE task_id = %s", (held["id"],))
    assert thief not in {a["actor"] for a in actors}
    assert f"node {honest} holds it" in farm.logs()

    # the honest node's render is the one that counts
    wait_for(lambda: task_of(farm, job_id)["status"] == "succeeded", timeout=30, what="the honest render")
    done = task_of(farm, job_id)
    assert done["node"] == honest and done["run_id"] == held["run_id"]


def test_a_forged_work_item_is_not_run_by_an_honest_node(
    farm: Farm, unique: str, leftovers: list[tuple[Wire, int]]
) -> None:
    wire = login(farm, f"artist{unique}")
    farm.start_node(f"honest-{unique}", "--slots", "4", "--grace", "0")
    job_id = submit(wire, "slow", "1", seconds="30")
    leftovers.append((wire, job_id))
    held = running(farm, job_id)
    # the same task again, done in no time: had a node run it, the task would be finished by it
    forged = WorkItem(
        task_id=held["id"],
        job_id=job_id,
        seq=0,
        first=1,
        last=1,
        renderer="sleep",
        params={"seconds": "0"},
        dispatched_at=time.time(),
    )
    data = pack(forged.model_dump(mode="json"))
    stream = farm.keys.work("default")
    with farm.redis() as r:
        legit = r.xrange(stream, held["work_msg"], held["work_msg"])[0][1]
        r.xadd(stream, {"m": data})  # unsigned
        r.xadd(stream, {"m": data, "s": Signer(new_pair()[0]).sign_work(farm.prefix, data)})  # not a gateway's key
        r.xadd(stream, {"m": data, "s": legit[b"s"]})  # a gateway's signature of another item

    refused = lambda: sum("not signed by a gateway" in r for r in dead_reasons(farm))  # noqa: E731
    wait_for(lambda: refused() == 3, what="the 3 forged items refused")
    time.sleep(1.5)  # a forged seconds=0 item, had it run, would have been reported by now
    now = task_of(farm, job_id)
    assert (now["status"], now["run_id"], now["attempt"]) == ("running", held["run_id"], 1), now
    assert query(farm.database_url, "SELECT status FROM jobs WHERE id = %s", (job_id,))[0]["status"] == "running"


def test_the_node_acl_user_cannot_add_work_or_erase_streams(redis_url: str, prefix: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    users = acl.fit_to_server(admin, acl.build_users(prefix))
    try:
        acl.apply(admin, users)
        url = acl.url_for(redis_url, next(u for u in users if u.role == "node"))
        keys = Keys(prefix)
        admin.xadd(keys.events, {"m": b"x"})
        admin.xadd(keys.dead, {"m": b"x"})
        with redis.Redis.from_url(url) as node:
            node.xgroup_create(keys.work("default"), "nodes", id="0", mkstream=True)
            assert node.set(keys.node("n1"), b"alive", px=1000) and node.delete(keys.node("n1")) == 1
            refused = {
                "XADD work": lambda: node.xadd(keys.work("default"), {"m": b"forged"}),
                "DEL events": lambda: node.delete(keys.events),
                "DEL dead": lambda: node.delete(keys.dead),
                "SET events": lambda: node.set(keys.events, b"x"),
                "SET work key": lambda: node.set(keys.work_key, b"x" * 32),
                "XTRIM events": lambda: node.xtrim(keys.events, maxlen=0),
                "XDEL dead": lambda: node.xdel(keys.dead, "0-1"),
            }
            for what, call in refused.items():
                with pytest.raises(redis.exceptions.NoPermissionError):
                    call()
                    pytest.fail(f"{what} was allowed")
        assert admin.xlen(keys.events) == 1 and admin.xlen(keys.dead) == 1
    finally:
        admin.execute_command("ACL", "DELUSER", *[u.name for u in users])
        admin.close()


def test_a_revoked_node_is_refused(farm: Farm, unique: str, leftovers: list[tuple[Wire, int]]) -> None:
    wire = login(farm, f"rev{unique}")
    name = f"rev-{unique}"
    farm.start_node(name, "--grace", "0")
    first = submit(wire, "before", "1")
    wait_for(lambda: task_of(farm, first)["status"] == "succeeded", what="a render before the revocation")

    res = farm.rfarmctl("node-credential", "revoke", name)
    assert res.code == 0, res
    listed = farm.rfarmctl("node-credential", "list")
    assert any(line.startswith(name) and "revoked" in line for line in listed.out.splitlines()), listed
    time.sleep(2.5)  # the gateway reads credentials again within 2 s
    second = submit(wire, "after", "1")
    leftovers.append((wire, second))
    wait_for(lambda: any(f"credential of node {name} is revoked" in r for r in dead_reasons(farm)), what="refusal")
    time.sleep(2)
    assert task_of(farm, second)["status"] == "queued"
    assert f"the credential of node {name} is revoked" in farm.logs()
    # the work entry the revoked node took and acked is published again for a node that counts
    farm.kill(name)
    farm.start_node(f"new-{unique}")
    wait_for(lambda: task_of(farm, second)["status"] == "succeeded", what="the task rendered by a credentialed node")
    assert task_of(farm, second)["node"] == f"new-{unique}"


@pytest.mark.parametrize(
    ("args", "credential", "says"),
    [
        ([], "not-a-credential", "RFARM_NODE_CREDENTIAL: not an rfarm node credential"),
        (["--name", "other"], "GOOD", "not the name the credential was issued to"),
        (["--credential-file", "/nonexistent/node.cred"], "", "cannot read --credential-file"),
    ],
)
def test_a_node_with_an_unusable_credential_exits_2_with_one_line(args: list[str], credential: str, says: str) -> None:
    if credential == "GOOD":
        credential = NodeCredential.new("render-07", new_pair()[1]).text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFARM_")}
    env.update(RFARM_REDIS_URL="redis://127.0.0.1:1/0", RFARM_NODE_CREDENTIAL=credential)
    done = subprocess.run(
        [sys.executable, "-m", "render_nodes", *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_node_credential_add_list_revoke_from_the_command_line(farm: Farm, unique: str) -> None:
    name = f"cli-{unique}"
    added = farm.rfarmctl("node-credential", "add", name)
    assert added.code == 0, added
    credential = NodeCredential.parse(added.out)
    stored = query(farm.database_url, "SELECT public_key FROM node_credentials WHERE name = %s", (name,))
    assert bytes(stored[0]["public_key"]) == credential.public_key  # only the public key is kept
    again = farm.rfarmctl("node-credential", "add", name)
    assert again.code == 1 and "already has a credential" in again.err and again.out == "", again
    assert farm.rfarmctl("node-credential", "add", name, "--replace").code == 0
    bad = farm.rfarmctl("node-credential", "add", "no good")
    assert bad.code == 2 and bad.err.count("\n") == 1, bad
    assert farm.rfarmctl("node-credential", "revoke", name).code == 0
    assert farm.rfarmctl("node-credential", "revoke", name).code == 1
    assert farm.rfarmctl("node-credential", "add", name).code == 0  # a revoked name may get a new one
    listed = farm.rfarmctl("node-credential", "list")
    assert any(line.split()[:1] == [name] and line.endswith("active") for line in listed.out.splitlines()), listed
