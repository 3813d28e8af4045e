"""`rfarm frames` and `rfarm preview`: a job's finished frames, as records and as pictures.

Both talk to the farm themselves (they may need several pages); the pictures come from the
thumbnails the nodes sent, so nothing here reads the render storage.
"""

from __future__ import annotations

import argparse
import base64
import io
import shutil
from typing import Any, Protocol, TextIO

from broker_contracts.messages import FrameInfo, FramesReply, ThumbsReply
from shell import pictures
from shell.client import Client
from shell.errors import UsageError
from shell.format import Cell, RenderOptions, table
from shell.safe import json_text, printable

MAX_PAGES = 10_000


class Host(Protocol):
    out: TextIO
    err: TextIO
    timeout: float

    @property
    def client(self) -> Client: ...

    def token(self) -> str: ...

    def options(self) -> RenderOptions: ...

    def live_terminal(self) -> bool: ...


def render_frames(frames: list[FrameInfo], opts: RenderOptions) -> list[str]:
    if not frames:
        return ["no frames"]
    headers = ["FRAME", "STATUS", "NODE", "TRY", "SECONDS", "BYTES", "FILE"]
    rows: list[list[str | Cell]] = [
        [
            str(f.frame),
            Cell(printable(f.status), "succeeded" if f.status == "done" else f.status),
            printable(f.node or "-"),
            str(f.attempt) if f.attempt is not None else "-",
            f"{f.seconds:.2f}" if f.seconds is not None else "-",
            str(f.bytes) if f.bytes is not None else "-",
            printable(f.file or "-"),
        ]
        for f in frames
    ]
    return table(headers, rows, opts, flex=(6, 2), right=(0, 3, 4, 5))


def frame_json(f: FrameInfo) -> dict[str, Any]:
    return {
        "frame": f.frame,
        "status": f.status,
        "node": f.node,
        "attempt": f.attempt,
        "seconds": f.seconds,
        "file": f.file,
        "bytes": f.bytes,
        "sha256": f.sha256,
    }


def run_frames(body: dict[str, Any], ns: argparse.Namespace, host: Host) -> int:
    """One page with --limit (and its ``next``), else every frame of the job."""
    token = host.token()
    found: list[FrameInfo] = []
    after = body.get("after")
    for _ in range(MAX_PAGES):
        raw = host.client.call("job.frames", {**body, "after": after}, token, timeout=host.timeout)
        page = FramesReply.model_validate(raw)
        found += page.frames
        after = page.next
        if after is None or ns.limit is not None:
            break
    if ns.json:
        listed = [frame_json(f) for f in found]
        print(json_text({"frames": listed, "next": after} if ns.limit is not None else listed), file=host.out)
    else:
        for line in render_frames(found, host.options()):
            print(line, file=host.out)
        if ns.limit is not None and after is not None:
            print(f"more: rfarm frames {ns.job} --limit {ns.limit} --after {after}", file=host.out)
    host.out.flush()
    return 0


def fetch_thumbs(host: Host, job: int, frame: int | None) -> tuple[str, dict[int, bytes]]:
    """The job's name and its thumbnails (frame -> PNG bytes), every page of them."""
    token = host.token()
    out: dict[int, bytes] = {}
    name = ""
    after: int | None = None
    for _ in range(MAX_PAGES):
        body = {"id": job, "frame": frame, "after": after}
        reply = ThumbsReply.model_validate(host.client.call("job.thumbs", body, token, timeout=host.timeout))
        name = reply.name
        for thumb in reply.thumbs:
            out[thumb.frame] = base64.b64decode(thumb.png)
        after = reply.next
        if after is None:
            break
    return name, out


def run_preview(body: dict[str, Any], ns: argparse.Namespace, host: Host) -> int:
    name, pngs = fetch_thumbs(host, body["id"], ns.frame)
    images = pictures.decode_all(pngs)
    if not images:
        which = f"frame {ns.frame} of job {ns.job} has" if ns.frame is not None else f"job {ns.job} has"
        raise UsageError(f"{which} no finished frame with a thumbnail yet")
    if ns.out is not None:
        sheet = pictures.contact_sheet(images, f"job {ns.job}  {name}")
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        try:
            with open(ns.out, "wb") as handle:
                handle.write(buffer.getvalue())
        except OSError as exc:
            raise UsageError(f"cannot write {ns.out}: {exc.strerror or exc}") from None
        print(f"wrote {ns.out}: {len(images)} frame(s), {sheet.width}x{sheet.height}", file=host.out)
        host.out.flush()
        return 0
    columns = shutil.get_terminal_size((80, 24)).columns
    protocol = pictures.terminal_protocol() if host.live_terminal() else "blocks"
    for line in pictures.draw(images, columns, protocol, single=ns.frame is not None):
        print(line, file=host.out)
    host.out.flush()
    return 0
