"""The event model of the contract (section 1) and its validation.

Validation is table-driven: each event type lists its ``data`` fields with a
check, so a rejection always names the field that broke the rule. It works on
already-parsed JSON (dicts and lists from orjson) and does no I/O.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SPECVERSION = "1.0"
MAX_FUTURE = timedelta(minutes=5)
EARLIEST = datetime.fromisoformat("2000-01-01T00:00:00+00:00")

ROLES = ("picker", "packer", "loader", "driver")
FAILURE_REASONS = (
    "customer_absent",
    "access_denied",
    "address_not_found",
    "damaged",
    "refused",
    "weather",
    "vehicle_issue",
    "other",
)
# Ids that tie events of one order, route, worker or door together.
CORRELATION_FIELDS = ("order_id", "route_id", "driver_id", "worker_id", "dock_id")

_SITE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# RFC 3339 date-time; fromisoformat alone would also take ISO 8601 forms
# such as '20261006T101010Z' or a missing offset.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


class InvalidEvent(ValueError):
    """An event breaks a rule of the contract; ``field`` names where."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Event:
    """A valid event: the parsed JSON object plus the fields everyone needs."""

    source: str
    id: str
    type: str
    time: datetime
    site_id: str
    raw: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        """Return the event's ``data`` object."""
        return self.raw["data"]


# -- checks: each returns None or raises InvalidEvent naming the field -------

Check = Callable[[str, Any], None]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _string(min_len: int, max_len: int) -> Check:
    def check(field: str, value: Any) -> None:
        if not isinstance(value, str):
            raise InvalidEvent(field, f"must be a string, got {_describe(value)}")
        if not min_len <= len(value) <= max_len:
            raise InvalidEvent(field, f"must be {min_len} to {max_len} characters, got {len(value)}")

    return check


def _site_id(field: str, value: Any) -> None:
    if not isinstance(value, str) or not _SITE_ID.fullmatch(value):
        raise InvalidEvent(field, f"must match ^[A-Za-z0-9_-]{{1,32}}$, got {_describe(value)}")


def _non_negative_number(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(field, f"must be a number, got {_describe(value)}")
    if not value >= 0 or value == float("inf"):
        raise InvalidEvent(field, f"must be a finite number >= 0, got {value}")


def _positive_integer(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidEvent(field, f"must be an integer >= 1, got {_describe(value)}")


def _boolean(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidEvent(field, f"must be true or false, got {_describe(value)}")


def _one_of(*allowed: str) -> Check:
    def check(field: str, value: Any) -> None:
        if value not in allowed:
            raise InvalidEvent(field, f"must be one of {', '.join(allowed)}; got {_describe(value)}")

    return check


def parse_timestamp(field: str, value: Any) -> datetime:
    """Parse an RFC 3339 timestamp with an offset, year 2000 or later."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise InvalidEvent(
            field,
            f"must be an RFC 3339 time with an offset, e.g. 2026-10-06T10:52:31Z; got {_describe(value)}",
        )
    try:
        # RFC 3339 allows a lower-case 't' and 'z'; fromisoformat rejects 'z'.
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        raise InvalidEvent(field, f"is not a real date and time: {_describe(value)}") from None
    if moment < EARLIEST:
        raise InvalidEvent(field, f"must be in the year 2000 or later, got {value}")
    return moment


def _timestamp(field: str, value: Any) -> None:
    parse_timestamp(field, value)


_ID = _string(1, 64)
# Free text (reasons): any string; the 4 MiB body limit bounds it.
_TEXT = _string(0, sys.maxsize)
_PROMISE = {"promised_start": _timestamp, "promised_end": _timestamp}

# type -> {field: check}; every field listed is required unless in OPTIONAL.
DATA_FIELDS: dict[str, dict[str, Check]] = {
    "order.created": {
        "order_id": _ID,
        **_PROMISE,
        "priority": _one_of("standard", "express"),
    },
    "slot.changed": {"order_id": _ID, **_PROMISE},
    "order.canceled": {"order_id": _ID, "reason": _TEXT},
    "order.picked": {"order_id": _ID, "worker_id": _ID},
    "order.packed": {"order_id": _ID, "worker_id": _ID},
    "order.loaded": {"order_id": _ID, "route_id": _ID, "dock_id": _ID},
    "dock.status_changed": {
        "dock_id": _ID,
        "status": _one_of("open", "out_of_service"),
        "reason": _TEXT,
    },
    "truck.arrived": {"route_id": _ID, "dock_id": _ID},
    "truck.loading_started": {"route_id": _ID, "dock_id": _ID},
    "truck.departed": {"route_id": _ID, "dock_id": _ID, "driver_id": _ID},
    "stop.arrived": {
        "route_id": _ID,
        "driver_id": _ID,
        "stop_seq": _positive_integer,
        "planned_drive_s": _non_negative_number,
    },
    "stop.departed": {"route_id": _ID, "driver_id": _ID, "stop_seq": _positive_integer},
    "delivery.attempted": {
        "order_id": _ID,
        "route_id": _ID,
        "driver_id": _ID,
        "stop_seq": _positive_integer,
        "attempt": _positive_integer,
        "outcome": _one_of("delivered", "failed"),
        # Checked with the outcome below: null exactly when delivered.
        "failure_reason": lambda field, value: None,
        **_PROMISE,
    },
    "driver.delayed": {
        "route_id": _ID,
        "driver_id": _ID,
        "delay_s": _non_negative_number,
        "reason": _TEXT,
    },
    "worker.shift_started": {
        "worker_id": _ID,
        "role": _one_of(*ROLES),
        "hourly_cost": _non_negative_number,
    },
    "worker.shift_ended": {"worker_id": _ID},
    "worker.absent": {"worker_id": _ID, "role": _one_of(*ROLES)},
    "mode.changed": {
        "mode": _ID,
        "enabled": _boolean,
        "actor": _string(1, 256),
        "reason": _TEXT,
    },
}
EVENT_TYPES = tuple(DATA_FIELDS)
OPTIONAL: dict[str, frozenset[str]] = {"dock.status_changed": frozenset({"reason"})}


def _check_promise(data: Mapping[str, Any]) -> None:
    start = parse_timestamp("data.promised_start", data["promised_start"])
    end = parse_timestamp("data.promised_end", data["promised_end"])
    if start > end:
        raise InvalidEvent(
            "data.promised_start",
            f"must not be after promised_end ({data['promised_start']} > {data['promised_end']})",
        )


def _check_failure_reason(data: Mapping[str, Any]) -> None:
    reason = data["failure_reason"]
    if data["outcome"] == "delivered":
        if reason is not None:
            raise InvalidEvent("data.failure_reason", "must be null when outcome is delivered")
    elif reason not in FAILURE_REASONS:
        raise InvalidEvent(
            "data.failure_reason",
            f"must be one of {', '.join(FAILURE_REASONS)} when outcome is failed; got {_describe(reason)}",
        )


def validate(obj: Any, now: datetime) -> Event:
    """Return the valid event in ``obj`` or raise ``InvalidEvent``.

    ``now`` is the server clock (timezone-aware), against which the event time
    may be at most five minutes ahead.
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("event", f"must be a JSON object, got {type(obj).__name__}")
    if "specversion" not in obj:
        raise InvalidEvent("specversion", "is required")
    if obj["specversion"] != SPECVERSION:
        raise InvalidEvent("specversion", f'must be "1.0", got {_describe(obj["specversion"])}')
    for field, check in (("id", _string(1, 128)), ("source", _string(1, 256))):
        if field not in obj:
            raise InvalidEvent(field, "is required")
        check(field, obj[field])
    if "type" not in obj:
        raise InvalidEvent("type", "is required")
    event_type = obj["type"]
    fields = DATA_FIELDS.get(event_type) if isinstance(event_type, str) else None
    if fields is None:
        raise InvalidEvent("type", f"unknown event type {_describe(event_type)}")
    if "time" not in obj:
        raise InvalidEvent("time", "is required")
    time = parse_timestamp("time", obj["time"])
    if time - now > MAX_FUTURE:
        raise InvalidEvent("time", f"is more than 5 minutes ahead of the server clock: {obj['time']}")
    subject = obj.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise InvalidEvent("subject", f"must be a string, got {_describe(subject)}")

    data = obj.get("data")
    if data is None:
        raise InvalidEvent("data", "is required")
    if not isinstance(data, dict):
        raise InvalidEvent("data", f"must be a JSON object, got {_describe(data)}")
    if "site_id" not in data:
        raise InvalidEvent("data.site_id", "is required")
    site_id = data["site_id"]
    if not (event_type == "mode.changed" and site_id == "*"):
        _site_id("data.site_id", site_id)
    optional = OPTIONAL.get(event_type, frozenset())
    for field, check in fields.items():
        if field not in data:
            if field in optional:
                continue
            raise InvalidEvent(f"data.{field}", "is required")
        value = data[field]
        if value is None and field in optional:
            continue
        check(f"data.{field}", value)
    if "promised_start" in fields:
        _check_promise(data)
    if event_type == "delivery.attempted":
        _check_failure_reason(data)
    return Event(obj["source"], obj["id"], event_type, time, site_id, obj)
