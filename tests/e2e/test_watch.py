"""watch / wait / submit --watch / script mode as the real `rfarm` process against a real farm."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.support.farm import BIN, Farm


def submit(farm: Farm, config: str, *args: str) -> int:
    res = farm.rfarm("submit", "shot", "--renderer", "sleep", *args, "--json", config=config)
    assert res.code == 0, res
    return int(res.json()["id"])


def test_submit_watch_prints_each_change_and_ends_with_the_job(farm: Farm, unique: str) -> None:
    farm.start_node(f"n-{unique}", "--slots", "2")
    alice = farm.user(f"alice{unique}")
    res = farm.rfarm("submit", "shot", "--renderer", "sleep", "--param", "seconds=0.3", "--frames", "1-4",
                     "--chunk", "2", "--watch", config=alice)
    assert res.code == 0, res
    lines = res.out.splitlines()
    job_id = int(lines[0])
    assert any("frames 1-2, try 1  queued → running" in line for line in lines)
    assert any(line.endswith("running → succeeded") is False and "job  running → succeeded" in line for line in lines)
    assert "progress 4/4 frames, succeeded" in lines
    assert lines[-1].startswith(f"job {job_id} succeeded (4/4 frames in ")


def test_watch_json_prints_one_document(farm: Farm, unique: str) -> None:
    farm.start_node(f"n-{unique}")
    alice = farm.user(f"alice{unique}")
    job_id = submit(farm, alice, "--param", "seconds=0.2", "--frames", "1-3")
    res = farm.rfarm("watch", str(job_id), "--json", config=alice)
    assert res.code == 0, res
    doc = json.loads(res.out)  # exactly one document
    assert doc["outcome"] == "succeeded" and doc["job"]["frames_done"] == 3
    assert doc["counts"] == {"succeeded": 3}


def test_wait_exit_codes(farm: Farm, unique: str) -> None:
    farm.start_node(f"n-{unique}")
    alice = farm.user(f"alice{unique}")
    slow = submit(farm, alice, "--param", "seconds=1", "--frames", "1-3")
    started = time.monotonic()
    res = farm.rfarm("wait", str(slow), "--timeout", "0.5", config=alice)
    assert res.code == 3 and "gave up after 0.5 s" in res.err and res.out == ""
    assert time.monotonic() - started < 5
    done = farm.rfarm("wait", str(slow), config=alice)
    assert done.code == 0 and done.out.startswith(f"job {slow} succeeded"), done
    bad = submit(farm, alice, "--param", "seconds=0.1", "--param", "fail_rate=1", "--max-attempts", "1")
    failed = farm.rfarm("wait", str(bad), "--json", config=alice)
    assert failed.code == 1 and failed.json()["outcome"] == "failed"
    other = farm.user(f"bob{unique}")
    assert farm.rfarm("wait", str(slow), config=other).code == 1  # not theirs: not found


def test_ctrl_c_stops_watching_not_the_job(farm: Farm, unique: str) -> None:
    farm.start_node(f"n-{unique}")
    alice = farm.user(f"alice{unique}")
    job_id = submit(farm, alice, "--param", "seconds=0.5", "--frames", "1-6")
    proc = subprocess.Popen([str(BIN / "rfarm"), "watch", str(job_id)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=farm.env(RFARM_CONFIG_DIR=str(farm.root / alice)))
    assert proc.stdout is not None
    first = proc.stdout.readline().decode()
    assert first.startswith("progress") or "→" in first
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=15)
    assert proc.returncode == 130
    assert f"stopped watching job {job_id}; it goes on" in out.decode()
    assert farm.rfarm("wait", str(job_id), "--timeout", "60", config=alice).code == 0


def test_script_mode_runs_lines_and_stops_at_the_first_error(farm: Farm, unique: str) -> None:
    farm.start_node(f"n-{unique}")
    alice = farm.user(f"alice{unique}")
    job_id = submit(farm, alice, "--param", "seconds=0.1", "--frames", "1-2")
    script = f"# a comment\nwait {job_id} --timeout 30\nwhoami\nshow 99999999\nwhoami\n"
    res = farm.rfarm(stdin=script, config=alice)
    assert res.code == 1, res
    assert res.out.splitlines() == [f"job {job_id} succeeded (2/2 frames in {res.out.split(' in ')[1].split(')')[0]})",
                                    alice]
    assert res.err.startswith("error: line 4:")
    going = farm.rfarm("--keep-going", stdin=script, config=alice)
    assert going.code == 1 and going.out.splitlines()[-1] == alice


def test_watch_sees_a_cancel_as_it_happens(farm: Farm, unique: str) -> None:
    alice = farm.user(f"alice{unique}")
    job_id = submit(farm, alice, "--param", "seconds=0.2", "--frames", "1-2")  # no node: stays queued
    proc = subprocess.Popen([str(BIN / "rfarm"), "watch", str(job_id)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=farm.env(RFARM_CONFIG_DIR=str(farm.root / alice)))
    try:
        time.sleep(6)  # past the shell's early re-subscription: only a pushed notice can tell it now
        cancelled = time.monotonic()
        assert farm.rfarm("cancel", str(job_id), config=alice).code == 0
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    text = out.decode()
    assert text.splitlines()[-1].startswith(f"job {job_id} cancelled")
    assert "job  queued → cancelled" in text and time.monotonic() - cancelled < 5
