"""The farm's identity in Redis: every gateway announces the id PostgreSQL keeps for the farm.

A shell reads ``<prefix>:farm`` to learn which farm answers at an address, and keys its saved
session by that id: a farm that comes back on another address keeps its users logged in. The key
expires unless a gateway renews it, and is set again soon after Redis restarts empty.
"""

from __future__ import annotations

import logging
import threading

import psycopg
import redis
from psycopg_pool import ConnectionPool

from broker_contracts.errors import RfarmError
from broker_contracts.keys import Keys
from store import farm
from store.db import reading

log = logging.getLogger("rfarm.announce")

ANNOUNCE_EVERY = 5.0
ANNOUNCE_TTL = 60


class Announcer:
    """Sets the farm key at start and every few seconds; never raises (a gateway outlives outages)."""

    def __init__(self, r: redis.Redis, pool: ConnectionPool, keys: Keys, stop: threading.Event) -> None:
        self.r = r
        self.pool = pool
        self.keys = keys
        self.stop = stop
        self.farm_id: str | None = None
        self._failing = False

    def announce(self) -> bool:
        """Set the key once; False (logged once per outage) when PostgreSQL or Redis fails."""
        try:
            if self.farm_id is None:
                with reading(self.pool, timeout=2.0) as conn:
                    self.farm_id = farm.farm_id(conn)
            self.r.set(self.keys.farm_info, self.farm_id, ex=ANNOUNCE_TTL)
        except (RfarmError, psycopg.Error, redis.RedisError) as exc:
            if not self._failing:
                log.warning("cannot announce the farm's identity yet: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("announcing farm %s again", self.farm_id)
        self._failing = False
        return True

    def run(self) -> None:
        while not self.stop.is_set():
            self.announce()
            self.stop.wait(ANNOUNCE_EVERY)
