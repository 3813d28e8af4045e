"""Text views of replies, pure: a typed reply body and RenderOptions in, text lines out. No I/O, no clock."""

from __future__ import annotations

from typing import Any

from broker_contracts.durations import format_duration
from broker_contracts.messages import (
    FrameTimes,
    HistoryReply,
    JobDetail,
    JobReply,
    JobSummary,
    ListReply,
    LoginReply,
    LogsReply,
    NodesReply,
    ShowReply,
    SubmitReply,
    TaskInfo,
    UserReply,
)
from broker_contracts.states import JobStatus, TaskStatus
from shell.format import Cell, RenderOptions, ago, clock, colour, duration, hint, table
from shell.safe import printable


def status_cell(job: JobSummary) -> Cell:
    if job.paused:
        return Cell(f"{job.status.value} (paused)", "paused")
    return Cell(job.status.value, job.status.value)


def progress(job: JobSummary) -> str:
    return f"{job.frames_done}/{job.frames_total}"


def frames_text(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def frames_label(frames: str) -> str:
    """What an artist calls a task: "frame 3", or "frames 1-5" for a chunk ("1-5", "-3", "-5--1")."""
    single = frames.removeprefix("-").isdigit()
    return f"frame {printable(frames)}" if single else f"frames {printable(frames)}"


def change_subject(task: int | None, frames: str | None, attempt: int | None) -> str:
    """Whose status changed, in a history or a watch: "job", "frames 1-5, try 2" (the task's id
    only when its frames are not known)."""
    if task is None:
        return "job"
    what = frames_label(frames) if frames else f"task {task}"
    return f"{what}, try {attempt}" if attempt else what


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def progress_text(job: JobDetail) -> str:
    """The progress as a person says it: "4/4 frames done, in 4 tasks of 1 frame"."""
    return f"{progress(job)} frames done, in {_count(job.tasks_total, 'task')} of {_count(job.chunk, 'frame')}"


# --- auth -----------------------------------------------------------------------------------------


def render_registered(reply: UserReply, opts: RenderOptions) -> list[str]:
    return [f"registered {printable(reply.username)}: now run {hint(f'login {printable(reply.username)}', opts)}"]


def render_login(reply: LoginReply, opts: RenderOptions) -> list[str]:
    role = " (admin)" if reply.is_admin else ""
    return [f"logged in as {printable(reply.username)}{role}; the session lasts until {clock(reply.expires_at)}"]


def login_json(reply: LoginReply) -> dict[str, Any]:
    """The token stays in the credentials file: it is not printed (nor its sealed form)."""
    return reply.model_dump(mode="json", exclude={"sealed_token"})


def render_logout(reply: Any, opts: RenderOptions) -> list[str]:
    return ["logged out"]


def logout_json(reply: Any) -> dict[str, Any]:
    return {"logged_out": True}


def render_whoami(reply: UserReply, opts: RenderOptions) -> list[str]:
    return [f"{printable(reply.username)}{' (admin)' if reply.is_admin else ''}"]


# --- jobs -----------------------------------------------------------------------------------------


def render_submitted(reply: SubmitReply, opts: RenderOptions) -> list[str]:
    return [str(reply.id)]


def render_jobs(reply: ListReply, opts: RenderOptions, *, everyone: bool = False) -> list[str]:
    """The jobs table; an OWNER column when ``everyone`` (`jobs --all`) or the jobs have several owners."""
    if not reply.jobs:
        return ["no jobs"]
    owners = {job.owner for job in reply.jobs}
    show_owner = everyone or len(owners) > 1
    headers = ["ID", "NAME", "STATUS", "PROGRESS", "ETA", "CREATED"]
    if show_owner:
        headers.insert(2, "OWNER")
    rows: list[list[str | Cell]] = []
    for job in reply.jobs:
        row: list[str | Cell] = [
            str(job.id),
            printable(job.name),
            status_cell(job),
            progress(job),
            eta_text(job),
            ago(job.created_at, opts.now),
        ]
        if show_owner:
            row.insert(2, printable(job.owner))
        rows.append(row)
    flex = (1, 2) if show_owner else (1,)
    return table(headers, rows, opts, flex=flex, right=(0,))


def eta_text(job: JobSummary) -> str:
    """A running job's time left ("unknown" before its first frame is done); "-" for any other."""
    if job.status is not JobStatus.RUNNING:
        return "-"
    return "unknown" if job.eta_seconds is None else seconds_text(job.eta_seconds)


def render_all_jobs(reply: ListReply, opts: RenderOptions) -> list[str]:
    return render_jobs(reply, opts, everyone=True)


def jobs_json(reply: ListReply) -> list[dict[str, Any]]:
    return [job.model_dump(mode="json") for job in reply.jobs]


def _job_fields(job: JobDetail, opts: RenderOptions) -> list[tuple[str, str]]:
    status = colour(status_cell(job).text, status_cell(job).status, opts.color)
    fields = [
        ("status", status + (f" ({printable(job.reason)})" if job.reason else "")),
        ("owner", printable(job.owner)),
        ("progress", progress_text(job)),
        ("frames", printable(job.frames)),
        ("renderer", printable(job.renderer + _params(job.params))),
        ("priority", str(job.priority)),
        ("pool", printable(job.pool + (f", requires {', '.join(job.requires)}" if job.requires else ""))),
        ("attempts", f"up to {job.max_attempts} per task"),
    ]
    if job.after is not None:
        fields.append(("after", f"job {job.after}"))
    if job.limits:
        fields.append(("limits", printable(", ".join(job.limits))))
    if job.task_timeout:
        fields.append(("timeout", f"{format_duration(job.task_timeout)} per task"))
    if job.waiting:
        fields.append(("waiting", printable(job.waiting)))
    if job.blocked_nodes:
        fields.append(("blocked on", printable(", ".join(job.blocked_nodes))))
    fields += [
        ("output", printable(job.output)),
        ("created", f"{ago(job.created_at, opts.now)} ({clock(job.created_at)})"),
        ("updated", ago(job.updated_at, opts.now)),
    ]
    return fields


def _params(params: dict[str, Any]) -> str:
    if not params:
        return ""
    return " " + " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def render_show(reply: ShowReply, opts: RenderOptions) -> list[str]:
    job = reply.job
    lines = [f"job {job.id}  {printable(job.name)}"]
    fields = _job_fields(job, opts) + time_fields(reply.times, job.status is JobStatus.RUNNING)
    label = max(len(k) for k, _ in fields)
    lines += [f"  {k.ljust(label)}  {v}" for k, v in fields]
    lines.append("")
    lines += render_tasks(reply.tasks, opts)
    return lines


def seconds_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def time_fields(times: FrameTimes, running: bool) -> list[tuple[str, str]]:
    """Frame time min / mean / max, and for a running job the time left and when it should end."""
    if not times.done or times.min is None or times.mean is None or times.max is None:
        why = "no frame finished yet" if running else "no frame recorded (its renderer names no frame files)"
        out = [("frame time", f"unknown ({why})")]
        return [*out, ("time left", "unknown")] if running else out
    spread = f"min {seconds_text(times.min)}  mean {seconds_text(times.mean)}  max {seconds_text(times.max)}"
    out = [("frame time", f"{spread}  ({times.done} frame{'s' if times.done != 1 else ''})")]
    if running and times.left_seconds is not None:
        out.append(("time left", f"about {seconds_text(times.left_seconds)}, done around {clock(times.finishes_at)}"))
    return out


def render_tasks(tasks: list[TaskInfo], opts: RenderOptions) -> list[str]:
    if not tasks:
        return ["no tasks"]
    headers = ["FRAMES", "STATUS", "TRY", "NODE", "STARTED", "TOOK", "ERROR"]
    rows: list[list[str | Cell]] = []
    for task in tasks:
        error = task.error or (f"exit {task.exit_code}" if task.exit_code not in (None, 0) else "")
        rows.append(
            [
                frames_text(task.frame_first, task.frame_last),
                Cell(task.status.value, task.status.value),
                str(task.attempt),
                printable(task.node) or "-",
                ago(task.started_at, opts.now),
                took(task, opts),
                printable(error),
            ]
        )
    return table(headers, rows, opts, flex=(6, 3), right=(2,))


def took(task: TaskInfo, opts: RenderOptions) -> str:
    """How long the task's last attempt ran, from the task's own times: a running task up to now,
    an ended one to its end. A task back in the queue (its node lost, the farm restarted) shows
    "-": the time it waited is not time it took."""
    if task.started_at is None:
        return "-"
    if task.finished_at is not None:
        return duration(task.started_at, task.finished_at, opts.now)
    if task.status is TaskStatus.RUNNING:
        return duration(task.started_at, None, opts.now)
    return "-"


def render_history(reply: HistoryReply, opts: RenderOptions) -> list[str]:
    """Exact times here (not '2 min ago'): a history is read as a sequence, to the second."""
    job = reply.job
    head = f"job {job.id}  {printable(job.name)}  " + colour(status_cell(job).text, status_cell(job).status, opts.color)
    if not reply.history:
        return [head, "no status changes recorded"]
    rows: list[list[str | Cell]] = []
    for entry in reply.history:
        rows.append(
            [
                clock(entry.at),
                change_subject(entry.task, entry.frames, entry.attempt),
                Cell(printable(entry.from_) or "-", entry.from_),
                "→",
                Cell(printable(entry.to), entry.to),
                printable(entry.reason),
                printable(entry.actor),
            ]
        )
    return [head, *table(["TIME", "WHAT", "FROM", "", "TO", "REASON", "ACTOR"], rows, opts, flex=(5, 1, 6))]


def render_job_changed(reply: JobReply, opts: RenderOptions) -> list[str]:
    job = reply.job
    status = colour(status_cell(job).text, status_cell(job).status, opts.color)
    return [f"job {job.id} ({printable(job.name)}): {status}, priority {job.priority}"]


def render_logs(reply: LogsReply, opts: RenderOptions, *, raw: bool = False) -> list[str]:
    """Each line of output escaped; ``raw`` (`logs --raw`, asked for) prints it as the renderer wrote it."""
    if not reply.logs:
        return ["no output yet"]
    lines: list[str] = []
    for entry in reply.logs:
        where = f" on {printable(entry.node)}" if entry.node else ""
        lines.append(f"== {frames_label(entry.frames)}, try {entry.attempt}{where} ==")
        output = entry.output.rstrip("\n")
        shown = output.split("\n") if raw else [printable(line) for line in output.splitlines()]
        lines += shown if output else ["(no output)"]
    return lines


def render_raw_logs(reply: LogsReply, opts: RenderOptions) -> list[str]:
    return render_logs(reply, opts, raw=True)


def render_nodes(reply: NodesReply, opts: RenderOptions) -> list[str]:
    if not reply.nodes:
        return ["no render nodes are connected"]
    headers = ["NODE", "POOL", "STATE", "BUSY", "TAGS", "PROFILES", "VERSION", "SEEN", "JOBS"]
    rows: list[list[str | Cell]] = [
        [
            printable(node.id),
            printable(node.pool),
            Cell(printable(node.state) + (" (drained)" if node.drained else ""), node.state),
            f"{node.running}/{node.slots}",
            printable(",".join(node.tags)) or "-",
            printable(",".join(node.profiles)) or "-",
            printable(" ".join([node.version, *(node.renderers[name] for name in sorted(node.renderers))])),
            ago(node.last_seen, opts.now),
            printable(", ".join(f"{j.id} {j.name} ({j.owner})" for j in node.jobs)) or "-",
        ]
        for node in reply.nodes
    ]
    lines = table(headers, rows, opts, flex=(5, 4, 8, 0), right=(3,))
    return [*lines, "", *pool_lines(reply)]


def pool_lines(reply: NodesReply) -> list[str]:
    """Each pool's capacity: its live nodes, their slots, how many are busy and free."""
    pools: dict[str, list[int]] = {}
    for node in reply.nodes:
        if node.state in ("gone", "lost"):
            continue
        live = pools.setdefault(node.pool, [0, 0, 0, 0])  # nodes, slots, busy, drained slots
        live[0] += 1
        live[1] += node.slots
        live[2] += min(node.running, node.slots)
        live[3] += node.slots if node.drained else 0
    out = []
    for pool, (count, slots, busy, drained) in sorted(pools.items()):
        free = max(0, slots - busy - drained)
        note = f", {drained} drained" if drained else ""
        out.append(f"pool {printable(pool)}: {count} node(s), {busy} of {slots} slots busy, {free} free{note}")
    return out or ["no live render nodes"]
