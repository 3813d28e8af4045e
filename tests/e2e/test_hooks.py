"""`rfarmctl hooks --exec`: once per finished job, from a durable cursor, through kills and failures."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.farm import BIN, Farm, wait_for

pytestmark = pytest.mark.timeout(120)

# The hook: notes that it started, sleeps through its first run for the job named "bad" (the
# runner is killed meanwhile), fails its first run for the job named "good", then notes it ran.
HOOK = """
import json, os, sys, time
from pathlib import Path
here = Path(sys.argv[1])
job = json.load(sys.stdin)
env = os.environ
with open(here / "started", "a") as f:
    f.write(env["RFARM_JOB_ID"] + "\\n")
for kind, name in (("slow", "bad"), ("flaky", "good")):
    if job["name"] == name and not (here / f"{kind}.seen").exists():
        (here / f"{kind}.seen").touch()
        if kind == "slow":
            time.sleep(60)
        sys.exit(1)
line = [env["RFARM_JOB_ID"], env["RFARM_JOB_STATUS"], env["RFARM_JOB_OWNER"], str(job["id"]), job["status"],
        job["name"], str("RFARM_DATABASE_URL" in env)]
with open(here / "ran", "a") as f:
    f.write(" ".join(line) + "\\n")
"""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_hook_runs_once_per_finished_job_through_a_kill_and_a_failure(farm: Farm, unique: str) -> None:
    here = farm.root / "hook"
    here.mkdir()
    (here / "hook.py").write_text(HOOK)
    runner = ["hooks", "--name", f"t{unique}", "--exec", sys.executable, str(here / "hook.py"), str(here)]
    farm._spawn("hooks", [str(BIN / "rfarmctl"), *runner])
    wait_for(lambda: "running" in (farm.root / "hooks.log").read_text(), timeout=30, what="the runner's cursor")

    farm.start_node(f"n1-{unique}")
    alice = farm.user(f"alice{unique}")

    def submit(name: str, *args: str) -> int:
        res = farm.rfarm("submit", name, "--json", *args, config=alice)
        assert res.code == 0, res
        return int(res.json()["id"])

    good = submit("good", "--renderer", "noop")
    bad = submit("bad", "--renderer", "sleep", "--param", "seconds=0", "--param", "fail_frames=1",
                 "--max-attempts", "1")
    held = submit("held", "--renderer", "noop", "--after", str(bad))  # fails with the job it waits for
    stopped = submit("stopped", "--renderer", "sleep", "--param", "seconds=60")
    assert farm.rfarm("cancel", str(stopped), config=alice).code == 0
    wait_for(lambda: str(bad) in lines(here / "started"), timeout=60, what="the slow hook to start")
    farm.kill("hooks", signal.SIGKILL)
    farm._spawn("hooks", [str(BIN / "rfarmctl"), *runner])
    later = submit("later", "--renderer", "noop")
    wait_for(lambda: (farm.root / "hooks.log").read_text().count("running") >= 2, timeout=30, what="the restart")
    second = farm.rfarmctl(*runner[:3], "--once", *runner[3:])  # the same name while one runs: refused
    assert second.code == 1 and "another hooks runner" in second.err, second

    ours = {good: "succeeded", bad: "failed", held: "failed", stopped: "cancelled", later: "succeeded"}
    wait_for(lambda: {int(line.split()[0]) for line in lines(here / "ran")} >= set(ours), timeout=60,
             what="every hook to run")
    ran = [line.split() for line in lines(here / "ran") if int(line.split()[0]) in ours]
    assert Counter(int(r[0]) for r in ran) == dict.fromkeys(ours, 1), ran  # once each, no more
    for job_id, status, owner, doc_id, doc_status, _name, sees_db in ran:
        assert status == doc_status == ours[int(job_id)] and owner == alice and doc_id == job_id
        assert sees_db == "False"  # the hook gets no database URL
    started = Counter(int(line) for line in lines(here / "started"))
    assert started[bad] == 2 and started[good] == 2  # killed mid-run: again; failed: again after a pause
    log = (farm.root / "hooks.log").read_text()
    assert f"hook for job {good} (succeeded) failed: exit code 1" in log
