"""What a fault test counts and prints: an open shell asking the farm all along (its unanswered
requests, the first answer after the fault), the first task started after it, and the one line
every fault test prints: ``lost 0, duplicates 0, illegal 0, unanswered 0, recovered in N s``."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from shell.client import Client
from shell.errors import FarmError, NoAnswer
from tests.support.farm import Farm
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
