"""Browser-test fixtures: a seeded stack (events through the real ingest path) and API reads to compare with."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from dashboard.runtime import Runtime
from tests.helpers import network_day

SITES = ("SEA1", "PDX2", "SFO3")


def drain(runtime: Runtime) -> None:
    """Run one worker until every accepted event is processed (history and live figures)."""
    worker = runtime.worker()
    for _ in range(200):
        worker.step()
        stats = runtime.redis.hmget(runtime.keys.stats, ["accepted", "processed"])
        if stats[0] == stats[1]:
            return
    raise AssertionError("worker did not drain the stream")


@pytest.fixture
def seeded(runtime: Runtime) -> list[dict[str, Any]]:
    """Post a few hours of a three-site network through the ingest path and process it all."""
    events = network_day(random.Random(7), datetime.now(UTC), SITES)
    result = runtime.ingestor().submit(events)
    assert result.accepted == len(events)
    drain(runtime)
    return events


@pytest.fixture
def api(app, token) -> Callable[[str], Any]:  # type: ignore[no-untyped-def]
    """Return a function that GETs an API path as a viewer and returns its JSON."""
    client = app.server.test_client()
    headers = {"Authorization": f"Bearer {token('viewer')}"}

    def get(path: str) -> Any:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    return get
