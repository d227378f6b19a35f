"""The trade-offs page in headless Chromium: the API's figures per bucket, mode and alert marks, CSV as shown."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboard.alerting import AlertEvaluator, PolicyFile
from dashboard.modes import ModeChange
from dashboard.wallboard import format_value
from datasources.alerts import list_alerts
from tests.browser.conftest import drain
from tests.helpers import make_event

ROWS = "#trade-table .ag-center-cols-container .ag-row"


def open_today(dash_duo, app) -> None:  # type: ignore[no-untyped-def]
    """Serve the app and open the trade-offs page on its "today" preset."""
    dash_duo.driver.set_window_size(1600, 1200)
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/tradeoffs")
    dash_duo.wait_for_element("#trade-preset label", timeout=10)
    dash_duo.driver.find_elements("css selector", "#trade-preset label")[0].click()  # today


def cell(row, field: str) -> str:  # type: ignore[no-untyped-def]
    return row.find_element("css selector", f"[col-id='{field}']").text


def test_tradeoffs_show_the_api_figures_and_export_what_is_shown(dash_duo, app, runtime, seeded, api):
    sources = app.server.config["WALL"].sources
    sources.modes.change(ModeChange("priority_only", "*", True, "storm"), "ops-lead", datetime.now(UTC))
    drain(runtime)
    open_today(dash_duo, app)
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


# Only dock_queue, opening at once and resolving as soon as it is clear: the evaluator's
# whole lifecycle in two evaluations.
DOCK_QUEUE_ONLY = """
[rules.dock_queue]
duration_s = 0
hold_s = 0
[rules.labor_imbalance]
enabled = false
[rules.stuck_orders]
enabled = false
[rules.on_time_drop]
enabled = false
[rules.first_attempt_drop]
enabled = false
[rules.pipeline_lag]
enabled = false
"""
FIGURE_MARKS_JS = """
const graph = document.querySelector('#trade-series .js-plotly-plot');
if (!graph || !graph.layout) { return null; }
return {
    annotations: (graph.layout.annotations || []).map(a => [a.text, a.x, a.hovertext || '', a.yref]),
    shapes: (graph.layout.shapes || []).map(s => [s.x0, s.line.color, s.yref]),
};
"""


def iso_seconds(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_alerts_opened_and_resolved_are_marked_beside_the_mode_changes(dash_duo, app, runtime, seeded, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    # In today's range even just after midnight: opened, then resolved, before now.
    opened_at = now - min(timedelta(minutes=20), (now - today) / 2)
    resolved_at = now - min(timedelta(minutes=5), (now - today) / 4)
    policies = tmp_path / "alerts.toml"
    policies.write_text(DOCK_QUEUE_ONLY)
    evaluator = AlertEvaluator(runtime, PolicyFile(policies))

    # A door out of service while a truck waits at SEA1: the evaluator opens dock_queue ...
    trouble = [
        make_event(
            "dock.status_changed", time=opened_at - timedelta(minutes=30), dock_id="D9", status="out_of_service"
        ),
        make_event("truck.arrived", time=opened_at - timedelta(minutes=3), route_id="R-ALERT", dock_id="D8"),
    ]
    assert runtime.ingestor().submit(trouble).accepted == 2
    drain(runtime)
    assert [(c.rule, c.site_id) for c in evaluator.evaluate(opened_at).open] == [("dock_queue", "SEA1")]
    # ... and resolves it once the door is back and the truck is loading.
    clear = [
        make_event("dock.status_changed", time=resolved_at - timedelta(minutes=1), dock_id="D9", status="open"),
        make_event("truck.loading_started", time=resolved_at - timedelta(minutes=1), route_id="R-ALERT", dock_id="D8"),
    ]
    assert runtime.ingestor().submit(clear).accepted == 2
    drain(runtime)
    assert len(evaluator.evaluate(resolved_at).resolve) == 1
    [alert] = list_alerts(runtime.engine, site_id="SEA1")
    assert (alert.rule, alert.status, alert.resolved_by) == ("dock_queue", "resolved", "auto")
    assert (alert.opened_at, alert.resolved_at) == (opened_at, resolved_at)

    sources = app.server.config["WALL"].sources
    sources.modes.change(ModeChange("priority_only", "*", True, "storm"), "ops-lead", now)
    drain(runtime)
    open_today(dash_duo, app)
    dash_duo.wait_for_contains_text("#trade-series", "alert resolved: dock queue", timeout=10)

    # On screen: on each of the three charts, the mode change and the alert's two marks.
    texts = [element.text for element in dash_duo.driver.find_elements("css selector", "#trade-series .annotation")]
    assert sorted(texts) == sorted(["priority only on", "alert opened: dock queue", "alert resolved: dock queue"] * 3)

    # In the figure: at the alert's times, with its site, severity and message on hover, on every chart.
    marks = dash_duo.driver.execute_script(FIGURE_MARKS_JS)
    axes = {"y domain", "y2 domain", "y3 domain"}
    opened = [a for a in marks["annotations"] if a[0] == "alert opened: dock queue"]
    resolved = [a for a in marks["annotations"] if a[0] == "alert resolved: dock queue"]
    changes = [a for a in marks["annotations"] if a[0] == "priority only on"]
    assert {a[3] for a in opened} == {a[3] for a in resolved} == {a[3] for a in changes} == axes
    assert {a[1] for a in opened} == {iso_seconds(opened_at)}
    assert {a[1] for a in resolved} == {iso_seconds(resolved_at)}
    for text, _, hover, _ in opened + resolved:
        assert hover.startswith(f"{iso_seconds(opened_at if 'opened' in text else resolved_at)[:16].replace('T', ' ')}")
        assert "SEA1 (warning): " + alert.message in hover
    assert all("resolved by auto" in hover for _, _, hover, _ in resolved)
    assert all("by ops-lead — storm" in hover for _, _, hover, _ in changes)
    shapes = {(x0, colour) for x0, colour, _ in marks["shapes"]}
    assert {(iso_seconds(opened_at), "#ff6b61"), (iso_seconds(resolved_at), "#3fb950")} <= shapes
    assert len(marks["shapes"]) == 9  # a line per mark and chart

    # Scoped to a site: its own alerts and the network's, not another site's.
    choose_site(dash_duo, "PDX2")
    wait_for_annotations(dash_duo, ["priority only on"] * 3)
    choose_site(dash_duo, "SEA1")
    wait_for_annotations(dash_duo, ["priority only on", "alert opened: dock queue", "alert resolved: dock queue"] * 3)
    assert dash_duo.get_logs() == []


def choose_site(dash_duo, label: str) -> None:  # type: ignore[no-untyped-def]
    dash_duo.find_element("#trade-site").click()
    xpath = f"//*[contains(@class, 'dash-dropdown-option')][normalize-space()='{label}']"
    deadline = time.monotonic() + 4
    while not (options := dash_duo.driver.find_elements("xpath", xpath)):
        assert time.monotonic() < deadline, f"no option {label!r} in #trade-site"
        time.sleep(0.05)
    options[0].click()


def wait_for_annotations(dash_duo, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    def shown() -> list[str]:
        marks = dash_duo.driver.execute_script(FIGURE_MARKS_JS) or {"annotations": []}
        return sorted(a[0] for a in marks["annotations"])

    deadline = time.monotonic() + 10
    while shown() != sorted(expected):
        assert time.monotonic() < deadline, f"annotations {shown()}, expected {sorted(expected)}"
        time.sleep(0.1)
