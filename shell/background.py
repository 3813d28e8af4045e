"""What the REPL knows about the farm, refreshed in a background thread so typing never waits.

A ``Refresher`` has its own ``Client`` (its own reply stream: it never reads the replies of the
command being run) and every few seconds asks for the user's jobs (and, for admins, the nodes'
profiles). It publishes an immutable ``Snapshot``; the completer and the toolbar only read the
latest one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from broker_contracts.config import Settings
from broker_contracts.errors import ErrorCode
from broker_contracts.messages import ListReply, NodeInfo, NodesReply, UserReply
from broker_contracts.profiles import BUILTIN_PROFILES, ProfileSpec
from shell.client import Client
from shell.complete import JobBrief, Known
from shell.credentials import CredentialStore
from shell.errors import FarmError, NoAnswer, Refused, Unreachable
from shell.farmkey import PinnedKeys
from shell.session import relocated

REFRESH_EVERY = 5.0
ENDS = ("succeeded", "failed", "cancelled")
REQUEST_TIMEOUT = 3.0

CONNECTING = "connecting"
CONNECTED = "connected"
REDIS_DOWN = "redis down"
NO_GATEWAY = "no gateway"
SIGNED_OUT = "not logged in"


@dataclass(frozen=True)
class Snapshot:
    state: str = CONNECTING
    user: str | None = None
    admin: bool = False
    running: int = 0  # my jobs running
    queued: int = 0  # my jobs queued
    known: Known = field(default_factory=Known)
    detail: str = ""  # why the state is what it is (an error message)
    at: float = 0.0  # time.monotonic() of the refresh


def counts(jobs: tuple[JobBrief, ...]) -> tuple[int, int]:
    running = sum(1 for j in jobs if j.status == "running")
    queued = sum(1 for j in jobs if j.status == "queued")
    return running, queued


class Refresher:
    """Keeps ``snapshot`` fresh; ``poke()`` asks for a refresh now (after a command ran)."""

    def __init__(
        self,
        settings: Settings,
        *,
        every: float = REFRESH_EVERY,
        on_change: Callable[[], None] | None = None,
        reload: Callable[[], Settings] | None = None,
        on_finished: Callable[[list[JobBrief]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.every = every
        self.on_change = on_change
        self.on_finished = on_finished  # jobs seen unfinished at one refresh and ended at the next
        self.reload = reload  # where the farm is now: re-read when it stops answering
        self.snapshot = Snapshot(known=Known(profiles=dict(BUILTIN_PROFILES)))
        self._store = CredentialStore(settings, self._farm_id)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Client | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rfarm-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT + 2)
        if self._client is not None:
            self._client.close()

    def poke(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh_once()
            self._wake.wait(self.every)
            self._wake.clear()

    def refresh_once(self) -> Snapshot:
        """One refresh (also usable without the thread, e.g. in tests). Never raises. When the farm
        does not answer and the farm.env names another address, the refresh moves there."""
        snapshot = self._attempt()
        if snapshot.state in (REDIS_DOWN, NO_GATEWAY) and self._relocate():
            snapshot = self._attempt()
        before = {j.id: j.status for j in self.snapshot.known.jobs}
        self.snapshot = replace(snapshot, at=time.monotonic())
        ended = [j for j in self.snapshot.known.jobs if j.status in ENDS and before.get(j.id, "") not in ("", *ENDS)]
        if ended and self.on_finished is not None:
            self.on_finished(ended)
        if self.on_change is not None:
            self.on_change()
        return self.snapshot

    def _relocate(self) -> bool:
        found = relocated(self.settings, self.reload)
        if found is None:
            return False
        if self._client is not None:
            self._client.close()
            self._client = None
        self.settings = found
        self._store = CredentialStore(found, self._farm_id)
        return True

    def _attempt(self) -> Snapshot:
        try:
            snapshot = self._fetch()
        except Unreachable as exc:
            snapshot = replace(self.snapshot, state=REDIS_DOWN, detail=exc.message)
        except NoAnswer as exc:
            snapshot = replace(self.snapshot, state=NO_GATEWAY, detail=exc.message)
        except FarmError as exc:
            if exc.code in (ErrorCode.AUTH_TOKEN_EXPIRED, ErrorCode.AUTH_TOKEN_INVALID, ErrorCode.AUTH_REQUIRED):
                snapshot = replace(
                    self.snapshot,
                    state=SIGNED_OUT,
                    user=None,
                    running=0,
                    queued=0,
                    known=replace(self.snapshot.known, jobs=()),
                    detail=exc.message,
                )
            else:
                snapshot = replace(self.snapshot, detail=exc.message)
        except (ValidationError, ValueError) as exc:
            snapshot = replace(self.snapshot, detail=f"unexpected reply: {exc}")
        return snapshot

    def _connected(self) -> Client:
        if self._client is None:
            settings = self.settings
            self._client = Client(
                settings.redis_url,
                settings.prefix,
                timeout=REQUEST_TIMEOUT,
                source=settings.redis_source,
                pins=PinnedKeys(settings),
            )
        return self._client

    def _farm_id(self, wait: bool) -> str | None:
        try:
            return self._connected().farm_id(wait=REQUEST_TIMEOUT if wait else 0.0)
        except Refused:  # an ACL user made before shells could read the farm's identity
            return None

    def _fetch(self) -> Snapshot:
        client = self._connected()
        token = self._store.token()
        if not token:
            if not client.ping():
                raise Unreachable(f"cannot reach Redis at {client.where}")
            return Snapshot(state=SIGNED_OUT, known=Known(profiles=self.snapshot.known.profiles))
        self._farm_id(wait=True)  # the token goes only where a farm announces itself
        who = UserReply.model_validate(client.call("auth.whoami", {}, token))
        listed = ListReply.model_validate(client.call("job.list", {"limit": 200}, token))
        jobs = tuple(JobBrief(j.id, j.name, "paused" if j.paused else j.status.value) for j in listed.jobs)
        mine = tuple(j for j, full in zip(jobs, listed.jobs, strict=True) if full.owner == who.username)
        profiles = dict(BUILTIN_PROFILES)
        nodes = self._nodes(client, token)  # everyone may list them (issue 12)
        profiles.update(_node_profiles(nodes))
        running, queued = counts(mine)
        return Snapshot(
            state=CONNECTED,
            user=who.username,
            admin=who.is_admin,
            running=running,
            queued=queued,
            known=Known(
                jobs=jobs,
                profiles=profiles,
                nodes=tuple(sorted({n.id for n in nodes})),
                pools=tuple(sorted({n.pool for n in nodes})),
                tags=tuple(sorted({t for n in nodes for t in n.tags})),
            ),
        )

    def _nodes(self, client: Client, token: str) -> list[NodeInfo]:
        try:
            return NodesReply.model_validate(client.call("node.list", {}, token)).nodes
        except FarmError:
            return []


def _node_profiles(nodes: list[NodeInfo]) -> dict[str, ProfileSpec]:
    """Profile names the connected nodes offer; their params unknown."""
    out: dict[str, ProfileSpec] = {}
    for node in nodes:
        for name in node.profiles:
            if name not in BUILTIN_PROFILES:
                try:
                    out[name] = ProfileSpec(name=name, argv=["?"])
                except ValidationError:
                    continue
    return out
