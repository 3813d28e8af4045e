"""The live view of one job: a state fed by the watch reply and pushed notices, and pure renderers.

``WatchState`` holds what the farm last said about the job (summary, task counts, running tasks)
and which status changes were already shown; ``apply`` takes one notice body and returns the
changes not seen before. The renderers are pure: state, options and the current time in, lines out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from broker_contracts.messages import HistoryEntry, JobSummary, WatchNotice, WatchReply
from broker_contracts.states import JOB_TERMINAL, JobStatus, TaskStatus
from shell.format import RenderOptions, colour, cut, duration, width_of
from shell.safe import printable
from shell.views import change_subject, frames_label, frames_text, status_cell

BAR_MAX = 30
RUNNING_SHOWN = 6
STATUS_ORDER = [s.value for s in TaskStatus]

EntryKey = tuple[str, int | None, str | None, str, int | None]


def entry_key(entry: HistoryEntry) -> EntryKey:
    return (entry.at.isoformat(), entry.task, entry.from_, entry.to, entry.attempt)


@dataclass(frozen=True)
class RunningTask:
    task: int
    node: str | None
    frames: str
    done: int = 0


@dataclass
class WatchState:
    job: JobSummary
    counts: dict[str, int]
    running: list[RunningTask]
    cutoff: datetime  # changes at or before this were part of the first snapshot: not news
    started: datetime | None = None  # when the first task started (for the estimate)
    seen: set[EntryKey] = field(default_factory=set)
    changes: list[HistoryEntry] = field(default_factory=list)

    @classmethod
    def from_reply(cls, reply: WatchReply) -> WatchState:
        state = cls(job=reply.job, counts={}, running=[], cutoff=reply.job.updated_at)
        state.refresh(reply)
        return state

    def refresh(self, reply: WatchReply) -> None:
        """A full snapshot (the reply to a (re-)subscription): replaces counts and running tasks."""
        self.job = JobSummary.model_validate(reply.job.model_dump())
        counts: dict[str, int] = {}
        for task in reply.tasks:
            counts[task.status.value] = counts.get(task.status.value, 0) + 1
        self.counts = counts
        self.running = [
            RunningTask(t.id, t.node, frames_text(t.frame_first, t.frame_last))
            for t in reply.tasks
            if t.status is TaskStatus.RUNNING
        ]
        stamps = [s for t in reply.tasks for s in (t.started_at, t.finished_at) if s is not None]
        if not self.seen:
            self.cutoff = max([self.cutoff, *stamps])
        starts = [t.started_at for t in reply.tasks if t.started_at is not None]
        if starts and self.started is None:
            self.started = min(starts)

    def apply(self, body: dict[str, Any], now: datetime) -> list[HistoryEntry]:
        """One notice body (a WatchNotice); returns the changes not shown yet. Raises
        ValidationError if the body is not one."""
        notice = WatchNotice.model_validate(body)
        self.job = notice.job
        self.counts = dict(notice.counts)
        self.running = [RunningTask(r.task, r.node, r.frames, r.done) for r in notice.running]
        new: list[HistoryEntry] = []
        for entry in notice.history:
            key = entry_key(entry)
            if key in self.seen:
                continue
            self.seen.add(key)
            if entry.at <= self.cutoff:
                continue
            new.append(entry)
        self.changes += new
        if self.started is None:
            starts = [e.at for e in new if e.to == TaskStatus.RUNNING.value and e.task is not None]
            self.started = min(starts) if starts else (self.job.updated_at if self.running else None)
        return new

    @property
    def ended(self) -> bool:
        """Succeeded, failed or cancelled: nothing more will happen unless someone retries it."""
        return self.job.status in JOB_TERMINAL

    @property
    def idle_paused(self) -> bool:
        """Paused with nothing running: a watch has nothing more to show until it is resumed."""
        return self.job.paused and not self.ended and self.counts.get(TaskStatus.RUNNING.value, 0) == 0

    def eta_seconds(self, now: datetime) -> float | None:
        done, total = self.job.frames_done, self.job.frames_total
        if self.started is None or done <= 0 or done >= total:
            return None
        spent = (now - self.started).total_seconds()
        return max(0.0, spent / done * (total - done))


# --- renderers (pure) ---------------------------------------------------------------------------


def bar(done: int, total: int, width: int) -> str:
    """``[#######.......]``-like bar of ``width`` cells (block characters)."""
    width = max(width, 1)
    filled = 0 if total <= 0 else min(width, done * width // total)
    return "█" * filled + "░" * (width - filled)


def _seconds(value: float) -> str:
    seconds = int(value)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def render_status(state: WatchState, opts: RenderOptions) -> list[str]:
    """The block redrawn in place: job line with bar, tasks by status, running tasks, time."""
    job = state.job
    width = opts.width
    cell = status_cell(job)
    pct = 100 * job.frames_done // job.frames_total if job.frames_total else 0
    head = f"job {job.id} "
    tail = f" {job.frames_done}/{job.frames_total} frames {pct:3d}%"
    name_room = max(8, width // 4)
    name = cut(printable(job.name), name_room)
    status_text = cell.text
    bar_room = width - len(head) - width_of(name) - len(status_text) - len(tail) - 4
    bar_width = min(BAR_MAX, bar_room)
    first = f"{head}{name}  {colour(status_text, cell.status, opts.color)}"
    if bar_width >= 5:
        first += f"  {bar(job.frames_done, job.frames_total, bar_width)}{tail}"
    else:
        first += tail
    lines = [first]
    parts = [colour(f"{state.counts[s]} {s}", s, opts.color) for s in STATUS_ORDER if state.counts.get(s)]
    lines.append("tasks: " + (", ".join(parts) if parts else "none"))
    for task in state.running[:RUNNING_SHOWN]:
        where = f"on {printable(task.node)}" if task.node else "starting"
        what = frames_label(task.frames) if task.frames else f"task {task.task}"
        lines.append(cut(f"  {what} {where}" + (f", {task.done} done" if task.done else ""), width))
    if len(state.running) > RUNNING_SHOWN:
        lines.append(f"  … and {len(state.running) - RUNNING_SHOWN} more running")
    lines.append(time_line(state, opts.now))
    return lines


def time_line(state: WatchState, now: datetime) -> str:
    job = state.job
    text = f"elapsed {duration(job.created_at, job.updated_at if state.ended else None, now)}"
    if state.ended:
        return text
    eta = state.eta_seconds(now)
    if eta is not None:
        text += f", about {_seconds(eta)} left"
    elif job.paused:
        text += ", paused"
    elif job.status is JobStatus.QUEUED:
        text += ", waiting for a node" if not job.reason else f", {printable(job.reason)}"
    return text


def render_change(entry: HistoryEntry, opts: RenderOptions) -> str:
    """One status change as it happens: local time, what, from → to, reason."""
    when = entry.at.astimezone().strftime("%H:%M:%S")
    what = change_subject(entry.task, entry.frames, entry.attempt)
    src = printable(entry.from_) or "new"
    to = printable(entry.to)
    reason = printable(entry.reason)
    plain = f"{when}  {what}  {src} → {to}  {reason}"
    if width_of(plain) > opts.width:
        room = max(0, opts.width - (width_of(plain) - width_of(reason)))
        plain_reason = cut(reason, room)
    else:
        plain_reason = reason
    arrow = f"{colour(src, entry.from_, opts.color)} → {colour(to, entry.to, opts.color)}"
    return f"{when}  {what}  {arrow}  {plain_reason}".rstrip()


def render_outcome(state: WatchState, opts: RenderOptions, outcome: str) -> str:
    """The last line: how the watch ended."""
    job = state.job
    frames = f"{job.frames_done}/{job.frames_total} frames"
    took = duration(job.created_at, job.updated_at, opts.now)
    if outcome == "interrupted":
        return f"stopped watching job {job.id}; it goes on ({job.status.value}, {frames})"
    if outcome == "timeout":
        return f"job {job.id} is still {job.status.value} ({frames})"
    if outcome == "paused":
        return f"job {job.id} is paused and nothing is running ({frames}): `resume {job.id}` to go on"
    reason = f": {printable(job.reason)}" if job.reason and job.status is not JobStatus.SUCCEEDED else ""
    status = colour(job.status.value, job.status.value, opts.color)
    return f"job {job.id} {status} ({frames} in {took}){reason}"


def outcome_json(state: WatchState, outcome: str, elapsed: float) -> dict[str, Any]:
    """The one JSON document of `watch --json` / `wait --json`: exact times, no colours."""
    return {
        "outcome": outcome,
        "job": state.job.model_dump(mode="json"),
        "counts": dict(state.counts),
        "running": [asdict(t) for t in state.running],
        "changes": [e.model_dump(mode="json", by_alias=True) for e in state.changes],
        "watched_seconds": round(elapsed, 3),
    }
