"""Every Redis key rfarm uses, derived from one prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

# whole strings: used with fullmatch only (``$`` would let a trailing newline through)
CLIENT_ID_RE = re.compile(r"[0-9a-f]{32}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

GATEWAY_GROUP = "gateway"
LEDGER_GROUP = "ledger"
NODES_GROUP = "nodes"


@dataclass(frozen=True)
class Keys:
    prefix: str = "rf"

    @property
    def requests(self) -> str:
        return f"{self.prefix}:req"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    def reply(self, client_id: str) -> str:
        return f"{self.prefix}:reply:{client_id}"

    def work(self, pool: str) -> str:
        return f"{self.prefix}:work:{pool}"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    def drain(self, node_id: str) -> str:
        """Set while an admin has drained the node: it claims no new work (`rfarm drain`)."""
        return f"{self.prefix}:drain:{node_id}"

    def cancel(self, job_id: int) -> str:
        return f"{self.prefix}:cancel:{job_id}"

    def hold(self, job_id: int) -> str:
        """Set while a job is paused: a node that sees it gives the task back instead of starting."""
        return f"{self.prefix}:hold:{job_id}"

    def watch(self, job_id: int) -> str:
        """A hash of the shells watching a job: ``<client>:<sub>`` -> expiry time."""
        return f"{self.prefix}:watch:{job_id}"

    def poisoned(self, stream: str) -> str:
        """Where the gateway keeps a stream it replaced because its ids were poisoned (for operators:
        under no pattern a shell or a node may use)."""
        return f"{self.prefix}:poisoned:{stream.removeprefix(self.prefix + ':')}"

    def watching(self, user_id: int) -> str:
        """A hash of one user's watch subscriptions: ``<job>:<client>:<sub>`` -> expiry time."""
        return f"{self.prefix}:watching:{user_id}"

    @property
    def gateway_key(self) -> str:
        """Set by every gateway: the public half of the farm's key, which shells seal secrets to."""
        return f"{self.prefix}:gateway-key"

    @property
    def work_key(self) -> str:
        """Set by the gateways: the public key their work items are signed with (32 bytes)."""
        return f"{self.prefix}:workkey"

    @property
    def farm_info(self) -> str:
        """Set by every gateway: the farm's identity (its id in PostgreSQL), read by shells to know
        which farm answers at an address and so which saved session is theirs there."""
        return f"{self.prefix}:farm"


def valid_client_id(value: str) -> bool:
    """A reply address is exactly 128 random bits in hex: nothing else may name a stream."""
    return CLIENT_ID_RE.fullmatch(value) is not None


def valid_name(value: str) -> bool:
    """Pool, node, tag and profile names: short, printable, safe inside a key."""
    return NAME_RE.fullmatch(value) is not None
