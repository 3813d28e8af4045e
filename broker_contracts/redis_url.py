"""The forms of ``RFARM_REDIS_URL`` (pure: parsing only; the client is made in ``broker_client``).

- ``redis://[[user]:password@]host[:port][/db]`` (and ``rediss://`` for TLS, ``unix://``): one Redis,
  as redis-py reads it;
- ``redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]...]/service[/db]``: a primary
  found through Redis Sentinel. The hosts are sentinels (port 26379 unless given); ``service`` is
  the name the sentinels monitor (``sentinel monitor <service> ...``); ``db`` is 0 unless given.
  The user and password are the ACL user of the data servers (primary and replicas), the same one
  a plain URL would carry. Sentinels that require a password of their own take it as query
  parameters: ``?sentinel_username=u&sentinel_password=p``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
SENTINEL_QUERY = frozenset({"sentinel_username", "sentinel_password"})


class RedisUrlError(ValueError):
    """A Redis URL rfarm cannot use; the message is one line, without the password."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def describe(self) -> str:
        """Short, without secrets: ``mymaster@host1:26379,host2:26379``."""
        return f"{self.service}@" + ",".join(f"{h}:{p}" for h, p in self.sentinels)


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise RedisUrlError("a sentinel address is empty")
    if item.startswith("["):  # [v6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise RedisUrlError(f"sentinel address {item!r} has no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RedisUrlError(f"sentinel address {item!r} has a bad port")
    return host, int(port_text)


def parse_sentinel(url: str) -> SentinelTarget:
    """The parts of a ``redis+sentinel://`` URL; RedisUrlError when it is not one rfarm can use."""
    if not is_sentinel(url):
        raise RedisUrlError("not a redis+sentinel:// URL")
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user_text, colon, pass_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(pass_text) if colon else None
    sentinels = tuple(_host_port(h) for h in hosts.split(","))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise RedisUrlError("a redis+sentinel:// URL names its service: redis+sentinel://host:26379/mymaster/0")
    if len(path) > 2:
        raise RedisUrlError("a redis+sentinel:// URL's path is /service or /service/db")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise RedisUrlError(f"database {path[1]!r} is not a number")
        db = int(path[1])
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - SENTINEL_QUERY)
    if unknown:
        raise RedisUrlError(f"unknown option {unknown[0]!r} (known: {', '.join(sorted(SENTINEL_QUERY))})")
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=query.get("sentinel_username", [None])[-1],
        sentinel_password=query.get("sentinel_password", [None])[-1],
    )


def redact_sentinel(url: str) -> str:
    """A sentinel URL fit to print: its passwords (the data servers' and the sentinels') as ***."""
    try:
        target = parse_sentinel(url)
    except RedisUrlError:  # still said, so the operator sees what was wrong, without the secrets
        url = re.sub(r"(sentinel_password=)[^&#]*", r"\1***", url)
        return re.sub(r"^([^:]+://[^:@/]*):[^@/]*@", r"\1:***@", url)
    user = ""
    if target.password is not None:
        user = f"{quote(target.username or '', safe='')}:***@"
    elif target.username:
        user = f"{quote(target.username, safe='')}@"
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in target.sentinels)
    query = []
    if target.sentinel_username:
        query.append(f"sentinel_username={quote(target.sentinel_username, safe='')}")
    if target.sentinel_password is not None:
        query.append("sentinel_password=***")
    tail = f"?{'&'.join(query)}" if query else ""
    return f"{SENTINEL_SCHEME}://{user}{hosts}/{quote(target.service, safe='')}/{target.db}{tail}"
