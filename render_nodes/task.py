"""One claimed work item, from the checks before it starts to the ack after its last report.

Runs on a thread of its own. Whatever the renderer does, ``TaskRun.run`` never raises.
"""

from __future__ import annotations

import collections
import enum
import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

from broker_contracts.durations import format_duration
from broker_contracts.keys import NODES_GROUP, Keys
from broker_contracts.profiles import IN_PROCESS_BUILTINS, ProfileSpec, validate_params
from broker_contracts.work import NodeEvent, WorkItem
from render_nodes.frames import describe, frame_path
from render_nodes.link import Finals, Link, LinkDown, event
from render_nodes.offered import Invocation, invocations, outside_roots
from render_nodes.process import Line, RenderProcess

log = logging.getLogger("render_nodes")

CANCEL_POLL = 0.3
LOG_FLUSH_SECONDS = 0.5
LOG_FLUSH_BYTES = 8192
MAX_ERROR = 2000
TAIL_LINES = 8


@dataclass(frozen=True)
class NodeContext:
    """What every task of a node shares."""

    link: Link
    keys: Keys
    node: str
    tags: frozenset[str]
    profiles: dict[str, ProfileSpec]
    output_root: Path
    lease: float
    finals: Finals


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    ABORTED = "aborted"


@dataclass
class Result:
    outcome: Outcome
    exit_code: int | None = None
    error: str | None = None


class TaskRun:
    def __init__(self, ctx: NodeContext, message_id: str, item: WorkItem) -> None:
        self.ctx = ctx
        self.message_id = message_id
        self.item = item
        self.run_id: str | None = None
        self.started_at: float | None = None  # when this run started (its "started" report went out)
        self._abort = threading.Event()
        self._abort_now = False
        self._done: set[int] = set()
        self._log: list[str] = []
        self._log_bytes = 0
        self._last_flush = time.monotonic()
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._output: Path | None = None  # the job's output folder, once made
        self._writes: str | None = None  # the profile's frame file name, when it names one
        self._mark = time.monotonic()  # when the frame being rendered now began (its invocation or the frame before)
        self._next_lease = time.monotonic() + ctx.lease / 3
        self._not_pending_noted = False
        # (cancelled, held) as the claim loop read them for its whole batch, or None: read here
        self.flags: tuple[bool, bool] | None = None
        self.started = False  # the claim loop published this run's "started" with its batch
        self.gpu: str | None = None  # the GPU of the slot that runs it (rfarmctl node --gpus)
        self._deadline: tuple[float, str] | None = None  # (monotonic end, the failure's reason) of a timeout

    # -- control from the node ------------------------------------------------------------------

    def abort(self, *, now: bool = False) -> None:
        """Stop the renderer (the node is shutting down); the task is reported ``released``."""
        self._abort_now = self._abort_now or now
        self._abort.set()

    # -- the whole life of the task -------------------------------------------------------------

    def start_event(self) -> NodeEvent:
        """This run starts now (the claim loop found no reason not to): its "started" report, which
        the claim loop publishes with those of the rest of its batch in one round trip."""
        self.run_id = uuid.uuid4().hex
        self.started = True
        self.started_at = time.time()
        return event(
            "started",
            self.ctx.node,
            task_id=self.item.task_id,
            job_id=self.item.job_id,
            run=self.run_id,
            work=self.message_id,
            attempt=self.item.attempt + 1,
        )

    def run(self) -> None:
        item = self.item
        try:
            if not self.started:
                reason = self.refusal()
                if reason == "cancelled":
                    log.info("task %s: job %s is cancelled; dropping it", item.task_id, item.job_id)
                    self.ctx.link.ack(self.message_id)
                    return
                if reason is not None:
                    # A run id that never started: the report is about this hand-back and nothing else.
                    self.run_id = uuid.uuid4().hex
                    log.info("task %s: released (%s)", item.task_id, reason)
                    self._report("released", ack=self.message_id, error=reason)
                    return
                self.run_id = uuid.uuid4().hex
                self.started_at = time.time()
                self._report("started")
            log.info(
                "task %s: started run %s (job %s, frames %s-%s, %s)",
                item.task_id,
                self.run_id,
                item.job_id,
                item.first,
                item.last,
                item.renderer,
            )
            result = self._render()
            self._finish(result)
        except LinkDown:
            log.warning("task %s: given up while redis is unreachable; not acked", item.task_id)
        except redis.RedisError as exc:
            log.error("task %s: redis refused a command (%s); not acked", item.task_id, exc)
        except Exception as exc:  # a node bug must not take the other tasks down
            log.error("task %s: unexpected %s: %s; not acked", item.task_id, type(exc).__name__, exc)

    def refusal(self) -> str | None:
        """Why this node does not start the task, or None."""
        item, ctx = self.item, self.ctx
        cancelled, held = self.flags if self.flags is not None else job_flags(ctx, [item.job_id])[item.job_id]
        if cancelled:
            return "cancelled"
        if held:
            return "job is paused"
        if item.renderer not in ctx.profiles:
            return f"node {ctx.node} does not offer renderer {item.renderer!r}"
        missing = sorted(set(item.requires) - ctx.tags)
        if missing:
            return f"node {ctx.node} lacks tags: {', '.join(missing)}"
        if ctx.node in item.blocked_nodes:
            return f"node {ctx.node} is blocklisted for this job"
        return None

    def _render(self) -> Result:
        item, ctx = self.item, self.ctx
        spec = ctx.profiles[item.renderer]
        try:
            params = validate_params(spec, item.params)
        except ValueError as exc:
            return Result(Outcome.FAILED, error=str(exc))
        outside = outside_roots(spec, params)
        if outside is not None:
            return Result(Outcome.FAILED, error=f"{outside} on node {ctx.node}")
        if spec.kind == "builtin" and spec.name in IN_PROCESS_BUILTINS:
            # no work, no process, no files: the frames are done (``succeeded`` carries the count)
            self._done.update(range(item.first, item.last + 1))
            return Result(Outcome.SUCCEEDED, exit_code=0)
        output = (ctx.output_root / f"job-{item.job_id}").resolve()
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Result(Outcome.FAILED, error=f"cannot create {output}: {exc.strerror or exc}")
        pattern = re.compile(spec.progress) if spec.progress else None
        self._output, self._writes = output, spec.writes
        timeout = item.timeout or spec.timeout
        if timeout:
            self._deadline = (time.monotonic() + timeout, f"timed out after {format_duration(timeout)}")
        for invocation in invocations(spec, params, item.first, item.last, str(output)):
            self._mark = time.monotonic()
            result = self._invoke(invocation, pattern)
            if result.outcome is Outcome.FAILED and spec.writes:
                # which frame failed: the first of the invocation that was not saved
                frame = next((f for f in invocation.frames if f not in self._done), invocation.frames[0])
                return Result(Outcome.FAILED, result.exit_code, f"frame {frame}: {result.error}")
            if result.outcome is not Outcome.SUCCEEDED:
                return result
            for frame in invocation.frames:  # frames the renderer did not announce count as done now
                if spec.writes and not frame_path(output, spec.writes, frame).is_file():
                    # the renderer ended well but left no file (Blender exits 0 on a scene it cannot read)
                    name = frame_path(output, spec.writes, frame).name
                    said = self._telling_line() or "nothing"
                    error = f"frame {frame}: {name} was not written; last said: {said}"
                    return Result(Outcome.FAILED, result.exit_code, error)
                self._frame_done(frame)
        return Result(Outcome.SUCCEEDED, exit_code=0)

    def _telling_line(self) -> str:
        """The renderer's last line that says what went wrong: its last error line, or its last line."""
        for text in reversed(self._tail):
            if "error" in text.lower():
                return text
        quiet = [text for text in self._tail if text not in ("Blender quit",)]
        return quiet[-1] if quiet else ""

    def _invoke(self, invocation: Invocation, pattern: re.Pattern[str] | None) -> Result:
        lines: queue.Queue[Line] = queue.Queue()
        try:
            proc = RenderProcess(invocation.argv, lines, gpu=self.gpu)
        except OSError as exc:
            return Result(Outcome.FAILED, 127, f"cannot start {invocation.argv[0]}: {exc.strerror or exc}")
        next_cancel = time.monotonic() + CANCEL_POLL
        while True:
            code = proc.poll()
            self._take_lines(lines, pattern, timeout=0 if code is not None else 0.05)
            if code is not None:
                break
            self._maybe_flush()
            now = time.monotonic()
            if now >= next_cancel:
                next_cancel = now + CANCEL_POLL
                if self._cancelled():
                    return Result(Outcome.CANCELLED, proc.stop(), "cancelled")
            if now >= self._next_lease:
                self._next_lease = now + self.ctx.lease / 3
                if not self._keep_lease():
                    return Result(Outcome.LOST, proc.stop(), "lease lost to another node")
            if self._abort.is_set():
                return Result(Outcome.ABORTED, proc.stop(now=self._abort_now), "node stopping")
            if self._deadline is not None and now >= self._deadline[0]:
                # SIGTERM, SIGKILL after a grace (RenderProcess.stop): a failed attempt, retried as any
                code = proc.stop()
                log.info("task %s: %s", self.item.task_id, self._deadline[1])
                return Result(Outcome.FAILED, code, self._deadline[1])
        proc.finish_output()
        self._take_lines(lines, pattern, timeout=0)
        if code == 0:
            return Result(Outcome.SUCCEEDED, 0)
        error = self._telling_line() or f"renderer exited with code {code}"
        return Result(Outcome.FAILED, code, error[:MAX_ERROR])

    # -- output, progress, lease ----------------------------------------------------------------

    def _take_lines(self, lines: queue.Queue[Line], pattern: re.Pattern[str] | None, timeout: float) -> None:
        try:
            line = lines.get(timeout=timeout) if timeout else lines.get_nowait()
        except queue.Empty:
            return
        while True:
            self._log.append(line.text)
            self._log_bytes += len(line.text) + 1
            if line.text.strip():
                self._tail.append(line.text.strip())
            if pattern is not None:
                match = pattern.search(line.text)
                if match and _is_int(match.group(1)):
                    self._frame_done(int(match.group(1)))
            if self._log_bytes >= LOG_FLUSH_BYTES:
                self._flush()
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return

    def _frame_done(self, frame: int) -> None:
        if frame in self._done or not self.item.first <= frame <= self.item.last:
            return
        record: dict[str, object] = {}
        if self._writes is not None and self._output is not None:
            try:
                found = describe(frame_path(self._output, self._writes, frame))
            except OSError:
                return  # not written (yet): the check after the invocation decides
            now = time.monotonic()
            record = {
                "seconds": round(now - self._mark, 3),
                "file": found.file,
                "bytes": found.bytes,
                "sha256": found.sha256,
                "thumb": found.thumb,
            }
            self._mark = now
        self._done.add(frame)
        self._report("progress", frame=frame, done_frames=len(self._done), **record)

    def _maybe_flush(self) -> None:
        if self._log and time.monotonic() - self._last_flush >= LOG_FLUSH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        if self._log:
            self._report("log", output="\n".join(self._log))
            self._log, self._log_bytes = [], 0
        self._last_flush = time.monotonic()

    def _cancelled(self) -> bool:
        key = self.ctx.keys.cancel(self.item.job_id)
        try:
            return bool(self.ctx.link.call(lambda c: c.exists(key), wait=False))
        except LinkDown:
            return False

    def _keep_lease(self) -> bool:
        """Refresh the claim on the work entry; False when another node owns it now.

        The owner is checked first because XCLAIM with min-idle 0 would silently take the entry
        back from a node that took it over. An entry no longer pending at all (Redis restarted
        empty, or the entry was trimmed) is not a loss: the render goes on and its report decides.
        """
        link, work, mid, node = self.ctx.link, self.ctx.link.work, self.message_id, self.ctx.node
        try:
            pending = link.call(lambda c: c.xpending_range(work, NODES_GROUP, mid, mid, 1), wait=False)
            if not pending:
                if not self._not_pending_noted:
                    self._not_pending_noted = True
                    log.warning(
                        "task %s: work entry %s is no longer pending; finishing the render anyway",
                        self.item.task_id,
                        mid,
                    )
                return True
            owner = pending[0]["consumer"]
            owner = owner.decode() if isinstance(owner, bytes) else str(owner)
            if owner != node:
                log.warning("task %s: node %s took over the work entry; stopping", self.item.task_id, owner)
                return False
            link.call(lambda c: c.xclaim(work, NODES_GROUP, node, 0, [mid], justid=True), wait=False)
        except LinkDown:
            pass
        return True

    # -- reports ----------------------------------------------------------------------------------

    def _finish(self, result: Result) -> None:
        self._flush()
        item = self.item
        # a lost entry belongs to the node that took it: reported, never acked
        ack = None if result.outcome is Outcome.LOST else self.message_id
        if result.outcome is Outcome.SUCCEEDED:
            self._report("succeeded", ack=ack, exit_code=0, done_frames=len(self._done))
        elif result.outcome in (Outcome.FAILED, Outcome.CANCELLED):
            self._report("failed", ack=ack, exit_code=result.exit_code, error=result.error)
        else:
            self._report("released", ack=ack, error=result.error)
        log.info(
            "task %s: run %s %s%s",
            item.task_id,
            self.run_id,
            result.outcome.value,
            f" (exit {result.exit_code}: {result.error})" if result.outcome is Outcome.FAILED else "",
        )

    def _report(self, kind: str, *, ack: str | None = None, **fields: object) -> None:
        """Publish a report; with ``ack``, the work entry is acked in the same round trip.

        The last report of a run that started says when it started: if the ledger applies it
        before the run's "started", it applies both.
        """
        item = self.item
        if isinstance(fields.get("error"), str):
            fields["error"] = fields["error"][:MAX_ERROR]  # type: ignore[index]
        if kind in ("succeeded", "failed", "released"):
            fields["started"] = self.started_at
        ev = event(
            kind,
            self.ctx.node,
            task_id=item.task_id,
            job_id=item.job_id,
            run=self.run_id,
            work=self.message_id,
            attempt=item.attempt + 1,
            **fields,
        )
        if ack is None:
            self.ctx.link.publish(ev)
        else:
            self.ctx.finals.send(ev, ack)


def job_flags(ctx: NodeContext, job_ids: list[int]) -> dict[int, tuple[bool, bool]]:
    """(cancelled, held) of each job, read in one round trip."""

    def read(c: redis.Redis) -> list[int]:
        pipe = c.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(ctx.keys.cancel(job_id))
            pipe.exists(ctx.keys.hold(job_id))
        return pipe.execute()  # type: ignore[no-any-return]

    found = ctx.link.call(read)
    return {job_id: (bool(found[2 * i]), bool(found[2 * i + 1])) for i, job_id in enumerate(job_ids)}


def _is_int(text: str | None) -> bool:
    return bool(text) and re.fullmatch(r"-?\d{1,9}", text.strip()) is not None  # type: ignore[union-attr]
