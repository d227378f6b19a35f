"""The trade-offs page in headless Chromium: the API's figures per bucket, mode annotations, CSV as shown."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboard.modes import ModeChange
from dashboard.wallboard import format_value
from tests.browser.conftest import drain

ROWS = "#trade-table .ag-center-cols-container .ag-row"


def cell(row, field: str) -> str:  # type: ignore[no-untyped-def]
    return row.find_element("css selector", f"[col-id='{field}']").text


def test_tradeoffs_show_the_api_figures_and_export_what_is_shown(dash_duo, app, runtime, seeded, api):
    sources = app.server.config["WALL"].sources
    sources.modes.change(ModeChange("priority_only", "*", True, "storm"), "ops-lead", datetime.now(UTC))
    drain(runtime)
    dash_duo.driver.set_window_size(1600, 1200)
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/tradeoffs")
    dash_duo.wait_for_element("#trade-preset label", timeout=10)
    dash_duo.driver.find_elements("css selector", "#trade-preset label")[0].click()  # today
    dash_duo.wait_for_element(ROWS, timeout=10)

    # Every time chart carries the mode change, with who and why.
    dash_duo.wait_for_contains_text("#trade-series", "priority only on", timeout=10)
    annotations = dash_duo.driver.find_elements("css selector", "#trade-series .annotation")
    assert len(annotations) == 3

    # Sort by deliveries, most first, so the busy hours are on screen.
    header = dash_duo.find_element("#trade-table .ag-header-cell[col-id='deliveries']")
    header.click()
    header.click()
    time.sleep(0.5)
    rows = sorted(dash_duo.driver.find_elements("css selector", ROWS), key=lambda r: int(r.get_attribute("row-index")))
    assert int(cell(rows[0], "deliveries")) > 0
    for row in rows[:3]:
        start = datetime.strptime(cell(row, "bucket"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        end = min(start + timedelta(hours=1), datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1))
        figures = api(f"/api/v1/metrics?start={start:%Y-%m-%dT%H:%M:%SZ}&end={end:%Y-%m-%dT%H:%M:%SZ}")
        assert int(cell(row, "deliveries")) == figures["deliveries"]
        assert int(cell(row, "attempts")) == figures["attempts"]
        for field in ("on_time_rate", "first_attempt_rate"):
            value = figures[field]
            assert cell(row, field) == ("" if value is None else f"{round(value, 4):g}"), field
        # Open shifts cost up to now, and the page may show figures one refresh (30 s) old.
        shown_cost = cell(row, "cost_per_delivery")
        if figures["cost_per_delivery"] is None:
            assert shown_cost == ""
        else:
            assert float(shown_cost) == pytest.approx(figures["cost_per_delivery"], abs=0.1)

    dash_duo.find_element("#trade-csv").click()
    target = Path(dash_duo.download_path) / "tradeoffs.csv"
    deadline = time.monotonic() + 5
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    with target.open() as handle:
        exported = list(csv.DictReader(handle))
    hours = datetime.now(UTC).hour + 1
    assert len(exported) == hours  # one row per hour of today, as in the table
    for row, line in zip(rows, exported, strict=False):  # in the grid's sort order
        for field in ("bucket", "scope", "attempts", "deliveries", "on_time_rate", "cost_per_delivery"):
            assert cell(row, field) == line[field], field
    assert format_value("on_time_rate", None) == "—"
    assert dash_duo.get_logs() == []
