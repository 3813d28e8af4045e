"""The benchmark in CI: tiny sizes, real servers; it must complete and write its figures (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.farm import REPO


@pytest.mark.timeout(600)
def test_quick_benchmark_completes_and_writes_json(tmp_path: Path, redis_url: str, pg_admin_url: str) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--redis-url", redis_url,
         "--pg-url", pg_admin_url, "--keep-logs", str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=580,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(out) in proc.stdout
    res = json.loads(out.read_text())
    for key in ("machine", "floor", "roundtrips_empty", "throughput", "quota_flood", "dispatch", "roundtrips_full",
                "bigfarm", "fairshare", "memory", "streams", "targets", "blender"):
        assert key in res, key
    assert {d["nodes"] for d in res["dispatch"]} == {1, 2}
    assert all(d["history"]["complete"] for d in res["dispatch"]), res["dispatch"]
    assert res["bigfarm"]["succeeded"] == res["bigfarm"]["tasks"]
    if "skipped" not in res["blender"]:  # no Blender on this machine (CI installs it)
        assert res["blender"]["status"] == "succeeded" and res["blender"]["frames_recorded_by_the_farm"] == 6
    assert res["fairshare"]["late_user"]["samples"] > 0 and res["fairshare"]["rate"]["ratio"] is not None
    assert res["throughput"]["2_gateways"]["jobs"]["requests"] > 0
    assert all(s["cap"] is None or s["length"] <= s["cap"] * 1.1 for s in res["streams"])
