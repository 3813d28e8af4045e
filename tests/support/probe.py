"""What a fault test counts and prints: an open shell asking the farm all along (its unanswered
requests, the first answer after the fault), the first task started after it, and the one line
every fault test prints: ``lost 0, duplicates 0, illegal 0, unanswered 0, recovered in N s``."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from shell.client import Client
from shell.errors import FarmError, NoAnswer
from tests.support.farm import REPO, Farm, wait_for
from tests.support.wire import Audit, query


@dataclass
class Asked:
    sent: float  # time.monotonic()
    answered: float | None  # None: no answer within the shell's timeout


@dataclass
class Prober:
    """An open shell (the REPL's own client, one Redis connection, kept open across the fault)
    sending ``job.list`` every ``interval`` s, each with the shell's timeout (resent once midway, as
    the shell does). A request the farm never answers is counted as unanswered."""

    farm: Farm
    token: str
    interval: float = 0.25
    timeout: float = 30.0
    redis_url: str | None = None  # the shell host's view of the farm, when it differs from the farm's
    asked: list[Asked] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.client = Client(self.redis_url or self.farm.redis_url, self.farm.prefix, timeout=self.timeout)
        self.thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def __enter__(self) -> Prober:
        self.client.call("job.list", {}, self.token)  # it is open and answered before the fault
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=self.timeout + 10)
        self.client.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                self.client.call("job.list", {}, self.token)
                self.asked.append(Asked(sent, time.monotonic()))
            except NoAnswer:
                self.asked.append(Asked(sent, None))
            except FarmError as exc:  # answered, but refused: a test failure of its own
                self.asked.append(Asked(sent, time.monotonic()))
                self.refused.append(str(exc))
            self.stop.wait(self.interval)

    @property
    def unanswered(self) -> int:
        return sum(1 for a in self.asked if a.answered is None)

    def first_answer_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first answer to a request sent at or after it."""
        times = [a.answered - moment for a in self.asked if a.sent >= moment and a.answered is not None]
        return min(times, default=None)


@dataclass
class ShellProbe:
    """The Prober as a process of its own, placed where the farm places "probe" (the shell host
    of the namespace farm): it writes one line per request, ``sent answered`` (monotonic clock,
    shared by every process of the machine; ``-`` for no answer); the test reads them back."""

    farm: Farm
    token: str
    interval: float = 0.25
    timeout: float = 30.0
    redis_url: str | None = None

    def __enter__(self) -> ShellProbe:
        self.out = self.farm.root / "probe.lines"
        self.out.write_text("")
        argv = [sys.executable, "-m", "tests.support.probe", self.redis_url or self.farm.redis_url, self.farm.prefix,
                str(self.out), str(self.interval), str(self.timeout)]
        self.farm._spawn("probe", argv, RFARM_PROBE_TOKEN=self.token, PYTHONPATH=str(REPO))
        wait_for(lambda: self.asked, timeout=60, what="the shell probe's first answer")
        return self

    def __exit__(self, *_: object) -> None:
        proc = self.farm.procs.pop("probe", None)
        if proc is not None:  # the request in flight is let finish (answered or timed out) and written
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=self.timeout + 15)

    @property
    def asked(self) -> list[Asked]:
        lines = self.out.read_text().splitlines()
        out = []
        for line in lines:
            sent, answered = line.split()
            out.append(Asked(float(sent), None if answered == "-" else float(answered)))
        return out

    @property
    def refused(self) -> list[str]:
        return [line for line in (self.farm.root / "probe.log").read_text().splitlines() if "refused:" in line]

    @property
    def unanswered(self) -> int:
        return sum(1 for a in self.asked if a.answered is None)

    def first_answer_after(self, moment: float) -> float | None:
        times = [a.answered - moment for a in self.asked if a.sent >= moment and a.answered is not None]
        return min(times, default=None)


def database_now(database_url: str) -> datetime:
    return query(database_url, "SELECT clock_timestamp() AS now")[0]["now"]


def first_start_after(database_url: str, job_ids: list[int], moment: datetime) -> float | None:
    """Seconds from ``moment`` (the database's clock) to the first task start recorded after it."""
    row = query(database_url, "SELECT min(at) AS at FROM task_history WHERE job_id = ANY(%s) "
                "AND to_status = 'running' AND at > %s", (job_ids, moment))[0]
    return None if row["at"] is None else (row["at"] - moment).total_seconds()


def fault_line(report: Audit, unanswered: int, recovered: float) -> str:
    return (f"lost {len(report.lost)}, duplicates {len(report.duplicates)}, illegal {len(report.illegal)}, "
            f"unanswered {unanswered}, recovered in {recovered:.1f} s")


def main(argv: list[str]) -> int:
    """``python -m tests.support.probe URL PREFIX OUT INTERVAL TIMEOUT`` (token in RFARM_PROBE_TOKEN):
    the open shell of ShellProbe, until SIGTERM."""
    url, prefix, out, interval, timeout = argv
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    token = os.environ["RFARM_PROBE_TOKEN"]
    with Client(url, prefix, timeout=float(timeout)) as client, open(Path(out), "a", encoding="utf-8") as lines:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                client.call("job.list", {}, token)
                answered = f"{time.monotonic():.3f}"
            except NoAnswer:
                answered = "-"
            except FarmError as exc:
                answered = f"{time.monotonic():.3f}"
                print(f"refused: {exc}", flush=True)
            lines.write(f"{sent:.3f} {answered}\n")
            lines.flush()
            stop.wait(float(interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
