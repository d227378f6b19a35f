"""Edge cases of each metric, through the API, history and live alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from datasources.history import HistorySource
from datasources.live import LiveSource
from tests.helpers import make_event
from tests.integration.test_api_events import drain, post

NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=4)  # a whole minute, 4 hours ago


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def load(client, token, runtime):  # type: ignore[no-untyped-def]
    ingest = token("ingest")

    def send(*events):  # type: ignore[no-untyped-def]
        assert post(client, ingest, list(events)).status_code == 202
        drain(runtime)

    return send


@pytest.fixture
def query(client, token, runtime):  # type: ignore[no-untyped-def]
    viewer = token("viewer")
    live = LiveSource(runtime.redis, runtime.keys)

    def ask(start: datetime, end: datetime, site_id: str | None = None) -> dict:
        params = {"start": z(start), "end": z(end)} | ({"site_id": site_id} if site_id else {})
        response = client.get("/api/v1/metrics", query_string=params, headers={"Authorization": f"Bearer {viewer}"})
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        from_live = live.metrics(site_id, start, end, datetime.now(UTC))
        for name in (
            "attempts",
            "deliveries",
            "on_time_rate",
            "first_attempt_rate",
            "failure_reasons",
            "p95_driver_idle_s",
            "p95_dock_wait_s",
            "p95_ready_to_truck_s",
        ):
            assert from_live[name] == answer[name], name
        return answer

    return ask


def test_empty_range_gives_zero_counts_and_nulls(query):
    answer = query(at(0), at(60))
    assert answer == {
        "site_id": None,
        "start": z(at(0)),
        "end": z(at(60)),
        "attempts": 0,
        "deliveries": 0,
        "on_time_rate": None,
        "first_attempt_rate": None,
        "failure_reasons": {},
        "p95_driver_idle_s": None,
        "p95_dock_wait_s": None,
        "p95_ready_to_truck_s": None,
        "labor_cost": 0.0,
        "cost_per_delivery": None,
    }


def test_half_of_a_pair_gives_no_sample(load, query):
    load(
        make_event("truck.loading_started", time=at(10), route_id="R9", dock_id="D1"),  # no arrival
        make_event("stop.arrived", time=at(20), route_id="R9", driver_id="X", stop_seq=2, planned_drive_s=60),
        make_event("order.loaded", time=at(5), order_id="O9", route_id="R9", dock_id="D1"),  # no packing
    )
    answer = query(at(0), at(60))
    assert (answer["p95_dock_wait_s"], answer["p95_driver_idle_s"], answer["p95_ready_to_truck_s"]) == (
        None,
        None,
        None,
    )


def test_a_late_half_completes_the_pair_in_the_bucket_of_its_anchor(load, query):
    load(make_event("truck.loading_started", time=at(30), route_id="R1", dock_id="D1"))
    first = query(at(29), at(31))
    assert first["p95_dock_wait_s"] is None
    # Hours later the arrival comes in; it is attributed to the loading's minute.
    load(make_event("truck.arrived", time=at(10), route_id="R1", dock_id="D1"))
    assert query(at(29), at(31))["p95_dock_wait_s"] == pytest.approx(1200, rel=0.02)
    assert query(at(9), at(11))["p95_dock_wait_s"] is None


def test_a_later_departure_arriving_late_replaces_the_idle_sample(load, query):
    load(
        make_event("truck.departed", time=at(0), route_id="R2", dock_id="D1", driver_id="V"),
        make_event("stop.arrived", time=at(30), route_id="R2", driver_id="V", stop_seq=1, planned_drive_s=600),
    )
    assert query(at(0), at(60))["p95_driver_idle_s"] == pytest.approx(1200, rel=0.02)
    load(
        make_event("stop.departed", time=at(40), route_id="R2", driver_id="V", stop_seq=1),
        make_event("stop.arrived", time=at(55), route_id="R2", driver_id="V", stop_seq=2, planned_drive_s=1200),
    )
    answer = query(at(0), at(60))
    # Stop 2: 15 min drive, 20 min planned: no idle. Samples 1200 and 0: the p95 is 1200.
    assert answer["p95_driver_idle_s"] == pytest.approx(1200, rel=0.02)
    assert query(at(50), at(60))["p95_driver_idle_s"] == pytest.approx(0.5, abs=1)


def test_a_reattempt_is_measured_from_its_second_packing(load, query):
    promise = {"promised_start": z(at(0)), "promised_end": z(at(120))}
    load(
        make_event("order.packed", time=at(0), order_id="O1", worker_id="P1"),
        make_event("order.loaded", time=at(10), order_id="O1", route_id="R1", dock_id="D1"),
        make_event(
            "delivery.attempted",
            time=at(30),
            order_id="O1",
            route_id="R1",
            attempt=1,
            outcome="failed",
            failure_reason="customer_absent",
            **promise,
        ),
        make_event("order.loaded", time=at(100), order_id="O1", route_id="R2", dock_id="D1"),
        make_event(
            "delivery.attempted",
            time=at(130),
            order_id="O1",
            route_id="R2",
            attempt=2,
            outcome="delivered",
            failure_reason=None,
            **promise,
        ),
    )
    before = query(at(95), at(105))
    assert before["p95_ready_to_truck_s"] == pytest.approx(6000, rel=0.02)  # from the first packing, for now
    load(make_event("order.packed", time=at(90), order_id="O1", worker_id="P1"))  # the second packing, late
    assert query(at(95), at(105))["p95_ready_to_truck_s"] == pytest.approx(600, rel=0.02)
    answer = query(at(0), at(180))
    assert (answer["attempts"], answer["deliveries"], answer["first_attempt_rate"]) == (2, 1, 0.0)
    assert answer["on_time_rate"] == 0.0  # delivered after promised_end
    assert answer["failure_reasons"] == {"customer_absent": 1}
    assert answer["p95_ready_to_truck_s"] == pytest.approx(600, rel=0.02)  # samples 600 (first load) and 600


def test_open_shift_runs_to_now_and_a_range_edge_cuts_shifts(load, query, runtime):
    load(
        make_event("worker.shift_started", time=at(0), worker_id="W1", role="picker", hourly_cost=36.0),
        make_event("worker.shift_ended", time=at(30), worker_id="W1"),
        make_event("worker.shift_started", time=at(40), worker_id="W2", role="packer", hourly_cost=18.0),
    )
    # W1: 10 of its 30 minutes fall in [20, 50); W2 (open): 10 minutes, 40..50.
    assert query(at(20), at(50))["labor_cost"] == pytest.approx(36 * 10 / 60 + 18 * 10 / 60, abs=0.01)
    history = HistorySource(runtime.engine)
    later = datetime.now(UTC)
    open_minutes = (later - at(40)).total_seconds() / 60
    assert history.metrics(None, at(0), at(24 * 60), later)["labor_cost"] == pytest.approx(
        36 * 30 / 60 + 18 * open_minutes / 60, abs=0.01
    )
    # The shift end arrives late: the open shift closes at 70 minutes.
    load(make_event("worker.shift_ended", time=at(70), worker_id="W2"))
    assert query(at(0), at(24 * 60 - 60))["labor_cost"] == pytest.approx(18 + 9, abs=0.01)


def test_bad_metric_queries_are_400_with_a_reason(client, token):
    viewer = {"Authorization": f"Bearer {token('viewer')}"}
    cases = {
        "start=2026-10-05T00:00:30Z&end=2026-10-06T00:00:00Z": "whole minute",
        "start=2026-10-06T00:00:00Z&end=2026-10-05T00:00:00Z": "before end",
        "start=yesterday&end=2026-10-06T00:00:00Z": "start",
        "start=2026-10-05T00:00:00&end=2026-10-06T00:00:00Z": "offset",
        "end=2026-10-06T00:00:00Z": "give start and end",
        "window=2d": "window must be one of 15m, 1h, 24h",
        "window=1h&start=2026-10-05T00:00:00Z": "not both",
        "window=1h&site_id=a%20b": "site_id",
    }
    for query_string, message in cases.items():
        response = client.get(f"/api/v1/metrics?{query_string}", headers=viewer)
        assert response.status_code == 400, query_string
        assert message in response.get_json()["error"], (query_string, response.get_json())


def test_window_queries_end_with_the_current_minute(client, token, load):
    load(
        make_event(
            "delivery.attempted",
            time=datetime.now(UTC) - timedelta(seconds=5),
            attempt=1,
            outcome="delivered",
            failure_reason=None,
            promised_start=z(NOW),
            promised_end=z(NOW + timedelta(hours=5)),
        )
    )
    viewer = {"Authorization": f"Bearer {token('viewer')}"}
    for window, minutes in (("15m", 15), ("1h", 60), ("24h", 1440)):
        body = client.get(f"/api/v1/metrics?window={window}&site_id=SEA1", headers=viewer).get_json()
        start, end = (datetime.fromisoformat(body[k].replace("Z", "+00:00")) for k in ("start", "end"))
        assert end - start == timedelta(minutes=minutes)
        assert end > datetime.now(UTC) - timedelta(seconds=1) and end.second == 0
        assert (body["site_id"], body["attempts"], body["deliveries"], body["on_time_rate"]) == ("SEA1", 1, 1, 1.0)
