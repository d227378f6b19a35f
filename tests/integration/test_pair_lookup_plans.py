"""The worker's partner lookups stay index probes, even as prepared statements.

psycopg prepares a statement once it has run a few times, and PostgreSQL may
then plan it once for all parameters (a generic plan). A lookup whose event
types are bound parameters cannot use the partial pair indexes in such a plan:
it intersected each key's index with a whole-table index on the type instead,
reading every event of those types for each key, and took most of
PostgreSQL's time at 100,000 events. This test forces generic plans and reads
them back through ``auto_explain``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from dashboard.aggregates import apply_batch
from dashboard.history import StoredEvent
from dashboard.simulator import Config, simulate
from datasources.history import mode_changes_query, order_trail
from tests.helpers import ListSink

# A fixed afternoon: its last hours hold every kind of pair (trucks, stops,
# packing, shifts), whatever the time the test runs.
END = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
PAIR_INDEXES = {"events_order", "events_route", "events_worker"}


def stored(events: list[dict], first: int) -> list[StoredEvent]:
    return [
        StoredEvent.from_entry(f"{1_700_000_000_000 + first + n}-0".encode(), {b"e": orjson.dumps(event)})
        for n, event in enumerate(events)
    ]


@pytest.fixture
def history(runtime) -> tuple[sa.Engine, list[dict]]:  # type: ignore[no-untyped-def]
    """A few sites' half day in history, analyzed; return the engine and the events still to come."""
    sink = ListSink()
    simulate(Config(sites=3, seed=11, history_days=0.5), sink, end=END)
    split = len(sink.events) * 9 // 10
    old, new = sink.events[:split], sink.events[split:]
    for start in range(0, len(old), 1000):
        with runtime.engine.begin() as connection:
            apply_batch(connection, stored(old[start : start + 1000], start), END - timedelta(days=1))
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("ANALYZE events"))
    return runtime.engine, new


@contextmanager
def explained(engine: sa.Engine) -> Iterator[tuple[sa.Connection, list[str]]]:
    """Yield a connection whose every statement is prepared, planned generically and explained into the list."""
    plans: list[str] = []
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        driver.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        driver.prepare_threshold = 0  # prepare every statement, as psycopg does with frequent ones
        for statement in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_level = 'notice'",
            "SET plan_cache_mode = 'force_generic_plan'",
        ):
            connection.exec_driver_sql(statement)
        connection.commit()  # a committed SET lasts for the session
        yield connection, plans


def test_partner_lookups_use_the_pair_indexes_under_generic_plans(history) -> None:  # type: ignore[no-untyped-def]
    engine, new = history
    with explained(engine) as (connection, plans):
        for start in range(0, len(new), 500):
            with connection.begin():
                apply_batch(connection, stored(new[start : start + 500], 10**6 + start), END - timedelta(days=1))

    lookups = [plan for plan in plans if "FROM events JOIN (SELECT" in plan]
    probed = {index for index in PAIR_INDEXES for plan in lookups if re.search(rf"(using|on) {index}\b", plan)}
    assert probed == PAIR_INDEXES, plans[:5]  # orders, routes and shifts were all looked up
    for plan in lookups:
        # Each key probes its own index (a plain or a bitmap index scan, as the
        # statistics decide), never a scan of the table or of a type's events.
        assert "Seq Scan on events" not in plan, plan
        assert "BitmapAnd" not in plan, plan
        assert re.search(rf"(Index Scan using|Bitmap Index Scan on) ({'|'.join(PAIR_INDEXES)})\b", plan), plan
        assert re.search(r"Index Cond: .*= \(k\.k ->> \d\)", plan), plan  # probed by the key


def test_trail_and_mode_marks_read_their_indexes_under_generic_plans(history) -> None:  # type: ignore[no-untyped-def]
    engine, _ = history
    with engine.connect() as connection:
        order_id = connection.execute(
            sa.text("SELECT order_id FROM events WHERE type = 'order.loaded' ORDER BY time LIMIT 1")
        ).scalar_one()
    with explained(engine) as (connection, plans):
        trail = order_trail(connection, order_id)
        modes = connection.execute(mode_changes_query(END - timedelta(days=1), END, "SIM1")).all()

    assert trail is not None and {row["of"] for row in trail} == {"order", "route"}
    assert modes == []  # no mode changed in this history; the plan is what this test reads
    reads = [plan for plan in plans if "FROM events" in plan]
    assert len(reads) == 3, plans
    for plan in reads:
        assert "Seq Scan on events" not in plan, plan
    for plan, index in zip(reads, ("events_order", "events_route", "events_mode_changes"), strict=True):
        assert re.search(rf"(Index Scan using|Bitmap Index Scan on) {index}\b", plan), plan
