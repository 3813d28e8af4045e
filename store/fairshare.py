"""The order in which ready tasks get free slots: priority first, then users in turn (balanced by
the slots each user holds now, weighted by the operator's shares), then job age; and never more
tasks holding a limit than the limit leaves room for. Pure: store/dispatch.py feeds it rows."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    """A ready task as the dispatcher's scan found it (each user's best first)."""

    id: int
    owner: int
    priority: int
    job_id: int
    seq: int
    limits: tuple[str, ...] = ()


@dataclass
class _Lane:
    """One user's ready tasks of one priority, in job age order."""

    owner: int
    rows: list[Candidate] = field(default_factory=list)
    next: int = 0


def deal(
    candidates: Iterable[Candidate],
    held: Mapping[int, int],
    weights: Mapping[int, float],
    room: Mapping[str, int],
    want: int,
) -> list[Candidate]:
    """Up to ``want`` candidates in the order they should be dispatched.

    ``held``: the slots each user holds now (running or dispatched tasks); ``weights``: a user's
    share (default 1); ``room``: how many more tasks each limit admits (a limit not named here caps
    nothing). Within one priority the next task goes to the user whose (held + given) / weight is
    least, ties to the older job; a task whose limit has no room is passed over, not waited for.
    """
    by_priority: dict[int, dict[int, _Lane]] = {}
    for c in candidates:
        lanes = by_priority.setdefault(c.priority, {})
        lanes.setdefault(c.owner, _Lane(c.owner)).rows.append(c)
    given: dict[int, int] = {}
    left = dict(room)
    out: list[Candidate] = []
    for priority in sorted(by_priority, reverse=True):
        heap: list[tuple[float, int, int, int]] = []
        lanes = by_priority[priority]
        for lane in lanes.values():
            lane.rows.sort(key=lambda c: (c.job_id, c.seq))
            _push(heap, lane, held, weights, given, left)
        while heap and len(out) < want:
            _, _, _, owner = heapq.heappop(heap)
            lane = lanes[owner]
            c = lane.rows[lane.next]
            if not fits(c.limits, left):  # another lane's task took the limit's last room since
                _push(heap, lane, held, weights, given, left)
                continue
            lane.next += 1
            out.append(c)
            given[owner] = given.get(owner, 0) + 1
            for name in c.limits:
                if name in left:
                    left[name] -= 1
            _push(heap, lane, held, weights, given, left)
        if len(out) >= want:
            break
    return out


def _push(
    heap: list[tuple[float, int, int, int]],
    lane: _Lane,
    held: Mapping[int, int],
    weights: Mapping[int, float],
    given: Mapping[int, int],
    left: Mapping[str, int],
) -> None:
    """Put the lane's next task that fits under its limits on the heap (if it has one)."""
    while lane.next < len(lane.rows) and not fits(lane.rows[lane.next].limits, left):
        lane.next += 1
    if lane.next < len(lane.rows):
        c = lane.rows[lane.next]
        load = (held.get(lane.owner, 0) + given.get(lane.owner, 0) + 1) / weights.get(lane.owner, 1.0)
        heapq.heappush(heap, (load, c.job_id, c.seq, lane.owner))


def fits(limits: Sequence[str], left: Mapping[str, int]) -> bool:
    return all(left.get(name, 1) > 0 for name in limits)
