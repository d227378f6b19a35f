"""What the store-outage browser tests share: a seeded app on stores that can be stopped, and a status recorder."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dashboard.db import migrate
from dashboard.runtime import Runtime
from dashboard.settings import Settings
from tests.browser.conftest import drain
from tests.helpers import network_day

REFRESH_S = 1.0
SITES = ("SEA1", "PDX2")
# How often these tests look at the page.
POLL_S = 0.05
# What a recovery may take beyond one refresh interval, measured from the store answering
# again: the refresh request, the server's reads and computation, Dash rendering the answer,
# this test's polling (POLL_S) and Selenium's round trip to read the banner, all on a shared
# 2-core machine where Chromium, the server and the stores compete. Slowest measured: 1.01 s
# on the wall (1 s refresh), 1.90 s on the site page (2 s refresh).
RECOVERY_ALLOWANCE_S = 0.5


class StatusRecorder:
    """WSGI middleware that records the status of every response the server gives."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self._app = wsgi_app
        self.statuses: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def recording(status: str, headers: Any, *args: Any) -> Any:
            with self._lock:
                self.statuses.append((environ.get("PATH_INFO", ""), int(status.split()[0])))
            return start_response(status, headers, *args)

        return self._app(environ, recording)

    def errors(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(path, code) for path, code in self.statuses if code >= 500]


def settings_for(redis_url: str, database_url: str, key_prefix: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        key_prefix=key_prefix,
        refresh_s=REFRESH_S,
        wall_window="24h",
        sparkline_refresh_s=2.0,
        claim_idle_ms=500,
        worker_block_ms=100,
    )


def seeded_runtime(settings: Settings) -> Runtime:
    runtime = Runtime.open(settings)
    migrate(runtime.engine)
    events = network_day(random.Random(7), datetime.now(UTC), SITES)
    assert runtime.ingestor().submit(events).accepted == len(events)
    drain(runtime)
    return runtime
