"""Request and reply bodies, one pydantic model each, and the registry of request types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from broker_contracts.durations import MAX_SECONDS
from broker_contracts.frames import parse_frames
from broker_contracts.states import JobStatus, TaskStatus
from broker_contracts.tables import from_table
from broker_contracts.types import JobId, JobName, KeyText, Keyword, Password, Priority, SealedText, Text, Username
from broker_contracts.work import THUMB_B64

MAX_PARAMS = 32


class Body(BaseModel):
    """A request body: anything it does not declare is refused."""

    model_config = ConfigDict(extra="forbid")


class Out(Body):
    """A reply body: built from database rows, so columns it does not declare are left out."""

    model_config = ConfigDict(extra="ignore")


# --- auth ---------------------------------------------------------------------------------------


class RegisterForm(Body):
    """What a user gives to register, before the shell seals the password (and once the gateway
    has opened it: the password's rules are checked on both sides)."""

    username: Username
    password: Password


class LoginForm(Body):
    username: Username
    # Any length is accepted at login so that a too-short guess still gets the uniform answer.
    password: str = Field(max_length=1024)


class _Sealed(Body):
    """A body whose password is sealed to the farm's key (broker_contracts.sealing); one that
    carries it in clear is refused, so no client can leak a password to readers of Redis."""

    @model_validator(mode="before")
    @classmethod
    def _no_clear_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("password: must be sealed to the farm's key, never sent in clear (update rfarm)")
        return data


class RegisterRequest(_Sealed):
    username: Username
    sealed_password: SealedText


class LoginRequest(_Sealed):
    username: Username
    sealed_password: SealedText
    answer_key: KeyText  # the shell's one-off public key: the token comes back sealed to it


class EmptyRequest(Body):
    pass


class UserReply(Out):
    username: str
    is_admin: bool = False


class LoginReply(Out):
    username: str
    is_admin: bool
    sealed_token: str  # sealed to the request's answer_key: stored and resent, but usable only by its shell
    expires_at: datetime


# --- jobs ---------------------------------------------------------------------------------------


class SubmitRequest(Body):
    name: JobName
    frames: str = "1"
    chunk: int = Field(default=1, ge=1, le=10_000)
    renderer: Keyword = "fractal"
    params: dict[Keyword, Text] = Field(default_factory=dict)
    priority: Priority = 50
    max_attempts: int = Field(default=3, ge=1, le=100)
    pool: Keyword = "default"
    requires: list[Keyword] = Field(default_factory=list, max_length=16)
    after: JobId | None = None
    # scheduling (issue 12): the named limits its tasks take; how long one render may run (seconds)
    limits: list[Keyword] = Field(default_factory=list, max_length=8)
    task_timeout: int | None = Field(default=None, ge=1, le=MAX_SECONDS)

    @field_validator("frames")
    @classmethod
    def _frames(cls, value: str) -> str:
        return str(parse_frames(value))

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_PARAMS:
            raise ValueError(f"at most {MAX_PARAMS} parameters")
        return value


class SubmitReply(Out):
    id: int


class JobRef(Body):
    id: JobId


class PriorityRequest(Body):
    id: JobId
    priority: Priority


class ListRequest(Body):
    status: JobStatus | None = None
    all: bool = False
    limit: int = Field(default=50, ge=1, le=500)
    before: JobId | None = None


class JobSummary(Out):
    id: int
    name: str
    owner: str
    status: JobStatus
    paused: bool = False
    priority: int
    renderer: str
    pool: str
    frames: str
    frames_total: int
    frames_done: int
    tasks_total: int
    created_at: datetime
    updated_at: datetime
    reason: str | None = None
    # a running job's estimated seconds left, from its own finished frames; None: not running, or unknown yet
    eta_seconds: float | None = None


class ListReply(Out):
    """The gateway sends ``jobs`` as a table (broker_contracts/tables.py): ``columns`` and rows of
    values. A dump of the model (a shell's --json) has the jobs as maps."""

    jobs: list[JobSummary]

    @model_validator(mode="before")
    @classmethod
    def _from_table(cls, data: Any) -> Any:
        return from_table(data, "jobs")


class TaskInfo(Out):
    id: int
    seq: int
    frame_first: int
    frame_last: int
    status: TaskStatus
    attempt: int
    node: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None


class JobDetail(JobSummary):
    chunk: int
    params: dict[str, Any]
    max_attempts: int
    requires: list[str]
    after: int | None = None
    output: str
    waiting: str | None = None
    blocked_nodes: list[str] = Field(default_factory=list)
    limits: list[str] = Field(default_factory=list)
    task_timeout: int | None = None  # seconds


class FrameTimes(Out):
    """Render seconds of a job's finished frames, and for a running job what they let one expect."""

    done: int = 0
    min: float | None = None
    mean: float | None = None
    max: float | None = None
    left_seconds: float | None = None  # the estimated time left (a running job with a finished frame)
    finishes_at: datetime | None = None


class ShowReply(Out):
    job: JobDetail
    tasks: list[TaskInfo]
    times: FrameTimes = Field(default_factory=FrameTimes)


class WhyReply(Out):
    """`rfarm why JOB`: where the job stands and why (gateway/why.py). Counts only of other
    users' work: no other user's names or jobs."""

    job: JobSummary
    tasks: dict[str, int]  # ready, dispatched, running, succeeded, failed, cancelled
    # tasks that go before its next ready one: in its pool's ready window, of higher priority, of
    # users ahead of its owner in fair share, of its owner's older jobs (None: it has none waiting)
    place: int | None = None
    ahead: dict[str, int] = Field(default_factory=dict)
    held: int = 0  # slots its owner holds in its pool
    weight: float = 1.0
    pool_slots: int = 0
    pool_busy: int = 0
    waits: list[str] = Field(default_factory=list)  # what it waits for, the most decisive first
    starts: list[str] = Field(default_factory=list)  # what would start it


class HistoryEntry(Out):
    at: datetime
    task: int | None = None
    frames: str | None = None
    attempt: int | None = None
    from_: str | None = Field(default=None, alias="from", serialization_alias="from")
    to: str
    reason: str
    actor: str

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class HistoryRequest(Body):
    id: JobId
    tasks: bool = True


class HistoryReply(Out):
    """The gateway sends ``history`` as a table (broker_contracts/tables.py), as ListReply's ``jobs``."""

    job: JobSummary
    history: list[HistoryEntry]

    @model_validator(mode="before")
    @classmethod
    def _from_table(cls, data: Any) -> Any:
        return from_table(data, "history")


class JobReply(Out):
    job: JobSummary


class LogsRequest(Body):
    id: JobId
    # bounded like frame ranges (at most 7 digits): a larger number is refused here, not by SQL
    frame: int | None = Field(default=None, ge=-9_999_999, le=9_999_999)


class LogEntry(Out):
    task: int
    frames: str
    attempt: int
    node: str | None
    output: str


class LogsReply(Out):
    logs: list[LogEntry]


class FramesRequest(Body):
    id: JobId
    limit: int = Field(default=500, ge=1, le=1000)
    # the last frame of the page before (the reply's ``next``)
    after: int | None = Field(default=None, ge=-9_999_999, le=9_999_999)


class FrameInfo(Out):
    frame: int
    status: str  # "done" with its record, else its task's status
    node: str | None = None
    attempt: int | None = None
    seconds: float | None = None
    file: str | None = None
    bytes: int | None = None
    sha256: str | None = None


class FramesReply(Out):
    frames: list[FrameInfo]
    next: int | None = None  # pass as ``after`` for the next page; None: no more


class ThumbsRequest(Body):
    id: JobId
    frame: int | None = Field(default=None, ge=-9_999_999, le=9_999_999)
    after: int | None = Field(default=None, ge=-9_999_999, le=9_999_999)
    latest: bool = False  # only the thumbnail of the frame that finished last (`watch`)


class Thumb(Out):
    frame: int
    png: str = Field(max_length=THUMB_B64)  # base64 of a PNG of at most 32 KiB


class ThumbsReply(Out):
    name: str
    thumbs: list[Thumb]
    next: int | None = None  # pass as ``after`` for the next page; None: no more
class NodeJob(Out):
    id: int
    name: str
    owner: str


class NodeInfo(Out):
    id: str
    pool: str
    slots: int
    tags: list[str]
    profiles: list[str]
    running: int
    state: str
    version: str
    last_seen: datetime
    # profile name -> the version of the renderer behind it, as the node found it ("Blender 3.4.1")
    renderers: dict[str, str] = Field(default_factory=dict)
    drained: bool = False
    # the jobs it renders: every job for an admin, only the caller's own for anyone else
    jobs: list[NodeJob] = Field(default_factory=list)


class NodeRef(Body):
    name: Keyword


class NodesReply(Out):
    nodes: list[NodeInfo]


class WatchRequest(Body):
    id: JobId
    sub: Keyword  # the shell's subscription id, part of a Redis hash field


class WatchReply(Out):
    job: JobDetail
    tasks: list[TaskInfo]
    sub: str


class RunningTaskInfo(Out):
    task: int
    node: str | None = None
    frames: str
    done: int = 0


class WatchNotice(Out):
    """The body of a watch notice (``Notice(topic="job")``): a watched job's committed state, pushed
    after each change: its summary, task counts by status, its running tasks and its latest changes."""

    job: JobSummary
    counts: dict[str, int] = Field(default_factory=dict)
    running: list[RunningTaskInfo] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)


# --- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestType:
    """One request type as the gateway answers it and the shell sends it.

    ``needs_user``: refused without a valid login. ``writes``: changes state, so its answer is
    recorded in the inbox and a resend with the same id gets that answer again. The rest name the
    gateway's fast paths (docs/PERFORMANCE.md):

    ``session_in_statement``: the handler's own statement checks the caller's session along with
    its answer (one round trip instead of two); the gateway still refuses a missing token first.
    ``records_own_answer``: a write whose effect is ONE statement that also records its answer
    (``{"id": N}``): no transaction block, no inbox lookup first (a repeated id fails on the inbox's
    key, and the stored answer is read then); it refuses only before that statement.
    ``answers_together``: several plain requests of this type in one batch are answered by one
    statement.
    ``hashes_password``: answered on the gateway's auth lane (one thread, a bounded queue), so that
    argon2 never keeps other requests waiting; when the lane is full it is refused at once.
    """

    name: str
    body: type[Body]
    reply: type[Body]
    needs_user: bool = True
    writes: bool = False
    session_in_statement: bool = False
    records_own_answer: bool = False
    answers_together: bool = False
    hashes_password: bool = False

    def __post_init__(self) -> None:
        if self.records_own_answer and not (self.writes and self.session_in_statement):
            raise ValueError(f"{self.name}: an answer recorded by its own statement is a write's, with its session")
        if self.session_in_statement and not self.needs_user:
            raise ValueError(f"{self.name}: a session checked in the statement needs a user")

    @property
    def in_transaction(self) -> bool:
        """A write in a transaction block: its inbox entry and the caller's session are read by
        one statement first, its answer recorded before the commit."""
        return self.writes and not self.records_own_answer


def _registry(*rows: RequestType) -> dict[str, RequestType]:
    return {row.name: row for row in rows}


REQUEST_TYPES: dict[str, RequestType] = _registry(
    RequestType("auth.register", RegisterRequest, UserReply, needs_user=False, writes=True, hashes_password=True),
    RequestType("auth.login", LoginRequest, LoginReply, needs_user=False, writes=True, hashes_password=True),
    RequestType("auth.logout", EmptyRequest, EmptyRequest, writes=True),
    RequestType("auth.whoami", EmptyRequest, UserReply),
    RequestType(
        "job.submit", SubmitRequest, SubmitReply, writes=True, session_in_statement=True, records_own_answer=True
    ),
    RequestType("job.list", ListRequest, ListReply, session_in_statement=True, answers_together=True),
    RequestType("job.show", JobRef, ShowReply),
    RequestType("job.history", HistoryRequest, HistoryReply),
    RequestType("job.why", JobRef, WhyReply),
    RequestType("job.cancel", JobRef, JobReply, writes=True),
    RequestType("job.pause", JobRef, JobReply, writes=True),
    RequestType("job.resume", JobRef, JobReply, writes=True),
    RequestType("job.retry", JobRef, JobReply, writes=True),
    RequestType("job.priority", PriorityRequest, JobReply, writes=True),
    RequestType("job.logs", LogsRequest, LogsReply),
    RequestType("job.frames", FramesRequest, FramesReply),
    RequestType("job.thumbs", ThumbsRequest, ThumbsReply),
    RequestType("job.watch", WatchRequest, WatchReply),
    RequestType("node.list", EmptyRequest, NodesReply),
    RequestType("node.drain", NodeRef, NodeInfo, writes=True),
    RequestType("node.undrain", NodeRef, NodeInfo, writes=True),
    RequestType("node.forget", NodeRef, NodeRef, writes=True),
)
