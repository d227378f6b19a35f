"""Builders for valid events and small helpers shared by the test tiers."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
_serial = itertools.count()

# The data fields of one valid event of each type, besides site_id.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "order.created": {
        "order_id": "O1",
        "promised_start": "2026-10-06T10:00:00Z",
        "promised_end": "2026-10-06T12:00:00Z",
        "priority": "standard",
    },
    "slot.changed": {
        "order_id": "O1",
        "promised_start": "2026-10-06T12:00:00Z",
        "promised_end": "2026-10-06T14:00:00Z",
    },
    "order.canceled": {"order_id": "O1", "reason": "customer request"},
    "order.picked": {"order_id": "O1", "worker_id": "W1"},
    "order.packed": {"order_id": "O1", "worker_id": "W2"},
    "order.loaded": {"order_id": "O1", "route_id": "R1", "dock_id": "D1"},
    "dock.status_changed": {"dock_id": "D1", "status": "out_of_service", "reason": "door motor fault"},
    "truck.arrived": {"route_id": "R1", "dock_id": "D1"},
    "truck.loading_started": {"route_id": "R1", "dock_id": "D1"},
    "truck.departed": {"route_id": "R1", "dock_id": "D1", "driver_id": "DRV1"},
    "stop.arrived": {"route_id": "R1", "driver_id": "DRV1", "stop_seq": 1, "planned_drive_s": 600.5},
    "stop.departed": {"route_id": "R1", "driver_id": "DRV1", "stop_seq": 1},
    "delivery.attempted": {
        "order_id": "O1",
        "route_id": "R1",
        "driver_id": "DRV1",
        "stop_seq": 1,
        "attempt": 1,
        "outcome": "delivered",
        "failure_reason": None,
        "promised_start": "2026-10-06T10:00:00Z",
        "promised_end": "2026-10-06T12:00:00Z",
    },
    "driver.delayed": {"route_id": "R1", "driver_id": "DRV1", "delay_s": 300, "reason": "traffic"},
    "worker.shift_started": {"worker_id": "W1", "role": "picker", "hourly_cost": 24.5},
    "worker.shift_ended": {"worker_id": "W1"},
    "worker.absent": {"worker_id": "W3", "role": "packer"},
    "mode.changed": {"mode": "pause_reslotting", "enabled": True, "actor": "ops", "reason": "WMS slow"},
}


def make_event(
    event_type: str = "order.picked",
    *,
    event_id: str | None = None,
    source: str = "/sites/SEA1/wms",
    time: datetime | str | None = None,
    site_id: str = "SEA1",
    **data: Any,
) -> dict[str, Any]:
    """Return a valid event of ``event_type``; keyword arguments override data fields."""
    when = time or datetime(2026, 10, 6, 10, 30, tzinfo=UTC) + timedelta(seconds=next(_serial) % 3600)
    return {
        "specversion": "1.0",
        "id": event_id or f"evt-{next(_serial)}",
        "source": source,
        "type": event_type,
        "time": when if isinstance(when, str) else when.isoformat().replace("+00:00", "Z"),
        "data": {"site_id": site_id, **SAMPLE_DATA[event_type], **data},
    }


def golden_events() -> list[dict[str, Any]]:
    """Return the golden fixture's events, duplicates included, in file order."""
    return [json.loads(line) for line in (GOLDEN / "events.jsonl").read_text().splitlines() if line.strip()]


def golden_invalid() -> list[dict[str, Any]]:
    """Return the golden fixture's invalid cases: {"why": ..., "event": ...}."""
    return [json.loads(line) for line in (GOLDEN / "invalid.jsonl").read_text().splitlines() if line.strip()]


def network_day(rng: random.Random, now: datetime, sites: tuple[str, ...] = ("SEA1", "PDX2")) -> list[dict[str, Any]]:
    """Return a small, valid event log of the last few hours: shifts, orders, trucks, stops, deliveries.

    It holds every kind of pair the metrics use, re-attempts with a second
    packing, failed deliveries, open shifts and a shift cut by any range.
    """
    log: list[dict[str, Any]] = []
    origin = now.replace(second=0, microsecond=0) - timedelta(hours=6)

    def at(minutes: float) -> datetime:
        return min(origin + timedelta(minutes=minutes), now)

    def add(event_type: str, when: datetime, site: str, source: str, **data: Any) -> None:
        log.append(make_event(event_type, event_id=f"g{len(log)}", source=source, time=when, site_id=site, **data))

    for site in sites:
        wms, yard = f"/sites/{site}/wms", f"/sites/{site}/yard"
        for n in range(3):
            worker = f"{site}-W{n}"
            add(
                "worker.shift_started",
                at(rng.uniform(0, 30)),
                site,
                wms,
                worker_id=worker,
                role=("picker", "packer", "loader")[n],
                hourly_cost=round(rng.uniform(18, 35), 2),
            )
            if n < 2:  # the third shift stays open: it runs to now
                add("worker.shift_ended", at(rng.uniform(300, 340)), site, wms, worker_id=worker)
        for r in range(2):
            route, dock, driver = f"{site}-R{r}", f"D{r}", f"{site}-DRV{r}"
            arrived = rng.uniform(60, 120)
            loading = arrived + rng.uniform(1, 40)
            departed = loading + rng.uniform(10, 30)
            add("truck.arrived", at(arrived), site, yard, route_id=route, dock_id=dock)
            add("truck.loading_started", at(loading), site, yard, route_id=route, dock_id=dock)
            add("truck.departed", at(departed), site, yard, route_id=route, dock_id=dock, driver_id=driver)
            clock = departed
            for stop in range(1, 5):
                order = f"{site}-O{r}{stop}"
                created = rng.uniform(0, 40)
                start_promise = origin + timedelta(minutes=departed + rng.choice((-60, 0, 30)))
                promise = {
                    "promised_start": start_promise.isoformat().replace("+00:00", "Z"),
                    "promised_end": (start_promise + timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
                }
                add("order.created", at(created), site, wms, order_id=order, priority="standard", **promise)
                add("order.picked", at(created + 5), site, wms, order_id=order, worker_id=f"{site}-W0")
                add("order.packed", at(created + 9), site, wms, order_id=order, worker_id=f"{site}-W1")
                add("order.loaded", at(loading + 5), site, yard, order_id=order, route_id=route, dock_id=dock)
                planned = rng.uniform(300, 900)
                clock += planned / 60 + rng.uniform(0, 15)
                add(
                    "stop.arrived",
                    at(clock),
                    site,
                    f"/drivers/{driver}/app",
                    route_id=route,
                    driver_id=driver,
                    stop_seq=stop,
                    planned_drive_s=round(planned, 1),
                )
                failed = rng.random() < 0.3
                add(
                    "delivery.attempted",
                    at(clock + 2),
                    site,
                    f"/drivers/{driver}/app",
                    order_id=order,
                    route_id=route,
                    driver_id=driver,
                    stop_seq=stop,
                    attempt=1,
                    outcome="failed" if failed else "delivered",
                    failure_reason=rng.choice(("customer_absent", "refused", "weather")) if failed else None,
                    **promise,
                )
                clock += rng.uniform(3, 8)
                add(
                    "stop.departed",
                    at(clock),
                    site,
                    f"/drivers/{driver}/app",
                    route_id=route,
                    driver_id=driver,
                    stop_seq=stop,
                )
                if failed:  # packed again, loaded on a second route, second attempt
                    route2 = f"{route}-2"
                    add("order.packed", at(clock + 20), site, wms, order_id=order, worker_id=f"{site}-W1")
                    add("order.loaded", at(clock + 60), site, yard, order_id=order, route_id=route2, dock_id=dock)
                    add("truck.departed", at(clock + 70), site, yard, route_id=route2, dock_id=dock, driver_id=driver)
                    add(
                        "stop.arrived",
                        at(clock + 95),
                        site,
                        f"/drivers/{driver}/app",
                        route_id=route2,
                        driver_id=driver,
                        stop_seq=1,
                        planned_drive_s=900.0,
                    )
                    add(
                        "delivery.attempted",
                        at(clock + 96),
                        site,
                        f"/drivers/{driver}/app",
                        order_id=order,
                        route_id=route2,
                        driver_id=driver,
                        stop_seq=1,
                        attempt=2,
                        outcome="delivered",
                        failure_reason=None,
                        **promise,
                    )
    return log


class ListSink:
    """A simulator sink that keeps the events in a list."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, batch: list[dict[str, Any]]) -> None:
        self.events.extend(batch)
