"""Redis full (maxmemory reached, noeviction): the worker waits it out, and drains once there is room."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.db import migrate
from dashboard.runtime import Runtime
from dashboard.stream import backlog
from datasources.live import LiveSource
from tests.conftest import count_events
from tests.faults.outage import settings_for
from tests.faults.support import wait_until
from tests.helpers import make_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

EVENTS = 40


def test_a_full_redis_holds_the_worker_back_until_there_is_room(private_redis, shared_database, key_prefix, caplog):
    server = private_redis()  # maxmemory-policy noeviction, Redis's default
    runtime = Runtime.open(settings_for(server.url, shared_database, key_prefix))
    migrate(runtime.engine)
    now = datetime.now(UTC)
    events = [
        make_event("delivery.attempted", event_id=f"full-{i}", time=now - timedelta(minutes=5, seconds=i))
        for i in range(EVENTS)
    ]
    assert runtime.ingestor().submit(events).accepted == EVENTS
    admin = server.client()
    admin.config_set("maxmemory", 1)  # every write that may grow memory is refused with OOM
    stop = threading.Event()
    worker = threading.Thread(target=runtime.worker().run, args=(stop,), daemon=True)
    caplog.set_level(logging.WARNING, logger="dashboard.worker")
    try:
        worker.start()

        def reported_full() -> bool:
            assert worker.is_alive(), "a full Redis must not end the worker"
            return any(r.msg == "store_unavailable" and "maxmemory" in getattr(r, "error", "") for r in caplog.records)

        wait_until(reported_full, 20, "the worker to report Redis out of memory")
        time.sleep(1.0)  # a few more tries while full
        assert worker.is_alive(), "a full Redis must not end the worker"

        admin.config_set("maxmemory", 0)
        wait_until(lambda: backlog(runtime.redis, runtime.keys) == 0, 30, "the backlog to drain")
        assert count_events(runtime.engine) == EVENTS
        # The batch committed while Redis was full left its live deltas in the outbox:
        # housekeeping applies them, once.
        live = LiveSource(runtime.redis, runtime.keys, runtime.settings.live_retention_s)
        hour_start = now.replace(second=0, microsecond=0) - timedelta(hours=1)
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        wait_until(lambda: live.metrics(None, hour_start, end, now)["attempts"] == EVENTS, 30, "the live figures")
        assert worker.is_alive()
    finally:
        stop.set()
        worker.join(timeout=10)
        admin.close()
        runtime.redis.close()
        runtime.engine.dispose()
