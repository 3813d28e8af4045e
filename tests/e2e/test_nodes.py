"""Render nodes for real: chunks on several nodes, a node killed, retries to the limit, cancel."""

from __future__ import annotations

import os
import signal
import time

from broker_contracts.states import replay_is_legal
from tests.support.farm import Farm, wait_for


def show(farm: Farm, job_id: int, config: str) -> dict:
    res = farm.rfarm("show", str(job_id), "--json", config=config)
    assert res.code == 0, res
    return res.json()  # type: ignore[no-any-return]


def history(farm: Farm, job_id: int, config: str) -> list[dict]:
    res = farm.rfarm("history", str(job_id), "--json", config=config)
    assert res.code == 0, res
    return res.json()["history"]  # type: ignore[no-any-return]


def assert_histories_legal(entries: list[dict]) -> None:
    by_task: dict[int | None, list[tuple[str | None, str]]] = {}
    for h in entries:
        by_task.setdefault(h.get("task"), []).append((h["from"], h["to"]))
    for task, chain in by_task.items():
        ok, why = replay_is_legal(chain, kind="job" if task is None else "task")
        assert ok, f"task {task}: {why}: {chain}"


def test_24_frames_on_3_nodes_survive_a_sigkill(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    for n in range(3):
        farm.start_node(f"n{n}-{unique}")
    res = farm.rfarm("submit", "shot", "--frames", "1-24", "--chunk", "2", "--renderer", "sleep",
                     "--param", "seconds=0.6", "--json", config=user)
    assert res.code == 0, res
    job_id = res.json()["id"]

    def victim_running() -> str | None:
        tasks = show(farm, job_id, user)["tasks"]
        nodes = {t["node"] for t in tasks if t["status"] == "running"}
        return next((n for n in sorted(nodes) if n in farm.procs), None)

    victim = wait_for(victim_running, what="a node mid-render")
    farm.kill(victim)
    wait_for(lambda: show(farm, job_id, user)["job"]["status"] == "succeeded", timeout=90, what="the job")

    out = farm.output_root / f"job-{job_id}"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".txt") == [f"frame_{n:04d}.txt" for n in range(1, 25)]
    entries = history(farm, job_id, user)
    assert_histories_legal(entries)
    reasons = [h["reason"] for h in entries]
    assert any(victim in r and "lease" in r for r in reasons), reasons
    assert show(farm, job_id, user)["job"]["frames_done"] == 24


def test_a_frame_that_always_fails_is_retried_elsewhere_then_fails_the_job(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    for n in range(3):
        farm.start_node(f"f{n}-{unique}")
    res = farm.rfarm("submit", "broken", "--frames", "1-3", "--renderer", "sleep", "--param", "seconds=0",
                     "--param", "fail_frames=2", "--max-attempts", "3", "--json", config=user)
    assert res.code == 0, res
    job_id = res.json()["id"]
    wait_for(lambda: show(farm, job_id, user)["job"]["status"] == "failed", timeout=60, what="the job to fail")
    detail = show(farm, job_id, user)
    assert "frame 2" in (detail["job"]["reason"] or ""), detail["job"]
    bad = next(t for t in detail["tasks"] if t["frame_first"] == 2)
    assert bad["status"] == "failed" and bad["attempt"] == 3
    entries = history(farm, job_id, user)
    assert_histories_legal(entries)
    failed_on = [h["actor"] for h in entries if h.get("task") == bad["id"] and h["from"] == "running"]
    assert len(failed_on) == 3 and len(set(failed_on)) == 3, failed_on  # each retry on another node
    dead = farm.redis().xlen(farm.keys.dead)
    assert dead >= 1

    again = farm.rfarm("retry", str(job_id), config=user)
    assert again.code == 0, again
    assert show(farm, job_id, user)["job"]["status"] in ("queued", "running", "failed")
    retried = [h for h in history(farm, job_id, user) if "retried by" in h["reason"]]
    assert any(h.get("task") is None and h["to"] == "queued" for h in retried)


def _renderer_pids(node_pid: int) -> set[int]:
    """Processes whose parent is the node (the renderer subprocesses)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == node_pid:
                found.add(int(entry))
    return found


def test_cancel_stops_renders_within_two_seconds(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    node = farm.start_node(f"c-{unique}", "--slots", "2")
    res = farm.rfarm("submit", "long", "--frames", "1-4", "--renderer", "sleep", "--param", "seconds=30",
                     "--json", config=user)
    job_id = res.json()["id"]
    wait_for(lambda: len(_renderer_pids(node.pid)) == 2, what="two renders running")
    pids = _renderer_pids(node.pid)
    started = time.monotonic()
    assert farm.rfarm("cancel", str(job_id), config=user).code == 0
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and _alive(p) for p in pids), timeout=2.5,
             interval=0.05, what="renders to be gone")
    assert time.monotonic() - started < 2.5
    time.sleep(1.5)  # any late report from the node arrives now, and must change nothing
    detail = show(farm, job_id, user)
    assert detail["job"]["status"] == "cancelled"
    assert {t["status"] for t in detail["tasks"]} == {"cancelled"}
    assert_histories_legal(history(farm, job_id, user))
    refused = farm.rfarm("cancel", str(job_id), config=user)
    assert refused.code == 1 and "cancelled" in refused.err


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_pause_resume_and_priority(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    low = farm.rfarm("submit", "low", "--frames", "1-3", "--renderer", "sleep", "--param", "seconds=0.2",
                     "--priority", "10", "--json", config=user).json()["id"]
    high = farm.rfarm("submit", "high", "--frames", "1-3", "--renderer", "sleep", "--param", "seconds=0.2",
                      "--priority", "90", "--json", config=user).json()["id"]
    paused = farm.rfarm("pause", str(high), config=user)
    assert paused.code == 0, paused
    farm.start_node(f"p-{unique}")
    wait_for(lambda: show(farm, low, user)["job"]["status"] == "succeeded", timeout=60, what="low job")
    assert show(farm, high, user)["job"]["status"] == "queued"
    assert "paused" in (show(farm, high, user)["job"]["waiting"] or "")
    assert farm.rfarm("resume", str(high), config=user).code == 0
    wait_for(lambda: show(farm, high, user)["job"]["status"] == "succeeded", timeout=60, what="high job")
    assert farm.rfarm("priority", str(high), "5", config=user).code == 1  # finished: refused


def test_nodes_listing_is_for_everyone_steering_for_admins(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    admin = farm.user(f"a{unique}", admin=True)
    farm.start_node(f"listed-{unique}", "--tags", "cuda,linux", "--slots", "2")
    wait_for(lambda: f"listed-{unique}" in farm.rfarm("nodes", config=admin).out, what="node listed")
    listed = {n["id"]: n for n in farm.rfarm("nodes", "--json", config=admin).json()["nodes"]}
    node = listed[f"listed-{unique}"]
    assert node["slots"] == 2 and node["tags"] == ["cuda", "linux"] and node["state"] == "idle"
    seen = farm.rfarm("nodes", config=user)  # capacity for everyone (issue 12)
    assert seen.code == 0 and f"listed-{unique}" in seen.out
    assert farm.rfarm("drain", f"listed-{unique}", config=user).code == 1
    farm.kill(f"listed-{unique}", signal.SIGTERM)
    wait_for(lambda: {n["id"]: n for n in farm.rfarm("nodes", "--json", config=admin).json()["nodes"]}
             [f"listed-{unique}"]["state"] == "gone", what="node gone")


def test_pools_tags_dependencies_logs_and_profiles(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    unknown = farm.rfarm("submit", "x", "--renderer", "houdini", config=user)
    assert unknown.code == 1 and "houdini" in unknown.err
    bad_param = farm.rfarm("submit", "x", "--renderer", "fractal", "--param", "width=-3", config=user)
    assert bad_param.code == 1 and "width" in bad_param.err

    gpu = farm.rfarm("submit", "gpu", "--pool", "gpu", "--require", "cuda", "--renderer", "sleep",
                     "--param", "seconds=0", "--json", config=user).json()["id"]
    after = farm.rfarm("submit", "comp", "--after", str(gpu), "--frames", "1-2", "--json", config=user).json()["id"]
    farm.start_node(f"cpu-{unique}")
    farm.start_node(f"gpu-plain-{unique}", "--pool", "gpu")
    wait_for(lambda: "cuda" in (show(farm, gpu, user)["job"]["waiting"] or ""), what="gpu job waiting on tags")
    assert "waiting for job" in (show(farm, after, user)["job"]["waiting"] or "")
    farm.start_node(f"gpu-cuda-{unique}", "--pool", "gpu", "--tags", "cuda")
    wait_for(lambda: show(farm, after, user)["job"]["status"] == "succeeded", timeout=60, what="dependent job")
    gpu_tasks = show(farm, gpu, user)["tasks"]
    assert {t["node"] for t in gpu_tasks} == {f"gpu-cuda-{unique}"}
    logs = farm.rfarm("logs", str(after), "--frame", "2", "--json", config=user)
    assert logs.code == 0, logs
    entries = logs.json()["logs"]
    assert len(entries) == 1 and "frame 2" in entries[0]["output"]


def test_dependency_failure_fails_the_dependent_job(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    first = farm.rfarm("submit", "first", "--renderer", "sleep", "--param", "seconds=0", "--param", "fail_frames=1",
                       "--max-attempts", "1", "--json", config=user).json()["id"]
    second = farm.rfarm("submit", "second", "--after", str(first), "--json", config=user).json()["id"]
    farm.start_node(f"d-{unique}")
    wait_for(lambda: show(farm, second, user)["job"]["status"] == "failed", timeout=60, what="dependent to fail")
    assert f"job {first}" in show(farm, second, user)["job"]["reason"]
    refused = farm.rfarm("retry", str(second), config=user)  # it would only fail again
    assert refused.code == 1 and f"retry job {first} first" in refused.err, refused
    assert show(farm, second, user)["job"]["status"] == "failed"
