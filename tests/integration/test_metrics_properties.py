"""Metrics do not depend on arrival order or duplicates, live and history agree with the reference."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.db import metadata
from dashboard.metrics import reference_metrics
from dashboard.runtime import Runtime
from datasources.history import HistorySource
from datasources.live import LiveSource
from tests.helpers import network_day
from tests.metrics_assert import mismatches

NOW = datetime.now(UTC).replace(microsecond=0)
LOG = network_day(random.Random(7), NOW)
MINUTE = NOW.replace(second=0)
RANGES = [
    (MINUTE - timedelta(hours=24), MINUTE + timedelta(minutes=1)),  # the 24 h window
    (MINUTE - timedelta(hours=5, minutes=13), MINUTE - timedelta(hours=2, minutes=7)),  # cuts shifts and pairs
    (MINUTE - timedelta(minutes=15), MINUTE + timedelta(minutes=1)),
    (MINUTE + timedelta(hours=1), MINUTE + timedelta(hours=2)),  # empty
]


def fresh_runtime(settings, worker_batch: int) -> Runtime:  # type: ignore[no-untyped-def]
    update = {"key_prefix": f"prop-{uuid.uuid4().hex[:10]}", "worker_batch": worker_batch, "worker_block_ms": 1}
    runtime = Runtime.open(settings.model_copy(update=update))
    with runtime.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    return runtime


def answers(runtime: Runtime) -> list[dict]:
    live, history = LiveSource(runtime.redis, runtime.keys), HistorySource(runtime.engine)
    results = []
    for site in (None, "SEA1", "PDX2"):
        for start, end in RANGES:
            results.append(("history", site, start, history.metrics(site, start, end, NOW)))
            results.append(("live", site, start, live.metrics(site, start, end, NOW)))
    return results


def differences_from_the_reference(runtime: Runtime) -> list[str]:
    failures = []
    for source, site, start, got in answers(runtime):
        expected = reference_metrics(LOG, site, start, RANGES[[r[0] for r in RANGES].index(start)][1], NOW)
        failures += [f"{source} {site} {start:%H:%M}: {p}" for p in mismatches(expected, got)]
    return failures


def close(runtime: Runtime) -> None:
    for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}:*", count=1000):
        runtime.redis.delete(key)
    runtime.engine.dispose()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.randoms(use_true_random=False),
    duplicate_rate=st.floats(0, 0.6),
    batch=st.integers(1, 120),
    workers=st.integers(1, 3),
    worker_batch=st.integers(5, 200),
)
def test_any_order_with_any_duplicates_gives_the_reference_metrics(
    settings, order, duplicate_rate, batch, workers, worker_batch
):
    arrival = list(LOG) + [dict(event) for event in LOG if order.random() < duplicate_rate]
    order.shuffle(arrival)
    runtime = fresh_runtime(settings, worker_batch)
    try:
        ingestor = runtime.ingestor()
        for start in range(0, len(arrival), batch):
            ingestor.submit(arrival[start : start + batch])
        pool = [runtime.worker() for _ in range(workers)]
        for _ in range(500):  # workers take turns, each a batch at a time
            if (
                sum(worker.step() for worker in pool) == 0
                and runtime.redis.xpending(runtime.keys.stream, "ingest")["pending"] == 0
            ):
                break
        assert differences_from_the_reference(runtime) == []
    finally:
        close(runtime)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_workers_running_at_once_give_the_reference_metrics(settings, seed):  # type: ignore[no-untyped-def]
    """Three workers in threads commit at the same time: every pair is still made, once."""
    rng = random.Random(seed)
    arrival = list(LOG) + [dict(event) for event in LOG if rng.random() < 0.2]
    rng.shuffle(arrival)
    runtime = fresh_runtime(settings, worker_batch=15)
    try:
        ingestor = runtime.ingestor()
        for start in range(0, len(arrival), 200):
            ingestor.submit(arrival[start : start + 200])
        pool = [runtime.worker() for _ in range(3)]
        stop = threading.Event()

        def drain(worker) -> None:  # type: ignore[no-untyped-def]
            idle = 0
            while not stop.is_set() and idle < 20:
                idle = 0 if worker.step() else idle + 1

        threads = [threading.Thread(target=drain, args=(worker,)) for worker in pool]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        stop.set()
        assert runtime.redis.xpending(runtime.keys.stream, "ingest")["pending"] == 0
        for worker in pool:
            worker.flush_applied()
        assert differences_from_the_reference(runtime) == []
    finally:
        close(runtime)
