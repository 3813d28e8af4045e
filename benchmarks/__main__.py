"""`python -m benchmarks [--quick] [--out FILE] [--only PHASE,...]`: rfarm against its floor.

Starts its own farm (gateways and nodes as real processes) on the given Redis and PostgreSQL, in a
database it creates and drops and under a key prefix whose keys it deletes, prints a table and
writes every figure as JSON (benchmarks/results/, path printed at the end).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import report, seed
from benchmarks.bigfarm import run_bigfarm
from benchmarks.blender import run_blender
from benchmarks.dispatch import run_dispatch
from benchmarks.fairness import run_late_user, run_rate
from benchmarks.flood import login_flood
from benchmarks.floor import commit_floor, echo_floor
from benchmarks.gateway_bench import make_user, request_rates, roundtrips
from benchmarks.harness import BenchFarm, peak_rss_mib
from benchmarks.quota import quota_flood

PHASES = ("floor", "gateway", "flood", "quota", "dispatch", "fairshare", "blender", "scale", "bigfarm")
REQUEST_CAP = 100_000  # shells XADD with MAXLEN ~ 100000
CAPS = {"req": REQUEST_CAP, "events": 100_000, "dead": 10_000, "work": 20_000, "reply": 500}


@dataclass(frozen=True)
class Sizes:
    samples: int
    clients: int
    seconds: float
    user_jobs: int
    history_tasks: int
    dispatch_frames: int
    dispatch_nodes: tuple[int, ...]
    slots: int
    scale_jobs: int
    scale_history: int
    sim_nodes: int
    sim_processes: int
    sim_tasks_per_slot: int
    sim_task_seconds: float
    blender_frames: int = 48
    blender_chunk: int = 8
    blender_samples: int = 8
    fair_queued: int = 2000  # one user's queued tasks ahead of another user's submits
    fair_samples: int = 50  # that other user's one-task jobs, one after the other
    fair_task_seconds: float = 0.5


FULL = Sizes(2000, 16, 5.0, 1000, 10, 5000, (1, 2, 4), 8, 100_000, 1_000_000, 500, 4, 10, 1.0)
QUICK = Sizes(30, 4, 1.0, 60, 4, 40, (1, 2), 2, 500, 3000, 6, 2, 3, 0.2, blender_frames=6, blender_chunk=3,
              blender_samples=4, fair_queued=100, fair_samples=5, fair_task_seconds=0.3)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", "--smoke", action="store_true", help="tiny sizes: checks that it all runs")
    p.add_argument("--out", type=Path, help="JSON file to write (default: benchmarks/results/bench-*.json)")
    p.add_argument("--only", default=",".join(PHASES), help=f"comma list of phases: {','.join(PHASES)}")
    p.add_argument("--redis-url", default=os.environ.get("RFARM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--pg-url", default=os.environ.get("RFARM_BENCH_DATABASE_URL",
                                                       "postgresql://127.0.0.1:5432/postgres"),
                   help="an admin connection: the benchmark creates and drops its own database there")
    p.add_argument("--set", action="append", default=[], metavar="SIZE=VALUE",
                   help="override one size, e.g. --set dispatch_frames=1000 --set dispatch_nodes=4")
    p.add_argument("--keep-logs", type=Path, help="folder for the processes' logs (default: a temp folder)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = override(QUICK if args.quick else FULL, args.set)
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}")
    res: dict[str, Any] = {"mode": "quick" if args.quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "machine": report.machine(args.redis_url, args.pg_url), "sizes": sizes.__dict__}
    root = args.keep_logs or Path(tempfile.mkdtemp(prefix="rfarm-bench-"))
    with BenchFarm(args.redis_url, args.pg_url, root) as farm:
        res["database"], res["prefix"], res["logs"] = farm.dbname, farm.prefix, str(root)
        if "floor" in phases:
            step("floor")
            res["floor"] = {
                "echo": echo_floor(farm, sizes.samples, sizes.clients, sizes.seconds),
                "commit": commit_floor(farm, sizes.samples, sizes.seconds),
            }
        gateway = farm.start_gateway("gateway-1")
        user = make_user(farm, sizes.user_jobs, sizes.history_tasks)
        if "gateway" in phases:
            step("round trips")
            res["roundtrips_empty"] = roundtrips(farm, user, sizes.samples)
            step("throughput, 1 gateway")
            res["throughput"] = {"1_gateway": request_rates(farm, user, sizes.clients, sizes.seconds)}
            farm.start_gateway("gateway-2")
            time.sleep(1.0)
            step("throughput, 2 gateways")
            res["throughput"]["2_gateways"] = request_rates(farm, user, sizes.clients, sizes.seconds)
            res["memory_gateway_2_peak_rss_mib"] = peak_rss_mib(farm.procs["gateway-2"].pid)
            farm.stop("gateway-2")
        if "flood" in phases:
            step("jobs during a login flood")
            res["login_flood"] = login_flood(farm, user, sizes.samples)
        if "quota" in phases:
            step("jobs while another user floods submits into their quotas")
            res["quota_flood"] = quota_flood(farm, user, sizes.samples)
        if "dispatch" in phases:
            res["dispatch"] = []
            for n in sizes.dispatch_nodes:
                step(f"dispatch, {n} node(s)")
                res["dispatch"].append(run_dispatch(farm, user, sizes.dispatch_frames, n, sizes.slots))
        if "blender" in phases:
            step(f"blender: {sizes.blender_frames} frames on the farm and in one command")
            res["blender"] = run_blender(farm, user, sizes.blender_frames, sizes.blender_chunk, sizes.blender_samples)
        if "fairshare" in phases:
            step(f"fair share: another user's first start behind {sizes.fair_queued} queued tasks")
            res["fairshare"] = {"late_user": run_late_user(farm, user, sizes.fair_queued, sizes.fair_samples, 2,
                                                           sizes.slots, sizes.fair_task_seconds)}
            step("fair share and limits: dispatch rate against the plain queue")
            res["fairshare"]["rate"] = run_rate(farm, user, sizes.dispatch_frames, 2, sizes.slots)
        if "scale" in phases:
            step(f"filling the store: {sizes.scale_jobs} jobs, {sizes.scale_history} history rows")
            if "roundtrips_empty" not in res:
                res["roundtrips_empty"] = roundtrips(farm, user, sizes.samples, submit=False)
            t0 = time.monotonic()
            with farm.db(autocommit=False) as conn:
                filled = seed.bulk(conn, sizes.scale_jobs, sizes.scale_history)
                conn.commit()
            with farm.db() as conn:
                conn.execute("VACUUM ANALYZE")
            res["scale"] = {**filled, "seconds": round(time.monotonic() - t0, 1), "mib": table_sizes(farm)}
            step("round trips, full store")
            res["roundtrips_full"] = roundtrips(farm, user, sizes.samples, submit=False)
        if "bigfarm" in phases:
            step(f"simulated farm: {sizes.sim_nodes} nodes")
            res["bigfarm"] = run_bigfarm(farm, user, sizes.sim_nodes, sizes.sim_processes,
                                         sizes.sim_tasks_per_slot, sizes.sim_task_seconds)
        farm.check_alive()
        node_peaks = [d["node_peak_rss_mib"] for d in res.get("dispatch", []) if d.get("node_peak_rss_mib")]
        res["memory"] = {
            "gateway_peak_rss_mib": round(peak_rss_mib(gateway.pid) or 0, 1),
            "gateway_rss_at_end_mib": round(peak_rss_mib(gateway.pid, "VmRSS") or 0, 1),
            "node_peak_rss_mib": max(node_peaks) if node_peaks else None,
        }
        res["streams"] = streams(farm)
    res["targets"] = report.targets(res)
    return res


def table_sizes(farm: BenchFarm) -> dict[str, float]:
    """On-disk size of each big table with its indexes, in MiB (for PostgreSQL sizing)."""
    with farm.db() as conn:
        rows = conn.execute(
            """SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class
               WHERE relname IN ('jobs', 'tasks', 'job_history', 'task_history', 'inbox')"""
        ).fetchall()
    return {r["relname"]: round(r["bytes"] / 2**20, 1) for r in rows}


def override(sizes: Sizes, pairs: list[str]) -> Sizes:
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        current = getattr(sizes, name, None)
        if current is None or not value:
            raise SystemExit(f"--set {pair}: no such size (see Sizes in benchmarks/__main__.py)")
        if isinstance(current, tuple):
            changes[name] = tuple(int(v) for v in value.split(","))
        else:
            changes[name] = type(current)(value)
    return replace(sizes, **changes)


def streams(farm: BenchFarm) -> list[dict[str, Any]]:
    """Every stream under the prefix with its cap; reply streams summed up as one line."""
    r = farm.redis()
    out: list[dict[str, Any]] = []
    replies = []
    try:
        for key in sorted(k.decode() for k in r.scan_iter(match=f"{farm.prefix}:*", count=1000, _type="stream")):
            kind = key.split(":")[1]
            length = int(r.xlen(key))
            if kind == "reply":
                replies.append(length)
                continue
            out.append({"stream": key.removeprefix(farm.prefix + ":"), "length": length, "cap": CAPS.get(kind)})
    finally:
        r.close()
    if replies:
        out.append({"stream": f"reply:* ({len(replies)} streams, max)", "length": max(replies), "cap": CAPS["reply"]})
    return out


def step(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        res = run(args)
    except KeyboardInterrupt:
        print("benchmark interrupted; its database and keys are removed unless a second interrupt cut the "
              "clean-up short (then drop rfarm_bench_* and delete rfb*:* keys by hand)", file=sys.stderr)
        return 130
    except (TimeoutError, RuntimeError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(report.table(res))
    path = report.write(res, args.out)
    print(f"\nfigures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
