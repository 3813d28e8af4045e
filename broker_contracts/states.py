"""The job and task state machines as pure tables. The store's guarded updates enforce them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TASK_TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
JOB_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.FAILED}),
    TaskStatus.RUNNING: frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.QUEUED, TaskStatus.CANCELLED}),
    # retry: a user puts failed and cancelled tasks back in the queue
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED}),
    TaskStatus.SUCCEEDED: frozenset(),
}

JOB_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset(),
}


def task_may(src: TaskStatus | None, dst: TaskStatus) -> bool:
    if src is None:
        return dst is TaskStatus.QUEUED
    return dst in TASK_TRANSITIONS[src]


def job_may(src: JobStatus | None, dst: JobStatus) -> bool:
    if src is None:
        return dst is JobStatus.QUEUED
    return dst in JOB_TRANSITIONS[src]


def task_sources(dst: TaskStatus) -> frozenset[TaskStatus]:
    """Every status the table lets a task leave for ``dst``: the guard of a move to it."""
    return frozenset(s for s in TaskStatus if task_may(s, dst))


def job_sources(dst: JobStatus) -> frozenset[JobStatus]:
    """Every status the table lets a job leave for ``dst``."""
    return frozenset(s for s in JobStatus if job_may(s, dst))


# what a user's retry brings back: the finished tasks and jobs that may return to the queue
TASK_RETRYABLE = TASK_TERMINAL & task_sources(TaskStatus.QUEUED)
JOB_RETRYABLE = JOB_TERMINAL & job_sources(JobStatus.QUEUED)
# finished without success: a job that depends on one of these cannot run until it is retried
JOB_UNSUCCESSFUL = JOB_TERMINAL - {JobStatus.SUCCEEDED}


def derive_job_status(current: JobStatus, task_statuses: Iterable[TaskStatus]) -> JobStatus:
    """The job's status that its tasks imply. A cancelled job stays cancelled until retried."""
    if current is JobStatus.CANCELLED:
        return current
    counts: dict[TaskStatus, int] = dict.fromkeys(TaskStatus, 0)
    total = 0
    for status in task_statuses:
        counts[status] += 1
        total += 1
    if counts[TaskStatus.FAILED]:
        return JobStatus.FAILED
    if total and counts[TaskStatus.SUCCEEDED] == total:
        return JobStatus.SUCCEEDED
    if counts[TaskStatus.RUNNING] or counts[TaskStatus.SUCCEEDED]:
        return JobStatus.RUNNING
    if counts[TaskStatus.CANCELLED] and not counts[TaskStatus.QUEUED]:
        return JobStatus.CANCELLED
    return JobStatus.QUEUED


def replay_is_legal(statuses: Iterable[tuple[str | None, str]], *, kind: str = "task") -> tuple[bool, str]:
    """Check a history (from, to) chain: each step legal and each 'from' the previous 'to'."""
    may = task_may if kind == "task" else job_may
    enum = TaskStatus if kind == "task" else JobStatus
    previous: str | None = None
    for index, (src, dst) in enumerate(statuses):
        if src != previous:
            return False, f"step {index}: from {src!r} but the last status was {previous!r}"
        if not may(enum(src) if src else None, enum(dst)):  # type: ignore[arg-type]
            return False, f"step {index}: {src} -> {dst} is not allowed"
        previous = dst
    return True, ""
