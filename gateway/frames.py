"""Finished frames: their records (`rfarm frames`) and thumbnails (`rfarm preview`)."""

from __future__ import annotations

import base64

from broker_contracts import messages as m
from gateway.context import Context
from store import frames, jobs

# raw thumbnail bytes per reply: their base64 and the rest stay well inside a reply's 256 KiB
THUMBS_BUDGET = 120 * 1024


def frame_list(ctx: Context, req: m.FramesRequest) -> m.FramesReply:
    jobs.get(ctx.conn, ctx.caller, req.id)
    rows = frames.frames_of(ctx.conn, req.id, after=req.after, limit=req.limit + 1)
    more = len(rows) > req.limit
    rows = rows[: req.limit]
    return m.FramesReply(
        frames=[m.FrameInfo.model_validate(r) for r in rows],
        next=rows[-1]["frame"] if more and rows else None,
    )


def thumbs(ctx: Context, req: m.ThumbsRequest) -> m.ThumbsReply:
    job = jobs.get(ctx.conn, ctx.caller, req.id)
    found, after = frames.thumbs_of(ctx.conn, req.id, frame=req.frame, after=req.after, budget=THUMBS_BUDGET)
    return m.ThumbsReply(
        name=job["name"],
        thumbs=[m.Thumb(frame=t["frame"], png=base64.b64encode(t["png"]).decode("ascii")) for t in found],
        next=after,
    )
