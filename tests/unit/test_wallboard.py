"""Unit tests of the wall screen's pure parts: colours, text, snapshot, alerts, sparkline changes, routes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callbacks.tradeoffs import compare_rows, preset_range, query_range, table_rows, to_csv
from callbacks.wall import spark_changes
from dashboard.settings import DEFAULT_TILE_THRESHOLDS, Settings
from dashboard.stream import PipelineStatus
from dashboard.wallboard import (
    build_series,
    build_snapshot,
    format_duration,
    format_value,
    network_summary,
    scope_tiles,
    state_summary,
    tile_state,
)
from layouts.shell import Route, parse_route

T = DEFAULT_TILE_THRESHOLDS
NOW = datetime(2026, 12, 3, 12, 30, 15, tzinfo=UTC)
PIPELINE = PipelineStatus(0, 10, 1, 0, 10, 0, None, 2.0, 2.0, 1, None, NOW.timestamp())


@pytest.mark.parametrize(
    ("metric", "value", "state"),
    [
        ("on_time_rate", None, "none"),
        ("on_time_rate", 0.99, "ok"),
        ("on_time_rate", 0.95, "warn"),  # a level reached counts
        ("on_time_rate", 0.93, "warn"),
        ("on_time_rate", 0.90, "bad"),
        ("on_time_rate", 0.5, "bad"),
        ("p95_driver_idle_s", 0.0, "ok"),
        ("p95_driver_idle_s", 599.9, "ok"),
        ("p95_driver_idle_s", 600.0, "warn"),
        ("p95_driver_idle_s", 1200.0, "bad"),
        ("dock_queue", 1000.0, "warn"),  # coloured by the oldest wait
        ("cost_per_delivery", 12.5, "bad"),
        ("unknown_metric", 3.0, "ok"),
    ],
)
def test_tile_state(metric: str, value: float | None, state: str) -> None:
    assert tile_state(metric, value, T) == state


def test_thresholds_come_from_settings_and_keep_the_other_defaults() -> None:
    settings = Settings(tile_thresholds={"cost_per_delivery": {"warn": 3, "bad": 5}})
    assert tile_state("cost_per_delivery", 4.0, settings.tile_thresholds) == "warn"
    assert settings.tile_thresholds["on_time_rate"] == T["on_time_rate"]
    with pytest.raises(ValueError, match="warn"):
        Settings(tile_thresholds={"cost_per_delivery": {"bad": 5}})


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("on_time_rate", 0.9312, "93.1%"),
        ("on_time_rate", None, "—"),
        ("p95_driver_idle_s", 42.2, "42 s"),
        ("p95_driver_idle_s", 450.0, "7.5 min"),
        ("p95_driver_idle_s", 2520.0, "42 min"),
        ("p95_driver_idle_s", 7200.0, "2.0 h"),
        ("cost_per_delivery", 4.319, "4.32"),
        ("backlog_per_active_picker", 12.25, "12.2"),
        ("dock_queue", 3, "3"),
    ],
)
def test_format_value(metric: str, value: float | None, text: str) -> None:
    assert format_value(metric, value) == text


def test_format_duration_of_nothing() -> None:
    assert format_duration(None) == "—"


SITE_STATE = {
    "docks": [
        {"dock_id": "D1", "status": "out_of_service", "reason": "jammed", "trucks_waiting": 0, "oldest_wait_s": None},
        {"dock_id": "D2", "status": "open", "reason": None, "trucks_waiting": 2, "oldest_wait_s": 2000.0},
    ],
    "trucks_waiting": 2,
    "backlog": 30,
    "active_workers": {"picker": 2},
    "backlog_per_active_picker": 15.0,
    "stuck_count": 4,
    "last_event_at": "2026-12-03T12:30:00.000000Z",
}


def test_site_and_network_summaries() -> None:
    sea = state_summary(SITE_STATE)
    assert (sea["trucks_waiting"], sea["oldest_wait_s"], sea["pickers"]) == (2, 2000.0, 2)
    assert sea["out_of_service"] == [["D1", "jammed"]]
    pdx = {**sea, "trucks_waiting": 1, "oldest_wait_s": 60.0, "backlog": 10, "pickers": 0, "stuck_count": 0}
    network = network_summary([sea, pdx])
    assert (network["trucks_waiting"], network["oldest_wait_s"], network["backlog"]) == (3, 2000.0, 40)
    assert network["backlog_per_active_picker"] == 20.0


def test_tiles_of_a_row() -> None:
    figures = {
        "on_time_rate": 0.97,
        "first_attempt_rate": 0.8,
        "p95_driver_idle_s": None,
        "cost_per_delivery": 5.0,
        "deliveries": 12,
    }
    tiles = scope_tiles(figures, state_summary(SITE_STATE), T)
    assert [tiles[m]["state"] for m in tiles] == ["ok", "bad", "none", "bad", "ok", "ok"]
    assert tiles["dock_queue"]["text"] == "2" and tiles["dock_queue"]["sub"] == "oldest 33 min"
    assert tiles["cost_per_delivery"]["sub"] == "12 deliveries"
    empty = scope_tiles(None, None, T)
    assert {tile["text"] for tile in empty.values()} == {"—"}


def snapshot(**overrides):  # type: ignore[no-untyped-def]
    sea = state_summary(SITE_STATE)
    arguments = {
        "now": NOW,
        "window": "1h",
        "site_ids": ["SEA1"],
        "figures": {"*": {"on_time_rate": 0.5, "deliveries": 2}, "SEA1": {"on_time_rate": 0.5, "deliveries": 2}},
        "summaries": {"SEA1": sea, "*": network_summary([sea])},
        "modes": [
            {
                "mode": "priority_only",
                "site_id": "SEA1",
                "changed_by": "ops",
                "reason": "storm",
                "params": {},
                "changed_at": None,
            }
        ],
        "pipeline": PIPELINE,
        "errors": [],
        "thresholds": T,
        "stale_after_s": 30.0,
    }
    return build_snapshot(**{**arguments, **overrides})


def test_snapshot_rows_alerts_and_focus() -> None:
    snap = snapshot()
    assert [row["scope"] for row in snap["rows"]] == ["*", "SEA1"]
    assert snap["as_of_text"] == "12:30:15 UTC"
    texts = [alert["text"] for alert in snap["alerts"]]
    assert texts[0] == "Network: on time 50.0%"  # bad tiles first
    assert "SEA1: door D1 out of service (jammed)" in texts
    assert "SEA1: 4 stuck orders" in texts
    assert snap["freshness"]["stale"] is False
    assert "modes: priority_only" in snap["focus"]["SEA1"]


def test_snapshot_is_stale_when_the_pipeline_lags_or_a_store_is_down() -> None:
    lagging = PipelineStatus(5, 10, 0, 0, 5, 0, 45.0, 0.0, 0.0, 1, None, NOW.timestamp())
    assert snapshot(pipeline=lagging)["freshness"]["stale"] is True
    assert snapshot(pipeline=lagging)["alerts"][0]["text"] == "figures are stale"
    down = snapshot(errors=["Live figures unavailable: Redis: refused"], pipeline=None)
    assert down["freshness"]["stale"] is True and down["freshness"]["text"] == "pipeline unreachable"


def test_sparklines_are_sent_only_when_they_change() -> None:
    points = [(NOW, {"on_time_rate": 0.9}), (NOW.replace(minute=45), {"on_time_rate": 0.8})]
    series = {"series": build_series({"*": points}, {})}
    first = spark_changes(series, {})
    assert first is not None and len(first["lines"]) == 6  # every tile of the row
    line = first["lines"]["*|on_time_rate"]
    assert (line["x"], line["y"]) == (["2026-12-03T12:30:15Z", "2026-12-03T12:45:15Z"], [0.9, 0.8])
    versions = {key: line["version"] for key, line in first["lines"].items()}
    assert spark_changes(series, versions) is None
    changed = {"series": build_series({"*": [*points[:1], (points[1][0], {"on_time_rate": 0.7})]}, {})}
    third = spark_changes(changed, versions)
    assert third is not None and list(third["lines"]) == ["*|on_time_rate"]
    assert third["lines"]["*|on_time_rate"]["y"] == [0.9, 0.7]
    assert spark_changes({"series": {}}, None) is None


@pytest.mark.parametrize(
    ("path", "search", "route"),
    [
        ("/", "", Route("wall")),
        ("/", "?kiosk=1&rotate=30", Route("wall", None, True, 30)),
        ("/", "?rotate=abc", Route("wall")),
        ("/sites/SEA1", "", Route("site", "SEA1")),
        ("/orders/O-1", "", Route("order", "O-1")),
        ("/tradeoffs", "", Route("tradeoffs")),
        ("/pipeline", "", Route("pipeline")),
        ("/nope", "", Route("missing", "/nope")),
    ],
)
def test_routes(path: str, search: str, route: Route) -> None:
    assert parse_route(path, search) == route


def test_trade_presets_and_ranges() -> None:
    today = NOW.date()
    assert preset_range("today", today) == ("2026-12-03", "2026-12-03")
    assert preset_range("7", today) == ("2026-11-27", "2026-12-03")
    start, end, grain = query_range("2026-12-03", "2026-12-03", NOW)
    assert (start.isoformat(), end.isoformat(), grain) == (
        "2026-12-03T00:00:00+00:00",
        "2026-12-03T12:31:00+00:00",
        "h",
    )
    assert query_range("2026-09-05", "2026-12-03", NOW)[2] == "d"


def test_csv_holds_the_table_rows_in_order() -> None:
    series = [
        {
            "bucket": "2026-12-03T10:00:00Z",
            "attempts": 3,
            "deliveries": 2,
            "on_time_rate": 0.5,
            "first_attempt_rate": None,
            "cost_per_delivery": 12.345678,
            "labor_cost": 24.69,
            "p95_driver_idle_s": None,
        }
    ]
    rows = table_rows(series, "SEA1")
    text = to_csv(rows)
    assert text.splitlines() == [
        "bucket,scope,attempts,deliveries,on_time_rate,first_attempt_rate,cost_per_delivery,labor_cost,p95_driver_idle_s",
        "2026-12-03T10:00:00Z,SEA1,3,2,0.5,,12.3457,24.69,",
    ]


def test_before_and_after() -> None:
    rows = {
        row["metric"]: row
        for row in compare_rows({"deliveries": 10, "on_time_rate": 0.9}, {"deliveries": 14, "on_time_rate": 0.95})
    }
    assert rows["on_time_rate"]["delta"] == "+5.0 pts"
    assert rows["deliveries"]["delta"] == "+4"
    assert rows["cost_per_delivery"]["delta"] == "—"


def test_engine_alerts_lead_the_band_worst_and_newest_first():
    from dashboard.wallboard import engine_alerts

    def alert(rule, severity, status, opened_at):  # type: ignore[no-untyped-def]
        return {
            "rule": rule,
            "site_id": "SEA1",
            "severity": severity,
            "status": status,
            "opened_at": opened_at,
            "message": f"SEA1: {rule}",
        }

    band = engine_alerts(
        [
            alert("on_time_drop", "warning", "open", 100.0),
            alert("dock_queue", "critical", "open", 50.0),
            alert("stuck_orders", "warning", "open", 200.0),
            alert("pipeline_lag", "critical", "acknowledged", 300.0),
        ]
    )
    assert [(a["severity"], a["text"]) for a in band] == [
        ("bad", "SEA1: dock_queue"),
        ("warn", "SEA1: stuck_orders"),
        ("warn", "SEA1: on_time_drop"),
        ("bad", "SEA1: pipeline_lag (acknowledged)"),
    ]
