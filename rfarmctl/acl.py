"""Least-privilege Redis ACL users for the three roles (gateway, node, shell), for one key prefix.

Each role gets exactly the commands its process sends and only the keys under the farm's prefix it
touches. Needs Redis >= 7 (read-only / write-only key patterns ``%R~`` and ``%W~``).

- shell: XADD to ``<prefix>:req``; XREAD of ``<prefix>:reply:*`` (a reply stream is 128 random
  bits, so a shell can read only the one whose name it made); GET of ``<prefix>:farm`` (the farm's
  identity) and of ``<prefix>:gateway-key`` (the farm's public key, which it seals secrets to). It
  cannot read requests, work or events, list keys, or run an admin command.
- node: its consumer group on ``<prefix>:work:*``; XADD to events and dead letters; SET and DEL of
  its liveness key only; reads the cancel and hold signals and the gateways' work key. It cannot
  read requests, reply streams, events or dead letters, nor add to, delete or trim a work stream
  (Redis 7 selectors give each command only its own keys).
- gateway: stream, hash, string and key commands on ``<prefix>:*``, and TIME; nothing dangerous or admin.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import redis

ROLES = ("gateway", "node", "shell")
MIN_REDIS_MAJOR = 7
MIN_PASSWORD_LENGTH = 16
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_PASSWORD_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: safe in URLs and commands

# Commands every role's client may send while connecting or checking the link. redis-py names its
# library with CLIENT SETINFO on connect (Redis >= 7.2; it ignores a refusal, but Redis logs it).
_PING = "+ping"
_SETINFO = "+client|setinfo"


class AclError(Exception):
    """Something that makes the ACL profiles impossible to print or apply; the message is one line."""


@dataclass(frozen=True)
class AclUser:
    role: str
    name: str
    password: str
    rules: tuple[str, ...]

    def setuser_args(self) -> list[str]:
        """The arguments after ``ACL SETUSER <name>``: start from nothing, then grant."""
        return ["reset", "resetchannels", "on", f">{self.password}", *self.rules]

    def command_line(self) -> str:
        """For redis-cli: a selector, which holds spaces, is quoted as one argument."""
        return " ".join(f'"{a}"' if " " in a else a for a in ["ACL", "SETUSER", self.name, *self.setuser_args()])


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis key pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def role_rules(role: str, prefix: str, *, setinfo: bool = True) -> tuple[str, ...]:
    p = glob_escape(prefix)
    connection = (_PING, _SETINFO) if setinfo else (_PING,)
    if role == "shell":
        return (
            f"%W~{p}:req",
            f"%R~{p}:reply:*",
            f"%R~{p}:farm",
            f"%R~{p}:gateway-key",
            "+xadd",
            "+xread",
            "+get",
            *connection,
        )
    if role == "node":
        # Each command only on the keys it is for (Redis 7 selectors): a node may not add to, delete
        # or trim a work stream, nor read or ack events, nor set any key but its liveness key; XADD
        # is what it sends to events and dead, GET reads only the gateways' work key.
        return (
            f"~{p}:work:*",
            "+xreadgroup",
            "+xautoclaim",
            "+xclaim",
            "+xack",
            "+xpending",
            "+xgroup|create",
            # a task's last report and the ack of its work entry go in one MULTI/EXEC
            "+multi",
            "+exec",
            "+discard",
            *connection,
            f"(%W~{p}:events %W~{p}:dead +xadd)",
            f"(%W~{p}:node:* +set +del)",
            f"(%R~{p}:cancel:* %R~{p}:hold:* %R~{p}:drain:* +exists)",
            f"(%R~{p}:workkey +get)",
        )
    if role == "gateway":
        return (
            f"~{p}:*",
            "+@stream",
            "+@hash",
            "+@string",
            "+@keyspace",
            "+@connection",
            "+@transaction",
            "-@dangerous",
            "-@admin",
            "+time",  # the Redis clock, which stream ids are made from (gateway/repair.py)
        )
    raise AclError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")


def default_name(role: str, prefix: str) -> str:
    return f"rfarm-{prefix}-{role}"


def check_password(role: str, password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH or not _PASSWORD_RE.fullmatch(password):
        raise AclError(
            f"the {role} password must be at least {MIN_PASSWORD_LENGTH} printable characters without spaces"
        )
    return password


def build_users(prefix: str, passwords: dict[str, str | None] | None = None, *, setinfo: bool = True) -> list[AclUser]:
    """One user per role; a password not given is generated (256 random bits)."""
    given = passwords or {}
    users = []
    for role in ROLES:
        chosen = given.get(role)
        password = check_password(role, chosen) if chosen else secrets.token_hex(32)
        users.append(AclUser(role, default_name(role, prefix), password, role_rules(role, prefix, setinfo=setinfo)))
    return users


def url_for(base_url: str, user: AclUser) -> str:
    """``base_url`` (its own credentials dropped) with the user's name and password in it."""
    parts = urlsplit(base_url)
    host = parts.netloc.rpartition("@")[2] or "127.0.0.1"  # host:port, [v6]:port, or a sentinel list
    netloc = f"{quote(user.name, safe='')}:{quote(user.password, safe='')}@{host}"
    return urlunsplit((parts.scheme or "redis", netloc, parts.path, parts.query, parts.fragment))


def redis_version(r: redis.Redis) -> tuple[int, int]:
    version = str(r.info("server").get("redis_version", "0"))
    try:
        major, minor, *_ = (int(x) for x in (version + ".0").split("."))
    except ValueError:
        return (0, 0)
    return (major, minor)


def fit_to_server(r: redis.Redis, users: list[AclUser]) -> list[AclUser]:
    """Check the server is new enough; drop CLIENT SETINFO where the server has no such command."""
    version = redis_version(r)
    if version[0] < MIN_REDIS_MAJOR:
        raise AclError(
            f"this Redis is version {version[0]}.{version[1]}; rfarm's ACL profiles need Redis >= "
            f"{MIN_REDIS_MAJOR} (read-only and write-only key patterns)"
        )
    if version >= (7, 2):
        return users
    return [AclUser(u.role, u.name, u.password, tuple(x for x in u.rules if x != _SETINFO)) for u in users]


def apply(r: redis.Redis, users: list[AclUser]) -> None:
    """Create or replace the users on the server ``r`` is connected to (as an admin)."""
    for user in users:
        r.execute_command("ACL", "SETUSER", user.name, *user.setuser_args())


def render(users: list[AclUser], base_url: str, prefix: str, *, applied: bool) -> str:
    """What the operator reads: the commands, then a Redis URL per role. Passwords are shown once."""
    lines = [f"# rfarm Redis ACL users for prefix {prefix!r} (Redis >= {MIN_REDIS_MAJOR})."]
    if applied:
        lines.append("# Created on the server. The passwords are shown only now: store them.")
    else:
        lines.append("# Run these as an admin (redis-cli), or run again with --apply. Passwords are shown only now.")
        lines.append(f"# On Redis 7.0 and 7.1 leave out {_SETINFO} (that command came with 7.2).")
    lines += [u.command_line() for u in users]
    lines.append("# Redis URLs to configure (RFARM_REDIS_URL) for each role:")
    lines += [f"{u.role:8} {url_for(base_url, u)}" for u in users]
    return "\n".join(lines)
