"""`rfarmctl hooks --exec CMD [ARGS…]`: run an operator's command once per finished job.

CMD runs without a shell, once per finish (succeeded, failed, cancelled), with the job as one JSON
document on its standard input and RFARM_JOB_ID, RFARM_JOB_STATUS, RFARM_JOB_OWNER in its
environment. The runner's cursor is in PostgreSQL (store/hooks.py) and moves past a finish only
after CMD ended with exit 0 for it: killed and started again, the runner goes on with the first
finish whose hook had not ended (at least once; exactly once for every hook that had ended). A
failing CMD is logged and run again for the same finish after a growing pause (1 s doubling to
``--max-backoff``); finishes after it wait, so their order is kept. One runner per ``--name`` at a
time (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row

from broker_contracts.config import Settings
from broker_contracts.keys import valid_name
from rfarmctl.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CtlError, unreachable
from store import hooks

log = logging.getLogger("rfarm.hooks")
POLL = 1.0
PR_SET_PDEATHSIG = 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("hooks", help="run a command once per finished job (succeeded, failed, cancelled)")
    p.add_argument("--exec", dest="argv", nargs=argparse.REMAINDER, metavar="CMD [ARGS…]", required=True,
                   help="the command and its arguments (everything after --exec; no shell)")
    p.add_argument("--name", default="default", help="the runner's name: its own cursor (default: default)")
    p.add_argument("--from-start", action="store_true", help="a new runner starts at the first finish, not now")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds CMD may take (default 300)")
    p.add_argument("--max-backoff", type=float, default=300.0, help="longest pause between retries (default 300)")
    p.add_argument("--once", action="store_true", help="run the hooks of the finishes there are now, then stop")
    p.set_defaults(run=cmd_hooks)


def job_document(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "owner": row["owner"],
        "status": row["status"],
        "reason": row["reason"],
        "renderer": row["renderer"],
        "pool": row["pool"],
        "priority": row["priority"],
        "frames": f"{row['frame_first']}-{row['frame_last']}",
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat(),
    }


def run_hook(argv: list[str], row: dict[str, Any], timeout: float) -> str | None:
    """Run CMD for one finish; None when it ended with exit 0, else why not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFARM_")}  # no database URL for CMD
    env.update(RFARM_JOB_ID=str(row["id"]), RFARM_JOB_STATUS=str(row["status"]), RFARM_JOB_OWNER=str(row["owner"]))
    try:
        done = subprocess.run(
            argv,
            input=json.dumps(job_document(row)).encode(),
            env=env,
            timeout=timeout,
            capture_output=True,
            check=False,
            preexec_fn=_die_with_parent,
        )
    except subprocess.TimeoutExpired:
        return f"took more than {timeout:g} s (stopped)"
    except OSError as exc:
        return f"cannot start {argv[0]}: {exc.strerror or exc}"
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return f"exit code {done.returncode}" + (f": {said[-1][:300]!r}" if said else "")
    return None


def _die_with_parent() -> None:
    """In the hook's process: be killed when the runner dies, so that a runner killed while its
    hook runs leaves no hook behind that ends after it (and whose finish then ran twice)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def cmd_hooks(args: argparse.Namespace) -> int:
    if not args.argv:
        raise CtlError(EXIT_USAGE, "--exec needs a command")
    if not valid_name(args.name):
        raise CtlError(EXIT_USAGE, f"--name {args.name!r} must be letters, digits, '_', '.' or '-'")
    if not args.timeout > 0 or not args.max_backoff >= 1:
        raise CtlError(EXIT_USAGE, "--timeout must be positive and --max-backoff at least 1")
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("RFARM_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s hooks %(levelname)s %(message)s")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    url = Settings.from_env().database_url
    try:
        with psycopg.connect(url, row_factory=dict_row, autocommit=True, connect_timeout=10) as conn:
            return _loop(conn, args, stop)
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CtlError(EXIT_REFUSED, "the database has no hook tables yet: run `rfarmctl migrate`") from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _loop(conn: psycopg.Connection, args: argparse.Namespace, stop: threading.Event) -> int:
    got = conn.execute("SELECT pg_try_advisory_lock(hashtext('rfarm hooks ' || %s)) AS got", (args.name,)).fetchone()
    if not got or not got["got"]:  # type: ignore[call-overload]
        raise CtlError(EXIT_REFUSED, f"another hooks runner named {args.name!r} is running")
    with conn.transaction():
        last = hooks.cursor(conn, args.name, from_start=args.from_start)
    log.info("runner %s: running %s after finish %d", args.name, args.argv[0], last)
    backoff = 1.0
    while not stop.is_set():
        rows = hooks.finishes_after(conn, last)
        if not rows and args.once:
            return EXIT_OK
        for row in rows:
            while not stop.is_set():
                failed = run_hook(args.argv, row, args.timeout)
                if failed is None:
                    break
                log.warning("hook for job %s (%s) failed: %s; again in %.0f s", row["id"], row["status"], failed,
                            backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, args.max_backoff)
            if stop.is_set():
                break
            backoff = 1.0
            hooks.advance(conn, args.name, row["finish"])
            last = row["finish"]
            log.info("hook ran for job %s (%s)", row["id"], row["status"])
        if not rows:
            stop.wait(POLL)
    return EXIT_OK


