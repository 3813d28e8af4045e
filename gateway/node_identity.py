"""Which node wrote a report: the ledger checks each report's signature against the credential of
the node it names (store/credentials.py, issued by `rfarmctl node-credential`)."""

from __future__ import annotations

import time

from psycopg_pool import ConnectionPool

from broker_contracts.signing import event_is_signed_by
from gateway.context import GatewayConfig
from store import credentials
from store.db import transaction

KEYS_FRESH = 2.0  # seconds node credentials are cached: a revocation counts within this
REFUSAL_LOG_EVERY = 60.0  # seconds between log lines about the same node's refused reports


class NodeIdentities:
    """Which node wrote a report: its signature checked against the node's credential.

    A name that has (or had) a credential must sign with it; a name that never had one is refused
    when the farm requires credentials and otherwise accepted as it always was.
    """

    def __init__(self, pool: ConnectionPool, config: GatewayConfig) -> None:
        self.pool = pool
        self.prefix = config.prefix
        self.required = config.require_node_credentials
        self._keys: dict[str, bytes | None] = {}
        self._read_at = float("-inf")
        self._logged: dict[tuple[str, str], float] = {}

    def refresh(self, names: set[str]) -> None:
        """Read the credentials again if they are old, or if a name is not among them (a credential
        issued a moment ago): at most once per batch of reports."""
        now = time.monotonic()
        if now - self._read_at >= KEYS_FRESH or not names <= self._keys.keys():
            with transaction(self.pool) as conn:
                self._keys = credentials.node_keys(conn)
            self._read_at = now

    def refusal(self, node: str, data: bytes, signature: bytes | None) -> str | None:
        """Why the report ``data`` is not accepted as node ``node``'s, or None."""
        if node not in self._keys:
            if self.required:
                return f"node {node} has no credential and this farm requires one"
            if signature is not None:
                return f"node {node} signed its report but has no credential"
            return None
        key = self._keys[node]
        if key is None:
            return f"the credential of node {node} is revoked"
        if signature is None:
            return f"unsigned report from node {node}, which has a credential"
        if not event_is_signed_by(key, self.prefix, data, signature):
            return f"report not signed with the credential of node {node}"
        return None

    def should_log(self, node: str, reason: str) -> bool:
        """One log line per node and reason a minute: a node without a credential reports often."""
        now = time.monotonic()
        if now - self._logged.get((node, reason), float("-inf")) < REFUSAL_LOG_EVERY:
            return False
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[(node, reason)] = now
        return True
