"""Exactly once under crashes: ingest workers SIGKILLed mid-batch lose and double nothing."""

from __future__ import annotations

import copy
import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dashboard.runtime import Runtime
from dashboard.settings import Settings
from dashboard.stream import backlog
from tests.faults.conftest import AppProcess, AppProcesses, app_env
from tests.faults.support import (
    count_rows,
    key_of,
    numbered_event,
    pending_of_process,
    pending_total,
    pipeline_stats,
    stored_events,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

UNIQUE = 18_000
DUPLICATES = 2_000
SUBMIT_BATCH = 500
WORKERS = 3
KILLS = 5
PRODUCE_FOR_S = 8.0


def build_events(seed: int = 20261203) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (the unique events, the submission order with 10% repeated keys).

    Each id appears under two sources (two events, contract section 1). Every
    repeat comes after its first occurrence, half of them with other content.
    """
    rng = random.Random(seed)
    originals = [numbered_event(n // 2, source=f"/sites/SEA{n % 2}/wms") for n in range(UNIQUE)]
    later: dict[int, list[dict[str, Any]]] = {}
    for count, index in enumerate(rng.sample(range(UNIQUE - 600), DUPLICATES)):
        repeat = copy.deepcopy(originals[index])
        if count % 2:
            repeat["data"]["worker_id"] = "W-LATE"
            repeat["time"] = "2026-10-06T11:59:59Z"
        # Offsets up to 600 put some repeats in the same batch, some in later ones.
        later.setdefault(index + rng.randint(0, 600), []).append(repeat)
    order: list[dict[str, Any]] = []
    for index, event in enumerate(originals):
        order.append(event)
        order.extend(later.get(index, []))
    assert len(order) == UNIQUE + DUPLICATES
    return originals, order


class Producer(threading.Thread):
    """Submits the events through the real accept path, paced over PRODUCE_FOR_S."""

    def __init__(self, runtime: Runtime, events: list[dict[str, Any]]) -> None:
        super().__init__(name="producer", daemon=True)
        self._ingestor = runtime.ingestor()
        self._batches = [events[i : i + SUBMIT_BATCH] for i in range(0, len(events), SUBMIT_BATCH)]
        self.accepted = 0
        self.duplicates = 0
        self.rejected: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            pace = PRODUCE_FOR_S / len(self._batches)
            start = time.monotonic()
            for number, batch in enumerate(self._batches):
                result = self._ingestor.submit(batch)
                self.accepted += result.accepted
                self.duplicates += result.duplicates
                self.rejected.extend(result.rejected)
                time.sleep(max(0.0, start + (number + 1) * pace - time.monotonic()))
        except BaseException as error:  # reported by the test
            self.error = error


@pytest.fixture
def runtime(machine_redis: str, shared_database: str, key_prefix: str) -> Iterator[Runtime]:
    rt = Runtime.open(Settings(redis_url=machine_redis, database_url=shared_database, key_prefix=key_prefix))
    try:
        yield rt
    finally:
        rt.redis.close()
        rt.engine.dispose()


def kill_mid_batch(runtime: Runtime, workers: list[AppProcess], wait_s: float = 2.0) -> tuple[int, int]:
    """SIGKILL a worker as soon as one holds entries; return (its slot, how many it left pending).

    When no worker holds entries within ``wait_s``, the first one is killed anyway.
    """
    deadline = time.monotonic() + wait_s
    slot = 0
    while time.monotonic() < deadline:
        holding = [i for i, w in enumerate(workers) if pending_of_process(runtime.redis, runtime.keys, w.pid) > 0]
        if holding:
            slot = holding[0]
            break
        time.sleep(0.002)
    victim = workers[slot]
    victim.kill(signal.SIGKILL)
    assert victim.process.returncode == -signal.SIGKILL
    return slot, pending_of_process(runtime.redis, runtime.keys, victim.pid)


def test_killed_workers_lose_and_double_nothing(
    machine_redis: str, shared_database: str, key_prefix: str, runtime: Runtime, app_processes: AppProcesses
) -> None:
    env = app_env(machine_redis, shared_database, key_prefix, worker_batch=200)
    app_processes.migrate(env)
    workers = [app_processes.start(env, "ingest") for _ in range(WORKERS)]
    for worker in workers:
        worker.wait_for_log("worker_started")
    originals, order = build_events()

    producer = Producer(runtime, order)
    producer.start()
    left_pending: list[int] = []
    for _ in range(KILLS):
        time.sleep(0.8)
        slot, pending = kill_mid_batch(runtime, workers)
        left_pending.append(pending)
        workers[slot] = app_processes.start(env, "ingest")
    assert producer.is_alive(), "the producer finished before the last kill: the kills hit an idle pipeline"
    producer.join(timeout=60)
    assert not producer.is_alive(), "the producer did not finish within 60 s"
    assert producer.error is None, f"submitting failed: {producer.error!r}"
    assert (producer.accepted, producer.duplicates, producer.rejected) == (UNIQUE, DUPLICATES, [])

    wait_until(lambda: backlog(runtime.redis, runtime.keys) == 0, 60, "the backlog to drain", interval_s=0.25)

    # Most kills hit a worker holding unacknowledged entries, which others reclaimed.
    assert sum(pending > 0 for pending in left_pending) >= 3, f"too few kills landed mid-batch: {left_pending}"
    assert any("entries_reclaimed" in worker.log_text() for worker in app_processes.started)
    assert all(worker.alive() for worker in workers)

    stored = stored_events(shared_database)
    assert count_rows(shared_database) == UNIQUE
    assert set(stored) == {key_of(event) for event in originals}
    # The first accepted content wins; a later repeat changed nothing.
    changed = [key for key, event in ((key_of(e), e) for e in originals) if stored[key] != event]
    assert changed == []
    assert pending_total(runtime.redis, runtime.keys) == 0
    stats = pipeline_stats(runtime.redis, runtime.keys)
    assert stats == {"accepted": UNIQUE, "duplicates": DUPLICATES, "rejected": 0, "processed": UNIQUE, "dead": 0}
