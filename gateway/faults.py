"""Fault-injection points for tests, all behind one hook: RFARM_FAULT_POINT names the one to trip.

- ``before_commit``: exit 87 with a request's effect not yet committed (inside its transaction,
  or before a one-statement write);
- ``after_commit``: exit 86 with a batch's effects committed but neither replied to nor acked;
- ``poison:MARK``: exit 88 on any request whose bytes carry MARK, every time it is delivered
  (a handler that always crashes).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("rfarm.gateway")

EXIT_CODES = {"after_commit": 86, "before_commit": 87, "poison": 88}


def trip(fault: str | None, point: str, payload: bytes | None = None) -> None:
    """Exit the process at ``point`` if ``fault`` (the gateway's RFARM_FAULT_POINT) names it."""
    if not fault:
        return
    name, _, mark = fault.partition(":")
    if name != point:
        return
    if point == "poison" and not (payload and mark and mark.encode() in payload):
        return
    log.error("fault point %s: exiting", point)
    os._exit(EXIT_CODES[point])
