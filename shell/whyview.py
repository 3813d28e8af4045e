"""The text of `rfarm why JOB` (broker_contracts.messages.WhyReply)."""

from __future__ import annotations

from broker_contracts.messages import WhyReply
from shell.format import RenderOptions
from shell.safe import printable

_AHEAD = {
    "window": "already handed to nodes",
    "higher_priority": "of higher priority",
    "other_users": "of other users, by fair share",
    "older_jobs": "of its owner's older jobs",
}


def render_why(reply: WhyReply, opts: RenderOptions) -> list[str]:
    job, t = reply.job, reply.tasks
    state = f"{job.status.value}{', paused' if job.paused else ''}"
    lines = [f"job {job.id}  {printable(job.name)}  ({state}, priority {job.priority}, pool {printable(job.pool)})"]
    counts = ", ".join(f"{n} {k}" for k, n in t.items() if n)
    lines.append(f"  tasks    {counts or 'none'}")
    if reply.place is not None:
        ahead = "; ".join(f"{n} {_AHEAD.get(k, k)}" for k, n in reply.ahead.items())
        lines.append(f"  place    {reply.place} among the waiting work of its pool" + (f" ({ahead})" if ahead else ""))
    if reply.pool_slots:
        lines.append(f"  pool     {reply.pool_busy} of {reply.pool_slots} slots busy; its owner holds {reply.held}"
                     f" (weight {reply.weight:g})")
    lines.append("  waits for:")
    lines += [f"    - {_as_typed(printable(w), opts)}" for w in reply.waits]
    if reply.starts:
        lines.append("  would start it:")
        lines += [f"    - {_as_typed(printable(s), opts)}" for s in reply.starts]
    return lines


def _as_typed(text: str, opts: RenderOptions) -> str:
    """Commands as the user types them where they are: without `rfarm ` inside the shell."""
    return text.replace("`rfarm ", "`") if opts.inside_shell else text
