"""Hour and day rollups folded from the minutes: never a change lost between a worker and a fold.

Workers write minutes and mark their hours; a fold, run by the workers'
housekeeping, rewrites the marked hours and days. History answers the same
before and after a fold, and a fold never runs beside a worker's transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from dashboard.aggregates import apply_batch, aware
from dashboard.db import create_db_engine, migrate, rollups, rollups_unfolded
from dashboard.folding import FOLD_LOCK_TIMEOUT_MS, fold, fold_marked, fold_statements, marks, unfolded_changes
from dashboard.history import StoredEvent
from dashboard.settings import Settings
from datasources.history import HistorySource
from tests.helpers import make_event

pytestmark = pytest.mark.timeout(60)  # a regression here waits on a lock: fail, do not hang

T0 = datetime(2026, 10, 6, 23, 40, tzinfo=UTC)  # two days, so that the day rows are folded twice
LIVE_SINCE = T0 + timedelta(days=7)  # history only: these tests read no live figures
# Attempts at two sites, in two hours of two days (23:00 and 01:00).
ATTEMPTS = [
    ("SEA1", T0 + timedelta(minutes=2)),
    ("SEA1", T0 + timedelta(minutes=3)),
    ("PDX1", T0 + timedelta(minutes=5)),
    ("SEA1", T0 + timedelta(minutes=10)),
    ("PDX1", T0 + timedelta(minutes=95)),
]


def attempt(index: int, site_id: str, moment: datetime) -> list[StoredEvent]:
    event = make_event(
        "delivery.attempted",
        event_id=f"a-{index}",
        time=moment,
        site_id=site_id,
        outcome="delivered",
        order_id=f"O{index}",
    )
    return [StoredEvent.from_entry(f"{1_700_000_000_000 + index}-0".encode(), {b"e": orjson.dumps(event)})]


def apply_each(engine: sa.Engine, attempts: list[tuple[str, datetime]], first: int = 0) -> None:
    for index, (site_id, moment) in enumerate(attempts, start=first):
        with engine.begin() as connection:
            apply_batch(connection, attempt(index, site_id, moment), LIVE_SINCE)


def attempts_in(engine: sa.Engine, site_id: str | None, start: datetime, end: datetime) -> float:
    return HistorySource(engine).metrics(site_id, start, end, end)["attempts"]


def stored_attempts(engine: sa.Engine, grain: str) -> dict[tuple[str, datetime], float]:
    query = sa.select(rollups.c.scope, rollups.c.bucket, rollups.c.value).where(
        rollups.c.grain == grain, rollups.c.field == "attempts"
    )
    with engine.connect() as connection:
        return {(scope, aware(bucket)): value for scope, bucket, value in connection.execute(query)}


def marked(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM rollups_unfolded")).scalar_one()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_db_engine(Settings(var_dir=tmp_path))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    return (
        request.getfixturevalue("runtime").engine
        if request.param == "postgresql"
        else request.getfixturevalue("sqlite_engine")
    )


QUERIES = [  # (site, start, end): whole days, whole hours, and minutes at the edges
    (None, T0.replace(hour=0, minute=0), T0.replace(hour=0, minute=0) + timedelta(days=2)),
    ("SEA1", T0.replace(hour=0, minute=0), T0.replace(hour=0, minute=0) + timedelta(days=2)),
    (None, T0.replace(minute=0), T0.replace(minute=0) + timedelta(hours=2)),
    ("PDX1", T0.replace(minute=0), T0.replace(minute=0) + timedelta(hours=3)),
    (None, T0 + timedelta(minutes=3), T0 + timedelta(minutes=96)),
]
ANSWERS = [5, 3, 4, 2, 4]


def test_history_answers_the_same_before_after_and_between_folds(engine):
    apply_each(engine, ATTEMPTS[:3])
    assert fold_marked(engine).hours == 2  # SEA1 and PDX1 at 23:00
    apply_each(engine, ATTEMPTS[3:], first=3)  # one more in a folded hour, one in a new hour and day
    assert marked(engine) == 2

    before = [attempts_in(engine, *query) for query in QUERIES]
    assert fold_marked(engine).hours == 2
    after = [attempts_in(engine, *query) for query in QUERIES]

    assert before == after == ANSWERS
    assert marked(engine) == 0
    hour, day = T0.replace(minute=0), T0.replace(hour=0, minute=0)
    assert stored_attempts(engine, "h") == {
        ("SEA1", hour): 3,
        ("PDX1", hour): 1,
        ("PDX1", hour + timedelta(hours=2)): 1,
        ("*", hour): 4,
        ("*", hour + timedelta(hours=2)): 1,
    }
    assert stored_attempts(engine, "d") == {
        ("SEA1", day): 3,
        ("PDX1", day): 1,
        ("PDX1", day + timedelta(days=1)): 1,
        ("*", day): 4,
        ("*", day + timedelta(days=1)): 1,
    }


def test_a_fold_takes_the_oldest_hours_first_chunk_by_chunk(engine):
    """A backfill's thousands of marks fold a chunk per transaction, the workers going on in between."""
    apply_each(engine, ATTEMPTS)
    hour = T0.replace(minute=0)

    with engine.begin() as connection:
        assert fold(connection, chunk=1) == (2, True)  # 23:00, both sites' marks; 01:00 waits
    assert marked(engine) == 1
    assert set(stored_attempts(engine, "h")) == {("SEA1", hour), ("PDX1", hour), ("*", hour)}
    assert [attempts_in(engine, *query) for query in QUERIES] == ANSWERS

    report = fold_marked(engine, chunk=1)

    assert (report.hours, report.chunks) == (1, 1)
    assert marked(engine) == 0
    assert stored_attempts(engine, "h")[("*", hour + timedelta(hours=2))] == 1
    assert [attempts_in(engine, *query) for query in QUERIES] == ANSWERS


def test_series_add_what_waits_for_its_fold(engine):
    apply_each(engine, ATTEMPTS[:3])
    fold_marked(engine)
    apply_each(engine, ATTEMPTS[3:], first=3)
    history = HistorySource(engine)
    start, end = T0.replace(minute=0), T0.replace(minute=0) + timedelta(hours=3)

    network = [bucket["attempts"] for bucket in history.series(None, start, end, "h", end)]
    per_site = {
        site: [b["attempts"] for b in buckets] for site, buckets in history.site_buckets(start, end, "h", end).items()
    }

    assert network == [4, 0, 1]
    assert per_site == {"SEA1": [3, 0, 0], "PDX1": [1, 0, 1]}


def test_a_fold_waits_for_the_workers_in_flight_then_gives_way(runtime, caplog):
    """A worker's transaction open past the fold's bound: the fold gives up, and the next one folds its change.

    Without the shared lock, the fold would read the minutes without the
    worker's change, then remove the hour's mark that the worker had found
    already there: the hour row would stay one attempt short for good.
    """
    engine = runtime.engine
    apply_each(engine, ATTEMPTS[:1])
    caplog.set_level(logging.INFO, logger="dashboard.folding")
    with engine.connect() as worker:
        worker.begin()
        apply_batch(worker, attempt(1, *ATTEMPTS[1]), LIVE_SINCE)  # the same hour, marked already

        started = time.monotonic()
        assert fold_marked(engine) is None
        waited = time.monotonic() - started
        worker.commit()

    assert FOLD_LOCK_TIMEOUT_MS / 1000 <= waited < FOLD_LOCK_TIMEOUT_MS / 1000 + 2
    assert [record.msg for record in caplog.records] == ["fold_postponed"]
    assert fold_marked(engine).hours == 1
    assert stored_attempts(engine, "h") == {("SEA1", T0.replace(minute=0)): 2, ("*", T0.replace(minute=0)): 2}


def test_workers_wait_behind_a_fold_and_are_not_lost(runtime):
    """A fold that waits for one worker holds the next back until it is done; the next one's hour stays marked."""
    engine = runtime.engine
    apply_each(engine, ATTEMPTS[:1])
    with engine.connect() as first:
        first.begin()
        apply_batch(first, attempt(1, *ATTEMPTS[1]), LIVE_SINCE)
        folding = threading.Thread(target=fold_marked, args=(engine,))
        folding.start()
        time.sleep(0.3)  # the fold now waits for the first worker
        second = threading.Thread(target=apply_each, args=(engine, ATTEMPTS[2:3], 2))
        second.start()
        time.sleep(0.3)
        assert second.is_alive()  # queued behind the fold
        first.commit()
    folding.join(10)
    second.join(10)

    assert stored_attempts(engine, "h") == {("SEA1", T0.replace(minute=0)): 2, ("*", T0.replace(minute=0)): 2}
    assert marked(engine) == 1  # PDX1's hour, for the next fold
    assert attempts_in(engine, *QUERIES[2]) == 3


def test_a_workers_housekeeping_folds_what_workers_marked(runtime):
    events = [
        make_event("delivery.attempted", event_id=f"h-{i}", time=moment, site_id=site_id, outcome="delivered")
        for i, (site_id, moment) in enumerate(ATTEMPTS)
    ]
    assert runtime.ingestor().submit(events).accepted == len(events)
    first = runtime.worker()
    while first.step():
        pass
    assert marked(runtime.engine) == 3  # its housekeeping ran at its first step, before the events

    runtime.worker().step()  # a worker's first step starts with housekeeping

    assert marked(runtime.engine) == 0
    assert sum(value for (scope, _), value in stored_attempts(runtime.engine, "d").items() if scope == "*") == 5


def _rollup_scans(plan: dict) -> Iterator[dict]:
    if plan.get("Relation Name") == "rollups" and plan["Node Type"].endswith("Scan"):
        yield plan
    for child in plan.get("Plans", []):
        yield from _rollup_scans(child)


def test_each_mark_probes_the_key_for_its_own_hours_however_stale_the_statistics(runtime):
    """Planned for the empty marks table ANALYZE last saw, a plain join read all a site's minutes once per mark."""
    engine = runtime.engine
    first = T0 - timedelta(days=2)
    minutes = [first + timedelta(minutes=n) for n in range(0, 2 * 24 * 60, 2)]
    with engine.begin() as connection:
        connection.execute(
            rollups.insert(),
            [{"scope": "SEA1", "grain": "m", "bucket": m, "field": f, "value": 1.0} for m in minutes for f in "abcde"],
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("ANALYZE rollups, rollups_unfolded"))  # no marks: the statistics say empty
    with engine.begin() as connection:
        connection.execute(rollups_unfolded.insert(), marks([("SEA1", first + timedelta(hours=h)) for h in (3, 9, 30)]))
        ranges = [(first, first + timedelta(days=2))]
        statements = [str(s) for s in fold_statements("postgresql") if str(s).startswith("INSERT")]
        statements += [
            str(select.compile(engine, compile_kwargs={"literal_binds": True}))
            for select in unfolded_changes("postgresql", "h", ranges, ["SEA1"])
        ]
        for statement in statements:
            explain = sa.text("EXPLAIN (FORMAT JSON) " + statement)
            plan = connection.execute(explain, {"through": first + timedelta(days=2)}).scalar_one()[0]["Plan"]
            scans = list(_rollup_scans(plan))
            assert scans, statement
            for scan in scans:
                assert "bucket" in scan.get("Index Cond", ""), (statement, scan)
