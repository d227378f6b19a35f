"""The wall screen in a browser while its stores die: last-known figures, a stale banner, no 500, recovery.

Each test builds the app on a store of its own (a private redis-server, or a
private PostgreSQL cluster), loads the wall screen in headless Chromium,
stops the store, and checks that within two refresh intervals a banner says
since when the figures are stale while the figures stay on screen; that no
request was answered 500; and that once the store is back the banner goes
within one refresh interval (plus ``RECOVERY_ALLOWANCE_S``) of the store
answering again, and new events show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.runtime import Runtime
from dashboard.wallboard import format_value
from tests.browser.conftest import drain
from tests.faults.outage import POLL_S, RECOVERY_ALLOWANCE_S, REFRESH_S, SITES, StatusRecorder
from tests.faults.support import wait_until
from tests.helpers import make_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

VALUE = "[data-scope='{scope}'][data-tile='{metric}'] .wtile-value"


def started_app(dash_duo, runtime: Runtime) -> StatusRecorder:  # type: ignore[no-untyped-def]
    from dashboard.webapp import create_app

    app = create_app(runtime=runtime)
    recorder = StatusRecorder(app.server.wsgi_app)
    app.server.wsgi_app = recorder  # type: ignore[method-assign]
    dash_duo.start_server(app)
    dash_duo.wait_for_element(VALUE.format(scope="SEA1", metric="first_attempt_rate"), timeout=10)
    return recorder


def tile_texts(dash_duo) -> dict[tuple[str, str], str]:  # type: ignore[no-untyped-def]
    return {
        (scope, metric): dash_duo.find_element(VALUE.format(scope=scope, metric=metric)).text
        for scope in ("*", *SITES)
        for metric in ("on_time_rate", "first_attempt_rate", "dock_queue")
    }


def banner(dash_duo) -> str:  # type: ignore[no-untyped-def]
    element = dash_duo.find_element("#wall-banner")
    return element.text if element.is_displayed() else ""


def wait_for_banner(dash_duo, text: str) -> float:  # type: ignore[no-untyped-def]
    """Return the seconds until the wall's banner holds ``text``."""
    started = time.monotonic()
    wait_until(lambda: text in banner(dash_duo), 4 * REFRESH_S, f"the banner to say {text!r}", interval_s=POLL_S)
    return time.monotonic() - started


def seconds_to_recover(dash_duo, bring_back: Callable[[], None]) -> float:  # type: ignore[no-untyped-def]
    """Bring the store back (``bring_back`` returns once it answers); return the seconds until the banner goes."""
    bring_back()
    answered = time.monotonic()
    wait_until(lambda: banner(dash_duo) == "", REFRESH_S + 5, "the banner to go", interval_s=POLL_S)
    return time.monotonic() - answered


def post_failed_attempts(runtime: Runtime, count: int) -> None:
    """Post failed first attempts at SEA1 a minute ago and process them: SEA1's first-attempt rate drops."""
    now = datetime.now(UTC)
    promise = {
        "promised_start": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "promised_end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    events = [
        make_event(
            "delivery.attempted",
            time=now - timedelta(minutes=1),
            site_id="SEA1",
            outcome="failed",
            failure_reason="weather",
            order_id=f"OUTAGE{i}",
            **promise,
        )
        for i in range(count)
    ]
    assert runtime.ingestor().submit(events).accepted == count
    drain(runtime)


def test_redis_killed_the_wall_keeps_its_figures_marked_stale_then_recovers(redis_runtime, dash_duo):
    runtime, server = redis_runtime
    recorder = started_app(dash_duo, runtime)
    before = tile_texts(dash_duo)
    assert banner(dash_duo) == ""

    server.kill()
    took = wait_for_banner(dash_duo, "live figures stale since")
    print(f"wall, Redis killed: banner after {took:.2f} s")
    assert took <= 2 * REFRESH_S, f"banner after {took:.2f} s"
    assert "Redis unreachable" in banner(dash_duo)
    time.sleep(REFRESH_S)
    assert tile_texts(dash_duo) == before  # the last known figures stay on screen
    assert dash_duo.find_element("#wall-as-of").text.startswith("data as of")

    took = seconds_to_recover(dash_duo, server.restart)  # restart() returns once the server answers PING
    print(f"wall, Redis back: banner gone after {took:.2f} s")
    assert took <= REFRESH_S + RECOVERY_ALLOWANCE_S, f"banner gone {took:.2f} s after Redis answered"
    post_failed_attempts(runtime, 5)
    dash_duo.wait_for_element(VALUE.format(scope="SEA1", metric="first_attempt_rate"))
    wait_until(
        lambda: tile_texts(dash_duo)[("SEA1", "first_attempt_rate")] != before[("SEA1", "first_attempt_rate")],
        3 * REFRESH_S,
        "SEA1's first-attempt rate to move",
    )
    assert recorder.errors() == []
    assert any(path == "/_dash-update-component" for path, _ in recorder.statuses)
    assert dash_duo.get_logs() == []


def test_postgres_stopped_live_figures_go_on_history_says_so_then_recovers(postgres_runtime, dash_duo):
    runtime, cluster = postgres_runtime
    recorder = started_app(dash_duo, runtime)
    before = tile_texts(dash_duo)

    cluster.stop("fast")
    took = wait_for_banner(dash_duo, "site state stale since")
    print(f"wall, PostgreSQL stopped: banner after {took:.2f} s")
    assert took <= 2 * REFRESH_S, f"banner after {took:.2f} s"
    assert "PostgreSQL unreachable" in banner(dash_duo)
    as_of = dash_duo.find_element("#wall-as-of").text
    wait_until(lambda: dash_duo.find_element("#wall-as-of").text != as_of, 3 * REFRESH_S, "the live figures to tick")
    assert tile_texts(dash_duo) == before  # the site rows stay, their live figures come from Redis

    took = seconds_to_recover(dash_duo, cluster.start)  # pg_ctl -w returns once the server accepts connections
    print(f"wall, PostgreSQL back: banner gone after {took:.2f} s")
    assert took <= REFRESH_S + RECOVERY_ALLOWANCE_S, f"banner gone {took:.2f} s after PostgreSQL answered"
    post_failed_attempts(runtime, 5)
    wait_until(
        lambda: tile_texts(dash_duo)[("SEA1", "first_attempt_rate")] != before[("SEA1", "first_attempt_rate")],
        3 * REFRESH_S,
        "SEA1's first-attempt rate to move",
    )
    assert format_value("first_attempt_rate", None) not in tile_texts(dash_duo)[("SEA1", "first_attempt_rate")]
    assert recorder.errors() == []
    assert dash_duo.get_logs() == []
