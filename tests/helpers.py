"""Builders for valid events and small helpers shared by the test tiers."""

from __future__ import annotations

import itertools
import json
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
