"""Screenshots of every page at 1920x1080, from a seeded stack, for the README and docs/dashboard.md."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboard.modes import ModeChange
from tests.browser.conftest import drain
from tests.helpers import make_event, network_day

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SITES = ("SEA1", "PDX2", "SFO3", "LAX4", "DEN5", "ORD6", "ATL7", "BOS8")


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"wall_window": "24h"})


def test_screenshots_of_every_page(dash_duo, app, runtime):
    now = datetime.now(UTC)
    events = network_day(random.Random(11), now, SITES)
    events += [
        make_event(
            "dock.status_changed",
            time=now - timedelta(minutes=40),
            site_id="SEA1",
            dock_id="D1",
            status="out_of_service",
            reason="door motor fault",
        ),
        make_event("truck.arrived", time=now - timedelta(minutes=25), site_id="SEA1", route_id="SEA1-R9", dock_id="D0"),
        make_event("truck.arrived", time=now - timedelta(minutes=9), site_id="SEA1", route_id="SEA1-R10", dock_id="D0"),
    ]
    late = {"promised_start": "2026-01-01T08:00:00Z", "promised_end": "2026-01-01T10:00:00Z"}
    later = {
        "promised_start": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "promised_end": (now + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for n in range(6):  # orders stuck at SEA1: some past their promise, some stalled at picking
        order = f"SEA1-S{n}"
        events.append(
            make_event(
                "order.created",
                time=now - timedelta(hours=5 - n * 0.3),
                site_id="SEA1",
                order_id=order,
                priority="express" if n % 3 == 0 else "standard",
                **(late if n % 2 else later),
            )
        )
        events.append(
            make_event(
                "order.picked",
                time=now - timedelta(hours=3 - n * 0.2),
                site_id="SEA1",
                order_id=order,
                worker_id="SEA1-W0",
            )
        )
    runtime.ingestor().submit(events)
    drain(runtime)
    sources = app.server.config["WALL"].sources
    sources.modes.change(ModeChange("priority_only", "SEA1", True, "dock D1 down, express first"), "ops-lead", now)
    drain(runtime)
    # The viewport itself is 1920x1080 (a window of that size has a smaller viewport).
    dash_duo.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False}
    )
    dash_duo.start_server(app)
    pages = {
        "wall.png": ("/", "[data-scope='BOS8'][data-tile='on_time_rate']"),
        "site.png": ("/sites/SEA1", "[data-door='D1']"),
        "order.png": ("/orders/SEA1-O01", ".ag-row"),
        "tradeoffs.png": ("/tradeoffs", "#trade-series .main-svg"),
        "pipeline.png": ("/pipeline", "[data-tile='accepted'] .tile-value"),
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, (path, ready) in pages.items():
        dash_duo.driver.get(dash_duo.server_url + path)
        dash_duo.wait_for_element(ready, timeout=10)
        if name == "tradeoffs.png":  # today, hourly: the seeded hours fill the charts
            dash_duo.driver.find_elements("css selector", "#trade-preset label")[0].click()
            dash_duo.wait_for_contains_text("#trade-as-of", "hourly", timeout=10)
        dash_duo.wait_for_no_elements("._dash-loading", timeout=10)
        time.sleep(1.0)  # let charts finish drawing
        dash_duo.driver.save_screenshot(str(SHOTS / name))
        assert (SHOTS / name).stat().st_size > 10_000
    logs = dash_duo.get_logs()
    assert logs == [], [entry["message"][:400] for entry in logs]
