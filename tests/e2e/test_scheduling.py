"""Scheduling with real processes: fair share between users, named limits across nodes (also when
one dies holding a limit), and task timeouts; every time read from the job's own history."""

from __future__ import annotations

import itertools
import re
import signal
import sys
from datetime import datetime
from typing import Any

from tests.support.farm import Farm, wait_for


def submit(farm: Farm, user: str, name: str, *args: str) -> int:
    res = farm.rfarm("submit", name, "--renderer", "sleep", "--json", *args, config=user)
    assert res.code == 0, res
    return int(res.json()["id"])


def history(farm: Farm, job_id: int, user: str) -> list[dict[str, Any]]:
    res = farm.rfarm("history", str(job_id), "--json", config=user)
    assert res.code == 0, res
    return list(res.json()["history"])


def status(farm: Farm, job_id: int, user: str) -> str:
    res = farm.rfarm("show", str(job_id), "--json", config=user)
    assert res.code == 0, res
    return str(res.json()["job"]["status"])


def at(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["at"])


def job_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in rows if h.get("task") is None]


def runs(rows: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    """Each attempt's (start, end) as the history recorded them."""
    out, open_ = [], {}
    for h in rows:
        if h.get("task") is None:
            continue
        if h["to"] == "running":
            open_[h["task"]] = at(h)
        elif h["from"] == "running":
            out.append((open_.pop(h["task"]), at(h)))
    assert not open_, open_
    return out


def test_a_late_users_small_job_gets_slots_within_seconds(farm: Farm, unique: str) -> None:
    farm.start_node(f"fs-{unique}", "--slots", "4")
    alice, bob = farm.user(f"alice{unique}"), farm.user(f"bob{unique}")
    big = submit(farm, alice, "huge", "--frames", "1-200", "--param", "seconds=1")
    wait_for(lambda: any(h["to"] == "running" for h in history(farm, big, alice)), what="alice's job to start")
    first_start = min(at(h) for h in history(farm, big, alice) if h["to"] == "running")
    wait_for(lambda: (datetime.now(first_start.tzinfo) - first_start).total_seconds() >= 3, what="3 s")
    small = submit(farm, bob, "small", "--frames", "1-8", "--param", "seconds=1")
    wait_for(lambda: status(farm, small, bob) == "succeeded", timeout=60, what="bob's job to succeed")
    assert status(farm, big, alice) == "running"
    assert farm.rfarm("cancel", str(big), config=alice).code == 0

    mine = history(farm, small, bob)
    submitted = at(job_rows(mine)[0])
    started = min(at(h) for h in mine if h["to"] == "running")
    assert (started - submitted).total_seconds() <= 3, (submitted, started)
    bob_done = at(job_rows(mine)[-1])
    alice_end = job_rows(history(farm, big, alice))[-1]
    assert alice_end["to"] == "cancelled" and at(alice_end) > bob_done


def test_a_limit_of_one_never_overlaps_across_nodes_even_when_one_dies(farm: Farm, unique: str) -> None:
    lic = f"lic-{unique}"
    assert farm.rfarmctl("limit", "set", lic, "1").code == 0
    listed = farm.rfarmctl("limit", "list")
    assert listed.code == 0 and lic in listed.out
    n1, n2 = f"l1-{unique}", f"l2-{unique}"
    farm.start_node(n1, "--slots", "2")
    farm.start_node(n2, "--slots", "2")
    user = farm.user(f"u{unique}")
    # 3 s renders: the node found running one is killed while it still is
    jobs = [submit(farm, user, f"lic{i}", "--frames", "1-2", "--param", "seconds=3", "--limit", lic) for i in (1, 2)]

    def running_on() -> str | None:
        rows = [h for j in jobs for h in history(farm, j, user) if h.get("task") is not None]
        last: dict[int, dict[str, Any]] = {}
        for h in rows:
            last[h["task"]] = h
        return next((h["actor"] for h in last.values() if h["to"] == "running"), None)

    holder = wait_for(running_on, what="a task holding the limit")
    farm.kill(holder, signal.SIGKILL)
    # the dead node's task holds the limit until its lease lapses
    wait_for(lambda: any(f"limit {lic} is full" in farm.rfarm("why", str(j), config=user).out for j in jobs),
             what="why to name the full limit")
    shown = farm.rfarm("show", str(jobs[0]), config=user).out
    assert re.search(rf"^  limits +{re.escape(lic)}$", shown, re.M), shown  # labels align to the longest
    for j in jobs:
        wait_for(lambda j=j: status(farm, j, user) == "succeeded", timeout=90, what=f"job {j} to succeed")

    rows = [h for j in jobs for h in history(farm, j, user)]
    spans = sorted(runs(rows))
    assert len(spans) >= 5  # four tasks, one of them twice
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans
    assert any("lease" in h["reason"] for h in rows if h.get("task") is not None), "the kill cost a lease"

    refused = farm.rfarm("submit", "nolimit", "--limit", f"none-{unique}", config=user)
    assert refused.code != 0 and "no limit named" in refused.err


def test_a_render_past_its_task_timeout_fails_as_timed_out(farm: Farm, unique: str) -> None:
    farm.start_node(f"to-{unique}", "--slots", "1")
    user = farm.user(f"u{unique}")
    job = submit(farm, user, "hang", "--param", "seconds=10", "--task-timeout", "2", "--max-attempts", "1")
    wait_for(lambda: status(farm, job, user) == "failed", timeout=30, what="the job to fail")
    rows = [h for h in history(farm, job, user) if h.get("task") is not None]
    (start, end), = runs(rows)
    failed = rows[-1]
    assert failed["to"] == "failed" and "timed out after 2s" in failed["reason"], failed
    assert (end - start).total_seconds() <= 5, (start, end)

    bad = farm.rfarm("submit", "x", "--task-timeout", "soon", config=user)
    assert bad.code == 2 and "duration" in bad.err and "Traceback" not in bad.err

    # the operator's default for the profile, where the node's profiles are declared
    profiles = farm.root / "timeouts.toml"
    profiles.write_text('[timeouts]\nsleep = "1s"\n')
    farm.start_node(f"td-{unique}", "--pool", f"slow-{unique}", "--profiles", str(profiles))
    default = submit(farm, user, "hang2", "--param", "seconds=10", "--max-attempts", "1", "--pool", f"slow-{unique}")
    wait_for(lambda: status(farm, default, user) == "failed", timeout=30, what="the second job to fail")
    last = [h for h in history(farm, default, user) if h.get("task") is not None][-1]
    assert "timed out after 1s" in last["reason"], last


def test_why_says_what_a_job_waits_for_and_what_would_start_it(farm: Farm, unique: str) -> None:
    user, other = farm.user(f"w{unique}"), farm.user(f"o{unique}")
    pool = f"empty-{unique}"
    first = submit(farm, user, "first", "--pool", pool, "--frames", "1-3")
    why = farm.rfarm("why", str(first), config=user)
    assert why.code == 0, why
    assert f"no live render node in pool '{pool}'" in why.out and "would start it" in why.out
    detail = farm.rfarm("why", str(first), "--json", config=user).json()
    assert detail["tasks"]["ready"] == 3 and detail["place"] == 1

    assert farm.rfarm("pause", str(first), config=user).code == 0
    paused = farm.rfarm("why", str(first), config=user).out
    assert "paused" in paused and f"rfarm resume {first}" in paused

    second = submit(farm, user, "second", "--pool", pool, "--after", str(first))
    assert f"once job {first} has succeeded" in farm.rfarm("why", str(second), config=user).out

    theirs = farm.rfarm("why", str(first), config=other)
    assert theirs.code == 1 and "no such job" in theirs.err
    assert "why" in farm.rfarm("help", config=user).out


# prints the GPU variables it sees, and when it started and ended (the renderer's own clock)
GPU_PROBE = (
    "import os, sys, time; t = time.time(); time.sleep(1); "
    "print('visible', *(os.environ.get(v, '-') for v in sys.argv[1:4]), t, time.time())"
)
GPU_PROFILE = """
[profiles.gpuprobe]
argv = [{python!r}, "-c", {probe!r}, "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "{{frame}}"]
"""


def test_a_node_with_gpus_runs_each_task_on_its_own_gpu(farm: Farm, unique: str) -> None:
    profiles = farm.root / "gpu.toml"
    profiles.write_text(GPU_PROFILE.format(python=sys.executable, probe=GPU_PROBE))
    farm.start_node(f"g-{unique}", "--gpus", "0,1", "--profiles", str(profiles))
    user = farm.user(f"g{unique}")
    job = submit(farm, user, "gpu", "--renderer", "gpuprobe", "--frames", "1-4", "--require", "gpu")
    wait_for(lambda: status(farm, job, user) == "succeeded", timeout=60, what="the gpu job")
    logs = farm.rfarm("logs", str(job), "--json", config=user)
    assert logs.code == 0, logs
    seen = {e["task"]: e["output"].split() for e in logs.json()["logs"]}
    assert len(seen) == 4
    for words in seen.values():
        assert words[0] == "visible" and words[1] in ("0", "1") and words[1:4] == [words[1]] * 3, words
    assert {w[1] for w in seen.values()} == {"0", "1"}
    # renders that ran at the same time (by their own clocks) had different GPUs
    for a, wa in seen.items():
        for b, wb in seen.items():
            if a < b and float(wa[4]) < float(wb[5]) and float(wb[4]) < float(wa[5]):
                assert wa[1] != wb[1], (wa, wb)
    assert any(float(wa[4]) < float(wb[5]) and float(wb[4]) < float(wa[5])
               for a, wa in seen.items() for b, wb in seen.items() if a < b), "two renders at once"


def test_capacity_for_everyone_drain_undrain_and_forget(farm: Farm, unique: str) -> None:
    farm.start_gateway("gw-forget", "--forget-nodes-after", "1")
    admin, alice, bob = farm.user(f"root{unique}", admin=True), farm.user(f"a{unique}"), farm.user(f"b{unique}")
    n1, n2 = f"c1-{unique}", f"c2-{unique}"
    farm.start_node(n1, "--slots", "2")
    farm.start_node(n2, "--slots", "1")
    job = submit(farm, alice, f"secret{unique}", "--frames", "1-40", "--param", "seconds=0.5")

    def starts_on(node: str) -> list[datetime]:
        return [at(h) for h in history(farm, job, alice) if h["to"] == "running" and h["actor"] == node]

    wait_for(lambda: starts_on(n1) and starts_on(n2), what="tasks on both nodes")
    theirs, mine = farm.rfarm("nodes", config=bob), farm.rfarm("nodes", config=alice)
    assert theirs.code == mine.code == 0, (theirs, mine)
    assert n1 in theirs.out and "pool default: 2 node(s)" in theirs.out and "slots busy" in theirs.out
    assert f"secret{unique}" not in theirs.out and f"secret{unique}" in mine.out
    refused = farm.rfarm("drain", n1, config=bob)
    assert refused.code == 1 and "admin" in refused.err

    drained = farm.rfarm("drain", n1, config=admin)
    assert drained.code == 0 and "drained" in drained.out, drained
    since = datetime.now(starts_on(n1)[0].tzinfo)
    wait_for(lambda: len(starts_on(n2)) >= 4 + len([s for s in starts_on(n2) if s < since]), timeout=30,
             what="work going on elsewhere")
    late = [s for s in starts_on(n1) if (s - since).total_seconds() > 1.5]  # a heartbeat (0.5 s) to notice
    assert late == [], late
    assert "(drained)" in farm.rfarm("nodes", config=admin).out
    assert farm.rfarm("undrain", n1, config=admin).code == 0
    wait_for(lambda: any(s > since for s in starts_on(n1)), what=f"{n1} to take work again")
    assert farm.rfarm("cancel", str(job), config=alice).code == 0

    alive = farm.rfarm("forget", n2, config=admin)
    assert alive.code == 1 and "alive" in alive.err
    assert farm.rfarm("forget", f"none-{unique}", config=admin).code == 1
    farm.kill(n2)
    farm.kill(n1)
    # the node lost, then forgotten by the gateway started with --forget-nodes-after 1
    wait_for(lambda: n2 not in farm.rfarm("nodes", config=admin).out, timeout=40, what=f"{n2} forgotten")
    assert farm.rfarm("forget", n2, config=admin).code == 1  # nothing left to forget


def test_rfarmctl_share_and_limit(farm: Farm, unique: str) -> None:
    alice = farm.user(f"s{unique}")
    assert farm.rfarmctl("share", "set", alice, "2.5").code == 0
    assert f"{alice}  2.5" in farm.rfarmctl("share", "list").out
    for args, code in ((("share", "set", f"nobody{unique}", "2"), 1), (("share", "set", alice, "0"), 2),
                       (("share", "set", alice, "lots"), 2), (("limit", "set", "a b", "1"), 2),
                       (("limit", "set", f"l{unique}", "-1"), 2), (("share",), 2)):
        res = farm.rfarmctl(*args)
        assert res.code == code and res.err.count("\n") == 1 and "Traceback" not in res.err, (args, res)
    assert "weighs 1 again" in farm.rfarmctl("share", "unset", alice).out
    assert alice not in farm.rfarmctl("share", "list").out
    assert farm.rfarmctl("limit", "set", f"l{unique}", "4").code == 0
    assert "removed" in farm.rfarmctl("limit", "unset", f"l{unique}").out
    assert f"l{unique}" not in farm.rfarmctl("limit", "list").out
