"""Graceful degradation of the pages, without stores: last-known figures, plain messages, alert links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from callbacks.site import apply_acknowledgement
from callbacks.tradeoffs import alert_marks
from dashboard.settings import Settings
from dashboard.stream import PipelineStatus, StoreUnavailable
from dashboard.wallboard import ALERT_ANCHORS, LastGood, alert_href, collect, history_unavailable
from datasources.alerts import AlertConflict
from layouts import ids
from layouts.tradeoffs import series_figure

T0 = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


class Switch:
    def __init__(self) -> None:
        self.up = True

    def check(self, store: str) -> None:
        if not self.up:
            raise StoreUnavailable(f"{store}: refused")


def fake_sources(redis: Switch, database: Switch, deliveries: list[int]) -> Any:
    def summaries(now: datetime) -> dict[str, dict[str, Any]]:
        database.check("database")
        return {
            "SEA1": {
                "trucks_waiting": 2,
                "oldest_wait_s": 60.0,
                "backlog": 10,
                "pickers": 2,
                "backlog_per_active_picker": 5.0,
                "stuck_count": 0,
                "out_of_service": [],
                "last_event_at": None,
            }
        }

    def metrics(site_id: str | None, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
        redis.check("Redis")
        return {"on_time_rate": 0.97, "first_attempt_rate": 0.93, "deliveries": deliveries[0]}

    def pipeline() -> PipelineStatus:
        redis.check("Redis")
        return PipelineStatus(0, 1, 0, 0, 1, 0, None, 0.0, 0.0, 1, None, T0.timestamp())

    def current() -> dict:
        redis.check("Redis")
        return {}

    def active() -> list:
        database.check("database")
        return []

    return SimpleNamespace(
        settings=Settings(database_url="postgresql://x/y", redis_url="redis://x"),
        state=SimpleNamespace(summaries=summaries),
        live=SimpleNamespace(metrics=metrics, pipeline=pipeline, record_samples=lambda *a: True),
        modes=SimpleNamespace(current=current),
        alerts=SimpleNamespace(active=active),
    )


def tiles(snapshot: dict[str, Any], scope: str) -> dict[str, str]:
    row = next(row for row in snapshot["rows"] if row["scope"] == scope)
    return {metric: tile["text"] for metric, tile in row["tiles"].items()}


def test_redis_down_keeps_the_last_known_live_figures_and_says_since_when():
    redis, database, deliveries = Switch(), Switch(), [40]
    sources, memory = fake_sources(redis, database, deliveries), LastGood()
    good = collect(sources, T0, memory)
    assert good["errors"] == []
    redis.up = False
    later = collect(sources, T0 + timedelta(seconds=5), memory)
    assert tiles(later, "SEA1") == tiles(good, "SEA1")
    assert later["errors"] == ["Redis unreachable: live figures stale since 12:00:00 UTC (last known figures shown)"]
    assert later["freshness"]["stale"]
    redis.up = True
    back = collect(sources, T0 + timedelta(seconds=6), memory)
    assert back["errors"] == []


def test_database_down_keeps_the_sites_and_live_figures_go_on():
    redis, database, deliveries = Switch(), Switch(), [40]
    sources, memory = fake_sources(redis, database, deliveries), LastGood()
    collect(sources, T0, memory)
    database.up = False
    down = collect(sources, T0 + timedelta(seconds=3), memory)
    assert [row["scope"] for row in down["rows"]] == ["*", "SEA1"]
    assert tiles(down, "SEA1")["dock_queue"] == "2"
    assert down["errors"] == ["PostgreSQL unreachable: site state stale since 12:00:00 UTC (last known figures shown)"]


def test_a_store_down_from_the_start_says_there_is_nothing_yet():
    redis, database = Switch(), Switch()
    redis.up = False
    snapshot = collect(fake_sources(redis, database, [1]), T0, LastGood())
    assert snapshot["errors"][0].startswith("Redis unreachable: no live figures yet (Redis: refused)")


def test_history_views_say_plainly_that_history_is_down():
    assert history_unavailable("PostgreSQL", T0) == (
        "History is unavailable (PostgreSQL unreachable since 12:00:00 UTC); live figures continue"
    )


def test_alerts_link_to_the_panel_that_explains_them():
    assert set(ALERT_ANCHORS.values()) == {ids.SITE_DOORS, ids.SITE_LABOR, ids.SITE_STUCK}
    assert alert_href("dock_queue", "SEA1") == "/sites/SEA1#site-doors"
    assert alert_href("labor_imbalance", "SEA1") == "/sites/SEA1#site-labor"
    assert alert_href("stuck_orders", "SEA1") == "/sites/SEA1#site-stuck"
    assert alert_href("on_time_drop", "SEA1") == "/sites/SEA1"
    assert alert_href("pipeline_lag", "*") == "/pipeline"


def alert(**values: Any) -> Any:
    base = {
        "id": 1,
        "rule": "dock_queue",
        "site_id": "SEA1",
        "severity": "warning",
        "message": "SEA1: a truck waits",
        "opened_at": T0,
        "resolved_at": None,
        "resolved_by": None,
    }
    return SimpleNamespace(**{**base, **values})


def test_alert_openings_and_resolutions_are_marked_on_the_time_charts():
    marks = alert_marks(
        [
            alert(),
            alert(id=2, opened_at=T0 - timedelta(days=2), resolved_at=T0 + timedelta(hours=1), resolved_by="auto"),
        ],
        T0 - timedelta(hours=1),
        T0 + timedelta(hours=2),
    )
    assert [(m["kind"], m["time"]) for m in marks] == [
        ("opened", "2026-12-03T12:00:00Z"),
        ("resolved", "2026-12-03T13:00:00Z"),
    ]
    figure = series_figure([], [], marks)
    texts = [a["text"] for a in figure["layout"]["annotations"]]
    assert texts.count("alert opened: dock queue") == 3  # one per chart
    assert texts.count("alert resolved: dock queue") == 3


def ack_sources(role: str, outcome: Exception | None = None) -> Any:
    done: list[tuple] = []

    def acknowledge(alert_id: int, actor: str, comment: str, now: datetime) -> None:
        if outcome is not None:
            raise outcome
        done.append((alert_id, actor, comment))

    settings = Settings(dashboard_role=role)
    return SimpleNamespace(
        settings=settings,
        controls_enabled=role in ("operator", "admin"),
        alerts=SimpleNamespace(acknowledge=acknowledge),
        done=done,
    )


def test_acknowledging_needs_the_role_and_a_comment():
    viewer = ack_sources("viewer")
    assert "refused" in apply_acknowledgement(viewer, {"id": 3}, "on it", T0)
    assert viewer.done == []
    operator = ack_sources("operator")
    assert apply_acknowledgement(operator, {"id": 3}, "   ", T0) == "a comment is required"
    assert apply_acknowledgement(operator, {"id": 3}, " moving pickers ", T0) is None
    assert operator.done == [(3, "wall-screen-operator", "moving pickers")]
    resolved = ack_sources("admin", AlertConflict("alert 3 is already resolved"))
    assert apply_acknowledgement(resolved, {"id": 3}, "late", T0) == "alert 3 is already resolved"
    down = ack_sources("operator", StoreUnavailable("database: refused"))
    assert apply_acknowledgement(down, {"id": 3}, "x", T0) == "not acknowledged: database: refused"
