"""Stream ids, Redis's refusal of a stream whose ids ran out, and which ids a repair takes as forged."""

from __future__ import annotations

import pytest

from broker_contracts.streamids import MAX_PART, StreamId, refused_for_its_ids
from gateway.repair import forged


def test_ids_parse_as_redis_prints_them_and_nothing_else() -> None:
    assert StreamId.parse(b"1700000000000-3") == StreamId(1700000000000, 3)
    assert str(StreamId.parse(f"{MAX_PART}-{MAX_PART}")) == f"{MAX_PART}-{MAX_PART}"
    for bad in ("", "5", "5-", "-5", "5-x", "5-5\n", "５-0", f"{MAX_PART + 1}-0", "+", "$"):
        with pytest.raises(ValueError):
            StreamId.parse(bad)


def test_the_refusals_of_a_poisoned_stream_are_told_apart_from_other_errors() -> None:
    assert refused_for_its_ids("ERR The stream has exhausted the last possible ID, unable to add more items")
    assert refused_for_its_ids(
        "Command # 1 (XADD rf:events MAXLEN ~ 100000 * m ...) of pipeline caused error: The stream has exhausted "
        "the last possible ID, unable to add more items"
    )
    assert refused_for_its_ids("ERR The ID specified in XADD is equal or smaller than the target stream top item")
    assert not refused_for_its_ids("NOGROUP No such key 'rf:work:default' or consumer group 'nodes'")
    assert not refused_for_its_ids("OOM command not allowed when used memory > 'maxmemory'.")


HORIZON = 1_000


def test_the_jump_is_forged_and_what_star_made_after_it_is_not() -> None:
    ids = [StreamId(900, 0), StreamId(5_000, 7), StreamId(5_000, 8), StreamId(5_000, 9)]
    assert forged(ids, HORIZON, StreamId(0, 0)) == [StreamId(5_000, 7)]


def test_every_jump_to_a_new_millisecond_beyond_the_horizon_is_forged() -> None:
    ids = [StreamId(5_000, 0), StreamId(5_000, 1), StreamId(MAX_PART, MAX_PART), StreamId(7_000, 3)]
    assert forged(ids, HORIZON, StreamId(0, 0)) == [
        StreamId(5_000, 0),
        StreamId(7_000, 3),
        StreamId(MAX_PART, MAX_PART),
    ]


def test_ids_within_the_horizon_are_never_forged() -> None:
    assert forged([StreamId(1, 0), StreamId(999, 5), StreamId(1_000, 0)], HORIZON, StreamId(0, 0)) == []


def test_a_run_whose_first_entry_was_deleted_is_taken_as_made_by_star() -> None:
    """Answered requests are deleted: the jump may be gone, its successors are genuine."""
    ids = [StreamId(5_000, 4), StreamId(5_000, 6)]
    assert forged(ids, HORIZON, StreamId(5_000, 5)) == []
    assert forged(ids, HORIZON, StreamId(4_000, 0)) == [StreamId(5_000, 4)]
