"""No single message stops the farm: a stream given an entry with the largest id there is (after
which Redis refuses every ``XADD … *``) or one far in the future is replaced by the gateway within
seconds, while jobs run, and nothing committed is lost."""

from __future__ import annotations

import time

import pytest
import redis

from broker_contracts.codec import pack, unpack
from broker_contracts.keys import GATEWAY_GROUP, NODES_GROUP, Keys
from broker_contracts.streamids import MAX_PART, StreamId
from gateway.repair import HORIZON_MS, Target, repair
from tests.support.farm import Farm, Result, wait_for
from tests.support.wire import Wire, all_terminal, audit, job_statuses, query, submit, token_of

pytestmark = pytest.mark.timeout(240)

MAX_ID = f"{MAX_PART}-{MAX_PART}"
YEAR_MS = 365 * 24 * 3600 * 1000
SERVES_AGAIN_WITHIN = 10.0
SLACK = 10.0  # a loaded test machine: the deadline asserted is generous, the time taken is printed


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def stream_of(keys: Keys, which: str) -> str:
    return {"req": keys.requests, "events": keys.events, "work": keys.work("default")}[which]


def submitted(farm: Farm, config: str) -> Result | None:
    res = farm.rfarm(
        "submit",
        "after-poison",
        "--frames",
        "1-3",
        "--renderer",
        "sleep",
        "--param",
        "seconds=0.1",
        "--json",
        config=config,
        timeout=60,
    )
    return res if res.code == 0 else None


@pytest.mark.parametrize(
    ("which", "far"),
    [("req", False), ("events", False), ("work", False), ("req", True), ("events", True)],
    ids=["req-max", "events-max", "work-max", "req-year-ahead", "events-year-ahead"],
)
def test_a_poisoned_stream_is_replaced_while_jobs_run(farm: Farm, unique: str, which: str, far: bool) -> None:
    farm.start_node(f"sp-{unique}", "--slots", "2")
    name = farm.user(f"sp{unique}")
    wire = Wire(farm, token_of(farm, name))
    jobs = [submit(wire, f"before-{i}", "1-6", seconds="0.3") for i in range(3)]
    wait_for(
        lambda: query(farm.database_url, "SELECT 1 FROM tasks WHERE job_id = ANY(%s) AND status = 'running'", (jobs,)),
        timeout=60,
        what="a task to run",
    )
    r = farm.redis()
    stream = stream_of(farm.keys, which)
    poison = f"{redis_ms(r) + YEAR_MS}-0" if far else MAX_ID
    r.xadd(stream, {"m": b"poison"}, id=poison)
    poisoned_at = time.monotonic()

    # requests are answered again, the new job's work is dispatched and its reports applied
    res = wait_for(
        lambda: submitted(farm, name),
        timeout=SERVES_AGAIN_WITHIN + SLACK,
        interval=0.1,
        what="a request to be answered",
    )
    answered_after = time.monotonic() - poisoned_at
    print(f"{which} poisoned with {poison}: a new request answered after {answered_after:.1f} s")
    jobs.append(int(res.json()["id"]))
    wait_for(lambda: all_terminal(farm.database_url, jobs), timeout=90, interval=0.5, what="every job to end")
    assert set(job_statuses(farm.database_url, jobs).values()) == {"succeeded"}, job_statuses(farm.database_url, jobs)
    checked = audit(farm.database_url, jobs)
    assert not checked.illegal and not checked.duplicates and not checked.lost, checked

    # the stream's ids follow the Redis clock again, and the operator is told what was removed
    last = StreamId.parse(r.xinfo_stream(stream)["last-generated-id"])
    assert last.ms <= redis_ms(r) + HORIZON_MS, last
    logs = farm.logs()
    [line] = [x for x in logs.splitlines() if f"stream {stream} was poisoned" in x]
    assert "WARNING" in line and f"its last id {poison.split('-')[0]}-" in line, line
    if which != "req":  # answered requests are deleted: the forged one may be gone before the watchdog looks
        assert f"removed {poison} (dead-lettered)" in line, line


def test_the_repair_keeps_what_was_not_handled_and_dead_letters_the_jump(redis_url: str, prefix: str) -> None:
    """The repair on its own: unhandled requests come back with new ids, handled ones do not, the
    forged entry is dead-lettered and the old stream kept for the operator."""
    keys = Keys(prefix)
    r = redis.Redis.from_url(redis_url)
    r.xgroup_create(keys.requests, GATEWAY_GROUP, id="0", mkstream=True)
    for i in range(4):
        r.xadd(keys.requests, {"m": f"request-{i}".encode()})
    [(_, read)] = r.xreadgroup(GATEWAY_GROUP, "gw", {keys.requests: ">"}, count=2)
    r.xack(keys.requests, GATEWAY_GROUP, read[0][0])  # answered (and deleted, as the gateway does)
    r.xdel(keys.requests, read[0][0])  # read[1] is in flight, the others not read yet
    r.xadd(keys.requests, {"m": b"forged"}, id=MAX_ID)
    with pytest.raises(redis.ResponseError, match="exhausted"):
        r.xadd(keys.requests, {"m": b"refused"})

    done = repair(r, keys, Target(keys.requests, GATEWAY_GROUP), redis_ms(r))

    assert done is not None and done.removed == [MAX_ID] and done.added_again == 3, done
    again = [f[b"m"] for _, f in r.xrange(keys.requests)]
    assert again == [b"request-1", b"request-2", b"request-3"]
    assert r.xadd(keys.requests, {"m": b"after"})
    [(_, fresh)] = r.xreadgroup(GATEWAY_GROUP, "gw", {keys.requests: ">"})
    assert [f[b"m"] for _, f in fresh] == [b"request-1", b"request-2", b"request-3", b"after"]
    [(_, letter)] = r.xrange(keys.dead)
    record = unpack(letter[b"m"])
    assert record["source"] == keys.requests and record["id"] == MAX_ID and letter[b"payload"] == b"forged"
    assert r.xlen(keys.poisoned(keys.requests)) == 4 and r.ttl(keys.poisoned(keys.requests)) > 0
    assert repair(r, keys, Target(keys.requests, GATEWAY_GROUP), redis_ms(r)) is None  # healthy now


def test_entries_added_after_a_jump_into_the_future_are_kept(redis_url: str, prefix: str) -> None:
    keys = Keys(prefix)
    r = redis.Redis.from_url(redis_url)
    r.xgroup_create(keys.events, "ledger", id="0", mkstream=True)
    ahead = redis_ms(r) + YEAR_MS
    r.xadd(keys.events, {"m": b"forged"}, id=f"{ahead}-0")
    for i in range(3):  # the nodes go on reporting: `*` now makes ids in that future
        assert StreamId.parse(r.xadd(keys.events, {"m": f"report-{i}".encode()})).ms == ahead
    done = repair(r, keys, Target(keys.events, "ledger"), redis_ms(r))
    assert done is not None and done.removed == [f"{ahead}-0"] and done.added_again == 3, done
    kept = r.xrange(keys.events)
    assert [f[b"m"] for _, f in kept] == [b"report-0", b"report-1", b"report-2"]
    assert all(StreamId.parse(i).ms < ahead - HORIZON_MS for i, _ in kept)


def test_a_poisoned_dead_letter_stream_is_kept_aside_and_starts_again(redis_url: str, prefix: str) -> None:
    keys = Keys(prefix)
    r = redis.Redis.from_url(redis_url)
    r.xadd(keys.dead, {"m": b"an old dead letter"})
    r.xadd(keys.dead, {"m": b"forged"}, id=MAX_ID)
    done = repair(r, keys, Target(keys.dead, None), redis_ms(r))
    assert done is not None and done.removed == [MAX_ID]
    assert [unpack(f[b"m"])["id"] for _, f in r.xrange(keys.dead)] == [MAX_ID]
    assert [f[b"m"] for _, f in r.xrange(keys.poisoned(keys.dead))] == [b"an old dead letter", b"forged"]


def test_work_no_node_has_read_goes_back_to_the_backlog_and_claimed_work_stays(redis_url: str, prefix: str) -> None:
    keys = Keys(prefix)
    work = keys.work("default")
    r = redis.Redis.from_url(redis_url)
    r.xgroup_create(work, NODES_GROUP, id="0", mkstream=True)
    for task_id in (11, 12, 13):
        r.xadd(work, {"m": pack({"task_id": task_id})})
    r.xreadgroup(NODES_GROUP, "node-1", {work: ">"}, count=1)  # task 11 is being rendered
    r.xadd(work, {"m": pack({"task_id": 99})}, id=MAX_ID)
    done = repair(r, keys, Target(work, NODES_GROUP, copy=False), redis_ms(r))
    assert done is not None and done.removed == [MAX_ID], done
    assert done.undelivered_tasks == [12, 13] and done.added_again == 0, done
    assert r.xlen(work) == 0 and r.xinfo_groups(work)[0]["name"] == NODES_GROUP.encode()
