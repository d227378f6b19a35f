"""The ingest worker on real Redis and PostgreSQL: exactly once, reclaim, outages, trimming."""

from __future__ import annotations

import time

import orjson
import sqlalchemy as sa

from dashboard.runtime import Runtime
from dashboard.settings import Settings
from dashboard.stream import GROUP, backlog, ensure_group
from dashboard.worker import IngestWorker
from tests.conftest import count_events
from tests.helpers import make_event


def submit(runtime: Runtime, count: int, prefix: str = "e") -> None:
    result = runtime.ingestor().submit([make_event(event_id=f"{prefix}{i}") for i in range(count)])
    assert result.accepted == count


def read_without_ack(runtime: Runtime, consumer: str, count: int):  # type: ignore[no-untyped-def]
    ensure_group(runtime.redis, runtime.keys)
    reply = runtime.redis.xreadgroup(GROUP, consumer, {runtime.keys.stream: ">"}, count=count)
    return reply[0][1]


def test_redelivered_entries_are_stored_and_counted_once(runtime):
    submit(runtime, 10)
    entries = read_without_ack(runtime, "crashed-before-ack", 10)
    worker = runtime.worker()
    # The first delivery committed but "crashed" before its ack: process it twice.
    assert worker.process(entries) == 10
    assert worker.process(entries) == 0
    assert count_events(runtime.engine) == 10
    assert int(runtime.redis.hget(runtime.keys.stats, "processed")) == 10
    assert backlog(runtime.redis, runtime.keys) == 0


def test_entries_of_a_dead_worker_are_reclaimed_after_the_idle_time(runtime):
    submit(runtime, 5)
    read_without_ack(runtime, "dead-worker", 5)
    worker = runtime.worker()
    assert worker.step() == 0  # not idle long enough yet: nothing new, nothing claimed
    time.sleep(runtime.settings.claim_idle_ms / 1000 + 0.1)
    worker._next_claim = 0.0  # the claim timer would fire within claim_idle_ms / 2 anyway
    assert worker.step() == 5
    assert count_events(runtime.engine) == 5
    assert runtime.redis.xpending(runtime.keys.stream, GROUP)["pending"] == 0


def test_database_outage_never_counts_against_an_event(runtime):
    submit(runtime, 3)
    down = Runtime.open(
        Settings(
            redis_url=runtime.settings.redis_url,
            database_url="postgresql://postgres@127.0.0.1:1/none",
            key_prefix=runtime.keys.prefix,
        )
    )
    worker = down.worker()
    for _ in range(7):  # more than max_tries
        try:
            worker.step()
        except sa.exc.OperationalError:
            pass
        else:
            raise AssertionError("a worker without its database must not succeed")
    assert runtime.redis.hlen(runtime.keys.failures) == 0
    assert runtime.redis.xlen(runtime.keys.dead) == 0
    assert backlog(runtime.redis, runtime.keys) == 3
    # The same consumer name, its database back, picks up its own pending entries.
    healthy = IngestWorker(runtime.redis, runtime.engine, runtime.keys, name=worker.name, block_ms=10)
    assert healthy.step() == 3
    assert count_events(runtime.engine) == 3


def test_worker_run_survives_an_outage_and_stops_on_request(runtime):
    import threading

    submit(runtime, 4)
    stop = threading.Event()
    thread = threading.Thread(target=runtime.worker().run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while backlog(runtime.redis, runtime.keys) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert count_events(runtime.engine) == 4


def test_housekeeping_trims_only_what_every_group_has_acknowledged(runtime):
    settings = runtime.settings.model_copy(update={"stream_retention_s": 0})
    rt = Runtime(settings, runtime.redis, runtime.engine, runtime.keys)
    submit(rt, 20, "a")
    worker = rt.worker()
    assert worker.step() == 20
    submit(rt, 5, "b")
    read_without_ack(rt, "slow-worker", 5)  # pending: must survive the trim
    runtime.redis.xgroup_create(rt.keys.stream, "other-system", id="$")  # reads only what comes next
    submit(rt, 3, "c")  # undelivered to both groups: must survive too
    worker._housekeeping()
    remaining = [fields[b"e"] for _, fields in runtime.redis.xrange(rt.keys.stream)]
    assert {orjson.loads(e)["id"] for e in remaining} == {f"b{i}" for i in range(5)} | {f"c{i}" for i in range(3)}


def test_every_accepted_value_reaches_history_unchanged(runtime):
    # Values a COPY could mangle: tabs, newlines and backslashes (text format
    # escapes), non-ASCII text, and a stop number past the 4-byte column.
    odd = "tab\there, line\nbreak, back\\slash, \u00e9\u4e2d\U0001f69a"
    events = [
        make_event("stop.arrived", event_id="big-stop", stop_seq=2**40, route_id="R\t1"),
        make_event("order.canceled", event_id=odd, source=f"/sites/SEA1/{odd}", reason=odd),
        make_event("stop.departed", event_id="max-stop", stop_seq=2**31 - 1),
    ]
    assert runtime.ingestor().submit(events).accepted == 3
    assert runtime.worker().step() == 3

    with runtime.engine.connect() as connection:
        rows = {row.id: row for row in connection.execute(sa.text("SELECT * FROM events")).all()}
    assert set(rows) == {"big-stop", odd, "max-stop"}
    assert rows["big-stop"].stop_seq is None  # kept in the payload; the column cannot hold it
    assert rows["big-stop"].payload["data"]["stop_seq"] == 2**40
    assert rows["big-stop"].route_id == "R\t1"
    assert rows["max-stop"].stop_seq == 2**31 - 1
    assert (rows[odd].source, rows[odd].payload["data"]["reason"]) == (f"/sites/SEA1/{odd}", odd)
    assert runtime.redis.xlen(runtime.keys.dead) == 0
    assert backlog(runtime.redis, runtime.keys) == 0


def test_a_pair_in_one_batch_is_found_as_a_lookup_would_find_it(runtime):
    """The batch's own events are paired from memory, not read back: exactly what a lookup would find.

    A gap whose stop numbers the column cannot hold is missed by the lookup
    when its halves come in two batches, so it must be missed in one batch too.
    """
    t0 = "2026-10-06T10:00:00Z"
    events = [
        make_event("stop.departed", event_id="dep-1", route_id="R1", stop_seq=1, time=t0),
        make_event(
            "stop.arrived", event_id="arr-2", route_id="R1", stop_seq=2, planned_drive_s=600, time=t0[:14] + "15:00Z"
        ),
        make_event("stop.departed", event_id="dep-big", route_id="R2", stop_seq=2**40, time=t0),
        make_event(
            "stop.arrived",
            event_id="arr-big",
            route_id="R2",
            stop_seq=2**40 + 1,
            planned_drive_s=60,
            time=t0[:14] + "05:00Z",
        ),
    ]
    assert runtime.ingestor().submit(events).accepted == 4
    assert runtime.worker().step() == 4

    with runtime.engine.connect() as connection:
        samples = connection.execute(sa.text("SELECT id, value FROM samples WHERE kind = 'idle'")).all()
    assert [tuple(row) for row in samples] == [("arr-2", 15 * 60 - 600)]


def test_a_batch_past_luas_unpack_limit_is_acknowledged_whole(runtime):
    # Lua's unpack() refuses about 8,000 values: the ack script must not hand it a whole batch.
    count = 9000
    for first in range(0, count, 1000):
        submit(runtime, 1000, f"big{first}-")
    settings = runtime.settings.model_copy(update={"worker_batch": count})
    worker = Runtime(settings, runtime.redis, runtime.engine, runtime.keys).worker()
    assert worker.step() == count
    assert count_events(runtime.engine) == count
    assert runtime.redis.xpending(runtime.keys.stream, GROUP)["pending"] == 0
    assert backlog(runtime.redis, runtime.keys) == 0
