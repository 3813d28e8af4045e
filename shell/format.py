"""Pure text helpers for renderers: tables fitted to a width (in terminal columns: a CJK character or
an emoji takes two), relative times, status colours."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from wcwidth import wcswidth, wcwidth

ELLIPSIS = "…"

_COLOURS = {
    "queued": "33",  # yellow
    "running": "36",  # cyan
    "succeeded": "32",  # green
    "failed": "31",  # red
    "cancelled": "90",  # grey
    "paused": "35",  # magenta
    "up": "32",
    "busy": "36",
    "draining": "33",
    "down": "31",
}


@dataclass(frozen=True)
class RenderOptions:
    """Everything a renderer may depend on besides the reply body: no terminal access inside."""

    width: int = 100
    color: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    inside_shell: bool = False  # in the interactive shell a hint says `login alice`, not `rfarm login alice`


def hint(command: str, opts: RenderOptions) -> str:
    """A command to type next, quoted as the user would type it where they are."""
    return f"`{command}`" if opts.inside_shell else f"`rfarm {command}`"


def inside_shell(text: str, prog: str = "rfarm") -> str:
    """A message's hints as typed inside the interactive shell: `rfarm login USER` → `login USER`."""
    return text.replace(f"`{prog} ", "`")


@dataclass(frozen=True)
class Cell:
    """A table cell whose text may be coloured by a status name (the colour never counts as width)."""

    text: str
    status: str | None = None


def colour(text: str, status: str | None, enabled: bool) -> str:
    code = _COLOURS.get(status or "")
    if not enabled or code is None:
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def width_of(text: str) -> int:
    """The columns ``text`` takes on a terminal: 2 for a CJK character or an emoji, 0 for a
    combining mark. A character of unknown width (a control character) counts as one."""
    columns = wcswidth(text)
    if columns >= 0:
        return columns
    return sum(1 if wcwidth(c) < 0 else wcwidth(c) for c in text)


def cut(text: str, width: int) -> str:
    """At most ``width`` columns; a cut text ends with an ellipsis."""
    if width_of(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room, kept = width - 1, []
    for char in text:
        room -= width_of(char)
        if room < 0:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` filled with spaces to ``width`` columns (on the left when ``right``)."""
    fill = " " * max(width - width_of(text), 0)
    return fill + text if right else text + fill


def table(
    headers: list[str],
    rows: list[list[str | Cell]],
    opts: RenderOptions,
    *,
    flex: tuple[int, ...] = (1,),
    right: tuple[int, ...] = (),
    min_flex: int = 8,
) -> list[str]:
    """Rows under headers, two spaces apart, fitted to ``opts.width``.

    The ``flex`` columns (by index; first listed gives up width first) are cut with "…" when the
    table is too wide; the others keep their width. ``right`` columns are right-aligned.
    """
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    widths = [width_of(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], width_of(_flat(c.text)))
    gap = 2
    excess = sum(widths) + gap * (len(widths) - 1) - opts.width
    for i in flex:
        if excess <= 0:
            break
        floor = max(min_flex, width_of(headers[i]))
        give = min(excess, max(0, widths[i] - floor))
        widths[i] -= give
        excess -= give
    last = len(headers) - 1

    def line(row: list[Cell]) -> str:
        parts = []
        for i, c in enumerate(row):
            text = cut(_flat(c.text), widths[i])
            if i != last or i in right:
                text = pad(text, widths[i], right=i in right)
            parts.append(colour(text, c.status, opts.color) if c.status else text)
        return (" " * gap).join(parts).rstrip()

    return [line([Cell(h) for h in headers]), *(line(r) for r in cells)]


def _flat(text: str) -> str:
    return " ".join(text.split()) if ("\n" in text or "\t" in text) else text


def ago(when: datetime | None, now: datetime) -> str:
    """'just now', '42 s ago', '2 min ago', '3 h ago', '5 days ago', or 'in 2 min' for the future."""
    if when is None:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = int((now - when).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        span = f"{seconds} s"
    elif seconds < 3600:
        span = f"{seconds // 60} min"
    elif seconds < 86400:
        span = f"{seconds // 3600} h"
    else:
        days = seconds // 86400
        span = f"{days} day" if days == 1 else f"{days} days"
    return f"in {span}" if future else f"{span} ago"


def clock(when: datetime | None) -> str:
    """An exact time in the local zone, to the second: '2024-05-01 14:03:07'."""
    if when is None:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is None:
        return "-"
    seconds = int(((end or now) - start).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
