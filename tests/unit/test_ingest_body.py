"""Unit tests of parsing an ingest request body into its events."""

from __future__ import annotations

import orjson
import pytest

from dashboard.ingest import BodyError, parse_body
from tests.helpers import make_event

MAX_BYTES = 4 * 1024 * 1024
MAX_EVENTS = 1000


def parse(body: bytes, max_bytes: int = MAX_BYTES, max_events: int = MAX_EVENTS) -> list[object]:
    return parse_body(body, max_bytes=max_bytes, max_events=max_events)


def test_single_object_is_a_batch_of_one() -> None:
    event = make_event()

    assert parse(orjson.dumps(event)) == [event]


def test_array_gives_its_items_in_order() -> None:
    events = [make_event("order.picked"), make_event("truck.arrived"), make_event("mode.changed")]

    assert parse(orjson.dumps(events)) == events


def test_array_items_are_passed_on_unvalidated() -> None:
    # Each item is judged on its own later, so one bad item rejects only itself.
    assert parse(b'[{"id": "a"}, 42, null, "x"]') == [{"id": "a"}, 42, None, "x"]


def test_empty_array_is_an_empty_batch() -> None:
    assert parse(b"[]") == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2", b"\xff\xfe", b"{'single': 'quotes'}", b"NaN"])
def test_body_that_is_not_json_is_400(body: bytes) -> None:
    with pytest.raises(BodyError) as caught:
        parse(body)

    assert caught.value.status == 400
    assert "not valid JSON" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "type_name"),
    [(b'"order.created"', "str"), (b"42", "int"), (b"4.5", "float"), (b"null", "NoneType"), (b"true", "bool")],
)
def test_json_that_is_neither_object_nor_array_is_400(body: bytes, type_name: str) -> None:
    with pytest.raises(BodyError) as caught:
        parse(body)

    assert caught.value.status == 400
    assert "JSON object" in str(caught.value)
    assert str(caught.value).endswith(f"got {type_name}")


def test_batch_of_1000_events_is_taken() -> None:
    events = [make_event() for _ in range(1000)]

    assert parse(orjson.dumps(events)) == events


def test_batch_of_1001_events_is_413_naming_the_limit() -> None:
    events = [make_event() for _ in range(1001)]

    with pytest.raises(BodyError) as caught:
        parse(orjson.dumps(events))

    assert caught.value.status == 413
    assert "1000" in str(caught.value)
    assert "1001" in str(caught.value)


def test_body_over_max_bytes_is_413() -> None:
    body = orjson.dumps([make_event()])

    with pytest.raises(BodyError) as caught:
        parse(body, max_bytes=len(body) - 1)

    assert caught.value.status == 413
    assert str(len(body) - 1) in str(caught.value)


def test_body_of_exactly_max_bytes_is_taken() -> None:
    body = orjson.dumps([make_event()])

    assert len(parse(body, max_bytes=len(body))) == 1


def test_size_is_checked_before_parsing() -> None:
    # An oversized body is refused as too large even when it is not JSON.
    with pytest.raises(BodyError) as caught:
        parse(b"x" * 101, max_bytes=100)

    assert caught.value.status == 413


def test_4_mib_body_is_taken_and_one_byte_more_is_413() -> None:
    exactly = b"[" + b" " * (MAX_BYTES - 2) + b"]"
    assert len(exactly) == 4 * 1024 * 1024

    assert parse(exactly) == []
    with pytest.raises(BodyError) as caught:
        parse(exactly + b" ")
    assert caught.value.status == 413
