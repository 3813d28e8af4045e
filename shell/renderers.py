"""Pure renderers: a typed reply body and RenderOptions in, text lines out. No I/O, no clock."""

from __future__ import annotations

from typing import Any

from broker_contracts.messages import (
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
from shell.format import Cell, RenderOptions, ago, clock, colour, duration, table


def status_cell(job: JobSummary) -> Cell:
    if job.paused:
        return Cell(f"{job.status.value} (paused)", "paused")
    return Cell(job.status.value, job.status.value)


def progress(job: JobSummary) -> str:
    return f"{job.frames_done}/{job.frames_total}"


def frames_text(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


# --- auth -----------------------------------------------------------------------------------------


def render_registered(reply: UserReply, opts: RenderOptions) -> list[str]:
    return [f"registered {reply.username}: now run `rfarm login {reply.username}`"]


def render_login(reply: LoginReply, opts: RenderOptions) -> list[str]:
    role = " (admin)" if reply.is_admin else ""
    return [f"logged in as {reply.username}{role}; the session lasts until {clock(reply.expires_at)}"]


def login_json(reply: LoginReply) -> dict[str, Any]:
    """The token stays in the credentials file: it is not printed (nor its sealed form)."""
    return reply.model_dump(mode="json", exclude={"sealed_token"})


def render_logout(reply: Any, opts: RenderOptions) -> list[str]:
    return ["logged out"]


def logout_json(reply: Any) -> dict[str, Any]:
    return {"logged_out": True}


def render_whoami(reply: UserReply, opts: RenderOptions) -> list[str]:
    return [f"{reply.username}{' (admin)' if reply.is_admin else ''}"]


# --- jobs -----------------------------------------------------------------------------------------


def render_submitted(reply: SubmitReply, opts: RenderOptions) -> list[str]:
    return [str(reply.id)]


def render_jobs(reply: ListReply, opts: RenderOptions) -> list[str]:
    if not reply.jobs:
        return ["no jobs"]
    owners = {job.owner for job in reply.jobs}
    headers = ["ID", "NAME", "STATUS", "PROGRESS", "CREATED"]
    if len(owners) > 1:
        headers.insert(2, "OWNER")
    rows: list[list[str | Cell]] = []
    for job in reply.jobs:
        row: list[str | Cell] = [
            str(job.id),
            job.name,
            status_cell(job),
            progress(job),
            ago(job.created_at, opts.now),
        ]
        if len(owners) > 1:
            row.insert(2, job.owner)
        rows.append(row)
    flex = (1, 2) if len(owners) > 1 else (1,)
    return table(headers, rows, opts, flex=flex, right=(0,))


def jobs_json(reply: ListReply) -> list[dict[str, Any]]:
    return [job.model_dump(mode="json") for job in reply.jobs]


def _job_fields(job: JobDetail, opts: RenderOptions) -> list[tuple[str, str]]:
    status = colour(status_cell(job).text, status_cell(job).status, opts.color)
    fields = [
        ("status", status + (f" ({job.reason})" if job.reason else "")),
        ("owner", job.owner),
        ("progress", f"{progress(job)} frames, {job.tasks_total} tasks of {job.chunk}"),
        ("frames", job.frames),
        ("renderer", job.renderer + _params(job.params)),
        ("priority", str(job.priority)),
        ("pool", job.pool + (f", requires {', '.join(job.requires)}" if job.requires else "")),
        ("attempts", f"up to {job.max_attempts} per task"),
    ]
    if job.after is not None:
        fields.append(("after", f"job {job.after}"))
    if job.waiting:
        fields.append(("waiting", job.waiting))
    if job.blocked_nodes:
        fields.append(("blocked on", ", ".join(job.blocked_nodes)))
    fields += [
        ("output", job.output),
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
    lines = [f"job {job.id}  {job.name}"]
    fields = _job_fields(job, opts)
    label = max(len(k) for k, _ in fields)
    lines += [f"  {k.ljust(label)}  {v}" for k, v in fields]
    lines.append("")
    lines += render_tasks(reply.tasks, opts)
    return lines


def render_tasks(tasks: list[TaskInfo], opts: RenderOptions) -> list[str]:
    if not tasks:
        return ["no tasks"]
    headers = ["TASK", "FRAMES", "STATUS", "TRY", "NODE", "STARTED", "TOOK", "ERROR"]
    rows: list[list[str | Cell]] = []
    for task in tasks:
        took = duration(task.started_at, task.finished_at, opts.now) if task.started_at else "-"
        error = task.error or (f"exit {task.exit_code}" if task.exit_code not in (None, 0) else "")
        rows.append(
            [
                str(task.id),  # the id, as in `history` and `logs`
                frames_text(task.frame_first, task.frame_last),
                Cell(task.status.value, task.status.value),
                str(task.attempt),
                task.node or "-",
                ago(task.started_at, opts.now),
                took,
                error,
            ]
        )
    return table(headers, rows, opts, flex=(7, 4), right=(0, 3))


def render_history(reply: HistoryReply, opts: RenderOptions) -> list[str]:
    """Exact times here (not '2 min ago'): a history is read as a sequence, to the second."""
    job = reply.job
    head = f"job {job.id}  {job.name}  " + colour(status_cell(job).text, status_cell(job).status, opts.color)
    if not reply.history:
        return [head, "no status changes recorded"]
    rows: list[list[str | Cell]] = []
    for entry in reply.history:
        what = "job" if entry.task is None else f"task {entry.task}"
        if entry.frames:
            what += f" [{entry.frames}]"
        if entry.attempt:
            what += f" #{entry.attempt}"
        rows.append(
            [
                clock(entry.at),
                what,
                Cell(entry.from_ or "-", entry.from_),
                "→",
                Cell(entry.to, entry.to),
                entry.reason,
                entry.actor,
            ]
        )
    return [head, *table(["TIME", "WHAT", "FROM", "", "TO", "REASON", "ACTOR"], rows, opts, flex=(5, 1, 6))]


def render_job_changed(reply: JobReply, opts: RenderOptions) -> list[str]:
    job = reply.job
    status = colour(status_cell(job).text, status_cell(job).status, opts.color)
    return [f"job {job.id} ({job.name}): {status}, priority {job.priority}"]


def render_logs(reply: LogsReply, opts: RenderOptions) -> list[str]:
    if not reply.logs:
        return ["no output yet"]
    lines: list[str] = []
    for entry in reply.logs:
        where = f" on {entry.node}" if entry.node else ""
        lines.append(f"== task {entry.task}, frames {entry.frames}, attempt {entry.attempt}{where} ==")
        lines += entry.output.rstrip("\n").splitlines() or ["(no output)"]
    return lines


def render_nodes(reply: NodesReply, opts: RenderOptions) -> list[str]:
    if not reply.nodes:
        return ["no render nodes are connected"]
    headers = ["NODE", "POOL", "STATE", "BUSY", "TAGS", "PROFILES", "VERSION", "SEEN"]
    rows: list[list[str | Cell]] = [
        [
            node.id,
            node.pool,
            Cell(node.state, node.state),
            f"{node.running}/{node.slots}",
            ",".join(node.tags) or "-",
            ",".join(node.profiles) or "-",
            node.version,
            ago(node.last_seen, opts.now),
        ]
        for node in reply.nodes
    ]
    return table(headers, rows, opts, flex=(5, 4, 0), right=(3,))
