"""Screenshots of every page at 1920x1080, from a seeded stack, for the README and docs/dashboard.md."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboard.modes import ModeChange
from dashboard.simulator import Config, simulate, site_ids
from tests.browser.conftest import drain
from tests.helpers import ListSink

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"wall_window": "24h"})


def test_screenshots_of_every_page(dash_duo, app, runtime):
    # A simulated day of six sites, with a dock outage and a sick wave in the last hours.
    now = datetime.now(UTC)
    first, second = site_ids(6, 3)[:2]
    sink = ListSink()
    config = Config(sites=6, seed=3, scenarios=[("dock_outage", first), ("picker_sick_wave", second)])
    simulate(config, sink, end=now)
    for start in range(0, len(sink.events), 1000):
        runtime.ingestor().submit(sink.events[start : start + 1000])
    drain(runtime)
    sources = app.server.config["WALL"].sources
    sources.modes.change(ModeChange("priority_only", second, True, "a third of the pickers are out"), "ops-lead", now)
    drain(runtime)
    order = next(  # the latest delivery of the first site: a full trail
        e["data"]["order_id"]
        for e in reversed(sink.events)
        if e["type"] == "delivery.attempted" and e["data"]["site_id"] == first
    )
    # The viewport itself is 1920x1080 (a window of that size has a smaller viewport).
    dash_duo.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False}
    )
    dash_duo.start_server(app)
    pages = {
        "wall.png": ("/", f"[data-scope='{second}'][data-tile='on_time_rate']"),
        "site.png": (f"/sites/{first}", "[data-door='D01']"),
        "order.png": (f"/orders/{order}", ".ag-row"),
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
