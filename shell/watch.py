"""Following a job as it changes: `watch JOB`, `wait JOB` and `submit … --watch`.

The shell subscribes with a `job.watch` request (a fresh request id each time, the same ``sub``)
and then reads the notices the gateway pushes to its reply stream after each committed change of
the job. The subscription is renewed every ~45 s (the farm keeps it 120 s). Nothing polls history.
Ctrl-C stops watching; the job goes on.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TextIO

from pydantic import ValidationError

from broker_contracts.envelope import first_error
from broker_contracts.errors import ErrorCode
from broker_contracts.messages import HistoryEntry, ThumbsReply, WatchReply
from broker_contracts.states import JobStatus
from shell import notify, pictures
from shell.client import Client
from shell.errors import EXIT_FARM_ERROR, EXIT_NO_ANSWER, EXIT_OK, FarmError, Unreachable
from shell.format import RenderOptions, cut
from shell.safe import json_text, printable
from shell.watchview import WatchState, outcome_json, render_change, render_outcome, render_status

RESUBSCRIBE_EVERY = 45.0
FIRST_RESUBSCRIBE = 5.0  # once early: closes the gap between the snapshot and the subscription
TICK = 1.0
PICTURE_EVERY = 2.0
EXIT_INTERRUPTED = 130


class Host(Protocol):
    """What following a job needs from the session."""

    out: TextIO
    err: TextIO
    timeout: float

    @property
    def client(self) -> Client: ...

    def token(self) -> str: ...

    def options(self) -> RenderOptions: ...

    def live_terminal(self) -> bool: ...


@dataclass(frozen=True)
class Follow:
    job: int
    sub: str = ""  # the subscription id (random when empty)
    wait_only: bool = False  # `wait`: no live view, does not stop at an idle pause
    json_mode: bool = False
    limit: float | None = None  # `wait --timeout`: give up (exit 3) after this many seconds
    notify: bool = True  # the bell and a desktop notification when the job ends (shell/notify.py)


class _View:
    """Prints changes as lines and keeps the status block at the bottom, redrawn in place on a
    terminal; without a terminal, prints a progress line only when the progress changes."""

    def __init__(self, host: Host, *, quiet: bool) -> None:
        self.host = host
        self.quiet = quiet
        self.live = host.live_terminal() and not quiet
        self.block_lines = 0
        self.last_progress = ""
        self.note = ""
        # on a terminal that shows images: the latest finished frame's thumbnail as frames finish
        self.images = pictures.terminal_protocol() if self.live else "blocks"
        self.shown_done = 0
        self.next_picture = 0.0

    def _write(self, text: str) -> None:
        self.host.out.write(text)
        self.host.out.flush()

    def picture(self, state: WatchState, fetch: Callable[[], dict[int, bytes]]) -> list[str]:
        """The latest finished frame's thumbnail (at most every PICTURE_EVERY s, when frames were
        done since the last one), where the terminal shows images; else nothing."""
        done = state.job.frames_done
        if self.images not in ("kitty", "iterm") or done <= self.shown_done or time.monotonic() < self.next_picture:
            return []
        self.shown_done, self.next_picture = done, time.monotonic() + PICTURE_EVERY
        try:
            images = pictures.decode_all(fetch())
        except (FarmError, Unreachable):
            return []
        return pictures.draw(images, self.host.options().width, self.images, single=True) if images else []

    def update(self, state: WatchState, changes: list[HistoryEntry], extra: list[str] | None = None) -> None:
        if self.quiet:
            return
        opts = self.host.options()
        lines = [render_change(e, opts) for e in changes] + (extra or [])
        if self.live:
            # on a terminal: erase the old block, print the news, draw the block again
            block = [cut(line, opts.width - 1) for line in render_status(state, opts)]
            if self.note:
                block.append(cut(self.note, opts.width - 1))
            erase = f"\x1b[{self.block_lines}F\x1b[J" if self.block_lines else ""
            self._write(erase + "".join(f"{line}\n" for line in [*lines, *block]))
            self.block_lines = len(block)
            return
        job = state.job
        progress = f"progress {job.frames_done}/{job.frames_total} frames, {job.status.value}"
        if progress != self.last_progress:
            lines.append(progress)
            self.last_progress = progress
        if lines:
            self._write("".join(f"{line}\n" for line in lines))

    def finish(self, state: WatchState, outcome: str) -> None:
        if self.quiet:
            return
        self.note = ""
        self.update(state, [])
        self._write(render_outcome(state, self.host.options(), outcome) + "\n")


def _subscribe(host: Host, job: int, sub: str, token: str) -> WatchReply:
    raw = host.client.call("job.watch", {"id": job, "sub": sub}, token, timeout=host.timeout)
    try:
        return WatchReply.model_validate(raw)
    except ValidationError as exc:
        raise FarmError(f"the farm's reply to job.watch is not what this shell expects ({first_error(exc)})",
                        ErrorCode.INTERNAL.value) from None


def _latest_thumb(host: Host, job: int, token: str) -> dict[int, bytes]:
    raw = host.client.call("job.thumbs", {"id": job, "latest": True}, token, timeout=host.timeout)
    try:
        reply = ThumbsReply.model_validate(raw)
    except ValidationError:
        return {}
    return {t.frame: base64.b64decode(t.png) for t in reply.thumbs}


def follow(host: Host, spec: Follow) -> int:
    """Follow one job until it ends (or the limit, or Ctrl-C). Returns the exit code:
    0 succeeded (or an idle pause while watching), 1 failed/cancelled, 3 limit reached, 130 Ctrl-C."""
    token = host.token()
    sub = spec.sub or secrets.token_hex(6)
    began = time.monotonic()
    view = _View(host, quiet=spec.json_mode or spec.wait_only)
    state = WatchState.from_reply(_subscribe(host, spec.job, sub, token))
    subscribed = time.monotonic()
    renew_after = FIRST_RESUBSCRIBE
    lost = False
    outcome = ""
    try:
        view.update(state, [], view.picture(state, lambda: _latest_thumb(host, spec.job, token)))
        while True:
            if state.ended:
                outcome = state.job.status.value
                break
            if state.idle_paused and not spec.wait_only:
                outcome = "paused"
                break
            left = None if spec.limit is None else spec.limit - (time.monotonic() - began)
            if left is not None and left <= 0:
                outcome = "timeout"
                break
            if lost:
                if not host.client.ping():
                    time.sleep(TICK)
                    continue
                lost, view.note = False, ""
                renew_after = 0.0  # Redis may have restarted empty: subscribe again at once
            if time.monotonic() - subscribed >= renew_after:
                state.refresh(_subscribe(host, spec.job, sub, token))
                subscribed, renew_after = time.monotonic(), RESUBSCRIBE_EVERY
                view.update(state, [])
                continue
            try:
                notices = host.client.take_notices(sub, min(TICK, left) if left is not None else TICK)
            except Unreachable:
                lost, view.note = True, "Redis is unreachable: waiting for it to come back (Ctrl-C stops watching)"
                view.update(state, [])
                continue
            news: list[HistoryEntry] = []
            for notice in notices:
                try:
                    news += state.apply(notice.body, datetime.now(UTC))
                except ValidationError as exc:
                    raise FarmError(
                        f"a watch notice from the farm is not what this shell expects ({first_error(exc)})",
                        ErrorCode.INTERNAL.value,
                    ) from None
            view.update(state, news, view.picture(state, lambda: _latest_thumb(host, spec.job, token)))
    except KeyboardInterrupt:
        outcome = "interrupted"
    elapsed = time.monotonic() - began
    if spec.json_mode:
        print(json_text(outcome_json(state, outcome, elapsed)), file=host.out)
    elif spec.wait_only:
        line = render_outcome(state, host.options(), outcome)
        if outcome == "timeout":
            print(f"error: gave up after {spec.limit:g} s: {line}", file=host.err)
        else:
            print(line, file=host.out)
    else:
        view.finish(state, outcome)
    if spec.notify and not spec.json_mode and outcome in notify.ENDS:
        notify.tell(host.out, state.job.id, printable(state.job.name), outcome, line=False)  # the line is out
    return exit_code(outcome)


def exit_code(outcome: str) -> int:
    if outcome in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
        return EXIT_FARM_ERROR
    if outcome == "timeout":
        return EXIT_NO_ANSWER
    if outcome == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK

