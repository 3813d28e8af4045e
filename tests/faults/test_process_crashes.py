"""Processes killed at the worst moment: a node mid-render, the gateway around its commit,
and one work message delivered to two nodes at once."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from broker_contracts.codec import unpack
from broker_contracts.envelope import Reply, decode_reply
from tests.support.farm import BIN, Farm, wait_for
from tests.support.wire import all_terminal, audit, login, query, submit

pytestmark = pytest.mark.timeout(180)


def running_on(farm: Farm, job_id: int) -> dict[int, str]:
    rows = query(farm.database_url, "SELECT id, node FROM tasks WHERE job_id = %s AND status = 'running'", (job_id,))
    return {r["id"]: r["node"] for r in rows}


def test_node_sigkilled_mid_render_is_taken_over(farm: Farm, unique: str) -> None:
    wire = login(farm, f"k{unique}")
    for n in range(2):
        farm.start_node(f"k{n}-{unique}", "--slots", "2")
    job_id = submit(wire, "takeover", "1-8", seconds="1.2")
    running = wait_for(lambda: running_on(farm, job_id), what="renders running")
    victim = sorted(set(running.values()))[0]
    doomed = [t for t, node in running.items() if node == victim]
    time.sleep(0.3)  # the renderer is mid-frame
    farm.kill(victim)
    wait_for(lambda: all_terminal(farm.database_url, [job_id]), timeout=90, what="the job to end")

    report = audit(farm.database_url, [job_id])
    assert report.statuses == {"succeeded": 1}, report
    assert not report.illegal, report.illegal
    assert not report.duplicates, report.duplicates
    for task_id in doomed:
        rows = query(farm.database_url, "SELECT attempt, to_status, reason, actor FROM task_history "
                     "WHERE task_id = %s ORDER BY id", (task_id,))
        assert any("lease" in r["reason"] and victim in r["reason"] for r in rows), rows
        finished = [r for r in rows if r["to_status"] == "succeeded"]
        assert len(finished) == 1 and finished[0]["actor"] != victim, rows
    frames = sorted(p.name for p in (farm.output_root / f"job-{job_id}").iterdir())
    assert frames == [f"frame_{n:04d}.txt" for n in range(1, 9)]


def _replies_to(farm: Farm, client: str, request_id: str) -> list[Reply]:
    items = farm.redis().xrange(farm.keys.reply(client))
    out = []
    for _, fields in items:
        msg = decode_reply(fields[b"m"])
        if isinstance(msg, Reply) and msg.re == request_id:
            out.append(msg)
    return out


def _jobs_named(farm: Farm, name: str) -> list[dict]:
    return query(farm.database_url, "SELECT id FROM jobs WHERE name = %s", (name,))


def test_gateway_killed_after_commit_gives_one_effect_and_the_same_reply(farm: Farm, unique: str) -> None:
    wire = login(farm, f"a{unique}")
    farm.stop()
    crashing = farm.start_gateway("gw-after", RFARM_FAULT_POINT="after_commit")
    name = f"once-{unique}"
    env = wire.envelope("job.submit", {"name": name, "renderer": "sleep", "params": {"seconds": "0"}})
    wire.send(env)
    assert crashing.wait(timeout=30) == 86  # committed, then died before reply and ack
    farm.procs.pop("gw-after")
    assert wire.wait(env, timeout=0.5) is None
    assert len(_jobs_named(farm, name)) == 1  # the effect is there already

    farm.start_gateway("gw-next")
    wire.send(env)  # the shell's side: it timed out and resends the very same envelope
    first = wire.wait(env, timeout=20)
    assert first is not None and first.ok, first
    # the unacked entry of the dead gateway is claimed after claim-idle and answered too, alike
    wait_for(lambda: len(_replies_to(farm, wire.client, env.id)) >= 2, timeout=20, what="the redelivered reply")
    replies = _replies_to(farm, wire.client, env.id)
    assert all(r == first for r in replies), replies
    assert [j["id"] for j in _jobs_named(farm, name)] == [first.body["id"]]  # type: ignore[index]
    assert query(farm.database_url, "SELECT count(*) AS n FROM inbox WHERE request_id = %s", (env.id,))[0]["n"] == 1
    pending = farm.redis().xpending(farm.keys.requests, "gateway")
    assert pending["pending"] == 0


def test_shell_resend_after_gateway_restart_gets_the_stored_reply(farm: Farm, unique: str) -> None:
    """The real `rfarm`: its first send dies with the gateway; its resend (same id) is answered."""
    user = f"s{unique}"
    farm.user(user)
    farm.stop()
    crashing = farm.start_gateway("gw-crash", RFARM_FAULT_POINT="after_commit")
    name = f"shell-once-{unique}"
    shell = subprocess.Popen(
        [str(BIN / "rfarm"), "--timeout", "6", "submit", name, "--renderer", "sleep", "--param", "seconds=0",
         "--json"],
        env=farm.env(RFARM_CONFIG_DIR=str(farm.root / user)), cwd=farm.root,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert crashing.wait(timeout=30) == 86
    farm.procs.pop("gw-crash")
    farm.start_gateway("gw-back")
    out, err = shell.communicate(timeout=40)
    assert shell.returncode == 0, err
    jobs = _jobs_named(farm, name)
    assert [j["id"] for j in jobs] == [json.loads(out)["id"]], out


def test_gateway_killed_before_commit_processes_the_request_once(farm: Farm, unique: str) -> None:
    wire = login(farm, f"b{unique}")
    farm.stop()
    crashing = farm.start_gateway("gw-before", RFARM_FAULT_POINT="before_commit")
    name = f"before-{unique}"
    env = wire.envelope("job.submit", {"name": name, "renderer": "sleep", "params": {"seconds": "0"}})
    wire.send(env)
    assert crashing.wait(timeout=30) == 87  # died inside the transaction: nothing committed
    farm.procs.pop("gw-before")
    assert _jobs_named(farm, name) == []
    farm.start_gateway("gw-again")
    reply = wire.wait(env, timeout=30)  # no resend: the pending entry itself is claimed and done
    assert reply is not None and reply.ok, reply
    assert [j["id"] for j in _jobs_named(farm, name)] == [reply.body["id"]]  # type: ignore[index]
    hist = query(farm.database_url, "SELECT count(*) AS n FROM job_history WHERE job_id = %s AND from_status IS NULL",
                 (reply.body["id"],))  # type: ignore[index]
    assert hist[0]["n"] == 1


def test_one_work_message_on_two_nodes_gives_one_accepted_result(farm: Farm, unique: str) -> None:
    wire = login(farm, f"d{unique}")
    first = f"d1-{unique}"
    farm.start_node(first)
    job_id = submit(wire, "twice", "1", seconds="2")
    wait_for(lambda: running_on(farm, job_id), what="the first node to start")
    task = query(farm.database_url, "SELECT id, work_msg, pool FROM tasks WHERE job_id = %s", (job_id,))[0]
    r = farm.redis()
    stream = farm.keys.work(task["pool"])
    [(_, fields)] = r.xrange(stream, task["work_msg"], task["work_msg"])
    assert unpack(fields[b"m"])["task_id"] == task["id"]
    second = f"d2-{unique}"
    farm.start_node(second)
    r.xadd(stream, fields)  # the same work message again: now two nodes render the same task
    wait_for(lambda: all_terminal(farm.database_url, [job_id]), timeout=60, what="the job to end")
    time.sleep(2.5)  # the first node's late report arrives, and must change nothing
    report = audit(farm.database_url, [job_id])
    assert report.statuses == {"succeeded": 1}, report
    assert not report.illegal and not report.duplicates, report
    rows = query(farm.database_url, "SELECT attempt, from_status, to_status, actor FROM task_history "
                 "WHERE task_id = %s ORDER BY id", (task["id"],))
    # the copy is not the task's work entry: the node that holds the claim keeps it and its result counts
    starts = [r["actor"] for r in rows if r["to_status"] == "running"]
    assert starts == [first], rows
    accepted = [r for r in rows if r["to_status"] == "succeeded"]
    assert len(accepted) == 1 and accepted[0]["actor"] == first, rows
    assert f"ignored started report of task {task['id']} from node {second}: node {first} holds it" in farm.logs()

