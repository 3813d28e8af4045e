"""What travels between the gateway and the render nodes: work items and node events."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from broker_contracts.text import no_unsafe
from broker_contracts.types import Keyword

# what a node announces about itself is shown to admins (`rfarm nodes`): names only, no controls
Label = Annotated[str, Field(max_length=200), AfterValidator(no_unsafe)]

# every integer fits the msgpack int64 the wire carries: a bigger one is refused while decoding
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]

THUMB_BYTES = 32 * 1024
THUMB_B64 = (THUMB_BYTES + 2) // 3 * 4


class WorkItem(BaseModel):
    """One task assignment on ``<prefix>:work:<pool>``."""

    model_config = ConfigDict(extra="forbid")

    task_id: Int64
    job_id: Int64
    seq: Int64
    first: Int64
    last: Int64
    renderer: str
    params: dict[str, str] = Field(default_factory=dict)
    requires: list[str] = Field(default_factory=list)
    max_attempts: Int64 = 3
    dispatched_at: float
    # the task's attempts when it was dispatched: a run of this item is attempt ``attempt + 1``
    attempt: Int64 = 0
    blocked_nodes: list[str] = Field(default_factory=list)
    # the job's --task-timeout in seconds (None: the node's profile default, if any)
    timeout: Int64 | None = None


class NodeEvent(BaseModel):
    """A report from a node on ``<prefix>:events``.

    ``run`` identifies one start of a task on one node (a new attempt). Reports are applied only
    while the task's current run is this one and come from the node that started it, so a report
    from a superseded attempt or from another node changes nothing. On the stream an event is
    signed by its node (field ``s``, broker_contracts.signing).

    ``attempt`` (the run's attempt number, from its work item) and ``started`` (when the run
    started; on its last report) let a last report be applied on its own when it arrives before its
    run's ``started``: the start and the end are then applied together, and the late ``started``
    changes nothing.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["started", "progress", "log", "succeeded", "failed", "released", "heartbeat", "bye"]
    node: Keyword
    ts: float
    task_id: Int64 | None = None
    job_id: Int64 | None = None
    run: str | None = None
    # the work entry the report's run was claimed from (the gateway checks it is the task's own)
    work: str | None = Field(default=None, max_length=64)
    frame: Int64 | None = None
    done_frames: Int64 | None = None
    exit_code: Int64 | None = None
    error: str | None = Field(default=None, max_length=2000)
    output: str | None = Field(default=None, max_length=65536)
    info: dict[str, Any] | None = None
    attempt: int | None = Field(default=None, ge=1, le=2**63 - 1)
    started: float | None = None
    # a finished frame's record (on a "progress" report of a profile that names its files)
    seconds: float | None = Field(default=None, ge=0, le=10**9)
    file: str | None = Field(default=None, max_length=4096)
    bytes: Int64 | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"[0-9a-f]{64}")
    # its thumbnail: a PNG of at most THUMB_BYTES, base64 (so it fits the 64 KiB of an event)
    thumb: str | None = Field(default=None, max_length=THUMB_B64)


class NodeHeartbeat(BaseModel):
    """What ``info`` holds on a heartbeat, and what the node's liveness key holds."""

    model_config = ConfigDict(extra="forbid")

    node: Keyword
    pool: Keyword
    slots: Int64
    tags: list[Keyword]
    profiles: list[Keyword]
    running: list[int]
    version: Label
    host: Label
    lease: float
    # profile name -> its ProfileSpec as a dict (see broker_contracts.profiles)
    specs: dict[str, Any] = Field(default_factory=dict)
