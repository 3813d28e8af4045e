"""Telling the user a job of theirs ended: a line, the terminal bell and a desktop notification
through the terminal (OSC 9, which iTerm2, kitty, WezTerm and Windows Terminal show; OSC 777,
which VTE terminals and urxvt show). Inside tmux the escapes are passed through to the terminal
outside it.

Off with ``RFARM_NOTIFY=off`` (or 0, no, false) in the environment, or ``--no-notify`` on `watch`
and `wait`. Only a terminal gets the bell and the escapes; a pipe gets the line alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

from broker_contracts.text import is_unsafe

OFF = {"0", "off", "no", "false"}
ENDS = ("succeeded", "failed", "cancelled")


def enabled(environ: Mapping[str, str] | None = None, *, option_off: bool = False) -> bool:
    env = os.environ if environ is None else environ
    return not option_off and env.get("RFARM_NOTIFY", "on").strip().lower() not in OFF


def message(job_id: int, name: str, status: str) -> str:
    return f"job {job_id} {name} {status}"


def _plain(text: str) -> str:
    """Text fit inside an escape sequence: no control character (a name could end the sequence)."""
    return "".join("?" if is_unsafe(c) or c == ";" else c for c in text)[:200]


def escapes(text: str, *, tmux: bool) -> str:
    """The bell and both desktop notifications for ``text``."""
    body = _plain(text)
    seq = f"\x1b]9;rfarm: {body}\x1b\\" + f"\x1b]777;notify;rfarm;{body}\x1b\\"
    if tmux:  # tmux passes a sequence on to the outer terminal inside its DCS, ESCs doubled
        seq = "".join(f"\x1bPtmux;{part.replace(chr(27), chr(27) * 2)}\x1b\\" for part in _split(seq))
    return "\a" + seq


def _split(seq: str) -> list[str]:
    parts = seq.split("\x1b\\")
    return [part + "\x1b\\" for part in parts if part]


def tell(out: TextIO, job_id: int, name: str, status: str, *, line: bool = True) -> None:
    """The line (when ``line``), then, on a terminal, the bell and the notifications."""
    text = message(job_id, name, status)
    if line:
        out.write(f"{text}\n")
    if hasattr(out, "isatty") and out.isatty() and os.environ.get("TERM") != "dumb":
        out.write(escapes(text, tmux=bool(os.environ.get("TMUX"))))
    out.flush()
