"""The wall screen in headless Chromium: the API's figures, live updates, kiosk mode, rotation."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.wallboard import format_value
from tests.browser.conftest import SITES, drain
from tests.helpers import make_event


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """The seeded day spans six hours: tiles over 24 h show all of it."""
    return settings.model_copy(update={"wall_window": "24h", "sparkline_refresh_s": 2.0})


def tile_text(dash_duo, scope: str, metric: str) -> str:  # type: ignore[no-untyped-def]
    return dash_duo.find_element(f"[data-scope='{scope}'][data-tile='{metric}'] .wtile-value").text


def test_wall_screen_shows_what_the_api_gives(dash_duo, app, seeded, api):
    dash_duo.start_server(app)
    dash_duo.wait_for_element("[data-scope='SFO3'][data-tile='on_time_rate']", timeout=10)
    for scope in ("*", *SITES):
        query = "window=24h" + ("" if scope == "*" else f"&site_id={scope}")
        figures = api(f"/api/v1/metrics?{query}")
        for metric in ("on_time_rate", "first_attempt_rate", "p95_driver_idle_s"):
            assert tile_text(dash_duo, scope, metric) == format_value(metric, figures[metric]), (scope, metric)
        # An open shift's cost runs to now: the screen's figure may be one refresh (1 s) older than the API's.
        shown = float(tile_text(dash_duo, scope, "cost_per_delivery").replace(",", ""))
        assert shown == pytest.approx(figures["cost_per_delivery"], abs=0.05), scope
    for site in SITES:
        state = api(f"/api/v1/sites/{site}/state")
        assert tile_text(dash_duo, site, "dock_queue") == format_value("dock_queue", state["trucks_waiting"])
        assert tile_text(dash_duo, site, "backlog_per_active_picker") == format_value(
            "backlog_per_active_picker", state["backlog_per_active_picker"]
        )
    assert "data as of" in dash_duo.find_element("#wall-as-of").text
    assert dash_duo.find_element("[data-ptile='dead_letters'] .ptile-value").text == "0"
    assert dash_duo.get_logs() == []


def test_posting_events_changes_the_wall_screen_within_3_seconds(dash_duo, app, runtime):
    now = datetime.now(UTC)
    promise = {
        "promised_start": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "promised_end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    runtime.ingestor().submit(
        [
            make_event(
                "delivery.attempted",
                time=now - timedelta(minutes=5),
                site_id="SEA1",
                outcome="failed",
                failure_reason="weather",
                order_id="X0",
                **promise,
            )
        ]
    )
    drain(runtime)
    stop = threading.Event()
    worker = runtime.start_worker_thread(stop)
    try:
        dash_duo.start_server(app)
        dash_duo.wait_for_text_to_equal(
            "[data-scope='SEA1'][data-tile='first_attempt_rate'] .wtile-value", "0.0%", timeout=10
        )
        posted = time.monotonic()
        runtime.ingestor().submit(
            [
                make_event(
                    "delivery.attempted", time=now - timedelta(minutes=1), site_id="SEA1", order_id=f"X{i}", **promise
                )
                for i in range(1, 4)
            ]
        )
        dash_duo.wait_for_text_to_equal(
            "[data-scope='SEA1'][data-tile='first_attempt_rate'] .wtile-value", "75.0%", timeout=3
        )
        assert time.monotonic() - posted < 3
        assert dash_duo.find_element("[data-scope='SEA1'][data-tile='on_time_rate'] .wtile-value").text == "100.0%"
        assert dash_duo.get_logs() == []
    finally:
        stop.set()
        worker.join(timeout=5)


def test_kiosk_mode_hides_navigation_and_rotation_moves_the_focus(dash_duo, app, seeded):
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/?kiosk=1&rotate=1")
    dash_duo.wait_for_element("[data-scope='SEA1'][data-tile='on_time_rate']", timeout=10)
    assert dash_duo.driver.find_elements("css selector", ".nav-bar") == []
    assert dash_duo.driver.find_elements("css selector", "#modes-open") == []
    dash_duo.wait_for_element(".wrow-focus", timeout=4)
    first = dash_duo.find_element(".wrow-focus").get_attribute("data-scope")
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        if dash_duo.find_element(".wrow-focus").get_attribute("data-scope") != first:
            break
        time.sleep(0.2)
    assert dash_duo.find_element(".wrow-focus").get_attribute("data-scope") != first
    assert dash_duo.find_element("#wall-focus-text").text.split(" — ")[0] in SITES
    assert dash_duo.get_logs() == []
