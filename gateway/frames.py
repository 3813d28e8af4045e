"""Finished frames: their records (`rfarm frames`) and thumbnails (`rfarm preview`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import psycopg

from broker_contracts import messages as m
from broker_contracts.states import JobStatus, TaskStatus
from gateway.context import Context
from store import frames as store_frames
from store import jobs

# raw thumbnail bytes per reply: their base64 and the rest stay well inside a reply's 256 KiB
THUMBS_BUDGET = 120 * 1024


def frame_list(ctx: Context, req: m.FramesRequest) -> m.FramesReply:
    jobs.get(ctx.conn, ctx.caller, req.id)
    rows = store_frames.frames_of(ctx.conn, req.id, after=req.after, limit=req.limit + 1)
    more = len(rows) > req.limit
    rows = rows[: req.limit]
    return m.FramesReply(
        frames=[m.FrameInfo.model_validate(r) for r in rows],
        next=rows[-1]["frame"] if more and rows else None,
    )


def thumbs(ctx: Context, req: m.ThumbsRequest) -> m.ThumbsReply:
    job = jobs.get(ctx.conn, ctx.caller, req.id)
    if req.latest:
        found, after = store_frames.latest_thumb(ctx.conn, req.id), None
    else:
        found, after = store_frames.thumbs_of(ctx.conn, req.id, frame=req.frame, after=req.after, budget=THUMBS_BUDGET)
    return m.ThumbsReply(
        name=job["name"],
        thumbs=[m.Thumb(frame=t["frame"], png=base64.b64encode(t["png"]).decode("ascii")) for t in found],
        next=after,
    )


def estimate(conn: psycopg.Connection, job: m.JobDetail, task_list: list[m.TaskInfo]) -> m.FrameTimes:
    """Frame time min / mean / max from the job's own finished frames; for a running job the time
    left: its frames still to render at the mean frame time, spread over the tasks running now."""
    times = m.FrameTimes.model_validate(store_frames.times_of(conn, job.id))
    if job.status != JobStatus.RUNNING or not times.done or times.mean is None:
        return times
    running = sum(1 for t in task_list if t.status is TaskStatus.RUNNING)
    left = max(0, job.frames_total - job.frames_done) * times.mean / max(1, running)
    times.left_seconds = round(left, 1)
    times.finishes_at = datetime.now(UTC) + timedelta(seconds=left)
    return times
