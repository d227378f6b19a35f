"""Unit tests of event validation against section 1 of the contract."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.events import DATA_FIELDS, EVENT_TYPES, FAILURE_REASONS, OPTIONAL, ROLES, Event, InvalidEvent, validate
from tests.helpers import golden_events, golden_invalid, make_event

NOW = datetime(2026, 10, 8, tzinfo=UTC)

Mutation = Callable[[dict[str, Any]], None]


def _parent(event: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, key = path.split(".")
    target = event
    for name in parents:
        target = target[name]
    return target, key


def put(path: str, value: Any) -> Mutation:
    """Return a mutation setting the dotted ``path`` of an event to ``value``."""

    def mutate(event: dict[str, Any]) -> None:
        target, key = _parent(event, path)
        target[key] = value

    return mutate


def drop(path: str) -> Mutation:
    """Return a mutation deleting the dotted ``path`` of an event."""

    def mutate(event: dict[str, Any]) -> None:
        target, key = _parent(event, path)
        del target[key]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    """Return a mutation applying several in turn."""

    def mutate(event: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(event)

    return mutate


def mutated(event_type: str, mutation: Mutation) -> dict[str, Any]:
    """Return a valid event of ``event_type`` with ``mutation`` applied."""
    event = make_event(event_type)
    mutation(event)
    return event


def assert_rejected(event: Any, field: str, now: datetime = NOW) -> InvalidEvent:
    """Assert that ``event`` is rejected with an error naming ``field``."""
    with pytest.raises(InvalidEvent) as caught:
        validate(event, now)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    return caught.value


def ahead(delta: timedelta) -> str:
    """Return NOW + delta as an RFC 3339 string."""
    return (NOW + delta).isoformat().replace("+00:00", "Z")


# (case, event type, mutation of a valid event, field the error must name)
REJECTED: list[tuple[str, str, Mutation, str]] = [
    # specversion
    ("specversion missing", "order.picked", drop("specversion"), "specversion"),
    ("specversion 0.3", "order.picked", put("specversion", "0.3"), "specversion"),
    ("specversion a number", "order.picked", put("specversion", 1.0), "specversion"),
    ("specversion null", "order.picked", put("specversion", None), "specversion"),
    # id: string of 1 to 128 characters
    ("id missing", "order.picked", drop("id"), "id"),
    ("id empty", "order.picked", put("id", ""), "id"),
    ("id of 129 characters", "order.picked", put("id", "i" * 129), "id"),
    ("id a number", "order.picked", put("id", 12345), "id"),
    ("id null", "order.picked", put("id", None), "id"),
    # source: string of 1 to 256 characters
    ("source missing", "order.picked", drop("source"), "source"),
    ("source empty", "order.picked", put("source", ""), "source"),
    ("source of 257 characters", "order.picked", put("source", "/" + "s" * 256), "source"),
    ("source a number", "order.picked", put("source", 7), "source"),
    ("source null", "order.picked", put("source", None), "source"),
    # type
    ("type missing", "order.picked", drop("type"), "type"),
    ("type unknown", "order.picked", put("type", "order.teleported"), "type"),
    ("type wrong case", "order.picked", put("type", "Order.Picked"), "type"),
    ("type a number", "order.picked", put("type", 3), "type"),
    ("type null", "order.picked", put("type", None), "type"),
    # time: RFC 3339 with an offset, year 2000 or later, at most 5 minutes ahead
    ("time missing", "order.picked", drop("time"), "time"),
    ("time garbage", "order.picked", put("time", "yesterday"), "time"),
    ("time without offset", "order.picked", put("time", "2026-10-06T10:00:00"), "time"),
    ("time date only", "order.picked", put("time", "2026-10-06"), "time"),
    ("time ISO 8601 basic format", "order.picked", put("time", "20261006T101010Z"), "time"),
    ("time offset without colon", "order.picked", put("time", "2026-10-06T10:00:00+0100"), "time"),
    ("time without seconds", "order.picked", put("time", "2026-10-06T10:00Z"), "time"),
    ("time not a real date", "order.picked", put("time", "2026-02-30T10:00:00Z"), "time"),
    ("time hour 24", "order.picked", put("time", "2026-10-06T24:00:00Z"), "time"),
    ("time offset 24 hours", "order.picked", put("time", "2026-10-06T10:00:00+24:00"), "time"),
    ("time a number", "order.picked", put("time", 1791000000), "time"),
    ("time null", "order.picked", put("time", None), "time"),
    ("time before 2000", "order.picked", put("time", "1999-12-31T23:59:59Z"), "time"),
    ("time 5 min 1 ms ahead", "order.picked", put("time", ahead(timedelta(minutes=5, milliseconds=1))), "time"),
    ("time an hour ahead", "order.picked", put("time", ahead(timedelta(hours=1))), "time"),
    ("time far future", "order.picked", put("time", "2031-01-01T00:00:00Z"), "time"),
    # subject: optional string
    ("subject a number", "order.picked", put("subject", 42), "subject"),
    ("subject an object", "order.picked", put("subject", {"order": "O1"}), "subject"),
    # data: a JSON object
    ("data missing", "order.picked", drop("data"), "data"),
    ("data null", "order.picked", put("data", None), "data"),
    ("data a string", "order.picked", put("data", "hello"), "data"),
    ("data an array", "order.picked", put("data", [{"site_id": "SEA1"}]), "data"),
    ("data a number", "order.picked", put("data", 1), "data"),
    # site_id matches ^[A-Za-z0-9_-]{1,32}$
    ("site_id missing", "order.picked", drop("data.site_id"), "data.site_id"),
    ("site_id empty", "order.picked", put("data.site_id", ""), "data.site_id"),
    ("site_id bad characters", "order.picked", put("data.site_id", "SEA 1;DROP"), "data.site_id"),
    ("site_id with a dot", "order.picked", put("data.site_id", "SEA.1"), "data.site_id"),
    ("site_id non-ASCII letter", "order.picked", put("data.site_id", "SÉA1"), "data.site_id"),
    ("site_id trailing newline", "order.picked", put("data.site_id", "SEA1\n"), "data.site_id"),
    ("site_id of 33 characters", "order.picked", put("data.site_id", "S" * 33), "data.site_id"),
    ("site_id a number", "order.picked", put("data.site_id", 17), "data.site_id"),
    ("site_id null", "order.picked", put("data.site_id", None), "data.site_id"),
    ("site_id ** for mode.changed", "mode.changed", put("data.site_id", "**"), "data.site_id"),
    ("site_id empty for mode.changed", "mode.changed", put("data.site_id", ""), "data.site_id"),
    # other ids: strings of 1 to 64 characters
    *[
        (f"{field} {label}", event_type, put(f"data.{field}", value), f"data.{field}")
        for event_type, field in [
            ("order.picked", "order_id"),
            ("order.picked", "worker_id"),
            ("order.loaded", "route_id"),
            ("order.loaded", "dock_id"),
            ("truck.departed", "driver_id"),
            ("mode.changed", "mode"),
        ]
        for label, value in [("empty", ""), ("of 65 characters", "x" * 65), ("a number", 42), ("null", None)]
    ],
    # *_s fields and hourly_cost: numbers >= 0
    *[
        (f"{field} {label}", event_type, put(f"data.{field}", value), f"data.{field}")
        for event_type, field in [
            ("stop.arrived", "planned_drive_s"),
            ("driver.delayed", "delay_s"),
            ("worker.shift_started", "hourly_cost"),
        ]
        for label, value in [
            ("negative", -5),
            ("slightly negative", -0.001),
            ("a string", "600"),
            ("true", True),
            ("false", False),
            ("infinite", float("inf")),
            ("minus infinite", float("-inf")),
            ("NaN", float("nan")),
            ("null", None),
        ]
    ],
    # stop_seq and attempt: integers >= 1
    *[
        (f"{field} {label}", event_type, put(f"data.{field}", value), f"data.{field}")
        for event_type, field in [
            ("stop.arrived", "stop_seq"),
            ("stop.departed", "stop_seq"),
            ("delivery.attempted", "stop_seq"),
            ("delivery.attempted", "attempt"),
        ]
        for label, value in [
            ("zero", 0),
            ("negative", -1),
            ("a string", "1"),
            ("a fraction", 1.5),
            ("true", True),
            ("null", None),
        ]
    ],
    # timestamps inside data
    *[
        (f"{field} {label}", event_type, put(f"data.{field}", value), f"data.{field}")
        for event_type in ("order.created", "slot.changed", "delivery.attempted")
        for field in ("promised_start", "promised_end")
        for label, value in [
            ("garbage", "tomorrow"),
            ("without offset", "2026-10-06T10:00:00"),
            ("before 2000", "1999-06-01T10:00:00Z"),
            ("a number", 1791000000),
            ("null", None),
        ]
    ],
    # promised_start <= promised_end
    *[
        (
            f"promised_start after promised_end in {event_type}",
            event_type,
            both(
                put("data.promised_start", "2026-11-05T10:00:00Z"),
                put("data.promised_end", "2026-11-05T09:00:00Z"),
            ),
            "data.promised_start",
        )
        for event_type in ("order.created", "slot.changed", "delivery.attempted")
    ],
    (
        "promised_start after promised_end across offsets",
        "order.created",
        both(
            put("data.promised_start", "2026-11-05T10:00:00+00:00"),
            put("data.promised_end", "2026-11-05T10:30:00+01:00"),
        ),
        "data.promised_start",
    ),
    # failure_reason is null exactly when outcome is delivered
    (
        "failure_reason set when delivered",
        "delivery.attempted",
        put("data.failure_reason", "weather"),
        "data.failure_reason",
    ),
    (
        "failure_reason null when failed",
        "delivery.attempted",
        put("data.outcome", "failed"),
        "data.failure_reason",
    ),
    (
        "failure_reason unknown",
        "delivery.attempted",
        both(put("data.outcome", "failed"), put("data.failure_reason", "aliens")),
        "data.failure_reason",
    ),
    (
        "failure_reason wrong case",
        "delivery.attempted",
        both(put("data.outcome", "failed"), put("data.failure_reason", "Weather")),
        "data.failure_reason",
    ),
    # enumerations
    ("priority unknown", "order.created", put("data.priority", "urgent!!"), "data.priority"),
    ("priority wrong case", "order.created", put("data.priority", "Express"), "data.priority"),
    ("priority null", "order.created", put("data.priority", None), "data.priority"),
    ("status unknown", "dock.status_changed", put("data.status", "on_fire"), "data.status"),
    ("status null", "dock.status_changed", put("data.status", None), "data.status"),
    ("role unknown at shift start", "worker.shift_started", put("data.role", "astronaut"), "data.role"),
    ("role unknown when absent", "worker.absent", put("data.role", "astronaut"), "data.role"),
    ("role a list", "worker.absent", put("data.role", ["picker"]), "data.role"),
    ("outcome unknown", "delivery.attempted", put("data.outcome", "maybe"), "data.outcome"),
    ("outcome null", "delivery.attempted", put("data.outcome", None), "data.outcome"),
    # other typed fields
    ("enabled a string", "mode.changed", put("data.enabled", "true"), "data.enabled"),
    ("enabled a number", "mode.changed", put("data.enabled", 1), "data.enabled"),
    ("actor empty", "mode.changed", put("data.actor", ""), "data.actor"),
    ("canceled reason a number", "order.canceled", put("data.reason", 42), "data.reason"),
    ("canceled reason null", "order.canceled", put("data.reason", None), "data.reason"),
    ("delayed reason a list", "driver.delayed", put("data.reason", ["traffic"]), "data.reason"),
    ("dock reason a number", "dock.status_changed", put("data.reason", 42), "data.reason"),
    # "*" is the whole network only for mode.changed
    *[
        (f"site_id * for {event_type}", event_type, put("data.site_id", "*"), "data.site_id")
        for event_type in EVENT_TYPES
        if event_type != "mode.changed"
    ],
]

# (case, event type, mutation of a valid event) that the contract allows.
ACCEPTED: list[tuple[str, str, Mutation]] = [
    ("unchanged, without subject", "order.picked", put("id", "evt-1")),
    ("id of 1 character", "order.picked", put("id", "x")),
    ("id of 128 characters", "order.picked", put("id", "i" * 128)),
    ("id non-ASCII", "order.picked", put("id", "événement-✓-🚚")),
    ("source of 1 character", "order.picked", put("source", "/")),
    ("source of 256 characters", "order.picked", put("source", "/" + "s" * 255)),
    ("time exactly 5 min ahead", "order.picked", put("time", ahead(timedelta(minutes=5)))),
    ("time 4 min 59 s ahead", "order.picked", put("time", ahead(timedelta(minutes=4, seconds=59)))),
    ("time 5 min ahead in another offset", "order.picked", put("time", "2026-10-08T02:05:00+02:00")),
    ("time first instant of 2000", "order.picked", put("time", "2000-01-01T00:00:00Z")),
    ("time days late", "order.picked", put("time", "2026-09-01T10:00:00Z")),
    ("time offset +00:00", "order.picked", put("time", "2026-10-06T10:00:00+00:00")),
    ("time offset -00:00", "order.picked", put("time", "2026-10-06T10:00:00-00:00")),
    ("time offset +05:30", "order.picked", put("time", "2026-10-06T10:00:00+05:30")),
    ("time offset -08:00", "order.picked", put("time", "2026-10-06T10:00:00-08:00")),
    ("time milliseconds", "order.picked", put("time", "2026-10-06T10:00:00.123Z")),
    ("time one fraction digit", "order.picked", put("time", "2026-10-06T10:00:00.5Z")),
    ("time nanoseconds", "order.picked", put("time", "2026-10-06T10:00:00.123456789Z")),
    ("time lower-case t and z", "order.picked", put("time", "2026-10-06t10:00:00z")),
    ("time space separator", "order.picked", put("time", "2026-10-06 10:00:00Z")),
    ("subject a string", "order.picked", put("subject", "O1")),
    ("site_id of 32 characters", "order.picked", put("data.site_id", "S" * 32)),
    ("site_id of 1 character", "order.picked", put("data.site_id", "S")),
    ("site_id all allowed characters", "order.picked", put("data.site_id", "Sea-1_b9")),
    ("site_id * for mode.changed", "mode.changed", put("data.site_id", "*")),
    ("order_id of 64 characters", "order.picked", put("data.order_id", "O" * 64)),
    ("order_id of 1 character", "order.picked", put("data.order_id", "O")),
    ("worker_id non-ASCII", "order.picked", put("data.worker_id", "Jürgen-ß")),
    ("planned_drive_s zero", "stop.arrived", put("data.planned_drive_s", 0)),
    ("planned_drive_s zero float", "stop.arrived", put("data.planned_drive_s", 0.0)),
    ("planned_drive_s integer", "stop.arrived", put("data.planned_drive_s", 600)),
    ("delay_s float", "driver.delayed", put("data.delay_s", 12.75)),
    ("hourly_cost zero", "worker.shift_started", put("data.hourly_cost", 0)),
    ("stop_seq 1", "stop.departed", put("data.stop_seq", 1)),
    ("stop_seq large", "stop.arrived", put("data.stop_seq", 10_000)),
    ("attempt 3", "delivery.attempted", put("data.attempt", 3)),
    (
        "promised_start equals promised_end",
        "order.created",
        both(put("data.promised_start", "2026-10-06T12:00:00Z"), put("data.promised_end", "2026-10-06T12:00:00Z")),
    ),
    (
        "promise equal across offsets",
        "slot.changed",
        both(put("data.promised_start", "2026-10-06T12:00:00Z"), put("data.promised_end", "2026-10-06T14:00:00+02:00")),
    ),
    (
        "promise in the future",
        "order.created",
        both(put("data.promised_start", "2030-01-01T10:00:00Z"), put("data.promised_end", "2030-01-01T12:00:00Z")),
    ),
    ("delivered with null failure_reason", "delivery.attempted", put("data.failure_reason", None)),
    *[
        (
            f"failed with {reason}",
            "delivery.attempted",
            both(put("data.outcome", "failed"), put("data.failure_reason", reason)),
        )
        for reason in FAILURE_REASONS
    ],
    ("priority standard", "order.created", put("data.priority", "standard")),
    ("priority express", "order.created", put("data.priority", "express")),
    ("status open", "dock.status_changed", put("data.status", "open")),
    ("status out_of_service", "dock.status_changed", put("data.status", "out_of_service")),
    *[(f"shift start role {role}", "worker.shift_started", put("data.role", role)) for role in ROLES],
    *[(f"absent role {role}", "worker.absent", put("data.role", role)) for role in ROLES],
    ("dock reason absent", "dock.status_changed", drop("data.reason")),
    ("dock reason null", "dock.status_changed", put("data.reason", None)),
    ("enabled false", "mode.changed", put("data.enabled", False)),
    ("canceled reason empty", "order.canceled", put("data.reason", "")),
    ("unknown extra attribute", "order.picked", put("datacontenttype", "application/json")),
    ("unknown extension attribute object", "order.picked", put("traceparent", {"any": ["thing", 1]})),
    ("unknown extra data field", "order.picked", put("data.bin", "A-12")),
    ("unknown extra data field null", "truck.arrived", put("data.trailer", None)),
]


@pytest.mark.parametrize(
    ("event_type", "mutation", "field"),
    [pytest.param(event_type, mutation, field, id=case) for case, event_type, mutation, field in REJECTED],
)
def test_rejects_event_breaking_a_rule(event_type: str, mutation: Mutation, field: str) -> None:
    assert_rejected(mutated(event_type, mutation), field)


@pytest.mark.parametrize(
    ("event_type", "mutation"),
    [pytest.param(event_type, mutation, id=case) for case, event_type, mutation in ACCEPTED],
)
def test_accepts_event_within_the_rules(event_type: str, mutation: Mutation) -> None:
    event = mutated(event_type, mutation)
    raw = copy.deepcopy(event)

    valid = validate(event, NOW)

    assert valid.type == event_type
    assert valid.raw == raw


REQUIRED_DATA_FIELDS = [
    (event_type, field)
    for event_type, fields in DATA_FIELDS.items()
    for field in ("site_id", *fields)
    if field not in OPTIONAL.get(event_type, frozenset())
]


@pytest.mark.parametrize(("event_type", "field"), [pytest.param(t, f, id=f"{t}-{f}") for t, f in REQUIRED_DATA_FIELDS])
def test_rejects_event_missing_a_required_data_field(event_type: str, field: str) -> None:
    error = assert_rejected(mutated(event_type, drop(f"data.{field}")), f"data.{field}")

    assert "required" in str(error)


def test_only_dock_reason_is_optional() -> None:
    optional = {event_type: set(fields) for event_type, fields in OPTIONAL.items() if fields}

    assert optional == {"dock.status_changed": {"reason"}}


@pytest.mark.parametrize("not_an_object", [42, "order.created", None, [{"a": 1}], True])
def test_rejects_a_value_that_is_not_an_object(not_an_object: Any) -> None:
    assert_rejected(not_an_object, "event")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_valid_event_of_each_type_gives_its_common_fields(event_type: str) -> None:
    event = make_event(event_type, event_id="evt-42", source="/sites/SEA1/wms", time="2026-10-06T10:30:00+02:00")

    valid = validate(event, NOW)

    assert valid == Event(
        source="/sites/SEA1/wms",
        id="evt-42",
        type=event_type,
        time=datetime(2026, 10, 6, 8, 30, tzinfo=UTC),
        site_id="SEA1",
        raw=event,
    )
    assert valid.data is event["data"]


def test_every_type_of_the_contract_is_known() -> None:
    assert set(EVENT_TYPES) == {
        "order.created",
        "slot.changed",
        "order.canceled",
        "order.picked",
        "order.packed",
        "order.loaded",
        "dock.status_changed",
        "truck.arrived",
        "truck.loading_started",
        "truck.departed",
        "stop.arrived",
        "stop.departed",
        "delivery.attempted",
        "driver.delayed",
        "worker.shift_started",
        "worker.shift_ended",
        "worker.absent",
        "mode.changed",
    }


def test_mode_changed_for_the_whole_network_keeps_star_site_id() -> None:
    assert validate(make_event("mode.changed", site_id="*"), NOW).site_id == "*"


def test_five_minutes_ahead_is_measured_against_the_given_now() -> None:
    event = make_event(time="2026-10-08T00:05:00Z")

    assert validate(event, NOW).time == NOW + timedelta(minutes=5)
    assert_rejected(event, "time", now=NOW - timedelta(seconds=1))


# -- golden fixture ----------------------------------------------------------


# why (as the fixture says) -> the field the error must name
GOLDEN_INVALID_FIELDS = {
    "no id": "id",
    "empty id": "id",
    "id too long": "id",
    "id is number": "id",
    "no source": "source",
    "no type": "type",
    "unknown type": "type",
    "bad specversion": "specversion",
    "no specversion": "specversion",
    "no time": "time",
    "time garbage": "time",
    "time without offset": "time",
    "time far future": "time",
    "time before 2000": "time",
    "data not object": "data",
    "no data": "data",
    "no site_id": "data.site_id",
    "site_id bad chars": "data.site_id",
    "site_id too long": "data.site_id",
    "site_id number": "data.site_id",
    "bad outcome": "data.outcome",
    "attempt 0": "data.attempt",
    "attempt string": "data.attempt",
    "attempt float": "data.attempt",
    "no promised_end": "data.promised_end",
    "bad reason": "data.failure_reason",
    "start after end": "data.promised_start",
    "negative planned_drive_s": "data.planned_drive_s",
    "planned string": "data.planned_drive_s",
    "stop_seq 0": "data.stop_seq",
    "no route_id": "data.route_id",
    "bad role": "data.role",
    "negative cost": "data.hourly_cost",
    "bad status": "data.status",
    "bad priority": "data.priority",
    "empty order_id": "data.order_id",
    "order_id too long": "data.order_id",
    "null dock_id": "data.dock_id",
    "event is a number": "event",
    "event is a string": "event",
    "event is null": "event",
    "event is an array": "event",
}


@pytest.mark.parametrize("case", golden_invalid(), ids=lambda case: case["why"])
def test_rejects_every_golden_invalid_case(case: dict[str, Any]) -> None:
    assert case["why"] in GOLDEN_INVALID_FIELDS, "a new golden case: add the field it must name above"

    assert_rejected(case["event"], GOLDEN_INVALID_FIELDS[case["why"]])


def test_accepts_every_golden_event() -> None:
    events = golden_events()

    accepted = [validate(event, NOW) for event in events]

    assert len(accepted) == len(events) > 1000
    assert [(e.source, e.id) for e in accepted] == [(e["source"], e["id"]) for e in events]


# -- properties --------------------------------------------------------------

# Any character a JSON string can carry: everything but lone surrogates.
TEXT_CHARS = st.characters(exclude_categories=("Cs",))
IDS = st.text(TEXT_CHARS, min_size=1, max_size=64)
SITE_IDS = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=10**12),
    st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
)
LATEST_EVENT_TIME = NOW + timedelta(minutes=5)


@st.composite
def rfc3339(draw: st.DrawFn, earliest: datetime, latest: datetime) -> str:
    """Draw an RFC 3339 time between two instants, in a random offset, maybe with a fraction."""
    instant = draw(st.datetimes(min_value=earliest.replace(tzinfo=None), max_value=latest.replace(tzinfo=None)))
    offset_min = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
    local = instant.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=offset_min)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(min_value=0, max_value=9))
    if digits:
        # Truncating the fraction only moves the instant earlier, never out of range.
        text += "." + f"{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    if offset_min == 0:
        return text + draw(st.sampled_from(["Z", "+00:00", "-00:00"]))
    sign = "+" if offset_min > 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


EVENT_TIMES = rfc3339(datetime(2000, 1, 2, tzinfo=UTC), NOW)
PROMISE_TIMES = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2035, 12, 31))

FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "order_id": IDS,
    "route_id": IDS,
    "driver_id": IDS,
    "worker_id": IDS,
    "dock_id": IDS,
    "mode": IDS,
    "actor": st.text(TEXT_CHARS, min_size=1, max_size=128),
    "reason": st.text(TEXT_CHARS, max_size=200),
    "priority": st.sampled_from(["standard", "express"]),
    "status": st.sampled_from(["open", "out_of_service"]),
    "role": st.sampled_from(ROLES),
    "enabled": st.booleans(),
    "stop_seq": st.integers(min_value=1, max_value=2**53),
    "attempt": st.integers(min_value=1, max_value=2**53),
    "planned_drive_s": NUMBERS,
    "delay_s": NUMBERS,
    "hourly_cost": NUMBERS,
    # Drawn together with the fields they depend on, in valid_data().
    "promised_start": st.nothing(),
    "promised_end": st.nothing(),
    "outcome": st.nothing(),
    "failure_reason": st.nothing(),
}


@st.composite
def valid_data(draw: st.DrawFn, event_type: str) -> dict[str, Any]:
    """Draw the data object of a valid event of ``event_type``."""
    fields = DATA_FIELDS[event_type]
    site_ids = st.one_of(SITE_IDS, st.just("*")) if event_type == "mode.changed" else SITE_IDS
    data: dict[str, Any] = {"site_id": draw(site_ids)}
    for field in fields:
        if field in OPTIONAL.get(event_type, frozenset()):
            choice = draw(st.sampled_from(["absent", "null", "value"]))
            if choice != "absent":
                data[field] = None if choice == "null" else draw(FIELD_STRATEGIES[field])
        elif not FIELD_STRATEGIES[field].is_empty:
            data[field] = draw(FIELD_STRATEGIES[field])
    if "promised_start" in fields:
        first, second = sorted([draw(PROMISE_TIMES), draw(PROMISE_TIMES)])
        data["promised_start"] = draw(rfc3339(first.replace(tzinfo=UTC), first.replace(tzinfo=UTC)))
        # The end drawn in its own offset; its fraction may be cut, so keep it a second clear.
        end = max(second, first + timedelta(seconds=1))
        data["promised_end"] = draw(rfc3339(end.replace(tzinfo=UTC), end.replace(tzinfo=UTC)))
    if "outcome" in fields:
        data["outcome"] = draw(st.sampled_from(["delivered", "failed"]))
        data["failure_reason"] = None if data["outcome"] == "delivered" else draw(st.sampled_from(FAILURE_REASONS))
    return data


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a valid event of any type."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.text(TEXT_CHARS, min_size=1, max_size=128)),
        "source": draw(st.text(TEXT_CHARS, min_size=1, max_size=256)),
        "type": event_type,
        "time": draw(EVENT_TIMES),
        "data": draw(valid_data(event_type)),
    }
    if draw(st.booleans()):
        event["subject"] = draw(st.text(TEXT_CHARS, max_size=64))
    return event


def required_paths(event: dict[str, Any]) -> list[str]:
    """Return the dotted names of an event's required fields."""
    optional = OPTIONAL.get(event["type"], frozenset())
    data_fields = [f"data.{field}" for field in ("site_id", *DATA_FIELDS[event["type"]]) if field not in optional]
    return ["specversion", "id", "source", "type", "time", "data", *data_fields]


def test_every_data_field_has_a_strategy() -> None:
    assert {field for fields in DATA_FIELDS.values() for field in fields} <= set(FIELD_STRATEGIES)


@settings(max_examples=200, deadline=None)
@given(valid_events())
def test_property_valid_events_are_accepted_as_they_are(event: dict[str, Any]) -> None:
    valid = validate(event, NOW)

    assert (valid.source, valid.id, valid.type, valid.site_id) == (
        event["source"],
        event["id"],
        event["type"],
        event["data"]["site_id"],
    )
    assert valid.time == datetime.fromisoformat(event["time"])
    assert valid.raw is event
    assert validate(orjson.loads(orjson.dumps(event)), NOW) == valid


@settings(max_examples=200, deadline=None)
@given(valid_events(), st.data())
def test_property_missing_required_field_is_named(event: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(required_paths(event)), label="deleted")
    drop(path)(event)

    assert_rejected(event, path)
