"""The wall screen's snapshot on real stores: grouped site figures equal the site state, one computation per tick."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from dashboard.wallboard import collect, state_summary
from tests.browser.conftest import drain
from tests.helpers import make_event, network_day

SITES = ("SEA1", "PDX2", "SFO3", "LAX4")


def test_grouped_summaries_equal_each_site_state(app, runtime):
    now = datetime.now(UTC)
    events = network_day(random.Random(5), now, SITES)
    events += [
        make_event(
            "dock.status_changed",
            time=now - timedelta(minutes=9),
            dock_id="D7",
            status="out_of_service",
            reason="flooded",
        ),
        make_event("truck.arrived", time=now - timedelta(minutes=30), route_id="RX", dock_id="D7"),
        make_event(
            "worker.shift_started", time=now - timedelta(hours=1), worker_id="PX", role="picker", hourly_cost=20
        ),
        make_event(
            "order.created",
            time=now - timedelta(hours=4),
            order_id="LATE",
            priority="standard",
            promised_start="2026-01-01T00:00:00Z",
            promised_end="2026-01-01T01:00:00Z",
        ),
    ]
    runtime.ingestor().submit(events)
    drain(runtime)
    sources = app.server.config["WALL"].sources
    now = datetime.now(UTC)
    grouped = sources.state.summaries(now)
    assert sorted(grouped) == sorted(SITES)
    for site in SITES:
        one = state_summary(sources.state.state(site, now))
        for name in (
            "trucks_waiting",
            "backlog",
            "pickers",
            "backlog_per_active_picker",
            "stuck_count",
            "out_of_service",
            "last_event_at",
        ):
            assert grouped[site][name] == one[name], (site, name)
        assert (grouped[site]["oldest_wait_s"] is None) == (one["oldest_wait_s"] is None)
    assert grouped["SEA1"]["out_of_service"] == [["D7", "flooded"]]


def test_many_screens_share_one_computation_per_tick(app, runtime):
    runtime.ingestor().submit(network_day(random.Random(6), datetime.now(UTC), SITES))
    drain(runtime)
    wall = app.server.config["WALL"]
    tick_start = (wall.snapshot.tick() + 1) * wall.sources.settings.refresh_s + 0.01
    with app.server.app_context():
        for _ in range(1000):  # a thousand screens asking within one tick
            snapshot = wall.snapshot.get(tick_start)
    assert wall.snapshot.computations == 1
    assert [row["scope"] for row in snapshot["rows"]] == ["*", *sorted(SITES)]
    assert collect(wall.sources, datetime.now(UTC))["errors"] == []


def test_the_band_leads_with_the_alert_engines_open_alerts(app, runtime):
    from dashboard.db import alerts

    runtime.ingestor().submit(network_day(random.Random(8), datetime.now(UTC), SITES))
    drain(runtime)
    now = datetime.now(UTC)
    with runtime.engine.begin() as connection:
        for rule, severity, status, message in (
            ("dock_queue", "critical", "open", "SEA1: a truck has waited 41 min at door D7"),
            ("stuck_orders", "warning", "resolved", "PDX2: 60 stuck orders"),
        ):
            connection.execute(
                alerts.insert().values(
                    rule=rule,
                    site_id=message[:4],
                    severity=severity,
                    status=status,
                    opened_at=now,
                    message=message,
                    last_true_at=now,
                    resolved_at=now if status == "resolved" else None,
                )
            )
    band = collect(app.server.config["WALL"].sources, now)["alerts"]
    assert band[0] == {
        "severity": "bad",
        "scope": "SEA1",
        "text": "SEA1: a truck has waited 41 min at door D7",
        "href": "/sites/SEA1#site-doors",  # the panel that explains it
    }
    assert all(item["text"] != "PDX2: 60 stuck orders" for item in band)  # resolved: gone from the band
