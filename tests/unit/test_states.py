"""The pure core: the state machines and frame ranges, without I/O."""

from __future__ import annotations

import pytest

from broker_contracts.frames import parse_frames
from broker_contracts.states import (
    JOB_RETRYABLE,
    JOB_TERMINAL,
    JOB_UNSUCCESSFUL,
    TASK_RETRYABLE,
    TASK_TERMINAL,
    JobStatus,
    TaskStatus,
    derive_job_status,
    job_may,
    job_sources,
    replay_is_legal,
    task_may,
    task_sources,
)

Q, R, S, F, C = (TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def test_task_transitions_follow_the_design() -> None:
    assert task_may(None, Q) and not task_may(None, R)
    assert task_may(Q, R) and task_may(R, S) and task_may(R, F)
    assert task_may(R, Q)  # lease lost, or failed with attempts left
    assert all(task_may(s, C) for s in (Q, R))
    assert not task_may(S, Q) and not task_may(S, C)  # succeeded is final
    assert task_may(F, Q) and task_may(C, Q)  # retry
    assert not task_may(Q, S)  # nothing succeeds without running


def test_terminal_sets() -> None:
    assert frozenset({S, F, C}) == TASK_TERMINAL
    assert {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED} == set(JOB_TERMINAL)
    assert not job_may(JobStatus.SUCCEEDED, JobStatus.QUEUED)
    assert job_may(JobStatus.FAILED, JobStatus.QUEUED) and job_may(JobStatus.CANCELLED, JobStatus.QUEUED)


def test_the_sets_the_store_guards_with_come_from_the_tables() -> None:
    assert task_sources(C) == {Q, R}  # cancel: every unfinished task
    assert task_sources(Q) == {R, F, C} and task_sources(S) == {R}
    assert job_sources(JobStatus.QUEUED) == {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}
    assert {F, C} == TASK_RETRYABLE  # retry brings back what did not succeed, never a running task
    assert {JobStatus.FAILED, JobStatus.CANCELLED} == JOB_RETRYABLE == JOB_UNSUCCESSFUL
    for dst in TaskStatus:
        assert all(task_may(src, dst) for src in task_sources(dst))
        assert not any(task_may(src, dst) for src in set(TaskStatus) - task_sources(dst))


@pytest.mark.parametrize(
    ("tasks", "current", "expected"),
    [
        ([Q, Q], JobStatus.QUEUED, JobStatus.QUEUED),
        ([R, Q], JobStatus.QUEUED, JobStatus.RUNNING),
        ([S, Q], JobStatus.RUNNING, JobStatus.RUNNING),  # between two tasks it stays running
        ([S, S], JobStatus.RUNNING, JobStatus.SUCCEEDED),
        ([S, F, R], JobStatus.RUNNING, JobStatus.FAILED),  # a task out of attempts fails the job
        ([C, C], JobStatus.CANCELLED, JobStatus.CANCELLED),
        ([Q, R], JobStatus.CANCELLED, JobStatus.CANCELLED),  # cancel holds until a retry
        ([], JobStatus.QUEUED, JobStatus.QUEUED),
    ],
)
def test_job_status_is_derived_from_tasks(tasks: list[TaskStatus], current: JobStatus, expected: JobStatus) -> None:
    assert derive_job_status(current, tasks) is expected


def test_replay_finds_illegal_and_broken_chains() -> None:
    assert replay_is_legal([(None, "queued"), ("queued", "running"), ("running", "succeeded")]) == (True, "")
    ok, why = replay_is_legal([(None, "queued"), ("queued", "succeeded")])
    assert not ok and "not allowed" in why
    ok, why = replay_is_legal([(None, "queued"), ("running", "succeeded")])
    assert not ok and "last status" in why
    assert replay_is_legal([(None, "queued"), ("queued", "running"), ("running", "queued")], kind="job")[0]


@pytest.mark.parametrize(("text", "first", "last"), [("1-100", 1, 100), ("7", 7, 7), (" 0 - 5 ", 0, 5)])
def test_frame_ranges(text: str, first: int, last: int) -> None:
    r = parse_frames(text)
    assert (r.first, r.last, r.count) == (first, last, last - first + 1)


@pytest.mark.parametrize("text", ["10-1", "", "a-b", "1-2-3", "1-200000", "12345678", " -5 - 5 ", "-3", "1-3\n"])
def test_bad_frame_ranges_say_why(text: str) -> None:
    with pytest.raises(ValueError, match="frame range"):
        parse_frames(text)


def test_chunks_cover_every_frame_once() -> None:
    chunks = parse_frames("1-24").chunks(5)
    assert chunks == [(1, 5), (6, 10), (11, 15), (16, 20), (21, 24)]
    assert parse_frames("3").chunks(10) == [(3, 3)]
