"""Redis SIGKILLed mid-ingest: a 202 survives it, the outage answers 503 with Retry-After."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import orjson
import pytest
import requests

from dashboard.stream import Keys, backlog
from tests.faults.conftest import AppProcesses, PrivateRedis, app_env
from tests.faults.support import (
    count_rows,
    key_of,
    numbered_event,
    pending_total,
    pipeline_stats,
    stored_events,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

BATCH = 100
OUTAGE_S = 1.2


class Poster(threading.Thread):
    """Posts batches until stopped; a batch not taken (503, no answer) is posted again."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(name="poster", daemon=True)
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents-batch+json"}
        self.stop = threading.Event()
        self.posted: list[dict[str, Any]] = []
        self.taken: list[dict[str, Any]] = []  # every event of every batch answered 202
        self.taken_batches = 0
        self.answers: list[tuple[float, int | str, str | None]] = []  # (when, status or error, Retry-After)
        self.bad_bodies: list[Any] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._post_until_stopped()
        except BaseException as error:  # reported by the test
            self.error = error

    def _post_until_stopped(self) -> None:
        session = requests.Session()
        number = 0
        batch = [numbered_event(n, source="/sites/SEA1/scanner") for n in range(number, number + BATCH)]
        self.posted.extend(batch)
        while not self.stop.is_set():
            try:
                response = session.post(self._url, data=orjson.dumps(batch), headers=self._headers, timeout=20)
            except requests.RequestException as error:
                self.answers.append((time.monotonic(), type(error).__name__, None))
                self.stop.wait(0.1)
                continue
            self.answers.append((time.monotonic(), response.status_code, response.headers.get("Retry-After")))
            if response.status_code != 202:
                self.stop.wait(0.1)  # our own short retry; the header is checked by the test
                continue
            body = response.json()
            if body["accepted"] + body["duplicates"] != len(batch) or body["rejected"]:
                self.bad_bodies.append(body)
            self.taken.extend(batch)
            self.taken_batches += 1
            number += BATCH
            batch = [numbered_event(n, source="/sites/SEA1/scanner") for n in range(number, number + BATCH)]
            self.posted.extend(batch)
            self.stop.wait(0.02)


def test_accepted_events_survive_a_redis_crash(
    private_redis: Any, shared_database: str, key_prefix: str, app_processes: AppProcesses
) -> None:
    store: PrivateRedis = private_redis("--appendonly", "yes", "--appendfsync", "always")
    env = app_env(store.url, shared_database, key_prefix)
    app_processes.migrate(env)
    token = app_processes.token(env, "ingest")
    serve = app_processes.start(env, "serve", "--workers", "2", "--threads", "4")
    base = f"http://127.0.0.1:{env['PORT']}"
    wait_until(lambda: requests.get(f"{base}/api/v1/pipeline", timeout=2).status_code == 401, 30, "the web app")
    worker = app_processes.start_worker(env)

    poster = Poster(f"{base}/api/v1/events", token)
    poster.start()
    try:
        wait_until(lambda: poster.taken_batches >= 20, 30, "20 batches taken before the crash", interval_s=0.05)
        store.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(OUTAGE_S)
        store.restart()
        restarted_at = time.monotonic()
        taken_before = poster.taken_batches
        wait_until(lambda: poster.taken_batches >= taken_before + 20, 30, "20 batches taken after the restart")
    finally:
        poster.stop.set()
        poster.join(timeout=30)
    assert not poster.is_alive(), "the poster did not stop within 30 s"
    assert poster.error is None, f"posting failed: {poster.error!r}"
    assert poster.bad_bodies == []

    # During the outage the API said "retry later", never 500, never a connection reset.
    statuses = {status for _, status, _ in poster.answers}
    assert statuses <= {202, 503}, f"unexpected answers: {statuses}"
    unavailable = [(when, retry_after) for when, status, retry_after in poster.answers if status == 503]
    assert unavailable, "no request saw the outage"
    assert all(retry_after is not None and int(retry_after) >= 1 for _, retry_after in unavailable)
    assert all(killed_at <= when <= restarted_at + 10 for when, _ in unavailable)

    client = store.client()
    keys = Keys(key_prefix)
    try:
        wait_until(lambda: backlog(client, keys) == 0, 60, "the backlog to drain", interval_s=0.25)
        stats = pipeline_stats(client, keys)
        pending = pending_total(client, keys)
    finally:
        client.close()

    # Every event of every 202 is in history exactly once; nothing was invented.
    taken = {key_of(event) for event in poster.taken}
    assert len(taken) == len(poster.taken) == poster.taken_batches * BATCH
    stored = stored_events(shared_database)
    assert taken <= set(stored), f"{len(taken - set(stored))} events answered 202 are missing"
    assert set(stored) <= {key_of(event) for event in poster.posted}
    assert count_rows(shared_database) == len(stored) == stats["accepted"] == stats["processed"]
    assert stats["dead"] == 0
    assert pending == 0
    assert worker.alive() and serve.alive()
