"""The machine, the targets, the table, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import psycopg
import redis

RESULTS = Path(__file__).resolve().parent / "results"


def machine(redis_url: str, admin_url: str) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    r = redis.Redis.from_url(redis_url)
    try:
        redis_version = r.info("server").get("redis_version")
    finally:
        r.close()
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "?"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "redis": redis_version,
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    echo = res.get("floor", {}).get("echo", {}).get("latency", {}).get("p50_ms")
    commit = res.get("floor", {}).get("commit", {}).get("latency", {}).get("p50_ms")
    rt = res.get("roundtrips_empty", {})
    if echo and "jobs" in rt:
        ratio = rt["jobs"]["p50_ms"] / echo
        out.append(_t("jobs p50 / echo p50", round(ratio, 2), "<= 4", ratio <= 4))
    if echo and commit and "submit" in rt:
        ratio = rt["submit"]["p50_ms"] / (echo + commit)
        bound = 4 * echo + commit
        out.append(_t("submit p50 vs 4 x echo + 1 commit (ms)", f"{rt['submit']['p50_ms']} vs {bound:.3f}",
                      "<= 1", rt["submit"]["p50_ms"] <= bound, ratio=round(ratio, 2)))
    tput = res.get("throughput", {}).get("1_gateway", {}).get("jobs", {}).get("per_s")
    if tput is not None:
        out.append(_t("jobs req/s, 16 clients, 1 gateway", tput, ">= 2000", tput >= 2000))
    four = [d for d in res.get("dispatch", []) if d["nodes"] == 4]
    if four:
        fps = four[0]["frames_per_s"] or 0
        out.append(_t("frames/s with 4 nodes", fps, ">= 1000", fps >= 1000))
    full = res.get("roundtrips_full", {})
    for key in ("jobs", "history"):
        if key in full and key in rt:
            ratio = full[key]["p50_ms"] / rt[key]["p50_ms"]
            out.append(_t(f"{key} p50 full store / empty", round(ratio, 2), "<= 1.5", ratio <= 1.5))
    flood = res.get("login_flood")
    if flood:
        ratio = flood["jobs_during_flood"]["p50_ms"] / flood["jobs_idle"]["p50_ms"]
        out.append(_t(f"jobs p50 during a {flood['logins_per_burst']}-login flood / idle", round(ratio, 2), "<= 3",
                      ratio <= 3))
    quota = res.get("quota_flood")
    if quota:
        ratio = quota["jobs_during_flood"]["p50_ms"] / quota["jobs_idle"]["p50_ms"]
        out.append(_t("jobs p50 during another user's submit flood / idle", round(ratio, 2), "<= 3", ratio <= 3))
    fair = res.get("fairshare", {})
    if "late_user" in fair:
        p99 = fair["late_user"]["first_start_p99_s"]
        out.append(_t(f"another user's first start behind {fair['late_user']['queued']} queued tasks, p99 (s)", p99,
                      "<= 2", p99 <= 2, p50=fair["late_user"]["first_start_p50_s"]))
    if fair.get("rate", {}).get("ratio") is not None:
        ratio = fair["rate"]["ratio"]
        out.append(_t("dispatch rate with fair share and limits / plain queue", ratio, ">= 0.8", ratio >= 0.8))
    mem = res.get("memory", {})
    for key in ("gateway_peak_rss_mib", "node_peak_rss_mib"):
        if mem.get(key) is not None:
            out.append(_t(key, mem[key], "< 100", mem[key] < 100))
    return out


def _t(name: str, value: Any, target: str, met: bool, **extra: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "target": target, "met": bool(met), **extra}


def table(res: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    m = res["machine"]
    add(f"rfarm benchmark ({res['mode']}) on {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB, "
        f"PostgreSQL {m['postgresql']}, Redis {m['redis']}, Python {m['python']}")
    add("")
    fl = res.get("floor", {})
    if fl:
        e, c = fl["echo"], fl["commit"]
        add(f"{'floor':34} {'p50 ms':>8} {'p99 ms':>8}   rate")
        add(f"{'redis streams echo':34} {e['latency']['p50_ms']:>8} {e['latency']['p99_ms']:>8}   "
            f"{e['throughput']['per_s']}/s at {e['throughput']['clients']} clients")
        if "page_latency" in e:
            pg = e["page_latency"]
            add(f"{'  the same, a 50-job page back':34} {pg['p50_ms']:>8} {pg['p99_ms']:>8}   "
                "(what the size of a jobs reply costs)")
        add(f"{'postgresql 1-row commit':34} {c['latency']['p50_ms']:>8} {c['latency']['p99_ms']:>8}   "
            f"{c['commits_per_s_1']}/s 1 client, {c['commits_per_s_8']}/s 8 clients")
        add("")
    echo = fl.get("echo", {}).get("latency", {}).get("p50_ms") if fl else None
    sections = (("round trips, empty store", "roundtrips_empty"), ("round trips, full store", "roundtrips_full"))
    for label, key in sections:
        rt = res.get(key)
        if not rt:
            continue
        add(f"{label:34} {'p50 ms':>8} {'p99 ms':>8}   x echo p50")
        for name, s in rt.items():
            ratio = f"{s['p50_ms'] / echo:.1f}" if echo else "-"
            add(f"  {name:32} {s['p50_ms']:>8} {s['p99_ms']:>8}   {ratio}")
        add("")
    tp = res.get("throughput", {})
    if tp:
        add(f"{'throughput (req/s)':34} {'jobs':>8} {'submit':>8}")
        for key, v in tp.items():
            add(f"  {key.replace('_', ' ') + ', ' + str(v['jobs']['clients']) + ' clients':32} "
                f"{v['jobs']['per_s']:>8} {v['submit']['per_s']:>8}")
        add("")
    flood = res.get("login_flood")
    if flood:
        idle, during = flood["jobs_idle"], flood["jobs_during_flood"]
        add(f"jobs during bursts of {flood['logins_per_burst']} strangers' logins ({flood['bursts']} answered whole, "
            f"the slowest in {flood['burst_answered_s_max']} s): p50 "
            f"{during['p50_ms']} ms, p99 {during['p99_ms']} ms "
            f"(idle: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms)")
        add("")
    quota = res.get("quota_flood")
    if quota:
        idle, during = quota["jobs_idle"], quota["jobs_during_flood"]
        add(f"jobs while {quota['flooders']} callers of another user submit {quota['tasks_per_submit']}-task jobs "
            f"({quota['accepted']} accepted, {quota['refused']} refused by a quota, {quota['flooder_tasks']} tasks "
            f"queued, a quota reached in {quota['quota_reached_s']} s): p50 {during['p50_ms']} ms, "
            f"p99 {during['p99_ms']} ms (idle: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms)")
        add("")
    for d in res.get("dispatch", []):
        h = d["history"]
        add(f"dispatch {d['frames']} frames, {d['nodes']} node(s) x {d['slots_per_node']} slots: "
            f"{d['frames_per_s']} frames/s ({d['seconds']} s), history complete: {h['complete']} "
            f"({h['task_rows']} task rows, job {'>'.join(h['job_chain'])})")
    if res.get("dispatch"):
        add("")
    bl = res.get("blender")
    if bl and "skipped" in bl:
        add(f"blender overhead: skipped ({bl['skipped']})")
        add("")
    elif bl:
        add(f"blender {bl['frames']} frames (chunks of {bl['chunk']}, {bl['samples']} samples), one node: farm "
            f"{bl['farm_seconds']} s, one blender command {bl['one_command_seconds']} s: overhead "
            f"{bl['overhead_per_frame_seconds']} s per frame ({bl['status']}, "
            f"{bl['frames_recorded_by_the_farm']} frames recorded)")
        add("")
    fair = res.get("fairshare", {})
    if "late_user" in fair:
        lu = fair["late_user"]
        add(f"another user's one-task jobs behind {lu['queued']} queued tasks ({lu['nodes']} nodes x "
            f"{lu['slots_per_node']} slots, {lu['task_seconds']} s tasks): first start p50 "
            f"{lu['first_start_p50_s']} s, p99 {lu['first_start_p99_s']} s, max {lu['first_start_max_s']} s")
    if "rate" in fair:
        ra = fair["rate"]
        add(f"dispatch {ra['frames']} frames: plain queue {ra['plain_frames_per_s']} frames/s, {ra['users']} users "
            f"with fair share and a limit {ra['fair_frames_per_s']} frames/s (ratio {ra['ratio']})")
    if fair:
        add("")
    sc = res.get("scale")
    if sc:
        add(f"store filled: {sc['jobs']} jobs, {sc['job_history'] + sc['task_history']} history rows "
            f"in {sc['seconds']} s")
        add("")
    bf = res.get("bigfarm")
    if bf:
        p = bf["priority"]
        add(f"simulated farm: {bf['nodes']} nodes in {bf['processes']} processes, {bf['tasks']} tasks of "
            f"{bf['task_seconds']} s: {bf['seconds_from_submit']} s (ideal {bf['ideal_seconds']} s), "
            f"busy share {bf['busy_share']:.1%} ({bf['busy_share_after_first_start']:.1%} after the first start), "
            f"{bf['tasks_per_s']} tasks/s")
        add(f"  late priority-90 job: first start after {p['high_first_start_s']} s, last after "
            f"{p['high_last_start_s']} s; backlog tasks that overtook it: "
            f"{p['low_from_backlog_started_before_high']}; window items started meanwhile: "
            f"{p['low_started_while_high_waited']}")
        add("")
    mem = res.get("memory", {})
    if mem:
        add(f"peak RSS: gateway {mem.get('gateway_peak_rss_mib')} MiB (now {mem.get('gateway_rss_at_end_mib')} MiB), "
            f"node {mem.get('node_peak_rss_mib')} MiB")
        for s in res.get("streams", []):
            add(f"  stream {s['stream']:28} length {s['length']:>7} cap {s['cap']}")
        add("")
    add("targets:")
    for t in res.get("targets", []):
        add(f"  [{'met ' if t['met'] else 'MISS'}] {t['name']}: {t['value']} (target {t['target']})")
    return "\n".join(lines)


def write(res: dict[str, Any], path: Path | None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = path or RESULTS / f"bench-{res['mode']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return out
