"""The prompt and the bottom toolbar as pure functions of a Snapshot (prompt-toolkit styles)."""

from __future__ import annotations

from urllib.parse import urlsplit

from broker_contracts.redis_url import RedisUrlError, is_sentinel, parse_sentinel
from shell.background import CONNECTED, CONNECTING, NO_GATEWAY, REDIS_DOWN, SIGNED_OUT, Snapshot
from shell.format import cut, width_of
from shell.safe import printable

Fragments = list[tuple[str, str]]

STYLE = {
    "prompt.user": "ansigreen bold",
    "prompt.farm": "ansicyan",
    "toolbar": "bg:#303030 #d0d0d0",
    "toolbar.ok": "bg:#303030 ansigreen",
    "toolbar.bad": "bg:#303030 ansired bold",
    "toolbar.warn": "bg:#303030 ansiyellow",
    "toolbar.count": "bg:#303030 #ffffff bold",
}
PLAIN_STYLE = {key: ("bg:#303030" if key.startswith("toolbar") else "") for key in STYLE}


def farm_name(redis_url: str, prefix: str) -> str:
    """Which farm, short: 'host:port', plus '/prefix' unless it is the default 'rf'."""
    if is_sentinel(redis_url):
        try:
            name = parse_sentinel(redis_url).service  # the primary moves; the service is the farm
        except RedisUrlError:
            name = "sentinel"
        return name if prefix == "rf" else f"{name}/{prefix}"
    parts = urlsplit(redis_url)
    host = parts.hostname or "localhost"
    name = f"{host}:{parts.port}" if parts.port else host
    return name if prefix == "rf" else f"{name}/{prefix}"


def prompt_fragments(user: str | None, farm: str) -> Fragments:
    who = printable(user) or "(not logged in)"
    return [("class:prompt.user", who), ("", "@"), ("class:prompt.farm", farm), ("", "> ")]


def toolbar_fragments(snap: Snapshot, width: int = 80) -> Fragments:
    """Connection state, user, and how many of my jobs run and wait; fits ``width`` columns."""
    if snap.state == CONNECTED:
        state: tuple[str, str] = ("class:toolbar.ok", "● connected")
    elif snap.state == REDIS_DOWN:
        state = ("class:toolbar.bad", "✖ Redis unreachable")
    elif snap.state == NO_GATEWAY:
        state = ("class:toolbar.warn", "◌ no gateway answering")
    elif snap.state == SIGNED_OUT:
        state = ("class:toolbar.warn", "○ not logged in")
    else:
        state = ("class:toolbar", "… connecting")
    parts: Fragments = [("class:toolbar", " "), state]
    if snap.user and snap.state != SIGNED_OUT:
        role = " (admin)" if snap.admin else ""
        parts += [("class:toolbar", f" │ {printable(snap.user)}{role}")]
    if snap.state in (CONNECTED, REDIS_DOWN, NO_GATEWAY) and snap.user:
        stale = "" if snap.state == CONNECTED else " (last seen)"
        parts += [
            ("class:toolbar", " │ jobs: "),
            ("class:toolbar.count", str(snap.running)),
            ("class:toolbar", " running, "),
            ("class:toolbar.count", str(snap.queued)),
            ("class:toolbar", f" queued{stale}"),
        ]
    if snap.state == CONNECTING:
        parts.append(("class:toolbar", " │ Tab completes, Ctrl-R searches history, Ctrl-D leaves"))
    return fit(parts, width)


def fit(parts: Fragments, width: int) -> Fragments:
    """Cut the fragments so the text is at most ``width - 1`` columns (never wraps)."""
    room = max(width - 1, 1)
    out: Fragments = []
    for style, text in parts:
        if room <= 0:
            break
        text = cut(text, room)
        out.append((style, text))
        room -= width_of(text)
    return out


def text_of(parts: Fragments) -> str:
    return "".join(text for _style, text in parts)
