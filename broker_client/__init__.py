"""The one place a Redis client is made from an rfarm Redis URL, for every process (gateway, node,
shell, rfarmctl): a plain ``redis://`` / ``rediss://`` / ``unix://`` URL, or a
``redis+sentinel://`` URL whose primary is asked of the sentinels (the forms:
``broker_contracts.redis_url``).

A Sentinel client asks the sentinels for the primary's address whenever it opens a connection;
when the primary dies its connections fail (redis.ConnectionError, which every caller already
waits out and retries), and the next connection goes to whichever server the sentinels name then.
A connection still open to a primary demoted to a replica gets READONLY on its next write, which
redis-py turns into a ConnectionError and a new connection, so it follows a failover too.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import MasterNotFoundError, Sentinel

from broker_contracts.redis_url import RedisUrlError, SentinelTarget, is_sentinel, parse_sentinel

__all__ = ["RedisUrlError", "connect", "data_servers"]

SENTINEL_TIMEOUT = 2.0  # one sentinel's answer; a dead one is skipped for the next


def connect(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``url``. ``options`` are redis-py connection options (socket_timeout,
    socket_connect_timeout, health_check_interval, ...), applied to the data servers' connections.
    Raises RedisUrlError (a ValueError) for a URL it cannot use; never connects here."""
    if not is_sentinel(url):
        try:
            return redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise RedisUrlError(str(exc)) from None
    target = parse_sentinel(url)
    return _sentinel(target, options).master_for(target.service, db=target.db, **_auth(target), **options)


def _auth(target: SentinelTarget) -> dict[str, Any]:
    """The data servers' ACL user, from the URL."""
    auth: dict[str, Any] = {}
    if target.username:
        auth["username"] = target.username
    if target.password is not None:
        auth["password"] = target.password
    return auth


class _Sentinel(Sentinel):
    """redis-py's Sentinel, saying in one short line which sentinels named no primary (its own
    message holds the repr of every sentinel client, a screenful)."""

    where = ""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            return super().discover_master(service_name)  # type: ignore[no-any-return]
        except MasterNotFoundError:
            raise MasterNotFoundError(
                f"no sentinel at {self.where} answered with a primary for {service_name!r}"
            ) from None


def _sentinel(target: SentinelTarget, options: dict[str, Any]) -> Sentinel:
    timeout = min(float(options.get("socket_connect_timeout") or SENTINEL_TIMEOUT), SENTINEL_TIMEOUT)
    sentinel_options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if target.sentinel_username:
        sentinel_options["username"] = target.sentinel_username
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
    sentinel = _Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    sentinel.where = ",".join(f"{h}:{p}" for h, p in target.sentinels)
    return sentinel



def data_servers(url: str, **options: Any) -> list[tuple[str, redis.Redis]]:
    """(address, client) of every data server behind ``url``: the one server of a plain URL; the
    primary and then each replica the sentinels know of a sentinel URL. For what a server does not
    replicate to its replicas (ACL SETUSER): an operator applies it to each. The caller closes them."""
    if not is_sentinel(url):
        return [(url, connect(url, **options))]
    target = parse_sentinel(url)
    sentinel = _sentinel(target, options)
    try:
        addresses = [sentinel.discover_master(target.service), *sentinel.discover_slaves(target.service)]
    finally:
        sentinel.close()
    return [
        (f"{host}:{port}", redis.Redis(host=host, port=port, db=target.db, **_auth(target), **options))
        for host, port in addresses
    ]
