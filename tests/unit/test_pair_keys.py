"""The keys a batch's pairing looks up: each new event's own pair, on either side."""

from __future__ import annotations

from datetime import UTC, datetime

from dashboard.aggregates import PairKeys
from dashboard.metrics import Fact

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def fact(kind: str, **data: object) -> Fact:
    return Fact(("/test", f"{kind}-{data}"), kind, "SEA1", T0, {"site_id": "SEA1", **data})


def test_a_stop_arrival_looks_up_the_departure_before_it() -> None:
    keys = PairKeys.of([fact("stop.arrived", route_id="R1", stop_seq=3, planned_drive_s=600)])
    assert keys.arrivals == {("R1", 3)}
    assert keys.departures == {("R1", 2)}
    assert not keys.dock_routes and not keys.orders


def test_a_departure_looks_up_the_next_arrival_and_the_truck_is_stop_zero() -> None:
    keys = PairKeys.of(
        [fact("truck.departed", route_id="R1", dock_id="D1"), fact("stop.departed", route_id="R2", stop_seq=4)]
    )
    assert keys.departures == {("R1", 0), ("R2", 4)}
    assert keys.arrivals == {("R1", 1), ("R2", 5)}


def test_truck_arrival_and_loading_name_the_route_and_orders_name_the_order() -> None:
    keys = PairKeys.of(
        [
            fact("truck.arrived", route_id="R1", dock_id="D1"),
            fact("truck.loading_started", route_id="R2", dock_id="D2"),
            fact("order.packed", order_id="O1"),
            fact("order.loaded", order_id="O2", route_id="R3"),
        ]
    )
    assert keys.dock_routes == {"R1", "R2"}
    assert keys.orders == {"O1", "O2"}
    assert not keys.arrivals


def test_events_that_pair_with_nothing_need_no_lookup() -> None:
    keys = PairKeys.of([fact("order.created", order_id="O1"), fact("delivery.attempted", order_id="O1", stop_seq=2)])
    assert not keys


def test_only_the_named_halves_are_wanted() -> None:
    keys = PairKeys.of([fact("stop.arrived", route_id="R1", stop_seq=3, planned_drive_s=600)])
    assert keys.wants(fact("stop.departed", route_id="R1", stop_seq=2))
    assert keys.wants(fact("stop.arrived", route_id="R1", stop_seq=3))
    assert not keys.wants(fact("stop.departed", route_id="R1", stop_seq=3))
    assert not keys.wants(fact("stop.arrived", route_id="R1", stop_seq=4))
    assert not keys.wants(fact("truck.departed", route_id="R1", dock_id="D1"))


def test_splitting_by_busy_locks_moves_each_pair_whole_to_one_side() -> None:
    keys = PairKeys.of(
        [
            fact("truck.departed", route_id="R1", dock_id="D1"),  # the gap before stop 1 of R1
            fact("stop.arrived", route_id="R2", stop_seq=3, planned_drive_s=600),  # the gap before stop 3 of R2
            fact("truck.arrived", route_id="R3", dock_id="D3"),
            fact("order.packed", order_id="O1"),
        ]
    )
    assert keys.lock_names() == {"idle:R1:1", "idle:R2:3", "dock:R3", "r2t:O1"}

    free, busy = keys.split({"idle:R2:3", "r2t:O1", "idle:R9:1"})

    assert (busy.arrivals, busy.departures, busy.orders, busy.dock_routes) == ({("R2", 3)}, {("R2", 2)}, {"O1"}, set())
    assert (free.arrivals, free.departures, free.dock_routes, free.orders) == ({("R1", 1)}, {("R1", 0)}, {"R3"}, set())
    assert free.lock_names() | busy.lock_names() == keys.lock_names()
    assert keys.split(set()) == (keys, PairKeys())
