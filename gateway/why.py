"""`rfarm why JOB`: the facts store/why.py reads, turned into where the job stands, what it waits
for (the most decisive first) and what would start it. Other users' work is told as counts only."""

from __future__ import annotations

import math
from typing import Any

from broker_contracts import messages as m
from broker_contracts.states import JOB_TERMINAL, JobStatus
from gateway import wire
from store import jobs
from store.why import Facts, facts


def explain(conn: Any, job: dict[str, Any]) -> m.WhyReply:
    f = facts(conn, job)
    reply = m.WhyReply(job=m.JobSummary.model_validate(wire.summary(job)), tasks=f.tasks)
    if job["status"] in JOB_TERMINAL:
        reply.waits = [f"nothing: it {job['status']}"]
        if job["status"] != JobStatus.SUCCEEDED:
            reply.starts = [f"`rfarm retry {job['id']}` queues its unfinished tasks again"]
        return reply
    owner, weight = job["owner_id"], f.weights.get(job["owner_id"], 1.0)
    reply.held, reply.weight = f.held.get(owner, 0), weight
    reply.pool_slots = sum(n["slots"] for n in f.nodes)
    reply.pool_busy = sum(min(n["busy"], n["slots"]) for n in f.nodes)
    if f.tasks["ready"]:
        reply.ahead = _ahead(job, f, weight)
        reply.place = sum(reply.ahead.values()) + 1
    reply.waits, reply.starts = _reasons(conn, job, f, reply)
    return reply


def _ahead(job: dict[str, Any], f: Facts, weight: float) -> dict[str, int]:
    """What goes before the job's next ready task, by why (store/fairshare.deal's order)."""
    owner, priority = job["owner_id"], job["priority"]
    load = (f.held.get(owner, 0) + 1) / weight  # its next task's place in fair share
    out = {"window": f.window, "higher_priority": 0, "other_users": 0, "older_jobs": 0}
    for w in f.waiting:
        if w["priority"] > priority:
            out["higher_priority"] += w["n"]
        elif w["priority"] == priority and w["owner_id"] == owner and w["older"]:
            out["older_jobs"] += w["n"]
        elif w["priority"] == priority and w["owner_id"] != owner:
            # user u's k-th task goes first while (held_u + k) / weight_u < load
            w_u = f.weights.get(w["owner_id"], 1.0)
            first = max(0, math.ceil(w_u * load - f.held.get(w["owner_id"], 0)) - 1)
            out["other_users"] += min(w["n"], first)
    return {k: v for k, v in out.items() if v}


def _reasons(conn: Any, job: dict[str, Any], f: Facts, reply: m.WhyReply) -> tuple[list[str], list[str]]:
    waits: list[str] = []
    starts: list[str] = []
    jid, pool = job["id"], job["pool"]
    if job["paused"]:
        waits.append("it is paused: no new task of it starts")
        starts.append(f"`rfarm resume {jid}`")
    if job["after"]:
        dep = jobs.status_of(conn, job["after"])
        if dep is not None and dep != JobStatus.SUCCEEDED:
            waits.append(f"it starts once job {job['after']} has succeeded (that job is {dep})")
            starts.append(f"job {job['after']} succeeding")
    if not f.tasks["ready"] and not f.tasks["dispatched"]:
        if f.tasks["running"]:
            waits.append(f"nothing: its last {f.tasks['running']} task(s) are running")
        return waits, starts
    if not f.nodes:
        waits.append(f"no live render node in pool {pool!r}")
        starts.append(f"a node joining pool {pool!r} (`rfarmctl node --pool {pool}`)")
        return waits, starts
    able = [n for n in f.nodes if job["renderer"] in n["profiles"]]
    if not able:
        waits.append(f"no live node in pool {pool!r} offers the renderer {job['renderer']!r}")
        starts.append(f"a node of pool {pool!r} offering {job['renderer']!r}")
    tagged = [n for n in able if set(job["requires"]) <= set(n["tags"])]
    if able and not tagged:
        missing = sorted(set(job["requires"]) - set().union(*(set(n["tags"]) for n in able)))
        needs = ", ".join(missing or job["requires"])
        waits.append(f"no live node in pool {pool!r} with {job['renderer']!r} has the tags {needs}")
        starts.append(f"a node of pool {pool!r} with the tags {', '.join(job['requires'])}")
    drained = [n["id"] for n in tagged if n["drained"]]
    undrained = [n for n in tagged if not n["drained"]]
    if tagged and not undrained:
        waits.append(f"every node that could run it is drained by an admin: {', '.join(drained)}")
        starts.append("an admin undraining one (`rfarm undrain NODE`)")
    usable = [n for n in undrained if n["id"] not in f.blocked]
    if undrained and not usable:
        waits.append(f"every node that could run it failed it too often: {', '.join(f.blocked)} (blocklisted)")
        starts.append(f"`rfarm retry {jid}` (forgives the nodes) or another node that can run it")
    elif f.blocked:
        waits.append(f"blocklisted for it (failed it 3 times): {', '.join(f.blocked)}")
    for lim in f.limits:
        if lim["count"] is not None and lim["in_use"] >= lim["count"]:
            waits.append(f"limit {lim['name']} is full: {lim['in_use']} of {lim['count']} in use")
            starts.append(f"a task holding {lim['name']} finishing (or an operator raising it)")
    if usable and not waits:
        free = sum(max(0, n["slots"] - n["busy"]) for n in usable)
        ahead = reply.ahead
        if ahead.get("higher_priority"):
            waits.append(f"{ahead['higher_priority']} task(s) of higher priority wait in pool {pool!r}")
            starts.append(f"a higher priority (`rfarm priority {jid} N`), or those finishing")
        if ahead.get("other_users"):
            waits.append(f"its owner's share: other users hold fewer slots for their weight; {ahead['other_users']} "
                         f"of their task(s) go first (its owner holds {reply.held}, weight {reply.weight:g})")
        if ahead.get("older_jobs"):
            waits.append(f"{ahead['older_jobs']} task(s) of its owner's older jobs go first")
        if ahead.get("window"):
            waits.append(f"{ahead['window']} task(s) already handed to the nodes go first")
        if not free:
            waits.append(f"every slot that can run it is busy ({len(usable)} node(s), "
                         f"{sum(n['slots'] for n in usable)} slot(s))")
            starts.append("a slot freeing up, or more nodes")
        if not waits and not f.tasks["ready"]:
            waits.append(f"nothing: its {f.tasks['dispatched']} waiting task(s) are handed to the nodes, "
                         "each starts as a slot frees up")
        elif not waits:
            waits.append("nothing: its next task is about to be handed to a node")
    return waits, starts
