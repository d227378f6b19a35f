"""GET /api/v1/sites, /sites/{id}/state and /orders/{id}/trail on crafted events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import make_event
from tests.integration.test_api_events import drain, post

NOW = datetime.now(UTC).replace(microsecond=0)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def promise(start: datetime, end: datetime) -> dict:
    return {"promised_start": z(start), "promised_end": z(end)}


@pytest.fixture
def site(client, token, runtime):  # type: ignore[no-untyped-def]
    later = promise(NOW + timedelta(hours=1), NOW + timedelta(hours=3))
    events = [
        # Docks: D1 out of service, D2 open with two trucks waiting, one truck loading at D3.
        make_event("dock.status_changed", time=ago(50), dock_id="D1", status="open"),
        make_event("dock.status_changed", time=ago(40), dock_id="D1", status="out_of_service", reason="door jammed"),
        make_event("dock.status_changed", time=ago(90), dock_id="D2", status="open"),
        make_event("truck.arrived", time=ago(35), route_id="R1", dock_id="D2"),
        make_event("truck.arrived", time=ago(5), route_id="R2", dock_id="D2"),
        make_event("truck.arrived", time=ago(20), route_id="R3", dock_id="D3"),
        make_event("truck.loading_started", time=ago(10), route_id="R3", dock_id="D3"),
        # Labor: two pickers and a packer on shift, one picker gone home, one absent.
        make_event("worker.shift_started", time=ago(300), worker_id="P1", role="picker", hourly_cost=20),
        make_event("worker.shift_started", time=ago(290), worker_id="P2", role="picker", hourly_cost=20),
        make_event("worker.shift_started", time=ago(280), worker_id="K1", role="packer", hourly_cost=20),
        make_event("worker.shift_started", time=ago(400), worker_id="P3", role="picker", hourly_cost=20),
        make_event("worker.shift_ended", time=ago(100), worker_id="P3"),
        make_event("worker.absent", time=ago(300), worker_id="P4", role="picker"),
        # Orders: 3 in backlog (one stuck at picked), 1 packed, 1 delivered, 1 canceled, 1 late.
        make_event("order.created", time=ago(30), order_id="A", priority="standard", **later),
        make_event("order.created", time=ago(200), order_id="B", priority="express", **later),
        make_event("order.picked", time=ago(150), order_id="B", worker_id="P1"),  # stuck: 150 min at picked
        make_event("order.created", time=ago(20), order_id="C", priority="standard", **later),
        make_event("order.packed", time=ago(10), order_id="D", worker_id="K1"),
        make_event("order.created", time=ago(25), order_id="D", priority="standard", **later),
        make_event("order.created", time=ago(60), order_id="E", priority="standard", **later),
        make_event(
            "delivery.attempted",
            time=ago(3),
            order_id="E",
            attempt=1,
            outcome="delivered",
            failure_reason=None,
            **later,
        ),
        make_event("order.created", time=ago(60), order_id="F", priority="standard", **later),
        make_event("order.canceled", time=ago(2), order_id="F", reason="customer"),
        make_event("order.created", time=ago(300), order_id="G", priority="standard", **promise(ago(240), ago(120))),
        make_event("order.loaded", time=ago(100), order_id="G", route_id="R0", dock_id="D2"),
        # Another site, to check scoping.
        make_event("order.created", time=ago(5), order_id="Z", site_id="PDX2", priority="standard", **later),
    ]
    assert post(client, token("ingest"), events).status_code == 202
    drain(runtime)
    return {"Authorization": f"Bearer {token('site_lead')}"}


def test_site_state_as_of_now(client, site):
    state = client.get("/api/v1/sites/SEA1/state", headers=site).get_json()
    docks = {door["dock_id"]: door for door in state["docks"]}
    assert (docks["D1"]["status"], docks["D1"]["reason"], docks["D1"]["trucks_waiting"]) == (
        "out_of_service",
        "door jammed",
        0,
    )
    assert docks["D2"]["trucks_waiting"] == 2
    assert docks["D2"]["oldest_wait_s"] == pytest.approx((datetime.now(UTC) - ago(35)).total_seconds(), abs=10)
    assert (docks["D3"]["trucks_waiting"], docks["D3"]["oldest_wait_s"]) == (0, None)
    assert state["trucks_waiting"] == 2
    assert state["backlog"] == 3  # A, B, C
    assert state["packed_not_loaded"] == 1  # D
    assert state["active_workers"] == {"packer": 1, "picker": 2}
    assert state["absent_workers"] == 1
    assert state["backlog_per_active_picker"] == 1.5
    stuck = {order["order_id"]: order for order in state["stuck_orders"]}
    assert set(stuck) == {"B", "G"} and state["stuck_count"] == 2
    assert stuck["B"]["stage"] == "picked" and "no progress for over 60 min at picked" in stuck["B"]["reason"]
    assert stuck["G"]["reason"] == "promise passed without delivery"


def test_sites_list_with_headline_figures(client, site):
    listing = client.get("/api/v1/sites", headers=site).get_json()
    assert [entry["site_id"] for entry in listing] == ["PDX2", "SEA1"]
    sea = listing[1]
    assert (sea["backlog"], sea["trucks_waiting"], sea["stuck_count"], sea["deliveries"]) == (3, 2, 2, 1)
    assert sea["on_time_rate"] == 0.0  # delivered before its promise window opened
    assert listing[0]["backlog"] == 1


def test_unknown_site_is_404(client, site):
    response = client.get("/api/v1/sites/NOPE/state", headers=site)
    assert response.status_code == 404
    assert "NOPE" in response.get_json()["error"]


def test_order_trail_holds_the_order_and_its_route_in_time_order(client, token, runtime):
    later = promise(NOW + timedelta(hours=1), NOW + timedelta(hours=3))
    events = [
        make_event(
            "stop.arrived",
            time=ago(10),
            route_id="R7",
            driver_id="V",
            stop_seq=1,
            planned_drive_s=600,
            source="/drivers/V/app",
        ),
        make_event("order.created", time=ago(120), order_id="T1", priority="standard", **later),
        make_event("truck.departed", time=ago(30), route_id="R7", dock_id="D1", driver_id="V", source="/yard"),
        make_event("order.loaded", time=ago(40), order_id="T1", route_id="R7", dock_id="D1"),
        make_event("order.loaded", time=ago(40), order_id="OTHER", route_id="R7", dock_id="D1"),
        make_event("truck.departed", time=ago(30), route_id="R8", dock_id="D1", driver_id="W"),
    ]
    assert post(client, token("ingest"), events).status_code == 202
    drain(runtime)
    body = client.get("/api/v1/orders/T1/trail", headers={"Authorization": f"Bearer {token('viewer')}"}).get_json()
    assert body["order_id"] == "T1"
    trail = body["events"]
    assert [(e["type"], e["of"]) for e in trail] == [
        ("order.created", "order"),
        ("order.loaded", "order"),
        ("truck.departed", "route"),
        ("stop.arrived", "route"),
    ]
    assert trail[3]["source"] == "/drivers/V/app" and trail[3]["id"] == events[0]["id"]
    assert trail[0]["received_at"].startswith(str(datetime.now(UTC).year))
    missing = client.get("/api/v1/orders/NOPE/trail", headers={"Authorization": f"Bearer {token('viewer')}"})
    assert missing.status_code == 404
