"""PostgreSQL down for 30 s: ingest goes on, the backlog grows, then drains; nothing dead-lettered."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dashboard.runtime import Runtime
from dashboard.settings import Settings
from dashboard.stream import backlog
from tests.faults.conftest import AppProcesses, PrivatePostgres, app_env
from tests.faults.support import (
    count_rows,
    key_of,
    numbered_event,
    pending_total,
    pipeline_stats,
    stored_events,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

OUTAGE_S = 30.0
BATCH = 50
PACE_S = 0.1
WORKERS = 2


class Producer(threading.Thread):
    """Submits batches of new events through the accept path until stopped."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(name="producer", daemon=True)
        self._ingestor = runtime.ingestor()
        self.stop = threading.Event()
        self.accepted: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            number = 0
            while not self.stop.is_set():
                batch = [numbered_event(n, source="/sites/SEA2/wms") for n in range(number, number + BATCH)]
                result = self._ingestor.submit(batch)
                assert (result.accepted, result.duplicates, result.rejected) == (BATCH, 0, []), result
                self.accepted.extend(batch)
                number += BATCH
                self.stop.wait(PACE_S)
        except BaseException as error:  # reported by the test
            self.error = error


@pytest.fixture
def runtime(machine_redis: str, private_postgres: PrivatePostgres, key_prefix: str) -> Iterator[Runtime]:
    settings = Settings(redis_url=machine_redis, database_url=private_postgres.url, key_prefix=key_prefix)
    rt = Runtime.open(settings)
    try:
        yield rt
    finally:
        rt.redis.close()
        rt.engine.dispose()


def test_database_outage_is_waited_out(
    machine_redis: str,
    private_postgres: PrivatePostgres,
    key_prefix: str,
    runtime: Runtime,
    app_processes: AppProcesses,
) -> None:
    env = app_env(machine_redis, private_postgres.url, key_prefix)
    app_processes.migrate(env)
    workers = [app_processes.start(env, "ingest") for _ in range(WORKERS)]
    for worker in workers:
        worker.wait_for_log("worker_started")

    def stats() -> dict[str, int]:
        return pipeline_stats(runtime.redis, runtime.keys)

    producer = Producer(runtime)
    producer.start()
    try:
        wait_until(lambda: stats()["processed"] >= 1000, 30, "1,000 events stored before the outage")

        private_postgres.stop("fast")
        stopped_at = time.monotonic()
        time.sleep(1.0)  # acknowledgements of batches committed just before the stop land
        before = stats()
        backlogs = [backlog(runtime.redis, runtime.keys)]
        while time.monotonic() < stopped_at + OUTAGE_S:
            time.sleep(1.0)
            backlogs.append(backlog(runtime.redis, runtime.keys))
            assert all(worker.alive() for worker in workers), "a worker died during the outage"
        during = stats()

        # Nothing can be stored while the database is down: accepted events pile up.
        assert during["processed"] == before["processed"]
        assert during["accepted"] - before["accepted"] >= 0.5 * (OUTAGE_S - 1) / PACE_S * BATCH
        assert backlogs == sorted(backlogs) and backlogs[-1] > backlogs[0]
        assert backlogs[-1] == backlogs[0] + during["accepted"] - before["accepted"]
        assert during["dead"] == 0

        private_postgres.start()
        restarted_at = time.monotonic()
        time.sleep(2.0)  # posting goes on while the workers catch up
    finally:
        producer.stop.set()
        producer.join(timeout=30)
    assert not producer.is_alive(), "the producer did not stop within 30 s"
    assert producer.error is None, f"submitting failed: {producer.error!r}"

    wait_until(lambda: backlog(runtime.redis, runtime.keys) == 0, 45, "the backlog to drain", interval_s=0.25)
    assert time.monotonic() - restarted_at < 45

    stored = stored_events(private_postgres.url)
    assert set(stored) == {key_of(event) for event in producer.accepted}
    assert count_rows(private_postgres.url) == len(producer.accepted)
    final = stats()
    assert final["accepted"] == final["processed"] == len(producer.accepted)
    assert final["dead"] == 0
    assert runtime.redis.xlen(runtime.keys.dead) == 0
    assert pending_total(runtime.redis, runtime.keys) == 0
    assert all(worker.alive() for worker in workers)
    logs = [worker.log_text() for worker in workers]
    assert all('"store":"database"' in log for log in logs), "every worker should have waited the outage out"
    assert not any("Traceback" in log or "entry_failed" in log for log in logs)
