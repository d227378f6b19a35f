"""The wall screen's view model: what one tick sends every screen, and the small refresh request that asks for it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from dash import Dash, html

from callbacks import wall as wall_callbacks
from callbacks.wall import WallData, compact_pipeline
from dashboard.settings import DEFAULT_TILE_THRESHOLDS, Settings
from dashboard.stream import PipelineStatus
from dashboard.wallboard import build_snapshot, network_summary
from layouts import ids
from layouts.wall import tile_key, view_model

NOW = datetime(2026, 12, 3, 12, 30, 15, tzinfo=UTC)
PIPELINE = PipelineStatus(0, 10, 1, 0, 10, 0, None, 2.0, 2.0, 1, None, NOW.timestamp())
SEA1 = {
    "trucks_waiting": 2,
    "oldest_wait_s": 2000.0,
    "backlog": 30,
    "pickers": 2,
    "backlog_per_active_picker": 15.0,
    "stuck_count": 4,
    "out_of_service": [["D1", "jammed"]],
    "last_event_at": "2026-12-03T12:30:00.000000Z",
}
MODE = {"mode": "priority_only", "site_id": "SEA1", "changed_by": "ops", "reason": "storm", "params": {}}


def snapshot(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "now": NOW,
        "window": "1h",
        "site_ids": ["SEA1"],
        "figures": {
            "*": {"on_time_rate": 0.5, "first_attempt_rate": 0.97, "deliveries": 2, "cost_per_delivery": 4.319},
            "SEA1": {"on_time_rate": 0.99, "deliveries": 1_234},
        },
        "summaries": {"SEA1": SEA1, "*": network_summary([SEA1])},
        "modes": [{**MODE, "changed_at": None}],
        "pipeline": PIPELINE,
        "errors": [],
        "thresholds": DEFAULT_TILE_THRESHOLDS,
        "stale_after_s": 30.0,
    }
    return build_snapshot(**{**arguments, **overrides})


def view(snap: dict[str, Any] | None = None) -> dict[str, Any]:
    snap = snap if snap is not None else snapshot()
    return view_model(snap, 30.0, compact_pipeline(snap["pipeline"], 1000))


def texts(children: Any) -> list[str]:
    """Return every string in a rendered component tree, depth first."""
    if isinstance(children, str):
        return [children]
    if isinstance(children, list):
        return [text for child in children for text in texts(child)]
    if isinstance(children, dict):
        return texts(children.get("props", {}).get("children"))
    return []


def test_tiles_are_keyed_by_scope_and_metric_with_text_sub_and_class() -> None:
    tiles = view()["tiles"]
    assert len(tiles) == 12  # two rows of six
    assert tiles["*|on_time_rate"] == {"text": "50.0%", "sub": "", "class": "wtile wtile-bad"}
    assert tiles["*|first_attempt_rate"] == {"text": "97.0%", "sub": "", "class": "wtile wtile-ok"}
    assert tiles["*|cost_per_delivery"] == {"text": "4.32", "sub": "2 deliveries", "class": "wtile wtile-ok"}
    assert tiles["SEA1|on_time_rate"]["text"] == "99.0%"
    assert tiles["SEA1|cost_per_delivery"] == {"text": "—", "sub": "1,234 deliveries", "class": "wtile wtile-none"}
    assert tiles["SEA1|dock_queue"] == {"text": "2", "sub": "oldest 33 min", "class": "wtile wtile-bad"}
    assert tiles["SEA1|backlog_per_active_picker"]["text"] == "15.0"
    assert tile_key("SEA1", "dock_queue") == "SEA1|dock_queue"


def test_header_banner_scopes_and_focus() -> None:
    shown = view()
    assert shown["as_of"] == NOW.timestamp() and shown["stale_after_s"] == 30.0
    assert shown["as_of_text"] == "data as of 12:30:15 UTC"
    assert shown["freshness"] == "pipeline caught up · last event 12:30:00 UTC"
    assert shown["banner"] == ""
    assert shown["scopes"] == ["*", "SEA1"]
    focus = "SEA1 — 2 trucks waiting (oldest 33 min) · door D1 out of service (jammed) · 4 stuck orders"
    assert shown["focus"]["SEA1"].startswith(focus)
    assert shown["focus"]["SEA1"].endswith("modes: priority_only")
    assert shown["missing"] == {"text": "—", "sub": "", "class": "wtile wtile-none"}


def test_banner_says_stale_and_names_a_store_that_is_down() -> None:
    lagging = PipelineStatus(5, 10, 0, 0, 5, 0, 45.0, 0.0, 0.0, 1, None, NOW.timestamp())
    assert view(snapshot(pipeline=lagging))["banner"] == "STALE: figures are 45 s behind the events (threshold 30 s)"
    down = view(snapshot(errors=["Redis unreachable: live figures stale since 12:29:00 UTC"]))
    assert down["banner"] == "Redis unreachable: live figures stale since 12:29:00 UTC"


def test_band_and_pipeline_are_rendered_components_with_a_fingerprint() -> None:
    shown = view()
    band = shown["band"]["children"]
    assert [part["props"]["className"] for part in band] == ["band-part", "band-part band-modes"]
    words = texts(band)
    assert words[0] == f"Alerts ({len(snapshot()['alerts'])})"
    assert "SEA1: door D1 out of service (jammed)" in words
    assert "priority only · SEA1" in words
    links = [
        chip["props"]["children"]["props"]["href"]
        for chip in band[0]["props"]["children"][1:]
        if isinstance(chip["props"]["children"], dict)
    ]
    assert "/sites/SEA1#site-doors" in links
    strip = shown["pipeline"]["children"]
    assert [tile["props"]["data-ptile"] for tile in strip] == list(wall_callbacks.COMPACT_PIPELINE)
    assert texts(strip)[:4] == ["Ingest rate", "2/s", "Backlog", "0"]

    assert view()["band"]["key"] == shown["band"]["key"]  # same figures, same fingerprint
    calmer = view(snapshot(modes=[]))
    assert calmer["band"]["key"] != shown["band"]["key"]
    assert calmer["pipeline"]["key"] == shown["pipeline"]["key"]
    unknown = view(snapshot(pipeline=None))
    assert texts(unknown["pipeline"]["children"]) == ["Pipeline figures unavailable"]


def test_the_view_is_plain_json_of_a_few_kilobytes() -> None:
    encoded = orjson.dumps(view())
    assert orjson.loads(encoded) == view()
    assert len(encoded) < 8_000


class FixedSnapshot:
    def __init__(self) -> None:
        self.value = snapshot()

    def get(self, now: float | None = None, *, wait: bool = True) -> dict[str, Any]:
        return self.value


def wall_data(settings: Settings) -> WallData:
    data = WallData(SimpleNamespace(settings=settings, cache=None))  # type: ignore[arg-type]
    data.snapshot = FixedSnapshot()  # type: ignore[assignment]
    return data


def test_wall_data_builds_one_view_per_snapshot() -> None:
    data = wall_data(Settings())
    first = data.view()
    assert data.view() is first  # every screen of the tick gets the same object
    data.snapshot.value = snapshot(modes=[])  # type: ignore[attr-defined]
    second = data.view()
    assert second is not first and second["band"]["key"] != first["band"]["key"]


@pytest.mark.parametrize("refresh_s", [1.0, 2.0])
def test_the_shared_snapshot_ticks_every_half_refresh(refresh_s: float) -> None:
    data = WallData(SimpleNamespace(settings=Settings(refresh_s=refresh_s), cache=None))  # type: ignore[arg-type]
    start = 1_700_000_000.0
    assert data.snapshot.tick(start + refresh_s / 2) == data.snapshot.tick(start) + 1
    assert data.snapshot.tick(start + refresh_s / 4) == data.snapshot.tick(start)


@pytest.fixture
def client() -> Any:
    app = Dash(__name__)
    app.layout = html.Div()
    data = wall_data(Settings())
    data.series = SimpleNamespace(get=lambda wait=True: {"series": {}})  # type: ignore[assignment]
    wall_callbacks.register(app, data)
    return app.server.test_client(), data


def test_the_refresh_request_is_small_and_answers_the_shared_view(client: Any) -> None:
    test_client, data = client
    body = {
        "output": f"{ids.WALL_VIEW}.data",
        "outputs": {"id": ids.WALL_VIEW, "property": "data"},
        "inputs": [{"id": ids.WALL_INTERVAL, "property": "n_intervals", "value": 7}],
        "changedPropIds": [f"{ids.WALL_INTERVAL}.n_intervals"],
    }
    assert len(orjson.dumps(body)) < 300
    response = test_client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    assert response.get_json()["response"][ids.WALL_VIEW]["data"] == orjson.loads(orjson.dumps(data.view()))


def test_the_sparkline_request_answers_nothing_when_no_line_changed(client: Any) -> None:
    test_client, _ = client
    body = {
        "output": f"{ids.WALL_SPARK_VIEW}.data",
        "outputs": {"id": ids.WALL_SPARK_VIEW, "property": "data"},
        "inputs": [{"id": ids.WALL_SPARK_INTERVAL, "property": "n_intervals", "value": 1}],
        "changedPropIds": [f"{ids.WALL_SPARK_INTERVAL}.n_intervals"],
        "state": [{"id": ids.WALL_SPARK_VERSIONS, "property": "data", "value": {}}],
    }
    response = test_client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    assert response.get_json()["response"] == {}  # no_update: the browser has nothing to apply
