"""Redis loses the live aggregates mid-run; `rebuild` makes them equal history again."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashboard.live import rebuild
from dashboard.stream import backlog
from datasources.history import HistorySource
from datasources.live import LiveSource
from tests.helpers import network_day
from tests.metrics_assert import mismatches

ROOT = Path(__file__).resolve().parents[2]


def flush(runtime) -> None:  # type: ignore[no-untyped-def]
    for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}:*", count=1000):
        runtime.redis.delete(key)


def wait_drained(runtime, deadline_s: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_s
    while backlog(runtime.redis, runtime.keys) > 0 or runtime.redis.xpending(runtime.keys.stream, "ingest")["pending"]:
        assert time.monotonic() < deadline, "backlog did not drain"
        time.sleep(0.05)


def figures(runtime, now):  # type: ignore[no-untyped-def]
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(hours=24)
    live, history = LiveSource(runtime.redis, runtime.keys), HistorySource(runtime.engine)
    return [
        (site, live.metrics(site, start, end, now), history.metrics(site, start, end, now))
        for site in (None, "SEA1", "PDX2")
    ]


def test_flush_mid_run_then_rebuild_restores_live_figures(runtime):
    now = datetime.now(UTC)
    log = network_day(random.Random(3), now)
    random.Random(4).shuffle(log)
    first, second, third = log[:60], log[60:120], log[120:]
    stop = threading.Event()
    worker = runtime.start_worker_thread(stop)
    try:
        ingestor = runtime.ingestor()
        ingestor.submit(first)
        wait_drained(runtime)
        flush(runtime)  # Redis loses everything: stream, counters, live hashes
        ingestor.submit(second)
        wait_drained(runtime)
        broken = figures(runtime, now)
        assert any(mismatches(hist, live) for _, live, hist in broken), "the flush should have lost live figures"

        # Events keep arriving while the rebuild runs.
        feeder = threading.Thread(target=lambda: [ingestor.submit([e]) for e in third])
        feeder.start()
        report = rebuild(runtime.redis, runtime.engine, runtime.keys, runtime.settings.live_retention_s)
        feeder.join()
        wait_drained(runtime)
        time.sleep(0.2)
        runtime.worker().drain_outbox(older_than_s=0)  # rows held back during the rebuild
        assert report.hashes > 0
        for site, live, hist in figures(runtime, now):
            assert mismatches(hist, live) == [], site
        assert figures(runtime, now)[0][1]["attempts"] > 0
    finally:
        stop.set()
        worker.join(timeout=5)


def test_rebuild_command(settings, runtime):
    env = {
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "KEY_PREFIX": settings.key_prefix,
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "app.py", "rebuild"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt 0 live hashes" in result.stderr
    runtime.redis.set(runtime.keys.rebuild_lock, "someone-else")
    busy = subprocess.run(
        [sys.executable, "app.py", "rebuild"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert busy.returncode == 1 and "already running" in busy.stderr
