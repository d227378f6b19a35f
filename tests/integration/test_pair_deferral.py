"""A pair whose lock another worker holds is not waited for: it is settled after, exactly once.

Two workers holding the two halves of a pair (a departure from stop 1 and the
arrival at stop 2) race: the one that finds the pair's lock taken commits its
batch without the pair, then recomputes it under the lock once the other has
committed, before acknowledging. A batch redelivered after a crash between
those two transactions recomputes it too.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from dashboard.aggregates import apply_batch
from dashboard.history import StoredEvent
from dashboard.metrics import IDLE, sample_field
from dashboard.stream import backlog
from tests.helpers import make_event

pytestmark = pytest.mark.timeout(60)  # a regression here waits on a lock: fail, do not hang

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
LIVE_SINCE = T0 - timedelta(days=1)
# Another site for the departure: the two batches would otherwise also share
# that site's row, which every batch writes last and holds until its commit.
DEPARTURE = make_event("stop.departed", event_id="dep-1", time=T0, site_id="PDX2", route_id="R9", stop_seq=1)
ARRIVAL = make_event(
    "stop.arrived", event_id="arr-2", time=T0 + timedelta(minutes=15), route_id="R9", stop_seq=2, planned_drive_s=600
)
IDLE_S = 15 * 60 - 600


def stored(event: dict, entry: int) -> list[StoredEvent]:
    return [StoredEvent.from_entry(f"{1_700_000_000_000 + entry}-0".encode(), {b"e": orjson.dumps(event)})]


def idle_samples(engine: sa.Engine) -> list[float]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text("SELECT value FROM samples WHERE kind = :k"), {"k": IDLE}).scalars())


def idle_counted(engine: sa.Engine) -> float:
    """Return how many idle samples the site's minute rollups count."""
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT coalesce(sum(value), 0) FROM rollups WHERE scope = 'SEA1' AND grain = 'm' AND field = :f"),
            {"f": sample_field(IDLE, IDLE_S)},
        ).scalar_one()


def stored_ids(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(sa.text("SELECT id FROM events")).scalars())


def test_a_worker_commits_without_waiting_and_settles_the_pair_after_the_other(runtime):
    engine = runtime.engine
    with engine.connect() as other:
        other.begin()
        apply_batch(other, stored(DEPARTURE, 1), LIVE_SINCE)  # holds the gap's lock, not committed

        assert runtime.ingestor().submit([ARRIVAL]).accepted == 1
        worker = runtime.worker()
        done = threading.Thread(target=worker.step)
        done.start()
        deadline = time.monotonic() + 10
        while "arr-2" not in stored_ids(engine):  # committed while the other still holds the lock
            assert time.monotonic() < deadline, "the worker waited for the lock before committing its events"
            time.sleep(0.05)
        assert done.is_alive()  # and it waits to settle the pair
        assert idle_samples(engine) == []
        other.commit()
    done.join(10)

    assert not done.is_alive()
    assert idle_samples(engine) == [IDLE_S]
    assert idle_counted(engine) == 1
    assert backlog(runtime.redis, runtime.keys) == 0


def test_a_batch_redelivered_after_a_crash_between_the_transactions_settles_the_pair(runtime):
    engine = runtime.engine
    with engine.connect() as other:
        other.begin()
        apply_batch(other, stored(DEPARTURE, 1), LIVE_SINCE)
        with engine.begin() as connection:  # the first transaction of a worker that then dies
            _, deferred = apply_batch(connection, stored(ARRIVAL, 2), LIVE_SINCE)
        assert deferred
        other.commit()
    assert idle_samples(engine) == []  # each side saw only its own half

    for _ in range(2):  # redelivered, then once more: the second changes nothing
        with engine.begin() as connection:
            _, deferred = apply_batch(connection, stored(ARRIVAL, 2), LIVE_SINCE)
        assert not deferred

    assert idle_samples(engine) == [IDLE_S]
    assert idle_counted(engine) == 1
